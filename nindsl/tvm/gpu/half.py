"""An fp16 build for a CUDA GPU: float16 weights and activations, float32 sums, on tensor cores.

    float32 input → cast → [convolution (fp16 × fp16 → fp32 sums) + bias + ReLU → fp16]… → head → float32

TVM's Relax pass ``ToMixedPrecision(out_dtype="float32")`` rewrites the float32 graph: every
convolution takes float16 operands and sums in float32, and the values between kernels become
float16. The weights' casts are lifted into ``main_transform_params``; a checked build
(:func:`build_checked`) runs that function once, at build time, on this CPU, and its artifact
stores what it returns: float16 convolution weights (half the bytes) and the biases as the
kernels read them, under their ONNX names, passed straight to ``main``.
(``ToMixedPrecision``'s ``fp16_input_names`` would do it in the graph, but fails in TVM 0.27:
"no block is being built".)

On CUDA the kernels are scheduled by :mod:`nindsl.tvm.gpu.rules`: DLight's ``Matmul`` rule
schedules each convolution as an implicit matrix product and, for float16 on ``sm_70`` and later,
on tensor cores (``wmma``, 16 × 16 × 16 fragments, float32 accumulators) where every fixed
extent is above 64; the build reports which convolutions got them.

A machine without the GPU judges the build (:func:`build_checked`) by the same Relax module
compiled for its own CPU: the same float16 roundings of weights and activations; sums in
float32, in another order than the tensor cores add them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ...kernel.diagnostics import NindslError
from ...kernel.progress import SILENT, Progress
from ...language import ir
from ..frontend import Build, import_onnx
from ..profiles import Profile, host_profile, load_profile, resolved_target

TENSOR_CORE_ARCH = 70  # wmma's float16 fragments: Volta (sm_70) and later


@dataclass(frozen=True)
class HalfIsa:
    """What an fp16 build runs on, as :class:`nindsl.tvm.checked.QuantizedBuild` names it."""

    name: str


def half_module(network: ir.Network, model, batch: int | None, target, graphs_up_to: int | None = None,
                database=None, schedule: bool = True):
    """The float32 ONNX ``model`` as a scheduled float16 Relax module for ``target`` (CUDA:
    DLight's rules, after the tuning ``database``'s records where one is given; a CPU: nindsl's
    untuned CPU schedules), its weights' casts in ``main_transform_params``. ``graphs_up_to``:
    an any-batch CUDA module captured in one CUDA graph per batch size up to it. Without
    ``schedule`` (CUDA): the fused kernels as tuning sees them."""
    import tvm
    from tvm.relax import transform

    from ..compat.cuda import capture_each_batch

    from .rules import default_schedule, fusion_passes

    passes = [transform.ToMixedPrecision(out_dtype="float32"), transform.LiftTransformParams()]
    module = import_onnx(model, network, batch)
    if target.kind.name == "cuda":
        passes += fusion_passes()
        if graphs_up_to is not None:
            module = capture_each_batch(module, graphs_up_to)
    with target:
        module = tvm.transform.Sequential(passes)(module)
    if target.kind.name == "cuda" and schedule:
        if database is not None:
            with target, database:
                module = transform.MetaScheduleApplyDatabase()(module)
        with target:
            module = default_schedule()(module)
    if target.kind.name != "cuda":  # nindsl's untuned CPU schedules, where they take the kernel
        from tvm.relax.pipeline import zero_pipeline

        from ..untuned import default_database

        with target:
            module = zero_pipeline()(module)
        with target, default_database(module, target):
            module = transform.MetaScheduleApplyDatabase()(module)
    return module


def check_fp16(profile: Profile, tuned: bool = False) -> None:
    """Refuse fp16 where it would not run on tensor cores (a CPU, or a GPU before Volta), and
    ``tuned`` fp16 builds (MetaSchedule's tensor-core search is not wired in)."""
    from .cuda import target_arch

    if profile.device != "cuda":
        raise NindslError.one("E0504", f"--precision fp16 is for CUDA targets (tensor cores); `{profile.name}` runs "
                                       "on a CPU, whose float16 arithmetic is no faster than float32", None,
                              "on a CPU use --precision int8 or bf16, or build for a GPU: --target h200")
    import tvm

    arch = target_arch(tvm.target.Target(resolved_target(profile)))
    if int(re.match(r"sm_(\d+)", arch).group(1)) < TENSOR_CORE_ARCH:  # (sm_90a, sm_100: whole numbers)
        raise NindslError.one("E0504", f"`{profile.name}` is {arch}, which has no float16 tensor cores "
                                       f"(sm_{TENSOR_CORE_ARCH} and later)", None, "build with --precision fp32")
    if tuned:
        raise NindslError.one("E0504", "--tune cannot search fp16 kernels here: they are timed on the GPU", None,
                              "tune through a kit (`nindsl tune --precision fp16 --kit DIR`, then --results), and "
                              "build with --db DIR")


def build_fp16(network: ir.Network, profile: Profile, model, batch: int | None, weights: dict,
               database=None) -> Build:
    """Compile ``model`` (of float32 ``weights``) in fp16 for ``profile`` (CUDA: machine code,
    tensor cores, the tuning ``database``'s records where given; a CPU profile: the same module,
    for checking it)."""
    import tvm

    from ..frontend import parameter_order

    target = tvm.target.Target(resolved_target(profile))
    module = half_module(network, model, batch, target, profile.graph_bound(batch), database)
    order = parameter_order(network, model, batch)
    cores, convs = None, 0
    if profile.device == "cuda":
        from .cuda import compile_cuda
        from .rules import tensor_core_kernels

        executable = compile_cuda(module, target, profile.schedule.cuda_graph, storage_rewrite=database is None)
        cores, convs = tensor_core_kernels(module)
    else:
        executable = tvm.compile(module, target=target)
    return Build(executable, model, weights, order, target, True, batch, cores, convs,
                 lifted_names(module["main_transform_params"], order),
                 profile.graph_bound(batch))


def lifted_names(transform, order: list[str]) -> list[str]:
    """A name for each value ``transform`` (``main_transform_params``) returns: the weight it is
    computed from (``conv1.0.weight``: its float16 cast), or ``lifted.I`` when it comes from
    several or none; repeated names get ``#2``, ``#3``."""
    from tvm import relax

    bindings = {b.var: b.value for block in transform.body.blocks for b in block.bindings}
    params = transform.params[0]

    def sources(expr) -> set[int]:
        if isinstance(expr, relax.TupleGetItem) and expr.tuple_value.same_as(params):
            return {expr.index}
        if isinstance(expr, relax.Var) and expr in bindings:
            return sources(bindings[expr])
        parts = expr.args if isinstance(expr, relax.Call) else expr.fields if isinstance(expr, relax.Tuple) else ()
        return set().union(*map(sources, parts)) if parts else set()

    out = transform.body.body
    out = bindings.get(out, out)
    names = []
    for i, field in enumerate(out.fields):
        found = sources(field)
        name = order[found.pop()] if len(found) == 1 else f"lifted.{i}"
        names.append(name if name not in names else f"{name}#{names.count(name) + 1}")
    return names


def stored_weights(judged: Build) -> dict:
    """What ``main_transform_params`` makes of the weights (float16 casts, reshaped biases),
    computed once on this CPU by the host build ``judged``, by :func:`lifted_names`' names."""
    import tvm
    from tvm.runtime.vm import VirtualMachine

    vm = VirtualMachine(judged.executable, tvm.cpu(0))
    lifted = vm["main_transform_params"]([tvm.runtime.tensor(judged.weights[name]) for name in judged.order])
    return {name: value.numpy() for name, value in zip(judged.lifted_names, lifted)}


def with_stored_weights(built: Build, weights: dict) -> Build:
    """``built`` taking ``weights`` (:func:`stored_weights`) directly: nothing to convert when it loads."""
    return replace(built, weights=weights, order=list(weights), packs=False)


def build_checked(network: ir.Network, profile: Profile, weights, seed: int, batch: int | None, calibration,
                  load, progress: Progress = SILENT, tuning=None):
    """Build ``network`` in fp16 for ``profile`` and compare it with float32 (ONNX Runtime) on the
    held-out images of ``calibration``, run through ``load(build)``: the same module built for
    this CPU (see the module's docstring). ``tuning`` (TuneOptions without search): the GPU
    kernels from its database's records (measured there, through a kit)."""
    from ...onnx.lower import lower
    from ...onnx.quantize import agreement, images_per_batch, in_batches
    from ...onnx.runtime import runner
    from ..checked import QuantizedBuild, run_batched

    check_fp16(profile)
    lowered = lower(network, weights, seed)
    weights, model = lowered.weights, lowered.model
    database = None
    if tuning is not None:
        from ..tune.search import open_records

        database, _ = open_records(profile, tuning.db, progress)
    progress.note("building fp16 (tensor cores) ...")
    built = build_fp16(network, profile, model, batch, weights, database)
    cores = (f"tensor cores in {len(built.tensor_cores)} of {built.conv_kernels} "
             "convolution kernels")
    if not built.tensor_cores:
        progress.note("no convolution here is large enough for TVM's tensor-core schedule (it needs every fixed "
                      "extent above 64: output channels, input channels × taps, and pixels with --batch): fp16 "
                      "then saves memory traffic only")
    elif batch is None and len(built.tensor_cores) < built.conv_kernels:
        progress.note("some convolutions keep plain float16 kernels (too narrow, or, over any batch size, where "
                      "TVM's tensor-core schedule fails): --batch N may give more of them tensor cores")
    progress.note(f"{cores}; comparing with float32 on {len(calibration.held_out):,} held-out images (the same "
                  "fp16 module, run on this CPU) ...")
    judged = build_fp16(network, host_profile(load_profile("llvm")), model, batch, weights)
    stored = stored_weights(judged)  # the float16 weights both builds then take as they are
    built, judged = with_stored_weights(built, stored), with_stored_weights(judged, stored)
    held_out = calibration.held_out
    result = agreement(in_batches(runner(model), held_out, images_per_batch(model)),
                       run_batched(load(judged), held_out, batch, images_per_batch(model)), calibration.labels)
    return QuantizedBuild(built, None, HalfIsa(cores), result, {})

