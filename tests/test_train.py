"""Training the twin: the recipe, checkpoints, resuming, data sets and torchrun."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import nindsl  # noqa: E402
from conftest import ROOT, SPECS  # noqa: E402
from nindsl.language import ir  # noqa: E402
from nindsl.torch import training  # noqa: E402
from nindsl.torch.training import TrainOptions  # noqa: E402
from nindsl.torch.data import load_data  # noqa: E402
from nindsl.kernel.diagnostics import NindslError  # noqa: E402
from nindsl.torch.twin import to_torch  # noqa: E402
from nindsl.weights import load_weights, read_tensors  # noqa: E402

SMALL = """
network small(classes = 10) {{
    input image: f32[N, {channels}, {size}, {size}]
    conv1: mlpconv([32, 32], kernel = 3, pad = 1, lr_scale = 2)
    pool1: maxpool(2)
    dropout(0.2)
    conv2: mlpconv([32], kernel = 3, pad = 1)
    head: conv(classes, 1, act = none)
    global_avgpool()
    softmax()
    output probs: f32[N, classes]
}}

train {{
    epochs    = 3
    batch     = 16
    optimizer = sgd(lr = 0.05, momentum = 0.9, weight_decay = 1e-4)
    schedule  = cosine()
    init      = kaiming()
    bias_lr_scale = 2
}}
"""


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One thread per test run: on a shared CPU, spinning OpenMP workers cost far more than they give."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def small(channels: int = 1, size: int = 8, classes: int = 10) -> ir.Network:
    return nindsl.check(SMALL.format(channels=channels, size=size), {"classes": str(classes)})


def _code(error: pytest.ExceptionInfo) -> str:
    return error.value.diagnostics[0].code


# --- the recipe ------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule,expected", [
    (ir.Schedule("step", every=2, gamma=0.5), [1, 1, 0.5, 0.5, 0.25, 0.25]),
    (ir.Schedule("multistep", milestones=(1, 4), gamma=0.1), [1, 0.1, 0.1, 0.1, 0.01, 0.01]),
    (ir.Schedule("cosine"), [0.5 * (1 + np.cos(np.pi * e / 6)) for e in range(6)]),
    (ir.Schedule("constant"), [1] * 6),
])
def test_schedules(schedule, expected):
    config = ir.TrainConfig(optimizer=ir.Sgd(lr=2.0), schedule=schedule)
    assert np.allclose([training.learning_rate(config, e, 6) for e in range(6)], 2.0 * np.array(expected))


def test_param_groups_scale_learning_rates_and_decay_only_weights():
    network = small()
    groups = training.param_groups(network, to_torch(network))
    by_role = {(g["lr_scale"], g["weight_decay"]): len(g["params"]) for g in groups}
    # conv1 (lr_scale 2): weights at 2×, biases at 2×2; conv2 and head: 1× and 2×; decay on weights only
    assert by_role == {(2.0, 1e-4): 2, (4.0, 0.0): 2, (1.0, 1e-4): 2, (2.0, 0.0): 2}


def test_training_on_digits_beats_chance(tmp_path):
    result = training.train(small(), TrainOptions(epochs=2, out=tmp_path))
    assert result["best_val_acc"] > 0.3  # chance is 0.1
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    assert {"loss", "acc", "val_acc", "lr", "images_per_s", "time_s"} <= set(metrics["history"][0])
    assert metrics["history"][1]["lr"] < metrics["history"][0]["lr"]  # cosine


def test_digits_split_is_stratified_and_fixed():
    data = load_data(small())
    assert len(data.train_labels) + len(data.val_labels) == 1797
    assert abs(len(data.val_labels) / 1797 - 0.2) < 0.01
    assert np.bincount(data.val_labels).min() >= 30
    assert data.train_images.max() == 1.0 and data.train_images.dtype == np.float32
    again = load_data(small())
    assert np.array_equal(again.val_labels, data.val_labels)


# --- checkpoints and resuming ------------------------------------------------------------


def test_checkpoints_load_as_weights(tmp_path):
    network = small()
    training.train(network, TrainOptions(epochs=1, out=tmp_path))
    weights = load_weights(network, tmp_path)  # a folder: its best.safetensors
    assert set(weights) == {w.name for w in network.weights}
    tensors, meta = read_tensors(tmp_path / "best.safetensors")
    assert meta["spec_hash"] == network.spec_hash and meta["epoch"] == "1"
    state, _ = read_tensors(tmp_path / training.STATE)
    assert {n for n in state if n.startswith("momentum.")} == {f"momentum.{w.name}" for w in network.weights}
    twin = to_torch(network, tmp_path)
    assert np.array_equal(twin.state_dict()["head.weight"].numpy(), tensors["head.weight"])
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


@pytest.mark.slow
def test_resume_ends_where_an_uninterrupted_run_does(tmp_path, monkeypatch):
    network = small()
    training.train(network, TrainOptions(epochs=3, out=tmp_path / "whole"))

    real, calls = training._run_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "_run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training.train(network, TrainOptions(epochs=3, out=tmp_path / "split"))
    monkeypatch.setattr(training, "_run_epoch", real)
    assert json.loads((tmp_path / "split" / "metrics.json").read_text())["history"][-1]["epoch"] == 2
    training.train(network, TrainOptions(out=tmp_path / "split", resume=True))

    whole, _ = read_tensors(tmp_path / "whole" / "last.safetensors")
    split, _ = read_tensors(tmp_path / "split" / "last.safetensors")
    assert all(np.array_equal(whole[name], split[name]) for name in whole)
    losses = [[r["loss"] for r in json.loads((tmp_path / run / "metrics.json").read_text())["history"]]
              for run in ("whole", "split")]
    assert losses[0] == losses[1] and len(losses[0]) == 3


def test_a_finished_run_is_not_overwritten(tmp_path, cli):
    spec = tmp_path / "small.nin"
    spec.write_text(SMALL.format(channels=1, size=8))
    assert cli("train", spec, "--out", tmp_path / "run", "--epochs", "1", "--quiet").code == 0
    before = (tmp_path / "run" / "last.safetensors").read_bytes()
    result = cli("train", spec, "--out", tmp_path / "run", "--epochs", "1", "--quiet")
    assert result.code == 1 and "already holds a training run" in result.err and "--resume" in result.err
    assert (tmp_path / "run" / "last.safetensors").read_bytes() == before
    result = cli("train", spec, "--out", tmp_path / "run", "--resume", "--seed", "5", "--quiet")
    assert result.code == 1 and "--seed 5" in result.err


def test_resume_refuses_a_checkpoint_of_another_spec(tmp_path):
    training.train(small(), TrainOptions(epochs=1, out=tmp_path))
    with pytest.raises(NindslError) as error:
        training.train(small(classes=12), TrainOptions(epochs=2, out=tmp_path, resume=True))
    assert _code(error) == "E0502" and "another spec" in error.value.diagnostics[0].message


class _Payload:
    """Unpickling this runs `open(marker, "w")`: what a malicious file would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_posing_as_a_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / training.STATE).write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(NindslError) as error:
        training.train(small(), TrainOptions(out=tmp_path, resume=True))
    assert _code(error) == "E0502" and "pickle" in error.value.diagnostics[0].message
    (tmp_path / "best.safetensors").write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(NindslError):
        load_weights(small(), tmp_path)
    assert not marker.exists()


