"""Training benchmark: `nindsl train` on digits, and the twin's speed against hand-written PyTorch.

    python examples/bench_train.py              # both parts
    python examples/bench_train.py --no-train   # only the images/s comparison

(a) trains specs/nin_digits.nin as `nindsl train` does and prints the wall time and the
held-out accuracy. (b) times training steps of the generated twin and of a hand-written
nn.Sequential NiN of the same architecture, from the same weights on the same batches,
interleaved step by step so that both see the same machine load; prints the images/s of
the median steps and their ratio (twin / hand-written), which should be at least 0.95.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import nindsl
from nindsl.cli import main as nindsl_main
from nindsl.language import ir
from nindsl.torch.data import load_data
from nindsl.torch.training import Ranks, Scores, param_groups, training_threads
from nindsl.torch.twin import to_torch
from nindsl.weights import read_tensors

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "nin_digits.nin"


def hand_written_nin(classes: int = 10) -> nn.Module:
    """nin_digits as one would write it by hand (no nindsl involved)."""

    def mlpconv(c_in: int, widths: list[int]) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for index, width in enumerate(widths):
            layers += [nn.Conv2d(c_in, width, 3 if index == 0 else 1, padding=1 if index == 0 else 0),
                       nn.ReLU(inplace=True)]
            c_in = width
        return layers

    return nn.Sequential(*mlpconv(1, [32, 32, 32]), *mlpconv(32, [64, 64]), *mlpconv(64, [64, 64]),
                         nn.MaxPool2d(2), nn.Dropout(0.5), *mlpconv(64, [64, 64, classes]),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def train_digits() -> None:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        code = nindsl_main(["train", str(SPEC), "--out", out, "--quiet"])
        wall = time.perf_counter() - start
        if code:
            sys.exit(code)
        tensors, meta = read_tensors(Path(out) / "best.safetensors")
    print(f"(a) nindsl train {SPEC.relative_to(ROOT)}: {wall:.1f} s wall, best held-out accuracy "
          f"{float(meta['val_acc']):.2%} (epoch {meta['epoch']})")


def compare_speed(steps: int, warmup: int = 20) -> float:
    network = nindsl.load(SPEC)
    batch = network.train.batch or ir.DEFAULT_BATCH
    twin = to_torch(network, seed=0)
    hand = hand_written_nin()
    with torch.no_grad():  # the same starting weights: the same numbers flow through both
        for mine, theirs in zip(hand.parameters(), twin.parameters(), strict=True):
            mine.copy_(theirs)
    data = load_data(network)
    images, labels = torch.from_numpy(data.train_images), torch.from_numpy(data.train_labels)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    batches = list(order.split(batch))[:-1]  # full batches only
    sgd = network.train.optimizer
    models = {
        "twin": (Scores(twin), torch.optim.SGD(param_groups(network, twin), lr=sgd.lr, momentum=sgd.momentum)),
        "hand-written": (hand, torch.optim.SGD(hand.parameters(), lr=sgd.lr, momentum=sgd.momentum,
                                               weight_decay=sgd.weight_decay)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for step in range(warmup + steps):  # step by step, alternating who goes first: both see the same load
        index = batches[step % len(batches)]
        for name in sorted(models, reverse=bool(step % 2)):
            model, optimizer = models[name]
            start = time.perf_counter()
            loss = F.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step >= warmup:
                seconds[name].append(time.perf_counter() - start)
    medians = {name: batch / statistics.median(values) for name, values in seconds.items()}
    ratio = medians["twin"] / medians["hand-written"]
    print(f"(b) training images/s (median step), batch {batch}, {steps} interleaved steps each, "
          f"{torch.get_num_threads()} threads: twin {medians['twin']:,.0f}, hand-written "
          f"{medians['hand-written']:,.0f}, ratio {ratio:.3f} ({'ok' if ratio >= 0.95 else 'BELOW 0.95'})")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-train", action="store_true", help="skip (a), the full training run")
    parser.add_argument("--steps", type=int, default=300, help="timed training steps per model")
    args = parser.parse_args()
    torch.set_num_threads(training_threads(Ranks()))  # as `nindsl train` does
    if not args.no_train:
        train_digits()
    return 0 if compare_speed(args.steps) >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
