"""The syntax tree of a .nin file: what was written, before any meaning is given.

Frozen dataclasses with a ``span`` that equality ignores, so ``parse(fmt(x)) ==
parse(x)`` compares structure only. No Lark object leaves ``parser.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..kernel.diagnostics import Source, Span, span_field

# --- expressions -------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    value: int | float
    raw: str = span_field()  # the literal as written, so fmt keeps `1e-4`
    span: Span | None = span_field()


@dataclass(frozen=True)
class String:
    value: str
    span: Span | None = span_field()


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span | None = span_field()


@dataclass(frozen=True)
class Name:
    id: str
    span: Span | None = span_field()


@dataclass(frozen=True)
class ListExpr:
    items: tuple["Expr", ...]
    span: Span | None = span_field()


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / //
    left: "Expr"
    right: "Expr"
    span: Span | None = span_field()


@dataclass(frozen=True)
class Unary:
    op: str  # - or +
    operand: "Expr"
    span: Span | None = span_field()


@dataclass(frozen=True)
class Arg:
    """A call argument: positional when ``name`` is None."""

    name: str | None
    value: "Expr"
    span: Span | None = span_field()


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Arg, ...]
    span: Span | None = span_field()
    func_span: Span | None = span_field()


Expr = Union[Number, String, Bool, Name, ListExpr, BinOp, Unary, Call]

# --- statements inside a network or block ----------------------------------------


@dataclass(frozen=True)
class TensorDecl:
    """``input image: f32[N, 3, 32, 32]`` or ``output probs: f32[N, classes]``."""

    kind: str  # "input" | "output"
    name: str
    dtype: str
    dims: tuple[Expr, ...]
    span: Span | None = span_field()
    dtype_span: Span | None = span_field()


@dataclass(frozen=True)
class LayerStmt:
    """``label: func(args)``: a layer, or a call of a block."""

    label: str | None
    call: Call
    span: Span | None = span_field()
    label_span: Span | None = span_field()


@dataclass(frozen=True)
class Repeat:
    count: Expr
    body: tuple["Stmt", ...]
    span: Span | None = span_field()


Stmt = Union[TensorDecl, LayerStmt, Repeat]

# --- top-level items ---------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    default: Expr | None
    span: Span | None = span_field()


@dataclass(frozen=True)
class Import:
    path: str
    span: Span | None = span_field()


@dataclass(frozen=True)
class Let:
    name: str
    value: Expr
    span: Span | None = span_field()
    name_span: Span | None = span_field()


@dataclass(frozen=True)
class BlockDef:
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span | None = span_field()
    name_span: Span | None = span_field()


@dataclass(frozen=True)
class NetworkDef:
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span | None = span_field()
    name_span: Span | None = span_field()


@dataclass(frozen=True)
class Setting:
    name: str
    value: Expr
    span: Span | None = span_field()


@dataclass(frozen=True)
class TrainDef:
    settings: tuple[Setting, ...]
    span: Span | None = span_field()


Item = Union[Import, Let, BlockDef, NetworkDef, TrainDef]


@dataclass(frozen=True)
class Comment:
    text: str  # including the leading '#'
    line: int
    column: int


@dataclass(frozen=True)
class Module:
    """One parsed file."""

    items: tuple[Item, ...]
    source: Source | None = span_field()
    comments: tuple[Comment, ...] = span_field()