def test_resume_without_a_run_says_so(tmp_path, cli):
    result = cli("train", SPECS / "nin_digits.nin", "--out", tmp_path, "--resume", "--quiet")
    assert result.code == 1 and "nothing to resume" in result.err and "Traceback" not in result.err


# --- data sets ---------------------------------------------------------------------------------


def _write_cifar(folder, kind: str, per_file: int = 12) -> None:
    """A tiny archive in CIFAR's own format: pickled dicts with bytes keys."""
    rng = np.random.default_rng(0)
    label_key, names, classes = ((b"labels", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], 10)
                                 if kind == "cifar10" else (b"fine_labels", ["train", "test"], 100))
    folder.mkdir(parents=True)
    for name in names:
        batch = {b"batch_label": name.encode(), b"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
                 label_key: rng.integers(0, classes, per_file).tolist(), b"filenames": [b"x.png"] * per_file}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


@pytest.mark.parametrize("kind,classes,train_files", [("cifar10", 10, 5), ("cifar100", 100, 1)])
def test_cifar_python_batches(tmp_path, kind, classes, train_files):
    sub = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    _write_cifar(tmp_path / sub, kind)
    network = small(channels=3, size=32, classes=classes)
    data = load_data(network, f"{kind}:{tmp_path}")  # the parent folder works too
    assert data.train_images.shape == (12 * train_files, 3, 32, 32) and len(data.val_labels) == 12
    first = pickle.loads((tmp_path / sub / ("data_batch_1" if kind == "cifar10" else "train")).read_bytes())
    assert np.allclose(data.train_images[0].ravel(), first[b"data"][0] / 255.0)
    result = training.train(network, TrainOptions(data=f"{kind}:{tmp_path / sub}", epochs=1, batch=8,
                                                  out=tmp_path / "run"))
    assert result["history"][0]["val_acc"] is not None


