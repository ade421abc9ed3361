"""Arguments → typed values: every argument of a call bound against its signature.

A :class:`Binder` matches the arguments of a call (a layer's, `normal(...)`, `sgd(...)`,
`step(...)`) to the parameters of its :class:`~nindsl.language.signature.Signature`,
converts each value to its parameter's kind (`size`, `prob`, `widths`, `round`, ...) and
builds the result; every mistake is collected. Layers' signatures are in the layer
registry; those of initialisers, optimizers and schedules are here.
"""

from __future__ import annotations

from typing import Any

from ..kernel import limits
from ..kernel.diagnostics import Collector, Note, Span, did_you_mean
from . import ir
from . import syntax as ast
from .evaluate import CallValue, Symbol, ValueMistake, type_name
from .signature import REQUIRED, Param, Signature, fixed

FAILED = object()  # a value whose errors are already reported

# --- argument types ------------------------------------------------------------------


def as_int(value: Any, minimum: int, what: str, env) -> int:
    """``value`` as an integer of at least ``minimum`` (and at most the limit on sizes)."""
    if isinstance(value, Symbol):
        raise ValueMistake("E0106", f"unknown name `{value.name}`", help=did_you_mean(value.name, env))
    if isinstance(value, float) and not isinstance(value, bool):
        hint = f"write `{int(value)}`" if value.is_integer() else "use `//` for integer division"
        raise ValueMistake("E0105", f"{what} must be an integer, got {value!r}", help=hint)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueMistake("E0105", f"{what} must be an integer, got {type_name(value)}")
    if value < minimum:
        raise ValueMistake("E0107", f"{what} must be at least {minimum}, got {value}")
    if value > limits.MAX_DIM:
        raise ValueMistake("E0401", f"{what} is {value:,}; the most is {limits.MAX_DIM:,}")
    return value


def _as_float(value: Any, low: float, high: float | None, what: str, env, high_open: bool = False) -> float:
    if isinstance(value, Symbol):
        raise ValueMistake("E0106", f"unknown name `{value.name}`", help=did_you_mean(value.name, env))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueMistake("E0105", f"{what} must be a number, got {type_name(value)}")
    if value < low or high is not None and (value >= high if high_open else value > high):
        bound = f"in [{low:g}, {high:g}{')' if high_open else ']'}" if high is not None else f"at least {low:g}"
        raise ValueMistake("E0107", f"{what} must be {bound}, got {value:g}")
    return float(value)


def _enum(choices: tuple[str, ...]):
    def convert(value: Any, what: str, env) -> str:
        name = value.name if isinstance(value, Symbol) else value if isinstance(value, str) else None
        if name in choices:
            return name
        shown = f"`{name}`" if name is not None else type_name(value)
        raise ValueMistake("E0107", f"{what} must be one of {', '.join(choices)}; got {shown}",
                            help=did_you_mean(name, choices) if name else None)
    return convert


