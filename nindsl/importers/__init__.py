"""Importers: other formats' NiN models → a checked `.nin` spec and its weights.

``import_model(path, out)`` picks the reader by the file's suffix (``.onnx``). An importer
reads a model into :class:`Imported` (layers as spec lines, weights under nindsl's names),
and :func:`write_spec` checks the spec with nindsl itself before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from ..kernel.diagnostics import NindslError
from .spec import Imported, write_spec

__all__ = ["Imported", "import_model", "write_spec"]


def import_model(path: str | Path, out: str | Path, weights_out: str | Path | None = None,
                 name: str | None = None) -> Imported:
    """Read ``path`` (ONNX), write the spec to ``out`` and, if asked, the weights to ``weights_out``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from .from_onnx import read_onnx

        imported = read_onnx(path, name)
    else:
        raise NindslError.one("E0504", f"`{path}`: nindsl imports .onnx files", None,
                              "export the model to ONNX (opset 11 or later) first")
    write_spec(imported, out, weights_out)
    return imported