def test_cifar_errors(tmp_path):
    network = small(channels=3, size=32)
    with pytest.raises(NindslError) as error:
        load_data(network, f"cifar10:{tmp_path / 'nowhere'}")
    assert _code(error) == "E0503" and "data_batch_1" in error.value.diagnostics[0].help
    _write_cifar(tmp_path / "c", "cifar10")
    (tmp_path / "c" / "data_batch_3").unlink()
    with pytest.raises(NindslError) as error:
        load_data(network, f"cifar10:{tmp_path / 'c'}")
    assert "`data_batch_3`" in error.value.diagnostics[0].message
    marker = tmp_path / "pwned"
    (tmp_path / "c" / "data_batch_3").write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(NindslError) as error:
        load_data(network, f"cifar10:{tmp_path / 'c'}")
    assert "open`, which may run code" in error.value.diagnostics[0].message and not marker.exists()
    (tmp_path / "c" / "data_batch_3").write_bytes(b"\x80\x02}q\x00")  # truncated
    with pytest.raises(NindslError) as error:
        load_data(network, f"cifar10:{tmp_path / 'c'}")
    assert "not a CIFAR python batch" in error.value.diagnostics[0].message


def test_npz_data(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", images=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8),
             labels=np.arange(40) % 10)
    data = load_data(small(), str(tmp_path / "d.npz"))
    assert data.train_images.shape == (30, 1, 8, 8) and len(data.val_labels) == 10
    assert data.train_images.max() <= 1.0


@pytest.mark.parametrize("arrays,message", [
    ({"pixels": np.zeros((4, 1, 8, 8), np.float32), "labels": np.zeros(4, np.int64)}, "no array `images`"),
    ({"images": np.zeros((4, 3, 8, 8), np.float32), "labels": np.zeros(4, np.int64)}, "3×8×8 images"),
    ({"images": np.zeros((4, 1, 8, 8), np.float32), "labels": np.array([0, 1, 2, 10])}, "labels 0..10"),
    ({"images": np.zeros((4, 1, 8, 8), np.float32), "labels": np.zeros(3, np.int64)}, "but 3 labels"),
    ({"images": np.full((4, 1, 8, 8), np.nan, np.float32), "labels": np.zeros(4, np.int64)}, "NaN"),
])
def test_bad_npz_data(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(NindslError) as error:
        load_data(small(), str(tmp_path / "d.npz"))
    assert _code(error) == "E0503" and message in error.value.diagnostics[0].message


@pytest.mark.parametrize("data,message", [("imagenet", "unknown data set"), ("missing.npz", "no such data file"),
                                          ("cifar10:nowhere", "no such folder `nowhere`")])
def test_unknown_or_missing_data_from_the_cli(cli, tmp_path, data, message):
    result = cli("train", SPECS / "nin_digits.nin", "--data", data, "--out", tmp_path, "--quiet")
    assert result.code == 1 and message in result.err and "Traceback" not in result.err
    assert not list(tmp_path.iterdir())


def test_cli_trains_and_reports(cli, tmp_path):
    spec = tmp_path / "small.nin"
    spec.write_text(SMALL.format(channels=1, size=8))
    result = cli("train", spec, "--epochs", "1", "--batch", "64", "--out", tmp_path / "run", "--quiet")
    assert result.code == 0, result.err
    assert "best held-out accuracy" in result.out and (tmp_path / "run" / "best.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["batch"] == 64


# --- torchrun ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    spec = tmp_path / "small.nin"
    spec.write_text(SMALL.format(channels=1, size=8))
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
               f"--master-port={_free_port()}", "-m", "nindsl", "train", str(spec), "--epochs", "2",
               "--out", str(tmp_path / "run"), "--quiet"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("best held-out accuracy") == 1  # rank 0 reports
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and len(metrics["history"]) == 2 and metrics["best_val_acc"] > 0.3
    assert metrics["history"][0]["images_per_s"] > 0
    load_weights(small(), tmp_path / "run")
    # one set of logs, written by rank 0 alone
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "best.safetensors", "curves.png", "events.out.tfevents.nindsl", "last.safetensors", "last.state.safetensors",
        "metrics.csv", "metrics.json"]
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 3  # the header and two epochs
