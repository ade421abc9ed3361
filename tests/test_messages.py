"""What a new user reads (#32, "Messages and outputs"): the head `summary` names, `inspect`'s one
layout for ONNX models and CPU and CUDA artifacts, the bundle's launcher and size, a help line
and a default for every option, the exit status the README states, the hint when `--input`
took the model, unknown names after a failed import, where E0501 points, `run`'s header and
labels, the curves' best epoch and learning rate, and no warnings of nindsl's own."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nindsl
from conftest import ROOT, SPECS

DIGITS = SPECS / "nin_digits.nin"


# --- summary: the head ---------------------------------------------------------------------


def test_summary_names_a_head_that_is_an_average_pool_over_the_whole_map():
    from nindsl.language.summary import head_comparison

    imagenet = head_comparison(nindsl.load(SPECS / "nin_imagenet.nin"))  # avgpool(6), flatten(), softmax()
    assert imagenet.startswith("head: `pool4` (avgpool 6×6/6, floor: one window over the whole 6×6 map, so global "
                               "average pooling in effect), `flatten1` and `softmax1` have 0 parameters;"), imagenet
    assert "global average pooling has" not in imagenet
    cifar = head_comparison(nindsl.load(SPECS / "nin_cifar10.nin"))  # global_avgpool()
    assert cifar.startswith("head: global average pooling has 0 parameters; a fully connected classifier")


# --- inspect: one layout -------------------------------------------------------------------

COMMON = ["spec", "parameters", "weights", "input", "output"]
HASH = "f" * 64
MANIFEST = {  # as nindsl 0.1.0 writes them (the keys inspect reads), for an untrained nin_digits
    "format": 1, "nindsl_version": "0.1.0", "tvm_version": "0.27.0.post1", "network": "nin_digits",
    "spec_hash": HASH, "params": {"classes": 10},
    "input": {"name": "image", "shape": ["N", 1, 8, 8], "dtype": "float32"},
    "output": {"name": "probs", "shape": ["N", 10], "dtype": "float32"}, "preprocess": {},
    "parameters": ["mlpconv1.0.weight"], "transform_params": False, "tuning_db": None,
    "weights": "drawn from the spec's init, seed 0",
    "files": {"model.so": HASH, "weights.safetensors": HASH, "model.onnx": HASH}, "precision": "fp32"}
CPU = {"profile": "llvm", "device": "cpu", "cpu_features": ["avx", "avx2", "fma"],
       "target": {"kind": "llvm", "tag": "", "keys": ["cpu"], "num-cores": 2, "mcpu": "emeraldrapids",
                  "mattr": ["-avx512bf16", "-amx-tile"]}}
CUDA = {"profile": "cuda", "device": "cuda", "cpu_features": [],
        "target": {"kind": "cuda", "tag": "", "keys": ["cuda", "gpu"],
                   "host": {"kind": "llvm", "tag": "", "keys": ["cpu"], "mtriple": "x86_64-conda-linux-gnu"},
                   "max_num_threads": 1024, "thread_warp_size": 32, "arch": "sm_80"},
        "gpu_code": {"archs": ["sm_80"], "kernels": 18, "nvcc": "13.0.88"}}


def _artifact(folder: Path, extra: dict) -> Path:
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({**MANIFEST, **extra}))
    return folder


def _rows(text: str) -> dict[str, str]:
    """label → value of each row, labels in order (a row: two spaces, the label, two or more spaces)."""
    return {m[1]: m[2] for m in re.finditer(r"^  (\S+(?: \S+)?) {2,}(.*)$", text, re.M)}


def test_inspect_shows_onnx_models_and_cpu_and_cuda_artifacts_in_one_layout(cli, tmp_path):
    assert cli("compile", DIGITS, "-o", tmp_path / "d.onnx").code == 0
    onnx_text = cli("inspect", tmp_path / "d.onnx").out
    cpu_text = cli("inspect", _artifact(tmp_path / "cpu", CPU)).out
    cuda_text = cli("inspect", _artifact(tmp_path / "cuda", CUDA)).out
    onnx_rows, cpu, cuda = _rows(onnx_text), _rows(cpu_text), _rows(cuda_text)
    for rows in (onnx_rows, cpu, cuda):
        assert list(rows)[:5] == COMMON, rows
        assert rows["weights"] == "drawn from the spec's init, seed 0" and rows["parameters"] == "classes = 10"
        assert rows["input"] == "image [N, 1, 8, 8] float32" and rows["output"] == "probs [N, 10] float32"
    # values start in one column in every description
    columns = {line.index(value) for text, rows in ((onnx_text, onnx_rows), (cpu_text, cpu), (cuda_text, cuda))
               for line, value in zip(text.splitlines()[1:], rows.values())}
    assert len(columns) == 1, columns
    assert onnx_text.startswith(f"{tmp_path / 'd.onnx'}: ONNX model of network `nin_digits`, built by nindsl")
    assert onnx_rows["spec"].endswith("from specs/blocks.nin, specs/nin_digits.nin") or "nin_digits.nin" in \
        onnx_rows["spec"]
    assert onnx_rows["graph"].startswith("opset 17, ")
    assert cuda_text.startswith(f"{tmp_path / 'cuda'}: TVM artifact of network `nin_digits`, built by nindsl 0.1.0 "
                                "with TVM 0.27.0.post1")
    assert cuda["target"] == "NVIDIA GPU sm_80 (CUDA), host code for x86_64 (profile `cuda`)"
    assert cuda["GPU code"] == "18 kernels as machine code for sm_80 (nvcc 13.0.88)"
    assert "CPU features" not in cuda and "{" not in cuda_text and "conda" not in cuda_text
    assert cpu["target"] == ("CPU emeraldrapids, 2 cores, features turned off: avx512bf16, amx-tile "
                             "(profile `llvm`)")
    assert cpu["CPU features"].startswith("avx, avx2, fma (this CPU ") and "GPU code" not in cpu
    assert cpu["precision"] == cuda["precision"] == "fp32, untuned"
    assert cpu["files"] == "model.onnx, model.so, weights.safetensors"
    # a manifest with values of the wrong type is shown, not a crash
    odd = cli("inspect", _artifact(tmp_path / "odd", {**CPU, "target": {"kind": "llvm", "mattr": 3},
                                                      "params": [1], "gpu_code": {"archs": 5}}))
    assert odd.code == 0 and "parameters    ?" in odd.out and "machine code for ?" in odd.out


def test_inspect_help_says_it_reads_artifact_folders(cli, capsys):
    with pytest.raises(SystemExit):
        cli("inspect", "--help")
    assert "artifact folder" in capsys.readouterr().out


# --- the bundle: launcher and size -------------------------------------------------------------


def _launcher(tmp_path: Path) -> Path:
    """The launcher in a folder whose site/ holds a stand-in nindsl that prints its arguments."""
    from nindsl.tvm.deploy.bundle import LAUNCHER

    (tmp_path / "site" / "nindsl").mkdir(parents=True)
    (tmp_path / "site" / "nindsl" / "__init__.py").write_text("")
    (tmp_path / "site" / "nindsl" / "__main__.py").write_text("import sys; print('ran', sys.argv[1:])\n")
    launcher = tmp_path / "nindsl"
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
    return launcher


@pytest.mark.skipif(sys.platform != "linux", reason="a POSIX shell launcher")
def test_the_bundle_launcher_says_what_the_python_it_runs_lacks(tmp_path):
    launcher = _launcher(tmp_path)
    without_numpy = tmp_path / "python-without-numpy"  # this Python, its site-packages (and numpy) left out
    without_numpy.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    without_numpy.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}

    def launch(python: str):
        return subprocess.run([str(launcher), "run", "a b"], env={**env, "PYTHON": python}, capture_output=True,
                              text=True, timeout=60)

    ran = launch(sys.executable)
    assert ran.returncode == 0 and ran.stdout == "ran ['run', 'a b']\n", ran.stderr
    lacking = launch(str(without_numpy))
    assert lacking.returncode == 1 and "Traceback" not in lacking.stderr
    assert lacking.stderr.startswith(f"nindsl: this bundle needs numpy, and {sys.executable}") \
        and "pip install numpy" in lacking.stderr and "set PYTHON" in lacking.stderr, lacking.stderr
    missing = launch("no-such-python3")
    assert missing.returncode == 127 and "there is no `no-such-python3` here" in missing.stderr


@pytest.mark.skipif(shutil.which("du") is None, reason="needs du")
def test_the_bundle_size_is_said_both_ways_and_the_disk_size_is_what_du_says(tmp_path):
    from nindsl.tvm.deploy.bundle import BundleReport, _measured

    folder = tmp_path / "b"
    (folder / "site" / "deep").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"x" * 10_000)
    (folder / "site" / "deep" / "small").write_bytes(b"y" * 3)
    made = _measured(BundleReport(folder, 0, ("a",)))
    assert made.bytes == 10_003 and made.files == 2
    du = subprocess.run(["du", "-s", "-B1", str(folder)], capture_output=True, text=True, check=True)
    assert made.disk_bytes == int(du.stdout.split()[0])


# --- every option: a help line and its default ------------------------------------------------

FLAGS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction, argparse._VersionAction)


def _parsers():
    from nindsl.cli.parser import build_parser

    top = build_parser()
    yield "nindsl", top
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from ((f"nindsl {name}", sub) for name, sub in action.choices.items())


def test_every_option_of_every_command_has_a_help_line_and_shows_its_default():
    lacking = []
    for name, parser in _parsers():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue  # (the options every command repeats from nindsl's own are shown there)
            what = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                lacking.append(f"{what}: no help")
                continue
            default = action.default
            if isinstance(action, FLAGS) or default is None or default == argparse.SUPPRESS:
                continue  # a flag's default is its absence; None: the help says what happens instead
            shown = formatter._expand_help(action)
            if "default" not in shown or str(default) not in shown:
                lacking.append(f"{what}: its default {default!r} is not shown in {shown!r}")
    assert not lacking, "\n".join(lacking)


def test_compile_and_train_help_say_what_the_issue_asked(cli, capsys):
    with pytest.raises(SystemExit):
        cli("compile", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: onnx)" in text and '{"kind": "llvm"' in text and "one whole number from 1 to" in text
    with pytest.raises(SystemExit):
        cli("train", "--help")
    text = " ".join(capsys.readouterr().out.split())
    for words in ("epochs to train (default:", "examples per step", "where the twin trains (default: cpu)",
                  "seed of the initial weights", "the .nin spec"):
        assert words in text, words


# --- exit status: the rule the README states ---------------------------------------------------


def test_exit_status_is_1_for_a_value_nindsl_refuses_and_2_for_what_argparse_cannot_read(cli, capsys):
    result = cli("compile", DIGITS, "--target", "llvmx")
    assert result.code == 1 and result.err.startswith("error[E0504]: unknown target `llvmx`")
    with pytest.raises(SystemExit) as exit:
        cli("compile", DIGITS, "--seed", "x")
    assert exit.value.code == 2 and "usage: nindsl compile" in capsys.readouterr().err
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert ("1 for a mistake nindsl finds in what you gave it, always with an error code: in a spec, a file, or a "
            "command-line value it checks itself (E0504: an unknown `--target`") in readme
    assert "2 when the command line cannot be read at all" in readme


# --- run: --input took the model -------------------------------------------------------------


def test_run_says_when_input_took_the_model(cli, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit:
        cli("run", "--input", tmp_path / "x.npy", tmp_path / "m.onnx", "--top", "2")
    err = capsys.readouterr().err
    assert exit.value.code == 2
    assert "the following arguments are required: model; --input takes every value after it, so it took " \
           f"`{tmp_path / 'm.onnx'}` as one of its values too" in err
    assert f"`nindsl run {tmp_path / 'm.onnx'} --input {tmp_path / 'x.npy'} --top 2`" in err
    with pytest.raises(SystemExit):  # one value: the model really is missing, nothing else to say
        cli("run", "-i", tmp_path / "x.npy")
    assert capsys.readouterr().err.rstrip().endswith("the following arguments are required: model")


# --- diagnostics: a failed import, a checkpoint of another spec --------------------------------


def test_an_unknown_name_after_a_failed_import_says_where_it_would_come_from(cli, tmp_path):
    shutil.copy(DIGITS, tmp_path / "nin_digits.nin")  # copied without blocks.nin, which defines `drop`
    result = cli("check", tmp_path / "nin_digits.nin")
    assert result.code == 1 and "error[E0301]: cannot import `blocks.nin`" in result.err
    unknown = result.err[result.err.index("error[E0106]: unknown name `drop`"):]
    assert "help: `drop` may be defined in `blocks.nin` (" in unknown and "which could not be imported" in unknown
    (tmp_path / "blocks.nin").write_text("let dropp = 0.5\n")  # the import works: a plain typo, no such help
    result = cli("check", tmp_path / "nin_digits.nin")
    assert "could not be imported" not in result.err and "did you mean `dropp`?" in result.err


def test_tensors_a_checkpoint_has_beyond_the_spec_point_at_their_layer_or_name_the_spec():
    from nindsl.kernel.diagnostics import NindslError
    from nindsl.weights import check_weights, resolve

    network = nindsl.load(DIGITS)
    weights = resolve(network, None, 0)
    with pytest.raises(NindslError) as error:  # a third stage of mlpconv2, which has two here
        check_weights(network, {**weights, "mlpconv2.2.weight": np.zeros((64, 64, 1, 1), np.float32)}, "w.npz")
    [diagnostic] = error.value.diagnostics
    assert diagnostic.code == "E0501" and diagnostic.span.line == network.layers[1].span.line
    assert diagnostic.span.line != network.input.span.line
    with pytest.raises(NindslError) as error:  # names of no layer here: no line to blame
        check_weights(network, {**weights, "fc.weight": np.zeros(3, np.float32)}, "w.npz")
    [diagnostic] = error.value.diagnostics
    assert diagnostic.span is None and f"has tensors `{network.sources[0].path}` does not" in diagnostic.message


# --- run: which run, and the labels ------------------------------------------------------------


def test_run_heads_its_output_and_shows_labels_beside_predictions(cli, tmp_path):
    assert cli("compile", DIGITS, "-o", tmp_path / "d.onnx").code == 0
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32))
    np.save(tmp_path / "y.npy", np.array([5, 9, 2]))
    plain = cli("run", tmp_path / "d.onnx", "-i", tmp_path / "x.npy")
    assert plain.err.startswith(f"{tmp_path / 'd.onnx'}: ONNX model on onnxruntime, 3 examples\n")
    assert plain.out.startswith("example 0:") and "label" not in plain.out  # stdout as before
    labelled = cli("run", tmp_path / "d.onnx", "-i", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "--top", "1")
    lines = labelled.out.splitlines()
    tops = [int(line.split(": ")[1].split(" ")[0]) for line in lines[:3]]
    for line, top, label in zip(lines, tops, (5, 9, 2)):
        assert line.endswith(f"; label {label}" + ("" if top == label else ", missed")), line
    right = sum(t == label for t, label in zip(tops, (5, 9, 2)))
    assert lines[3] == f"top-1: {right} of 3 right ({right / 3:.0%})"
    np.save(tmp_path / "two.npy", np.array([1, 2]))
    wrong = cli("run", tmp_path / "d.onnx", "-i", tmp_path / "x.npy", "--labels", tmp_path / "two.npy")
    assert wrong.code == 1 and "holds 2 labels for 3 examples" in wrong.err and "E0503" in wrong.err
    floats = cli("run", tmp_path / "d.onnx", "-i", tmp_path / "x.npy", "--labels", tmp_path / "x.npy")
    assert floats.code == 1 and "labels are whole numbers" in floats.err


# --- curves.png: the best epoch and the learning rate --------------------------------------------


def test_curves_mark_the_best_epoch_and_show_the_learning_rate():
    pytest.importorskip("matplotlib")
    from nindsl.torch.logs import best_epoch, curves_figure

    accuracies = [0.4, 0.7, 0.86, 0.8, 0.86]
    history = [{"epoch": e + 1, "loss": 1 / (e + 1), "acc": a, "val_loss": 1.1 / (e + 1), "val_acc": a,
                "lr": 0.1 if e < 3 else 0.01} for e, a in enumerate(accuracies)]
    assert best_epoch(history)["epoch"] == 3  # the first of equals: what best.safetensors keeps
    figure = curves_figure(history, "t")
    try:
        loss_axis, acc_axis, rate_axis = figure.axes
        texts = [t.get_text() for axis in figure.axes for t in axis.texts]
        assert " best held-out 86.0% " in texts
        for axis in (loss_axis, acc_axis):
            marks = [line for line in axis.lines if line.get_label() == "best: epoch 3"]
            assert len(marks) == 1 and list(marks[0].get_xdata()) == [3, 3]
        assert rate_axis.get_ylabel() == "learning rate" and rate_axis.get_yscale() == "log"
        [rate] = rate_axis.lines
        assert list(rate.get_ydata()) == [0.1, 0.1, 0.1, 0.01, 0.01]
        legend = [t.get_text() for t in rate_axis.get_legend().get_texts()]
        assert legend == ["training", "held-out", "best: epoch 3", "learning rate"]
    finally:
        from nindsl.figures import pyplot

        pyplot().close(figure)


# --- no warnings of nindsl's own ---------------------------------------------------------------


def test_the_first_commands_print_no_python_or_pip_warnings(tmp_path):
    """`check`, `summary`, `compile`, `run` and `inspect` in a fresh interpreter with Python's
    default warning filters (what a user sees): nindsl's own notes only."""
    script = ("import sys; from nindsl.cli import main\n"
              "for argv in sys.argv[1:]:\n"
              "    assert main(argv.split('|')) == 0, argv\n")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 1, 8, 8), np.float32))
    onnx = tmp_path / "d.onnx"
    commands = [f"check|{DIGITS}", f"summary|{DIGITS}", f"compile|{DIGITS}|-o|{onnx}", f"run|{onnx}|-i|{x}",
                f"inspect|{onnx}", f"run|{DIGITS}|-i|{x}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARN")}
    done = subprocess.run([sys.executable, "-c", script, *commands], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert not re.search(r"\w+Warning\b|\bpip\b|DEPRECAT", done.stderr, re.I), done.stderr
