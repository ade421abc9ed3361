"""A new user's first spec learns with the defaults: no `init`, no `train` section (issue 32).
He init for ReLU layers, a batch small enough for a small data set to take several steps an
epoch, and a loss stuck at chance said out loud."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import nindsl
from nindsl.language import ir
from nindsl.weights import GLOROT, HE, default_init, initial_weights

COLORS = """network colors(classes = 2) {
    input image: f32[N, 3, 16, 16]
    mlpconv([16, 16, 16], kernel = 3, pad = 1)
    maxpool(2)
    mlpconv([16, 16, classes], kernel = 3, pad = 1)
    global_avgpool()
    output logits: f32[N, classes]
}
"""


def _red_and_blue(folder, per_class: int = 40):
    """An image folder: noisy 16×16 images, mostly red or mostly blue."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, channel in (("red", 0), ("blue", 2)):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (16, 16, 3)).astype(np.uint8)
            image[..., channel] = rng.integers(150, 256, (16, 16))
            Image.fromarray(image).save(folder / name / f"{i}.png")


def _held_out_accuracy(out) -> list[float]:
    with open(out / "metrics.csv", newline="") as file:
        return [float(row["val_acc"]) for row in csv.DictReader(file)]


@pytest.mark.slow
def test_a_spec_without_init_or_train_section_learns_red_from_blue(cli, tmp_path):
    pytest.importorskip("torch")
    _red_and_blue(tmp_path / "data")
    (tmp_path / "colors.nin").write_text(COLORS)
    result = cli("train", "colors.nin", "--data", "imagefolder:data", "--epochs", "5", "--out", "runs", cwd=tmp_path)
    assert result.code == 0, result.err
    assert "batch 8 (the default for this many examples)" in result.out + result.err
    assert max(_held_out_accuracy(tmp_path / "runs")) >= 0.9
    assert "stuck" not in result.out + result.err


@pytest.mark.slow
def test_a_loss_stuck_at_chance_is_said(cli, tmp_path):
    """The paper's N(0, 0.01) through six ReLU layers: the logits stay at 0, the loss at ln 2."""
    pytest.importorskip("torch")
    _red_and_blue(tmp_path / "data")
    (tmp_path / "paper.nin").write_text(COLORS + "train {\n    init = normal(std = 0.01)\n}\n")
    result = cli("train", "paper.nin", "--data", "imagefolder:data", "--epochs", "3", "--out", "runs", cwd=tmp_path)
    assert result.code == 0, result.err
    said = result.out + result.err
    assert said.count("warning: the loss is stuck at ln(2) = 0.6931 after 2 epochs") == 1, said
    assert "init = kaiming()" in said


def test_stuck_loss_looks_at_the_first_epochs_only():
    pytest.importorskip("torch")
    from nindsl.torch.training import stuck_loss

    chance = float(np.log(10))
    assert stuck_loss([{"loss": chance}], 10, epochs=5) is None  # one epoch of five: wait for the second
    assert "after 2 epochs" in stuck_loss([{"loss": chance + 0.01}, {"loss": chance - 0.01}], 10, epochs=5)
    assert stuck_loss([{"loss": chance}, {"loss": 1.9}], 10, epochs=5) is None  # it moved
    assert "after 1 epoch," in stuck_loss([{"loss": chance}], 10, epochs=1)
    assert stuck_loss([{"loss": chance}] * 3, 10, epochs=5) is None  # said once, after the second epoch


def test_the_default_init_is_he_where_a_relu_follows_and_glorot_elsewhere(tmp_path):
    spec = tmp_path / "n.nin"
    spec.write_text("network n {\n    input x: f32[N, 4, 8, 8]\n    mlpconv([8, 8], kernel = 3)\n"
                    "    conv(6, 3, act = none)\n    global_avgpool()\n    output y: f32[N, 6]\n}\n")
    network = nindsl.load(spec)
    mlpconv, linear = network.layers[0], network.layers[1]
    assert default_init(mlpconv) == HE and default_init(linear) == GLOROT
    weights = initial_weights(network, seed=0)
    first = next(w.name for w in network.weights if w.role == "weight")
    assert abs(weights[first].std() / np.sqrt(2 / (4 * 9)) - 1) < 0.1  # He: std √(2 / fan-in)


def test_the_default_batch_gives_a_small_data_set_several_steps_an_epoch():
    assert ir.default_batch(1437) == 64 and ir.default_batch(64) == 8 and ir.default_batch(10) == 1
    assert ir.default_batch(64, world=3) == 6 and ir.default_batch(2, world=4) == 4
