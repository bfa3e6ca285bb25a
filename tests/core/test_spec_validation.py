"""`cadenza validate`: every problem is one FILE:LINE line naming the key and what is allowed."""

from __future__ import annotations

import pytest

from cadenza.core.errors import SpecError
from cadenza.core.spec.params import ParamsError, structure_config
from cadenza.core.spec.validate import check_tree, load_pipeline
from cadenza.plugins.transformer import TransformerConfig
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
        (("writes: acoustic[2:4]", "writes: acoustic[5:]"), "acoustic[5:] starts past the last codebook of tokenizer"),
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
    with pytest.raises(SpecError, match="unknown stage model 'lstm'; available: musicgen, musicgen-melody, transformer"):
        check_tree(tree, registry)


def test_validate_command_exit_codes(cli, tiny_spec, write_spec):
    code, out, err = cli("validate", tiny_spec, "tiny-random")
    assert code == 0 and "valid: 3 stage(s)" in out and err == ""
    bad = write_spec(TINY_SPEC.replace("sampler: greedy", "sampler: gredy"), "bad.yaml")
    code, out, err = cli("validate", tiny_spec, bad)
    assert code == 2
    assert err.strip().splitlines() == [f"{bad}:29: unknown sampler 'gredy'; available: greedy, temperature, top-k, top-p"]
    assert "Traceback" not in err


# -- every layer in one run ------------------------------------------------------------------
# TINY_SPEC's lines: 2 conditioner, 4 tokenizer, 5 stages, 6-12 semantic (7 role, 8 model,
# 9 params), 13-20 coarse (16 params), 21-29 fine (26 its read, 27 writes, 29 sampler), 30 output.


def edited(*changes: tuple[str, str]) -> str:
    text = TINY_SPEC
    for old, new in changes:
        assert text.count(old) >= 1, old
        text = text.replace(old, new, 1)
    return text


COARSE_PARAMS = "params: {d_model: 32, layers: 1, heads: 2}\n    reads: [semantic]"
SEMANTIC_PARAMS = "params: {d_model: 32, layers: 1, heads: 2}\n    writes: semantic"


def located(lines: list[str], path) -> list[tuple[int, str]]:
    """(line, message) of each problem, checking that each names the file."""
    out = []
    for line in lines:
        assert line.startswith(f"{path}:"), line
        number, message = line[len(f"{path}:"):].split(": ", 1)
        out.append((int(number), message))
    return out


def test_a_params_typo_does_not_hide_a_codebook_range(registry, write_spec):
    path = write_spec(edited((COARSE_PARAMS, COARSE_PARAMS.replace("d_model", "d_mdoel")),
                             ("writes: acoustic[2:4]", "writes: acoustic[2:6]")))
    found = located(problems_of(path, registry), path)
    assert [line for line, _ in found] == [16, 27], found
    assert "unknown key 'd_mdoel' (did you mean 'd_model'?)" in found[0][1]
    # the range is the one problem with those codebooks: not also "codebooks 2-3 are written by no stage"
    assert found[1][1].startswith("acoustic[2:6] asks for codebooks up to 6, but tokenizer 'tiny-codec' has 4")


def test_a_broken_tokenizer_skips_only_what_needs_its_codebooks(registry, write_spec):
    path = write_spec(edited(("channels: 8", "chanels: 8"),
                             (SEMANTIC_PARAMS, SEMANTIC_PARAMS.replace("layers: 1", "layers: 0")),
                             ("- acoustic[0:2]", "- acoustic[0:3]")))
    found = located(problems_of(path, registry), path)
    # an explicit range needs no tokenizer to be checked against what earlier stages wrote
    assert found == [(4, found[0][1]), (9, "stage model 'transformer': layers must be > 0, got 0"),
                     (26, "stage 'fine' reads acoustic[0:3], which no earlier stage writes")], found
    assert "unknown key 'chanels'" in found[0][1]


def test_an_unknown_component_does_not_hide_a_bad_stage_graph(registry, write_spec):
    path = write_spec(edited(("name: byte-text", "name: byte-txet"),
                             ("model: transformer", "model: transfromer"),
                             ("writes: acoustic[2:4]", "writes: acoustic[1:4]")))
    found = located(problems_of(path, registry), path)
    assert [line for line, _ in found] == [2, 8, 27], found
    assert found[0][1].startswith("unknown conditioner 'byte-txet'; available:")
    assert found[1][1].startswith("unknown stage model 'transfromer'; available:")
    assert found[2][1] == "stage 'fine' writes acoustic[1:4], already written by an earlier stage"


