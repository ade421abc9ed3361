"""ONNX → Relax, the part every TVM build shares: the imported module with its weights as
parameters (:func:`import_onnx`), the module as scheduling sees it (:func:`prepare`), schedules
applied from a database (:func:`apply_database`), the order the library takes the weights in,
and :class:`Build`, what a compiled network hands to its artifact. :mod:`nindsl.tvm.build`
compiles float32 builds; :mod:`nindsl.tvm.narrow` and :mod:`nindsl.tvm.gpu.half` make their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..language import ir
from .compat import relax_parameter_name
from .profiles import Profile, resolved_target


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


def prepare(network: ir.Network, profile: Profile, batch: int | None, weights=None, seed: int = 0, model=None,
            channels_last: bool = False, legalize: dict | None = None):
    """The Relax module as scheduling sees it (layout-free weights marked); a batch of None
    keeps the batch dimension symbolic. ``model``: the network's ONNX model where the caller
    has lowered it already (else it is lowered from ``weights``). ``channels_last``: the
    convolutions and pools in NHWC (the input transposed once, the head back in NCHW), the
    weights left OIHW for the schedules to pack. ``legalize``: operators legalized in nindsl's
    way before TVM's (a ``LegalizeOps`` map: :func:`nindsl.tvm.winograd.legalize`)."""
    import tvm
    from tvm.relax import transform
    from tvm.relax.pipeline import zero_pipeline

    if model is None:
        from ..onnx.lower import to_onnx
        from ..weights import resolve

        model = to_onnx(network, resolve(network, weights, seed))
    module = import_onnx(model, network, batch)
    passes = [transform.DecomposeOpsForInference(), transform.CanonicalizeBindings()]
    if channels_last:
        passes.insert(0, transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OIHW"]}))
    if legalize:
        passes.append(transform.LegalizeOps(legalize))
    passes.append(zero_pipeline())
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
    by_relax = {**{relax_parameter_name(w.name): w.name for w in network.weights}, **{w.name: w.name for w in network.weights}}
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
    tensor_cores: list[str] | None = None  # fp16 on CUDA: the convolution kernels on tensor cores
    conv_kernels: int = 0  # fp16 on CUDA: the convolution kernels in all
    lifted_names: list[str] | None = None  # fp16: a name for each value `main_transform_params` returns
    max_batch: int | None = None  # an any-batch build captured in CUDA graphs: the largest batch per call
    unscheduled: tuple[str, ...] = ()  # an untuned CPU build: convolutions its template could not schedule
