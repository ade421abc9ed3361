"""What the server answers, computed from an :class:`~nindsl.lsp.analysis.Analysis`.

Each function takes the analysis (and a :class:`Positions` for the client's units) and
returns lsprotocol values; none knows about the connection. Shapes, parameters and
multiply-adds come from `nindsl summary`'s rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types

from ..kernel.diagnostics import Diagnostic, Span
from ..language import syntax as ast
from ..language.elaborate import INITS, OPTIMIZERS, SCHEDULES, TRAIN_SETTINGS
from ..language.fmt import format_expr, format_module
from ..language.layers import SIGNATURES
from ..language.parser import parse
from ..language.signature import REQUIRED, Signature
from ..language.summary import rows, short_shape
from .analysis import Analysis, Definition, expansion, find, layers_of, lookup, resolve, span_file

SOURCE = "nindsl"
CALLABLES: dict[str, Signature] = {**SIGNATURES, **INITS, **OPTIMIZERS, **SCHEDULES}


@dataclass(frozen=True)
class Positions:
    """Columns in the client's units (LSP's default is UTF-16 code units) ↔ code points."""

    encoding: str = types.PositionEncodingKind.Utf16

    def units(self, text: str) -> int:
        if self.encoding == types.PositionEncodingKind.Utf32:
            return len(text)
        if self.encoding == types.PositionEncodingKind.Utf8:
            return len(text.encode("utf-8", errors="surrogatepass"))
        return len(text.encode("utf-16-le", errors="surrogatepass")) // 2

    def position(self, lines: list[str], line: int, column: int) -> types.Position:
        """A 1-based (line, column in code points) as a client position."""
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        return types.Position(line=max(line - 1, 0), character=self.units(text[: max(column - 1, 0)]))

    def range(self, span: Span) -> types.Range:
        lines = span.source.lines if span.source else []
        return types.Range(start=self.position(lines, span.line, span.column),
                           end=self.position(lines, span.end_line, span.end_column))

    def from_client(self, text: str, position: types.Position) -> tuple[int, int]:
        """A client position in ``text`` as a 1-based (line, column in code points)."""
        lines = text.split("\n")
        line = lines[position.line] if position.line < len(lines) else ""
        column, used = 0, 0
        while column < len(line) and used < position.character:
            used += self.units(line[column])
            column += 1
        return position.line + 1, column + 1


def _uri(path: str | Path) -> str:
    return Path(path).absolute().as_uri()


# --- diagnostics ---------------------------------------------------------------------------


def diagnostics(analysis: Analysis, positions: Positions) -> list[types.Diagnostic]:
    """The checker's diagnostics for this document: each with its code, its help and unlocated
    notes in the message, and located notes as related information. A mistake in an imported
    file is shown on the import that brings it in."""
    out = []
    here = str(analysis.path)
    for diagnostic in analysis.diagnostics:
        span = diagnostic.span
        message = _message(diagnostic)
        related = [types.DiagnosticRelatedInformation(
                       location=types.Location(uri=_uri(span_file(note.span)), range=positions.range(note.span)),
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
                    location=types.Location(uri=_uri(span_file(span)), range=positions.range(span)),
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


# --- hover ---------------------------------------------------------------------------------


def hover(analysis: Analysis, line: int, column: int, positions: Positions) -> types.Hover | None:
    """A layer's shapes, parameters and multiply-adds; a block call's expansion; what a name,
    an argument or an import refers to."""
    if analysis.module is None:
        return None
    found = find(analysis.module, line, column)
    if found is None:
        return None
    text = None
    span = getattr(found.node, "span", None)
    match found.kind:
        case "layer":
            text = _hover_layer(analysis, found)
            stmt = found.node
            span = stmt.label_span if stmt.label_span and _on(stmt.label_span, line, column) else stmt.call.func_span
        case "name":
            definition = lookup(analysis, found.node.id, found.owner)
            text = _describe_definition(definition, found.owner) if definition else None
        case "keyword":
            text = _hover_argument(analysis, found.node.name, found.call)
        case "import":
            target = resolve(analysis.path, found.node.path)
            text = f"imports `{target}`" if target is not None else None
    if text is None:
        return None
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
                       range=positions.range(span) if span else None)


def _on(span: Span, line: int, column: int) -> bool:
    return (span.line, span.column) <= (line, column) <= (span.end_line, span.end_column)


def _row_text(row) -> str:
    _, _, _, params, macs = row
    return f"{params:,} parameters · {macs:,} multiply-adds"


def _hover_layer(analysis: Analysis, found) -> str:
    stmt: ast.LayerStmt = found.node
    func = stmt.call.func
    network = analysis.network
    definition = analysis.symbols.get(func)
    if func not in SIGNATURES and definition is not None and definition.kind == "block":
        return _hover_block_call(analysis, found, definition)
    if func not in SIGNATURES:
        return f"`{func}` is not a layer or a block in scope"
    usage = f"`{SIGNATURES[func].usage(func)}`"
    if network is None:
        return f"{usage}\n\n(shapes appear when the spec checks)"
    table = rows(network)
    instances = layers_of(analysis, stmt)
    if not instances:
        return usage
    parts = []
    for index in instances[:20]:
        label, description, _, _, _ = table[index]
        shape = network.shapes[index]
        parts.append(f"**{label}** · {description}\n\n`{short_shape(shape.in_shape)} → "
                     f"{short_shape(shape.out_shape)}` · {_row_text(table[index])}")
    if len(instances) > 20:
        parts.append(f"… and {len(instances) - 20} more")
    return "\n\n---\n\n".join(parts)


def _signature_text(block: ast.BlockDef) -> str:
    params = ", ".join(p.name if p.default is None else f"{p.name} = {format_expr(p.default)}"
                       for p in block.params)
    return f"block {block.name}({params})"


def _hover_block_call(analysis: Analysis, found, definition: Definition) -> str:
    stmt: ast.LayerStmt = found.node
    block: ast.BlockDef = definition.node
    head = f"`{_signature_text(block)}`" + _where(definition, analysis)
    network = analysis.network
    layers = expansion(analysis, found.owner, stmt) if found.top_level and network is not None else None
    if not layers:
        body = "\n".join(f"- `{s.call.func}({_args(s.call)})`" for s in block.body if isinstance(s, ast.LayerStmt))
        return f"{head}\n\n{body}" if body else head
    table = rows(network)
    first, last = network.shapes[layers.start], network.shapes[layers.stop - 1]
    params = sum(table[i][3] for i in layers)
    macs = sum(table[i][4] for i in layers)
    lines = [head, "",
             f"`{short_shape(first.in_shape)} → {short_shape(last.out_shape)}` · {params:,} parameters · "
             f"{macs:,} multiply-adds", "", "expands to:", ""]
    lines += [f"- **{table[i][0]}** · {table[i][1]} → `{table[i][2]}`"
              + (f" · {table[i][3]:,} parameters" if table[i][3] else "") for i in layers]
    return "\n".join(lines)


def _args(call: ast.Call) -> str:
    return ", ".join(format_expr(a.value) if a.name is None else f"{a.name} = {format_expr(a.value)}"
                     for a in call.args)


def _where(definition: Definition, analysis: Analysis) -> str:
    if definition.span is None or span_file(definition.span) == str(analysis.path):
        return ""
    return f" (from `{definition.span.path}`)"


def _describe_definition(definition: Definition, owner) -> str:
    node = definition.node
    match definition.kind:
        case "let":
            return f"```nin\nlet {node.name} = {format_expr(node.value)}\n```"
        case "block":
            return f"```nin\n{_signature_text(node)}\n```"
    default = "" if node.default is None else f" = {format_expr(node.default)}"
    kind = "network" if isinstance(owner, ast.NetworkDef) else "block"
    return f"parameter of {kind} `{owner.name}`: `{node.name}{default}`"


def _hover_argument(analysis: Analysis, name: str, call: ast.Call | None) -> str | None:
    if call is None:
        return None
    if call.func in CALLABLES:
        for param in CALLABLES[call.func].params:
            if param.name == name:
                default = "required" if param.default is REQUIRED else f"default {param.default}"
                return f"`{name}` of `{CALLABLES[call.func].usage(call.func)}`: {param.kind}, {default}"
    definition = analysis.symbols.get(call.func)
    if definition is not None and definition.kind == "block":
        return f"`{name}` of `{_signature_text(definition.node)}`"
    return None


# --- go to definition ----------------------------------------------------------------------------


def definition(analysis: Analysis, line: int, column: int, positions: Positions) -> types.Location | None:
    """Where a `let` name, a block, a parameter or an imported file is defined."""
    if analysis.module is None:
        return None
    found = find(analysis.module, line, column)
    if found is None:
        return None
    target: Definition | None = None
    match found.kind:
        case "name":
            target = lookup(analysis, found.node.id, found.owner)
        case "layer":
            target = analysis.symbols.get(found.node.call.func)
            if found.node.call.func in SIGNATURES:
                target = None
        case "keyword" if found.call is not None:
            block = analysis.symbols.get(found.call.func)
            if block is not None and block.kind == "block" and found.call.func not in SIGNATURES:
                target = next((Definition("param", p.name, p, p.span) for p in block.node.params
                               if p.name == found.node.name), None)
        case "import":
            path = resolve(analysis.path, found.node.path)
            if path is None or not path.is_file():
                return None
            start = types.Position(line=0, character=0)
            return types.Location(uri=path.as_uri(), range=types.Range(start=start, end=start))
    if target is None or target.span is None:
        return None
    return types.Location(uri=_uri(span_file(target.span)), range=positions.range(target.span))


# --- inlay hints ------------------------------------------------------------------------------


def inlay_hints(analysis: Analysis, positions: Positions) -> list[types.InlayHint]:
    """The output shape at the end of each layer statement of the network (and of each block
    call in its body)."""
    network = analysis.network
    if network is None or analysis.module is None:
        return []
    owner = next(item for item in analysis.module.items if isinstance(item, ast.NetworkDef))
    hints = []

    def visit(body, top: bool) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Repeat):
                visit(stmt.body, False)
                continue
            if not isinstance(stmt, ast.LayerStmt) or stmt.span is None:
                continue
            if stmt.call.func in SIGNATURES:
                indices = layers_of(analysis, stmt)
            else:
                layers = expansion(analysis, owner, stmt) if top else None
                indices = [layers.stop - 1] if layers else []
            shapes = list(dict.fromkeys(short_shape(network.shapes[i].out_shape) for i in indices))
            if not shapes:
                continue
            lines = stmt.span.source.lines if stmt.span.source else []
            hints.append(types.InlayHint(position=positions.position(lines, stmt.span.end_line, stmt.span.end_column),
                                         label=f"→ {' | '.join(shapes[:3])}" + (" | …" if len(shapes) > 3 else ""),
                                         kind=types.InlayHintKind.Type, padding_left=True))

    visit(owner.body, True)
    return hints


# --- formatting -----------------------------------------------------------------------------------


def formatting(path: Path, text: str, positions: Positions) -> list[types.TextEdit]:
    """`nindsl fmt`'s text as one edit (none when it is formatted or does not parse)."""
    try:
        module = parse(text, str(path))
    except Exception:  # noqa: BLE001 - text that does not parse is not formatted; diagnostics say why
        return []
    formatted = format_module(module)
    if formatted == text:
        return []
    lines = text.split("\n")
    end = types.Position(line=len(lines) - 1, character=positions.units(lines[-1]))
    return [types.TextEdit(range=types.Range(start=types.Position(line=0, character=0), end=end),
                           new_text=formatted)]


