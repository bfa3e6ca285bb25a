"""`cadenza new-plugin`: every kind's package, and packages of several kinds, install, pass their own
tests, are discovered and used."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from cadenza.plugins.workflows.new_plugin import KINDS as PARSER_KINDS
from cadenza.plugins.workflows.new_plugin.command import write_plugin
from cadenza.plugins.workflows.new_plugin.package import HOOKS, plugin_names, render
from cadenza.testing import tiny_spec

KINDS = tuple(HOOKS)
MULTI = ("tokenizer", "sampler", "pipeline")


def check_files(files: dict[str, str]) -> None:
    """Every field filled; Python compiles, YAML and TOML parse."""
    for path, text in files.items():
        assert not re.search(r"\{\{\w+\}\}", text), path
        if path.endswith(".py"):
            compile(text, path, "exec")
        elif path.endswith(".yaml"):
            assert isinstance(yaml.safe_load(text), dict), path
        elif path.endswith(".toml"):
            tomllib.loads(text)


@pytest.mark.parametrize("kind", KINDS)
def test_every_template_field_is_filled_and_the_code_compiles(kind):
    files = render("cadenza-snac", [kind])
    implementation = "cadenza_snac/snac.yaml" if kind == "pipeline" else "cadenza_snac/component.py"
    assert set(files) == {"pyproject.toml", "README.md", "cadenza_snac/__init__.py", implementation,
                          "tests/test_cadenza_snac_plugin.py", "tests/test_cadenza_snac_component.py"}
    check_files(files)
    assert 'snac = "cadenza_snac"' in files["pyproject.toml"] and f"def {HOOKS[kind]}(register)" in files["cadenza_snac/__init__.py"]
    assert "import torch" not in files["cadenza_snac/__init__.py"]
    assert ("package-data" in files["pyproject.toml"]) == (kind == "pipeline")


def test_the_parser_offers_every_kind():
    assert tuple(PARSER_KINDS) == KINDS


@pytest.mark.parametrize("kinds", [MULTI, KINDS], ids=["tokenizer+sampler+pipeline", "all"])
def test_several_kinds_make_one_package(kinds):
    files = render("cadenza-snac", list(reversed(kinds)))
    assert files == render("cadenza-snac", kinds)  # the order given does not matter
    check_files(files)
    subpackage = {kind: "presets" if kind == "pipeline" else kind for kind in kinds}
    expected = {"pyproject.toml", "README.md", "cadenza_snac/__init__.py", "tests/test_cadenza_snac_plugin.py"}
    for kind, folder in subpackage.items():
        expected |= {f"cadenza_snac/{folder}/__init__.py", f"tests/test_cadenza_snac_{kind}.py",
                     "cadenza_snac/presets/snac.yaml" if kind == "pipeline" else f"cadenza_snac/{folder}/component.py"}
    assert set(files) == expected

    pyproject = tomllib.loads(files["pyproject.toml"])
    assert pyproject["project"]["entry-points"] == {"cadenza": {"snac": "cadenza_snac"}}
    setuptools = pyproject["tool"]["setuptools"]
    assert setuptools["packages"] == ["cadenza_snac", *(f"cadenza_snac.{subpackage[k]}" for k in kinds)]
    assert setuptools["package-data"] == {"cadenza_snac.presets": ["*.yaml"]}

    gathering = files["cadenza_snac/__init__.py"]
    for kind, folder in subpackage.items():
        assert f"from cadenza_snac.{folder} import {HOOKS[kind]}\n" in gathering
        assert f"def {HOOKS[kind]}(register)" in files[f"cadenza_snac/{folder}/__init__.py"]
    headings = [line for line in files["README.md"].splitlines() if line.startswith("## The ")]
    assert len(headings) == len(kinds) and all(line.endswith("`snac`") for line in headings)
    provides = [f"{kind}:snac" for kind in kinds]
    assert f"PROVIDES = {json.dumps(provides)}" in files["tests/test_cadenza_snac_plugin.py"]

    preset = yaml.safe_load(files["cadenza_snac/presets/snac.yaml"])
    stage = preset["stages"][0]
    names = {"tokenizer": preset["tokenizer"]["name"], "conditioner": preset["conditioner"]["name"],
             "stage_model": stage["model"], "sampler": stage["sampler"]["name"]}
    own = {kind for kind, name in names.items() if name == "snac"}
    assert own == set(kinds) & {"tokenizer", "conditioner", "stage_model", "sampler"}
    assert "import torch" not in gathering


@pytest.mark.parametrize("name, module, component", [
    ("cadenza-snac", "cadenza_snac", "snac"), ("My.Codec_2", "my_codec_2", "my-codec-2"), ("x", "x", "x")])
def test_names_derived_from_the_distribution_name(name, module, component):
    names = plugin_names(name)
    assert (names["module"], names["component"], names["dist"]) == (module, component, name)


@pytest.mark.parametrize("name", ["9lives", "_x", "x-", "has space", "cadenza", "json", "class", ""])
def test_unusable_names_are_one_line_errors(cli, tmp_path, name):
    code, _, err = cli("new-plugin", name, "--kind", "metric", "--out", tmp_path)
    assert code == 2 and err.count("\n") == 1 and err.startswith("cadenza new-plugin: error: invalid plugin name")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kinds, message", [
    (["sampler", "pipeline", "sampler"], "kind 'sampler' is given 2 times; a package provides each kind once"),
    (["sampler", "vocoder"], "argument --kind: invalid choice: 'vocoder'"),
])
def test_repeated_or_unknown_kinds_are_one_line_errors(cli, tmp_path, kinds, message):
    code, _, err = cli("new-plugin", "cadenza-twice", *[arg for kind in kinds for arg in ("--kind", kind)],
                       "--out", tmp_path)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.iterdir())


def test_an_existing_folder_is_never_overwritten(cli, tmp_path):
    code, out, _ = cli("new-plugin", "cadenza-loud", "--kind", "metric", "--out", tmp_path)
    assert code == 0 and "metric 'loud'" in out
    readme = tmp_path / "cadenza-loud" / "README.md"
    readme.write_text("mine")
    code, _, err = cli("new-plugin", "cadenza-loud", "--kind", "sampler", "--out", tmp_path)
    assert code == 2 and "already exists; not overwriting it" in err and err.count("\n") == 1
    assert readme.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["cadenza-loud"]


def test_several_kinds_from_the_command_line(cli, tmp_path):
    code, out, _ = cli("new-plugin", "cadenza-duo", "--kind", "sampler", "--kind", "tokenizer", "--out", tmp_path)
    assert code == 0 and "acoustic tokenizer (codec) 'duo', sampler 'duo' in module cadenza_duo" in out
    written = {str(p.relative_to(tmp_path / "cadenza-duo")) for p in (tmp_path / "cadenza-duo").rglob("*") if p.is_file()}
    assert written == set(render("cadenza-duo", ["tokenizer", "sampler"]))


# -- generated packages, pip-installed into one private folder --------------------------------------
# One package per kind, and two of several kinds in one package: MULTI and every kind.

COMPONENT = {kind: f"gen-{kind.replace('_', '-')}" for kind in KINDS}
PACKAGES = {f"cadenza-{COMPONENT[kind]}": (kind,) for kind in KINDS} | {"cadenza-gen-multi": MULTI,
                                                                        "cadenza-gen-all": KINDS}


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> dict:
    src, target = tmp_path_factory.mktemp("plugins"), tmp_path_factory.mktemp("site")
    folders = [write_plugin(name, kinds, src) for name, kinds in PACKAGES.items()]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), *map(str, folders)],
                   check=True, capture_output=True, text=True, cwd=tmp_path_factory.mktemp("build"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("CADENZA_LOAD_PLUGINS", None)
    return {"src": src, "target": target, "folders": folders, "env": env}


def run(kit: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=kit["env"], cwd=cwd)


def cadenza_json(kit: dict, *args: str) -> list[dict]:
    result = run(kit, "-m", "cadenza.core.cli.main", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_generated_plugins_pass_their_own_tests(kit):
    # Their tests use the cadenza.testing fixtures, loaded through the pytest11 entry point.
    result = run(kit, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--rootdir", kit["src"],
                 *[folder / "tests" for folder in kit["folders"]], cwd=kit["src"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "SKIPPED" not in result.stdout  # installed: discovery test ran
    # One test file per kind plus the plugin's own, in every package, and each of them passed.
    files = {str(path.relative_to(kit["src"])) for folder in kit["folders"] for path in (folder / "tests").glob("test_*.py")}
    assert len(files) == sum(len(kinds) + 1 for kinds in PACKAGES.values())
    passed = {line.split("::")[0] for line in result.stdout.splitlines() if line.rstrip().endswith("%]") and " PASSED " in line}
    assert passed == files


@pytest.mark.slow
def test_generated_plugins_are_discovered(kit):
    plugins = {p["name"]: p for p in cadenza_json(kit, "plugins")}
    components = {(c["kind"], c["name"]): c for c in cadenza_json(kit, "components")}
    presets = {p["name"]: p for p in cadenza_json(kit, "pipelines")}
    for dist, kinds in PACKAGES.items():
        name = dist.removeprefix("cadenza-")
        plugin = plugins[name]
        assert plugin["distribution"] == dist and plugin["error"] is None and plugin["version"] == "0.1.0"
        assert sorted(plugin["components"]) == sorted(f"{kind}:{name}" for kind in kinds)
        for kind in kinds:
            if kind == "pipeline":  # shipped as package data: the installed copy, not the source's
                preset = presets[name]
                assert preset["plugin"] == name and preset["description"]
                assert Path(preset["path"]).is_file() and Path(preset["path"]).is_relative_to(kit["target"])
            else:
                entry = components[(kind, name)]
                assert entry["plugin"] == name and entry["distribution"] == dist and entry["version"] == "0.1.0"


@pytest.mark.slow
def test_generated_presets_validate_and_generate(kit, tmp_path):
    names = [dist.removeprefix("cadenza-") for dist, kinds in PACKAGES.items() if "pipeline" in kinds]
    result = run(kit, "-m", "cadenza.core.cli.main", "validate", *names, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.count(": valid:") == len(names), result.stdout + result.stderr

    out = tmp_path / "multi.wav"
    result = run(kit, "-m", "cadenza.core.cli.main", "generate", "a calm harp", "--pipeline", "gen-multi",
                 "-s", "0.3", "-o", out, "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(out.with_suffix(".json").read_text())
    used = {c["kind"]: c["distribution"] for c in sidecar["components"]}
    assert used["tokenizer"] == used["sampler"] == "cadenza-gen-multi"  # its own parts
    assert used["conditioner"] == used["stage_model"] == "cadenza"  # built-in tiny ones elsewhere


@pytest.mark.slow
def test_generated_components_validate_and_generate_from_specs(kit, tmp_path):
    specs = {kind: tiny_spec(**{kind: COMPONENT[kind]}) for kind in ("tokenizer", "conditioner", "sampler")}
    specs["stage_model"] = tiny_spec(stage_model=COMPONENT["stage_model"], layout="musiclm")
    specs["together"] = tiny_spec(tokenizer=COMPONENT["tokenizer"], conditioner=COMPONENT["conditioner"],
                                  sampler=COMPONENT["sampler"], guidance_scale=2.0)
    bad = tiny_spec(sampler={"name": COMPONENT["sampler"], "params": {"temperature": -1.0}})
    paths = []
    for name, spec in {**specs, "bad": bad}.items():
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump(spec, sort_keys=False))
    result = run(kit, "-m", "cadenza.core.cli.main", "validate", *paths[:-1])
    assert result.returncode == 0 and result.stdout.count(": valid:") == len(specs), result.stderr
    result = run(kit, "-m", "cadenza.core.cli.main", "validate", paths[-1])
    assert result.returncode == 2 and "temperature must be a finite number >= 0, got -1.0" in result.stderr

    out = tmp_path / "out.wav"
    result = run(kit, "-m", "cadenza.core.cli.main", "generate", "a calm harp", "-p", tmp_path / "together.yaml",
                 "-s", "0.3", "-o", out, "-q")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(out.with_suffix(".json").read_text())
    used = {c["distribution"] for c in sidecar["components"]}
    assert {f"cadenza-{COMPONENT[k]}" for k in ("tokenizer", "conditioner", "sampler")} <= used


@pytest.mark.slow
def test_generated_metric_scores_audio(kit):
    code = ("import json; from cadenza.core.spec.params import structure_config; from cadenza.registry import get_registry;"
            "from cadenza.testing import synth_tones;"
            f"e = get_registry().get('metric', '{COMPONENT['metric']}');"
            "print(json.dumps(e.build(structure_config(e.config, {}))(synth_tones(seconds=1.0))))")
    result = run(kit, "-c", code)
    assert result.returncode == 0, result.stderr
    assert -40 < json.loads(result.stdout)["rms_dbfs"] < 0
