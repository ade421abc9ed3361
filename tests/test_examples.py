"""Every example runs: good specs check clean, broken ones print their stored diagnostics."""

from __future__ import annotations

import pytest

from conftest import ROOT

EXAMPLES = ROOT / "examples"
GOOD = sorted(p for p in EXAMPLES.rglob("*.nin") if "broken" not in p.parts)
BROKEN = sorted((EXAMPLES / "broken").glob("*.nin"))


@pytest.mark.parametrize("spec", GOOD, ids=lambda p: p.name)
def test_good_examples_check(cli, spec):
    result = cli("check", spec)
    assert result.code == 0, result.err


@pytest.mark.parametrize("spec", BROKEN, ids=lambda p: p.name)
def test_broken_examples_explain_themselves(cli, spec):
    result = cli("check", "--color", "never", spec.name, cwd=spec.parent)
    assert result.code == 1
    assert result.err == spec.with_suffix(".stderr").read_text()
