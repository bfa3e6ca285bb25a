"""Reading a text file a user names (a spec, a prompts file, a manifest) in bounded time and memory.

A path can be a FIFO with no writer (``open`` blocks forever), a device that never ends
(``/dev/zero``), a folder, a symlink loop, or a file of gigabytes; the bytes can be Latin-1 or
binary. Each of these is one :class:`InputError` naming the file and the reason, raised before
more than ``max_bytes`` are read: the file's type is checked before it is opened, and it is
opened without blocking so a FIFO swapped in after the check cannot hang the read either.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from cadenza.core.errors import InputError

MiB = 1024 * 1024


def describe_os_error(exc: OSError) -> str:
    """The reason of an OS error as a user reads it: "No such file or directory", "File name too long"."""
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links (a symlink loop?)"
    return exc.strerror or type(exc).__name__


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular_file(path: str | Path, what: str) -> os.stat_result:
    """``os.stat(path)`` when it is a regular file; one InputError otherwise (never opens it)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what}: {describe_os_error(exc)}") from None
    except ValueError as exc:  # a NUL byte in the path
        raise InputError(f"{path!r}: cannot read the {what}: {exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: the {what} is {_kind(info.st_mode)}, not a file")
    return info


def read_user_bytes(path: str | Path, what: str, max_bytes: int) -> bytes:
    """The whole file, at most ``max_bytes`` long; never blocks on a FIFO or reads a device."""
    check_regular_file(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what}: {describe_os_error(exc)}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # swapped after the check
            raise InputError(f"{path}: the {what} is not a regular file")
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read the {what}: {describe_os_error(exc)}") from None
    if len(data) > max_bytes:
        raise InputError(f"{path}: the {what} is larger than {max_bytes / MiB:g} MiB; "
                         f"is this the right file?")
    return data


def decode_utf8(data: bytes, path: str | Path, what: str) -> str:
    """UTF-8 text (a leading BOM is dropped); otherwise one line with the byte offset and line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}:{line}: the {what} is not UTF-8 text (byte {exc.start}: "
                         f"0x{data[exc.start]:02x}); save it as UTF-8") from None


def read_user_text(path: str | Path, what: str, max_bytes: int) -> str:
    """A user's UTF-8 text file, bounded by ``max_bytes``; every problem is one InputError."""
    return decode_utf8(read_user_bytes(path, what, max_bytes), path, what)
