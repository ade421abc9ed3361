"""Shared fixtures: run the CLI in-process and capture what a user would see."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis budgets: a few hundred examples per property in CI; `HYPOTHESIS_PROFILE=long`
# for a campaign of tens of thousands (run by hand, reported in the issue notes).
settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if os.environ.get("HYPOTHESIS_EXAMPLES"):  # a campaign of another size: HYPOTHESIS_EXAMPLES=5000
    settings.register_profile(PROFILE, settings.get_profile(PROFILE),
                              max_examples=int(os.environ["HYPOTHESIS_EXAMPLES"]))
settings.load_profile(PROFILE)


def examples(ci: int, long: int) -> int:
    """How many examples an expensive property runs under the current profile."""
    if os.environ.get("HYPOTHESIS_EXAMPLES"):
        return int(os.environ["HYPOTHESIS_EXAMPLES"])
    return long if PROFILE == "long" else ci

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHIPPED = sorted(p for p in SPECS.glob("*.nin") if p.name != "blocks.nin")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """``cli("check", "x.nin", cwd=...)`` → Result(code, out, err)."""
    from nindsl.cli import main

    def run(*argv: str, cwd: Path | None = None) -> Result:
        old = Path.cwd()
        if cwd is not None:
            os.chdir(cwd)
        try:
            code = main([str(a) for a in argv])
        finally:
            os.chdir(old)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


class Recorded:
    """A Progress that keeps what it is told, for tests of what long work reports."""

    def __init__(self):
        self.notes: list[str] = []
        self.statuses: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def status(self, text: str) -> None:
        self.statuses.append(text)
