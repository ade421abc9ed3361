"""Auto-tuning with MetaSchedule: every task gets trials, weighted by its share of the work.

Plan: extract the Relax module's tuning tasks, estimate each one's floating-point work
(FLOPs × how often it runs), and split the trial budget in proportion, with a floor so
that no task is left on its default schedule. Tasks are tuned one at a time, largest
first, into a JSON database that persists between runs:

    ~/.cache/nindsl/tuning/tvm-<version>/<profile>-<target hash>/

so a record is only reused for the same TVM version and target (MetaSchedule itself keys
records by the workload's structure). Every measured candidate is appended as it is
measured: an interrupted run keeps its records, and the next run tunes only what is
missing. TVM fails hard on a torn JSON line, so the files are repaired before use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...kernel.diagnostics import NindslError
from ...kernel.io import atomic_write_text, ensure_folder, read_json_object
from ...kernel.progress import SILENT, Progress
from ...language import ir
from ..compat import import_tensor_intrinsics, reusing_builder
from ..frontend import apply_database, prepare
from ..profiles import Profile, check_runs_here, resolved_target
from . import confirm

MIN_TRIALS = 8  # every task with arithmetic gets at least this many
MIN_TRIALS_LIGHT = 2  # a task without (reshapes, transposes): only its loop order and threads to pick
PER_ROUND = 16  # candidates measured per round; the cost model retrains between rounds
BUILD_TIMEOUT, RUN_TIMEOUT = 180.0, 60.0  # seconds per candidate
RECYCLE = 8  # build batches per set of build worker processes
WORKLOADS, RECORDS = "database_workload.json", "database_tuning_record.json"
# Trials asked of each workload so far, by its structural hash: a search space smaller than
# the plan (a reshape's, a small template's) ends with fewer records than asked, and must not
# be searched again on every rebuild.
ASKED = "nindsl_trials_asked.json"
# Part of the database key: bumped when what a record means changes (the search spaces, how
# candidates are measured), so that records of an older nindsl are not reused.
SEARCH_VERSION = 5


@dataclass
class Task:
    """One tuning task and its planned share of the budget."""

    name: str
    extracted: object  # meta_schedule.ExtractedTask
    weight: float  # how many times the network runs it
    flops: float  # per run
    trials: int = 0  # planned in all
    done: int = 0  # already in the database, or asked of it before
    workload: object = None  # its entry in the tuning database
    space: int | None = None  # candidates in its search space, when it is a small, countable one

    @property
    def key(self) -> str:
        """The workload's structural hash, as the database writes it."""
        return str(self.workload.as_json()[0])

    @property
    def work(self) -> float:
        return self.flops * self.weight


def cache_root() -> Path:
    root = os.environ.get("NINDSL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME")
                                                          or os.path.expanduser("~/.cache"), "nindsl")
    return Path(root)


def database_dir(profile: Profile, db: str | Path | None = None) -> Path:
    """The tuning database folder for this target and TVM version."""
    import tvm

    target = json.dumps(resolved_target(profile), sort_keys=True)
    key = hashlib.sha256(f"{target}\0{tvm.__version__}\0{SEARCH_VERSION}".encode()).hexdigest()[:12]
    base = Path(db) if db else cache_root() / "tuning"
    return base / f"tvm-{tvm.__version__}" / f"{profile.name}-{key}"


def json_database(work_dir: Path | None = None, workloads: Path | None = None, records: Path | None = None,
                  allow_missing: bool = True):
    """MetaSchedule's JSON database in ``work_dir`` (or at ``workloads`` and ``records``). TVM's
    tensor intrinsics are registered first: a record of a tensor-core kernel names them, and
    the database cannot be read without them."""
    from tvm.s_tir import meta_schedule as ms

    import_tensor_intrinsics()
    if work_dir is not None:
        return ms.database.JSONDatabase(work_dir=str(work_dir), module_equality="structural")
    return ms.database.JSONDatabase(path_workload=str(workloads), path_tuning_record=str(records),
                                    module_equality="structural", allow_missing=allow_missing)


