"""Training you can watch (#20): logs and curves, an honest resume, early stopping, image
folders, augmentation and preprocessing that `nindsl run` repeats, threads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorboard")
from PIL import Image  # noqa: E402

import nindsl  # noqa: E402
from conftest import SPECS, Recorded  # noqa: E402
from nindsl.kernel.diagnostics import NindslError  # noqa: E402
from nindsl.torch import training  # noqa: E402
from nindsl.torch.data import load_data  # noqa: E402
from nindsl.torch.images import centre_crop, normalise  # noqa: E402
from nindsl.torch.logs import EVENTS  # noqa: E402
from nindsl.torch.training import TrainOptions  # noqa: E402
from nindsl.torch.twin import to_torch  # noqa: E402

TINY = """
network tiny(classes = {classes}) {{
    input image: f32[N, {channels}, 8, 8]
    conv1: mlpconv([8, 8], kernel = 3, pad = 1)
    pool1: maxpool(2)
    head: conv(classes, 1, act = none)
    global_avgpool()
    softmax()
    output probs: f32[N, classes]
}}

train {{
    epochs    = {epochs}
    batch     = 32
    optimizer = sgd(lr = {lr}, momentum = 0.9)
    init      = kaiming()
{extra}
}}
"""


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def tiny_text(classes=10, channels=1, epochs=2, lr=0.05, extra="") -> str:
    return TINY.format(classes=classes, channels=channels, epochs=epochs, lr=lr, extra=extra)


def tiny(**kwargs) -> nindsl.language.ir.Network:
    return nindsl.check(tiny_text(**kwargs))


@pytest.fixture
def blobs(tmp_path) -> str:
    """An .npz of 100 noisy 1×8×8 images of 10 classes, each class brighter in its own rows:
    learnable, and far quicker to load than scikit-learn's digits."""
    rng = np.random.default_rng(0)
    labels = np.arange(100) % 10
    images = rng.random((100, 8, 8), dtype=np.float32) * 0.3
    for index, label in enumerate(labels):
        images[index, label % 8] += 0.7
    np.savez(tmp_path / "blobs.npz", images=images, labels=labels)
    return str(tmp_path / "blobs.npz")


# --- logs and curves -----------------------------------------------------------------------------


def test_a_run_writes_csv_tensorboard_events_and_curves(tmp_path, blobs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    progress = Recorded()
    tmp_path = tmp_path / "run"
    training.train(tiny(), TrainOptions(out=tmp_path, data=blobs), progress)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["val_acc"]) == pytest.approx(history[1]["val_acc"], rel=1e-5)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "learning_rate"} <= set(events.Tags()["scalars"])
    assert [(e.step, round(e.value, 5)) for e in events.Scalars("accuracy/val")] == \
        [(r["epoch"], round(r["val_acc"], 5)) for r in history]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.glob("*tfevents*")] == [EVENTS] and not list(tmp_path.glob(".*"))
    line = next(n for n in progress.notes if n.startswith("epoch   2"))
    assert all(word in line for word in ("loss", "acc", "val loss", "lr"))


def test_plot_draws_a_run_and_refuses_a_folder_without_one(tmp_path, cli, blobs):
    training.train(tiny(epochs=1), TrainOptions(out=tmp_path / "run", data=blobs))
    result = cli("plot", tmp_path / "run", "-o", tmp_path / "c.png")
    assert result.code == 0 and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "empty").mkdir()
    result = cli("plot", tmp_path / "empty")
    assert result.code == 1 and "E0301" in result.err and "Traceback" not in result.err
    (tmp_path / "empty" / "metrics.json").write_text('{"history": 3}')
    result = cli("plot", tmp_path / "empty")
    assert result.code == 1 and "E0502" in result.err and not (tmp_path / "empty" / "curves.png").exists()


# --- resuming honestly, early stopping -----------------------------------------------------------


def test_resuming_a_finished_run_trains_nothing_and_says_so(tmp_path, cli, blobs):
    spec = tmp_path / "tiny.nin"
    spec.write_text(tiny_text(epochs=1, extra=f'    data = "{Path(blobs).name}"'))
    run = tmp_path / "run"
    assert cli("train", spec, "--out", run, cwd=tmp_path).code == 0
    before = (run / "last.state.safetensors").read_bytes()
    result = cli("train", spec, "--out", run, "--resume", cwd=tmp_path)
    assert result.code == 0 and "nothing to do" in result.err and "all 1 epochs" in result.err
    assert "trained" not in result.out and (run / "last.state.safetensors").read_bytes() == before
    result = cli("train", spec, "--out", run, "--resume", "--epochs", "2", cwd=tmp_path)
    assert result.code == 0 and "resuming tiny at epoch 2 of 2 (best held-out accuracy" in result.err
    assert "for 1 epoch (epoch 2 of 2)" in result.out


