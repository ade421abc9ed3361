"""Atomic writes: a temporary file in the target's folder, flushed, then renamed.

A failed or killed run leaves the previous output intact and no partial file
(RELIABILITY.md, rule 4). Temporary names carry the writer's process id,
``.NAME.<pid>.<random>.tmp``, so the next write to the same place can tell the leftovers
of a killed writer (its process is gone: removed) from those of a live concurrent one
(left alone).

Nothing of the user's is lost: a file rewritten in place keeps its permission bits, a
symbolic link stays a link (its target is rewritten), and a caller says, with a
:class:`Kind`, what its output is and so what it may replace: anything else already at the
path (a folder of the user's files, a file of another kind) is refused, not overwritten.
:mod:`nindsl.kernel.outputs` applies the same rule to a command's outputs before it works.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .diagnostics import NindslError

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: temporary files get the modes a plain open() would give


def cannot_write(path: Path, error: OSError) -> NindslError:
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


def regular_file(path: str | Path, what: str, limit: int) -> Path:
    """``path``, once it is known to be a regular file of at most ``limit`` bytes; else a clear
    refusal, before anything is opened (a FIFO would block an open, a device never ends)."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise NindslError.one("E0301", f"no such file `{path}`", None) from None
    except OSError as error:
        raise NindslError.one("E0301", f"cannot read `{path}`: {error.strerror}", None) from None
    if stat.S_ISDIR(info.st_mode):
        raise NindslError.one("E0301", f"`{path}` is a folder; give {what} file", None)
    if not stat.S_ISREG(info.st_mode):
        raise NindslError.one("E0301", f"`{path}` is not a regular file (a device, a FIFO or a socket); give {what} "
                                       "file", None)
    if info.st_size > limit:
        raise NindslError.one("E0401", f"`{path}` is {info.st_size:,} bytes; the most nindsl reads as {what} is "
                                       f"{limit:,}", None)
    return path


# The first bytes of the files nindsl reads (or is handed by mistake), and what each is.
_MAGIC = ((b"\x93NUMPY", "npy"), (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"\x89PNG\r\n\x1a\n", "png"),
          (b"\xff\xd8\xff", "jpeg"), (b"GIF8", "gif"), (b"BM", "bmp"), (b"\x7fELF", "elf"),
          (b"\x1f\x8b", "gzip"), (b"\x80\x02", "pickle"), (b"\x80\x03", "pickle"), (b"\x80\x04", "pickle"),
          (b"\x80\x05", "pickle"))
# ModelProto's fields after ir_version (field 1, a varint: tag 0x08), as protobuf writes them in order:
# producer_name ... graph, opset_import, metadata_props
_ONNX_NEXT = frozenset(b"\x12\x1a\x22\x28\x32\x3a\x42\x72")

#: What each kind is, as messages name it.
KINDS = {"onnx": "an ONNX model", "safetensors": "a safetensors checkpoint", "npy": "a NumPy .npy array",
         "zip": "a zip archive (a NumPy .npz?)", "png": "a PNG image", "jpeg": "a JPEG image", "gif": "a GIF image",
         "bmp": "a BMP image", "elf": "a compiled library (ELF)", "gzip": "a gzip archive",
         "pickle": "a Python pickle", "nin": "a .nin spec", "text": "a text file"}


