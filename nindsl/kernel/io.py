"""Atomic writes: a temporary file in the target's folder, flushed, then renamed.

A failed or killed run leaves the previous output intact and no partial file
(RELIABILITY.md, rule 4). Temporary names carry the writer's process id,
``.NAME.<pid>.<random>.tmp``, so the next write to the same place can tell the leftovers
of a killed writer (its process is gone: removed) from those of a live concurrent one
(left alone).
"""

from __future__ import annotations

import contextlib
import errno
import json
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: someone else's process, alive
        return True
    return True


def remove_leftovers(path: Path) -> int:
    """Remove what killed writers of ``path`` left beside it; return how many were removed."""
    removed = 0
    prefix = f".{path.name}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent or "."):
            if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
                continue
            pid = entry.name[len(prefix):].split(".", 1)[0]
            if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed += 1
    return removed


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    tmp = None
    remove_leftovers(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent or ".")
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


def read_json_object(path: Path) -> dict:
    """The JSON object in ``path``; a missing, unreadable or non-object file reads as empty
    (the bookkeeping files beside a tuning database are rewritten whole, never trusted)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _swap_in(staging: Path, path: Path) -> None:
    """Put the folder ``staging`` at ``path``, moving any folder already there aside.

    A rename onto a non-empty folder fails, so the old one is renamed away first; when
    concurrent writers race for ``path``, the loser of a round moves the winner's
    (complete) folder aside and tries again, so every writer ends with a complete folder
    in place and none fails for the race.
    """
    for _ in range(1000):
        try:
            os.replace(staging, path)
            return
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
                raise
        aside = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent))
        try:
            os.replace(path, aside / "old")
        except FileNotFoundError:
            pass  # another writer moved it first: try again
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    raise OSError(errno.EBUSY, "too many concurrent writers", str(path))


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Build a folder under a temporary name; it replaces ``path`` only when complete."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)
        staging = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent))
        staging.chmod(0o777 & ~_UMASK)
    except OSError as error:
        raise _refuse(path, error) from None
    try:
        yield staging
        _swap_in(staging, path)
    except OSError as error:
        raise _refuse(path, error) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
