"""`nindsl fmt`: print a syntax tree back as canonical text, comments kept.

The printer is the parser's inverse: ``parse(format_module(m)) == m`` and formatting is
idempotent. Layout: four-space indents, one statement a line, ``name = value`` with
spaces, aligned ``=`` in ``train``, single blank lines kept where the author put them.

>>> from nindsl.parser import parse
>>> print(format_module(parse("let  x=1+2*3 # seven")), end="")
let x = 1 + 2 * 3  # seven
"""

from __future__ import annotations

from . import syntax as ast

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2}


def format_expr(expr: ast.Expr) -> str:
    match expr:
        case ast.Number(raw=raw, value=value):
            return raw or repr(value)
        case ast.String(value=value):
            escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
            return f'"{escaped}"'
        case ast.Bool(value=value):
            return "true" if value else "false"
        case ast.Name(id=name):
            return name
        case ast.ListExpr(items=items):
            return "[" + ", ".join(format_expr(item) for item in items) + "]"
        case ast.Call(func=func, args=args):
            return f"{func}({format_args(args)})"
        case ast.Unary(op=op, operand=operand):
            inner = format_expr(operand)
            return f"{op}({inner})" if _precedence(operand) < 3 else f"{op}{inner}"
        case ast.BinOp(op=op, left=left, right=right):
            level = _PRECEDENCE[op]
            a, b = format_expr(left), format_expr(right)
            a = f"({a})" if _precedence(left) < level else a
            b = f"({b})" if _precedence(right) <= level else b
            return f"{a} {op} {b}"
    raise AssertionError(expr)  # pragma: no cover


def _precedence(expr: ast.Expr) -> int:
    if isinstance(expr, ast.BinOp):
        return _PRECEDENCE[expr.op]
    return 3 if isinstance(expr, ast.Unary) else 4


def format_args(args: tuple[ast.Arg, ...]) -> str:
    return ", ".join(format_expr(a.value) if a.name is None else f"{a.name} = {format_expr(a.value)}"
                     for a in args)


def _params(params: tuple[ast.Param, ...]) -> str:
    return ", ".join(p.name if p.default is None else f"{p.name} = {format_expr(p.default)}" for p in params)


class _Printer:
    def __init__(self, module: ast.Module):
        self.comments = sorted(module.comments or (), key=lambda c: (c.line, c.column))
        self.next = 0  # index of the first comment not printed yet
        self.source = module.source
        self.out: list[str] = []

    # comments and blank lines
    def _blank_before(self, line: int) -> bool:
        return self.source is not None and line > 1 and self.source.line(line - 1).strip() == ""

    def _separate(self, line: int, first: bool) -> None:
        if not first and self._blank_before(line) and self.out and self.out[-1] != "":
            self.out.append("")

    def leading(self, before_line: int, indent: str, first: bool) -> bool:
        """Print the comments that come before ``before_line``; True if any were printed."""
        printed = False
        while self.next < len(self.comments) and self.comments[self.next].line < before_line:
            comment = self.comments[self.next]
            self._separate(comment.line, first and not printed)
            self.out.append(indent + comment.text.rstrip())
            self.next += 1
            printed = True
        return printed

    def node(self, lines: list[str], span, indent: str, first: bool) -> None:
        """Print a statement with its leading, inner and trailing comments."""
        if span is None:
            self.out.extend(indent + line for line in lines)
            return
        had_comments = self.leading(span.line, indent, first)
        inner, trailing = [], None
        while self.next < len(self.comments) and self.comments[self.next].line <= span.end_line:
            comment = self.comments[self.next]
            if comment.line == span.end_line and comment.column >= span.end_column:
                trailing = comment
            else:
                inner.append(comment)
            self.next += 1
        self._separate(span.line, first and not had_comments)
        self.out.extend(indent + c.text.rstrip() for c in inner)
        lines = [indent + line for line in lines]
        if trailing is not None:
            lines[-1] += "  " + trailing.text.rstrip()
        self.out.extend(lines)

    # statements
    def body(self, stmts, indent: str, close_line: int | None) -> None:
        for index, stmt in enumerate(stmts):
            self.stmt(stmt, indent, index == 0)
        if close_line is not None:
            self.leading(close_line, indent, not stmts)

    def stmt(self, stmt, indent: str, first: bool) -> None:
        match stmt:
            case ast.TensorDecl():
                dims = ", ".join(format_expr(d) for d in stmt.dims)
                self.node([f"{stmt.kind} {stmt.name}: {stmt.dtype}[{dims}]"], stmt.span, indent, first)
            case ast.LayerStmt():
                label = f"{stmt.label}: " if stmt.label else ""
                self.node([f"{label}{stmt.call.func}({format_args(stmt.call.args)})"], stmt.span, indent, first)
            case ast.Repeat():
                self._open(f"repeat {format_expr(stmt.count)} {{", stmt.span, indent, first)
                self.body(stmt.body, indent + "    ", stmt.span.end_line if stmt.span else None)
                self.out.append(indent + "}")

    def _open(self, header: str, span, indent: str, first: bool) -> None:
        """Print a `... {` line with the comments before it and on it."""
        self.node([header], _LineSpan(span.line) if span else None, indent, first)

    # items
    def item(self, item, first: bool) -> None:
        match item:
            case ast.Import():
                self.node([f'import {format_expr(ast.String(item.path))}'], item.span, "", first)
            case ast.Let():
                self.node([f"let {item.name} = {format_expr(item.value)}"], item.span, "", first)
            case ast.BlockDef() | ast.NetworkDef():
                keyword = "block" if isinstance(item, ast.BlockDef) else "network"
                self._gap(first)
                self._open(f"{keyword} {item.name}({_params(item.params)}) {{", item.span, "", True)
                self.body(item.body, "    ", item.span.end_line if item.span else None)
                self.out.append("}")
            case ast.TrainDef():
                self._gap(first)
                self._open("train {", item.span, "", True)
                width = max((len(s.name) for s in item.settings), default=0)
                for index, setting in enumerate(item.settings):
                    self.node([f"{setting.name.ljust(width)} = {format_expr(setting.value)}"], setting.span,
                              "    ", index == 0)
                self.leading(item.span.end_line if item.span else 0, "    ", not item.settings)
                self.out.append("}")

    def _gap(self, first: bool) -> None:
        """Blocks, networks and train sections stand apart: one blank line before each."""
        if not first and self.out and self.out[-1] != "":
            self.out.append("")

    def module(self, module: ast.Module) -> str:
        previous = None
        for index, item in enumerate(module.items):
            spaced = isinstance(previous, (ast.BlockDef, ast.NetworkDef, ast.TrainDef))
            if spaced:
                self._gap(False)
            self.item(item, index == 0)
            previous = item
        while self.next < len(self.comments):
            comment = self.comments[self.next]
            self._separate(comment.line, not self.out)
            self.out.append(comment.text.rstrip())
            self.next += 1
        return "\n".join(self.out).rstrip("\n") + "\n" if self.out else ""


class _LineSpan:
    """The span of a `{` header line: comments after it on that line trail it."""

    def __init__(self, line: int):
        self.line = self.end_line = line
        self.end_column = 0


def format_module(module: ast.Module) -> str:
    """Canonical text of a parsed module (comments from ``module.comments``)."""
    return _Printer(module).module(module)
