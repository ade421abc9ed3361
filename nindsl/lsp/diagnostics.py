"""The checker's diagnostics as LSP diagnostics: the code, the help and unlocated notes in
the message, located notes as related information; a mistake in an imported file is shown
on the import that brings it in."""

from __future__ import annotations

from lsprotocol import types

from ..kernel.diagnostics import Diagnostic, Span
from ..language import syntax as ast
from .analysis import Analysis, resolve, span_file
from .positions import Positions, uri

SOURCE = "nindsl"


def to_lsp(analysis: Analysis, positions: Positions) -> list[types.Diagnostic]:
    """The checker's diagnostics for this document: each with its code, its help and unlocated
    notes in the message, and located notes as related information. A mistake in an imported
    file is shown on the import that brings it in."""
    out = []
    here = str(analysis.path)
    for diagnostic in analysis.diagnostics:
        span = diagnostic.span
        message = _message(diagnostic)
        related = [types.DiagnosticRelatedInformation(
                       location=types.Location(uri=uri(span_file(note.span)), range=positions.range(note.span)),
                       message=note.message)
                   for note in diagnostic.notes if note.span is not None]
        if span is not None and span_file(span) == here:
            where = positions.range(span)
        else:
            importing = _import_of(analysis, span)
            where = positions.range(importing.span) if importing else types.Range(
                start=types.Position(line=0, character=0), end=types.Position(line=0, character=1))
            if span is not None:
                message = f"in {span.path}: {message}"
                related.insert(0, types.DiagnosticRelatedInformation(
                    location=types.Location(uri=uri(span_file(span)), range=positions.range(span)),
                    message=diagnostic.message))
        out.append(types.Diagnostic(range=where, message=message, severity=types.DiagnosticSeverity.Error,
                                    code=diagnostic.code, source=SOURCE, related_information=related or None))
    return out


def _message(diagnostic: Diagnostic) -> str:
    lines = [diagnostic.message]
    lines += [f"note: {note.message}" for note in diagnostic.notes if note.span is None]
    if diagnostic.help:
        lines.append(f"help: {diagnostic.help}")
    return "\n".join(lines)


def _import_of(analysis: Analysis, span: Span | None) -> ast.Import | None:
    """The import of this document through which the file of ``span`` is read (the first
    import, when the file is not known)."""
    if analysis.module is None:
        return None
    imports = [item for item in analysis.module.items if isinstance(item, ast.Import)]
    if span is not None:
        for item in imports:
            target = resolve(analysis.path, item.path)
            if target is not None and str(target) == span_file(span):
                return item
    return imports[0] if imports else None
