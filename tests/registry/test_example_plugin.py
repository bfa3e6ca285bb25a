"""The example third-party package: pip-installed, discovered, listed and used from a spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cadenza-example-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """pip-install the example into a private folder; return an environment that sees it."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(EXAMPLE)],
        check=True, capture_output=True, text=True, cwd=build,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def cadenza(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cadenza.core.cli.main", *map(str, args)],
                          capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_installed_example_is_listed(installed):
    plugins = {p["name"]: p for p in json.loads(cadenza(installed, "plugins", "--json").stdout)}
    assert plugins["min-p"]["distribution"] == "cadenza-example-plugin"
    assert plugins["min-p"]["version"] == "0.1.0" and plugins["min-p"]["error"] is None
    components = json.loads(cadenza(installed, "components", "--kind", "sampler", "--json").stdout)
    entry = next(c for c in components if c["name"] == "min-p")
    assert entry["plugin"] == "min-p" and entry["params"] == {"min_p": 0.1, "temperature": 1.0}


@pytest.mark.slow
def test_installed_example_is_usable_from_a_spec(installed, tmp_path):
    from tiny_specs import TINY_SPEC

    spec = tmp_path / "minp.yaml"
    spec.write_text(TINY_SPEC.replace("sampler: greedy", "sampler: {name: min-p, params: {min_p: 0.2}}"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_SPEC.replace("sampler: greedy", "sampler: {name: min-p, params: {min_p: 2.0}}"))
    assert cadenza(installed, "validate", spec).returncode == 0
    result = cadenza(installed, "validate", bad)
    assert result.returncode == 2 and "min_p must be in (0, 1], got 2.0" in result.stderr
    out = tmp_path / "out.wav"
    result = cadenza(installed, "generate", "a calm harp", "-p", spec, "-s", "0.5", "-o", out, "-q")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(out.with_suffix(".json").read_text())
    fine_sampler = next(c for c in sidecar["components"] if c["slot"] == "stages.fine.sampler")
    assert fine_sampler == {"slot": "stages.fine.sampler", "name": "min-p", "kind": "sampler", "plugin": "min-p",
                            "distribution": "cadenza-example-plugin", "version": "0.1.0"}


def test_without_the_example_min_p_is_unknown(cli, write_spec):
    from tiny_specs import TINY_SPEC

    spec = write_spec(TINY_SPEC.replace("sampler: greedy", "sampler: min-p"))
    code, _, err = cli("validate", spec)
    assert code == 2 and "unknown sampler 'min-p'" in err
