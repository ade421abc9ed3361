"""Differential testing: random valid specs through every engine, and the regressions they found.

Each random spec (tests/strategies.py: kernels, strides, padding, pooling kind and
rounding, sizes near the edges) runs on the PyTorch twin, ONNX Runtime with and without
graph optimisations, ONNX's reference evaluator and TVM LLVM, with the same weights and
inputs; every pair agrees (tests/differential.py). Hypothesis shrinks a disagreement to a
minimal spec; it is then kept in tests/fixtures/differential/ with a header saying what
disagreed, in which versions, and how nindsl answers it.

    HYPOTHESIS_PROFILE=long pytest tests/test_differential.py   # a long campaign
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("onnxruntime")

from hypothesis import given, settings  # noqa: E402

import nindsl  # noqa: E402

from conftest import FIXTURES, examples  # noqa: E402
from differential import assert_engines_agree  # noqa: E402
from numerics import reference_is_reliable  # noqa: E402
from strategies import specs  # noqa: E402

REGRESSIONS = sorted((FIXTURES / "differential").glob("*.nin"))


@pytest.mark.slow
@settings(max_examples=examples(ci=20, long=300), deadline=None)
@given(specs(max_layers=5))
def test_every_engine_agrees_on_random_specs(case):
    text, _, _ = case
    assert_engines_agree(nindsl.check(text))


@pytest.mark.parametrize("spec", REGRESSIONS, ids=lambda p: p.stem)
def test_regressions_stay_fixed(spec):
    header = re.findall(r"^# ?(.*)$", spec.read_text(), re.M)
    assert any(re.search(r"\d+\.\d+", line) for line in header), "say which versions showed the fault"
    try:
        network = nindsl.load(spec)
    except nindsl.NindslError as error:  # answered by a refusal: it must stay a located one
        assert all(d.span is not None for d in error.diagnostics)
        return
    results = assert_engines_agree(network)
    assert "reference" in results or not reference_is_reliable(network)
