"""Atomic writes: a temporary file in the target's folder, flushed, then renamed.

A failed or killed run leaves the previous output intact and no partial file
(RELIABILITY.md, rule 4).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .diagnostics import NindslError

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: temporary files get the modes a plain open() would give


def _refuse(path: Path, error: OSError) -> NindslError:
    reason = error.strerror or str(error)
    return NindslError.one("E0301", f"cannot write `{path}`: {reason}", None,
                           "check the folder exists, is writable and has free space")


def ensure_folder(path: str | Path, what: str) -> Path:
    """Create ``path`` (and its parents), or raise a user error naming ``what`` it is for."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NindslError.one("E0301", f"cannot create {what} `{path}`: {error.strerror}", None) from None
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as error:
        raise _refuse(path, error) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name; it replaces ``path`` only when complete."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        staging.chmod(0o777 & ~_UMASK)
    except OSError as error:
        raise _refuse(path, error) from None
    try:
        yield staging
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            os.replace(path, old)
        os.replace(staging, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as error:
        raise _refuse(path, error) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
