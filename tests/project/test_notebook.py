"""The notebook in docs/ runs, cell by cell, in a real IPython shell, and leaves the files it promises.

It is run on the `tiny-random` pipeline with short clips (the bundled default would take minutes
on a CPU); everything else is the notebook's own code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import soundfile

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebooks" / "first-music.ipynb"

RUNNER = textwrap.dedent("""
    import json, sys
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    for number, source in enumerate(json.load(sys.stdin)):
        outcome = shell.run_cell(source, store_history=True)
        if not outcome.success:
            print(f"cell {number} failed", file=sys.stderr)
            sys.exit(1)
""")


def code_cells() -> list[str]:
    notebook = json.loads(NOTEBOOK.read_text())
    assert notebook["nbformat"] == 4
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def test_the_notebook_runs_and_writes_its_clips(tmp_path):
    cells = code_cells()
    assert any('Cascade.from_spec("default")' in c for c in cells) and any(".save(" in c for c in cells)
    cells = [c.replace('Cascade.from_spec("default")', 'Cascade.from_spec("tiny-random")').replace("seconds=6", "seconds=1.5")
             for c in cells]
    done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(cells), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stdout, done.stdout[-3000:]
    for name in ("cello", "clip-0", "clip-1"):
        audio, rate = soundfile.read(tmp_path / f"{name}.wav")
        assert len(audio) == round(1.5 * rate)
        assert json.loads((tmp_path / f"{name}.json").read_text())["audio"] == f"{name}.wav"
    assert (tmp_path / "cello.png").stat().st_size > 1000
