"""ONNX → TVM Relax → a compiled executable for a target profile.

:func:`build` compiles untuned (TVM's default schedules, DLight on GPUs) or from a tuned
Relax module (:mod:`nindsl.tvm.tune`). :mod:`nindsl.tvm.artifact` writes the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..kernel.diagnostics import NindslError
from ..language import ir
from .env import require_tvm
from .profiles import Profile, resolved_target


def _relax_name(name: str) -> str:
    """How TVM's ONNX importer sanitises an initializer name into a parameter name."""
    return re.sub(r"[^0-9a-zA-Z_]", "_", name)


def import_onnx(model, network: ir.Network, batch: int | None):
    """ONNX → Relax module with the weights as parameters (so the library holds no weights)."""
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    shapes = None  # the ONNX model's own: a symbolic batch dimension
    if batch is not None:
        shapes = {network.input.name: [batch, *network.input.shape[1:]]}
    module = from_onnx(model, shape_dict=shapes, keep_params_in_input=True)
    module, _ = relax.frontend.detach_params(module)
    return module


def prepare(network: ir.Network, profile: Profile, batch: int | None, weights=None, seed: int = 0):
    """The Relax module as scheduling sees it (layout-free weights marked); a batch of None
    keeps the batch dimension symbolic."""
    import tvm
    from tvm.relax import transform
    from tvm.relax.pipeline import zero_pipeline

    from ..onnx.lower import to_onnx
    from ..weights import resolve

    model = to_onnx(network, resolve(network, weights, seed))
    module = import_onnx(model, network, batch)
    passes = [transform.DecomposeOpsForInference(), transform.CanonicalizeBindings(), zero_pipeline()]
    if profile.tuning.weight_prepack and profile.device == "cpu":
        passes.append(transform.AttachAttrLayoutFreeBuffers())
    with tvm.target.Target(resolved_target(profile)):
        return tvm.transform.Sequential(passes)(module)


def apply_database(module, database, profile: Profile, target):
    """``module`` with the schedules of ``database`` applied (and, on a CPU with
    ``weight_prepack``, a ``main_transform_params`` function that packs the weights once)."""
    import tvm
    from tvm.relax import transform

    with target, database:
        passes = [transform.MetaScheduleApplyDatabase()]
        if profile.tuning.weight_prepack and profile.device == "cpu":
            passes += [transform.SplitLayoutRewritePreproc(), transform.LiftTransformParams(),
                       transform.FoldConstant()]
        return tvm.transform.Sequential(passes)(module)


def parameter_names(network: ir.Network, module) -> list[str]:
    """The network's weight names in the order ``module``'s ``main`` takes them."""
    by_relax = {**{_relax_name(w.name): w.name for w in network.weights}, **{w.name: w.name for w in network.weights}}
    return [by_relax[str(p.name)] for p in module["main"].params[1:]]


def parameter_order(network: ir.Network, model, batch: int | None) -> list[str]:
    """The weight names in the order a ``main_transform_params`` takes them (one tuple, in the
    imported module's order)."""
    return parameter_names(network, import_onnx(model, network, batch))


@dataclass
class Build:
    """A compiled network and what its artifact needs."""

    executable: object  # tvm.runtime.Executable
    model: object  # the onnx.ModelProto it came from
    weights: dict[str, np.ndarray]
    order: list[str]  # weight names in the order the library takes them
    target: object  # tvm.target.Target
    packs: bool  # weights go through `main_transform_params` first (CPU pre-packing)
    batch: int | None


def build(network: ir.Network, profile: Profile, weights=None, seed: int = 0, batch: int | None = None,
          tuned_module=None) -> Build:
    """Compile a network for a profile (untuned, or from a tuned Relax module)."""
    tvm = require_tvm()
    from ..onnx.lower import to_onnx
    from ..weights import resolve

    weights = resolve(network, weights, seed)
    model = to_onnx(network, weights)
    target = tvm.target.Target(resolved_target(profile))
    module = tuned_module
    if module is None and profile.device == "cpu" and profile.schedule.untuned == "template":
        from .untuned import default_database

        module = prepare(network, profile, batch, weights)
        module = apply_database(module, default_database(module, target), profile, target)
    elif module is None:
        module = import_onnx(model, network, batch)
    # With weight pre-packing, `main_transform_params` takes the weights and `main` the packed ones.
    packs = any(gv.name_hint == "main_transform_params" for gv in module.get_global_vars())
    order = parameter_order(network, model, batch) if packs else parameter_names(network, module)
    if profile.device == "cuda" and profile.schedule.untuned != "dlight":
        raise NindslError.one("E0504", f"profile `{profile.name}`: GPU builds need `untuned = \"dlight\"`", None,
                              "untuned GPU kernels must have every loop bound to threads")
    # A GPU build's kernels are scheduled by DLight's rules with nindsl's two in front (gpu_rules);
    # TVM's pipeline skips kernels scheduled already (tuned ones too). For LLVM, its CPU rules.
    if profile.device == "cuda":  # and the kernels compiled to machine code now, so loading compiles nothing
        from .cuda import compile_cuda
        from .gpu_rules import schedule_passes

        with target:
            module = tvm.transform.Sequential(schedule_passes())(module)
        executable = compile_cuda(module, target)
    else:
        executable = tvm.compile(module, target=target)
    return Build(executable, model, weights, order, target, packs, batch)
