"""Tuning for a machine this one cannot reach: candidates built here, timed there, recorded here.

MetaSchedule's own loop builds a round of candidates, measures them at once and learns from
the times. Where the machine that runs the network (a GPU, another CPU) is out of reach,
the loop is cut in two at the measurement:

1. :func:`propose` takes each task's next round as MetaSchedule would (its search strategy,
   started from the tuning database's best records and a cost model trained on all of them),
   and returns them as :class:`Proposal`\\ s: the scheduled kernels and their traces;
2. the kernels are compiled here, many per library, and carried to the target
   (:mod:`nindsl.tvm.deploy.kit` writes the folder and its ``measure`` program);
3. :func:`record` reads the times measured there and commits each candidate to the
   database as a ``TuningRecord``, exactly as local tuning would have, so the next round
   starts from them and a build applies them (``MetaScheduleApplyDatabase``).

A candidate is known by its workload's and its trace's hash (:func:`candidate_key`): the kit
keeps the traces in a small MetaSchedule database of its own, and the results name
candidates by that key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...kernel.diagnostics import NindslError
from ...kernel.progress import SILENT, Progress
from ..profiles import Profile, resolved_target
from . import search
from .confirm import trace_key

#: The candidates file and its workloads, in MetaSchedule's JSON database format.
WORKLOADS, RECORDS = "workloads.json", "candidates.json"
#: The run time of a candidate that failed there (or did not compile here): MetaSchedule's own
#: mark of a failed run. The record keeps the next round from proposing it again, and a
#: database never returns it among a workload's top records, so no build applies it.
FAILED_SECONDS = 1e10


@dataclass
class Proposal:
    """One task's round: its name, how often the network runs it, and its candidates."""

    task: str
    weight: float
    workload: object  # the task's PrimFunc module (MetaSchedule's workload)
    kernels: list = field(default_factory=list)  # scheduled PrimFuncs, ready to compile
    keys: list[str] = field(default_factory=list)  # each kernel's trace key
    args: list[list] = field(default_factory=list)  # each kernel's [[shape, dtype], ...]


def candidate_key(workload, scheduled) -> str:
    """A candidate's name in a kit: its workload's structural hash and its trace's key (one
    trace, a reshape's, can schedule several tasks alike)."""
    return f"{workload.as_json()[0]}-{trace_key(scheduled)}"


def _trained_model(context, database, workload):
    """MetaSchedule's XGBoost cost model, trained on every record the database has of ``workload``."""
    from tvm.s_tir import meta_schedule as ms

    model = ms.cost_model.CostModel.create("xgb", num_tuning_cores=1)
    records = [r for r in database.get_top_k(workload, 1 << 30) if r.run_secs]
    if records:
        model.update(context, [r.as_measure_candidate() for r in records],
                     [ms.runner.RunnerResult(run_secs=r.run_secs, error_msg=None) for r in records])
    return model


def propose(module, profile: Profile, db: str | Path | None, per_task: int, candidates_db,
            tensor_cores: bool = False, progress: Progress = SILENT) -> list[Proposal]:
    """The next round of each task of the Relax ``module`` for ``profile``: at most ``per_task``
    candidates each (a light task, a reshape, a few), none the database has measured, from
    MetaSchedule's tensor-core space where ``tensor_cores``; their traces are committed to
    ``candidates_db`` (run times unknown)."""
    import tvm
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    from ..compat import import_tensor_intrinsics

    target = tvm.target.Target(resolved_target(profile))
    folder = search.ensure_database(profile, db)
    database = search.json_database(folder)
    import_tensor_intrinsics()
    proposals = []
    tasks = search.extract(module, target, folder)
    for index, task in enumerate(sorted(tasks, key=lambda t: -t.work), start=1):
        wanted = per_task if task.flops > 0 else search.MIN_TRIALS_LIGHT
        progress.status(f"kit: task {index}/{len(tasks)} {task.name}: proposing {wanted} candidates")
        workload = task.extracted.dispatched[0]
        known = database.commit_workload(workload)
        # (the search skips only the best measured candidates it starts from: the rest are left out here)
        measured = {trace_key(r) for r in database.get_top_k(known, 1 << 30)}
        with search.quiet_meta_schedule():  # (a tune context sets up MetaSchedule's loggers)
            context = search.context(task, folder, 2 * wanted, tensor_cores and task.flops > 0)
            model = _trained_model(context, database, known)
            context.pre_tuning(max_trials=2 * wanted, num_trials_per_iter=2 * wanted,
                               design_spaces=context.generate_design_space(), database=database, cost_model=model)
            chosen = context.generate_measure_candidates() or []
            context.post_tuning()
        proposal = Proposal(task.name, task.weight, workload)
        kept = candidates_db.commit_workload(workload)
        for candidate in chosen:
            key = candidate_key(kept, candidate.sch)
            if key in proposal.keys or trace_key(candidate.sch) in measured or len(proposal.keys) == wanted:
                continue
            proposal.kernels.append(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(candidate.sch.mod)["main"])
            proposal.keys.append(key)
            proposal.args.append([[[int(d) for d in info.shape], str(info.dtype)] for info in candidate.args_info])
            candidates_db.commit_tuning_record(ms.database.TuningRecord(candidate.sch.trace, kept, None, target,
                                                                        candidate.args_info))
        if proposal.kernels:
            proposals.append(proposal)
    return proposals


@dataclass(frozen=True)
class Recorded:
    """What :func:`record` committed: candidates timed, failed there, and not measured at all."""

    timed: int
    failed: int
    missing: int
    database: Path


def record(kit: Path, manifest: dict, results: dict, profile: Profile, db: str | Path | None) -> Recorded:
    """Commit each candidate of the kit at ``kit`` (its ``manifest`` read) that ``results`` (the
    measure program's ``results.json``, read) has a time for to the tuning database of
    ``profile``; one that failed there, or did not compile here, as failed."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    measured = results.get("candidates")
    if not isinstance(measured, dict):
        raise NindslError.one("E0502", f"`{kit}`: the results name no candidates", None,
                              "give the results.json that the kit's measure program wrote")
    candidates = search.json_database(workloads=kit / WORKLOADS, records=kit / RECORDS, allow_missing=False)
    folder = search.ensure_database(profile, db)
    database = search.json_database(folder)
    target = tvm.target.Target(resolved_target(profile))
    timed = failed = missing = 0
    unbuilt = set(manifest.get("unbuilt") or ())
    for candidate in candidates.get_all_tuning_records():
        key = candidate_key(candidate.workload, candidate)
        result = {"error": "did not compile"} if key in unbuilt else measured.get(key)
        if not isinstance(result, dict):
            missing += 1
            continue
        seconds = result.get("run_secs")
        if isinstance(seconds, list) and seconds and all(isinstance(s, (int, float)) and 0 < s < 1e9 for s in seconds):
            timed += 1
        else:
            seconds = [FAILED_SECONDS]
            failed += 1
        workload = database.commit_workload(candidate.workload.mod)
        database.commit_tuning_record(ms.database.TuningRecord(candidate.trace, workload, [float(s) for s in seconds],
                                                               target, candidate.args_info))
    return Recorded(timed, failed, missing, folder)
