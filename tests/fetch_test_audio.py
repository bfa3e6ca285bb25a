"""Put the real recordings the tests run on into tests/data/ (run by setup.sh; idempotent).

The ``encodec`` source distribution ships two real music recordings, ``test_24k.wav`` and
``test_48k.wav``; the installed package does not include them, so they are taken from the
sdist that pip downloads. Nothing is committed to this repository.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
FILES = ("test_24k.wav", "test_48k.wav")
SDIST = "encodec==0.1.1"


def main() -> int:
    if all((DATA / name).exists() for name in FILES):
        return 0
    DATA.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        "--no-build-isolation", SDIST, "-d", tmp], check=True)
        [archive] = Path(tmp).glob("encodec-*.tar.gz")
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if name in FILES and member.isfile():
                    target = DATA / name
                    with tar.extractfile(member) as src:
                        target.write_bytes(src.read())
    missing = [name for name in FILES if not (DATA / name).exists()]
    if missing:
        print(f"fetch_test_audio: {', '.join(missing)} not found in the {SDIST} sdist", file=sys.stderr)
        return 1
    print(f"fetch_test_audio: {', '.join(FILES)} in {DATA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
