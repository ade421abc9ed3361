"""Expressions → values: numbers, strings, booleans, lists, calls and unbound names.

A name with no binding evaluates to a :class:`Symbol` (an enum value such as `ceil`, or a
batch dimension such as `N`); a call evaluates to a :class:`CallValue`, bound later against
its own signature (:mod:`nindsl.language.binding`). A value that cannot be computed raises
:class:`ValueMistake`, which the caller reports where it belongs.

>>> from nindsl.language import syntax as ast
>>> evaluate(ast.BinOp("*", ast.Name("k"), ast.Number(2)), {"k": 3})
6
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..kernel import limits
from ..kernel.diagnostics import Span, did_you_mean
from . import syntax as ast


@dataclass(frozen=True)
class Symbol:
    """A bare name with no binding: an enum value (`ceil`, `relu`) or a batch dim (`N`)."""

    name: str


@dataclass(frozen=True)
class CallValue:
    """``normal(std = 0.05)`` as a value: bound later against its own signature."""

    func: str
    args: tuple[tuple[str | None, Any, Span | None, ast.Expr], ...]
    span: Span | None
    func_span: Span | None


class ValueMistake(Exception):
    """A value that cannot be computed or converted; without a span of its own it is
    reported at the argument (or setting) that holds it."""

    def __init__(self, code: str, message: str, span: Span | None = None, help: str | None = None):
        super().__init__(message)
        self.code, self.message, self.span, self.help = code, message, span, help


def type_name(value: Any) -> str:
    """What a value is, as a message says it (`an integer`, `a list`, `a name`)."""
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            tuple: "a list", Symbol: "a name", CallValue: "a call"}.get(type(value), type(value).__name__)


def evaluate(expr: ast.Expr, env: dict[str, Any]) -> Any:
    """The value of an expression; unbound names become :class:`Symbol`."""
    match expr:
        case ast.Number(value=value) | ast.String(value=value) | ast.Bool(value=value):
            return value
        case ast.Name(id=name):
            return env.get(name, Symbol(name))
        case ast.ListExpr(items=items):
            return tuple(evaluate(item, env) for item in items)
        case ast.Call(func=func, args=args):
            return CallValue(func, tuple((a.name, evaluate(a.value, env), a.span, a.value) for a in args),
                             expr.span, expr.func_span)
        case ast.Unary(op=op, operand=operand):
            value = _number(operand, evaluate(operand, env), env)
            return -value if op == "-" else value
        case ast.BinOp(op=op, left=left, right=right):
            a, b = _number(left, evaluate(left, env), env), _number(right, evaluate(right, env), env)
            if op in ("/", "//") and b == 0:
                raise ValueMistake("E0107", "division by zero", right.span)
            result = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                      "/": lambda: a / b, "//": lambda: a // b}[op]()
            if isinstance(result, int) and abs(result) > limits.MAX_INT:
                raise ValueMistake("E0005", f"value {result:.3g} is too large (the most is {limits.MAX_INT:,})",
                                 expr.span)
            if isinstance(result, float) and result != result or result in (float("inf"), float("-inf")):
                raise ValueMistake("E0005", "arithmetic overflows", expr.span)
            return result
    raise AssertionError(f"unknown expression {expr!r}")  # pragma: no cover


def _number(expr: ast.Expr, value: Any, env: dict[str, Any]) -> int | float:
    if isinstance(value, Symbol):
        raise ValueMistake("E0106", f"unknown name `{value.name}`", expr.span, did_you_mean(value.name, env))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueMistake("E0105", f"arithmetic needs numbers, got {type_name(value)}", expr.span)
    return value