def test_a_schema_error_in_one_stage_does_not_hide_a_graph_error_in_another(registry, write_spec):
    path = write_spec(edited(("role: semantic", "role: semantik"), ("- acoustic[0:2]", "- acoustic[0:3]")))
    assert located(problems_of(path, registry), path) == [
        (7, "unknown role 'semantik'; allowed: semantic, coarse, fine, acoustic"),
        (26, "stage 'fine' reads acoustic[0:3], which no earlier stage writes")]


def test_a_stage_that_cannot_be_read_hides_only_what_depends_on_what_it_writes(registry, write_spec):
    semantic_stage = TINY_SPEC[TINY_SPEC.index("  - name: semantic"):TINY_SPEC.index("  - name: coarse")]
    path = write_spec(edited((semantic_stage, "  - the semantic stage\n"), ("writes: acoustic[2:4]", "writes: acoustic[1:4]")))
    # the coarse stage reads 'semantic', which only the unreadable stage could have written: not reported
    assert located(problems_of(path, registry), path) == [
        (6, "a stage must be a mapping, got 'the semantic stage'"),
        (21, "stage 'fine' writes acoustic[1:4], already written by an earlier stage")]


def test_a_stage_without_writes_is_one_problem_and_the_others_are_still_checked(registry, write_spec):
    path = write_spec(edited(("    writes: acoustic[0:2]\n", ""), ("sampler: greedy", "sampler: gredy"),
                             ("writes: acoustic[2:4]", "writes: acoustic[2:9]")))
    found = located(problems_of(path, registry), path)
    # no "reads acoustic[0:2], which no earlier stage writes" nor "codebooks 0-1 written by no stage":
    # the coarse stage may have written them
    assert [line for line, _ in found] == [13, 26, 28], found
    assert found[0][1] == "stage 2 is missing 'writes'"
    assert found[1][1].startswith("acoustic[2:9] asks for codebooks up to 9")
    assert found[2][1].startswith("unknown sampler 'gredy'")


def test_a_conditioner_with_problems_is_not_reported_again_by_its_stages(registry, write_spec):
    for change in [("params: {dim: 16, output: pooled}", "params: {dimm: 16, output: pooled}"),
                   ("output: pooled}}", "output: pooled}, weights: 3}")]:
        path = write_spec(edited(change, ("guidance_scale: 2.0\n  - name: coarse", "conditioning: prefix\n  - name: coarse")))
        [(line, _)] = located(problems_of(path, registry), path)
        assert line == 2


def test_a_missing_semantic_tokenizer_is_reported_once(registry, write_spec):
    path = write_spec(edited(("semantic_tokenizer: {name: mel-kmeans, params: {frame_rate: 25, vocab_size: 32}}\n", "")))
    lines = problems_of(path, registry)
    assert sum("needs a 'semantic_tokenizer'" in line for line in lines) == 1, lines


def test_every_params_problem_of_one_component_at_once(registry, write_spec):
    path = write_spec(edited((SEMANTIC_PARAMS, "params: {d_mdoel: 32, layers: 0, heads: 3, dropout: 2, seed: '1'}\n"
                                               "    writes: semantic")))
    messages = [message for _, message in located(problems_of(path, registry), path)]
    prefix = "stage model 'transformer': "
    assert messages[0].startswith(prefix + "unknown key 'd_mdoel'")
    # the type, then every validator; not "d_model 256 is not divisible by heads 3": d_model was misspelled
    assert messages[1:] == [prefix + "expected int, got str '1'", prefix + "layers must be > 0, got 0",
                            prefix + "dropout must be <= 1.0, got 2.0"]


def test_a_validator_resting_on_a_refused_field_is_not_reported_again():
    with pytest.raises(ParamsError) as info:
        structure_config(TransformerConfig, {"d_model": 32, "heads": 0})  # d_model % heads would divide by zero
    assert info.value.problems == [(("heads",), "heads must be > 0, got 0")]
    with pytest.raises(ParamsError) as info:
        structure_config(TransformerConfig, {"d_model": 30, "heads": 4, "layers": 0})
    assert info.value.problems == [(("d_model",), "d_model 30 is not divisible by heads 4"),
                                   (("layers",), "layers must be > 0, got 0")]


def test_the_command_line_still_cuts_the_list_at_20(cli, write_spec):
    path = write_spec(edited(("output: {seconds: 0.5}", "output: {seconds: 0.5, " + ", ".join(f"k{i}: 1" for i in range(25))
                              + "}"), ("sampler: greedy", "sampler: gredy")), "many.yaml")
    code, out, err = cli("validate", path)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 21 and lines[-1] == "... and 6 more problems", lines
    assert lines[0].startswith(f"{path}:29: unknown sampler 'gredy'")  # file order: line 29 before line 30
    assert all(line.startswith(f"{path}:30: unknown key 'k") for line in lines[1:20])
