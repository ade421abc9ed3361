"""Tuning: the budget split covers every task, the database survives torn writes and is
keyed by target and TVM version, and a tuned build equals ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import nindsl  # noqa: E402
from nindsl.profiles import load_profile  # noqa: E402
from nindsl.tune import RECORDS, WORKLOADS, Task, database_dir, plan, repair_database  # noqa: E402


def test_every_task_gets_trials_weighted_by_work():
    tasks = [Task("big_conv", None, 1, 9e8), Task("small_conv", None, 2, 5e7), Task("reshape", None, 1, 0.0)]
    plan(tasks, 200)
    trials = {t.name: t.trials for t in tasks}
    assert all(n >= 8 for n in trials.values())
    assert trials["big_conv"] > trials["small_conv"] > trials["reshape"]
    assert abs(sum(trials.values()) - 200) <= len(tasks)


def test_tiny_budgets_still_cover_every_task():
    tasks = [Task(f"t{i}", None, 1, float(i)) for i in range(10)]
    plan(tasks, 10)
    assert all(t.trials >= 1 for t in tasks)


def test_database_is_keyed_by_target_and_version(tmp_path):
    llvm = database_dir(load_profile("llvm"), tmp_path)
    other = database_dir(load_profile('{"kind": "llvm", "num-cores": 1}'), tmp_path)
    assert llvm != other and f"tvm-{tvm.__version__}" in str(llvm)
    assert database_dir(load_profile("llvm"), tmp_path) == llvm


def test_torn_and_foreign_lines_are_dropped(tmp_path):
    workload = json.dumps(["hash", "module"])
    (tmp_path / WORKLOADS).write_text(f"{workload}\n{workload}\n" + '["torn", "mod')
    good = json.dumps([1, ["trace", [0.1]]])
    foreign = json.dumps([7, ["trace", [0.1]]])
    (tmp_path / RECORDS).write_text(f"{good}\n{foreign}\nnot json at all\n" + '[0, ["tr')
    assert repair_database(tmp_path) == 4
    assert (tmp_path / WORKLOADS).read_text().splitlines() == [workload, workload]
    assert (tmp_path / RECORDS).read_text().splitlines() == [good]
    assert repair_database(tmp_path) == 0


@pytest.mark.slow
def test_a_tuned_build_equals_onnxruntime_and_rebuilds_from_the_database(cli, tmp_path):
    from nindsl.build_tvm import Artifact
    from nindsl.run import run_onnx

    spec = tmp_path / "tiny.nin"
    spec.write_text("network tiny() {\n    input x: f32[N, 2, 8, 8]\n    conv(4, 3, pad = 1)\n    global_avgpool()\n}\n")
    args = ["compile", spec, "-t", "llvm", "--tune", "--trials", "4", "--db", tmp_path / "db"]
    assert cli(*args, "-o", tmp_path / "a").code == 0
    network = nindsl.load(spec)
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["transform_params"] and manifest["tuning_db"]
    np.testing.assert_allclose(Artifact(tmp_path / "a")(x), run_onnx(nindsl.to_onnx(network), x),
                               rtol=1e-5, atol=1e-5)
    records = (database_dir(load_profile("llvm"), tmp_path / "db") / RECORDS).read_text().splitlines()
    assert len(records) >= 4
    assert cli(*args, "-o", tmp_path / "b").code == 0  # all trials done: nothing is measured again
    again = (database_dir(load_profile("llvm"), tmp_path / "db") / RECORDS).read_text().splitlines()
    assert again == records
