"""One document as the language server sees it: checked, and searchable by position.

:func:`analyse` runs the checker of `nindsl check` on the editor's text: the same stages
(parse → elaborate → shapes), the same diagnostics, with imports read from other open
documents' unsaved text where there is one. Positions here are 1-based lines and columns in
code points, as in :class:`~nindsl.kernel.diagnostics.Span`; the server converts them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Mapping

from ..kernel import limits
from ..kernel.diagnostics import Diagnostic, NindslError, Span
from ..language import ir
from ..language import syntax as ast
from ..language.elaborate import check_library, elaborate
from ..language.parser import parse, parse_file
from ..language.shapes import infer


@dataclass(frozen=True)
class Definition:
    """A name a spec defines: a `let`, a `block` or a parameter, where it is written."""

    kind: str  # "let" | "block" | "param"
    name: str
    node: ast.Let | ast.BlockDef | ast.Param
    span: Span | None


@dataclass
class Analysis:
    """What the checker made of one document's text."""

    path: Path
    text: str
    module: ast.Module | None  # None when the text does not parse
    network: ir.Network | None  # None for a library or a spec with mistakes
    diagnostics: tuple[Diagnostic, ...]
    symbols: dict[str, Definition] = field(default_factory=dict)  # lets and blocks, imported ones included
    depends_on: frozenset[str] = frozenset()  # resolved paths of every file it imports, directly or not
    open_texts: Mapping[str, str] = field(default_factory=dict)


def analyse(path: Path, text: str, open_texts: Mapping[str, str] | None = None) -> Analysis:
    """Check ``text`` as the spec at ``path``, exactly as `nindsl check` would check the file.

    ``open_texts`` maps resolved paths to the text of other open documents; imports read it
    instead of the file on disk.
    """
    try:
        own = str(path.resolve())
    except (OSError, RuntimeError):
        own = str(path)
    open_texts = {key: value for key, value in (open_texts or {}).items() if key != own}
    module = network = None
    try:
        module = parse(text, str(path))
        if module.items and not any(isinstance(item, ast.NetworkDef) for item in module.items):
            check_library(module, open_texts=open_texts)
        else:
            network = infer(elaborate(module, open_texts=open_texts))
        diagnostics: tuple[Diagnostic, ...] = ()
    except NindslError as error:
        diagnostics = error.diagnostics
    symbols, depends_on = _symbols(module, open_texts) if module is not None else ({}, frozenset())
    return Analysis(path, text, module, network, diagnostics, symbols, depends_on, open_texts)


def resolve(importer: Path, written: str) -> Path | None:
    """The file an ``import "written"`` in ``importer`` names (None if it cannot be one)."""
    if os.path.isabs(written):
        return None
    try:
        return (importer.parent / written).resolve()
    except (OSError, RuntimeError):
        return None


def span_file(span: Span) -> str:
    """The absolute path of the file a span is in (imports' spans are relative to the cwd)."""
    return os.path.abspath(span.path)


def _read(path: Path, open_texts: Mapping[str, str]) -> ast.Module | None:
    text = open_texts.get(str(path))
    try:
        return parse(text, str(path)) if text is not None else parse_file(path)
    except NindslError:
        return None


def _symbols(module: ast.Module, open_texts: Mapping[str, str]) -> tuple[dict[str, Definition], frozenset[str]]:
    """The lets and blocks visible in ``module`` (its imports' first, its own over them), and
    every file it reads."""
    seen: set[str] = set()

    def scope(mod: ast.Module, depth: int) -> dict[str, Definition]:
        names: dict[str, Definition] = {}
        here = Path(mod.source.path) if mod.source else Path.cwd() / "<string>"
        for item in mod.items:
            if isinstance(item, ast.Import) and depth < limits.MAX_IMPORT_DEPTH:
                target = resolve(here, item.path)
                if target is None or str(target) in seen:
                    continue
                seen.add(str(target))
                imported = _read(target, open_texts)
                if imported is not None:
                    names.update(scope(imported, depth + 1))
            elif isinstance(item, ast.Let):
                names[item.name] = Definition("let", item.name, item, item.name_span)
            elif isinstance(item, ast.BlockDef):
                names[item.name] = Definition("block", item.name, item, item.name_span)
        return names

    return scope(module, 0), frozenset(seen)


# --- what is at a position -----------------------------------------------------------------


def contains(span: Span | None, line: int, column: int) -> bool:
    """Whether (line, column) is inside ``span``, its end included (a cursor just after a word)."""
    return span is not None and (span.line, span.column) <= (line, column) <= (span.end_line, span.end_column)