def _widths(value: Any, what: str, env, spans: list[Span | None]) -> tuple[int, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueMistake("E0105", f"{what} must be a list of channel counts",
                            help=f"write `[{value}]` for a single convolution")
    if not isinstance(value, tuple) or not value:
        raise ValueMistake("E0105", f"{what} must be a non-empty list of channel counts, got {type_name(value)}")
    out = []
    for index, item in enumerate(value):
        try:
            out.append(as_int(item, 1, f"{what}[{index}]", env))
        except ValueMistake as error:
            error.span = spans[index] if index < len(spans) else None
            raise
    return tuple(out)


# --- signatures (layers' are in the layer registry) ------------------------------------------

_ROUND, _ACT = _enum(("floor", "ceil")), _enum(("relu", "none"))
P = Param

INITS: dict[str, Signature] = {
    "normal": Signature((P("std", "positive"), P("mean", "number", 0.0)), fixed(ir.Init, kind="normal")),
    "xavier": Signature((), fixed(ir.Init, kind="xavier")),
    "kaiming": Signature((), fixed(ir.Init, kind="kaiming")),
}

OPTIMIZERS: dict[str, Signature] = {
    "sgd": Signature((P("lr", "positive"), P("momentum", "fraction", 0.0), P("weight_decay", "scale", 0.0),
                      P("nesterov", "bool", False)), ir.Sgd),
}

SCHEDULES: dict[str, Signature] = {
    "step": Signature((P("every", "size"), P("gamma", "fraction", 0.1)), fixed(ir.Schedule, kind="step")),
    "multistep": Signature((P("milestones", "epochs"), P("gamma", "fraction", 0.1)),
                           fixed(ir.Schedule, kind="multistep")),
    "cosine": Signature((), fixed(ir.Schedule, kind="cosine")),
    "constant": Signature((), fixed(ir.Schedule, kind="constant")),
}


class Binder:
    """Converts argument values to the types their parameters need, collecting errors."""

    def __init__(self, errors: Collector):
        self.errors = errors

    def convert(self, kind: str, value: Any, what: str, span: Span | None, expr: ast.Expr | None, env) -> Any:
        item_spans = [item.span for item in expr.items] if isinstance(expr, ast.ListExpr) else []
        match kind:
            case "size": return as_int(value, 1, what, env)
            case "count": return as_int(value, 0, what, env)
            case "widths": return _widths(value, what, env, item_spans)
            case "prob": return _as_float(value, 0.0, 1.0, what, env, high_open=True)
            case "fraction": return _as_float(value, 0.0, 1.0, what, env)
            case "scale": return _as_float(value, 0.0, None, what, env)
            case "positive":
                result = _as_float(value, 0.0, None, what, env)
                if result == 0:
                    raise ValueMistake("E0107", f"{what} must be greater than 0")
                return result
            case "number": return _as_float(value, float("-inf"), None, what, env)
            case "round": return _ROUND(value, what, env)
            case "act": return _ACT(value, what, env)
            case "bool":
                if not isinstance(value, bool):
                    raise ValueMistake("E0105", f"{what} must be true or false, got {type_name(value)}")
                return value
            case "string":
                if isinstance(value, Symbol):
                    return value.name
                if not isinstance(value, str):
                    raise ValueMistake("E0105", f"{what} must be a string, got {type_name(value)}")
                return value
            case "numbers":
                items = value if isinstance(value, tuple) else (value,)
                if not items:
                    raise ValueMistake("E0105", f"{what} must be a number or a non-empty list of numbers")
                return tuple(_as_float(v, float("-inf"), None, f"{what}[{i}]", env) for i, v in enumerate(items))
            case "epochs":
                if not isinstance(value, tuple) or not value:
                    raise ValueMistake("E0105", f"{what} must be a non-empty list of epochs")
                return tuple(as_int(v, 1, f"{what}[{i}]", env) for i, v in enumerate(value))
            case "init": return self.call(value, INITS, what, span, env)
            case "scales" | "inits":  # one value, or a list with one per stage
                single = "scale" if kind == "scales" else "init"
                if not isinstance(value, tuple):
                    return self.convert(single, value, what, span, None, env)
                if not value:
                    raise ValueMistake("E0105", f"{what} must be a value or a non-empty list, one per stage")
                items = []
                for index, item in enumerate(value):
                    item_span = item_spans[index] if index < len(item_spans) else span
                    try:
                        items.append(self.convert(single, item, f"{what.rstrip('`')}[{index}]`", item_span, None, env))
                    except ValueMistake as error:
                        error.span = error.span or item_span
                        raise
                return FAILED if FAILED in items else tuple(items)
            case "optimizer": return self.call(value, OPTIMIZERS, what, span, env)
            case "schedule": return self.call(value, SCHEDULES, what, span, env)
            case "any": return value
        raise AssertionError(kind)  # pragma: no cover

    def call(self, value: Any, table: dict[str, Signature], what: str, span: Span | None, env) -> Any:
        if value is None:
            return None
        if isinstance(value, Symbol) and value.name in table:  # `init = xavier` without ()
            value = CallValue(value.name, (), span, span)
        if not isinstance(value, CallValue):
            raise ValueMistake("E0105", f"{what} must be one of {', '.join(f'{k}(...)' for k in table)}, "
                                         f"got {type_name(value)}")
        if value.func not in table:
            self.errors.error("E0107", f"unknown {what} `{value.func}`", value.func_span,
                              did_you_mean(value.func, table) or f"known: {', '.join(table)}")
            return FAILED
        return self.bind(value.func, table[value.func], value.args, value.span, value.func_span, env)

    def bind(self, name: str, signature: Signature, args, call_span, func_span, env,
             extra: dict[str, Any] | None = None) -> Any:
        """Bind ``args`` [(name|None, value, span, expr)] to ``signature``; build the result."""
        params = {p.name: p for p in signature.params}
        bound: dict[str, Any] = {}
        where: dict[str, Span | None] = {}
        failed = False
        positional = [p.name for p in signature.params]
        position = 0
        for arg_name, value, span, expr in args:
            if arg_name is None:
                if position >= len(positional):
                    self.errors.error("E0109", f"`{name}` takes at most {len(positional)} positional "
                                               f"argument{'s' if len(positional) != 1 else ''}", span,
                                      f"usage: {signature.usage(name)}")
                    failed = True
                    continue
                arg_name = positional[position]
                position += 1
            elif arg_name not in params:
                self.errors.error("E0102", f"`{name}` has no argument `{arg_name}`", span,
                                  did_you_mean(arg_name, params) or f"usage: {signature.usage(name)}")
                failed = True
                continue
            if arg_name in bound or arg_name in where:
                self.errors.error("E0103", f"argument `{arg_name}` is given twice", span,
                                  notes=[Note("first given here", where.get(arg_name))])
                failed = True
                continue
            where[arg_name] = span
            value_span = getattr(expr, "span", None) or span
            if value is FAILED:
                failed = True
                continue
            try:
                bound[arg_name] = self.convert(params[arg_name].kind, value, f"`{arg_name}`", value_span, expr, env)
            except ValueMistake as error:
                self.errors.error(error.code, error.message, error.span or value_span, error.help)
                failed = True
            else:
                if bound[arg_name] is FAILED:
                    failed = True
        for param in signature.params:
            if param.name not in where and param.default is REQUIRED:
                self.errors.error("E0104", f"`{name}` needs argument `{param.name}`", func_span or call_span,
                                  f"usage: {signature.usage(name)}")
                failed = True
            elif param.name not in where:
                bound[param.name] = param.default
        failed = self.check_stages(name, signature, bound, where, call_span) or failed
        if failed:
            return FAILED
        return signature.build(**bound, **(extra or {}))

    def check_stages(self, name: str, signature: Signature, bound: dict[str, Any], where, call_span) -> bool:
        """A per-stage list (`lr_scale = [1, 1, 0.1]`) has one entry per width; True if one has not."""
        widths = next((bound[p.name] for p in signature.params if p.kind == "widths"
                       and isinstance(bound.get(p.name), tuple)), None)
        wrong = False
        for param in signature.params:
            value = bound.get(param.name)
            if param.kind in ("scales", "inits") and isinstance(value, tuple) and widths is not None \
                    and len(value) != len(widths):
                self.errors.error("E0107", f"`{param.name}` has {len(value)} entr{'y' if len(value) == 1 else 'ies'}; "
                                           f"this {name} has {len(widths)} stages", where.get(param.name) or call_span,
                                  f"give one value per stage ({len(widths)}), or a single value for all")
                wrong = True
        return wrong

