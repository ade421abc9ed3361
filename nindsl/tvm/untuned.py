"""Untuned CPU builds that are fast anyway: every kernel gets a schedule chosen from the
target's features, with nothing measured.

An untuned build's convolutions and pools run channels-last (NHWC; ``frontend.prepare`` with
``channels_last``): each convolution takes the channels-last template
(:func:`~nindsl.tvm.schedules.nhwc_conv2d`, vectors along the output channels) at
:func:`~nindsl.tvm.schedules.nhwc_choice`, so that any map width and any stride divide into
register blocks. A module left in NCHW (a tuned build's, an fp16 one's CPU judge) takes the
NCHW template (:func:`~nindsl.tvm.schedules.direct_conv2d`) at
:func:`~nindsl.tvm.schedules.default_choice`. Channels-last pools take
:func:`~nindsl.tvm.schedules.nhwc_pool` (windows reduced in vectors along the channels). Every
other kernel (softmax, the mean, layout changes, reshapes) gets MetaSchedule's
parallelize-and-vectorize rule alone, which spreads its outer loops over the cores and
vectorises the inner one. A kernel of a fixed batch with little work runs on one core
(:func:`~nindsl.tvm.schedules.in_parallel`). The choices go into an
in-memory database that the build applies as it applies a tuned one, weight pre-packing
included.
"""

from __future__ import annotations

from . import schedules, winograd
from .compat import import_tensor_intrinsics

NOMINAL_SECONDS = 1.0


def _space(func, target):
    from tvm.s_tir import meta_schedule as ms

    lanes, accumulators = schedules.lanes_and_accumulators(target)
    if winograd.applies(func):
        parallel = schedules.in_parallel(func, lanes)  # (a convolution's steps are vector steps)

        def winograd_template(sch):
            winograd.schedule(sch, lanes, accumulators, parallel, winograd.images(func))
            return sch

        return ms.space_generator.ScheduleFn(winograd_template, sch_rules=[], mutator_probs={}, postprocs=[])
    nhwc = schedules.nhwc_choice(func, target)
    if nhwc is not None:
        parallel = schedules.in_parallel(func, nhwc[0])  # (in vectors as wide as its channels allow)

        def channels_last(sch):
            schedules.nhwc_conv2d(sch, *nhwc, parallel=parallel)
            return sch

        return ms.space_generator.ScheduleFn(channels_last, sch_rules=[], mutator_probs={},
                                             postprocs=[ms.postproc.RewriteLayout()])
    if schedules.is_nhwc_pool(func):
        parallel = schedules.in_parallel(func, 1)  # (memory-bound: counted in elements)

        def pool(sch):
            schedules.nhwc_pool(sch, lanes, parallel)
            return sch

        return ms.space_generator.ScheduleFn(pool, sch_rules=[], mutator_probs={}, postprocs=[])
    choice = schedules.default_choice(func, target)
    if choice is not None:
        order, rows, height, width = choice

        def template(sch):
            schedules.direct_conv2d(sch, order, rows, [height], [width])
            return sch

        return ms.space_generator.ScheduleFn(template, sch_rules=[], mutator_probs={},
                                             postprocs=[ms.postproc.RewriteLayout()])
    return ms.space_generator.PostOrderApply(
        sch_rules=[ms.schedule_rule.AutoInline(into_producer=False, into_consumer=True, inline_const_tensor=True,
                                               disallow_if_then_else=True, require_injective=True,
                                               require_ordered=True, disallow_op=["tirx.exp"]),
                   # (memory-bound: counted in elements, not vectors; a transpose's are seldom whole vectors)
                   ms.schedule_rule.ParallelizeVectorizeUnroll(max_jobs_per_core=16 if schedules.in_parallel(func, 1)
                                                               else -1,
                                                               max_vectorize_extent=64,
                                                               unroll_max_steps=[0], unroll_explicit=True)],
        postprocs=[ms.postproc.RewriteParallelVectorizeUnroll(), ms.postproc.RewriteReductionBlock()],
        mutator_probs={})


def _replays(trace, func) -> bool:
    """Whether ``trace`` applies to ``func`` as the build will apply it. (Over a symbolic batch,
    the parallelize rule's trace of a pooling kernel can name loops that a replay does not find.)"""
    from tvm import s_tir

    try:
        trace.apply_to_schedule(s_tir.Schedule(func), remove_postproc=False)
    except Exception:  # noqa: BLE001 - TVM raises its own error kinds; any of them means no
        return False
    return True


def default_database(module, target, unscheduled: list | None = None):
    """A database holding one schedule for every kernel of ``module`` (a Relax module, static
    or symbolic batch): what an untuned build applies. The kernels left to the pipeline's own
    schedule (:func:`_schedule` gave none) are appended to ``unscheduled`` by name."""
    from tvm.s_tir import meta_schedule as ms

    import_tensor_intrinsics()  # a tune context imports them, the slow way unless done first
    database = ms.database.MemoryDatabase(module_equality="structural")
    for task in ms.relax_integration.extract_tasks(module, target):
        func = task.dispatched[0]
        schedule = _schedule(func, target, task.task_name)
        if schedule is None:  # this kernel keeps the pipeline's own schedule
            if unscheduled is not None:
                unscheduled.append(task.task_name)
            continue
        # A record needs a time to be the workload's best; nothing was measured, so it holds a nominal one.
        database.commit_tuning_record(ms.database.TuningRecord(
            schedule.trace, database.commit_workload(func), [NOMINAL_SECONDS], target))
    return database


def _schedule(func, target, name: str):
    """The kernel's schedule, or None where TVM cannot make or replay it (a schedule primitive
    refusing an odd shape, such as a weight layout rewrite of a one-channel strided 1×1
    convolution, found by the random-spec differential test): that kernel keeps the pipeline's."""
    from tvm.s_tir import meta_schedule as ms

    try:
        context = ms.TuneContext(mod=func, target=target, space_generator=_space(func, target), task_name=name,
                                 rand_state=1)
        (schedule,) = context.generate_design_space()[:1]
        done = all(postproc.apply(schedule) for postproc in context.space_generator.postprocs)
    except Exception:  # noqa: BLE001 - TVM raises its own error kinds (InternalError, TVMError, ...)
        return None
    return schedule if done and _replays(schedule.trace, func) else None