@dataclass(frozen=True)
class Found:
    """What the cursor is on, and the definition (network or block) around it."""

    kind: str  # "layer" | "name" | "import" | "keyword"
    node: object  # LayerStmt, Name, Import or Arg
    owner: ast.NetworkDef | ast.BlockDef | None = None
    top_level: bool = False  # a statement directly in the network's body
    call: ast.Call | None = None  # for "keyword": the call the argument belongs to


def _expressions(expr: ast.Expr, call: ast.Call | None = None) -> Iterator[tuple[ast.Expr | ast.Arg, ast.Call | None]]:
    stack = [(expr, call)]
    while stack:
        node, owner = stack.pop()
        yield node, owner
        match node:
            case ast.ListExpr(items=items):
                stack.extend((item, owner) for item in items)
            case ast.BinOp(left=left, right=right):
                stack.extend(((left, owner), (right, owner)))
            case ast.Unary(operand=operand):
                stack.append((operand, owner))
            case ast.Call(args=args):
                for arg in args:
                    if arg.name is not None:
                        stack.append((arg, node))
                    stack.append((arg.value, node))


def _in_expr(expr: ast.Expr, line: int, column: int, owner, call: ast.Call | None = None) -> Found | None:
    for node, parent in _expressions(expr, call):
        if isinstance(node, ast.Name) and contains(node.span, line, column):
            return Found("name", node, owner)
        if isinstance(node, ast.Arg) and contains(node.span, line, column):
            return Found("keyword", node, owner, call=parent)
    return None


def _in_body(body, line, column, owner, top: bool) -> Found | None:
    for stmt in body:
        if not contains(stmt.span, line, column):
            continue
        match stmt:
            case ast.LayerStmt(call=call):
                if contains(stmt.label_span, line, column) or contains(call.func_span, line, column):
                    return Found("layer", stmt, owner, top)
                for arg in call.args:
                    found = _in_expr(arg.value, line, column, owner, call)
                    if found:
                        return found
                    if arg.name is not None and contains(arg.span, line, column):
                        return Found("keyword", arg, owner, call=call)
            case ast.Repeat(count=count, body=inner):
                return _in_expr(count, line, column, owner) or _in_body(inner, line, column, owner, False)
            case ast.TensorDecl(dims=dims):
                for dim in dims:
                    found = _in_expr(dim, line, column, owner)
                    if found:
                        return found
    return None


def find(module: ast.Module, line: int, column: int) -> Found | None:
    """The layer, name, import or keyword argument at (line, column), if any."""
    for item in module.items:
        if not contains(item.span, line, column):
            continue
        match item:
            case ast.Import():
                return Found("import", item)
            case ast.Let(value=value):
                return _in_expr(value, line, column, None)
            case ast.TrainDef(settings=settings):
                for setting in settings:
                    found = _in_expr(setting.value, line, column, None)
                    if found:
                        return found
            case ast.BlockDef() | ast.NetworkDef():
                for param in item.params:
                    if param.default is not None:
                        found = _in_expr(param.default, line, column, item)
                        if found:
                            return found
                return _in_body(item.body, line, column, item, isinstance(item, ast.NetworkDef))
    return None


def lookup(analysis: Analysis, name: str, owner) -> Definition | None:
    """What ``name`` means where it is used: a parameter of ``owner``, else a let or block."""
    if owner is not None:
        for param in owner.params:
            if param.name == name:
                return Definition("param", name, param, param.span)
    return analysis.symbols.get(name)


# --- the layers a statement made ---------------------------------------------------------------


def _same_place(a: Span | None, b: Span | None) -> bool:
    return a is not None and b is not None and (a.path, a.line, a.column) == (b.path, b.line, b.column)


def layers_of(analysis: Analysis, stmt: ast.LayerStmt) -> list[int]:
    """Indices of the network's layers that ``stmt`` (a layer, not a block call) made: one, or
    one per repetition or block call."""
    network = analysis.network
    if network is None:
        return []
    return [i for i, layer in enumerate(network.layers) if _same_place(layer.span, stmt.span)]


def expansion(analysis: Analysis, owner: ast.NetworkDef, stmt: ast.LayerStmt) -> range | None:
    """The layers a statement directly in the network's body made (a block call's expansion):
    the layers of the body up to it and up to the one before it are counted, checked alone."""
    if analysis.network is None or analysis.module is None or not any(s is stmt for s in owner.body):
        return None
    index = next(i for i, s in enumerate(owner.body) if s is stmt)

    def count(upto: int) -> int:
        network = replace(owner, body=owner.body[:upto])
        items = tuple(network if item is owner else item for item in analysis.module.items)
        return len(elaborate(replace(analysis.module, items=items), open_texts=analysis.open_texts).layers)

    try:
        return range(count(index), count(index + 1))
    except NindslError:
        return None
