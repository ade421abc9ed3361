"""A measurement kit: one round of tuning candidates, compiled here, timed on the target.

``nindsl tune SPEC --target T --kit KIT`` writes::

    KIT/kit.json                      what it holds: target, spec, batch, TVM version, and each
                                      task's library with its candidates (function, trace key, arguments)
    KIT/measure                       the program that times them there, writing KIT/results.json
    KIT/lib/TASK.so                   each task's candidates, compiled here (one library a task)
    KIT/workloads.json, candidates.json   their traces, in MetaSchedule's database format
    KIT/site/                         TVM's runtime (not its compiler) and tvm_ffi, as a bundle has

The target machine needs Python 3 with numpy and the CUDA driver for a GPU; nothing is
installed there. ``nindsl tune SPEC --target T --results KIT/results.json`` then records the
times in the tuning database (:mod:`nindsl.tvm.tune.kit`), and ``nindsl compile SPEC
--target T --db DB`` builds from it.
"""

from __future__ import annotations

import json
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from ...kernel.diagnostics import NindslError
from ...kernel.io import atomic_directory, regular_file
from ...kernel.outputs import listed_folder
from ...kernel.progress import SILENT, Progress
from ...kernel.version import __version__
from ...language import ir
from ..frontend import prepare
from ..profiles import Profile, resolved_target
from ..tune.kit import RECORDS, WORKLOADS, propose
from ..tune.search import json_database
from .bundle import copy_runtime

MANIFEST, RESULTS = "kit.json", "results.json"
FORMAT = 1
#: What a kit may hold, at most: it travels to machines that take a few tens of MiB per transfer.
MAX_KIT_BYTES = 48 << 20
MAX_RESULTS_BYTES = 16 << 20


#: What `tune --kit` replaces: a kit folder holding only its own files (and the results measured there).
KIT = listed_folder("a nindsl measurement kit", MANIFEST,
                    lambda relative: relative.parts[0] == RESULTS or "__pycache__" in relative.parts)


@dataclass(frozen=True)
class KitReport:
    out: Path
    tasks: int
    candidates: int
    bytes: int
    seconds: float


def write_kit(network: ir.Network, profile: Profile, batch: int, out: str | Path, db: str | Path | None = None,
              per_task: int = 32, precision: str = "fp32", weights=None, seed: int = 0, wheels: list[Path] = (),
              progress: Progress = SILENT) -> KitReport:
    """Propose a round of candidates for every task and write them as a kit at ``out``
    (``precision`` fp16: the kernels of an fp16 CUDA build, from MetaSchedule's tensor-core space)."""
    import tvm

    from ...onnx.lower import lower

    start = time.perf_counter()
    out = Path(out)
    target = tvm.target.Target(resolved_target(profile))
    with atomic_directory(out, KIT) as staging:
        candidates_db = json_database(workloads=staging / WORKLOADS, records=staging / RECORDS)
        model = lower(network, weights, seed).model
        if precision == "fp16":
            from ..gpu.half import check_fp16, half_module

            check_fp16(profile)
            module = half_module(network, model, batch, target, schedule=False)
        else:
            module = prepare(network, profile, batch, model=model)
        proposals = propose(module, profile, db, per_task, candidates_db, precision == "fp16", progress)
        (staging / "lib").mkdir()
        tasks, failed = [], []  # (failed: the keys of candidates that did not compile here)
        for index, proposal in enumerate(proposals, start=1):
            progress.status(f"kit: compiling {len(proposal.kernels)} candidates of {proposal.task} "
                            f"({index}/{len(proposals)})")
            library = f"lib/{proposal.task}.so"
            names = [f"candidate_{i}" for i in range(len(proposal.kernels))]
            built, unbuilt = _compile(dict(zip(names, proposal.kernels)), target, profile)
            if built is None:
                failed += proposal.keys
                continue
            built.export_library(str(staging / library))
            tasks.append({"task": proposal.task, "weight": proposal.weight, "library": library,
                          "candidates": [{"function": name, "key": key, "args": args}
                                         for name, key, args in zip(names, proposal.keys, proposal.args)
                                         if name not in unbuilt]})
            failed += [key for name, key in zip(names, proposal.keys) if name in unbuilt]
        copy_runtime(staging / "site", list(wheels))
        measure = staging / "measure"
        measure.write_text(MEASURE)
        measure.chmod(measure.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if not p.is_dir())
        manifest = {"format": FORMAT, "nindsl_version": __version__, "tvm_version": tvm.__version__,
                    "network": network.name, "spec_hash": network.spec_hash, "profile": profile.name,
                    "precision": precision,
                    "device": profile.device, "target": resolved_target(profile), "batch": batch, "tasks": tasks,
                    "unbuilt": failed, "files": files}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        size = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
        if size > MAX_KIT_BYTES:
            raise NindslError.one("E0401", f"the kit would be {size / 2**20:.1f} MiB; the most a kit holds is "
                                           f"{MAX_KIT_BYTES >> 20} MiB", None, "ask for fewer candidates (--trials)")
    count = sum(len(t["candidates"]) for t in tasks)
    return KitReport(out, len(tasks), count, size, time.perf_counter() - start)


