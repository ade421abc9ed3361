"""Stage 2: syntax tree → IR network (imports, constants, blocks, repeats, arguments).

Every argument of every layer is bound against its signature in the layer registry
(:data:`nindsl.language.layers.SIGNATURES`) and converted to its type; all mistakes are
collected. Shapes are left to :mod:`nindsl.language.shapes`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from ..kernel import limits
from ..kernel.diagnostics import Collector, NindslError, Note, Source, Span, did_you_mean
from . import ir
from . import syntax as ast
from .layers import SIGNATURES
from .parser import parse, parse_file
from .signature import REQUIRED, Param, Signature, fixed

# --- values --------------------------------------------------------------------------


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


class _ValueMistake(Exception):
    """A value that cannot be computed or converted; without a span of its own it is
    reported at the argument (or setting) that holds it."""

    def __init__(self, code: str, message: str, span: Span | None = None, help: str | None = None):
        super().__init__(message)
        self.code, self.message, self.span, self.help = code, message, span, help


def _type_name(value: Any) -> str:
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
                raise _ValueMistake("E0107", "division by zero", right.span)
            result = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                      "/": lambda: a / b, "//": lambda: a // b}[op]()
            if isinstance(result, int) and abs(result) > limits.MAX_INT:
                raise _ValueMistake("E0005", f"value {result:.3g} is too large (the most is {limits.MAX_INT:,})",
                                 expr.span)
            if isinstance(result, float) and result != result or result in (float("inf"), float("-inf")):
                raise _ValueMistake("E0005", "arithmetic overflows", expr.span)
            return result
    raise AssertionError(f"unknown expression {expr!r}")  # pragma: no cover


def _number(expr: ast.Expr, value: Any, env: dict[str, Any]) -> int | float:
    if isinstance(value, Symbol):
        raise _ValueMistake("E0106", f"unknown name `{value.name}`", expr.span, did_you_mean(value.name, env))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _ValueMistake("E0105", f"arithmetic needs numbers, got {_type_name(value)}", expr.span)
    return value


# --- argument types ------------------------------------------------------------------


def _int(value: Any, minimum: int, what: str, env) -> int:
    if isinstance(value, Symbol):
        raise _ValueMistake("E0106", f"unknown name `{value.name}`", help=did_you_mean(value.name, env))
    if isinstance(value, float) and not isinstance(value, bool):
        hint = f"write `{int(value)}`" if value.is_integer() else "use `//` for integer division"
        raise _ValueMistake("E0105", f"{what} must be an integer, got {value!r}", help=hint)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _ValueMistake("E0105", f"{what} must be an integer, got {_type_name(value)}")
    if value < minimum:
        raise _ValueMistake("E0107", f"{what} must be at least {minimum}, got {value}")
    if value > limits.MAX_DIM:
        raise _ValueMistake("E0401", f"{what} is {value:,}; the most is {limits.MAX_DIM:,}")
    return value


def _float(value: Any, low: float, high: float | None, what: str, env, high_open: bool = False) -> float:
    if isinstance(value, Symbol):
        raise _ValueMistake("E0106", f"unknown name `{value.name}`", help=did_you_mean(value.name, env))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _ValueMistake("E0105", f"{what} must be a number, got {_type_name(value)}")
    if value < low or high is not None and (value >= high if high_open else value > high):
        bound = f"in [{low:g}, {high:g}{')' if high_open else ']'}" if high is not None else f"at least {low:g}"
        raise _ValueMistake("E0107", f"{what} must be {bound}, got {value:g}")
    return float(value)


def _enum(choices: tuple[str, ...]):
    def convert(value: Any, what: str, env) -> str:
        name = value.name if isinstance(value, Symbol) else value if isinstance(value, str) else None
        if name in choices:
            return name
        shown = f"`{name}`" if name is not None else _type_name(value)
        raise _ValueMistake("E0107", f"{what} must be one of {', '.join(choices)}; got {shown}",
                            help=did_you_mean(name, choices) if name else None)
    return convert


def _widths(value: Any, what: str, env, spans: list[Span | None]) -> tuple[int, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise _ValueMistake("E0105", f"{what} must be a list of channel counts",
                            help=f"write `[{value}]` for a single convolution")
    if not isinstance(value, tuple) or not value:
        raise _ValueMistake("E0105", f"{what} must be a non-empty list of channel counts, got {_type_name(value)}")
    out = []
    for index, item in enumerate(value):
        try:
            out.append(_int(item, 1, f"{what}[{index}]", env))
        except _ValueMistake as error:
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

#: The `train { ... }` settings: name → (kind, default from ir.TrainConfig)
TRAIN_SETTINGS: dict[str, str] = {
    "epochs": "size", "batch": "size", "optimizer": "optimizer", "schedule": "schedule", "init": "init",
    "bias_lr_scale": "scale", "data": "string", "val_split": "fraction", "seed": "count",
    "patience": "count", "crop_pad": "count", "flip": "bool", "resize": "count", "mean": "numbers",
    "std": "numbers",
}


class _Binder:
    """Converts argument values to the types their parameters need, collecting errors."""

    def __init__(self, errors: "_Errors"):
        self.errors = errors

    def convert(self, kind: str, value: Any, what: str, span: Span | None, expr: ast.Expr | None, env) -> Any:
        item_spans = [item.span for item in expr.items] if isinstance(expr, ast.ListExpr) else []
        match kind:
            case "size": return _int(value, 1, what, env)
            case "count": return _int(value, 0, what, env)
            case "widths": return _widths(value, what, env, item_spans)
            case "prob": return _float(value, 0.0, 1.0, what, env, high_open=True)
            case "fraction": return _float(value, 0.0, 1.0, what, env)
            case "scale": return _float(value, 0.0, None, what, env)
            case "positive":
                result = _float(value, 0.0, None, what, env)
                if result == 0:
                    raise _ValueMistake("E0107", f"{what} must be greater than 0")
                return result
            case "number": return _float(value, float("-inf"), None, what, env)
            case "round": return _ROUND(value, what, env)
            case "act": return _ACT(value, what, env)
            case "bool":
                if not isinstance(value, bool):
                    raise _ValueMistake("E0105", f"{what} must be true or false, got {_type_name(value)}")
                return value
            case "string":
                if isinstance(value, Symbol):
                    return value.name
                if not isinstance(value, str):
                    raise _ValueMistake("E0105", f"{what} must be a string, got {_type_name(value)}")
                return value
            case "numbers":
                items = value if isinstance(value, tuple) else (value,)
                if not items:
                    raise _ValueMistake("E0105", f"{what} must be a number or a non-empty list of numbers")
                return tuple(_float(v, float("-inf"), None, f"{what}[{i}]", env) for i, v in enumerate(items))
            case "epochs":
                if not isinstance(value, tuple) or not value:
                    raise _ValueMistake("E0105", f"{what} must be a non-empty list of epochs")
                return tuple(_int(v, 1, f"{what}[{i}]", env) for i, v in enumerate(value))
            case "init": return self.call(value, INITS, what, span, env)
            case "scales" | "inits":  # one value, or a list with one per stage
                single = "scale" if kind == "scales" else "init"
                if not isinstance(value, tuple):
                    return self.convert(single, value, what, span, None, env)
                if not value:
                    raise _ValueMistake("E0105", f"{what} must be a value or a non-empty list, one per stage")
                items = []
                for index, item in enumerate(value):
                    item_span = item_spans[index] if index < len(item_spans) else span
                    try:
                        items.append(self.convert(single, item, f"{what.rstrip('`')}[{index}]`", item_span, None, env))
                    except _ValueMistake as error:
                        error.span = error.span or item_span
                        raise
                return _FAILED if _FAILED in items else tuple(items)
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
            raise _ValueMistake("E0105", f"{what} must be one of {', '.join(f'{k}(...)' for k in table)}, "
                                         f"got {_type_name(value)}")
        if value.func not in table:
            self.errors.error("E0107", f"unknown {what} `{value.func}`", value.func_span,
                              did_you_mean(value.func, table) or f"known: {', '.join(table)}")
            return _FAILED
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
            if value is _FAILED:
                failed = True
                continue
            try:
                bound[arg_name] = self.convert(params[arg_name].kind, value, f"`{arg_name}`", value_span, expr, env)
            except _ValueMistake as error:
                self.errors.error(error.code, error.message, error.span or value_span, error.help)
                failed = True
            else:
                if bound[arg_name] is _FAILED:
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
            return _FAILED
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


_FAILED = object()  # a value whose errors are already reported

# --- modules, imports and scopes ---------------------------------------------------------


@dataclass
class Scope:
    """What one file defines: constants and blocks (its own and its imports')."""

    module: ast.Module
    constants: dict[str, Any] = field(default_factory=dict)
    blocks: dict[str, tuple[ast.BlockDef, "Scope"]] = field(default_factory=dict)


class _Errors(Collector):
    """A collector that adds "in block `x` called here" notes while expanding blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.context: list[Note] = []

    def error(self, code, message, span, help=None, notes=()):
        super().error(code, message, span, help, tuple(notes) + tuple(reversed(self.context)))


class _Loader:
    def __init__(self, root: Path | None, errors: _Errors, open_texts: Mapping[str, str] | None = None):
        self.root = root
        self.errors = errors
        self.open_texts = open_texts or {}  # resolved path → text read instead of the file (an editor's buffer)
        self.scopes: dict[str, Scope] = {}
        self.sources: list[Source] = []

    def scope(self, module: ast.Module, chain: tuple[str, ...]) -> Scope:
        scope = Scope(module)
        defined: dict[str, Span | None] = {}
        for item in module.items:
            match item:
                case ast.Import():
                    imported = self.load_import(item, module, chain)
                    if imported is not None:
                        scope.constants.update(imported.constants)
                        scope.blocks.update(imported.blocks)
                case ast.Let(name=name) | ast.BlockDef(name=name):
                    name_span = item.name_span
                    if name in defined:
                        self.errors.error("E0108", f"`{name}` is defined twice in this file", name_span,
                                          notes=[Note("first defined here", defined[name])])
                        continue
                    defined[name] = name_span
                    if isinstance(item, ast.BlockDef):
                        scope.blocks[name] = (item, scope)
                        continue
                    try:
                        scope.constants[name] = evaluate(item.value, scope.constants)
                    except _ValueMistake as error:
                        self.errors.error(error.code, error.message, error.span, error.help)
        return scope

    def load_import(self, item: ast.Import, importer: ast.Module, chain: tuple[str, ...]) -> Scope | None:
        base = Path(importer.source.path).parent if importer.source and importer.source.path != "<string>" \
            else Path.cwd()
        if os.path.isabs(item.path):
            self.errors.error("E0303", f"import `{item.path}` is an absolute path", item.span,
                              "imports are relative to the importing file")
            return None
        try:
            target = (base / item.path).resolve()
        except RuntimeError:  # (Python 3.11 raises it for a symlink loop)
            self.errors.error("E0301", f"cannot import `{item.path}`: it is a symbolic link that leads to itself",
                              item.span)
            return None
        except OSError as error:  # a name too long, a folder that cannot be read
            self.errors.error("E0301", f"cannot import `{item.path}`: {error.strerror or error}", item.span)
            return None
        root = self.root.resolve() if self.root else base.resolve()
        if not target.is_relative_to(root):
            self.errors.error("E0303", f"import `{item.path}` leads outside the project folder", item.span,
                              "imports must stay inside the folder of the spec being checked "
                              "(symlinks are followed)")
            return None
        key = str(target)
        if key in chain:
            cycle = [Path(p).name for p in chain[chain.index(key):]] + [target.name]
            self.errors.error("E0302", f"import cycle: {' → '.join(cycle)}", item.span,
                              "move the shared blocks into a file that both import")
            return None
        if len(chain) >= limits.MAX_IMPORT_DEPTH:
            self.errors.error("E0401", f"imports nest deeper than {limits.MAX_IMPORT_DEPTH} files", item.span)
            return None
        if key in self.scopes:
            return self.scopes[key]
        try:
            text = self.open_texts.get(key)
            module = parse_file(_shown(target)) if text is None else parse(text, _shown(target))
        except NindslError as error:
            if error.diagnostics[0].code == "E0301" and error.diagnostics[0].span is None:
                self.errors.error("E0301", f"cannot import `{item.path}`: {error.diagnostics[0].message}",
                                  item.span)
            else:
                self.errors.extend(error)
            return None
        self.sources.append(module.source)
        scope = self.scope(module, chain + (key,))
        self.scopes[key] = scope
        return scope


def _shown(path: Path) -> str:
    """A path as diagnostics show it: relative to the working folder when that is shorter."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        return str(path)
    return relative if not relative.startswith("../..") else str(path)


# --- expanding a network --------------------------------------------------------------------


@dataclass
class _Pending:
    """A layer whose label is not final yet (unnamed layers are numbered at the end)."""

    func: str
    label: str | None
    layer: Any  # built with a placeholder label


class _Expander:
    def __init__(self, errors: _Errors):
        self.errors = errors
        self.binder = _Binder(errors)
        self.layers: list[_Pending] = []
        self.work = 0

    def body(self, stmts, env, scope: Scope, prefix: str, suffix: str, depth: int, stack: tuple[str, ...]):
        for stmt in stmts:
            self.work += 1
            if self.work > 2 * limits.MAX_LAYERS or len(self.layers) > limits.MAX_LAYERS:
                self.errors.error("E0401", f"the network expands to more than {limits.MAX_LAYERS:,} layers",
                                  stmt.span, "lower the repeat counts")
                raise _Abort
            match stmt:
                case ast.TensorDecl():
                    self.errors.error("E0110", f"`{stmt.kind}` may only appear in a network, first or last",
                                      stmt.span)
                case ast.Repeat():
                    self.repeat(stmt, env, scope, prefix, suffix, depth, stack)
                case ast.LayerStmt():
                    self.layer(stmt, env, scope, prefix, suffix, depth, stack)

    def repeat(self, stmt: ast.Repeat, env, scope, prefix, suffix, depth, stack):
        if depth >= limits.MAX_NESTING:
            self.errors.error("E0401", f"blocks and repeats nest deeper than {limits.MAX_NESTING}", stmt.span)
            raise _Abort
        try:
            count = _int(evaluate(stmt.count, env), 0, "a repeat count", env)
        except _ValueMistake as error:
            return self.errors.error(error.code, error.message, error.span or stmt.count.span, error.help)
        if count > limits.MAX_REPEAT:
            return self.errors.error("E0401", f"repeat count {count:,} is over the limit of {limits.MAX_REPEAT:,}",
                                     stmt.count.span)
        for index in range(count):
            self.body(stmt.body, env, scope, prefix, f"{suffix}_{index + 1}", depth + 1, stack)

    def layer(self, stmt: ast.LayerStmt, env, scope: Scope, prefix, suffix, depth, stack):
        call = stmt.call
        label = f"{prefix}{stmt.label}{suffix}" if stmt.label else None
        try:
            args = tuple((a.name, evaluate(a.value, env), a.span, a.value) for a in call.args)
        except _ValueMistake as error:
            return self.errors.error(error.code, error.message, error.span, error.help)
        if call.func in SIGNATURES:
            layer = self.binder.bind(call.func, SIGNATURES[call.func], args, call.span, call.func_span, env,
                                     extra={"label": label or "", "span": stmt.span})
            if layer is not _FAILED:
                self.layers.append(_Pending(call.func, label, layer))
            return
        if call.func in scope.blocks:
            return self.block(stmt, args, scope.blocks[call.func], prefix, suffix, depth, stack)
        self.errors.error("E0101", f"unknown layer `{call.func}`", call.func_span,
                          did_you_mean(call.func, [*SIGNATURES, *scope.blocks])
                          or f"layers: {', '.join(SIGNATURES)}")

    def block(self, stmt, args, definition, prefix, suffix, depth, stack):
        block, block_scope = definition
        call = stmt.call
        if block.name in stack:
            chain = " → ".join(stack[stack.index(block.name):] + (block.name,))
            self.errors.error("E0111", f"block `{block.name}` calls itself: {chain}", call.func_span)
            raise _Abort
        if depth >= limits.MAX_NESTING:
            self.errors.error("E0401", f"blocks and repeats nest deeper than {limits.MAX_NESTING}", call.span)
            raise _Abort
        defaults = {}
        for param in block.params:
            if param.default is None:
                defaults[param.name] = REQUIRED
                continue
            try:
                defaults[param.name] = evaluate(param.default, block_scope.constants)
            except _ValueMistake as error:
                self.errors.error(error.code, error.message, error.span, error.help)
                return
        signature = Signature(tuple(P(p.name, "any", defaults[p.name]) for p in block.params),
                              lambda **values: values)
        values = self.binder.bind(call.func, signature, args, call.span, call.func_span, {})
        if values is _FAILED:
            return
        env = {**block_scope.constants, **values}
        inner_prefix = f"{prefix}{stmt.label}{suffix}_" if stmt.label else prefix
        self.errors.context.append(Note(f"in block `{block.name}` called here", call.span))
        try:
            self.body(block.body, env, block_scope, inner_prefix, "" if stmt.label else suffix,
                      depth + 1, stack + (block.name,))
        finally:
            self.errors.context.pop()

    def finish(self) -> tuple[ir.Layer, ...]:
        """Give unnamed layers stable names (`mlpconv1`, ...) and check labels are unique."""
        taken: dict[str, Span | None] = {}
        for pending in self.layers:
            if pending.label is None:
                continue
            if pending.label in taken:
                self.errors.error("E0108", f"two layers are labelled `{pending.label}`", pending.layer.span,
                                  "label the block call (`b1: my_block(...)`) so its layers get distinct names",
                                  notes=[Note("first labelled here", taken[pending.label])])
            taken.setdefault(pending.label, pending.layer.span)
        counters: dict[str, int] = {}
        layers = []
        for pending in self.layers:
            label = pending.label
            while label is None or label in taken and pending.label is None:
                counters[pending.func] = counters.get(pending.func, 0) + 1
                label = f"{pending.func}{counters[pending.func]}"
            taken.setdefault(label, pending.layer.span)
            layers.append(replace(pending.layer, label=label))
        return tuple(layers)


class _Abort(Exception):
    """Expansion stopped at a limit; the diagnostic is already collected."""


# --- the stage ----------------------------------------------------------------------------


def elaborate(module: ast.Module, overrides: dict[str, str] | None = None, root: str | Path | None = None,
              open_texts: Mapping[str, str] | None = None) -> ir.Network:
    """Resolve imports, constants, blocks and repeats; bind and check every argument.

    ``overrides`` maps network parameters to expression text (``--set classes=100``).
    ``root`` is the project folder imports must stay in (default: the spec's folder).
    ``open_texts`` maps resolved paths to text that an import reads instead of the file
    (the language server's unsaved editor buffers).
    Raises :class:`NindslError` with every mistake found.
    """
    errors = _Errors()
    loader = _Loader(Path(root) if root else None, errors, open_texts)
    if module.source:
        loader.sources.append(module.source)
        origin = str(Path(module.source.path).resolve()) if module.source.path != "<string>" else "<string>"
    else:
        origin = "<string>"
    scope = loader.scope(module, (origin,))
    networks = [item for item in module.items if isinstance(item, ast.NetworkDef)]
    trains = [item for item in module.items if isinstance(item, ast.TrainDef)]
    for extra in networks[1:]:
        errors.error("E0108", "a spec defines one network", extra.name_span,
                     notes=[Note("the first is here", networks[0].name_span)],
                     help="move the other into a file of its own; share blocks with `import`")
    for extra in trains[1:]:
        errors.error("E0108", "a spec has one `train` section", extra.span,
                     notes=[Note("the first is here", trains[0].span)])
    if not networks:
        span = Span(module.source, 1, 1, 1, 2) if module.source else None
        what = "defines blocks and constants but no `network`" if module.items else "is empty"
        errors.error("E0006", f"the spec {what}", span,
                     "a spec needs e.g. `network name() { input image: f32[N, 1, 8, 8] ... }`")
        errors.raise_if_any()
    network = _network(networks[0], scope, overrides or {}, errors)
    folder = Path(module.source.path).parent if module.source and module.source.path != "<string>" else None
    train = _train(trains[0] if trains else None, scope.constants, errors, network.input,
                   _DataPlace(folder, Path(root) if root else folder))
    errors.raise_if_any()
    return replace(network, train=train, sources=tuple(loader.sources))


def check_library(module: ast.Module, root: str | Path | None = None,
                  open_texts: Mapping[str, str] | None = None) -> None:
    """Check a file of blocks and constants meant to be imported (no network)."""
    errors = _Errors()
    origin = str(Path(module.source.path).resolve()) if module.source else "<string>"
    _Loader(Path(root) if root else None, errors, open_texts).scope(module, (origin,))
    errors.raise_if_any()


_NO_DEFAULT = object()


def _override(name: str, text: str, default: Any, constants: dict[str, Any], params: dict[str, Any],
              errors: _Errors) -> None:
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
    except _ValueMistake as error:
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
        errors.error("E0504", f"{where}: `{name}` takes {_type_name(default)} (its default is "
                              f"{_shown_value(default)}), not {_type_name(value)}", None)
        return
    params[name] = value


def _blame_overrides(errors: _Errors, start: int, overrides: dict[str, tuple[str, Any]]) -> None:
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
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else _type_name(value)


def _shown_value(value: Any) -> str:
    """A value as the spec would spell it (the path `_shown` above is another function)."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(map(_shown_value, value)) + "]"
    return str(value)


def _network(node: ast.NetworkDef, scope: Scope, overrides: dict[str, str], errors: _Errors) -> ir.Network:
    params: dict[str, Any] = {}
    seen: dict[str, Span | None] = {}
    for param in node.params:
        if param.name in seen:
            errors.error("E0108", f"parameter `{param.name}` is declared twice", param.span,
                         notes=[Note("first declared here", seen[param.name])])
            continue
        seen[param.name] = param.span
        if param.default is None and param.name not in overrides:
            errors.error("E0104", f"network parameter `{param.name}` has no default", param.span,
                         f"give one (`{param.name} = ...`) or pass `--set {param.name}=...`")
            continue
        if param.default is not None:
            try:
                params[param.name] = evaluate(param.default, scope.constants)
            except _ValueMistake as error:
                errors.error(error.code, error.message, error.span, error.help)
    before = len(errors.diagnostics)
    defaults = dict(params)
    for name, text in overrides.items():
        if name not in seen:
            errors.error("E0504", f"`--set {name}=...`: network `{node.name}` has no parameter `{name}`",
                         node.name_span, did_you_mean(name, seen) or
                         f"its parameters: {', '.join(seen) or 'none'}")
            continue
        _override(name, text, defaults.get(name, _NO_DEFAULT), scope.constants, params, errors)
    if len(errors.diagnostics) > before:
        errors.raise_if_any()  # a bad --set value would only reappear at each use of the parameter
    env = {**scope.constants, **params}
    uses_from = len(errors.diagnostics)

    body = list(node.body)
    decls = [s for s in body if isinstance(s, ast.TensorDecl)]
    inputs = [d for d in decls if d.kind == "input"]
    outputs = [d for d in decls if d.kind == "output"]
    if not inputs:
        errors.error("E0110", f"network `{node.name}` declares no input", node.name_span,
                     "start it with e.g. `input image: f32[N, 3, 32, 32]`")
    elif body[0] is not inputs[0]:
        errors.error("E0110", "`input` must be the first statement of a network", inputs[0].span)
    if outputs and body[-1] is not outputs[-1]:
        errors.error("E0110", "`output` must be the last statement of a network", outputs[-1].span)
    for extra in inputs[1:] + outputs[1:]:
        errors.error("E0110", f"a network has one `{extra.kind}`", extra.span)

    input_spec = _tensor(inputs[0], env, None, errors) if inputs else None
    batch = input_spec.shape[0] if input_spec else "N"
    output_spec = _tensor(outputs[0], env, batch, errors) if outputs else None

    expander = _Expander(errors)
    try:
        expander.body([s for s in body if not isinstance(s, ast.TensorDecl)], env, scope, "", "", 0, ())
    except _Abort:
        pass
    layers = expander.finish()
    if input_spec is None:
        input_spec = ir.TensorSpec("input", "f32", ("N", 1, 1, 1))
    if output_spec is None:
        output_spec = ir.TensorSpec("output", "f32", ())  # filled from the inferred shape
    _distinct_tensor_names(input_spec, output_spec, layers, errors)
    _blame_overrides(errors, uses_from, {n: (t, params[n]) for n, t in overrides.items() if n in params})
    return ir.Network(node.name, input_spec, output_spec, layers, params=tuple(params.items()))


def _distinct_tensor_names(input_spec: ir.TensorSpec, output_spec: ir.TensorSpec, layers, errors: _Errors) -> None:
    """ONNX names a tensor after the input, each layer and the output, so they must differ
    (else `check` would pass a network that no backend builds)."""
    labels = {layer.label: layer.span for layer in layers}  # (`output`, a keyword, labels nothing)
    for spec, what in ((input_spec, "input"), (output_spec, "output")):
        if spec.name in labels:
            errors.error("E0108", f"`{spec.name}` names both the {what} and a layer", spec.span,
                         "rename one of them: the model's tensors are named after both",
                         notes=[Note("the layer is labelled here", labels[spec.name])])
    if output_spec.name == input_spec.name:
        errors.error("E0108", f"the input and the output are both called `{input_spec.name}`", output_spec.span,
                     "give the output another name")


DTYPES = ("f32",)


def _tensor(decl: ast.TensorDecl, env, batch, errors: _Errors) -> ir.TensorSpec | None:
    if decl.dtype not in DTYPES:
        errors.error("E0204", f"unsupported dtype `{decl.dtype}`", decl.dtype_span,
                     did_you_mean(decl.dtype, DTYPES) or f"supported: {', '.join(DTYPES)}")
    shape: list[ir.Dim] = []
    for index, dim in enumerate(decl.dims):
        try:
            value = evaluate(dim, env)
            if index == 0 and isinstance(value, Symbol):
                if batch is not None and isinstance(batch, str) and value.name != batch:
                    errors.error("E0203", f"batch dimension `{value.name}` differs from the input's `{batch}`",
                                 dim.span, f"write `{batch}`")
                shape.append(value.name)
                continue
            shape.append(_int(value, 1, f"dimension {index} of `{decl.name}`", env))
        except _ValueMistake as error:
            errors.error(error.code, error.message, error.span or dim.span, error.help)
            return None
    if decl.kind == "input" and len(shape) not in (2, 4):
        errors.error("E0204", f"input `{decl.name}` has rank {len(shape)}; nindsl takes [N, C, H, W] images "
                              "or [N, features] vectors", decl.span)
        return None
    return ir.TensorSpec(decl.name, decl.dtype, tuple(shape), decl.span)


@dataclass(frozen=True)
class _DataPlace:
    """Where a spec's data paths are resolved (its folder) and must stay (the project folder);
    None for a spec given as text."""

    folder: Path | None
    root: Path | None


def _train(node: ast.TrainDef | None, constants, errors: _Errors, image: ir.TensorSpec | None,
           place: _DataPlace = _DataPlace(None, None)) -> ir.TrainConfig:
    if node is None:
        return ir.TrainConfig()
    binder = _Binder(errors)
    values: dict[str, Any] = {}
    seen: dict[str, Span | None] = {}
    for setting in node.settings:
        if setting.name not in TRAIN_SETTINGS:
            errors.error("E0102", f"unknown training setting `{setting.name}`", setting.span,
                         did_you_mean(setting.name, TRAIN_SETTINGS) or f"settings: {', '.join(TRAIN_SETTINGS)}")
            continue
        if setting.name in seen:
            errors.error("E0103", f"`{setting.name}` is set twice", setting.span,
                         notes=[Note("first set here", seen[setting.name])])
            continue
        seen[setting.name] = setting.span
        try:
            value = evaluate(setting.value, constants)
            converted = binder.convert(TRAIN_SETTINGS[setting.name], value, f"`{setting.name}`",
                                       setting.value.span, setting.value, constants)
        except _ValueMistake as error:
            errors.error(error.code, error.message, error.span or setting.value.span, error.help)
            continue
        if converted is _FAILED:
            continue
        if setting.name == "data":
            if not _data_known(converted, setting.value.span, errors):
                continue
            converted = _data_inside(converted, setting.value.span, errors, place)
            if converted is None:
                continue
        if not _fits_input(setting.name, converted, image, setting.value.span, errors):
            continue
        values[setting.name] = converted
    return ir.TrainConfig(**values, span=node.span)


def _data_known(data: str, span: Span | None, errors: _Errors) -> bool:
    """`data` names a data set nindsl knows (`KIND` or `KIND:PATH`) or an `.npz` file."""
    kind, sep, path = data.partition(":")
    if data.endswith(".npz") and kind not in ir.DATA_KINDS or kind in ir.DATA_KINDS and (kind != "digits" or not sep):
        return True
    known = ", ".join(f"`{k}`" for k in ir.DATA_KINDS)
    errors.error("E0107", f"unknown data set `{data}`", span,
                 did_you_mean(kind, ir.DATA_KINDS) or f"known: {known} (a folder follows with `KIND:DIR` or "
                                                      "`nindsl train --data KIND:DIR`), or FILE.npz")
    return False


def _fits_input(name: str, value: Any, image: ir.TensorSpec | None, span: Span | None, errors: _Errors) -> bool:
    """Preprocessing settings that must agree with the input: a value per channel, a size it can crop."""
    shape = image.shape if image is not None else ()
    if name in ("crop_pad", "flip", "resize", "mean", "std") and value and len(shape) != 4:
        errors.error("E0107", f"`{name}` is for image inputs [N, C, H, W]", span)
        return False
    if name in ("mean", "std") and len(value) not in (1, shape[1]):
        errors.error("E0107", f"`{name}` has {len(value)} values; the input has {shape[1]} channel"
                              f"{'s' if shape[1] != 1 else ''}", span,
                     "give one value per channel, or one for all")
        return False
    if name == "std" and min(value) <= 0:
        errors.error("E0107", "`std` must be greater than 0", span)
        return False
    if name == "resize" and value and any(isinstance(d, int) and value < d for d in shape[2:]):
        errors.error("E0107", f"`resize = {value}` is smaller than the input's {shape[2]}×{shape[3]}", span,
                     "images are resized to resize×resize and then cropped to the input: use at least its size")
        return False
    return True


def _data_inside(data: str, span: Span | None, errors: _Errors, place: _DataPlace) -> str | None:
    """A data path written in a spec, resolved against the spec's folder (not the working
    folder) and confined to the project after following symbolic links, like an import
    (RELIABILITY.md); None after a located error. `nindsl train --data PATH` on the command
    line may name any path."""
    kind, sep, path = data.partition(":")
    if not sep:
        kind, path = "", data if data.endswith(".npz") else ""
    if not path:
        return data  # `digits`: nothing to read from the disk
    if os.path.isabs(path):
        errors.error("E0303", f"data path `{path}` is absolute", span,
                     "paths in a spec are relative to the spec's folder; pass this one with `nindsl train --data`")
        return None
    folder = place.folder or Path()  # a spec given as text: the working folder is its folder
    root = place.root or folder
    try:
        written = Path(os.path.normpath(os.path.abspath(folder / path)))
        target = (folder / path).resolve()  # (what does not exist yet resolves as written)
        inside = root.resolve()
    except RuntimeError:  # (Python 3.11 raises it for a symlink loop)
        errors.error("E0301", f"data path `{path}`: a symbolic link leads to itself", span)
        return None
    except OSError as error:
        errors.error("E0301", f"data path `{path}`: {error.strerror or error}", span)
        return None
    if not written.is_relative_to(Path(os.path.abspath(root))):
        errors.error("E0303", f"data path `{path}` leads outside the project folder", span,
                     "paths in a spec stay inside the project; pass this one with `nindsl train --data`")
        return None
    if not target.is_relative_to(inside):
        errors.error("E0303", f"data path `{path}` leads outside the project folder through a symbolic link "
                              f"(to `{target}`)", span,
                     "paths in a spec stay inside the spec's folder, links followed; pass this one with "
                     "`nindsl train --data`")
        return None
    if place.folder is None:
        return data
    return f"{kind}:{target}" if kind else str(target)
