"""The graph of streams between stages (core/spec/stage_graph.py), through ``check_tree`` as users meet it:
the role rules not pinned elsewhere, a stage that is not a mapping, and the codebook ranges in messages."""

from __future__ import annotations

import pytest
import yaml

from cadenza.core.errors import SpecError
from cadenza.core.spec.stage_graph import MOST_CODEBOOKS, ranges
from cadenza.core.spec.validate import INFO_LIMITS, check_tree
from tiny_specs import TINY_SPEC


def problems(registry, text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        check_tree(yaml.safe_load(text), registry)
    return [line.split(": ", 1)[1] for line in caught.value.problems]


@pytest.mark.parametrize(("change", "expected"), [
    (("writes: acoustic[0:2]", "writes: acoustic[1:2]"),
     "a coarse stage writes the first codebooks (acoustic[0:N]), not acoustic[1:2]"),
    (("reads:\n      - acoustic[0:2]\n", "reads:\n      - semantic\n"),
     "a fine stage reads the coarse codebooks, e.g. reads: ['acoustic[0:2]']"),
    (("    writes: semantic\n", "    writes: semantic[0:2]\n"), "the semantic stream has one codebook; write it as 'semantic'"),
    (("    writes: semantic\n", "    writes: acoustic[0:2]\n"), "a 'semantic' stage writes the semantic stream, not acoustic[0:2]"),
])
def test_role_and_stream_rules(registry, change, expected):
    assert expected in problems(registry, TINY_SPEC.replace(*change))


def test_a_stage_that_is_not_a_mapping_hides_only_what_depends_on_it(registry):
    short = TINY_SPEC.replace("writes: acoustic[0:2]", "writes: acoustic[0:1]")  # codebook 1 now written by no stage
    assert problems(registry, short) == ["stage 'fine' reads acoustic[0:2], which no earlier stage writes",
                                         "codebooks 1 of tokenizer 'tiny-codec' are written by no stage (it has 4); "
                                         "extend a stage's 'writes'"]
    # with an unreadable stage before them, either might be written there: neither is judged
    broken = short.replace("  - name: coarse\n", "  - just a string\n  - name: coarse\n")
    assert problems(registry, broken) == ["a stage must be a mapping, got 'just a string'"]


def test_ranges_and_the_shared_codebook_ceiling():
    assert ranges([2, 3, 5]) == "2-3, 5" and ranges([0]) == "0" and ranges([1, 2, 3, 7, 8]) == "1-3, 7-8"
    assert INFO_LIMITS["num_codebooks"] == (1, MOST_CODEBOOKS)