def _compile(kernels: dict, target, profile: Profile):
    """The kernels (by name) in one library (for CUDA, with machine code inside), and the names
    of those that do not compile: a sampled candidate may be one TVM cannot lower. All are
    compiled at once (one nvcc call); when that fails, each alone, to find the ones that fail
    (TVM cannot lower it, or nvcc refuses it: too much shared memory, too many registers)."""
    if profile.device == "cuda":
        from ..gpu.cuda import find_nvcc

        find_nvcc()  # (a missing nvcc is the user's to fix, not a candidate's failure)

    def library(chosen: dict):
        import tvm

        module = tvm.IRModule({name: kernel.with_attr("global_symbol", name) for name, kernel in chosen.items()})
        if profile.device == "cuda":
            from ..gpu.cuda import compile_cuda

            return compile_cuda(module, target, storage_rewrite=False)
        return tvm.compile(module, target=target)

    try:
        return library(kernels), set()
    except Exception:  # noqa: BLE001 - TVM or nvcc refused one of them: find which
        pass
    unbuilt = set()
    for name, kernel in kernels.items():
        try:
            library({name: kernel})
        except Exception:  # noqa: BLE001 - this one does not compile: left out, recorded as failed
            unbuilt.add(name)
    kept = {name: kernel for name, kernel in kernels.items() if name not in unbuilt}
    return (library(kept) if kept else None), unbuilt


def read_kit(folder: Path) -> dict:
    """The manifest of the kit at ``folder``, checked to be one this nindsl and TVM wrote."""
    import tvm

    path = regular_file(folder / MANIFEST, "a kit's kit.json", 1 << 22)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise NindslError.one("E0502", f"`{folder}` is not a measurement kit of this nindsl", None,
                              "give the folder `nindsl tune --kit` wrote")
    if manifest.get("tvm_version") != tvm.__version__:
        raise NindslError.one("E0502", f"kit `{folder}` was made with TVM {manifest.get('tvm_version')}, this is "
                                       f"TVM {tvm.__version__}: its records would not apply", None,
                              "make a new kit with this nindsl")
    return manifest


def read_results(path: str | Path) -> tuple[Path, dict, dict]:
    """The kit folder beside ``path`` (a results.json), its manifest, and the results."""
    path = regular_file(path, "a kit's results.json", MAX_RESULTS_BYTES)
    kit = path.parent
    if not (kit / MANIFEST).exists():
        raise NindslError.one("E0502", f"`{path}` is not in a measurement kit: there is no {MANIFEST} beside it", None,
                              "give the results.json that the kit's measure program wrote inside the kit folder")
    manifest = read_kit(kit)
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        results = None
    if not isinstance(results, dict):
        raise NindslError.one("E0502", f"`{path}` is not the JSON object a kit's measure program writes", None)
    return kit, manifest, results


