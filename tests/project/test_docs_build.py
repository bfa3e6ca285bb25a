"""The documentation site builds with `mkdocs build --strict`: no broken link, anchor or nav entry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                            capture_output=True, text=True, cwd=ROOT)
    assert "No module named mkdocs" not in result.stderr, "mkdocs is missing: pip install -e '.[dev]'"
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WARNING" not in result.stderr
    for page in ("getting-started", "hooks", "cli", "components-params", "plugins"):
        assert (tmp_path / "site" / page / "index.html").exists()
