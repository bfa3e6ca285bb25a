"""`cadenza validate`: every problem is one FILE:LINE line naming the key and what is allowed."""

from __future__ import annotations

import pytest

from cadenza.core.errors import SpecError
from cadenza.core.spec.validate import check_tree, load_pipeline
from tiny_specs import TINY_SPEC


def problems_of(path, registry) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_pipeline(path, registry)
    return info.value.problems


def test_presets_and_tiny_spec_are_valid(registry, tiny_spec):
    for source in ["tiny-random", "tiny-musicgen", tiny_spec]:
        pipeline = load_pipeline(source, registry)
        assert pipeline.stages
    pipeline = load_pipeline(tiny_spec, registry)
    coarse = pipeline.stages[1].layout
    assert [str(r) for r in coarse.reads] == ["semantic"] and str(coarse.writes) == "acoustic[0:2]"
    assert coarse.reads[0].codebook_size == 32 and coarse.writes.codebook_size == 64
    assert coarse.reads[0].frame_rate == 25 and coarse.writes.frame_rate == 50
    assert coarse.conditioning_mode == "prefix" and coarse.conditioning.kind == "pooled"
    assert pipeline.stages[2].layout.conditioning is None


def test_typo_in_params_names_file_line_key_and_allowed_keys(registry, write_spec):
    path = write_spec(TINY_SPEC.replace("params: {d_model: 32, layers: 1, heads: 2}\n    reads: [semantic]",
                                        "params: {d_mdoel: 32, layers: 1, heads: 2}\n    reads: [semantic]"))
    [line] = problems_of(path, registry)
    assert line.startswith(f"{path}:16: ")
    assert "'d_mdoel'" in line and "did you mean 'd_model'" in line and "allowed: d_model, layers" in line


def test_unknown_plugin_lists_available_ones(registry, write_spec):
    path = write_spec(TINY_SPEC.replace("tokenizer: {name: tiny-codec", "tokenizer: {name: tiny-kodek"))
    [line] = problems_of(path, registry)
    assert line.startswith(f"{path}:4: ") and "unknown tokenizer 'tiny-kodek'" in line and "tiny-codec" in line


def test_every_problem_is_reported_not_just_the_first(registry, write_spec):
    path = write_spec(
        TINY_SPEC.replace("sampler: greedy", "sampler: gredy")
        .replace("guidance_scale: 2.0\n  - name: coarse", "guidance_scale: -1\n  - name: coarse")
        .replace("output: {seconds: 0.5}", "output: {seconds: 0.5, sample_rate: 8000}")
    )
    lines = problems_of(path, registry)
    assert len(lines) == 3, lines
    assert any(":12: " in l and "guidance_scale must be a number >= 0" in l for l in lines)
    assert any(":29: " in l and "unknown sampler 'gredy'; available: greedy" in l for l in lines)
    assert any(":30: " in l and "unknown key 'sample_rate'; allowed: seconds, peak_dbfs" in l for l in lines)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("writes: acoustic[2:4]", "writes: acoustic[2:3]"), "codebooks 3 of tokenizer 'tiny-codec' are written by no stage"),
        (("writes: acoustic[2:4]", "writes: acoustic[2:6]"), "asks for codebooks up to 6, but tokenizer 'tiny-codec' has 4"),
        (("writes: acoustic[2:4]", "writes: acoustic[1:4]"), "writes acoustic[1:4], already written by an earlier stage"),
        (("- acoustic[0:2]", "- acoustic[0:3]"), "reads acoustic[0:3], which no earlier stage writes"),
        (("writes: acoustic[0:2]", "writes: semantic"), "a 'coarse' stage writes the acoustic stream, not semantic"),
        (("role: fine", "role: loud"), "unknown role 'loud'; allowed: semantic, coarse, fine, acoustic"),
        (("conditioning: none", "conditioning: sideways"), "unknown conditioning 'sideways'; allowed: prefix, cross, none"),
        (("sampler: greedy", "sampler: greedy\n    guidance_scale: 3"), "guidance needs conditioning"),
        (("writes: acoustic[2:4]", "writes: acoustic[4:2]"), "'acoustic[4:2]' is an empty codebook range"),
        (("writes: acoustic[2:4]", "writes: accoustic"), "'accoustic' is not a stream: expected one of semantic, acoustic"),
        (("codebook_size: 64", "codebook_size: '64'"), "tokenizer 'tiny-codec': expected int, got str '64'"),
        (("output: pooled", "output: pooed"), "invalid value 'pooed': expected one of 'pooled', 'sequence'"),
        (("{d_model: 32, layers: 1, heads: 2}", "{d_model: 30, layers: 1, heads: 4}"), "d_model"),
        (("name: semantic\n", "name: coarse\n"), "duplicate stage name 'coarse'"),
    ],
)
def test_compatibility_problems(registry, write_spec, change, expected):
    path = write_spec(TINY_SPEC.replace(*change, 1))
    lines = problems_of(path, registry)
    assert any(expected in line for line in lines), lines
    assert all(line.startswith(f"{path}:") for line in lines)