def file_kind(path: str | Path) -> str | None:
    """What a regular file holds, from its first bytes: a key of :data:`KINDS`, or None when
    it is none of them (or not a regular file: nothing is opened that could block).

    The extension is not trusted: ``model.onnx`` may hold a spec and ``spec.nin`` a model.
    ONNX has no magic number; a ModelProto starts with its ``ir_version`` (tag 0x08, a small
    number) and then another of its fields, which is what is checked.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return None
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return None
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 30 and head[2] in _ONNX_NEXT:
        return "onnx"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= info.st_size - 8:
        return "safetensors"
    if not head or b"\0" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:  # a character cut at the 512th byte is still text
        if error.start < len(head) - 3:
            return None
        text = head[:error.start].decode("utf-8")
    return "nin" if _SPEC_LINE.search(text.lstrip("\ufeff")) else "text"


_SPEC_LINE = re.compile(r"^[ \t]*(network|block|import|let|train)\b", re.MULTILINE)

# What to do with a file of each kind instead.
_USE = {"onnx": "`nindsl inspect` says what it was built from, `nindsl run MODEL.onnx -i ...` runs it and "
                "`nindsl import MODEL.onnx -o SPEC.nin` writes a spec from it",
        "safetensors": "a checkpoint goes with --weights (`nindsl compile SPEC --weights W.safetensors`)",
        "zip": "a checkpoint (.npz) goes with --weights, a data set (.npz) with `nindsl train SPEC --data`",
        "npy": "an input array goes with `nindsl run SPEC -i X.npy`",
        "elf": "give `nindsl run` or `inspect` the artifact folder that holds it (with its manifest.json)",
        "pickle": "nindsl never loads pickles (they can run code): save arrays with numpy.save or safetensors",
        "nin": "`nindsl summary` and `check` read specs; `nindsl compile SPEC -o MODEL.onnx` writes an ONNX model",
        "text": "`nindsl summary` and `check` read .nin specs; `nindsl compile SPEC -o MODEL.onnx` writes an ONNX "
                "model"}
for _image in ("png", "jpeg", "gif", "bmp"):
    _USE[_image] = "an image goes with `nindsl run SPEC -i IMAGE`"


def refuse_kind(path: str | Path, what: str, accepted: tuple[str, ...]) -> None:
    """Refuse ``path`` when its content shows it is a known kind of file other than ``accepted``
    (``what`` the command reads, e.g. "a .nin spec"), saying what it is and where it goes."""
    kind = file_kind(path)
    if kind is None or kind in accepted:
        return
    raise NindslError.one("E0502", f"`{path}` is {KINDS[kind]}, not {what}", None, _USE.get(kind))


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


@dataclass(frozen=True)
class Kind:
    """What an output writes, and which existing files (or folders) are of that kind and so
    may be replaced by it: ``holds(path)`` says, from the content, never from the name."""

    what: str  # as messages name it: "an ONNX model", "a nindsl artifact"
    holds: Callable[[Path], bool]
    folder: bool = False
    # A folder's files that nindsl did not write (refused with their names), when it holds any.
    strangers: Callable[[Path], list[str]] | None = None

    def refusal(self, path: Path) -> str | None:
        """Why ``path`` (which exists) may not be replaced by this output; None when it may."""
        if self.folder and path.is_symlink():
            return f"is a link, not {self.what}"
        if self.folder != path.is_dir() or not self.holds(path):
            kind = "a folder" if path.is_dir() else KINDS.get(file_kind(path) or "", "a file of another kind")
            return f"is {kind}, not {self.what}"
        strangers = self.strangers(path) if self.strangers else []
        if strangers:
            shown = ", ".join(f"`{name}`" for name in strangers[:5]) + (" ..." if len(strangers) > 5 else "")
            return f"holds {shown}, which nindsl did not write"
        return None


#: Any file (and no folder): what an output without a kind of its own may replace.
ANY_FILE = Kind("a file", lambda path: True)


def refuse_replacing(path: str | Path, kind: Kind = ANY_FILE) -> None:
    """Refuse (E0505) when ``path`` exists and may not be replaced by an output of ``kind``."""
    path = Path(path)
    if path.is_symlink() and not kind.folder:
        path = Path(os.path.realpath(path))  # a file output writes the link's target
    if not os.path.lexists(path):
        return
    why = kind.refusal(path)
    if why is not None:
        raise NindslError.one("E0505", f"`{path}` {why}; nindsl replaces only what it wrote", None,
                              "choose another output path, or move that away yourself")


def starts_with(prefix: bytes) -> Callable[[Path], bool]:
    """A ``holds`` test: the file begins with ``prefix`` (a format's magic, a generated header)."""
    def test(path: Path) -> bool:
        try:
            with open(path, "rb") as handle:
                return handle.read(len(prefix)) == prefix
        except OSError:
            return False
    return test


def of_kind(*kinds: str) -> Callable[[Path], bool]:
    """A ``holds`` test: :func:`file_kind` says the file is one of ``kinds``."""
    return lambda path: file_kind(path) in kinds


def atomic_write_bytes(path: str | Path, data: bytes, kind: Kind = ANY_FILE) -> None:
    """Write ``data`` to ``path`` atomically. An existing file keeps its mode and, when ``path``
    is a symbolic link, its link (the target is written); it is replaced only when it is of
    the ``kind`` this output writes (:func:`refuse_replacing`)."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    refuse_replacing(path, kind)
    staged = stage(path, data)
    try:
        os.replace(staged, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(staged)
        raise cannot_write(path, error) from None


def stage(path: Path, data: bytes) -> Path:
    """``data`` in a temporary file beside ``path`` (flushed to disk, with the mode ``path`` has
    or a new file would get), ready to be renamed onto it; a failure is a user error."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_UMASK
    tmp = None
    remove_leftovers(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent or ".")
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        staged, tmp = Path(tmp), None
        return staged
    except OSError as error:
        raise cannot_write(path, error) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str, kind: Kind = ANY_FILE) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), kind)


def rewrite(path: str | Path, data: bytes) -> None:
    """Give the user's own file ``path`` new content (what ``fmt`` does to a spec), keeping it the
    same file: refused when this user may not write it (a folder that lets the user replace it
    is not a licence to); a file with other hard links, or owned by someone else, is written in
    place so that its links and owner stay; any other file atomically, as every output is."""
    path = Path(os.path.realpath(path))
    try:
        info = os.stat(path)
    except OSError as error:
        raise cannot_write(path, error) from None
    if not os.access(path, os.W_OK):
        raise NindslError.one("E0301", f"cannot write `{path}`: it is read-only for you", None,
                              "make it writable first, or print the result with --stdout")
    if info.st_nlink == 1 and info.st_uid == os.geteuid():
        atomic_write_bytes(path, data)
        return
    try:
        with open(path, "r+b") as handle:
            handle.write(data)
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise cannot_write(path, error) from None


def read_json_object(path: Path) -> dict:
    """The JSON object in ``path``; a missing, unreadable or non-object file reads as empty
    (the bookkeeping files beside a tuning database are rewritten whole, never trusted)."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError):
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
def atomic_directory(path: str | Path, kind: Kind) -> Iterator[Path]:
    """Build a folder under a temporary name; it replaces ``path`` only when complete, and
    only when ``path`` is absent or a folder of the ``kind`` this output writes (never a
    file, a link, or a folder holding anything nindsl did not write)."""
    path = Path(path)
    refuse_replacing(path, kind)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)
        staging = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent))
        staging.chmod(0o777 & ~_UMASK)
    except OSError as error:
        raise cannot_write(path, error) from None
    try:
        yield staging
        _swap_in(staging, path)
    except OSError as error:
        raise cannot_write(path, error) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