def ensure_database(profile: Profile, db: str | Path | None, progress: Progress = SILENT) -> Path:
    """The tuning database folder of ``profile`` under ``db``, made if missing and repaired."""
    folder = ensure_folder(database_dir(profile, db), "the tuning database")
    dropped = repair_database(folder)
    if dropped:
        progress.note(f"tuning database: dropped {dropped} torn or foreign line(s)")
    return folder


def repair_database(folder: Path) -> int:
    """Drop torn or foreign lines (a killed run, a hand edit) so TVM can open the files.

    Returns how many lines were dropped. A record whose workload index is not in the
    workload file is dropped too.
    """
    dropped = 0
    workloads_path, records_path = folder / WORKLOADS, folder / RECORDS
    kept_workloads: list[str] = []
    if workloads_path.exists():
        for line in workloads_path.read_text(errors="replace").splitlines():
            try:
                json.loads(line)
                kept_workloads.append(line)
            except json.JSONDecodeError:
                dropped += 1
    kept_records: list[str] = []
    if records_path.exists():
        for line in records_path.read_text(errors="replace").splitlines():
            try:
                index, _ = json.loads(line)
                if not isinstance(index, int) or not 0 <= index < len(kept_workloads):
                    raise ValueError(index)
                kept_records.append(line)
            except (json.JSONDecodeError, ValueError, TypeError):
                dropped += 1
    if dropped:
        atomic_write_text(workloads_path, "".join(line + "\n" for line in kept_workloads))
        atomic_write_text(records_path, "".join(line + "\n" for line in kept_records))
    return dropped


def read_asked(folder: Path) -> dict[str, int]:
    """The trials asked so far per workload; an unreadable file counts as none asked."""
    return {str(key): value for key, value in read_json_object(folder / ASKED).items() if isinstance(value, int)}


