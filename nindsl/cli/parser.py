"""The command line's grammar: one subparser per command, each bound to its function in
:mod:`nindsl.cli.commands`. :data:`COMMANDS` lists them in the order `--help` shows them;
each command's arguments are added by a function of its own."""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
from typing import Callable, NamedTuple

from ..kernel.limits import MAX_DIM, MAX_SEED, MAX_THREADS_PER_CPU
from ..kernel.machine import max_threads
from ..kernel.version import __version__
from ..language.ir import TrainConfig
from . import commands

PRECISIONS = ("fp32", "int8", "bf16", "fp16")


def positive(kind: type):
    """An argparse type: a number above zero (argparse reports anything else as a usage error)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:  # `not > 0` also refuses NaN
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got `{text}`")
        return value

    return parse


def at_least_zero(text: str) -> int:
    """An argparse type: a whole number of 0 or more."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of 0 or more, got `{text}`")
    return value


def training_seed(text: str) -> int:
    """An argparse type: a seed PyTorch's generators take too, 0 to limits.MAX_SEED (numpy's take any)."""
    value = at_least_zero(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"`{text}` is over the largest seed training takes, {MAX_SEED:,} "
                                         "(2^63 - 1: PyTorch's generators stop at 64 bits)")
    return value


def thread_count(text: str) -> int:
    """An argparse type: threads for one process, 1 to a few per usable CPU (limits.MAX_THREADS_PER_CPU)."""
    value = positive(int)(text)
    if value > max_threads():
        raise argparse.ArgumentTypeError(f"{value:,} threads is more than this machine can use; the most is "
                                         f"{max_threads()} ({MAX_THREADS_PER_CPU} per usable CPU)")
    return value


def _image_shape(text: str) -> tuple[int, int, int]:
    parts = text.replace("x", ",").split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not C,H,W (three positive integers, e.g. 3,32,32)")
    return tuple(int(p) for p in parts)


class Parser(argparse.ArgumentParser):
    """argparse's parser, with one more thing said: when a required positional argument is
    missing because an option that takes several values took it (`nindsl run --input x.npy
    MODEL`: --input took MODEL), the error says so and how to write the command."""

    _given: list[str] = []

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)  # (a subcommand's parser gets its own part)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        if "the following arguments are required" in message:
            message += _swallowed(self, self._given)
        super().error(message)


def _swallowed(parser: argparse.ArgumentParser, given: list[str]) -> str:
    """Why a positional argument is missing when an option that takes several values took it."""
    for action in parser._actions:
        if action.nargs not in ("+", "*") or not action.option_strings:
            continue
        for index, word in enumerate(given):
            if word not in action.option_strings:
                continue
            values = list(itertools.takewhile(lambda w: not w.startswith("-"), given[index + 1:]))
            if len(values) < 2:
                continue
            taken = values[-1]
            rest = given[:index + len(values)] + given[index + 1 + len(values):]
            fixed = " ".join(shlex.quote(w) for w in [taken, *rest])
            return (f"; {word} takes every value after it, so it took `{taken}` as one of its values too. "
                    f"Put it before {word}: `{parser.prog} {fixed}` (or end {word}'s values with --)")
    return ""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nindsl", description="Check, lower, compile, train and benchmark "
                                                                "Network-in-Network specs (.nin).",
                                     epilog="Every error has a code such as E0203: `nindsl explain E0203` says "
                                            "what it means and how to fix it.")
    parser.add_argument("--version", action="version", version=f"nindsl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colour diagnostics: auto colours a terminal unless NO_COLOR is set (default: auto)")
    # the same options after the command name (`nindsl check --debug x.nin`)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--color", choices=("auto", "always", "never"), default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = subcommands.add_parser(command.name, help=command.help, description=command.help, parents=[common])
        sub.set_defaults(func=command.run)
        command.arguments(sub)
    return parser


class Command(NamedTuple):
    """A subcommand: its name, the ``drive_*`` function that runs it, the function that adds
    its arguments, and its one line of help."""

    name: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None]
    help: str


# --- options shared by several commands ---------------------------------------------------


def _rpc_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--rpc", metavar="HOST:PORT", help="TVM: measure tuning candidates on the devices "
                     "registered with this RPC tracker")
    sub.add_argument("--key", help="TVM: with --rpc, the device key to measure on")


def _tuning_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--trials", type=positive(int), metavar="N",
                     help="TVM: tuning trials in all (default: the profile's trials_per_task per task)")
    sub.add_argument("--max-minutes", type=positive(float), metavar="M",
                     help="TVM: tuning time limit, shared among the tasks by their trials "
                          "(default: the profile's max_minutes)")
    sub.add_argument("--db", metavar="DIR", help="TVM: tuning database folder (default: ~/.cache/nindsl/tuning/); "
                     "compile without --tune builds from its records as they are")


