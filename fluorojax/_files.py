"""Writing files atomically, and checking before any work that an output can be written.

``write_atomic`` writes to a hidden temporary file ``.NAME.tmp-PID`` in the destination's folder
and moves it into place with ``os.replace``: a killed process never leaves a half-written file
under the final name, and a failed write removes its temporary file. Errors name the
destination the caller asked for, never the temporary file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeAlias

StrPath: TypeAlias = "str | os.PathLike[str]"
"""A file or folder name: a string or a path object (``pathlib.Path``)."""


def temp_path(path: Path) -> Path:
    """The hidden temporary file ``write_atomic`` uses for ``path``."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def check_writable(path: StrPath, what: str = "output") -> Path:
    """``path`` as a Path if a file can be written there now: its folder exists and accepts a
    new file, and ``path`` is not a folder. FileNotFoundError / PermissionError /
    IsADirectoryError naming ``path`` otherwise. Nothing is left behind."""
    path = Path(os.fspath(path))
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{what} {str(path)!r}: {str(folder)!r} is a file, not a folder")
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} {str(path)!r}: its folder {str(folder)!r} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a folder, expected a file name")
    probe = temp_path(path)
    try:
        with open(probe, "xb"):
            pass
    except OSError as err:
        raise PermissionError(
            f"{what} {str(path)!r} cannot be written: {err.strerror or err} in {str(folder)!r}"
        ) from None
    probe.unlink()
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"{what} {str(path)!r} exists and cannot be overwritten")
    return path


def write_atomic(path: StrPath, data: bytes | Callable[[BinaryIO], object]) -> Path:
    """Write ``data`` (bytes, or a function that writes to an open binary file) to ``path``
    atomically; returns ``path``. OSError naming ``path`` when the write fails."""
    path = Path(os.fspath(path))
    temp = temp_path(path)
    try:
        with open(temp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
        os.replace(temp, path)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise type(err)(f"cannot write {str(path)!r}: {err.strerror or err}") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path
