"""Importers: other formats' NiN models → a checked `.nin` spec and its weights.

``import_model(path, out)`` picks the reader by the file's suffix (``.onnx``; ``.prototxt`` or
``.pbtxt`` for Caffe, whose weights come from a ``.caffemodel`` given as ``weights``). An importer
reads a model into :class:`Imported` (layers as spec lines, weights under nindsl's names),
and :func:`write_spec` checks the spec with nindsl itself before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from ..kernel.diagnostics import NindslError
from ..kernel.io import file_kind, refuse_kind
from ..kernel.outputs import claim
from .spec import Imported, outputs, stage_spec, write_spec

__all__ = ["Imported", "import_model", "write_spec"]


def import_model(path: str | Path, out: str | Path, weights_out: str | Path | None = None,
                 name: str | None = None, weights: str | Path | None = None,
                 input_shape: tuple[int, ...] | None = None) -> Imported:
    """Read ``path`` (ONNX, or a Caffe prototxt with its ``weights``), write the spec to ``out`` and,
    if asked, the weights to ``weights_out`` (both or neither; both checked before the model is read)."""
    with claim(outputs(out, weights_out), inputs=(path, weights)) as claimed:
        imported = read_model(Path(path), weights, weights_out is not None, name, input_shape)
        stage_spec(claimed, imported)
    return imported


def read_model(path: Path, weights: str | Path | None, weights_wanted: bool, name: str | None,
               input_shape: tuple[int, ...] | None) -> Imported:
    """The model at ``path`` as an :class:`Imported`, by the reader its suffix (or content) names."""
    suffix = path.suffix.lower()
    if suffix in (".prototxt", ".pbtxt"):
        from .from_caffe import read_caffe

        if weights_wanted and weights is None:
            raise NindslError.one("E0504", "--weights-out needs the Caffe weights: a prototxt holds none", None,
                                  "give the .caffemodel with --weights")
        return read_caffe(path, weights, name, input_shape)
    if suffix == ".caffemodel":
        raise NindslError.one("E0504", f"`{path}` holds a Caffe net's weights; import its .prototxt", None,
                              f"nindsl import NET.prototxt -o SPEC.nin --weights {path}")
    if weights is not None or input_shape is not None:
        raise NindslError.one("E0504", "--weights and --input-shape are for Caffe prototxt files; an ONNX model "
                                       "holds its weights and shapes", None)
    if suffix == ".onnx" or file_kind(path) == "onnx":  # by content too: model.pb, model.bin, ...
        from .from_onnx import read_onnx

        return read_onnx(path, name)
    refuse_kind(path, "an ONNX model or a Caffe .prototxt", ("onnx",))
    raise NindslError.one("E0504", f"`{path}`: nindsl imports .onnx files and Caffe .prototxt files", None,
                          "export the model to ONNX (opset 11 or later) first")