def _with_set(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--set", action="append", metavar="NAME=VALUE",
                     help="override a network parameter, e.g. --set classes=100 (repeatable)")


# --- each command's arguments ---------------------------------------------------------------


def _check_arguments(check: argparse.ArgumentParser) -> None:
    check.add_argument("spec", nargs="+", help=".nin specs, or files of blocks and constants that specs import")
    check.add_argument("-q", "--quiet", action="store_true", help="print nothing for the specs that are fine")
    _with_set(check)


def _explain_arguments(explain: argparse.ArgumentParser) -> None:
    explain.add_argument("code", help="an error code, e.g. E0203")


def _summary_arguments(summary: argparse.ArgumentParser) -> None:
    summary.add_argument("spec", help="the .nin spec")
    summary.add_argument("--wide", action="store_true", help="show every convolution of each mlpconv")
    _with_set(summary)


def _draw_arguments(draw: argparse.ArgumentParser) -> None:
    draw.add_argument("spec", help="the .nin spec")
    draw.add_argument("-o", "--output", required=True, help="the picture: .png, .svg or .pdf")
    draw.add_argument("--dpi", type=positive(int), default=200, help="PNG resolution, dots per inch (default: 200)")
    _with_set(draw)


def _import_arguments(imports: argparse.ArgumentParser) -> None:
    imports.add_argument("model", help="an .onnx file (opset 11 or later), or a Caffe .prototxt")
    imports.add_argument("-o", "--output", required=True, help="the spec to write (.nin)")
    imports.add_argument("--weights", metavar="FROM.caffemodel", help="a Caffe prototxt's trained weights")
    imports.add_argument("--input-shape", metavar="C,H,W", type=_image_shape,
                         help="the input of a Caffe net whose Data layer reads it from its data set")
    imports.add_argument("--weights-out", metavar="W.safetensors", help="also write the model's weights")
    imports.add_argument("--name", help="the network's name (default: from the file name)")


def _fmt_arguments(fmt: argparse.ArgumentParser) -> None:
    fmt.add_argument("spec", nargs="+", help=".nin files, rewritten in place")
    mode = fmt.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only report files that are not formatted")
    mode.add_argument("--stdout", action="store_true", help="print instead of rewriting")


def _lsp_arguments(lsp: argparse.ArgumentParser) -> None:
    lsp.add_argument("--stdio", action="store_true", help="accepted for editors that pass it (stdio is the only "
                     "transport)")


def _compile_arguments(compile_: argparse.ArgumentParser) -> None:
    compile_.add_argument("spec", help="the .nin spec")
    compile_.add_argument("--target", "-t", default="onnx",
                          help="onnx (an .onnx file) | torch (the PyTorch twin, a .py file) | a TVM build: llvm, "
                               "cuda, h100, h200 (profiles in backends/), a profile .toml, or a TVM target as a JSON "
                               "table, e.g. '{\"kind\": \"llvm\", \"mcpu\": \"skylake-avx512\"}' "
                               "(default: onnx)")
    compile_.add_argument("-o", "--output", help="output file (onnx, torch) or artifact folder (TVM) (default: "
                          "NETWORK.onnx, NETWORK.py, or NETWORK-PROFILE, with -PRECISION but for fp32)")
    compile_.add_argument("--weights", help="a checkpoint (safetensors or .npz, or a `nindsl train` folder) "
                          "(default: untrained weights drawn from the spec's init with --seed)")
    compile_.add_argument("--seed", type=at_least_zero, default=0,
                          help="seed for weights drawn from the spec's init, without --weights (default: 0)")
    compile_.add_argument("--batch", metavar="N", help="TVM: build for exactly N images per run, one whole number "
                          f"from 1 to {MAX_DIM:,} (default: a build that takes any batch size; --tune tunes at 1)")
    compile_.add_argument("--tune", action="store_true",
                          help="TVM: auto-tune with MetaSchedule (on a CPU, then time each 3×3/5×5 layer's forms and "
                               "the tuned build against the untuned template, and keep the faster)")
    compile_.add_argument("--no-winograd", action="store_true",
                          help="TVM CPU, float32: every convolution direct (by default stride-1 3×3 and 5×5 "
                               "layers take Winograd's fewer multiplications where nindsl's rule says; the profile's "
                               "`winograd = false` does the same). With --tune, the untuned template that the tuned "
                               "build is measured against is direct too, and no layer's forms are timed")
    compile_.add_argument("--precision", choices=PRECISIONS, default="fp32",
                          help="fp32 | int8: post-training quantization, calibrated with --calibrate "
                               "(onnx: a QDQ model; llvm: nindsl's integer kernels) | bf16: llvm targets with "
                               "AVX512-BF16 (refused elsewhere, with what the CPU runs instead) | fp16: CUDA targets, "
                               "on tensor cores (default: fp32)")
    compile_.add_argument("--calibrate", metavar="DATA",
                          help="int8: images to calibrate on and to compare with float32 (bf16, fp16: to "
                               "compare with): digits | cifar10:DIR | "
                               "imagefolder:DIR | FILE.npz | random (default: the spec's train data)")
    compile_.add_argument("--accept-accuracy-loss", action="store_true",
                          help="int8, bf16, fp16: write the build even when it loses more accuracy than nindsl allows "
                               "(docs/precision.md)")
    _tuning_options(compile_)
    _rpc_options(compile_)
    _with_set(compile_)


