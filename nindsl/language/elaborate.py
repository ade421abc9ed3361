"""Stage 2: syntax tree → IR network (imports, constants, blocks, repeats, arguments).

In order: :mod:`~nindsl.language.imports` makes each file's scope (imports, `let`s,
blocks); the network's parameters take their defaults and ``--set`` values
(:mod:`~nindsl.language.overrides`); :mod:`~nindsl.language.expand` unrolls blocks and
repeats into layers, each bound by :mod:`~nindsl.language.binding` with values from
:mod:`~nindsl.language.evaluate`; :mod:`~nindsl.language.train_section` reads the `train`
section (its `data` paths checked by :mod:`~nindsl.language.data_paths`).
Every argument of every layer is bound against its signature in the layer registry
(:data:`nindsl.language.layers.SIGNATURES`) and converted to its type; all mistakes are
collected. Shapes are left to :mod:`nindsl.language.shapes`.
"""

from __future__ import annotations

import keyword
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from ..kernel.diagnostics import Note, Span, did_you_mean
from . import ir
from . import syntax as ast
from .binding import INITS, OPTIMIZERS, SCHEDULES, as_int
from .data_paths import DataPlace
from .evaluate import CallValue, Symbol, ValueMistake, evaluate
from .expand import Abort, Errors, Expander
from .imports import Loader, Scope, blame_failed_imports, drop_explained, names_used
from .overrides import apply_overrides, blame_overrides
from .train_section import TRAIN_SETTINGS, train_section

__all__ = ["elaborate", "check_library", "INITS", "OPTIMIZERS", "SCHEDULES", "TRAIN_SETTINGS"]


def elaborate(module: ast.Module, overrides: dict[str, str] | None = None, root: str | Path | None = None,
              open_texts: Mapping[str, str] | None = None) -> ir.Network:
    """Resolve imports, constants, blocks and repeats; bind and check every argument.

    ``overrides`` maps network parameters to expression text (``--set classes=100``).
    ``root`` is the project folder imports must stay in (default: the spec's folder).
    ``open_texts`` maps resolved paths to text that an import reads instead of the file
    (the language server's unsaved editor buffers).
    Raises :class:`NindslError` with every mistake found.
    """
    errors = Errors()
    loader = Loader(Path(root) if root else None, errors, open_texts)
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
    train = train_section(trains[0] if trains else None, scope.constants, errors, network.input,
                          DataPlace(folder, Path(root) if root else folder))
    _unused_lets(module, scope, network.input, errors)
    drop_explained(errors, loader.failed_lets)
    blame_failed_imports(errors, loader.failed)
    errors.raise_if_any()
    return replace(network, train=train, sources=tuple(loader.sources))


def check_library(module: ast.Module, root: str | Path | None = None,
                  open_texts: Mapping[str, str] | None = None) -> None:
    """Check a file of blocks and constants meant to be imported (no network)."""
    errors = Errors()
    origin = str(Path(module.source.path).resolve()) if module.source else "<string>"
    loader = Loader(Path(root) if root else None, errors, open_texts)
    loader.scope(module, (origin,))
    drop_explained(errors, loader.failed_lets)
    blame_failed_imports(errors, loader.failed)
    errors.raise_if_any()


def _unused_lets(module: ast.Module, scope: Scope, image: ir.TensorSpec, errors: Errors) -> None:
    """A `let` no part of the spec uses is checked by no use: an unknown name in its value (a
    typo, or a name that was renamed) is reported at the `let` itself. A bare word the language
    knows (`ceil`, `relu`, `xavier`, `digits`, the input's batch name) is a value, not a mistake."""
    used = {name.id for name in names_used(module.items)}
    known = {"floor", "ceil", "relu", "none", *INITS, *OPTIMIZERS, *SCHEDULES, *ir.DATA_KINDS,
             *(d for d in image.shape if isinstance(d, str))}
    for item in module.items:
        if not isinstance(item, ast.Let) or item.name in used or item.name not in scope.constants:
            continue
        for word in dict.fromkeys(_words(scope.constants[item.name])):
            if word in known:
                continue
            written = next((n for n in names_used(item.value) if n.id == word), None)
            errors.error("E0106", f"unknown name `{word}`", written.span if written else item.value.span,
                         did_you_mean(word, [*scope.constants, *known]) or
                         f"`{item.name}` is used nowhere, so nothing else checks it; remove the `let` if it is not needed")


def _words(value: Any) -> list[str]:
    """The unbound names a value holds (in lists and in calls' arguments)."""
    found, stack = [], [value]
    while stack:
        value = stack.pop()
        if isinstance(value, Symbol):
            found.append(value.name)
        elif isinstance(value, tuple):
            stack.extend(reversed(value))
        elif isinstance(value, CallValue):
            stack.extend(reversed([arg[1] for arg in value.args]))
    return found