def plan(tasks: list[Task], total: int) -> None:
    """Split ``total`` trials: a floor for every task, the rest by share of the work.

    A task whose search space is countable (the convolution template's) gets no more trials
    than it has candidates; what it cannot use goes to the other countable spaces with room,
    by share of the work. What none of them can use is not spent: rather that than pour it
    into kernels too light to matter.
    """
    floor = min(MIN_TRIALS, max(1, total // max(len(tasks), 1)))
    floors = [floor if t.work > 0 else min(floor, MIN_TRIALS_LIGHT) for t in tasks]
    spare = max(total - sum(floors), 0)
    work = sum(t.work for t in tasks) or 1.0
    for task, least in zip(tasks, floors):
        task.trials = least + int(spare * task.work / work)
    left = 0
    for task in tasks:
        if task.space is not None and task.trials > task.space:
            left += task.trials - task.space
            task.trials = task.space
    while left > 0:
        room = [t for t in tasks if t.space is not None and t.trials < t.space]
        if not room:
            break
        work = sum(t.work for t in room) or 1.0
        for task in room:
            extra = min(task.space - task.trials, max(1, int(left * task.work / work)), left)
            task.trials += extra
            left -= extra


def extract(module, target, folder: Path) -> list[Task]:
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops

    from .. import schedules

    tasks = []
    for task in ms.relax_integration.extract_tasks(module, target):
        try:
            flops = float(estimate_tir_flops(task.dispatched[0]))
        except Exception:  # noqa: BLE001 - an op the estimator does not know: count it as light
            flops = 0.0
        space = schedules.space_size(task.dispatched[0], target) if target.kind.name == "llvm" else None
        tasks.append(Task(task.task_name, task, float(task.weight), flops, space=space))
    return tasks


def context(task: Task, folder: Path, trials: int, tensor_cores: bool = False):
    """A tune context whose evolutionary search is sized to the trials it will spend:
    MetaSchedule's default population (512, 4 generations) costs tens of seconds per task
    even for one trial, which would dominate a small budget. Stride-1 convolutions search the
    direct-convolution template (schedules.py) instead of MetaSchedule's generic space; with
    ``tensor_cores`` (float16 on a CUDA GPU), MetaSchedule's tensor-core space."""
    from tvm.s_tir import meta_schedule as ms

    from .. import schedules

    population = max(64, min(512, 8 * trials))
    strategy = ms.search_strategy.EvolutionarySearch(population_size=population,
                                                     init_min_unmeasured=min(50, population // 2))
    space = "post-order-apply"
    target = task.extracted.target
    if tensor_cores:
        space = ms.space_generator.PostOrderApply(sch_rules="cuda-tensorcore", postprocs="cuda-tensorcore",
                                                  mutator_probs="cuda-tensorcore")
    elif task.space is not None:  # a stride-1 convolution on a CPU
        space = ms.space_generator.ScheduleFn(
            lambda sch: schedules.design_spaces(sch, target), sch_rules=[],
            postprocs=[ms.postproc.DisallowDynamicLoop(), ms.postproc.RewriteLayout()], mutator_probs={})
    (tune_context,), _ = ms.relax_integration.extracted_tasks_to_tune_contexts(
        [task.extracted], work_dir=str(folder), space=space, strategy=strategy)
    return tune_context


@contextlib.contextmanager
def quiet_meta_schedule():
    """MetaSchedule's logger setup lists the names of the handlers already on its logger, and
    fails on one without a name (pytest's capture handlers, an embedding program's own):
    those step aside while it tunes. Its INFO lines go to its log files under the database,
    not the terminal."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    logger.setLevel(logging.WARNING)
    nameless = [h for h in logger.handlers if h.get_name() is None]
    for handler in nameless:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        for handler in nameless:
            logger.addHandler(handler)


def cost_model(progress: Progress) -> str:
    """MetaSchedule's XGBoost cost model, or random choice where xgboost is not installed
    (a trimmed install): the search still runs. The model only learns between rounds, so a
    task searched in one round (at most PER_ROUND trials) is searched alike by both."""
    import importlib.util

    if importlib.util.find_spec("xgboost") is not None:
        return "xgb"
    progress.note("tuning: xgboost is not installed, so candidates are chosen at random between rounds "
                  "(pip install xgboost for MetaSchedule's cost model)")
    return "random"


@dataclass(frozen=True)
class TuneOptions:
    """How much to tune and where: ``None`` takes the profile's value."""

    trials: int | None = None  # in all, split among the tasks by their work
    max_minutes: float | None = None  # the time limit, shared by the tasks' trials
    db: str | Path | None = None  # the database's base folder (default: the user's cache)
    runner: object = "local"  # where candidates are measured: "local" or a MetaSchedule runner (rpc.runner)
    search: bool = True  # False: apply the database's records as they are (measured elsewhere: a kit's)


@dataclass
class _Search:
    """Where a tuning run stands; the measure callback updates it and ends a task whose time is up."""

    planned: int  # trials still wanted, over every task
    tasks: int
    progress: Progress
    start: float = field(default_factory=time.perf_counter)
    trials: int = 0  # measured so far, in all
    index: int = 0  # the task being searched, from 1
    name: str = ""
    best: float = float("inf")  # its best mean time so far, in seconds
    task_trials: int = 0
    wanted: int = 0
    deadline: float = float("inf")
    cut: bool = False  # its search was ended by the time limit

    def begin(self, index: int, task: "Task", wanted: int, deadline: float) -> None:
        self.index, self.name, self.best, self.cut = index, task.name, float("inf"), False
        self.task_trials, self.wanted, self.deadline = 0, wanted, deadline

    def show(self) -> None:
        elapsed = time.perf_counter() - self.start
        done, total = self.trials, max(self.planned, 1)
        left = elapsed / done * (total - done) if done else float("nan")
        best = f"{self.best * 1e3:.3f} ms" if self.best < float("inf") else "-"
        self.progress.status(f"tuning task {self.index}/{self.tasks} {self.name[:28]:<28} trials {done}/{total}  "
                             f"best {best}  elapsed {elapsed / 60:.1f} min  left ~{left / 60:.1f} min")


def _progress_callback(search: _Search):
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class Progress(ms.measure_callback.PyMeasureCallback):
        """Shows trials and the best latency so far after each measured batch, and ends the
        task's search once its share of the time limit is spent."""

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            for result in runner_results:
                search.trials += 1
                search.task_trials += 1
                seconds = [float(s) for s in (result.run_secs or [])]
                if result.error_msg is None and seconds:
                    search.best = min(search.best, sum(seconds) / len(seconds))
            search.show()
            # (a task with all its trials is ended by the scheduler itself, and must not be twice)
            if time.perf_counter() > search.deadline and search.task_trials < search.wanted and not search.cut:
                search.cut = True
                task_scheduler.terminate_task(task_id)

    return Progress()


def _confirm(tasks: list[Task], database, folder: Path, target, deadline: float, progress: Progress) -> None:
    """Re-measure the best records of ``tasks`` side by side (confirm.py), within the time limit."""
    def show(index: int, count: int, name: str) -> None:
        progress.status(f"confirming task {index}/{count} {name[:28]:<28} (its best {confirm.TOP} records, "
                        "side by side)")

    import_tensor_intrinsics()  # a record's trace may name them
    done = confirm.confirm(tasks, database, folder, target, deadline, show)
    choices = confirm.read_confirmed(folder)
    changed = sum(1 for t in tasks if choices.get(t.key, {}).get("rank", 1) != 1)
    progress.note(f"confirmed {done} task(s): {changed} chose a record other than its recorded best")
    if done < len(tasks):
        progress.note(f"time limit reached: {len(tasks) - done} task(s) not confirmed (the next run confirms them)")


def tune(network: ir.Network, profile: Profile, batch: int, options: TuneOptions | None = None, weights=None,
         seed: int = 0, progress: Progress = SILENT):
    """Tune every task of the network for ``profile``; return (tuned Relax module, database folder).

    The returned module has the database's schedules applied (and, on CPU with
    ``weight_prepack``, a ``main_transform_params`` function that packs the weights).
    """
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from ...onnx.lower import lower

    options = options or TuneOptions()
    target = tvm.target.Target(resolved_target(profile))
    if not options.search:
        return from_records(network, profile, batch, options.db, weights, seed, progress)
    if isinstance(options.runner, str) and profile.device == "cpu":  # (a GPU target's device is checked when it runs)
        check_runs_here(target, "tuning measures candidates on this machine; the code",
                        "tune on a machine with that CPU (nindsl rpc), or compile without --tune")
    folder = ensure_database(profile, options.db, progress)
    module = prepare(network, profile, batch, model=lower(network, weights, seed).model)
    database = json_database(folder)
    tasks = _planned_tasks(module, target, folder, database, profile, options)
    limit = (options.max_minutes if options.max_minutes is not None else profile.tuning.max_minutes) * 60
    local = isinstance(options.runner, str) and options.runner == "local"
    search = _search_tasks(tasks, database, folder, options, limit, progress)
    # (on this machine's CPU only: a CUDA choice would be timed on the GPU, untried so far)
    pending = confirm.stale(tasks, database, folder) if local and target.kind.name == "llvm" else []
    if pending:
        _confirm(pending, database, folder, target, search.start + limit, progress)
    return apply_database(module, confirm.with_choices(database, tasks, folder), profile, target), folder


def from_records(network: ir.Network, profile: Profile, batch: int, db: str | Path | None = None, weights=None,
                 seed: int = 0, progress: Progress = SILENT):
    """The module with the database's records applied, searching nothing (the records may have
    been measured on another machine: nothing here runs them); return it and the folder."""
    import tvm

    from ...onnx.lower import lower

    target = tvm.target.Target(resolved_target(profile))
    database, folder = open_records(profile, db, progress)
    module = prepare(network, profile, batch, model=lower(network, weights, seed).model)
    return apply_database(module, database, profile, target), folder


def open_records(profile: Profile, db: str | Path | None = None, progress: Progress = SILENT):
    """The tuning database of ``profile`` under ``db`` and its folder; refused when it holds no records."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    folder = database_dir(profile, db)
    if not (folder / RECORDS).is_file() or not (folder / RECORDS).stat().st_size:
        raise NindslError.one("E0504", f"the tuning database `{db or cache_root() / 'tuning'}` holds no records for "
                                       f"`{profile.name}` with TVM {tvm.__version__} (it would look in `{folder}`)",
                              None, "tune first: --tune here, or `nindsl tune --kit` for a machine out of reach")
    folder = ensure_database(profile, db, progress)  # (repaired: a torn line would stop TVM)
    return json_database(folder), folder


def _planned_tasks(module, target, folder: Path, database, profile: Profile, options: TuneOptions) -> list:
    """The module's tasks, each with its share of the trials and the trials it has had already
    (the database's records, or what an earlier run asked for where fewer were measured)."""
    tasks = extract(module, target, folder)
    total = options.trials if options.trials is not None else profile.tuning.trials_per_task * len(tasks)
    plan(tasks, total)
    asked = read_asked(folder)
    for task in tasks:
        task.workload = database.commit_workload(task.extracted.dispatched[0])
        task.done = max(len(database.get_top_k(task.workload, 1 << 30)), asked.get(task.key, 0))
    return tasks


def _search_tasks(tasks: list, database, folder: Path, options: TuneOptions, limit: float, progress: Progress):
    """MetaSchedule's search over the tasks that want trials, largest share of the work first.
    The time limit is shared by the trials still wanted: a task whose share runs out ends its
    search after the batch in flight, and the time a task leaves unused goes to those after it."""
    from tvm.s_tir import meta_schedule as ms

    order = sorted((t for t in tasks if t.trials > t.done), key=lambda t: -t.work)
    wanted_after = sum(t.trials - t.done for t in order)
    search = _Search(planned=wanted_after, tasks=len(order), progress=progress)
    callbacks = [*ms.measure_callback.MeasureCallback.create("default"), _progress_callback(search)]
    model = cost_model(progress)
    if order:
        import_tensor_intrinsics()  # before the first tune context imports them the slow way
    # One builder and runner for all tasks, so their worker processes are not started (and
    # TVM imported) for every task. The generous build timeout covers that start on a busy
    # machine; MetaSchedule's 30 s does not.
    builder = reusing_builder(BUILD_TIMEOUT, RECYCLE)
    local = isinstance(options.runner, str) and options.runner == "local"
    runner = ms.runner.LocalRunner(timeout_sec=RUN_TIMEOUT) if local else options.runner
    cut = 0
    with quiet_meta_schedule(), contextlib.closing(builder):
        for index, task in enumerate(order, start=1):
            wanted = task.trials - task.done
            left = limit - (time.perf_counter() - search.start)
            if left <= 0 and index > 1:  # the first task always gets a round: every run makes progress
                cut = len(order) - index + 1
                break
            search.begin(index, task, wanted, time.perf_counter() + left * wanted / wanted_after)
            wanted_after -= wanted
            # MetaSchedule's INFO lines go to its log files under the database, not the terminal:
            # its console handler takes the level this logger has when a tuning call starts.
            logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
            ms.tune_tasks(tasks=[context(task, folder, wanted)], task_weights=[task.weight], work_dir=str(folder),
                          max_trials_global=wanted, max_trials_per_task=wanted,
                          num_trials_per_iter=min(PER_ROUND, wanted), database=database, builder=builder,
                          runner=runner, cost_model=model, measure_callbacks=callbacks)
            if search.cut:
                cut += 1
            elif database.get_top_k(task.workload, 1):
                # a search that ran out of candidates is not repeated; one where none ran (every
                # build timed out on a busy machine), or one the time limit cut, is
                asked = read_asked(folder)  # another tuning run may have written it meanwhile
                asked[task.key] = max(task.trials, asked.get(task.key, 0))
                atomic_write_text(folder / ASKED, json.dumps(asked, indent=0, sort_keys=True) + "\n")
    if search.trials:
        search.show()
    if cut:
        progress.note(f"time limit of {limit / 60:g} min reached: {cut} task(s) got fewer trials than planned "
                      "(the next run goes on from the database)")
    elif not search.trials:
        progress.note(f"tuning: the database at {folder} already holds this network's records")
    return search