def test_patience_stops_early_keeps_the_best_and_resumes_to_nothing(tmp_path, blobs):
    network = tiny(epochs=6, lr=1e-12, extra="    patience = 2")  # nothing learns: no epoch beats the first
    progress = Recorded()
    tmp_path = tmp_path / "run"
    result = training.train(network, TrainOptions(out=tmp_path, data=blobs), progress)
    assert result["stopped_early"] and result["trained"] == 3 and result["best_epoch"] == 1
    assert any(n.startswith("stopping early: no better held-out accuracy for 2 epochs") for n in progress.notes)
    assert nindsl.weights.read_tensors(tmp_path / "best.safetensors")[1]["epoch"] == "1"
    again = Recorded()
    assert training.train(network, TrainOptions(out=tmp_path, resume=True, data=blobs), again)["trained"] == 0
    assert "stopped early at epoch 3" in again.notes[0] and "--patience" in again.notes[0]
    # a larger patience goes on from where it stopped
    assert training.train(network, TrainOptions(out=tmp_path, resume=True, patience=3, data=blobs))["trained"] == 1


# --- augmentation ----------------------------------------------------------------------------------


def test_crops_and_flips_are_drawn_from_the_generator():
    config = nindsl.language.ir.TrainConfig(crop_pad=2, flip=True, mean=(0.5,), std=(0.5,))
    prepare = training.Prepare(config, ("N", 1, 4, 4), torch.device("cpu"))
    x = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4)
    first = prepare.train(x, torch.Generator().manual_seed(7))
    assert first.shape == x.shape
    assert torch.equal(first, prepare.train(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, prepare.train(x, torch.Generator().manual_seed(8)))
    # no padding, no flip, a stored size equal to the input's: only normalisation
    plain = training.Prepare(nindsl.language.ir.TrainConfig(mean=(0.5,), std=(0.5,)), ("N", 1, 4, 4), "cpu")
    assert torch.equal(plain.train(x, torch.Generator()), (x - 0.5) / 0.5)
    # a crop of an unpadded, larger image is a window of it
    bigger = training.Prepare(nindsl.language.ir.TrainConfig(), ("N", 1, 2, 2), "cpu")
    window = bigger.train(x, torch.Generator().manual_seed(1))
    assert window.shape == (2, 1, 2, 2)
    assert any(torch.equal(window[0, 0], x[0, 0, i:i + 2, j:j + 2]) for i in range(3) for j in range(3))


@pytest.mark.slow
def test_resume_with_augmentation_ends_where_an_uninterrupted_run_does(tmp_path, monkeypatch, blobs):
    network = tiny(epochs=3, extra="    crop_pad = 2\n    flip = true\n    mean = 0.3\n    std = 0.4")
    training.train(network, TrainOptions(out=tmp_path / "whole", data=blobs))
    real, calls = training._run_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "_run_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training.train(network, TrainOptions(out=tmp_path / "split", data=blobs))
    monkeypatch.setattr(training, "_run_epoch", real)
    training.train(network, TrainOptions(out=tmp_path / "split", resume=True))
    whole, _ = nindsl.weights.read_tensors(tmp_path / "whole" / "last.safetensors")
    split, _ = nindsl.weights.read_tensors(tmp_path / "split" / "last.safetensors")
    assert all(np.array_equal(whole[name], split[name]) for name in whole)
    assert (tmp_path / "whole" / "metrics.csv").read_text() != "" and \
        [r["loss"] for r in csv.DictReader((tmp_path / "whole" / "metrics.csv").open())] == \
        [r["loss"] for r in csv.DictReader((tmp_path / "split" / "metrics.csv").open())]


# --- image folders, and `nindsl run` on the same images ---------------------------------------------


def _image_folder(root, classes=3, per_class=10, split=True) -> list:
    """Class folders of noisy images, one dominant colour per class, of assorted sizes."""
    rng = np.random.default_rng(0)
    files = []
    for part, count in ((("train", per_class), ("val", 3)) if split else (("", per_class),)):
        for label in range(classes):
            folder = root / part / f"class{label}"
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = rng.integers(0, 90, (10 + index % 3, 12, 3))
                pixels[..., label] += 160
                path = folder / f"{index}.png"
                Image.fromarray(pixels.astype(np.uint8)).save(path)
                files.append(path)
    return files


def test_imagefolder_trains_and_run_on_its_images_agrees_with_the_twin(tmp_path, cli):
    files = _image_folder(tmp_path / "images")
    spec = tmp_path / "tiny.nin"
    spec.write_text(tiny_text(classes=3, channels=3, epochs=3, lr=0.1,
                              extra="    resize = 10\n    crop_pad = 1\n    flip = true\n"
                                    "    mean = [0.4, 0.4, 0.4]\n    std = [0.3, 0.3, 0.3]"))
    result = cli("train", spec, "--data", f"imagefolder:{tmp_path / 'images'}", "--out", tmp_path / "run",
                 "--threads", "1")
    assert result.code == 0, result.err
    assert "30 examples, 9 held out; batch " in result.err and "; 1 thread" in result.err
    network = nindsl.load(spec)
    held = [f for f in files if "val" in f.parts]
    data = load_data(network, f"imagefolder:{tmp_path / 'images'}")
    assert data.class_names == ("class0", "class1", "class2") and data.val_images.shape == (9, 3, 10, 10)
    twin = to_torch(network, tmp_path / "run").eval()
    with torch.no_grad():
        expected = twin(torch.from_numpy(normalise(centre_crop(data.val_images, 8, 8), network.train.preprocess)))
    accuracy = float((expected.argmax(1).numpy() == data.val_labels).mean())
    best = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert accuracy == pytest.approx(best["history"][best["best_epoch"] - 1]["val_acc"])

    outputs = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.npy"
        assert cli("run", spec, "--weights", tmp_path / "run", "--backend", backend, "--input", *held,
                   "-o", out).code == 0
        outputs[backend] = np.load(out)
    assert cli("compile", spec, "--target", "onnx", "--weights", tmp_path / "run", "-o", tmp_path / "m.onnx").code == 0
    assert cli("run", tmp_path / "m.onnx", "--input", *held, "-o", tmp_path / "onnx.npy").code == 0
    outputs["onnx file"] = np.load(tmp_path / "onnx.npy")
    assert "\n  images        mean [" in cli("inspect", tmp_path / "m.onnx").out  # how `run` prepares image files
    for name, got in outputs.items():
        assert np.allclose(got, expected.numpy(), atol=1e-5), name
        assert np.array_equal(got.argmax(1), expected.numpy().argmax(1)), name


def test_imagefolder_without_train_and_val_holds_out_a_share(tmp_path):
    _image_folder(tmp_path, classes=2, per_class=5, split=False)
    data = load_data(tiny(classes=2, channels=3), f"imagefolder:{tmp_path}")
    assert len(data.train_labels) + len(data.val_labels) == 10 and sorted(set(data.val_labels)) == [0, 1]
    assert data.train_images.shape[1:] == (3, 8, 8) and data.train_images.max() <= 1.0


@pytest.mark.parametrize("make,message", [
    (lambda root: None, "no such folder"),
    (lambda root: root.mkdir(), "holds no class folders of images"),
    (lambda root: (root / "a").mkdir(parents=True) or (root / "a" / "x.png").write_bytes(b"not a png"),
     "is not a readable image"),
])
def test_bad_image_folders(tmp_path, make, message):
    root = tmp_path / "images"
    make(root)
    with pytest.raises(NindslError) as error:
        load_data(tiny(classes=2, channels=3), f"imagefolder:{root}")
    assert error.value.diagnostics[0].code == "E0503" and message in error.value.diagnostics[0].message


# --- what data a spec names, and data of the wrong shape ---------------------------------------------


@pytest.mark.parametrize("extra,message", [
    ('    data = "imagenet"', "unknown data set `imagenet`"),
    ("    mean = [0.5, 0.5]", "`mean` has 2 values; the input has 1 channel"),
    ("    std = [0]", "`std` must be greater than 0"),
    ("    resize = 4", "smaller than the input's 8×8"),
])
def test_check_refuses_train_settings_that_cannot_work(extra, message):
    with pytest.raises(NindslError) as error:
        tiny(extra=extra)
    diagnostic = error.value.diagnostics[0]
    assert diagnostic.code == "E0107" and message in diagnostic.message and diagnostic.span is not None


def test_shipped_specs_name_data_or_say_what_to_pass(cli, tmp_path):
    result = cli("train", SPECS / "nin_cifar10.nin", "--out", tmp_path / "a")
    assert result.code == 1 and "--data cifar10:DIR" in result.err
    result = cli("train", SPECS / "nin_imagenet.nin", "--out", tmp_path / "b")
    assert result.code == 1 and "--data imagefolder:DIR" in result.err
    result = cli("train", SPECS / "nin_cifar10.nin", "--data", "digits", "--out", tmp_path / "c")
    assert result.code == 1 and "1×8×8 images" in result.err and "--data cifar10:DIR" in result.err
    assert not list(tmp_path.iterdir())


# --- threads -----------------------------------------------------------------------------------------


def test_threads_default_to_the_cores_no_other_work_keeps_busy(monkeypatch):
    from nindsl.kernel import machine

    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    assert training.training_threads(training.Ranks()) == 1
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert training.training_threads(training.Ranks()) == machine.usable_cpus()
    assert training.training_threads(training.Ranks(), threads=3) == 3


def test_run_threads_need_the_torch_backend(cli, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    result = cli("run", SPECS / "nin_digits.nin", "--input", tmp_path / "x.npy", "--threads", "1")
    assert result.code == 1 and "needs --backend torch" in result.err
    result = cli("run", SPECS / "nin_digits.nin", "--input", tmp_path / "x.npy", "--threads", "1",
                 "--backend", "torch")
    assert result.code == 0 and "example 0" in result.out