def _run_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("model", help="a .nin spec, a .onnx file or an artifact folder")
    run.add_argument("--input", "-i", required=True, nargs="+", metavar="INPUT",
                     help="one .npy array, or image files (png, jpg, ...); it takes every path after it, so give "
                          "the model first")
    run.add_argument("--labels", metavar="LABELS.npy", help="each example's class (a .npy of whole numbers, one per "
                     "example), shown beside its predictions with the top-1 count")
    run.add_argument("--backend", default=None,
                     help="a spec: onnxruntime | reference | torch | tvm-untuned and the other engines of `bench`; an "
                          ".onnx file: onnxruntime | reference (default: onnxruntime; an artifact runs on its own "
                          "device)")
    run.add_argument("--output", "-o", help="save the raw outputs as .npy")
    run.add_argument("--weights", help="with a spec: a checkpoint to run with (default: untrained weights drawn from "
                     "the spec's init with --seed)")
    run.add_argument("--seed", type=at_least_zero, default=0,
                     help="with a spec and no --weights: the seed of the weights drawn from its init (default: 0)")
    run.add_argument("--top", type=positive(int), default=3, help="classes to print per example (default: 3)")
    run.add_argument("--threads", type=thread_count, metavar="N",
                     help="with --backend torch: PyTorch's threads (default: the cores no other work keeps busy)")
    _with_set(run)


def _inspect_arguments(inspect: argparse.ArgumentParser) -> None:
    inspect.add_argument("model", help="an .onnx file or an artifact folder (what `nindsl compile` wrote)")


def _train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("spec", help="the .nin spec; its `train` section says how (optimizer, schedule, data, ...)")
    train.add_argument("--data", help="digits | cifar10:FOLDER | cifar100:FOLDER | imagefolder:FOLDER | FILE.npz "
                                      "(default: the spec's)")
    train.add_argument("--epochs", type=positive(int), metavar="N",
                       help=f"epochs to train (default: the spec's `epochs`, else {TrainConfig.epochs})")
    train.add_argument("--batch", type=positive(int), metavar="N",
                       help="examples per step, over all processes (default: the spec's `batch`, else nindsl's "
                            "default for the data set)")
    train.add_argument("--out", default=None, help="output folder (default: runs/NETWORK)")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    train.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                       help="where the twin trains (default: cpu)")
    train.add_argument("--seed", type=training_seed, metavar="N",
                       help="seed of the initial weights, shuffling, dropout and augmentation (default: the spec's "
                            f"`seed`, else {TrainConfig.seed})")
    train.add_argument("--patience", type=at_least_zero, metavar="N",
                       help="stop after N epochs without a better held-out accuracy (0: never; default: the spec's)")
    train.add_argument("--threads", type=thread_count, metavar="N",
                       help="PyTorch threads per process (default: the cores no other work keeps busy)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _with_set(train)


def _plot_arguments(plot: argparse.ArgumentParser) -> None:
    plot.add_argument("run", help="the --out folder of `nindsl train` (or its metrics.json)")
    plot.add_argument("-o", "--output", help="PNG to write (default: RUN/curves.png)")


def _bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("spec", help="the .nin spec (timed with weights drawn from its init)")
    bench.add_argument("--target", default="llvm", help="TVM target profile (default: llvm)")
    bench.add_argument("--batch", default="1,64", help="comma-separated batch sizes (default: 1,64)")
    bench.add_argument("--engines", help="comma-separated engines (default: onnxruntime, onnxruntime-int8, openvino, "
                       "openvino-fp32, openvino-int8, torch, tvm-untuned, tvm-tuned, tvm-int8; also tvm-int8-tuned, "
                       "tvm-bf16, tvm-bf16-tuned, and on a CUDA --target tvm-fp16, torch-fp16)")
    bench.add_argument("--rounds", "--repeats", dest="rounds", type=positive(int), default=20, metavar="N",
                       help="interleaved timing rounds per batch size (default: 20)")
    _tuning_options(bench)  # used when tvm-tuned must tune first
    bench.add_argument("--json", help="write the records as JSON here")
    bench.add_argument("--plot", help="write a PNG of latency per engine and batch size here")
    bench.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _rpc_options(bench)
    _with_set(bench)


def _tune_arguments(tune: argparse.ArgumentParser) -> None:
    tune.add_argument("spec", help="the .nin spec")
    tune.add_argument("--target", "-t", default="llvm",
                      help="a TVM target profile (llvm, cuda, h100, h200, a .toml) or a TVM target as a JSON table "
                           "(default: llvm)")
    tune.add_argument("--batch", metavar="N", help="the batch size to tune for (default: 1)")
    step = tune.add_mutually_exclusive_group()
    step.add_argument("--kit", metavar="DIR", help="write a measurement kit: one round of candidates compiled here, "
                      "and DIR/measure to time them on the target machine (no GPU or TVM compiler needed there)")
    step.add_argument("--results", metavar="RESULTS.json", help="record the times a kit's measure program wrote "
                      "(KIT/results.json) in the tuning database")
    tune.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                      help="with --kit: the kernels of an fp32 build, or of an fp16 CUDA build (tensor cores) "
                           "(default: fp32)")
    tune.add_argument("--candidates", type=positive(int), metavar="N",
                      help="with --kit: candidates per task in the round (default: 32)")
    tune.add_argument("--python-wheel", action="append", metavar="WHEEL",
                      help="with --kit: a wheel of tvm_ffi for the target machine's Python, used instead of this "
                           "interpreter's (repeatable)")
    _tuning_options(tune)
    _rpc_options(tune)
    _with_set(tune)


