"""A long-lived ``cadenza`` process for the hostile-input corpus: one command line per request.

Starting Python and importing torch costs seconds, far more than most hostile inputs take to
refuse, so the corpus runs every case in this one process, as ``cadenza.core.cli.main.main``
would run it from a shell. The parent (``test_hostile_inputs.py``) kills and restarts it when a
case hangs. Requests and replies are JSON lines on private copies of stdin and stdout; the
case itself sees an empty stdin and its stdout and stderr are captured for the reply.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import sys


def serve() -> None:
    requests = os.fdopen(os.dup(0), "r", encoding="utf-8")
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)  # a case that reads stdin reads nothing instead of the next request
    os.dup2(null, 1)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file-size limit shows as EFBIG, like a full disk

    import torch

    from cadenza.core.cli.main import main
    from cadenza.registry import set_registry

    torch.set_num_threads(1)
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in requests:
        request = json.loads(line)
        os.chdir(request["cwd"])
        set_registry(None)
        limit = request.get("file_size_limit")
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        out, err = io.StringIO(), io.StringIO()
        try:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(request["argv"])
                except SystemExit as exc:  # argparse (--help, usage errors)
                    code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - whatever escaped main() is the finding
            code, err = -1, io.StringIO(f"escaped main(): {type(exc).__name__}: {exc}")
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        replies.write(json.dumps({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}) + "\n")
        replies.flush()


if __name__ == "__main__":
    sys.exit(serve())