def check_kit_matches(manifest: dict, network: ir.Network, profile: Profile, kit: Path) -> None:
    """Refuse results of a kit made for another spec or target than the one given now."""
    if manifest.get("spec_hash") != network.spec_hash:
        raise NindslError.one("E0502", f"kit `{kit}` was made for `{manifest.get('network')}` (another spec, or "
                                       "other --set values)", None, "give the spec and --set values the kit was "
                                                                    "made with")
    if manifest.get("target") != resolved_target(profile):
        raise NindslError.one("E0502", f"kit `{kit}` was made for target {json.dumps(manifest.get('target'))}, "
                                       f"not {json.dumps(resolved_target(profile))}", None,
                              "give the --target the kit was made with")


# The program that runs on the target machine: Python 3 and numpy, TVM's runtime from site/.
MEASURE = r'''#!/usr/bin/env python3
"""Time every candidate of this measurement kit on this machine; write results.json beside it.

Usage: ./measure [--repeat N]    (needs Python 3 with numpy; a GPU kit, the CUDA driver)
"""
import json
import os
import platform
import statistics
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "site"))
os.environ["TVM_USE_RUNTIME_LIB"] = "1"  # TVM's runtime alone: the compiler is not here
import numpy as np  # noqa: E402
import tvm  # noqa: E402

ROUND_SECONDS = 0.02  # each timing call runs the kernel about this long
repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 5
with open(os.path.join(here, "kit.json")) as handle:
    kit = json.load(handle)
device = tvm.cuda(0) if kit["device"] == "cuda" else tvm.cpu(0)
rng = np.random.default_rng(0)
results, start = {}, time.time()
total = sum(len(task["candidates"]) for task in kit["tasks"])
done = 0
for task in kit["tasks"]:
    library = tvm.runtime.load_module(os.path.join(here, task["library"]))
    for candidate in task["candidates"]:
        done += 1
        try:
            args = [tvm.runtime.tensor((rng.standard_normal(shape) if dtype.startswith("float") else
                                        np.zeros(shape)).astype(dtype), device) for shape, dtype in candidate["args"]]
            once = library.time_evaluator(candidate["function"], device, number=1, repeat=1)(*args).mean
            number = max(1, int(ROUND_SECONDS / max(once, 1e-7)))
            timer = library.time_evaluator(candidate["function"], device, number=number, repeat=repeat)
            seconds = [float(s) for s in timer(*args).results]
            results[candidate["key"]] = {"run_secs": seconds, "median_s": statistics.median(seconds)}
        except Exception as error:  # a candidate that fails here is recorded as failed, not fatal
            results[candidate["key"]] = {"error": str(error).strip().splitlines()[-1][:500] if str(error) else
                                         type(error).__name__}
        if sys.stderr.isatty():
            print("\r%d/%d candidates timed" % (done, total), end="", file=sys.stderr, flush=True)
if sys.stderr.isatty():
    print(file=sys.stderr)
name = tvm.cuda(0).device_name if kit["device"] == "cuda" else platform.processor() or platform.machine()
out = {"kit": {"network": kit["network"], "spec_hash": kit["spec_hash"], "target": kit["target"]},
       "machine": {"device": name, "host": platform.node(), "python": platform.python_version()},
       "seconds": round(time.time() - start, 1), "candidates": results}
path = os.path.join(here, "results.json")
with open(path + ".tmp", "w") as handle:
    json.dump(out, handle, indent=1)
    handle.write("\n")
os.replace(path + ".tmp", path)
failed = sum(1 for r in results.values() if "error" in r)
print("wrote %s: %d candidates timed, %d failed" % (path, len(results) - failed, failed), file=sys.stderr)
'''
