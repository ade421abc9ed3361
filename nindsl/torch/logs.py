"""A training run's logs beside its checkpoints, each rewritten whole from the run's history
after every epoch (so a resumed run's logs are those of one uninterrupted run)::

    OUT/metrics.csv                    one row per epoch: losses, accuracies, learning rate, speed
    OUT/events.out.tfevents.nindsl     TensorBoard scalars (`tensorboard --logdir OUT`)
    OUT/curves.png                     loss and accuracy against epochs (also `nindsl plot OUT`)

Each is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..kernel.diagnostics import NindslError
from ..kernel.io import atomic_write_text, remove_leftovers

CSV_COLUMNS = ("epoch", "loss", "acc", "val_loss", "val_acc", "lr", "images_per_s", "time_s")
EVENTS = "events.out.tfevents.nindsl"  # TensorBoard reads any file whose name holds `tfevents`
#: TensorBoard tag → history key
SCALARS = {"loss/train": "loss", "loss/val": "val_loss", "accuracy/train": "acc", "accuracy/val": "val_acc",
           "learning_rate": "lr", "images_per_s": "images_per_s"}


def write_csv(out: Path, history: list[dict]) -> None:
    """``metrics.csv``: one row per epoch; an empty cell where a run has no held-out examples."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in history:
        writer.writerow(["" if record.get(key) is None else f"{record[key]:.6g}" for key in CSV_COLUMNS])
    atomic_write_text(out / "metrics.csv", buffer.getvalue())


def write_events(out: Path, history: list[dict]) -> None:
    """TensorBoard event file of every epoch's scalars, through ``torch.utils.tensorboard``."""
    from torch.utils.tensorboard import SummaryWriter

    path = out / EVENTS
    remove_leftovers(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{EVENTS}.{os.getpid()}.", suffix=".tmp", dir=out))
    try:
        writer = SummaryWriter(log_dir=str(staging))
        for record in history:
            for tag, key in SCALARS.items():
                if record.get(key) is not None:
                    writer.add_scalar(tag, record[key], record["epoch"])
        writer.close()
        (written,) = staging.glob("events.out.tfevents.*")
        os.replace(written, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_history(run: Path) -> tuple[str, list[dict]]:
    """The network name and per-epoch records of the run in folder ``run`` (its metrics.json)."""
    path = Path(run) / "metrics.json" if Path(run).is_dir() else Path(run)
    try:
        metrics = json.loads(path.read_text())
        history = metrics["history"]
        if not isinstance(history, list) or not all(isinstance(r, dict) and "epoch" in r for r in history):
            raise ValueError("its history is not a list of epochs")
        return str(metrics.get("network", "")), history
    except FileNotFoundError:
        raise NindslError.one("E0301", f"no training run in `{run}`: `{path}` does not exist", None,
                              "give the --out folder of `nindsl train`") from None
    except OSError as error:
        raise NindslError.one("E0301", f"cannot read `{path}`: {error.strerror}", None) from None
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        raise NindslError.one("E0502", f"`{path}` is not a training run's metrics ({error})", None) from None


def best_epoch(history: list[dict]) -> dict | None:
    """The epoch whose weights ``best.safetensors`` keeps: the best held-out accuracy (the first
    of equals); None for a run without held-out examples."""
    scored = [r for r in history if r.get("val_acc") is not None]
    return max(scored, key=lambda r: r["val_acc"], default=None)


def curves_figure(history: list[dict], title: str):
    """Loss and accuracy (training and held-out) against epochs; the learning rate on the loss
    panel's right axis; the best epoch (:func:`best_epoch`) marked on both panels."""
    import matplotlib

    from ..figures import pyplot

    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    best = best_epoch(history)
    for axis, key, label in ((loss_axis, "loss", "loss"), (acc_axis, "acc", "accuracy")):
        for prefix, name, style in (("", "training", "-o"), ("val_", "held-out", "-s")):
            points = [(e, r[prefix + key]) for e, r in zip(epochs, history) if r.get(prefix + key) is not None]
            if points:
                axis.plot(*zip(*points), style, markersize=3, label=name)
        if best is not None:
            axis.axvline(best["epoch"], color="#54A24B", linestyle="--", linewidth=1,
                         label=f"best: epoch {best['epoch']}")
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    if best is not None:  # at the foot of its line, on the side with room
        right_half = best["epoch"] > (min(epochs) + max(epochs)) / 2
        acc_axis.text(best["epoch"], 0.04, f" best held-out {best['val_acc']:.1%} ",
                      transform=acc_axis.get_xaxis_transform(), ha="right" if right_half else "left",
                      fontsize=8, color="#54A24B")
    rate = _learning_rate(loss_axis, epochs, history)
    # the loss panel's legend on its learning-rate axis, which is drawn over it
    for axis, legend_on in ((loss_axis, rate.axes if rate else loss_axis), (acc_axis, acc_axis)):
        shown, names = axis.get_legend_handles_labels()
        if rate and axis is loss_axis:
            shown, names = shown + [rate], names + [rate.get_label()]
        if shown:
            legend_on.legend(shown, names, fontsize=8)
    acc_axis.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def _learning_rate(axis, epochs: list, history: list[dict]):
    """The learning rate of each epoch on ``axis``'s right side (log scale where it spans a factor
    of 10 or more, as step schedules do); its line, or None for a history without rates."""
    points = [(e, r["lr"]) for e, r in zip(epochs, history) if isinstance(r.get("lr"), (int, float)) and r["lr"] > 0]
    if not points:
        return None
    right = axis.twinx()
    (line,) = right.plot(*zip(*points), ":", color="#888888", linewidth=1.2, label="learning rate")
    rates = [lr for _, lr in points]
    if max(rates) >= 10 * min(rates):
        right.set_yscale("log")
    right.set_ylabel("learning rate", color="#666666")
    right.tick_params(axis="y", labelsize=8, colors="#666666")
    return line


def plot_curves(history: list[dict], path: Path, title: str) -> None:
    """:func:`curves_figure` as a PNG at ``path``, written atomically."""
    from ..figures import write_figure

    write_figure(curves_figure(history, title), path, dpi=100)


def curves_png(history: list[dict], title: str) -> bytes:
    """:func:`curves_figure` as PNG bytes."""
    from ..figures import figure_bytes

    return figure_bytes(curves_figure(history, title), "png", dpi=100)
