"""What a command may write, checked before its work, locked while it runs, written all together.

One rule for every output of every command (README, "Trust"). An output path may name

- nothing yet: it is written, and the folders above it are made (and removed again if the
  command fails);
- something of the kind that output writes (:class:`~nindsl.kernel.io.Kind`): an .npy array
  for ``run -o``, an ONNX model for ``compile -o x.onnx``; a spec, a twin, bench records or a
  folder only when nindsl wrote it (a folder: every file in it is one its manifest lists).

It may never name one of the command's inputs (the same file by any path, or a folder that
holds one), nor the path of another of its outputs. All of this is checked by :func:`claim`
before the command does any work, so a refusal costs nothing. While the command runs, each
output is locked (a ``.NAME.lock`` beside it, with the writer's process id): a second nindsl
writing the same path is refused, not interleaved. The command's files are staged beside
their places and renamed into them together when it succeeds (:meth:`Claim.write`): a
command that fails leaves all of its outputs as they were, none half-replaced.

Outputs a command writes as it goes (a training run's checkpoints, a folder TVM builds) are
claimed too, for the checks and the lock, and written by their own atomic writers.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from . import limits
from .diagnostics import NindslError
from .io import Kind, cannot_write, of_kind, refuse_replacing, remove_leftovers, stage, starts_with


def _picture(path: Path) -> bool:
    head = _head(path, 2048)
    return head.startswith((b"\x89PNG\r\n\x1a\n", b"%PDF-")) or head.lstrip().startswith(b"<?xml") and b"<svg" in head


def _head(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def _bench_records(path: Path) -> bool:
    """A JSON list of the records `nindsl bench --json` writes (each with its engine and latency)."""
    if not starts_with(b"[")(path) or path.stat().st_size > limits.MAX_RECORDS_BYTES:
        return False
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(records, list) and all(isinstance(r, dict) and {"engine", "median_ms"} <= r.keys()
                                             for r in records)


def listed_folder(what: str, manifest: str, derived: Callable[[Path], bool] = lambda relative: False) -> Kind:
    """A folder nindsl wrote: it has the JSON ``manifest``, and every file under it is the
    manifest itself, one its ``files`` names (paths relative to it: a list, or a table's keys),
    or one ``derived`` from those (Python's ``__pycache__``, for a bundle that has run)."""
    def listed(value: dict) -> list[str]:
        files = value.get("files")
        return [name for name in files if isinstance(name, str)] if isinstance(files, (list, dict)) else []

    def value(folder: Path):
        try:
            if (folder / manifest).stat().st_size > limits.MAX_MANIFEST_BYTES:
                return None
            return json.loads((folder / manifest).read_text())
        except (OSError, ValueError, RecursionError):
            return None

    def strangers(folder: Path) -> list[str]:
        known = {manifest, *listed(value(folder))}
        relative = (p.relative_to(folder) for p in folder.rglob("*") if p.is_symlink() or not p.is_dir())
        return sorted(str(p) for p in relative if str(p) not in known and not derived(p))

    return Kind(what, lambda folder: isinstance(value(folder), dict), folder=True, strangers=strangers)


# What each file output writes, and so what it may replace.
NPY = Kind("a NumPy .npy array", starts_with(b"\x93NUMPY"))
ONNX_MODEL = Kind("an ONNX model", of_kind("onnx"))
CHECKPOINT = Kind("a safetensors checkpoint", of_kind("safetensors"))
PNG = Kind("a PNG image", starts_with(b"\x89PNG\r\n\x1a\n"))
PICTURE = Kind("a picture (PNG, SVG or PDF)", _picture)
TWIN = Kind("a twin nindsl generated", starts_with(b'"""PyTorch twin of'))
IMPORTED_SPEC = Kind("a spec nindsl imported", starts_with(b"# Imported from "))
BENCH_RECORDS = Kind("bench records nindsl wrote", _bench_records)


def real(path: str | Path) -> Path:
    """``path`` absolute, with every link followed: two names of one place compare equal."""
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _refuse(message: str, help: str | None) -> NindslError:
    return NindslError.one("E0505", message, None, help)


@dataclass(frozen=True)
class Output:
    """One output of a command: the option that names it, its path and what it writes."""

    option: str  # as the command line spells it: "-o", "--weights-out"
    path: Path
    kind: Kind


@dataclass
class Claim:
    """The outputs of one command while it runs (see the module docstring); use :func:`claim`."""

    outputs: dict[str, Output]
    _locks: list[tuple[Path, int]] = field(default_factory=list)
    _staged: dict[str, Path] = field(default_factory=dict)
    _made: list[Path] = field(default_factory=list)

    def path(self, option: str) -> Path:
        return self.outputs[option].path

    def write(self, option: str, data: bytes) -> None:
        """Stage ``data`` for ``option``'s path; it takes its place when the command succeeds."""
        staged = self._staged.pop(option, None)
        if staged is not None:
            staged.unlink(missing_ok=True)
        self._staged[option] = stage(self._target(option), data)

    def _target(self, option: str) -> Path:
        path = self.outputs[option].path
        return real(path) if path.is_symlink() else path  # a link stays a link: its target is written

    def commit(self) -> None:
        """Put every staged file in its place, or (when one rename fails) none: those already
        renamed get their old files back."""
        done: list[tuple[Path, Path | None]] = []  # (place, the old file's backup or None), renamed
        backups: list[Path] = []
        several = len(self._staged) > 1  # (one output needs no way back: its rename is the commit)
        try:
            for option, staged in list(self._staged.items()):
                target = self._target(option)
                backup = None
                if several and target.exists():
                    backup = target.with_name(f".{target.name}.{os.getpid()}.old.tmp")
                    os.link(target, backup)
                    backups.append(backup)
                os.replace(staged, target)
                del self._staged[option]
                done.append((target, backup))
        except OSError as error:
            for place, backup in reversed(done):
                with contextlib.suppress(OSError):
                    os.replace(backup, place) if backup else os.unlink(place)
            raise cannot_write(target, error) from None
        finally:
            for backup in backups:
                with contextlib.suppress(OSError):
                    backup.unlink()

    def release(self, succeeded: bool) -> None:
        for staged in self._staged.values():
            with contextlib.suppress(OSError):
                staged.unlink()
        self._staged.clear()
        for lock, fd in reversed(self._locks):
            with contextlib.suppress(OSError):
                lock.unlink()  # (before the close: a waiting writer then locks a new file, never this one)
            os.close(fd)
        self._locks.clear()
        if not succeeded:
            for folder in reversed(self._made):  # folders made for outputs that were never written
                with contextlib.suppress(OSError):
                    folder.rmdir()


@contextlib.contextmanager
def claim(outputs: Iterable[Output | None], inputs: Iterable[str | Path | None] = ()) -> Iterator[Claim]:
    """Check ``outputs`` against the rule, their kinds and the command's ``inputs``, lock them,
    and yield the :class:`Claim`; files written through it take their places when the body
    succeeds. ``None`` entries (an option not given) are skipped."""
    wanted = {o.option: o for o in outputs if o is not None}
    given = [Path(p) for p in inputs if p is not None]
    _check(wanted.values(), given)
    held = Claim(wanted)
    succeeded = False
    try:
        for output in wanted.values():
            held._made += _make_parents(output.path)
            held._locks.append(_lock(output.path))
        yield held
        held.commit()
        succeeded = True
    finally:
        held.release(succeeded)


def _check(outputs: Iterable[Output], inputs: list[Path]) -> None:
    seen: list[Output] = []
    for output in outputs:
        place = real(output.path)
        for given in inputs:
            if not os.path.lexists(given):
                continue
            here = real(given)
            same = os.path.exists(place) and os.path.samefile(place, here)
            if same or (output.kind.folder and _inside(here, place)):
                what = "is" if same else "holds"
                raise _refuse(f"{output.option} `{output.path}` {what} this command's input `{given}`: an output "
                              "never replaces an input", "name the output something else")
        for other in seen:
            there = real(other.path)
            if _inside(place, there) or _inside(there, place):
                raise _refuse(f"{other.option} and {output.option} both name `{output.path}`: a command's outputs "
                              "are different files", "give each output its own path")
        seen.append(output)
        refuse_replacing(output.path, output.kind)


def _make_parents(path: Path) -> list[Path]:
    """Make the folders above ``path`` that are missing; return them (outermost first)."""
    missing = [p for p in reversed(path.absolute().parents) if not p.exists()]
    for folder in missing:
        try:
            folder.mkdir()
        except FileExistsError:
            pass
        except OSError as error:
            raise NindslError.one("E0301", f"cannot create the folder `{folder}` for `{path}`: {error.strerror}",
                                  None) from None
    return missing


def _lock(path: Path) -> tuple[Path, int]:
    """An exclusive lock on writing ``path``: ``.NAME.lock`` beside it, holding the writer's
    process id. Refused at once (never waited for) when another process holds it."""
    place = real(path.parent) / path.name
    lock = place.with_name(f".{place.name}.lock")
    remove_leftovers(place)
    for _ in range(100):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise cannot_write(path, error) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_pid(fd)
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise _refuse(f"`{path}` is being written by another nindsl" + (f" (process {holder})" if holder
                                                                                  else ""),
                              "wait for it to finish, or write somewhere else") from None
            return lock, os.open(os.devnull, os.O_RDONLY)  # a file system without locks: go on unlocked
        try:
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:  # the file is still the lock (not unlinked meanwhile)
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return lock, fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise _refuse(f"`{path}` is being written by other nindsl processes", "wait for them to finish")


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None
