"""Everything the command line shows: diagnostics, progress, tables, top classes."""

from __future__ import annotations

import os
import sys

import numpy as np

from ..bench import verdict
from ..kernel.diagnostics import NindslError, printable, render
from ..kernel.machine import usable_cpus
from ..language import ir, summary
from ..language.ir import format_shape


def use_color(choice: str) -> bool:
    """``--color auto|always|never``: auto colours a terminal unless NO_COLOR is set."""
    if choice == "always":
        return True
    return choice == "auto" and sys.stderr.isatty() and "NO_COLOR" not in os.environ


def report(error: NindslError, color: bool = False) -> None:
    """Every diagnostic of ``error`` on stderr, then the count."""
    for diagnostic in error.diagnostics:
        print(render(diagnostic, color=color), file=sys.stderr)
    count = len(error.diagnostics)
    print(f"{count} error{'s' if count != 1 else ''}", file=sys.stderr)


class ConsoleProgress:
    """Renders :class:`nindsl.kernel.progress.Progress` on stderr: a status replaces the
    previous one on a terminal (one line, rewritten) and is dropped elsewhere, so that logs
    keep only the notes."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._width = 0  # of the status line on screen

    def status(self, text: str) -> None:
        if self.quiet or not self.live:
            return
        text = printable(text)  # a data set's file names, a model's metadata: shown, never obeyed
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def note(self, text: str) -> None:
        if self.quiet:
            return
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        print(printable(text), file=self.stream, flush=True)


def say(text: str, file=None) -> None:
    """Print a line that holds what a file or a name said (a model's metadata, a manifest),
    with the characters a terminal would act on escaped."""
    print(printable(text), file=file or sys.stdout)


def print_top(outputs: np.ndarray, top: int, labels: np.ndarray | None = None, file=None) -> None:
    """The ``top`` best classes of each example, with their scores; with ``labels``, each
    example's label beside them and, at the end, how many the top class got right."""
    file = file or sys.stdout
    if outputs.ndim != 2:
        print(f"output shape {format_shape(outputs.shape)}", file=file)
        return
    right = 0
    for index, row in enumerate(outputs):
        best = np.argsort(-row, kind="stable")[:top]
        shown = ", ".join(f"{c} ({row[c]:.4g})" for c in best)
        if labels is not None:
            hit = int(best[0]) == int(labels[index])
            right += hit
            shown += f"; label {labels[index]}" + ("" if hit else ", missed")
        print(f"example {index}: {shown}", file=file)
    if labels is not None:
        print(f"top-1: {right} of {len(outputs)} right ({right / len(outputs):.0%})", file=file)


def print_summary(network: ir.Network, wide: bool = False, file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, highlight=False)
    if not console.is_terminal:
        console.width = 132  # a pipe or file: no terminal to fit, keep rows on one line
    table = Table(title=f"{network.name}: {network.input.name} {network.input.dtype}"
                        f"[{', '.join(str(d) for d in network.input.shape)}]",
                  title_justify="left", show_footer=True)
    total_params, total_macs = network.total_params, network.total_macs
    table.add_column("layer", footer="total")
    table.add_column("op", no_wrap=True)
    table.add_column("output", footer=summary.short_shape(network.output.shape))
    table.add_column("params", justify="right", footer=f"{total_params:,}")
    table.add_column("mult-adds", justify="right", footer=f"{total_macs:,}")
    table.add_column("share", justify="right")
    winograd = _winograd_plan(network) if wide else {}
    if winograd:
        done = total_macs - sum(saved for _, _, saved in winograd.values())
        table.add_column("CPU build (Winograd)", justify="right", footer=f"{done:,}")
    for label, description, shape, params, macs in summary.rows(network, wide):
        share = f"{100 * macs / total_macs:.1f}%" if total_macs and macs else ""
        row = [label, description, shape, f"{params:,}" if params else "", f"{macs:,}" if macs else "", share]
        if winograd:
            m, k, saved = winograd.get(label, (None, None, 0))
            row.append(f"F({m}×{m},{k}×{k}) {macs - saved:,}" if m else "")
        table.add_row(*row)
    console.print(table)
    if winograd:
        console.print(f"an untuned float32 CPU build does {done / 1e6:,.1f} M multiplications per image: Winograd's "
                      "fewer in the layers shown (`compile --no-winograd` turns it off)")
    memory = sum(w.size for w in network.weights) * 4
    console.print(f"weights: {total_params:,} parameters, {memory / 2**20:.1f} MiB as float32; "
                  f"{total_macs / 1e6:,.1f} M multiply-adds per image")
    comparison = summary.head_comparison(network)
    if comparison:
        console.print(comparison)


def _winograd_plan(network: ir.Network) -> dict:
    """:func:`nindsl.tvm.winograd.plan` (the layers an untuned CPU build puts in Winograd form)."""
    from ..tvm.winograd import plan

    return plan(network)


def print_bench(records: list, peak: float, network: ir.Network, file=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, highlight=False)
    if not console.is_terminal:
        console.width = 132
    source = next((r.peak_source for r in records if r.peak_source), "measured")
    table = Table(title=f"{network.name}: {network.total_macs / 1e6:,.1f} M multiply-adds per image; float32 peak "
                        f"{peak:,.0f} GFLOP/s ({source}, {usable_cpus()} cores); int8 engines count 2 integer "
                        "operations per multiply-add", title_justify="left")
    for column in ("engine", "batch", "median ms", "p10–p90 ms", "images/s", "GFLOP/s", "of peak",
                   "× ORT (95 %)", "max |Δ| vs ORT"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for r in records:
        if r.note.startswith("cannot run here"):
            continue
        ratio = "" if r.vs_onnxruntime is None else f"{r.vs_onnxruntime:.2f}" if r.engine == "onnxruntime" else \
            f"{r.vs_onnxruntime:.2f} ({r.vs_onnxruntime_low:.2f}–{r.vs_onnxruntime_high:.2f})"
        table.add_row(r.engine, str(r.batch), f"{r.median_ms:.2f}", f"{r.p10_ms:.2f}–{r.p90_ms:.2f}",
                      f"{r.images_per_s:,.0f}", f"{r.gflops:,.1f}",
                      f"{100 * r.peak_fraction:.0f}%" if r.peak_fraction == r.peak_fraction else "—", ratio,
                      "" if r.max_abs_diff is None else f"{r.max_abs_diff:.1e}")
    console.print(table)
    for engine, note in dict.fromkeys((r.engine, r.note) for r in records if r.note.startswith("cannot run here")):
        console.print(f"{engine}: {note}", markup=False)  # (a note may hold brackets: nindsl[openvino])
    for engine, share in dict.fromkeys((r.engine, r.multiplications) for r in records if r.multiplications < 1):
        from ..tvm.winograd import plan

        tiles = ", ".join(f"{name} F({m}x{m},{k}x{k})" for name, (m, k, _) in plan(network).items())
        console.print(f"{engine}: Winograd on {tiles}: {share:.0%} of the spec's multiplications. Its GFLOP/s count "
                      "them as direct (the same work as the other engines); its share of peak counts those it does.",
                      markup=False)
    for r in records:
        if r.engine in ("tvm-tuned", "tvm-int8", "tvm-int8-tuned") and r.vs_onnxruntime is not None:
            console.print(f"{r.engine} at batch {r.batch}: {verdict(r)}")
        if r.vs_peer is not None:
            console.print(f"{r.engine} at batch {r.batch}: {verdict(r, peer=True)}")
