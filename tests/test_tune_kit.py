"""Tuning through a measurement kit (issue 30): candidates compiled here, timed "there" by the
kit's own program with TVM's runtime alone, recorded here, built from. Here "there" is this
machine's CPU (an LLVM target): the same loop a GPU kit goes through, end to end, with
nothing mocked."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY_SPEC

pytest.importorskip("tvm")

CANDIDATES = "3"


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """One round: a kit, its measurement, the results recorded and a build from the database."""
    from nindsl.cli import main

    folder = tmp_path_factory.mktemp("kit")
    (folder / "tiny.nin").write_text(TINY_SPEC)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["tune", "tiny.nin", "--kit", "k1", "--db", "db", "--candidates", CANDIDATES]) == 0
        measured = _measure(folder / "k1")
        assert main(["tune", "tiny.nin", "--results", "k1/results.json", "--db", "db"]) == 0
        assert main(["compile", "tiny.nin", "-t", "llvm", "--batch", "1", "--db", "db", "-o", "art"]) == 0
    finally:
        os.chdir(cwd)
    return folder, measured


def _measure(kit):
    """The kit's program, run as the target machine would: its own TVM runtime, no compiler."""
    result = subprocess.run([sys.executable, str(kit / "measure"), "--repeat", "3"], capture_output=True, text=True,
                            timeout=600, env={"PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    assert "candidates timed, 0 failed" in result.stderr
    return result


def test_the_kit_is_small_and_holds_every_tasks_candidates(loop):
    folder, _ = loop
    kit = json.loads((folder / "k1" / "kit.json").read_text())
    size = sum(p.stat().st_size for p in (folder / "k1").rglob("*") if p.is_file())
    assert size < 48 << 20
    convolutions = [t for t in kit["tasks"] if "conv2d" in t["task"]]
    assert len(convolutions) == 4 and all(1 <= len(t["candidates"]) <= int(CANDIDATES) for t in convolutions)
    assert all((folder / "k1" / t["library"]).is_file() for t in kit["tasks"])
    keys = [c["key"] for t in kit["tasks"] for c in t["candidates"]]
    assert len(keys) == len(set(keys))


def test_measure_runs_on_tvms_runtime_alone_and_times_every_candidate(loop):
    folder, _ = loop
    kit = json.loads((folder / "k1" / "kit.json").read_text())
    results = json.loads((folder / "k1" / "results.json").read_text())
    keys = {c["key"] for t in kit["tasks"] for c in t["candidates"]}
    assert set(results["candidates"]) == keys
    for result in results["candidates"].values():
        assert len(result["run_secs"]) == 3 and all(0 < s < 1 for s in result["run_secs"])
    assert (folder / "k1" / "site" / "tvm" / "lib" / "libtvm_runtime.so").is_file()
    assert not (folder / "k1" / "site" / "tvm" / "lib" / "libtvm_compiler.so").exists()


def test_the_records_reach_the_database_and_the_build_applies_them(loop):
    from tvm.s_tir import meta_schedule as ms

    from nindsl import load
    from nindsl.tvm.profiles import load_profile
    from nindsl.tvm.tune.search import database_dir, from_records

    folder, _ = loop
    profile = load_profile("llvm")
    database = ms.database.JSONDatabase(work_dir=str(database_dir(profile, folder / "db")))
    kit = json.loads((folder / "k1" / "kit.json").read_text())
    assert len(database.get_all_tuning_records()) == sum(len(t["candidates"]) for t in kit["tasks"])
    module, _ = from_records(load(folder / "tiny.nin"), profile, 1, folder / "db")
    scheduled = [gv.name_hint for gv, f in module.functions.items()
                 if hasattr(f, "attrs") and f.attrs is not None and "tirx.is_scheduled" in f.attrs]
    assert len(scheduled) >= len(kit["tasks"]), scheduled


def test_the_build_from_the_records_computes_what_onnx_runtime_does(loop, cli):
    folder, _ = loop
    np.save(folder / "x.npy", np.random.default_rng(1).random((1, 3, 12, 12), np.float32))
    assert cli("run", folder / "art", "-i", folder / "x.npy", "-o", folder / "tvm.npy").code == 0
    assert cli("run", folder / "tiny.nin", "-i", folder / "x.npy", "-o", folder / "ort.npy").code == 0
    np.testing.assert_allclose(np.load(folder / "tvm.npy"), np.load(folder / "ort.npy"), rtol=1e-4, atol=1e-5)
    shown = cli("inspect", folder / "art")
    assert "tuned from the records in" in shown.out and "measured elsewhere" in shown.out


@pytest.mark.slow  # a second kit: about 20 s
def test_the_next_round_starts_from_the_database_and_proposes_only_new_candidates(loop, cli):
    folder, _ = loop
    assert cli("tune", folder / "tiny.nin", "--kit", folder / "k2", "--db", folder / "db", "--candidates",
               CANDIDATES).code == 0
    first = json.loads((folder / "k1" / "kit.json").read_text())
    second = json.loads((folder / "k2" / "kit.json").read_text())
    old = {c["key"] for t in first["tasks"] for c in t["candidates"]}
    new = {c["key"] for t in second["tasks"] if "conv2d" in t["task"] for c in t["candidates"]}
    assert new and not new & old


def test_a_candidate_that_failed_there_is_recorded_as_failed(loop, cli, tmp_path):
    import shutil

    folder, _ = loop
    kit = tmp_path / "k"
    shutil.copytree(folder / "k1", kit)
    results = json.loads((kit / "results.json").read_text())
    key = next(iter(results["candidates"]))
    results["candidates"][key] = {"error": "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"}
    del results["candidates"][list(results["candidates"])[-1]]
    (kit / "results.json").write_text(json.dumps(results))
    shown = cli("tune", folder / "tiny.nin", "--results", kit / "results.json", "--db", tmp_path / "db")
    assert shown.code == 0 and "1 that failed there; 1 have no result" in shown.out


def test_results_for_another_spec_or_target_are_refused(loop, cli, tmp_path):
    folder, _ = loop
    other = tmp_path / "other.nin"
    other.write_text(TINY_SPEC.replace("classes = 10", "classes = 7"))
    refused = cli("tune", other, "--results", folder / "k1" / "results.json", "--db", tmp_path / "db")
    assert refused.code == 1 and "error[E0502]" in refused.err and "another spec" in refused.err
    refused = cli("tune", folder / "tiny.nin", "-t", '{"kind": "llvm", "mcpu": "x86-64"}', "--results",
                  folder / "k1" / "results.json", "--db", tmp_path / "db")
    assert refused.code == 1 and "was made for target" in refused.err
    assert not (tmp_path / "db").exists()


def test_a_failed_candidate_is_never_the_one_a_build_applies(loop, cli, tmp_path):
    """In a copy of the kit's results the fastest candidate of each convolution is marked failed
    there: the record a build queries (MetaSchedule's top one, what MetaScheduleApplyDatabase
    applies) is then the next fastest, for every convolution."""
    import shutil

    from nindsl.tvm.profiles import load_profile
    from nindsl.tvm.tune.kit import candidate_key
    from nindsl.tvm.tune.search import database_dir, json_database

    folder, _ = loop
    kit = tmp_path / "k"
    shutil.copytree(folder / "k1", kit)
    manifest = json.loads((kit / "kit.json").read_text())
    results = json.loads((kit / "results.json").read_text())
    fastest, runner_up = {}, {}
    for task in (t for t in manifest["tasks"] if "conv2d" in t["task"] and len(t["candidates"]) > 1):
        # (ranked as MetaSchedule ranks records: by the mean of their run times)
        ranked = sorted(task["candidates"], key=lambda c: statistics.fmean(results["candidates"][c["key"]]["run_secs"]))
        fastest[task["task"]], runner_up[task["task"]] = ranked[0]["key"], ranked[1]["key"]
        results["candidates"][ranked[0]["key"]] = {"error": "too many resources requested for launch"}
    assert fastest
    (kit / "results.json").write_text(json.dumps(results))
    assert cli("tune", folder / "tiny.nin", "--results", kit / "results.json", "--db", tmp_path / "db").code == 0
    database = json_database(database_dir(load_profile("llvm"), tmp_path / "db"))
    chosen = {candidate_key(r.workload, database.get_top_k(r.workload, 1)[0]) for r in database.get_all_tuning_records()}
    assert not chosen & set(fastest.values())
    assert set(runner_up.values()) <= chosen


@pytest.mark.parametrize("content", ["", "[1, 2]", "{\"candidates\": 3}", "not json"])
def test_damaged_results_are_a_located_error(loop, cli, tmp_path, content):
    import shutil

    folder, _ = loop
    kit = tmp_path / "k"
    shutil.copytree(folder / "k1", kit, ignore=shutil.ignore_patterns("site", "lib"))
    (kit / "results.json").write_text(content)
    refused = cli("tune", folder / "tiny.nin", "--results", kit / "results.json", "--db", tmp_path / "db")
    assert refused.code == 1 and "error[E0502]" in refused.err and "Traceback" not in refused.err


@pytest.mark.parametrize("argv, says", [
    (["--candidates", "4"], "--candidates sizes a kit's round: it needs --kit"),
    (["--kit", "k", "--trials", "10"], "--trials is for tuning here or over RPC"),
])
def test_tune_refuses_options_that_do_nothing(cli, tmp_path, argv, says):
    (tmp_path / "tiny.nin").write_text(TINY_SPEC)
    shown = cli("tune", "tiny.nin", *argv, cwd=tmp_path)
    assert shown.code == 1 and says in shown.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.nin"]



NVCC = shutil.which("nvcc")


@pytest.mark.slow  # MetaSchedule's tensor-core space and nvcc: about two minutes
@pytest.mark.skipif(NVCC is None, reason="needs nvcc (the CUDA toolkit)")
def test_an_fp16_kit_for_a_gpu_proposes_tensor_core_kernels_and_its_records_build(cli, tmp_path):
    """No GPU here: the kit is built and its records applied, but the times are invented (the
    last candidate of each task the fastest). What is checked is the plumbing: tensor-core
    candidates with machine code for the GPU, and a build whose convolutions are the recorded
    ones, not DLight's."""
    import tvm
    import tvm_ffi

    from nindsl import load
    from nindsl.onnx.lower import lower
    from nindsl.tvm.gpu.half import half_module
    from nindsl.tvm.profiles import load_profile, resolved_target
    from nindsl.tvm.tune.search import database_dir, json_database

    spec = tmp_path / "tiny.nin"
    spec.write_text(TINY_SPEC)
    kit, db = tmp_path / "kit", tmp_path / "db"
    assert cli("tune", spec, "-t", "h200", "--precision", "fp16", "--batch", "8", "--kit", kit, "--db", db,
               "--candidates", "2").code == 0
    manifest = json.loads((kit / "kit.json").read_text())
    candidates = json_database(workloads=kit / "workloads.json", records=kit / "candidates.json")
    convolutions = [r for r in candidates.get_all_tuning_records() if "conv2d" in str(r.workload.mod)]
    assert convolutions and all("wmma" in str(r.trace) or "mma" in str(r.trace) for r in convolutions)
    times = {c["key"]: {"run_secs": [1e-3 / (i + 1)] * 3}
             for t in manifest["tasks"] for i, c in enumerate(t["candidates"])}
    (kit / "results.json").write_text(json.dumps({"machine": {"device": "invented"}, "candidates": times}))
    assert cli("tune", spec, "-t", "h200", "--results", kit / "results.json", "--db", db).code == 0

    network, profile = load(spec), load_profile("h200")
    target = tvm.target.Target(resolved_target(profile))
    model = lower(network).model
    database = json_database(database_dir(profile, db))
    tuned = half_module(network, model, 8, target, database=database)
    untuned = half_module(network, model, 8, target)
    tuned, untuned = ({gv.name_hint: f for gv, f in m.functions.items() if gv.name_hint.startswith("fused_conv2d")}
                      for m in (tuned, untuned))
    assert tuned.keys() == untuned.keys() and len(tuned) == 4, (sorted(tuned), sorted(untuned))
    assert not any(tvm_ffi.structural_equal(tuned[name], untuned[name]) for name in tuned)
    built = cli("compile", spec, "-t", "h200", "--precision", "fp16", "--batch", "8", "--db", db, "--calibrate",
                "random", "-o", tmp_path / "art")
    assert built.code == 0, built.err
    artifact = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert artifact["tuning_searched"] is False and artifact["gpu_code"]["archs"] == ["sm_90"]


def test_results_outside_a_kit_are_refused(cli, tmp_path):
    (tmp_path / "tiny.nin").write_text(TINY_SPEC)
    (tmp_path / "results.json").write_text("{}")
    shown = cli("tune", tmp_path / "tiny.nin", "--results", tmp_path / "results.json")
    assert shown.code == 1 and "is not in a measurement kit: there is no kit.json beside it" in shown.err
