"""A network's body → layers: blocks called, repeats unrolled, every layer bound and labelled.

Each layer statement is bound against its signature in the layer registry; a block call
binds the block's parameters and expands its body in the block's own scope (diagnostics
inside it get an "in block `x` called here" note). Unnamed layers are numbered at the end
(`mlpconv1`, `mlpconv2`, ...); the limits on size and nesting stop an expansion early.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..kernel import limits
from ..kernel.diagnostics import Collector, Note, Span, did_you_mean
from . import ir
from . import syntax as ast
from .binding import FAILED, Binder, as_int
from .evaluate import ValueMistake, evaluate
from .imports import Scope
from .layers import SIGNATURES
from .signature import REQUIRED, Param, Signature


class Errors(Collector):
    """A collector that adds "in block `x` called here" notes while expanding blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.context: list[Note] = []

    def error(self, code, message, span, help=None, notes=()):
        super().error(code, message, span, help, tuple(notes) + tuple(reversed(self.context)))


@dataclass
class _Pending:
    """A layer whose label is not final yet (unnamed layers are numbered at the end)."""

    func: str
    label: str | None
    layer: Any  # built with a placeholder label


class Expander:
    """Expands statements into :attr:`layers`; :meth:`finish` labels them."""

    def __init__(self, errors: Errors):
        self.errors = errors
        self.binder = Binder(errors)
        self.layers: list[_Pending] = []
        self.work = 0

    def body(self, stmts, env, scope: Scope, prefix: str, suffix: str, depth: int, stack: tuple[str, ...]):
        for stmt in stmts:
            self.work += 1
            if self.work > 2 * limits.MAX_LAYERS or len(self.layers) > limits.MAX_LAYERS:
                self.errors.error("E0401", f"the network expands to more than {limits.MAX_LAYERS:,} layers",
                                  stmt.span, "lower the repeat counts")
                raise Abort
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
            raise Abort
        try:
            count = as_int(evaluate(stmt.count, env), 0, "a repeat count", env)
        except ValueMistake as error:
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
        except ValueMistake as error:
            return self.errors.error(error.code, error.message, error.span, error.help)
        if call.func in SIGNATURES:
            layer = self.binder.bind(call.func, SIGNATURES[call.func], args, call.span, call.func_span, env,
                                     extra={"label": label or "", "span": stmt.span})
            if layer is not FAILED:
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
            raise Abort
        if depth >= limits.MAX_NESTING:
            self.errors.error("E0401", f"blocks and repeats nest deeper than {limits.MAX_NESTING}", call.span)
            raise Abort
        defaults = {}
        for param in block.params:
            if param.default is None:
                defaults[param.name] = REQUIRED
                continue
            try:
                defaults[param.name] = evaluate(param.default, block_scope.constants)
            except ValueMistake as error:
                self.errors.error(error.code, error.message, error.span, error.help)
                return
        signature = Signature(tuple(Param(p.name, "any", defaults[p.name]) for p in block.params),
                              lambda **values: values)
        values = self.binder.bind(call.func, signature, args, call.span, call.func_span, {})
        if values is FAILED:
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


class Abort(Exception):
    """Expansion stopped at a limit; the diagnostic is already collected."""

