"""Discovery: entry points -> plugins -> name tables, with failures isolated per plugin."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types

import attrs
import pytest

from cadenza.core.errors import RegistryError
from cadenza.core.hookspecs import hookimpl
from cadenza.registry import Registry, discover

BUILTIN_PLUGINS = {"transformer", "samplers", "tiny", "presets", "encodec", "dac", "clap", "mulan", "hf-text", "hf-semantic"}


def make_dist(site, dist: str, plugins: dict[str, str], modules: dict[str, str], version: str = "1.0") -> None:
    """Install a (tiny) distribution into ``site`` the way pip lays one out: dist-info + modules."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{name} = {target}" for name, target in plugins.items())
    (info / "entry_points.txt").write_text(f"[cadenza]\n{lines}\n")
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))


GOOD_PLUGIN = """
    import attrs
    from cadenza.core.hookspecs import hookimpl

    @attrs.frozen
    class Cfg:
        scale: float = 1.0

    @hookimpl
    def register_samplers(register):
        register("argmax-too", "cadenza.plugins.samplers.functions:build_greedy", config=Cfg, description="test sampler")
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def test_builtin_plugins_register_through_entry_points(registry):
    assert BUILTIN_PLUGINS <= set(registry.plugins)
    for name in BUILTIN_PLUGINS:
        record = registry.plugins[name]
        assert record.distribution == "cadenza" and record.version and record.error is None
    assert registry.get("stage_model", "transformer").plugin == "transformer"
    assert {"greedy", "temperature", "top-k", "top-p"} <= set(registry.names("sampler"))
    assert "tiny-random" in registry.pipelines


def test_broken_plugin_is_reported_and_the_others_keep_working(site):
    make_dist(site, "cadenza-broken", {"broken": "cadenza_broken_mod"},
              {"cadenza_broken_mod": "import not_a_real_module_xyz\n"})
    make_dist(site, "cadenza-good", {"good": "cadenza_good_mod"}, {"cadenza_good_mod": GOOD_PLUGIN})
    registry = discover(environ={})
    broken = registry.plugins["broken"]
    assert broken.distribution == "cadenza-broken" and broken.version == "1.0"
    assert "ModuleNotFoundError" in broken.error and "not_a_real_module_xyz" in broken.error
    assert registry.get("sampler", "argmax-too").distribution == "cadenza-good"
    assert registry.get("stage_model", "transformer")  # built-ins unaffected
    with pytest.raises(RegistryError, match="broken.*failed to load.*CADENZA_STRICT_PLUGINS"):
        discover(environ={"CADENZA_STRICT_PLUGINS": "1"})


def test_a_plugin_whose_hook_raises_contributes_nothing(site):
    make_dist(site, "cadenza-halfway", {"halfway": "cadenza_halfway_mod"}, {"cadenza_halfway_mod": """
        from cadenza.core.hookspecs import hookimpl

        @hookimpl
        def register_samplers(register):
            register("first-ok", "x:y")
            raise RuntimeError("boom")
    """})
    registry = discover(environ={})
    assert registry.plugins["halfway"].error == "RuntimeError: boom"
    assert "first-ok" not in registry.names("sampler")


def test_bad_registrations_are_the_plugins_error(site):
    make_dist(site, "cadenza-sloppy", {"sloppy": "cadenza_sloppy_mod"}, {"cadenza_sloppy_mod": """
        from cadenza.core.hookspecs import hookimpl

        @hookimpl
        def register_samplers(register):
            register("Bad Name", "x:y")
    """})
    assert "must be lowercase" in discover(environ={}).plugins["sloppy"].error


def test_duplicate_names_are_an_error_naming_both_plugins(site):
    make_dist(site, "cadenza-dup", {"dup": "cadenza_dup_mod"}, {"cadenza_dup_mod": GOOD_PLUGIN.replace("argmax-too", "greedy")})
    registry = discover(environ={})
    with pytest.raises(RegistryError, match="sampler 'greedy' is registered by more than one plugin \\('dup' and 'samplers'\\)"):
        registry.get("sampler", "greedy")
    assert any("'greedy'" in p for p in registry.problems())
    with pytest.raises(RegistryError, match="more than one plugin"):
        discover(environ={"CADENZA_STRICT_PLUGINS": "1"})
    # the allow-list resolves the conflict
    assert discover(environ={"CADENZA_LOAD_PLUGINS": "samplers"}).get("sampler", "greedy").plugin == "samplers"


def test_allow_list_and_dev_plugins(site):
    make_dist(site, "cadenza-good", {"good": "cadenza_good_mod"}, {"cadenza_good_mod": GOOD_PLUGIN})
    only = discover(environ={"CADENZA_LOAD_PLUGINS": "cadenza-good, samplers"})
    assert set(only.plugins) == {"good", "samplers"}
    assert discover(environ={"CADENZA_LOAD_PLUGINS": ""}).plugins == {}
    (site / "my_dev_plugin.py").write_text(textwrap.dedent(GOOD_PLUGIN.replace("argmax-too", "dev-sampler")))
    dev = discover(environ={"CADENZA_LOAD_PLUGINS": "", "CADENZA_PLUGINS": "my_dev_plugin, missing_mod:thing"})
    assert dev.get("sampler", "dev-sampler").plugin == "my_dev_plugin"
    assert "ModuleNotFoundError" in dev.plugins["missing_mod:thing"].error


def test_in_process_plugin_objects_and_unknown_names():
    @attrs.frozen
    class Cfg:
        n: int = 1

    plugin = types.SimpleNamespace(register_metrics=hookimpl(lambda register: register("count", lambda c, ctx: c, config=Cfg)))
    registry = Registry()
    record = registry.add_plugin(plugin, "inline")
    assert record.error is None and record.components == ["metric:count"]
    assert registry.get("metric", "count").build(Cfg(3)) == Cfg(3)
    with pytest.raises(RegistryError, match="unknown metric 'size'; available: count"):
        registry.get("metric", "size")


def test_registration_hooks_are_called_through_pluggy():
    """pluggy's own calling rules hold: a wrapper runs around the plugin's implementations and
    ``tryfirst`` orders them, which calling each implementation's function by hand would skip."""
    @attrs.frozen
    class Cfg:
        n: int = 1

    def metric(name):
        return lambda register: register(name, "x:y", config=Cfg)

    @hookimpl(wrapper=True, specname="register_metrics")
    def around(register):
        register("before", "x:y", config=Cfg)
        result = yield
        register("after", "x:y", config=Cfg)
        return result

    plugin = types.SimpleNamespace(  # not hashable: pluggy's subset_hook_caller could not leave it out
        around=around, later=hookimpl(specname="register_metrics")(metric("later")),
        first=hookimpl(specname="register_metrics", tryfirst=True)(metric("first")))
    registry = Registry()
    other = registry.add_plugin(types.SimpleNamespace(register_metrics=hookimpl(metric("elsewhere"))), "other")
    record = registry.add_plugin(plugin, "ordered")
    assert record.error is None and other.components == ["metric:elsewhere"] and record.hooks == ["register_metrics"]
    assert record.components == ["metric:before", "metric:first", "metric:later", "metric:after"]
    assert {e.name: e.plugin for e in registry.entries("metric")} == {
        "elsewhere": "other", "before": "ordered", "first": "ordered", "later": "ordered", "after": "ordered"}


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def test_discovery_and_listing_import_no_heavy_library():
    out = run_python(
        "import sys, io, contextlib\n"
        "from cadenza.core.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['plugins']); main(['components']); main(['validate', 'tiny-random'])\n"
        "print([m for m in ('torch', 'transformers', 'numpy', 'soundfile') if m in sys.modules])"
    )
    assert out.strip() == "[]"


def test_plugins_and_components_json(cli):
    code, out, _ = cli("plugins", "--json")
    plugins = {p["name"]: p for p in json.loads(out)}
    assert code == 0 and BUILTIN_PLUGINS <= set(plugins)
    assert plugins["transformer"]["hooks"] == ["register_stage_models"] and plugins["transformer"]["version"]
    code, out, _ = cli("components", "--json")
    components = json.loads(out)
    kinds = {"tokenizer", "semantic_tokenizer", "conditioner", "stage_model", "sampler", "metric", "melody_source",
             "watermark", "steering"}
    assert all({"name", "kind", "plugin", "description"} <= set(c) and c["kind"] in kinds for c in components)
    code, out, _ = cli("components", "--kind", "sampler", "--json")
    assert {c["kind"] for c in json.loads(out)} == {"sampler"}
    top_k = next(c for c in json.loads(out) if c["name"] == "top-k")
    assert top_k["params"] == {"k": 50, "temperature": 1.0}
    code, out, _ = cli("components")
    assert code == 0 and out.splitlines()[0].split() == ["KIND", "NAME", "PLUGIN", "WEIGHTS", "DESCRIPTION"]
