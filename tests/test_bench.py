"""`nindsl bench`: one table, JSON records and a plot (numbers, not timing assertions)."""

from __future__ import annotations

import json

import numpy as np

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from conftest import SPECS  # noqa: E402


@pytest.mark.slow
def test_bench_writes_records_and_a_plot(cli, tmp_path):
    pytest.importorskip("matplotlib")
    engines = "onnxruntime,torch"
    try:
        import tvm  # noqa: F401
        engines += ",tvm-untuned"
    except ImportError:
        pass
    result = cli("bench", SPECS / "nin_digits.nin", "--batch", "1,4", "--engines", engines, "--rounds", "3",
                 "--json", tmp_path / "b.json", "--plot", tmp_path / "b.png", "--quiet")
    assert result.code == 0, result.err
    records = json.loads((tmp_path / "b.json").read_text())
    assert {(r["engine"], r["batch"]) for r in records} == {(e, b) for e in engines.split(",") for b in (1, 4)}
    import nindsl

    macs = nindsl.load(SPECS / "nin_digits.nin").total_macs
    for record in records:
        assert record["median_ms"] > 0 and record["peak_gflops"] > 0
        # the rates follow from the median and the spec's multiply-adds (2 FLOPs each), and
        # "of peak" from the peak the record states (bench caps the fraction at 1 by raising the
        # peak to the fastest float32 engine's rate: the JSON must say that peak, not the measured one)
        seconds = record["median_ms"] / 1e3
        assert record["images_per_s"] == pytest.approx(record["batch"] / seconds)
        assert record["gflops"] == pytest.approx(2 * macs * record["batch"] / seconds / 1e9)
        assert record["peak_fraction"] == pytest.approx(record["gflops"] / record["peak_gflops"])
        assert record["max_abs_diff"] < 1e-4  # every engine computes what ONNX Runtime does
        low, ratio, high = record["vs_onnxruntime_low"], record["vs_onnxruntime"], record["vs_onnxruntime_high"]
        assert low <= ratio <= high and (record["engine"] != "onnxruntime" or low == high == 1.0)
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "median ms" in result.out


def test_bench_explains_bad_options(cli):
    result = cli("bench", SPECS / "nin_digits.nin", "--batch", "1,x")
    assert result.code == 1 and "comma-separated list" in result.err
    result = cli("bench", SPECS / "nin_digits.nin", "--engines", "onnxruntime,tensorrt")
    assert result.code == 1 and "unknown engine `tensorrt`" in result.err
    result = cli("bench", SPECS / "nin_digits.nin", "--engines", "onnxruntime", "--rpc", "127.0.0.1:9190",
                 "--key", "cpu")
    assert result.code == 1 and "needs the tvm-tuned engine" in result.err
    result = cli("bench", SPECS / "nin_digits.nin", "--engines", "onnxruntime", "--key", "cpu")
    assert result.code == 1 and "give --rpc HOST:PORT too" in result.err
    result = cli("bench", SPECS / "nin_digits.nin", "--engines", "onnxruntime", "--max-minutes", "5")
    assert result.code == 1 and "--max-minutes is a tuning time limit: it needs the tvm-tuned engine" in result.err
    for option, value in [("--rounds", "0"), ("--trials", "-3"), ("--max-minutes", "nan"), ("--repeats", "x")]:
        with pytest.raises(SystemExit) as exit:
            cli("bench", SPECS / "nin_digits.nin", option, value)
        assert exit.value.code == 2  # argparse's usage error, before anything is timed or tuned


@pytest.mark.slow
def test_an_engine_timed_alone_has_nothing_to_compare_with(cli, tmp_path):
    result = cli("bench", SPECS / "nin_digits.nin", "--batch", "1", "--engines", "torch", "--rounds", "2",
                 "--json", tmp_path / "b.json", "--quiet")
    assert result.code == 0, result.err
    (record,) = json.loads((tmp_path / "b.json").read_text())  # strict JSON: null, not NaN
    assert record["engine"] == "torch" and record["max_abs_diff"] is None
    assert "nan" not in result.out


def test_blocks_are_sized_by_time_and_a_slow_engine_sits_out_late_rounds(monkeypatch):
    import time

    from nindsl import bench

    monkeypatch.setattr(bench, "ENGINE_SECONDS", 0.2)
    calls = {"fast": 0, "slow": 0}

    def engine(name, seconds):
        def run(x):
            calls[name] += 1
            time.sleep(seconds)
            return x
        return run

    runners = {"onnxruntime": lambda x: x, "fast": engine("fast", 0.0), "slow": engine("slow", 0.1)}
    times, differences = bench._time(runners, np.zeros(3, np.float32), rounds=6)
    assert differences == {"onnxruntime": 0.0, "fast": 0.0, "slow": 0.0}
    assert [len(block) for block in times["fast"]] == [bench.BLOCK] * 6  # microsecond calls: as long as BLOCK allows
    assert [len(block) for block in times["slow"]] == [1] * len(times["slow"])  # one call a round ...
    assert bench.MIN_SAMPLES <= len(times["slow"]) < 6  # ... and none once 0.2 s are spent
    # one untimed call before each block, however slow the engine (the previous engine's threads
    # spin for a while after its block), and the 2: warm-up and sizing
    assert calls["slow"] == 2 * len(times["slow"]) + 2
    assert all(t >= 0.1 for block in times["slow"] for t in block)


def test_the_ratio_interval_separates_a_real_difference_from_noise():
    from nindsl.bench import ratio_interval

    rng = np.random.default_rng(1)
    drift = 1 + 0.3 * rng.random(20)  # each round's moment: everything in it runs up to 30 % slower

    def engine(ms):
        return [list(ms * d * (1 + 0.05 * rng.standard_normal(20))) for d in drift]

    reference = engine(3.0)
    low, high = ratio_interval(engine(2.7), reference)  # 10 % faster, under much larger round-to-round noise
    assert low < 0.9 < high and high < 0.97
    low, high = ratio_interval(engine(3.0), reference)  # the same speed
    assert low < 1.0 < high and high - low < 0.1
    low, high = ratio_interval(engine(3.0)[:5], reference)  # an engine that sat out late rounds: fewer rounds count
    assert low < 1.0 < high


def test_the_verdict_reads_the_interval():
    from nindsl.bench import Record, verdict

    def record(ratio, low, high):
        return Record("tvm-tuned", 1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, "", ratio, low, high)

    assert verdict(record(0.90, 0.85, 0.95)).startswith("faster in this run: 0.90× ONNX Runtime (95 % interval 0.85–0.95)")
    assert verdict(record(1.10, 1.02, 1.20)).startswith("slower in this run")
    assert verdict(record(0.98, 0.93, 1.03)).startswith("as fast, within this run's noise")


def test_an_engine_waits_until_the_previous_engines_threads_stop_spinning():
    """A thread pool spins after its engine's calls (TVM's for about 250 ms at a whole core): the
    next engine is timed only once the process is quiet, and a quiet process waits one window."""
    import threading
    import time

    from nindsl.bench import SETTLE_LIMIT, SETTLE_WINDOW, _settle

    _settle()  # (whatever an earlier test left spinning)
    assert _settle() < 3 * SETTLE_WINDOW
    stop = time.perf_counter() + 0.3

    def spin():
        while time.perf_counter() < stop:
            pass

    spinner = threading.Thread(target=spin)
    spinner.start()
    waited = _settle()
    spinner.join()
    assert 0.2 < waited < SETTLE_LIMIT
