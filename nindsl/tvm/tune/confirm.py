"""Confirm the tuned choice: re-measure each task's best few records side by side.

MetaSchedule measures each candidate once, in its own moment, and a build takes the
record with the lowest time. On a shared machine one moment is not another: re-measured
side by side, a record other than the recorded best is often faster (docs/performance.md
has cases). So after the search, the ``TOP`` best records of each task are compiled here
and timed in interleaved rounds, and the fastest by median is the task's choice.

Choices live beside the records in ``nindsl_confirmed.json``: per workload (its structural
hash) the record count it was confirmed against, the chosen trace's hash and the medians
measured. A build lays the choices over the records (an ordered union of databases), so
the records themselves stay as MetaSchedule measured them. A task whose records change
is confirmed again. Confirmation measures on this machine's CPU, so a run that measures over
RPC does not confirm (its records are the remote device's), and neither does a CUDA run
(timing the choices on the GPU is not written yet).
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from pathlib import Path

from ...kernel.io import atomic_write_text, read_json_object

TOP = 6  # records re-measured per task
ROUNDS = 7  # interleaved timing rounds
ROUND_SECONDS = 0.01  # each timing runs the kernel at least this long
CONFIRMED = "nindsl_confirmed.json"


def read_confirmed(folder: Path) -> dict[str, dict]:
    """The choices made so far, by workload key; an unreadable file counts as none made."""
    return {str(key): value for key, value in read_json_object(folder / CONFIRMED).items()
            if isinstance(value, dict) and isinstance(value.get("trace"), str) and isinstance(value.get("records"), int)}


def trace_key(record) -> str:
    """A record's identity across runs: the hash of its trace, decisions included."""
    return hashlib.sha256(str(record.trace).encode()).hexdigest()[:16]


def _records(database, task) -> list:
    return list(database.get_top_k(task.workload, 1 << 30))


def stale(tasks: list, database, folder: Path) -> list:
    """The tasks worth confirming whose records changed since they were last confirmed."""
    confirmed = read_confirmed(folder)
    result = []
    for task in tasks:
        records = _records(database, task)
        if task.work > 0 and len(records) > 1 and confirmed.get(task.key, {}).get("records") != len(records):
            result.append(task)
    return result


def _kernel(record, workload, target):
    """The record's schedule compiled for this process, with arguments to call it on."""
    import numpy as np
    import tvm
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    schedule = s_tir.Schedule(workload.mod)
    record.trace.apply_to_schedule(schedule, remove_postproc=False)
    # as MetaSchedule's builder does: the kernel takes its weights already packed
    module = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(schedule.mod)
    library = tvm.compile(module, target=target).jit()
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in info.shape]).astype(str(info.dtype)))
            for info in ms.arg_info.ArgInfo.from_prim_func(module["main"])]
    return library, args


def _medians(kernels: list) -> list[float]:
    """Median seconds per call of each kernel, timed in interleaved rounds."""
    import tvm

    device = tvm.cpu(0)
    timers = []
    for library, args in kernels:
        once = library.time_evaluator("main", device, number=1, repeat=1)(*args).mean
        number = max(1, math.ceil(ROUND_SECONDS / max(once, 1e-7)))
        timer = library.time_evaluator("main", device, number=number, repeat=1)
        timers.append(lambda timer=timer, args=args: timer(*args).mean)
    times: list[list[float]] = [[] for _ in kernels]
    for _ in range(ROUNDS):
        for timed, series in zip(timers, times):
            series.append(timed())
    return [statistics.median(series) for series in times]


def confirm(tasks: list, database, folder: Path, target, deadline: float = math.inf, show=None) -> int:
    """Re-measure the best records of each task in ``tasks`` and write the choices; returns
    how many tasks were confirmed (those past ``deadline`` are left for the next run)."""
    done = 0
    for index, task in enumerate(tasks, start=1):
        if time.perf_counter() > deadline:
            break
        if show:
            show(index, len(tasks), task.name)
        records = _records(database, task)
        candidates = records[:TOP]
        kernels, kept = [], []
        for record in candidates:
            try:
                kernels.append(_kernel(record, task.workload, target))
                kept.append(record)
            except Exception:  # noqa: BLE001 - a record this TVM cannot rebuild is not a choice
                continue
        if not kernels:
            continue
        try:
            medians = _medians(kernels)
        except Exception:  # noqa: BLE001 - a kernel that fails here: the records stand as measured
            continue
        best = min(range(len(kept)), key=medians.__getitem__)
        confirmed = read_confirmed(folder)  # another run may have confirmed other tasks meanwhile
        confirmed[task.key] = {
            "task": task.name, "records": len(records), "trace": trace_key(kept[best]),
            "rank": candidates.index(kept[best]) + 1,
            "recorded_s": [_mean(r.run_secs) for r in kept], "remeasured_s": medians}
        atomic_write_text(folder / CONFIRMED, json.dumps(confirmed, indent=1, sort_keys=True) + "\n")
        done += 1
    return done


def _mean(seconds) -> float:
    values = [float(s) for s in seconds or []]
    return sum(values) / len(values) if values else math.inf


def with_choices(database, tasks: list, folder: Path):
    """``database`` with each confirmed choice laid over its records: an ordered union whose
    first member holds only the choices, with the times they were confirmed at."""
    from tvm.s_tir import meta_schedule as ms

    confirmed = read_confirmed(folder)
    choices = ms.database.MemoryDatabase(module_equality="structural")
    for task in tasks:
        choice = confirmed.get(task.key)
        if choice is None:
            continue
        for record in database.get_top_k(task.workload, TOP):
            if trace_key(record) == choice["trace"]:
                workload = choices.commit_workload(task.workload.mod)
                best = min(choice.get("remeasured_s") or [_mean(record.run_secs)])
                choices.commit_tuning_record(ms.database.TuningRecord(
                    record.trace, workload, [best], record.target, record.args_info))
                break
    return ms.database.OrderedUnionDatabase(choices, database)
