"""ONNX → TVM Relax → a compiled executable for a target profile.

:func:`build` compiles untuned (TVM's default schedules, DLight on GPUs) or from a tuned
Relax module (:mod:`nindsl.tvm.tune.search`). :mod:`nindsl.tvm.deploy.artifact` writes the result.
"""

from __future__ import annotations

from ..kernel.diagnostics import NindslError
from ..language import ir
from .env import require_tvm
from .frontend import Build, apply_database, import_onnx, parameter_names, parameter_order, prepare
from .profiles import Profile, resolved_target


def template_build(profile: Profile, tuned: bool = False) -> bool:
    """Whether a float32 build for ``profile`` takes nindsl's untuned CPU template."""
    return not tuned and profile.device == "cpu" and profile.schedule.untuned == "template"


def uses_winograd(profile: Profile, tuned: bool = False) -> bool:
    """Whether a float32 build for ``profile`` puts the layers :func:`nindsl.tvm.winograd.plan`
    names in Winograd form: template builds, unless the profile turns it off."""
    return template_build(profile, tuned) and profile.schedule.winograd


def build(network: ir.Network, profile: Profile, weights=None, seed: int = 0, batch: int | None = None,
          tuned_module=None, winograd_rule=None) -> Build:
    """Compile a network for a profile (untuned, or from a tuned Relax module). ``winograd_rule``:
    which convolutions an untuned CPU build puts in Winograd form (default
    :func:`nindsl.tvm.winograd.tile`; :func:`nindsl.tvm.winograd.measured` for those measured)."""
    tvm = require_tvm()
    from ..onnx.lower import lower

    lowered = lower(network, weights, seed)  # (a Lowered value comes back as it is: nothing redone)
    weights, model = lowered.weights, lowered.model
    target = tvm.target.Target(resolved_target(profile))
    module, unscheduled = tuned_module, ()
    if module is None and template_build(profile):
        from .untuned import default_database
        from .winograd import choose, legalize, tile

        rule = winograd_rule or tile
        module = prepare(network, profile, batch, model=model, channels_last=True,  # (lowered once, above)
                         legalize=legalize(lambda call: choose(call, rule)) if uses_winograd(profile) else None)
        left = []
        module = apply_database(module, default_database(module, target, left), profile, target)
        unscheduled = tuple(name for name in left if "conv2d" in name)  # (the slow ones: TVM's naive loops)
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
        from .gpu.cuda import compile_cuda
        from .gpu.rules import schedule_passes

        if profile.graph_bound(batch) is not None:
            from .compat.cuda import capture_each_batch

            module = capture_each_batch(module, profile.graph_bound(batch))
        with target:
            module = tvm.transform.Sequential(schedule_passes())(module)
        # (MetaSchedule's tuned kernels build only without TIR's storage rewrite: compat.cuda)
        executable = compile_cuda(module, target, profile.schedule.cuda_graph, storage_rewrite=tuned_module is None)
    else:
        executable = tvm.compile(module, target=target)
    return Build(executable, model, weights, order, target, packs, batch, max_batch=profile.graph_bound(batch),
                 unscheduled=unscheduled)