def _bundle_arguments(bundle: argparse.ArgumentParser) -> None:
    bundle.add_argument("artifact", nargs="+", help="artifact folders (from nindsl compile --target llvm|cuda|...)")
    bundle.add_argument("-o", "--output", required=True, help="the folder to write")
    bundle.add_argument("--python-wheel", action="append", metavar="WHEEL",
                        help="a wheel of tvm_ffi or safetensors for the target's Python, used instead of this "
                             "interpreter's (repeatable)")


def _rpc_arguments(rpc: argparse.ArgumentParser) -> None:
    rpc.add_argument("role", choices=("tracker", "server"),
                     help="tracker: where servers register and tuning asks for them; server: a device that measures")
    rpc.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    rpc.add_argument("--port", type=int, help="port (default: 9190 for a tracker, 9090 for a server)")
    rpc.add_argument("--tracker", help="server: the tracker's HOST:PORT")
    rpc.add_argument("--key", help="server: the device key it registers under")


COMMANDS: tuple[Command, ...] = (
    Command("check", commands.drive_check, _check_arguments,
            "check specs: exit 0 when clean, diagnostics on stderr"),
    Command("explain", commands.drive_explain, _explain_arguments,
            "what an error code means, with an example and a fix"),
    Command("summary", commands.drive_summary, _summary_arguments,
            "a table of layers, shapes, parameters and multiply-adds"),
    Command("draw", commands.drive_draw, _draw_arguments,
            "a picture of the network: each layer with its output shape and parameters, mlpconv stages grouped, the "
            "head marked"),
    Command("import", commands.drive_import, _import_arguments,
            "write a .nin spec (and its weights) from an ONNX model or a Caffe prototxt"),
    Command("fmt", commands.drive_fmt, _fmt_arguments,
            "rewrite specs in canonical layout (comments kept)"),
    Command("lsp", commands.drive_lsp, _lsp_arguments,
            "run the language server on stdin/stdout (for editors: diagnostics, hover with shapes, go to definition, "
            "completion, formatting)"),
    Command("compile", commands.drive_compile, _compile_arguments,
            "lower a spec to ONNX or a PyTorch twin, or build it with TVM"),
    Command("run", commands.drive_run, _run_arguments,
            "run one batch through a spec, an .onnx model or a TVM artifact"),
    Command("inspect", commands.drive_inspect, _inspect_arguments,
            "say what spec, version, weights and target an .onnx file or an artifact folder was built from"),
    Command("train", commands.drive_train, _train_arguments,
            "train the spec's PyTorch twin as its `train` section says"),
    Command("plot", commands.drive_plot, _plot_arguments,
            "draw a training run's loss and accuracy against epochs"),
    Command("bench", commands.drive_bench, _bench_arguments,
            "time ONNX Runtime, the PyTorch twin and TVM (untuned, tuned) side by side"),
    Command("tune", commands.drive_tune, _tune_arguments,
            "auto-tune a TVM target into the tuning database: here, over RPC, or with a measurement kit carried to "
            "a machine this one cannot reach (--kit, then --results)"),
    Command("bundle", commands.drive_bundle, _bundle_arguments,
            "a self-contained runtime-only folder of artifacts: TVM's runtime without its compiler, nindsl, and a "
            "launcher"),
    Command("rpc", commands.drive_rpc, _rpc_arguments,
            "start a TVM RPC tracker or server for tuning on other devices (loopback only unless --host)"),
)
