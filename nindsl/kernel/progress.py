"""How long-running work (tuning, benchmarking, training) says how it is going.

The library calls a :class:`Progress`; the command line renders it on stderr; the Python
API's default, :data:`SILENT`, says nothing.

>>> SILENT.note("tuning 3 tasks"); SILENT.status("trial 4/16")
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def note(self, text: str) -> None:
        """A line worth keeping: what was decided, what was found."""

    def status(self, text: str) -> None:
        """A passing state that the next status or note replaces (trial 12/64, epoch 3 step 40)."""


class _Silent:
    def note(self, text: str) -> None:
        pass

    def status(self, text: str) -> None:
        pass


SILENT: Progress = _Silent()
