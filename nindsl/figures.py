"""Figures nindsl writes (bench plots, training curves, `nindsl draw`): matplotlib without a
screen, and a finished figure turned into file bytes or written atomically."""

from __future__ import annotations

import io
from pathlib import Path

# Metadata that would make equal figures differ by the date or matplotlib's version.
STABLE_METADATA = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_bytes(figure, fmt: str = "png", dpi: int = 100, **savefig) -> bytes:
    """``figure`` as ``fmt`` (png, svg, pdf) bytes; the figure is closed."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format=fmt, dpi=dpi, **savefig)
    finally:
        pyplot().close(figure)
    return buffer.getvalue()


def write_figure(figure, path: str | Path, dpi: int = 100) -> None:
    """``figure`` as a PNG at ``path``, written atomically (replacing only a PNG); the figure is closed."""
    from .kernel.io import atomic_write_bytes
    from .kernel.outputs import PNG

    atomic_write_bytes(Path(path), figure_bytes(figure, "png", dpi), PNG)
