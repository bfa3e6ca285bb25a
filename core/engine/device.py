"""The ``--device`` a user names, checked against what this machine has before anything runs.

torch accepts ``cuda`` on a machine without a GPU until the first tensor moves (then fails
deep inside a model with a driver message), and ``foo:bar`` fails with an error that names no
option. Every command with a ``--device`` is checked here once, by the command line.
"""

from __future__ import annotations

from cadenza.core.errors import InputError

KNOWN = "cpu, cuda, cuda:N or mps"


def check_device(name: str) -> str:
    """``name`` when it is a device this machine can run on; one InputError otherwise."""
    import torch  # heavy: only commands that run models get here

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"--device {name!r}: not a device name ({KNOWN})") from None
    if device.type == "cpu":
        if device.index not in (None, 0):
            raise InputError(f"--device {name!r}: the CPU is device cpu (or cpu:0)")
        return name
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name!r}: no CUDA GPU is available to torch {torch.__version__} here; "
                             "use --device cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(f"--device {name!r}: this machine has {count} CUDA device{'s' * (count != 1)} "
                             f"(cuda:0 to cuda:{count - 1})")
        return name
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"--device {name!r}: Apple's MPS is not available here; use --device cpu")
        return name
    raise InputError(f"--device {name!r}: Cadenza runs on {KNOWN}, not {device.type!r}")
