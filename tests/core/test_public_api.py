"""``cadenza.core`` is where a plugin author imports the contract from: every name it lists
resolves, and the contract names come without torch (only the engine's classes bring it)."""

import subprocess
import sys

import cadenza.core as core


def test_every_public_name_resolves():
    for name in core.__all__:
        assert getattr(core, name) is not None, name
    assert {"Steering", "Watermark", "Tokenizer", "StageModel", "hookimpl", "Cascade"} <= set(core.__all__)


def test_the_contract_imports_no_torch():
    code = ("import sys, cadenza.core as c\n"
            "[getattr(c, n) for n in c.__all__ if n not in ('Cascade', 'Generation')]\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