def _network(node: ast.NetworkDef, scope: Scope, overrides: dict[str, str], errors: Errors) -> ir.Network:
    params = _parameters(node, scope.constants, overrides, errors)
    env = {**scope.constants, **params}
    uses_from = len(errors.diagnostics)
    input_spec, output_spec = _input_and_output(node, env, errors)

    expander = Expander(errors)
    try:
        expander.body([s for s in node.body if not isinstance(s, ast.TensorDecl)], env, scope, "", "", 0, ())
    except Abort:
        pass
    layers = expander.finish()
    if input_spec is None:
        input_spec = ir.TensorSpec("input", "f32", ("N", 1, 1, 1))
    if output_spec is None:
        output_spec = ir.TensorSpec("output", "f32", ())  # filled from the inferred shape
    _distinct_tensor_names(input_spec, output_spec, layers, errors)
    _labels_the_twin_can_hold(layers, errors)
    blame_overrides(errors, uses_from, {n: (t, params[n]) for n, t in overrides.items() if n in params})
    return ir.Network(node.name, input_spec, output_spec, layers, params=tuple(params.items()))


def _parameters(node: ast.NetworkDef, constants: dict[str, Any], overrides: dict[str, str],
                errors: Errors) -> dict[str, Any]:
    """The network's parameters: each declared once, its default evaluated, then --set's values."""
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
                params[param.name] = evaluate(param.default, constants)
            except ValueMistake as error:
                errors.error(error.code, error.message, error.span, error.help)
    apply_overrides(node, seen, overrides, constants, params, errors)
    return params


def _input_and_output(node: ast.NetworkDef, env: dict[str, Any],
                      errors: Errors) -> tuple[ir.TensorSpec | None, ir.TensorSpec | None]:
    """The `input` (first) and `output` (last) declarations; None where one is missing or wrong."""
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
    return input_spec, output_spec


def _distinct_tensor_names(input_spec: ir.TensorSpec, output_spec: ir.TensorSpec, layers, errors: Errors) -> None:
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


# What torch.nn.Module (2.x) has under these names, methods and instance attributes alike: a
# layer of the twin is the attribute `self.<label>`, so a label may name none of them. The language
# imports no torch: tests/test_hostile_values.py checks this list against the installed torch.
TORCH_MODULE_NAMES = frozenset("""
    T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double
    dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half
    ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters parameters
    register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
    register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
    register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory state_dict to
    to_empty train training type xpu zero_grad
    _apply _backward_hooks _backward_pre_hooks _buffers _call_impl _compiled_call_impl _forward_hooks
    _forward_hooks_always_called _forward_hooks_with_kwargs _forward_pre_hooks _forward_pre_hooks_with_kwargs
    _get_backward_hooks _get_backward_pre_hooks _get_name _is_full_backward_hook _load_from_state_dict
    _load_state_dict_post_hooks _load_state_dict_pre_hooks _maybe_warn_non_full_backward_hook _modules
    _named_members _non_persistent_buffers_set _parameters _register_load_state_dict_pre_hook
    _register_state_dict_hook _replicate_for_data_parallel _save_to_state_dict _slow_forward
    _state_dict_hooks _state_dict_pre_hooks _version _wrapped_call_impl
    logits
""".split())  # (`logits`: the twin's own method before the softmax)


def twin_cannot_hold(label: str) -> bool:
    """Whether ``label`` cannot be an attribute of the PyTorch twin: a Python keyword, a member
    of torch.nn.Module (or the twin's `logits`), or a special name (`__init__`)."""
    return keyword.iskeyword(label) or label in TORCH_MODULE_NAMES or \
        label.startswith("__") and label.endswith("__")


def _labels_the_twin_can_hold(layers, errors: Errors) -> None:
    """What check accepts, every backend builds: the twin names a layer's module after its label."""
    for layer in layers:
        if twin_cannot_hold(layer.label):
            errors.error("E0107", f"label `{layer.label}` cannot name a PyTorch module attribute", layer.span,
                         "rename the layer: it is a Python keyword or a torch.nn.Module member")


DTYPES = ("f32",)


def _tensor(decl: ast.TensorDecl, env, batch, errors: Errors) -> ir.TensorSpec | None:
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
            shape.append(as_int(value, 1, f"dimension {index} of `{decl.name}`", env))
        except ValueMistake as error:
            errors.error(error.code, error.message, error.span or dim.span, error.help)
            return None
    if decl.kind == "input" and len(shape) not in (2, 4):
        errors.error("E0204", f"input `{decl.name}` has rank {len(shape)}; nindsl takes [N, C, H, W] images "
                              "or [N, features] vectors", decl.span)
        return None
    return ir.TensorSpec(decl.name, decl.dtype, tuple(shape), decl.span)

