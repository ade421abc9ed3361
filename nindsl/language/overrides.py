"""`--set NAME=VALUE`: network parameters given on the command line.

A value is parsed and evaluated like a `let`, must be of its default's kind, and a mistake
in it is reported at the option, not at the uses of the parameter in the spec; a mistake
found at such a use says the value came from the command line.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from ..kernel.diagnostics import Collector, NindslError, Note, Span, did_you_mean
from . import syntax as ast
from .evaluate import Symbol, ValueMistake, evaluate, type_name
from .parser import parse

_NO_DEFAULT = object()


def apply_overrides(node: ast.NetworkDef, declared: Mapping[str, Span | None], overrides: dict[str, str],
                    constants: dict[str, Any], params: dict[str, Any], errors: Collector) -> None:
    """Each ``--set name=text`` of ``overrides`` into ``params`` (``declared``: the network's
    parameters); raises the diagnostics at once if one is wrong."""
    before = len(errors.diagnostics)
    defaults = dict(params)
    for name, text in overrides.items():
        if name not in declared:
            errors.error("E0504", f"`--set {name}=...`: network `{node.name}` has no parameter `{name}`",
                         node.name_span, did_you_mean(name, declared) or
                         f"its parameters: {', '.join(declared) or 'none'}")
            continue
        _override(name, text, defaults.get(name, _NO_DEFAULT), constants, params, errors)
    if len(errors.diagnostics) > before:
        errors.raise_if_any()  # a bad --set value would only reappear at each use of the parameter


def _override(name: str, text: str, default: Any, constants: dict[str, Any], params: dict[str, Any],
              errors: Collector) -> None:
    """``--set name=text`` into ``params``; a mistake in it is reported at the option ("in
    --set classes=abc"), not at the uses of the parameter in the spec."""
    where = f"in --set {name}={text}"
    try:
        value_module = parse(f"let value = {text}", path=f"--set {name}")
        if len(value_module.items) != 1 or not isinstance(value_module.items[0], ast.Let):
            raise IndexError
        value = evaluate(value_module.items[0].value, constants)
    except NindslError as error:
        errors.error("E0504", f"{where}: not a valid value", None, error.diagnostics[0].message)
        return
    except ValueMistake as error:
        errors.error("E0504", f"{where}: {error.message}", None, error.help)
        return
    except IndexError:
        errors.error("E0504", f"{where}: not a valid value", None, f"give one value, e.g. --set {name}=100")
        return
    unknown = _first_symbol(value)
    if unknown is not None:
        errors.error("E0504", f"{where}: unknown name `{unknown}`", None,
                     did_you_mean(unknown, constants) or "give a number, a list, true/false, or a \"string\" in "
                                                         "quotes (your shell may need them escaped)")
        return
    if default is not _NO_DEFAULT and _kind(value) != _kind(default):
        errors.error("E0504", f"{where}: `{name}` takes {type_name(default)} (its default is "
                              f"{_shown_value(default)}), not {type_name(value)}", None)
        return
    params[name] = value


def blame_overrides(errors: Collector, start: int, overrides: dict[str, tuple[str, Any]]) -> None:
    """A mistake found at a use of a parameter whose value came from --set says so (the spec is
    fine; the value given on the command line does not fit there)."""
    if not overrides:
        return
    for index in range(start, len(errors.diagnostics)):
        diagnostic = errors.diagnostics[index]
        span = diagnostic.span
        if span is None or span.source is None or span.end_line != span.line:
            continue
        name = span.source.line(span.line)[span.column - 1: span.end_column - 1]
        if name not in overrides:
            continue
        text, value = overrides[name]
        if _shown_value(value) in diagnostic.message or str(value) in diagnostic.message:  # (not a block's own `name`)
            note = Note(f"`{name}` is {_shown_value(value)} from the command line: in --set {name}={text}")
            errors.diagnostics[index] = replace(diagnostic, notes=(note, *diagnostic.notes))


def _first_symbol(value: Any) -> str | None:
    """The first unbound name in a value (a --set value is evaluated where no name is bound)."""
    if isinstance(value, Symbol):
        return value.name
    if isinstance(value, tuple):
        return next((n for n in map(_first_symbol, value) if n is not None), None)
    return None


def _kind(value: Any) -> str:
    """What must agree between a parameter's default and a --set value (ints and floats mix)."""
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type_name(value)


def _shown_value(value: Any) -> str:
    """A value as the spec would spell it (a path's is `imports._shown`, another function)."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(map(_shown_value, value)) + "]"
    return str(value)

