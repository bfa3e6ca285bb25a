"""`cadenza new-plugin`: every kind's package installs, passes its own tests, is discovered and used."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cadenza.plugins.workflows.new_plugin.command import HOOKS, plugin_names, render, write_plugin
from cadenza.testing import tiny_spec

KINDS = tuple(HOOKS)


@pytest.mark.parametrize("kind", KINDS)
def test_every_template_field_is_filled_and_the_code_compiles(kind):
    files = render("cadenza-snac", kind)
    assert set(files) == {"pyproject.toml", "README.md", "cadenza_snac/__init__.py", "cadenza_snac/component.py",
                          "tests/test_cadenza_snac_plugin.py", "tests/test_cadenza_snac_component.py"}
    for path, text in files.items():
        assert not re.search(r"\{\{\w+\}\}", text), path
        if path.endswith(".py"):
            compile(text, path, "exec")
    assert 'snac = "cadenza_snac"' in files["pyproject.toml"] and f"def {HOOKS[kind]}(register)" in files["cadenza_snac/__init__.py"]
    assert "import torch" not in files["cadenza_snac/__init__.py"]


@pytest.mark.parametrize("name, module, component", [
    ("cadenza-snac", "cadenza_snac", "snac"), ("My.Codec_2", "my_codec_2", "my-codec-2"), ("x", "x", "x")])
def test_names_derived_from_the_distribution_name(name, module, component):
    names = plugin_names(name, "sampler")
    assert (names["module"], names["component"], names["dist"]) == (module, component, name)


@pytest.mark.parametrize("name", ["9lives", "_x", "x-", "has space", "cadenza", "json", "class", ""])
def test_unusable_names_are_one_line_errors(cli, tmp_path, name):
    code, _, err = cli("new-plugin", name, "--kind", "metric", "--out", tmp_path)
    assert code == 2 and err.count("\n") == 1 and err.startswith("cadenza new-plugin: error: invalid plugin name")
    assert not list(tmp_path.iterdir())


def test_an_existing_folder_is_never_overwritten(cli, tmp_path):
    code, out, _ = cli("new-plugin", "cadenza-loud", "--kind", "metric", "--out", tmp_path)
    assert code == 0 and "metric 'loud'" in out
    readme = tmp_path / "cadenza-loud" / "README.md"
    readme.write_text("mine")
    code, _, err = cli("new-plugin", "cadenza-loud", "--kind", "sampler", "--out", tmp_path)
    assert code == 2 and "already exists; not overwriting it" in err and err.count("\n") == 1
    assert readme.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["cadenza-loud"]


# -- one generated package per kind, pip-installed into a private folder -------------------------

COMPONENT = {kind: f"gen-{kind.replace('_', '-')}" for kind in KINDS}


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> dict:
    src, target = tmp_path_factory.mktemp("plugins"), tmp_path_factory.mktemp("site")
    folders = [write_plugin(f"cadenza-{COMPONENT[kind]}", kind, src) for kind in KINDS]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), *map(str, folders)],
                   check=True, capture_output=True, text=True, cwd=tmp_path_factory.mktemp("build"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("CADENZA_LOAD_PLUGINS", None)
    return {"src": src, "folders": folders, "env": env}


def run(kit: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=kit["env"], cwd=cwd)


@pytest.mark.slow
def test_generated_plugins_pass_their_own_tests(kit):
    # Their tests use the cadenza.testing fixtures, loaded through the pytest11 entry point.
    result = run(kit, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", kit["src"],
                 *[folder / "tests" for folder in kit["folders"]], cwd=kit["src"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout  # installed: discovery test ran


@pytest.mark.slow
def test_generated_plugins_are_discovered(kit):
    plugins = {p["name"]: p for p in json.loads(run(kit, "-m", "cadenza.core.cli.main", "plugins", "--json").stdout)}
    components = json.loads(run(kit, "-m", "cadenza.core.cli.main", "components", "--json").stdout)
    for kind in KINDS:
        name = COMPONENT[kind]
        assert plugins[name]["distribution"] == f"cadenza-{name}" and plugins[name]["error"] is None
        entry = next(c for c in components if c["name"] == name)
        assert entry["kind"] == kind and entry["plugin"] == name and entry["version"] == "0.1.0"


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
