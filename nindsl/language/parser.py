"""Stage 1: text → syntax tree (:mod:`nindsl.syntax`), with located syntax errors.

>>> module = parse("let drop = 0.5\\n", path="x.nin")
>>> module.items[0].name
'drop'
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

from ..kernel import limits
from ..kernel.io import refuse_kind
from . import syntax as ast
from ..kernel.diagnostics import Collector, NindslError, Note, Source, Span

GRAMMAR = Path(__file__).with_name("grammar.lark")
KEYWORDS = ("import", "let", "block", "network", "input", "output", "repeat", "train", "true", "false")

_ESCAPES = {"n": "\n", "t": "\t"}
_comments = threading.local()  # filled by the lexer callback during one parse


def _keep_comment(token: Token) -> Token:
    _comments.items.append(ast.Comment(str(token), token.line, token.column))
    return token


@lru_cache(maxsize=1)
def grammar() -> Lark:
    """The LALR parser (built once; Hypothesis also generates text from it)."""
    return Lark(GRAMMAR.read_text(), parser="lalr", propagate_positions=True,
                maybe_placeholders=True, lexer_callbacks={"COMMENT": _keep_comment})


# Characters that are invisible or reorder text on screen (Trojan Source,
# CVE-2021-42574): a spec that contains one does not say what it shows.
_INVISIBLE = set("\u200b\u200c\u200d\u200e\u200f\u2060\u00ad\ufeff"
                 "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def decode(data: bytes, path: str) -> str:
    """Bytes of a spec → text: UTF-8 only, a BOM dropped, CRLF made LF."""
    if len(data) > limits.MAX_FILE_BYTES:
        raise NindslError.one("E0401", f"spec is {len(data):,} bytes; the limit is {limits.MAX_FILE_BYTES:,}",
                              None, help="split it into files joined with `import`")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        source = Source(path, before.replace("\r\n", "\n").replace("\r", "\n"))
        raise NindslError.one("E0004", f"byte 0x{data[error.start]:02x} is not valid UTF-8",
                              Span(source, line, column, line, column + 1),
                              help="save the file as UTF-8")
    return normalize(text)


def normalize(text: str) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _check_characters(source: Source, errors: Collector) -> None:
    for number, line in enumerate(source.text.split("\n"), start=1):
        for index, char in enumerate(line):
            if char in _INVISIBLE or (unicodedata.category(char) == "Cc" and char != "\t"):
                name = unicodedata.name(char, "control character")
                errors.error("E0003", f"invisible or control character U+{ord(char):04X} ({name})",
                             Span(source, number, index + 1, number, index + 2),
                             help="delete it: it changes how the text reads without showing")


def parse(text: str, path: str = "<string>") -> ast.Module:
    """Parse .nin text into a :class:`~nindsl.syntax.Module`; raise :class:`NindslError`."""
    text = normalize(text)
    source = Source(path, text)
    if len(text.encode("utf-8", errors="surrogatepass")) > limits.MAX_FILE_BYTES:
        raise NindslError.one("E0401", f"spec is larger than {limits.MAX_FILE_BYTES:,} bytes",
                              Span(source, 1, 1, 1, 2), help="split it into files joined with `import`")
    errors = Collector()
    _check_characters(source, errors)
    errors.raise_if_any()

    _comments.items = []
    try:
        tree = grammar().parse(text)
    except UnexpectedInput as error:
        raise NindslError([_syntax_error(error, source)]) from None
    comments = tuple(_comments.items)
    _check_depth(tree, source)
    _check_names(tree, source)
    builder = _Builder(source)
    try:
        items = builder.transform(tree)
    except VisitError as error:  # pragma: no cover - a bug in the builder
        raise error.orig_exc from None
    builder.errors.raise_if_any()
    return ast.Module(tuple(items.children), source=source, comments=comments)


_EXPRESSIONS = {"add", "sub", "mul", "div", "floordiv", "neg", "pos", "call", "args", "keyword", "list"}


def _check_depth(tree: Tree, source: Source) -> None:
    """Refuse what is nested deeper than the builder's recursion can follow, walking the tree
    without recursion: an expression (``1+1+...`` with 50,000 terms, 10,000 parentheses), and
    repeats inside repeats beyond :data:`limits.MAX_NESTING` (the limit elaboration holds them
    to; 500 of them would exhaust Python's stack before it got there)."""
    stack = [(tree, 0, tree, 0)]  # a node, its depth inside its expression, that expression, repeats around it
    while stack:
        node, depth, root, repeats = stack.pop()
        if depth > limits.MAX_EXPRESSION_DEPTH:
            raise NindslError.one("E0401", f"expression nested more than {limits.MAX_EXPRESSION_DEPTH} deep "
                                  "(operators and parentheses inside each other)", _first_char(root, source),
                                  help="split it into several `let` constants")
        if node.data == "repeat_stmt":
            repeats += 1
            if repeats > limits.MAX_NESTING:
                meta = node.meta
                raise NindslError.one("E0401", f"blocks and repeats nest deeper than {limits.MAX_NESTING}",
                                      Span(source, meta.line, meta.column, meta.end_line, meta.end_column),
                                      help="flatten the inner repeats into one")
        inside = node.data in _EXPRESSIONS
        stack.extend((child, depth + 1, root, repeats) if inside else (child, 1, child, repeats)
                     for child in node.children if isinstance(child, Tree))


def _first_char(node: Tree, source: Source) -> Span | None:
    meta = node.meta
    return None if getattr(meta, "empty", True) else Span(source, meta.line, meta.column, meta.line, meta.column + 1)


def _check_names(tree: Tree, source: Source) -> None:
    """Refuse a name longer than :data:`limits.MAX_NAME` characters (walking the tree without
    recursion): a name becomes a file name, an ONNX and a Python name, and part of messages."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in node.children:
            if isinstance(child, Tree):
                stack.append(child)
            elif isinstance(child, Token) and child.type == "NAME" and len(child) > limits.MAX_NAME:
                raise NindslError.one("E0401", f"a name of {len(child):,} characters; the most is {limits.MAX_NAME}",
                                      Span(source, child.line, child.column, child.line, child.end_column),
                                      help="use a shorter name")


def parse_file(path: str | Path) -> ast.Module:
    """Read and parse one spec file (size, encoding and kind checked first)."""
    path = Path(path)
    shown = str(path)
    try:
        folder, other = path.is_dir(), path.exists() and not path.is_file()
    except OSError as error:  # a name too long for the file system, ...
        raise NindslError.one("E0301", f"cannot read `{shown}`: {error.strerror or error}", None) from None
    if folder:
        raise NindslError.one("E0301", f"`{shown}` is a folder, not a spec", None,
                              help="give the path of a .nin file")
    if other:
        raise NindslError.one("E0301", f"`{shown}` is not a regular file", None)
    try:
        size = path.stat().st_size
        if size > limits.MAX_FILE_BYTES:
            raise NindslError.one("E0401", f"`{shown}` is {size:,} bytes; the limit is {limits.MAX_FILE_BYTES:,}",
                                  None, help="split it into files joined with `import`")
        data = path.read_bytes()
    except FileNotFoundError:
        raise NindslError.one("E0301", f"no such file `{shown}`", None) from None
    except OSError as error:
        raise NindslError.one("E0301", f"cannot read `{shown}`: {error.strerror}", None) from None
    refuse_kind(path, "a .nin spec", ("nin", "text"))  # an ONNX model is not "invalid UTF-8"
    return parse(decode(data, shown), shown)


# --- syntax errors -------------------------------------------------------------------

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_TOKEN_NAMES = {
    "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`", "LBRACE": "`{`", "RBRACE": "`}`",
    "COMMA": "`,`", "COLON": "`:`", "EQUAL": "`=`", "PLUS": "`+`", "MINUS": "`-`", "STAR": "`*`",
    "SLASH": "`/`", "__ANON_0": "`//`", "NAME": "a name", "NUMBER": "a number", "STRING": "a string",
    "$END": "end of file",
}


def _describe(terminal: str) -> str:
    if terminal in _TOKEN_NAMES:
        return _TOKEN_NAMES[terminal]
    try:
        pattern = grammar().get_terminal(terminal).pattern
    except KeyError:
        return terminal.lower()
    if pattern.type == "str":
        return f"`{pattern.value}`"
    return terminal.lower()


class _Opener(NamedTuple):
    char: str
    line: int
    column: int


def _unclosed(source: Source, upto: int | None = None) -> _Opener | None:
    """The innermost opener still open at offset ``upto`` (default: the end), as line/col."""
    stack: list[tuple[str, int, int]] = []
    text = source.text if upto is None else source.text[:upto]
    line, column, index = 1, 1, 0
    while index < len(text):
        char = text[index]
        if char == "#":
            while index < len(text) and text[index] != "\n":
                index += 1
            continue
        if char == '"':
            index += 1
            column += 1
            while index < len(text) and text[index] not in '"\n':
                index, column = index + (2 if text[index] == "\\" else 1), column + (2 if text[index] == "\\" else 1)
        elif char in _OPENERS:
            stack.append((char, line, column))
        elif char in _OPENERS.values():
            if stack and _OPENERS[stack[-1][0]] == char:
                stack.pop()
        if char == "\n":
            line, column = line + 1, 1
        else:
            column += 1
        index += 1
    if not stack:
        return None
    char, line, column = stack[-1]
    return _Opener(char, line, column)


def _syntax_error(error: UnexpectedInput, source: Source):
    from ..kernel.diagnostics import Diagnostic

    line, column = max(error.line, 1), max(error.column, 1)
    if isinstance(error, UnexpectedCharacters):
        char = source.text[error.pos_in_stream] if error.pos_in_stream < len(source.text) else "?"
        span = Span(source, line, column, line, column + 1)
        if not char.isascii() and unicodedata.category(char) == "Nd":
            return _foreign_digit(char, span)
        help = "strings use double quotes" if char == "'" else None
        return Diagnostic("E0001", f"unexpected character `{char}`", span, help)
    token = getattr(error, "token", None)
    at_end = isinstance(error, UnexpectedEOF) or (token is not None and token.type == "$END")
    opener = _unclosed(source) if at_end else None
    if token is not None and not at_end and token.start_pos is not None:
        inner = _unclosed(source, token.start_pos)
        if inner is not None and inner.char in "([" and inner.line < token.line:
            closer = _OPENERS[inner.char]
            end = len(source.line(inner.line).split("#")[0].rstrip()) + 1
            return Diagnostic("E0002", f"`{inner.char}` is not closed before the next line",
                              Span(source, inner.line, end, inner.line, end + 1), f"add `{closer}` here",
                              (Note("opened here", Span(source, inner.line, inner.column, inner.line,
                                                        inner.column + 1)),))
    if at_end:
        lines = source.text.rstrip("\n").split("\n")
        line, column = len(lines), len(lines[-1]) + 1
    if opener is not None and at_end:
        closer = _OPENERS[opener.char]
        return Diagnostic("E0002", f"`{opener.char}` is never closed",
                          Span(source, line, column, line, column + 1),
                          f"add `{closer}` to close it",
                          (Note("opened here", Span(source, opener.line, opener.column, opener.line, opener.column + 1)),))
    expected = sorted(getattr(error, "expected", None) or getattr(error, "accepts", None) or ())
    found = "end of file" if at_end else f"`{token}`" if token is not None else "input"
    if token is not None and token.type == "NAME" and str(token) in KEYWORDS:
        found = f"keyword `{token}`"
    wanted = ", ".join(dict.fromkeys(_describe(t) for t in expected))
    width = len(str(token)) if token is not None and not at_end else 1
    help = f"expected {wanted}" if wanted else None
    if token is not None and str(token) == "=" and "COLON" in expected:
        help = "a layer label is followed by `:`, as in `conv1: mlpconv(...)`"
    return Diagnostic("E0001", f"unexpected {found}", Span(source, line, column, line, column + width), help)


def _foreign_digit(char: str, span: Span):
    """A decimal digit of another script (`৪`, `٤`, `４`): Python's int() reads it as its value,
    so a spec would mean a number it does not show in ASCII; numbers are written with 0-9."""
    from ..kernel.diagnostics import Diagnostic

    name = unicodedata.name(char, "DIGIT")
    return Diagnostic("E0001", f"`{char}` (U+{ord(char):04X} {name}) is not an ASCII digit; numbers are written "
                               "with 0-9", span, f"write `{unicodedata.digit(char)}`")


# --- tree → syntax dataclasses -----------------------------------------------------------


class _Builder(Transformer):
    """Turns Lark's tree into :mod:`nindsl.syntax` nodes, with spans."""

    def __init__(self, source: Source):
        super().__init__()
        self.source = source
        self.errors = Collector()

    def _span(self, meta) -> Span | None:
        if getattr(meta, "empty", True):
            return None
        return Span(self.source, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok(self, token: Token) -> Span:
        return Span(self.source, token.line, token.column, token.end_line, token.end_column)

    # expressions
    @v_args(meta=True)
    def number(self, meta, children):
        (token,) = children
        raw = str(token)
        span = self._tok(token)
        if len(raw.replace(".", "").split("e")[0].split("E")[0]) > limits.MAX_NUMBER_DIGITS:
            self.errors.error("E0005", f"number has {len(raw)} characters; the most is {limits.MAX_NUMBER_DIGITS}",
                              span, help="no size in a network needs that many digits")
            return ast.Number(0, raw, span)
        is_int = raw.isdigit()
        value = int(raw) if is_int else float(raw)
        if is_int and value > limits.MAX_INT or not is_int and (value != value or value in (float("inf"),)):
            self.errors.error("E0005", f"number `{raw}` is too large (the most is {limits.MAX_INT:,})", span)
            value = 0
        return ast.Number(value, raw, span)

    @v_args(meta=True)
    def string(self, meta, children):
        (token,) = children
        body = str(token)[1:-1]
        value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)
        return ast.String(value, self._tok(token))

    @v_args(meta=True)
    def true(self, meta, children):
        return ast.Bool(True, self._span(meta))

    @v_args(meta=True)
    def false(self, meta, children):
        return ast.Bool(False, self._span(meta))

    @v_args(meta=True)
    def name(self, meta, children):
        (token,) = children
        return ast.Name(str(token), self._tok(token))

    @v_args(meta=True)
    def list(self, meta, children):
        items = tuple(c for c in children if c is not None)
        if len(items) > limits.MAX_LIST:
            self.errors.error("E0401", f"list has {len(items):,} items; the most is {limits.MAX_LIST:,}", self._span(meta))
        return ast.ListExpr(items, self._span(meta))

    def _binop(op):  # noqa: N805 - a rule factory
        @v_args(meta=True)
        def rule(self, meta, children):
            left, right = children
            return ast.BinOp(op, left, right, self._span(meta))
        return rule

    add, sub, mul, div, floordiv = _binop("+"), _binop("-"), _binop("*"), _binop("/"), _binop("//")

    @v_args(meta=True)
    def neg(self, meta, children):
        return ast.Unary("-", children[0], self._span(meta))

    @v_args(meta=True)
    def pos(self, meta, children):
        return ast.Unary("+", children[0], self._span(meta))

    @v_args(meta=True)
    def call(self, meta, children):
        token, args = children
        return ast.Call(str(token), args or (), self._span(meta), self._tok(token))

    @v_args(meta=True)
    def args(self, meta, children):
        out = []
        for child in children:
            if child is None:
                continue
            if isinstance(child, ast.Arg):
                out.append(child)
            else:
                out.append(ast.Arg(None, child, child.span))
        return tuple(out)

    @v_args(meta=True)
    def keyword(self, meta, children):
        token, value = children
        return ast.Arg(str(token), value, self._tok(token))

    # statements
    @v_args(meta=True)
    def tensor_type(self, meta, children):
        dtype, *dims = children
        return dtype, tuple(d for d in dims if d is not None)

    def _tensor(kind):  # noqa: N805
        @v_args(meta=True)
        def rule(self, meta, children):
            token, (dtype, dims) = children
            return ast.TensorDecl(kind, str(token), str(dtype), dims, self._span(meta), self._tok(dtype))
        return rule

    input_decl, output_decl = _tensor("input"), _tensor("output")

    @v_args(meta=True)
    def layer_stmt(self, meta, children):
        label, func, args = children
        span = self._span(meta)
        call_start = self._tok(func)
        call = ast.Call(str(func), args or (),
                        Span(self.source, call_start.line, call_start.column, span.end_line, span.end_column),
                        call_start)
        return ast.LayerStmt(str(label) if label is not None else None, call, span,
                             self._tok(label) if label is not None else None)

    @v_args(meta=True)
    def repeat_stmt(self, meta, children):
        count, *body = children
        return ast.Repeat(count, tuple(body), self._span(meta))

    # items
    @v_args(meta=True)
    def import_stmt(self, meta, children):
        (token,) = children
        return ast.Import(self.string(meta, [token]).value, self._span(meta))

    @v_args(meta=True)
    def let_stmt(self, meta, children):
        token, value = children
        return ast.Let(str(token), value, self._span(meta), self._tok(token))

    @v_args(meta=True)
    def param(self, meta, children):
        token, default = children
        return ast.Param(str(token), default, self._span(meta))

    def params(self, children):
        return tuple(c for c in children if c is not None)

    def _definition(cls):  # noqa: N805
        @v_args(meta=True)
        def rule(self, meta, children):
            token, params, *body = children
            return cls(str(token), params or (), tuple(body), self._span(meta), self._tok(token))
        return rule

    block_def, network_def = _definition(ast.BlockDef), _definition(ast.NetworkDef)

    @v_args(meta=True)
    def setting(self, meta, children):
        token, value = children
        return ast.Setting(str(token), value, self._span(meta))

    @v_args(meta=True)
    def train_def(self, meta, children):
        return ast.TrainDef(tuple(children), self._span(meta))
