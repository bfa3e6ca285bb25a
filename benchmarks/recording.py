"""What every benchmark records beside its figures: the command, the machine, and the files.

Imported by the scripts in this folder (run as ``python benchmarks/NAME.py``, so this folder is
on the path), so that each recorded result says the same things the same way.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

from cadenza.core.files.atomic import write_text


def command_line(argv: list[str] | None) -> str:
    """The command that reproduces this run, as a user would type it."""
    return " ".join(shlex.quote(a) for a in ["python", sys.argv[0], *(sys.argv[1:] if argv is None else argv)])


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info(load_at_start: list[float], threads: bool = True) -> dict[str, Any]:
    """CPU, torch and Python of this machine, and how loaded it was when the run started."""
    import torch

    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "machine": platform.machine(),
                            "processor": platform.processor(), "torch": torch.__version__}
    if threads:
        info["threads"] = torch.get_num_threads()
    info.update(python=platform.python_version(), load_average=load_at_start)
    return info


def write_results(out_dir: Path, name: str, result: dict[str, Any], markdown: str) -> None:
    """``NAME.json`` and ``NAME.md`` in ``out_dir``, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / f"{name}.json", json.dumps(result, indent=2) + "\n")
    write_text(out_dir / f"{name}.md", markdown)
