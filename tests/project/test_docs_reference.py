"""The reference docs cannot drift from the code: generated pages are fresh, spec keys documented.

Regenerate the generated pages with `python docs/gen_reference.py`.
"""

from __future__ import annotations

import importlib.util
import re
import types
from pathlib import Path

import pytest
import yaml

from cadenza.core.spec import schema as spec_module
from cadenza.core.spec.validate import check_tree
from cadenza.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.mark.parametrize("page", sorted(gen.PAGES))
def test_generated_page_is_fresh(page):
    path = DOCS / page
    assert path.exists() and path.read_text() == gen.PAGES[page](), (
        f"docs/{page} is stale: run `python docs/gen_reference.py` and commit the result")


def test_every_hook_is_documented_with_its_signature():
    text = (DOCS / "hooks.md").read_text()
    missing = [name for name, func in gen.hook_specs().items() if f"### `{gen.signature(func)}`" not in text]
    assert not missing, f"undocumented hooks in docs/hooks.md: {missing}; run `python docs/gen_reference.py`"


def test_every_hook_is_mentioned_by_a_test():
    sources = [p.read_text() for p in (ROOT / "tests").rglob("*.py") if p.name != Path(__file__).name]
    untested = [name for name in gen.hook_specs() if not any(re.search(rf"\b{name}\b", s) for s in sources)]
    assert not untested, f"hooks no test mentions: {untested} (add a test, e.g. in tests/core/test_hooks.py)"


@pytest.mark.parametrize("hook", sorted(gen.hook_specs()))
def test_hook_example_is_a_working_plugin(hook):
    module = types.ModuleType(f"example_{hook}")
    module.__file__ = str(ROOT / "example_plugin.py")
    exec(compile(gen.example(hook, gen.hook_specs()[hook]), f"<example {hook}>", "exec"), module.__dict__)
    record = Registry().add_plugin(module, "example")
    assert record.error is None and record.hooks == [hook]


def test_check_command_agrees(capsys):
    assert gen.main(["--check"]) == 0, capsys.readouterr().err


# -- pipeline spec reference ---------------------------------------------------------------

SECTIONS = {"Top-level keys": "TOP_KEYS", "Components": "COMPONENT_KEYS", "Stages": "STAGE_KEYS",
            "Samplers": "SAMPLER_KEYS", "Output": "OUTPUT_KEYS"}


def documented_keys(heading: str) -> list[str]:
    """The first-column keys of the table in the ``## heading`` section of pipeline-spec.md."""
    text = (DOCS / "pipeline-spec.md").read_text()
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/pipeline-spec.md has no section '## {heading}'"
    return re.findall(r"^\| `([a-z_]+)` \|", match[1], re.M)


@pytest.mark.parametrize("heading, constant", SECTIONS.items())
def test_every_spec_key_is_documented_and_no_other(heading, constant):
    keys = getattr(spec_module, constant)
    assert sorted(documented_keys(heading)) == sorted(keys), f"'## {heading}' of docs/pipeline-spec.md vs {constant}"


def test_component_params_page_lists_every_builtin_component():
    text = (DOCS / "components-params.md").read_text()
    registry = gen.builtin_registry()
    for entry in registry.entries():
        assert f"### `{entry.name}`" in text
        for name, _, _ in gen.config_rows(entry.config):
            assert f"| `{name}` |" in text


def test_getting_started_spec_validates(registry):
    [block] = re.findall(r"```yaml\n(.*?)```", (DOCS / "getting-started.md").read_text(), re.S)
    assert len(check_tree(yaml.safe_load(block), registry).stages) == 3


def test_plugin_guide_quotes_the_example_verbatim():
    blocks = re.findall(r"```\w+\n# (examples/cadenza-example-plugin/\S+)\n(.*?)```", (DOCS / "plugins.md").read_text(), re.S)
    assert len(blocks) == 3
    for path, code in blocks:
        assert code.strip() in (ROOT / path).read_text(), f"docs/plugins.md quotes {path} out of date"
