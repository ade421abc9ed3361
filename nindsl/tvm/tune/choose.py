"""The measured choice a ``--tune`` CPU build ends with: the tuned build or the untuned template.

Tuning searches direct NCHW convolutions (MetaSchedule over nindsl's template,
:mod:`nindsl.tvm.schedules`). The untuned template runs channels-last and puts a layer in
Winograd form where its rule takes it (:mod:`nindsl.tvm.winograd`), multiplying less: on some
networks and machines it is the faster build, however long the search. So a ``--tune`` build
that measures on this machine builds both, checks that they compute the same outputs, times
them side by side (interleaved rounds, medians) at the build's batch, and keeps the faster.
The manifest records both times (``tuned_choice``) and ``nindsl inspect`` shows them.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

ROUNDS = 9  # interleaved timing rounds
ROUND_SECONDS = 0.05  # each round runs a build at least this long
TOLERANCE = 1e-4  # the outputs of builds that compute the same network differ by at most this
NAMES = {"tuned": "the tuned kernels", "template": "the untuned template"}


@dataclass(frozen=True)
class Choice:
    """Which build a ``--tune`` compile kept, and the medians that decided it."""

    kept: str  # "tuned" or "template"
    median_ms: dict[str, float]  # per build, milliseconds per call
    batch: int
    max_difference: float  # the largest |Δ| between the two builds' outputs

    def describe(self) -> str:
        other = next(name for name in self.median_ms if name != self.kept)
        said = (f"kept {NAMES[self.kept]} ({self.median_ms[self.kept]:.3g} ms) over {NAMES[other]} "
                f"({self.median_ms[other]:.3g} ms), measured here at batch {self.batch}")
        if self.max_difference > TOLERANCE:
            said += f"; their outputs differ by {self.max_difference:.1e}, so the first was kept (a bug: report it)"
        return said

    def manifest(self) -> dict:
        return {"kept": self.kept, "median_ms": dict(self.median_ms), "batch": self.batch, "rounds": ROUNDS,
                "max_difference": self.max_difference}


def measures_here(profile, options) -> bool:
    """Whether a ``--tune`` build for ``profile`` ends with the choice: a CPU build that searched
    here (an RPC run's times are another machine's; records applied with ``--db`` alone were
    measured elsewhere)."""
    return profile.device == "cpu" and options.search and isinstance(options.runner, str)


def _seconds_per_call(run: Callable, batch: np.ndarray) -> float:
    calls, start = 0, time.perf_counter()
    while True:
        run(batch)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= ROUND_SECONDS:
            return elapsed / calls


def median_ms(runs: dict, batch: np.ndarray) -> dict:
    """Each of ``runs`` (key → callable on a batch) timed on ``batch`` in :data:`ROUNDS` interleaved
    rounds: its median milliseconds per call, by key."""
    times: dict = {key: [] for key in runs}
    for _ in range(ROUNDS):
        for key, run in runs.items():
            times[key].append(_seconds_per_call(run, batch))
    return {key: statistics.median(series) * 1e3 for key, series in times.items()}


def faster(runs: dict[str, Callable], batch: np.ndarray) -> Choice:
    """Time each of ``runs`` (name → callable on a batch) in :data:`ROUNDS` interleaved rounds on
    ``batch``; the one with the lowest median is kept (the first on a tie, and the first where
    their outputs differ by more than :data:`TOLERANCE`: a fast build is no choice if it is wrong)."""
    outputs = {name: run(batch) for name, run in runs.items()}  # (also a warm-up)
    first, *others = outputs.values()
    difference = max((float(np.max(np.abs(first - other))) for other in others), default=0.0)
    medians = median_ms(runs, batch)
    kept = min(medians, key=medians.__getitem__) if difference <= TOLERANCE else next(iter(runs))
    return Choice(kept, medians, len(batch), difference)
