"""A command resolves its weights once and lowers to ONNX once, and hands that one value
(:class:`nindsl.onnx.lower.Lowered`) to every engine and build, instead of each stage doing
it again."""

from __future__ import annotations

import pytest

import nindsl
from nindsl.onnx import lower as lowering

from conftest import ROOT

DIGITS = ROOT / "specs" / "nin_digits.nin"


@pytest.fixture
def counted(monkeypatch):
    """How often the network is lowered, and its weights drawn from the init."""
    from nindsl import weights

    counts = {"lowered": 0, "drawn": 0}
    model, draw = lowering._model, weights.initial_weights

    def lowered(*args, **kwargs):
        counts["lowered"] += 1
        return model(*args, **kwargs)

    def drawn(*args, **kwargs):
        counts["drawn"] += 1
        return draw(*args, **kwargs)

    monkeypatch.setattr(lowering, "_model", lowered)
    monkeypatch.setattr(weights, "initial_weights", drawn)
    return counts


def test_lower_returns_a_lowered_value_unchanged_and_to_onnx_its_model(counted):
    network = nindsl.load(DIGITS)
    once = lowering.lower(network, None, 3)
    assert lowering.lower(network, once) is once and lowering.to_onnx(network, once) is once.model
    assert counted == {"lowered": 1, "drawn": 1}
    assert once.origin == "drawn from the spec's init, seed 3"


@pytest.mark.tvm
@pytest.mark.slow
def test_a_bench_of_five_engines_at_two_batch_sizes_lowers_once(counted):
    pytest.importorskip("tvm")
    from nindsl.bench import BenchOptions, bench

    network = nindsl.load(DIGITS)
    engines = ("onnxruntime", "torch", "tvm-untuned", "onnxruntime-int8", "tvm-int8")
    records, _ = bench(network, BenchOptions(batches=(1, 2), engines=engines, rounds=1))
    assert {r.engine for r in records} == set(engines)
    assert counted == {"lowered": 1, "drawn": 1}


@pytest.mark.tvm
def test_an_artifact_build_lowers_once(counted, tmp_path):
    pytest.importorskip("tvm")
    from nindsl.tvm.deploy.artifact import compile_artifact
    from nindsl.tvm.profiles import load_profile

    compile_artifact(nindsl.load(DIGITS), load_profile("llvm"), tmp_path / "a")
    assert counted == {"lowered": 1, "drawn": 1}
