"""Shared fixtures: run the CLI in-process and capture what a user would see."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

SOURCE_KEY = pytest.StashKey[dict]()

# Hypothesis budgets: a few hundred examples per property, new random ones each run ("dev", the
# default); `.ci/run` draws the same ones every time ("ci": a change lands or not on its own
# merits, not on what a random seed finds elsewhere); `HYPOTHESIS_PROFILE=long` for a campaign
# of tens of thousands (run by hand, reported in the issue notes).
settings.register_profile("dev", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", settings.get_profile("dev"), derandomize=True, print_blob=True)
settings.register_profile("long", max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")
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
SOURCE_FOLDERS = ("nindsl", "specs", "tests", "examples", "backends")
# In CI (.ci/run sets it): an unmarked test that runs longer than this fails. Mark tests over
# ~3 s `slow`; the threshold is higher because CI machines are shared and noisy.
SLOW_SECONDS = float(os.environ.get("NINDSL_SLOW_SECONDS") or 0)
SPECS = ROOT / "specs"
# A small network with every layer narrow builds cover: a 3-channel input layer (folded), max
# and average pooling with Caffe's rounding, a softmax head (tests/test_int8.py, test_bf16.py).
# One mlpconv over 8×8 single-channel images: the network the hostile-input tests feed broken
# files, options and values to (tests/test_hostile_*.py, test_bounded_work_more.py).
SMALL_SPEC = """network tiny(classes = 4) {
    input x: f32[N, 1, 8, 8]
    mlpconv([8, 8, classes], kernel = 3, pad = 1)
    global_avgpool()
    softmax()
    output probs: f32[N, classes]
}
"""
SMALL_SPEC_TRAINED_BRIEFLY = SMALL_SPEC + "\ntrain {\n    epochs = 1\n    batch = 8\n}\n"
TINY_SPEC = """\
network tiny(classes = 10) {
    input image: f32[N, 3, 12, 12]
    conv1: mlpconv([24, 16], kernel = 3, pad = 1)
    pool1: maxpool(3, stride = 2, round = ceil)
    conv2: mlpconv([20, classes], kernel = 3, pad = 1)
    pool2: avgpool(2, stride = 2, round = ceil)
    global_avgpool()
    softmax()
    output probs: f32[N, classes]
}
"""
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


def _source_files() -> dict[str, int]:
    return {str(path.relative_to(ROOT)): path.stat().st_mtime_ns
            for folder in SOURCE_FOLDERS for path in (ROOT / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and ".hypothesis" not in path.parts}


def pytest_sessionstart(session):
    session.config.stash[SOURCE_KEY] = _source_files()
    if SLOW_SECONDS:  # TVM's one-time start (its tensor intrinsics) is no test's own time
        try:
            from nindsl.tvm.compat import import_tensor_intrinsics

            import_tensor_intrinsics()
        except ImportError:
            pass


def pytest_sessionfinish(session, exitstatus):
    """No test writes into the source tree: it fails the run if one did."""
    before = session.config.stash.get(SOURCE_KEY, None)
    if before is None:
        return
    after = _source_files()
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    if changed:
        print(f"\ntests changed the source tree: {', '.join(changed[:10])}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (SLOW_SECONDS and call.when == "call" and report.passed and item.get_closest_marker("slow") is None
            and call.duration > SLOW_SECONDS):
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} took {call.duration:.1f} s, over NINDSL_SLOW_SECONDS={SLOW_SECONDS:g}: "
                           "mark it @pytest.mark.slow, or make it faster")
