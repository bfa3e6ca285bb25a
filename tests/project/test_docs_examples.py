"""The YAML examples in the README and the spec reference are real, valid specs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from cadenza.core.spec.validate import check_tree

ROOT = Path(__file__).resolve().parents[2]


def yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S)


def test_readme_cascade_example_validates(registry):
    [block] = yaml_blocks(ROOT / "README.md")
    # the example points at a k-means file the reader fits with `cadenza fit-kmeans`
    tree = yaml.safe_load(block.replace("./w2v-bert-kmeans.safetensors", "random"))
    pipeline = check_tree(tree, registry)
    assert [str(s.layout.writes) for s in pipeline.stages] == ["semantic", "acoustic[0:3]", "acoustic[3:8]"]


def test_spec_reference_example_validates(registry):
    [block] = yaml_blocks(ROOT / "docs" / "pipeline-spec.md")
    assert len(check_tree(yaml.safe_load(block), registry).stages) == 3