# --- completion -----------------------------------------------------------------------------------

_DEFINED = re.compile(r"\b(let|block)\s+([A-Za-z_][A-Za-z0-9_]*)")
_OPEN = {")": "(", "]": "[", "}": "{"}
_STRING = re.compile(r'"([^"\\\n]|\\.)*"?')


def _open_brackets(text: str) -> list[tuple[str, int]]:
    """The brackets still open at the end of ``text`` (comments and strings skipped)."""
    stack: list[tuple[str, int]] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "#":
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            continue
        if char == '"':
            match = _STRING.match(text, index)
            index = match.end()
            continue
        if char in "([{":
            stack.append((char, index))
        elif char in _OPEN and stack and stack[-1][0] == _OPEN[char]:
            stack.pop()
        index += 1
    return stack


def _word_before(text: str, index: int) -> str:
    match = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", text[:index])
    return match.group(1) if match else ""


def _header_params(text: str, brace: int) -> list[str]:
    """The parameter names of `network x(a, b = 1) {` or `block y(...) {` before a brace."""
    match = re.search(r"\b(?:network|block)\s+[A-Za-z_]\w*\s*\(([^()]*)\)\s*$", text[:brace])
    if not match:
        return []
    return re.findall(r"([A-Za-z_]\w*)\s*(?:=[^,]*)?(?:,|$)", match.group(1))


