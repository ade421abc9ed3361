"""An imported model as spec text, checked by nindsl before it is written."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..kernel import limits
from ..kernel.diagnostics import NindslError, Note, Span
from ..kernel.outputs import CHECKPOINT, IMPORTED_SPEC, Claim, Output, claim
from ..language import check
from ..language.elaborate import twin_cannot_hold
from ..language.fmt import format_module
from ..language.parser import parse
from ..weights import checkpoint_bytes

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,%d}\Z" % (limits.MAX_NAME - 1))  # a name nindsl takes


@dataclass
class Imported:
    """A model read from another format: spec lines and weights under nindsl's names."""

    name: str
    input_name: str
    input_shape: tuple
    output_name: str
    lines: list[str] = field(default_factory=list)  # `label: layer(...)`, in order
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict[str, object] = field(default_factory=dict)  # network parameters to declare
    header: str = ""
    train: dict[str, object] = field(default_factory=dict)  # `train { ... }` settings, as values
    layers: int = 0
    total: int = 0
    model: str = ""  # the file it was read from, as the user named it
    # where each label's layer comes from: its place in a text model (a Span), or a description
    # (`node `conv1` (Conv)`) in a binary one; a mistake check finds is reported there
    origins: dict[str, object] = field(default_factory=dict)

    @property
    def params_count(self) -> int:
        return self.total

    def text(self, output_shape: tuple | None = None) -> str:
        head = "".join(f"# {line}\n" for line in self.header.splitlines())
        params = ", ".join(f"{k} = {v}" for k, v in self.params.items())
        dims = ", ".join(str(d) for d in self.input_shape)
        body = [f"    input {self.input_name}: f32[{dims}]", *(f"    {line}" for line in self.lines)]
        if output_shape is not None:
            body.append(f"    output {self.output_name}: f32[{', '.join(str(d) for d in output_shape)}]")
        train = "".join(f"    {key} = {_value(value)}\n" for key, value in self.train.items())
        return (f"{head}{'' if not head else chr(10)}network {self.name}({params}) {{\n" + "\n".join(body) + "\n}\n"
                + (f"\ntrain {{\n{train}}}\n" if train else ""))


def _value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def spec_text(imported: Imported) -> str:
    """The spec, checked by nindsl (its output declared with the inferred shape) and formatted.
    A mistake check finds is reported in the model the user gave (:func:`_in_the_model`)."""
    try:
        network = check(imported.text())
        text = imported.text(network.shapes[-1].out_shape if network.shapes else imported.input_shape)
        network = check(text)
    except NindslError as error:
        raise _in_the_model(error, imported) from None
    imported.layers, imported.total = len(network.layers), network.total_params
    return format_module(parse(text))


_LABELLED = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:")


def _in_the_model(error: NindslError, imported: Imported) -> NindslError:
    """``error``, found in the spec an import made (text no file holds: `<string>:5:5`), said of
    the user's model instead: at the layer's place in a prototxt, or naming the ONNX node, with
    the spec line it became as a note."""
    def where(span: Span | None) -> tuple[Span | None, str, str]:
        if span is None or span.source is None or span.source.path != "<string>":
            return span, "", ""
        line = span.source.line(span.line).strip()
        labelled = _LABELLED.match(line)
        origin = imported.origins.get(labelled.group(1)) if labelled else None
        if isinstance(origin, Span):
            return origin, "", line
        return None, f"`{imported.model}`: " + (f"{origin}: " if origin else ""), line

    diagnostics = []
    for diagnostic in error.diagnostics:
        span, prefix, line = where(diagnostic.span)
        notes = [Note(note.message, where(note.span)[0]) for note in diagnostic.notes]
        if line:
            notes.append(Note(f"imported as `{line}`"))
        diagnostics.append(replace(diagnostic, message=prefix + diagnostic.message, span=span, notes=tuple(notes)))
    return NindslError(diagnostics)


def outputs(out: str | Path, weights_out: str | Path | None) -> list[Output | None]:
    """What an import writes: the spec (``-o``) and, if asked, its weights (``--weights-out``)."""
    return [Output("-o", Path(out), IMPORTED_SPEC),
            Output("--weights-out", Path(weights_out), CHECKPOINT) if weights_out is not None else None]


def write_spec(imported: Imported, out: str | Path, weights_out: str | Path | None = None) -> None:
    """Write the checked spec to ``out`` and, if asked, the weights to ``weights_out``: both or neither."""
    with claim(outputs(out, weights_out)) as claimed:
        stage_spec(claimed, imported)


def stage_spec(claimed: Claim, imported: Imported) -> None:
    """The spec (checked) and the weights, if claimed, written through ``claimed``."""
    claimed.write("-o", spec_text(imported).encode("utf-8"))
    if "--weights-out" in claimed.outputs:
        claimed.write("--weights-out", checkpoint_bytes(imported.weights))


class Labels(set):
    """The labels an import has used, and the number each fallback's numbering goes on from:
    numbering n layers `relu1`, `relu2`, ... is then linear, not quadratic (a 20,000-node chain
    took 184 s). Numbers below it are all taken, since labels are only ever added."""

    def __init__(self, names=()):
        super().__init__(names)
        self.next_number: dict[str, int] = {}


def label(name: str, fallback: str, taken: set[str]) -> str:
    """``name`` if it can be a nindsl label not yet used, else ``fallback`` numbered."""
    if IDENTIFIER.match(name) and name not in taken and name not in _KEYWORDS and not twin_cannot_hold(name):
        taken.add(name)
        return name
    index = taken.next_number.get(fallback, 1) if isinstance(taken, Labels) else 1
    while f"{fallback}{index}" in taken:
        index += 1
    taken.add(f"{fallback}{index}")
    if isinstance(taken, Labels):
        taken.next_number[fallback] = index + 1
    return f"{fallback}{index}"


_KEYWORDS = {"network", "input", "output", "let", "block", "repeat", "import", "train", "true", "false"}