def test_semantic_stream_needs_a_semantic_tokenizer(registry, write_spec):
    path = write_spec(TINY_SPEC.replace("semantic_tokenizer: {name: mel-kmeans, params: {frame_rate: 25, vocab_size: 32}}\n", ""))
    lines = problems_of(path, registry)
    assert any("stream 'semantic' needs a 'semantic_tokenizer'" in line for line in lines)


def test_conditioning_without_conditioner_and_cross_with_pooled(registry, write_spec):
    no_cond = write_spec(TINY_SPEC.replace("conditioner: {name: byte-text, params: {dim: 16, output: pooled}}\n", "")
                         .replace("guidance_scale: 2.0", "conditioning: prefix"), "a.yaml")
    assert any("has conditioning 'prefix' but the spec has no 'conditioner'" in l for l in problems_of(no_cond, registry))
    seq_prefix = write_spec(TINY_SPEC.replace("output: pooled", "output: sequence")
                            .replace("guidance_scale: 2.0\n  - name: coarse", "conditioning: prefix\n  - name: coarse"), "b.yaml")
    assert any("cross" in l for l in problems_of(seq_prefix, registry))


def test_weights_path_must_exist(registry, write_spec):
    path = write_spec(TINY_SPEC.replace("tokenizer: {name: tiny-codec,", "tokenizer: {name: tiny-codec, weights: ./nope,"))
    [line] = problems_of(path, registry)
    assert ":4: " in line and "weights path" in line and "nope" in line and "does not exist" in line


def test_yaml_syntax_duplicates_and_unsafe_tags(registry, write_spec):
    bad = write_spec("tokenizer: tiny-codec\nstages: [\n", "syntax.yaml")
    assert problems_of(bad, registry)[0].startswith(f"{bad}:3: invalid YAML")
    dup = write_spec("tokenizer: tiny-codec\ntokenizer: tiny-codec\n", "dup.yaml")
    assert problems_of(dup, registry) == [f"{dup}:2: duplicate key 'tokenizer' (first on line 1)"]
    unsafe = write_spec("tokenizer: !!python/object/apply:os.system ['true']\n", "unsafe.yaml")
    assert "unsupported tag" in problems_of(unsafe, registry)[0]
    unsafe_scalar = write_spec("tokenizer: !!python/name:os.system x\n", "unsafe2.yaml")
    assert "could not determine a constructor" in problems_of(unsafe_scalar, registry)[0]
    flow = write_spec(TINY_SPEC.replace("- acoustic[0:2]", "[acoustic[0:2]]").replace("reads:\n      [", "reads: ["), "flow.yaml")
    assert "quote stream ranges" in problems_of(flow, registry)[0]


def test_missing_file_and_empty_spec(registry, write_spec, tmp_path):
    with pytest.raises(SpecError, match="no such spec file or pipeline preset"):
        load_pipeline(tmp_path / "missing.yaml", registry)
    empty = write_spec("", "empty.yaml")
    assert "must be a mapping" in problems_of(empty, registry)[0]
    no_stages = write_spec("tokenizer: tiny-codec\n", "nostages.yaml")
    assert "'stages' must be a non-empty list" in problems_of(no_stages, registry)[0]


def test_plain_dict_specs_are_checked_too(registry):
    import yaml

    tree = yaml.safe_load(TINY_SPEC)
    assert len(check_tree(tree, registry).stages) == 3
    tree["stages"][0]["model"] = "lstm"
    with pytest.raises(SpecError, match="unknown stage model 'lstm'; available: musicgen, transformer"):
        check_tree(tree, registry)


def test_validate_command_exit_codes(cli, tiny_spec, write_spec):
    code, out, err = cli("validate", tiny_spec, "tiny-random")
    assert code == 0 and "valid: 3 stage(s)" in out and err == ""
    bad = write_spec(TINY_SPEC.replace("sampler: greedy", "sampler: gredy"), "bad.yaml")
    code, out, err = cli("validate", tiny_spec, bad)
    assert code == 2
    assert err.strip().splitlines() == [f"{bad}:29: unknown sampler 'gredy'; available: greedy, temperature, top-k, top-p"]
    assert "Traceback" not in err