def _item(label: str, kind: types.CompletionItemKind, detail: str | None = None,
          insert: str | None = None) -> types.CompletionItem:
    return types.CompletionItem(label=label, kind=kind, detail=detail, insert_text=insert)


def completion(analysis: Analysis | None, text: str, line: int, column: int) -> list[types.CompletionItem]:
    """Layer names and blocks where a statement goes, keyword arguments and names in scope
    inside a call, training settings in `train`, keywords at the top level."""
    lines = text.split("\n")
    offset = sum(len(item) + 1 for item in lines[: line - 1]) + column - 1
    before = text[:offset]
    stack = _open_brackets(before)
    names = {match.group(2): match.group(1) for match in _DEFINED.finditer(text)}
    if analysis is not None:
        names.update({name: d.kind for name, d in analysis.symbols.items() if name not in names})
    braces = [index for char, index in stack if char == "{"]
    params = _header_params(before, braces[0]) if braces else []
    scope = [_item(name, types.CompletionItemKind.Variable if kind == "let" else types.CompletionItemKind.Class,
                   kind) for name, kind in names.items()]
    scope += [_item(name, types.CompletionItemKind.Variable, "parameter") for name in params]
    if not stack:
        return [_item(word, types.CompletionItemKind.Keyword) for word in ("import", "let", "block", "network",
                                                                            "train")]
    bracket, index = stack[-1]
    if bracket == "(":
        func = _word_before(before, index)
        items = [_item(p.name, types.CompletionItemKind.Field, p.kind, f"{p.name} = ")
                 for p in CALLABLES[func].params] if func in CALLABLES else []
        if func not in CALLABLES and names.get(func) == "block" and analysis is not None:
            block = analysis.symbols.get(func)
            if block is not None and block.kind == "block":
                items = [_item(p.name, types.CompletionItemKind.Field, "block parameter", f"{p.name} = ")
                         for p in block.node.params]
        return items + scope + [_item(word, types.CompletionItemKind.Keyword) for word in ("true", "false")]
    if bracket == "[":
        return scope
    opener = _word_before(before, index)
    header = re.search(r"\b(train|network|block|repeat)\b[^{}]*$", before[:index])
    if header and header.group(1) == "train" or opener == "train":
        statement = before[before.rfind("\n") + 1:]
        if "=" in statement:
            return scope + [_item(name, types.CompletionItemKind.Function, CALLABLES[name].usage(name))
                            for name in (*INITS, *OPTIMIZERS, *SCHEDULES)]
        return [_item(name, types.CompletionItemKind.Property, kind, f"{name} = ")
                for name, kind in TRAIN_SETTINGS.items()]
    layers = [_item(name, types.CompletionItemKind.Function, signature.usage(name))
              for name, signature in SIGNATURES.items()]
    blocks = [_item(name, types.CompletionItemKind.Class, "block") for name, kind in names.items() if kind == "block"]
    keywords = [_item(word, types.CompletionItemKind.Keyword) for word in ("input", "output", "repeat")]
    return layers + blocks + keywords

