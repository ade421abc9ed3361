"""Hover, go to definition, inlay hints and formatting, from an :class:`~nindsl.lsp.analysis.Analysis`.

Each function takes the analysis (and :class:`~nindsl.lsp.positions.Positions` for the
client's units) and returns lsprotocol values; none knows about the connection. Shapes,
parameters and multiply-adds come from `nindsl summary`'s rows.
"""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from ..kernel.diagnostics import Span
from ..language import syntax as ast
from ..language.elaborate import INITS, OPTIMIZERS, SCHEDULES
from ..language.fmt import format_expr, format_module
from ..language.layers import SIGNATURES
from ..language.parser import parse
from ..language.signature import REQUIRED, Signature
from ..language.summary import rows, short_shape
from .analysis import Analysis, Definition, expansion, find, layers_of, lookup, resolve, span_file
from .positions import Positions, uri

#: Everything a spec calls with arguments: layers, inits, optimizers, schedules.
CALLABLES: dict[str, Signature] = {**SIGNATURES, **INITS, **OPTIMIZERS, **SCHEDULES}


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
    if network is None and isinstance(found.owner, ast.BlockDef):
        return f"{usage}\n\n(its shapes depend on the call: hover on a call of `{found.owner.name}` in a network)"
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
    return types.Location(uri=uri(span_file(target.span)), range=positions.range(target.span))


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
