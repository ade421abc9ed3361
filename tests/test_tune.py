"""Tuning: the budget split covers every task, the database survives torn writes and is
keyed by target and TVM version, and a tuned build equals ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import nindsl  # noqa: E402
from nindsl.tvm.profiles import load_profile  # noqa: E402
from nindsl.tvm.tune.search import RECORDS, WORKLOADS, Task, database_dir, plan, repair_database  # noqa: E402
from conftest import Recorded  # noqa: E402



def _tiny_spec(folder):
    """A one-convolution spec that tunes in seconds: a conv, its bias reshape and a pool."""
    spec = folder / "tiny.nin"
    spec.write_text("network tiny() {\n    input x: f32[N, 2, 8, 8]\n    conv(4, 3, pad = 1)\n    global_avgpool()\n}\n")
    return spec

def test_every_task_gets_trials_weighted_by_work():
    tasks = [Task("big_conv", None, 1, 9e8), Task("small_conv", None, 2, 5e7), Task("reshape", None, 1, 0.0)]
    plan(tasks, 200)
    trials = {t.name: t.trials for t in tasks}
    assert trials["big_conv"] >= 8 and trials["small_conv"] >= 8 and trials["reshape"] >= 2
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


def test_a_torn_or_foreign_choices_file_counts_as_no_choices(tmp_path):
    from nindsl.tvm.tune.confirm import CONFIRMED, read_confirmed

    (tmp_path / CONFIRMED).write_text('{"abc": {"trace": "1f", "rec')  # a writer killed mid-file (no atomic rename)
    assert read_confirmed(tmp_path) == {}
    (tmp_path / CONFIRMED).write_text('[1, 2]')
    assert read_confirmed(tmp_path) == {}
    good = {"trace": "1f", "records": 7, "rank": 2}
    (tmp_path / CONFIRMED).write_text(json.dumps({"a": good, "b": {"trace": 3, "records": 7}, "c": "x"}))
    assert read_confirmed(tmp_path) == {"a": good}


@pytest.mark.slow
def test_a_tuned_build_equals_onnxruntime_and_rebuilds_from_the_database(cli, tmp_path):
    from nindsl.tvm.deploy.artifact import Artifact
    from nindsl.onnx.runtime import run as run_onnx

    spec = _tiny_spec(tmp_path)
    # 8 trials: the bias reshape is asked for 2, and its space holds 1
    args = ["compile", spec, "-t", "llvm", "--tune", "--trials", "8", "--db", tmp_path / "db"]
    assert cli(*args, "-o", tmp_path / "a").code == 0
    network = nindsl.load(spec)
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["transform_params"] and manifest["tuning_db"]
    np.testing.assert_allclose(Artifact(tmp_path / "a")(x), run_onnx(nindsl.to_onnx(network), x),
                               rtol=1e-5, atol=1e-5)
    records = (database_dir(load_profile("llvm"), tmp_path / "db") / RECORDS).read_text().splitlines()
    assert len(records) >= 4
    rebuild = cli(*args, "-o", tmp_path / "b")
    assert rebuild.code == 0 and "already holds" in rebuild.err  # every task done: nothing is searched again
    assert (database_dir(load_profile("llvm"), tmp_path / "db") / RECORDS).read_text().splitlines() == records


@pytest.mark.slow
def test_without_xgboost_tuning_falls_back_to_random_choice(tmp_path, monkeypatch):
    import importlib.util

    from nindsl.tvm.tune.search import TuneOptions, tune

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "xgboost" else real(name, *a))
    spec = _tiny_spec(tmp_path)
    network = nindsl.load(spec)
    progress = Recorded()
    tune(network, load_profile("llvm"), 1, TuneOptions(trials=4, db=tmp_path / "db"), progress=progress)
    assert any("xgboost is not installed" in note for note in progress.notes)
    folder = database_dir(load_profile("llvm"), tmp_path / "db")
    assert (folder / RECORDS).read_text().count("\n") >= 2
    # the XGBoost model logs its training rounds ("XGB iter ..."): none ran
    assert not any("XGB" in log.read_text() for log in (folder / "logs").iterdir())


@pytest.mark.slow
def test_the_time_limit_ends_a_search_between_batches_and_the_next_run_goes_on(tmp_path):
    from nindsl.tvm.tune.search import PER_ROUND, TuneOptions, read_asked, tune

    spec = _tiny_spec(tmp_path)
    network, profile = nindsl.load(spec), load_profile("llvm")
    progress = Recorded()
    tune(network, profile, 1, TuneOptions(trials=60, db=tmp_path / "db", max_minutes=1e-4), progress=progress)
    assert any("time limit of" in n and "got fewer trials than planned" in n for n in progress.notes)
    folder = database_dir(profile, tmp_path / "db")
    records = (folder / RECORDS).read_text().splitlines()
    assert 1 <= len(records) <= PER_ROUND  # the first task's first batch, and nothing after it
    assert read_asked(folder) == {}  # a search the limit cut is not taken as done
    tune(network, profile, 1, TuneOptions(trials=60, db=tmp_path / "db", max_minutes=1e-4))
    assert len((folder / RECORDS).read_text().splitlines()) > len(records)  # it went on


@pytest.mark.slow
def test_confirmation_rejects_a_record_that_was_only_lucky(tmp_path):
    """A record whose time was a lucky moment (here: the unscheduled loop nest, recorded as
    taking a nanosecond) is re-measured beside the next best and not chosen."""
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    from nindsl.tvm.tune import confirm
    from nindsl.tvm.profiles import resolved_target
    from nindsl.tvm.frontend import prepare
    from nindsl.tvm.tune.search import TuneOptions, extract, tune

    spec = tmp_path / "conv.nin"
    spec.write_text("network conv() {\n    input x: f32[N, 16, 16, 16]\n    conv(32, 3, pad = 1)\n"
                    "    global_avgpool()\n}\n")
    network, profile = nindsl.load(spec), load_profile("llvm")
    progress = Recorded()
    tune(network, profile, 1, TuneOptions(trials=12, db=tmp_path / "db"), progress=progress)
    assert any("confirmed" in note for note in progress.notes)
    folder = database_dir(profile, tmp_path / "db")
    target = tvm.target.Target(resolved_target(profile))
    database = ms.database.JSONDatabase(work_dir=str(folder), module_equality="structural")
    (conv,) = [t for t in extract(prepare(network, profile, 1), target, folder) if t.space is not None]
    conv.workload = database.commit_workload(conv.extracted.dispatched[0])
    mod = conv.workload.mod
    unscheduled = s_tir.Schedule(mod)
    unscheduled.get_sblock("conv2d_nchw")  # a trace of one step that changes nothing (an empty one is not taken)
    lucky = ms.database.TuningRecord(unscheduled.trace, conv.workload, [1e-9], target,
                                     ms.arg_info.ArgInfo.from_prim_func(mod["main"]))
    database.commit_tuning_record(lucky)
    assert confirm.trace_key(database.get_top_k(conv.workload, 1)[0]) == confirm.trace_key(lucky)

    progress = Recorded()
    tune(network, profile, 1, TuneOptions(trials=12, db=tmp_path / "db"), progress=progress)  # records changed
    assert any("confirming" in status for status in progress.statuses)  # so it is confirmed again
    choice = confirm.read_confirmed(folder)[conv.key]
    assert choice["rank"] != 1 and choice["trace"] != confirm.trace_key(lucky)
    assert min(choice["remeasured_s"]) < choice["remeasured_s"][0]  # the loop nest is slower (far slower on a quiet machine)
    chosen = confirm.with_choices(database, [conv], folder).query_tuning_record(mod, target, "main")
    assert confirm.trace_key(chosen) == choice["trace"]

    progress = Recorded()
    tune(network, profile, 1, TuneOptions(trials=12, db=tmp_path / "db"), progress=progress)  # nothing changed:
    assert not any("confirming" in status for status in progress.statuses)  # nothing is re-measured


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(condition, seconds: float, what: str) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.mark.slow
def test_tuning_measures_on_rpc_servers_behind_a_tracker(cli, tmp_path):
    """A tracker and two servers on loopback, started the way the README says."""
    import subprocess
    import sys

    from nindsl.tvm.tune.rpc import servers

    port = _free_port()
    address = f"127.0.0.1:{port}"
    start = [sys.executable, "-m", "nindsl", "rpc"]
    logs = [open(tmp_path / f"rpc{i}.log", "w+") for i in range(3)]  # files: a full pipe would block them
    processes = [subprocess.Popen([*start, "tracker", "--port", str(port)], stderr=logs[0], stdout=logs[0],
                                  start_new_session=True)]
    try:
        def registered() -> int:
            try:
                return servers(address, "test-cpu")
            except nindsl.NindslError:
                return 0

        _wait_for(lambda: processes[0].poll() is None and _tracker_up(port), 60, "the tracker")
        for log in logs[1:]:
            processes.append(subprocess.Popen([*start, "server", "--tracker", address, "--key", "test-cpu",
                                               "--port", str(_free_port())], stderr=log, stdout=log,
                                              start_new_session=True))
        _wait_for(lambda: registered() == 2, 120, "two servers to register")

        spec = _tiny_spec(tmp_path)
        # as a user runs it: in its own process (see the closing note of session 2 on in-process runs)
        result = subprocess.run([sys.executable, "-m", "nindsl", "compile", str(spec), "-t", "llvm", "--tune",
                                 "--trials", "4", "--db", str(tmp_path / "db"), "--rpc", address, "--key", "test-cpu",
                                 "-o", str(tmp_path / "art")], capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr
        records = list((tmp_path / "db").glob(f"*/*/{RECORDS}"))
        measured = [json.loads(line) for line in records[0].read_text().splitlines()]
        assert measured and all(r[1][1] and min(r[1][1]) < 1e9 for r in measured)  # real run times came back

        wrong = cli("compile", spec, "-t", "llvm", "--tune", "--rpc", address, "--key", "gpu", "--db",
                    tmp_path / "db", "-o", tmp_path / "art2")
        assert wrong.code == 1 and "no RPC server with key `gpu`" in wrong.err and "test-cpu" in wrong.err
        assert "listening on 127.0.0.1 only" in (tmp_path / "rpc0.log").read_text()
    finally:
        import contextlib
        import os
        import signal

        for process in processes:  # each is a process group: a server forks its workers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        for log in logs:
            log.close()


def _tracker_up(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_rpc_options_are_checked(cli, tmp_path):
    spec = _tiny_spec(tmp_path)
    cases = {("--tune", "--rpc", "localhost"): "--rpc must be HOST:PORT",
             ("--tune", "--rpc", "127.0.0.1:9"): "--rpc needs --key",
             ("--tune", "--key", "cpu"): "give --rpc HOST:PORT too",
             ("--rpc", "127.0.0.1:9", "--key", "cpu"): "--rpc measures tuning candidates: it needs --tune",
             ("--trials", "8",): "--trials is a tuning budget: it needs --tune",
             ("--max-minutes", "1",): "--max-minutes is a tuning time limit: it needs --tune",
             ("--db", tmp_path / "db"): "holds no records for `llvm`",  # (--db alone builds from its records)
             ("--tune", "--rpc", "127.0.0.1:1", "--key", "cpu"): "cannot reach the RPC tracker"}
    for options, message in cases.items():
        result = cli("compile", spec, "-t", "llvm", *options, "-o", tmp_path / "art")
        assert result.code == 1 and message in result.err, (options, result.err)
        assert not (tmp_path / "art").exists()


def test_register_blocks_divide_the_work_and_fit_the_registers():
    from nindsl.tvm.schedules import blocks, row_blocks

    assert blocks(192, 16, 8, 12) == ([2, 3, 4, 6, 8, 12], [8, 16])  # AVX2: 8 lanes
    assert blocks(192, 16, 16, 28) == ([2, 3, 4, 6, 8, 12, 16], [16])  # AVX-512: 16 lanes
    assert blocks(96, 55, 8, 12) == ([2, 3, 4, 6], [11])  # a row that is no whole vector
    assert blocks(7, 8, 8, 12) == ([7], [8]) and blocks(5, 8, 8, 3) == ([1], [8])
    assert blocks(192, 8, 8, 12, rows=2) == ([2, 3, 4, 6], [8])  # two rows of one vector each
    assert row_blocks(8, 8, 8) == [1, 2] and row_blocks(32, 32, 8) == [1] and row_blocks(7, 8, 8) == [1]


@pytest.mark.slow
def test_every_candidate_of_the_convolution_template_computes_the_convolution(tmp_path):
    """Each loop order, row block, channel block and column block, built and run against the
    same kernel unscheduled: padded and unpadded, odd channel counts, a row that is no whole vector."""
    from tvm import s_tir

    from nindsl.tvm import schedules
    from nindsl.tvm.profiles import resolved_target
    from nindsl.tvm.frontend import prepare
    from nindsl.tvm.tune.search import extract

    network = nindsl.check("network t() {\n    input x: f32[N, 3, 10, 16]\n    conv(12, 3, pad = 1)\n"
                           "    conv(6, 1)\n    conv(5, 2)\n    global_avgpool()\n}\n")
    target = tvm.target.Target(resolved_target(load_profile("llvm")))
    tasks = [t.extracted.dispatched[0] for t in extract(prepare(network, load_profile("llvm"), 1), target, tmp_path)]
    funcs = [func for func in tasks if schedules.applies(func)]
    assert len(funcs) == 3
    rng = np.random.default_rng(0)
    checked = set()
    for func in funcs:
        arrays = [rng.standard_normal([int(d) for d in buffer.shape]).astype(np.float32)
                  for buffer in func["main"].params]  # the inputs, then the output
        args = [tvm.runtime.tensor(a) for a in arrays]
        tvm.compile(func, target=target)(*args)
        expected = args[-1].numpy()
        for order, rows, height, width in schedules.candidates(func, target):
            candidate = s_tir.Schedule(func)
            schedules.direct_conv2d(candidate, order, rows, [height], [width])
            args = [tvm.runtime.tensor(a) for a in arrays[:-1]] + [tvm.runtime.tensor(np.zeros_like(arrays[-1]))]
            tvm.compile(candidate.mod, target=target)(*args)
            np.testing.assert_allclose(args[-1].numpy(), expected, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{order} rows={rows} height={height} width={width}")
            checked.add((order, rows))
    assert {order for order, _ in checked} == set(schedules.ORDERS) and {rows for _, rows in checked} == {1, 2}


def test_the_convolution_template_takes_stride_one_convolutions(tmp_path):
    from nindsl.tvm.schedules import applies
    from nindsl.tvm.frontend import prepare
    from nindsl.tvm.tune.search import extract

    network = nindsl.check("network t() {\n    input x: f32[N, 2, 12, 12]\n    conv(8, 3, pad = 1)\n"
                           "    conv(8, 3, stride = 2)\n    global_avgpool()\n}\n")
    profile = load_profile("llvm")
    from nindsl.tvm.profiles import resolved_target

    target = tvm.target.Target(resolved_target(profile))
    tasks = {t.name: applies(t.extracted.dispatched[0])
             for t in extract(prepare(network, profile, 1), target, tmp_path)}
    assert sorted(v for k, v in tasks.items() if "conv2d" in k) == [False, True]
    assert not any(v for k, v in tasks.items() if "conv2d" not in k)


def test_countable_spaces_are_not_overspent():
    tasks = [Task("conv", None, 1, 9e8, space=12), Task("strided", None, 1, 3e8), Task("pool", None, 1, 1e6),
             Task("reshape", None, 1, 0.0)]
    plan(tasks, 200)
    trials = {t.name: t.trials for t in tasks}
    assert trials["conv"] == 12 and trials["reshape"] == 2 and 8 <= trials["pool"] < 10
    assert 45 < trials["strided"] < 55


def test_trials_a_small_space_cannot_use_go_to_the_other_spaces():
    tasks = [Task("big", None, 1, 9e8, space=12), Task("small", None, 1, 1e8, space=300),
             Task("tiny", None, 1, 1e7, space=30), Task("pool", None, 1, 1e6)]
    plan(tasks, 200)
    trials = {t.name: t.trials for t in tasks}
    assert trials["big"] == 12 and trials["tiny"] <= 30
    spent = trials["small"] + trials["tiny"]
    assert 200 - 12 - trials["pool"] - len(tasks) <= spent <= 200 - 12 - trials["pool"]  # all of it, but rounding
    assert trials["small"] > 150 and trials["pool"] < 10  # by work, and none poured into the pool
    tasks[1].space = 100
    plan(tasks, 200)
    assert [t.trials for t in tasks[:3]] == [12, 100, 30] and tasks[3].trials < 10  # all spaces full: the rest unspent


def _winograd_spec(folder):
    """A 3×3 layer the Winograd rule takes (16×16 maps, 32 → 64 channels) and a 1×1 layer."""
    spec = folder / "wino.nin"
    spec.write_text("network wino() {\n    input x: f32[N, 32, 16, 16]\n    conv(64, 3, pad = 1)\n    conv(16, 1)\n"
                    "    global_avgpool()\n}\n")
    return spec


@pytest.mark.slow
def test_a_tuned_cpu_build_is_measured_against_the_untuned_template_and_the_faster_is_kept(cli, tmp_path):
    """`--tune` times the 3×3 layer alone in each form (direct, F(2×2), F(4×4)), builds the template
    with the fastest, times it against the tuned build and keeps the faster: the manifest and
    `inspect` say which and by how much, and the build kept equals ONNX Runtime."""
    from nindsl.onnx.runtime import run as run_onnx
    from nindsl.tvm.deploy.artifact import Artifact

    spec = _winograd_spec(tmp_path)
    shown = cli("compile", spec, "-t", "llvm", "--tune", "--trials", "8", "--db", tmp_path / "db", "-o", tmp_path / "a")
    assert shown.code == 0 and "measured here at batch 1" in shown.err
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    choice = manifest["tuned_choice"]
    assert choice["kept"] == min(choice["median_ms"], key=choice["median_ms"].get)
    assert choice["max_difference"] < 1e-4 and choice["batch"] == 1
    forms = choice["template_forms"]["conv1"]["times_ms"]  # (the 1×1 layer has one form: not timed)
    assert list(choice["template_forms"]) == ["conv1"] and set(forms) == {"direct", "F(2x2,3x3)", "F(4x4,3x3)"}
    fastest = min(forms, key=forms.get)
    # the template's build says which layers it put in Winograd form; a kept tuned build has no such entry
    assert ("winograd" in manifest) == (choice["kept"] == "template")
    if choice["kept"] == "template":
        assert manifest["winograd"] == ({} if fastest == "direct" else {"conv1": fastest})
    shown = cli("inspect", tmp_path / "a").out
    assert "measured choice" in shown and "template forms   conv1 " + fastest in shown
    network = nindsl.load(spec)
    x = np.random.default_rng(1).standard_normal((1, 32, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(Artifact(tmp_path / "a")(x), run_onnx(nindsl.to_onnx(network), x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kept, fastest, options", [("template", 2, []), ("tuned", 4, []),
                                                     ("template", None, ["--no-winograd"])],
                         ids=["template-with-F2", "tuned", "template-no-winograd"])
def test_the_forms_and_the_build_kept_are_the_ones_measured_fastest(cli, tmp_path, monkeypatch, kept, fastest,
                                                                    options):
    """Whichever form of a layer and whichever build the clock favours is what the artifact holds
    (the clock is rigged); the artifact still equals ONNX Runtime. --no-winograd times no forms."""
    from nindsl.onnx.runtime import run as run_onnx
    from nindsl.tvm.deploy.artifact import Artifact
    from nindsl.tvm.tune import choose

    def rigged(runs, batch):
        if set(runs) == {"tuned", "template"}:
            return {name: 1.0 if name == kept else 9.0 for name in runs}
        return {form: 1.0 if form == fastest else 5.0 for form in runs}

    monkeypatch.setattr(choose, "median_ms", rigged)
    spec = _winograd_spec(tmp_path)
    shown = cli("compile", spec, "-t", "llvm", "--tune", "--trials", "8", "--db", tmp_path / "db", *options,
                "-o", tmp_path / "a")
    assert shown.code == 0, shown.err
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["tuned_choice"]["kept"] == kept
    assert ("template_forms" in manifest["tuned_choice"]) == (not options)
    expected = None if kept == "tuned" else "off" if options else {"conv1": "F(2x2,3x3)"}
    assert manifest.get("winograd") == expected
    x = np.random.default_rng(2).standard_normal((1, 32, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(Artifact(tmp_path / "a")(x), run_onnx(nindsl.to_onnx(nindsl.load(spec)), x),
                               rtol=1e-5, atol=1e-5)


def test_a_fast_build_whose_outputs_differ_is_not_kept():
    from nindsl.tvm.tune.choose import faster

    batch = np.ones((2, 3), np.float32)
    right = lambda x: x * 2  # noqa: E731
    fast = lambda x: x * 2 + 1e-3  # noqa: E731 - wrong by more than the tolerance

    def slow(x):
        for _ in range(2000):
            x * 2
        return x * 2

    assert faster({"tuned": slow, "template": right}, batch).kept == "template"
    choice = faster({"tuned": slow, "template": fast}, batch)
    assert choice.kept == "tuned" and choice.max_difference > 1e-4 and "differ" in choice.describe()
