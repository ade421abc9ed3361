"""`data = ...` in a spec: a data set nindsl knows, and a path that stays in the project.

A path written in a spec is resolved against the spec's folder (not the working folder)
and must stay inside the project folder once symbolic links are followed, like an import
(RELIABILITY.md); `nindsl train --data PATH` on the command line may name any path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..kernel.diagnostics import Collector, Span, did_you_mean
from . import ir


@dataclass(frozen=True)
class DataPlace:
    """Where a spec's data paths are resolved (its folder) and must stay (the project folder);
    None for a spec given as text."""

    folder: Path | None
    root: Path | None


def data_known(data: str, span: Span | None, errors: Collector) -> bool:
    """`data` names a data set nindsl knows (`KIND` or `KIND:PATH`) or an `.npz` file."""
    kind, sep, path = data.partition(":")
    if data.endswith(".npz") and kind not in ir.DATA_KINDS or kind in ir.DATA_KINDS and (kind != "digits" or not sep):
        return True
    known = ", ".join(f"`{k}`" for k in ir.DATA_KINDS)
    errors.error("E0107", f"unknown data set `{data}`", span,
                 did_you_mean(kind, ir.DATA_KINDS) or f"known: {known} (a folder follows with `KIND:DIR` or "
                                                      "`nindsl train --data KIND:DIR`), or FILE.npz")
    return False


def data_inside(data: str, span: Span | None, errors: Collector, place: DataPlace) -> str | None:
    """A data path written in a spec, resolved against the spec's folder (not the working
    folder) and confined to the project after following symbolic links, like an import
    (RELIABILITY.md); None after a located error. `nindsl train --data PATH` on the command
    line may name any path."""
    kind, sep, path = data.partition(":")
    if not sep:
        kind, path = "", data if data.endswith(".npz") else ""
    if not path:
        return data  # `digits`: nothing to read from the disk
    if os.path.isabs(path):
        errors.error("E0303", f"data path `{path}` is absolute", span,
                     "paths in a spec are relative to the spec's folder; pass this one with `nindsl train --data`")
        return None
    folder = place.folder or Path()  # a spec given as text: the working folder is its folder
    root = place.root or folder
    try:
        written = Path(os.path.normpath(os.path.abspath(folder / path)))
        target = (folder / path).resolve()  # (what does not exist yet resolves as written)
        inside = root.resolve()
    except RuntimeError:  # (Python 3.11 raises it for a symlink loop)
        errors.error("E0301", f"data path `{path}`: a symbolic link leads to itself", span)
        return None
    except OSError as error:
        errors.error("E0301", f"data path `{path}`: {error.strerror or error}", span)
        return None
    if not written.is_relative_to(Path(os.path.abspath(root))):
        errors.error("E0303", f"data path `{path}` leads outside the project folder", span,
                     "paths in a spec stay inside the project; pass this one with `nindsl train --data`")
        return None
    if not target.is_relative_to(inside):
        errors.error("E0303", f"data path `{path}` leads outside the project folder through a symbolic link "
                              f"(to `{target}`)", span,
                     "paths in a spec stay inside the spec's folder, links followed; pass this one with "
                     "`nindsl train --data`")
        return None
    if place.folder is None:
        return data
    return f"{kind}:{target}" if kind else str(target)
