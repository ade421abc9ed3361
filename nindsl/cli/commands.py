"""One function per command: each unpacks the ``argparse.Namespace`` once and calls the
library with typed values (no Namespace goes further). Each returns the exit status."""

from __future__ import annotations

import io
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..kernel.diagnostics import NindslError, did_you_mean
from ..kernel.io import file_kind, rewrite
from ..kernel.outputs import BENCH_RECORDS, NPY, ONNX_MODEL, PICTURE, PNG, TWIN, Output, claim
from ..kernel.machine import free_cpus, usable_cpus
from ..language import load
from ..onnx.model import UNTRAINED, weights_origin
from .inputs import (batch_size, batch_sizes, finite_initializers, finite_outputs, load_input, load_labels,
                     onnx_signature, overrides)
from .printing import ConsoleProgress, print_bench, print_summary, print_top, report, say
from .streams import write_utf8

EXIT_USER = 1

# What each tuning option is for: given where nothing is tuned, it is refused.
TUNING_OPTIONS = {"trials": "is a tuning budget", "max_minutes": "is a tuning time limit",
                  "db": "is the tuning database", "rpc": "measures tuning candidates",
                  "key": "names the device that measures tuning candidates"}


def _refuse_options(args, names, needs: str) -> None:
    """A located error for the first tuning option given where nothing will be tuned."""
    for name in names:
        if getattr(args, name) is not None:
            raise NindslError.one("E0504", f"--{name.replace('_', '-')} {TUNING_OPTIONS[name]}: it needs {needs}",
                                  None)


def _tuning(args):
    """The TuneOptions of ``--trials --max-minutes --db --rpc --key``."""
    from ..tvm.tune.rpc import measuring_runner
    from ..tvm.tune.search import TuneOptions

    return TuneOptions(trials=args.trials, max_minutes=args.max_minutes, db=args.db,
                       runner=measuring_runner(args.rpc, args.key))


# The options that name files or folders a command reads: an output may never replace one.
_INPUTS = ("spec", "model", "run", "artifact", "weights", "input", "labels", "data", "calibrate", "python_wheel")


def _claim(args, *outputs: Output | None):
    """:func:`~nindsl.kernel.outputs.claim` ``outputs`` against the files ``args`` reads."""
    inputs = []
    for name in _INPUTS:
        value = getattr(args, name, None)
        inputs += value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return claim(outputs, inputs)


def _network(args, spec: str | None = None):
    return load(spec or args.spec, overrides(getattr(args, "set", None)))


def drive_check(args) -> int:
    from ..language import check, syntax
    from ..language.elaborate import check_library
    from ..language.parser import parse_file

    failed = 0
    for spec in args.spec:
        try:
            module = parse_file(spec)
            if module.items and not any(isinstance(i, syntax.NetworkDef) for i in module.items):
                check_library(module)
                summary = "library of blocks and constants"
            else:
                network = check(module, overrides(args.set))
                summary = f"{network.name}: {len(network.layers)} layers, {network.total_params:,} parameters"
        except NindslError as error:
            report(error, args.color_on)
            failed += 1
            continue
        if not args.quiet:
            say(f"{spec}: ok ({summary})")  # a file name may hold anything
    return EXIT_USER if failed else 0


def drive_explain(args) -> int:
    from ..kernel.codes import EXPLANATIONS, code_ranges, render_text

    code = args.code.strip().upper()
    if code not in EXPLANATIONS:
        raise NindslError.one("E0504", f"unknown error code `{args.code}`", None,
                              did_you_mean(code, EXPLANATIONS) or f"the codes are {code_ranges()}")
    sys.stdout.write(render_text(code))
    return 0


def drive_summary(args) -> int:
    print_summary(_network(args), wide=args.wide)
    return 0


def drive_draw(args) -> int:
    from ..draw import picture_format, render

    fmt = picture_format(args.output)
    with _claim(args, Output("-o", Path(args.output), PICTURE)) as claimed:
        claimed.write("-o", render(_network(args), fmt, args.dpi))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def drive_import(args) -> int:
    from ..importers import import_model

    made = import_model(args.model, args.output, weights_out=args.weights_out, name=args.name,
                        weights=args.weights, input_shape=args.input_shape)
    print(f"wrote {args.output} ({made.name}: {made.layers} layers, {made.total:,} parameters)"
          + (f" and {args.weights_out}" if args.weights_out else ""), file=sys.stderr)
    return 0


def drive_fmt(args) -> int:
    from ..language.fmt import format_module
    from ..language.parser import parse_file

    unformatted = already = failed = 0
    for spec in args.spec:  # every file is reported, also after one that does not parse
        try:
            module = parse_file(spec)
        except NindslError as error:
            report(error, args.color_on)
            failed += 1
            continue
        text = format_module(module)
        if args.stdout:
            write_utf8(text)  # the spec's own bytes, whatever the terminal's encoding
            continue
        if text == module.source.text:
            already += 1
            continue
        if args.check:
            say(f"{spec}: not formatted", file=sys.stderr)
        else:
            try:
                rewrite(spec, text.encode("utf-8"))
            except NindslError as error:
                report(error, args.color_on)
                failed += 1
                continue
            say(f"formatted {spec}", file=sys.stderr)
        unformatted += 1
    if not args.stdout:
        print(_fmt_tally(unformatted, already, failed, args.check), file=sys.stderr)
    return EXIT_USER if failed or args.check and unformatted else 0


def _fmt_tally(changed: int, already: int, failed: int, check: bool) -> str:
    """`3 files already formatted`, `1 file not formatted, 2 already formatted`, ..."""
    def files(count: int) -> str:
        return f"{count} file{'s' if count != 1 else ''}"

    parts = [f"{files(changed)} {'not formatted' if check else 'formatted'}"] if changed else []
    if already or not (changed or failed):
        parts.append(f"{already if parts else files(already)} already formatted")
    if failed:
        parts.append(f"{failed if parts else files(failed)} with errors (above)")
    return ", ".join(parts)


def drive_lsp(args) -> int:
    try:
        from ..lsp.server import serve
    except ImportError as error:
        if (error.name or "").partition(".")[0] not in ("pygls", "lsprotocol", "cattrs", "attrs"):
            raise
        raise NindslError.one("E0504", "`nindsl lsp` needs pygls", None, "pip install 'nindsl[lsp]'") from None
    return serve()


def drive_compile(args) -> int:
    if not args.tune:  # (--db alone: build from its records, searching nothing)
        _refuse_options(args, [name for name in TUNING_OPTIONS if name != "db"], "--tune")
    if args.precision == "fp32" and (args.calibrate is not None or args.accept_accuracy_loss):
        option = "--calibrate" if args.calibrate is not None else "--accept-accuracy-loss"
        raise NindslError.one("E0504", f"{option} does nothing without --precision int8, bf16 or fp16", None,
                              "add --precision int8, or leave the option out")
    network = _network(args)
    target = args.target
    if args.no_winograd and target in ("onnx", "torch"):
        raise NindslError.one("E0504", f"--no-winograd does nothing with --target {target}", None,
                              "Winograd is for untuned float32 CPU builds (--target llvm): leave --no-winograd out")
    if args.precision != "fp32" and target == "torch":
        raise NindslError.one("E0504", f"--precision {args.precision} does nothing with --target torch: the twin trains "
                                       "in float32", None, "quantize a build instead: --target llvm or onnx")
    if target == "onnx":
        from ..onnx.lower import OPSET, to_onnx
        from ..onnx.model import serialize

        out = Path(args.output or f"{network.name}.onnx")
        if args.precision in ("bf16", "fp16"):
            where = "TVM CPU targets" if args.precision == "bf16" else "TVM CUDA targets"
            raise NindslError.one("E0504", f"--precision {args.precision} is for {where}, not ONNX", None,
                                  "use --precision int8 for a QDQ ONNX model")
        with _claim(args, Output("-o", out, ONNX_MODEL)) as claimed:
            if args.precision == "int8":
                return _compile_qdq(args, network, claimed)
            claimed.write("-o", serialize(to_onnx(network, args.weights, args.seed)))
        print(f"wrote {out} ({network.total_params:,} parameters, opset {OPSET})")
        _warn_if_untrained(weights_origin(args.weights, args.seed))
        return 0
    if target == "torch":
        from ..torch.twin import twin_source

        if args.weights is not None:
            raise NindslError.one("E0504", "--weights does nothing with --target torch: the twin's source holds no "
                                           "weights", None, "load them into it with nindsl.to_torch(network, weights=PATH), "
                                           "or run with `nindsl run SPEC --backend torch --weights PATH`")

        out = Path(args.output or f"{network.name}.py")
        with _claim(args, Output("-o", out, TWIN)) as claimed:
            claimed.write("-o", twin_source(network).encode("utf-8"))
        print(f"wrote {out}")
        return 0
    from ..tvm.deploy.artifact import ARTIFACT, compile_artifact
    from ..tvm.profiles import check_target, load_profile
    from ..tvm.env import require_tvm

    profile = load_profile(target)
    require_tvm()
    check_target(profile)  # before any work: LLVM would build for a generic CPU and say so only in passing
    if args.no_winograd:
        profile = _without_winograd(profile, args)
    if args.precision == "fp16":
        from ..tvm.gpu.half import check_fp16

        check_fp16(profile, args.tune)
    elif args.precision != "fp32":
        from ..tvm.narrow.precision import check_precision

        check_precision(args.precision, profile, args.tune)
    batch = batch_size(args.batch)
    tuning = _tuning(args) if args.tune else None
    if args.db is not None and not args.tune:
        from ..tvm.tune.search import TuneOptions

        if args.precision in ("int8", "bf16"):
            raise NindslError.one("E0504", f"--db without --tune builds fp32 or fp16 kernels from its records; "
                                           f"{args.precision} builds measure their blocks with --tune", None,
                                  "add --tune (the blocks it measured before are reused from --db)")
        tuning = TuneOptions(db=args.db, search=False)
    out = args.output or f"{network.name}-{profile.name}" + (f"-{args.precision}" if args.precision != "fp32" else "")
    origin = weights_origin(args.weights, args.seed)
    with _claim(args, Output("-o", Path(out), ARTIFACT)):  # checked before the build, locked while it runs
        calibration = None
        if args.precision != "fp32":
            from .inputs import calibration as load_calibration

            calibration = load_calibration(network, args.calibrate, args.precision)
        made = compile_artifact(network, profile, out, args.weights, args.seed, batch, tuning, ConsoleProgress(),
                                args.precision, calibration, lambda result: _gate(result, origin, args))
    detail = f", {made.gpu_kernels} GPU kernels" if made.gpu_kernels is not None else ""
    if made.quantized is not None:
        detail += f", {args.precision} on {made.quantized.isa.name}"
    print(f"wrote {made.out}/ for {profile.name} ({profile.device}{detail}) in {made.seconds:.1f} s")
    _warn_if_untrained(origin)
    return 0


def _without_winograd(profile, args):
    """``profile`` with Winograd off, or a refusal where the build would not use it anyway."""
    from dataclasses import replace

    from ..tvm.build import uses_winograd

    where = ("a CUDA target" if profile.device == "cuda" else f"--precision {args.precision}" if args.precision != "fp32"
             else "--db without --tune (records measured elsewhere build direct convolutions)" if not args.tune and args.db
             else "--rpc (the tuned build is kept: its times are the remote machine's, so the untuned template, "
                  "which may use Winograd, is not measured against it)" if args.tune and args.rpc else
             f"profile `{profile.name}`, whose untuned builds do not take nindsl's template or Winograd"
             if not uses_winograd(profile) else None)
    if where is not None:
        raise NindslError.one("E0504", f"--no-winograd does nothing with {where}", None,
                              "Winograd is for CPU float32 builds, untuned or the template a --tune here measures: "
                              "leave --no-winograd out")
    return replace(profile, schedule=replace(profile.schedule, winograd=False))


def _gate(result, origin: str, args) -> None:
    """Print how the int8, bf16 or fp16 build compares with float32, and refuse one that loses too much
    (trained weights only: untrained outputs are noise, their top class a coin toss)."""
    from ..onnx.quantize import judge

    say(f"{args.precision}: {result.describe()}", file=sys.stderr)
    if origin.startswith(UNTRAINED):
        say("note: untrained weights: nindsl's accuracy limits apply to trained ones", file=sys.stderr)
        return
    verdict, why = judge(result, args.precision)
    if verdict == "refuse" and not args.accept_accuracy_loss:
        raise NindslError.one("E0401", why, None, "calibrate on more representative images (--calibrate), or "
                                                  "write it anyway with --accept-accuracy-loss")
    if verdict != "ok":
        say(f"warning: {why}", file=sys.stderr)


def _compile_qdq(args, network, claimed) -> int:
    """``--target onnx --precision int8``: the quantized network as a QDQ ONNX model."""
    from ..onnx.lower import to_onnx
    from ..onnx.model import serialize
    from ..onnx.quantize import PAIRED_WEIGHT_LEVELS, agreement, images_per_batch, in_batches, quantize, to_qdq
    from ..onnx.runtime import runner
    from ..weights import resolve
    from .inputs import calibration as load_calibration

    data = load_calibration(network, args.calibrate)
    model = to_onnx(network, resolve(network, args.weights, args.seed))
    # weights within ±63: exact on every x86 int8 path (ONNX Runtime's reduce_range advice for CPUs without VNNI)
    qdq = to_qdq(model, quantize(model, data.images, PAIRED_WEIGHT_LEVELS))
    origin = weights_origin(args.weights, args.seed)
    batch = images_per_batch(model)
    _gate(agreement(in_batches(runner(model), data.held_out, batch), in_batches(runner(qdq), data.held_out, batch),
                    data.labels), origin, args)
    claimed.write("-o", serialize(qdq))
    print(f"wrote {claimed.path('-o')} (int8 QDQ, calibrated on {len(data.images):,} images from {data.source})")
    _warn_if_untrained(origin)
    return 0


def _check_backend(backend: str, known: tuple[str, ...]) -> None:
    if backend not in known:
        raise NindslError.one("E0504", f"unknown backend `{backend}` for this model", None,
                              did_you_mean(backend, known) or f"use one of: {', '.join(known)}")


def _recorded_preprocess(model, path: Path) -> dict:
    """How a model's images are prepared (resize, mean, std), as its ONNX metadata records it (checked)."""
    from ..onnx.model import recorded_preprocess

    return recorded_preprocess(model, path)


def _artifact_preprocess(artifact, folder: Path, inputs: list[str]) -> dict:
    """The same for an artifact folder: its manifest's, else (built before it recorded them) its
    model.onnx's, read only when images are given."""
    images = not (len(inputs) == 1 and inputs[0].lower().endswith(".npy"))
    if "preprocess" in artifact.manifest or not images or not (folder / "model.onnx").is_file():
        return artifact.manifest.get("preprocess", {})
    from ..onnx.model import read_model

    return _recorded_preprocess(read_model(folder / "model.onnx"), folder / "model.onnx")


def _warn_if_untrained(origin: str | None) -> None:
    """A model with its initial weights computes noise: say so (its outputs look like answers)."""
    if origin and origin.startswith(UNTRAINED):
        say(f"note: these weights are {origin}: untrained, so the outputs mean nothing yet; pass --weights "
            "with a checkpoint (nindsl train writes one)", file=sys.stderr)


def _warn_if_reference_errs(model) -> None:
    """ONNX's reference evaluator gets some ceil-mode pools wrong: say so before its outputs."""
    from ..onnx.runtime import reference_faults

    faults = reference_faults(model)
    if faults:
        import onnx

        say(f"warning: onnx {onnx.__version__}'s reference evaluator computes {'; '.join(faults)} "
            "differently from ONNX Runtime, PyTorch and Caffe, so these outputs are not the model's; "
            "use --backend onnxruntime", file=sys.stderr)


def _is_onnx(path: Path) -> bool:
    """Read as an ONNX model: by content, or by name unless the content is text (a spec)."""
    kind = file_kind(path)
    return kind == "onnx" or path.suffix.lower() == ".onnx" and kind not in ("nin", "text")


def drive_run(args) -> int:
    output = Output("-o", Path(args.output), NPY) if args.output else None
    with _claim(args, output) as claimed:  # checked before the run
        outputs = _run(args)
        if output:
            buffer = io.BytesIO()
            np.save(buffer, outputs)
            claimed.write("-o", buffer.getvalue())
    if output:
        print(f"saved outputs [{', '.join(map(str, outputs.shape))}] to {args.output}", file=sys.stderr)
    return 0


def _run(args) -> np.ndarray:
    """Run the batch through the model ``args`` names and print its top classes; return the outputs."""
    source = Path(args.model)
    backend = args.backend
    if args.threads is not None and backend != "torch":
        raise NindslError.one("E0504", "--threads sets PyTorch's threads: it needs --backend torch", None)
    if source.is_dir():
        from ..tvm.deploy.artifact import Artifact
        from ..tvm.env import runtime_only

        if getattr(args, "one_command", False):  # (this process runs nothing else: no compiler needed later)
            runtime_only()  # an artifact needs TVM's runtime only: a fifth of the import time
        artifact = Artifact(source)
        batch = load_input(args.input, artifact.input_name, tuple(artifact.input_shape),
                           _artifact_preprocess(artifact, source, args.input), "compile the spec again without --batch")
        labels = load_labels(args.labels, len(batch))
        what = f"TVM build for `{artifact.manifest.get('profile')}` ({artifact.manifest.get('device')})"
        outputs = artifact(batch)
        origin = artifact.manifest.get("weights")
    elif _is_onnx(source):
        from ..onnx.model import model_metadata, read_model
        from ..onnx.runtime import BACKENDS, run

        model = read_model(source)
        backend = backend or "onnxruntime"
        _check_backend(backend, BACKENDS)
        finite_initializers(model, source)
        if backend == "reference":
            _warn_if_reference_errs(model)
        batch = load_input(args.input, *onnx_signature(model), _recorded_preprocess(model, source))
        labels = load_labels(args.labels, len(batch))
        what = f"ONNX model on {backend}"
        outputs = run(model, batch, backend)
        origin = model_metadata(model).get("weights")
    else:
        from ..engines import SPEC_ENGINES, prepare
        from ..onnx.lower import lower

        network = _network(args, str(source))
        batch = load_input(args.input, network.input.name, network.input.shape, network.train.preprocess)
        labels = load_labels(args.labels, len(batch))
        backend = backend or "onnxruntime"
        what = f"spec on {backend}"
        _check_backend(backend, SPEC_ENGINES)
        weights = lower(network, args.weights, args.seed)  # once: the engine takes it as it is
        if backend == "reference":
            _warn_if_reference_errs(weights.model)
        threads = (args.threads or free_cpus()) if backend == "torch" else None
        outputs = prepare(backend, network, weights, threads=threads)(batch)
        origin = weights_origin(args.weights, args.seed)
    finite_outputs(outputs, what)
    say(f"{source}: {what}, {len(batch)} example{'s' if len(batch) != 1 else ''}", file=sys.stderr)
    sys.stderr.flush()  # (before the predictions, where both go to one terminal)
    print_top(outputs, args.top, labels)
    _warn_if_untrained(origin)
    return outputs


def drive_inspect(args) -> int:
    from .inspection import describe_artifact, describe_onnx

    model = Path(args.model)
    say((describe_artifact(model) if model.is_dir() else describe_onnx(model)).text())
    return 0


def drive_bench(args) -> int:
    from ..bench import ENGINES, BenchOptions, bench, chart

    network = _network(args)
    engines = tuple(e.strip() for e in args.engines.split(",")) if args.engines else ENGINES
    tuned = "tvm-tuned" in engines
    narrow_tuned = any(e in engines for e in ("tvm-int8-tuned", "tvm-bf16-tuned"))
    if not tuned:  # (--key alone is explained by measuring_runner)
        _refuse_options(args, ("rpc", "trials", "max_minutes"), "the tvm-tuned engine")
        if not narrow_tuned:  # which keep their measured blocks in the same folder
            _refuse_options(args, ("db",), "a tuned engine (tvm-tuned, tvm-int8-tuned, tvm-bf16-tuned)")
    tuning = _tuning(args) if tuned or args.key or (narrow_tuned and args.db) else None
    options = BenchOptions(batch_sizes(args.batch), engines, args.target, args.rounds, tuning)
    with _claim(args, Output("--json", Path(args.json), BENCH_RECORDS) if args.json else None,
                Output("--plot", Path(args.plot), PNG) if args.plot else None) as claimed:  # before the timing
        records, peak = bench(network, options, ConsoleProgress(quiet=args.quiet))
        print_bench(records, peak, network)
        if args.json:
            payload = [{**{k: (None if v != v else v) for k, v in asdict(r).items()}, "network": network.name,
                        "spec_hash": network.spec_hash, "peak_gflops": peak, "cores": usable_cpus()} for r in records]
            claimed.write("--json", (json.dumps(payload, indent=2) + "\n").encode())
        if args.plot:
            claimed.write("--plot", chart(records, f"{network.name} on {usable_cpus()} cores"))
    return 0


def drive_tune(args) -> int:
    from ..tvm.env import require_tvm
    from ..tvm.profiles import check_target, load_profile

    if args.candidates is not None and not args.kit:
        raise NindslError.one("E0504", "--candidates sizes a kit's round: it needs --kit", None)
    if args.python_wheel and not args.kit:
        raise NindslError.one("E0504", "--python-wheel goes into a kit: it needs --kit", None)
    if args.precision != "fp32" and not args.kit:
        raise NindslError.one("E0504", f"--precision {args.precision} kernels are tuned through a kit: it needs --kit",
                              None, "the --results of an fp16 kit go into the same database as fp32 ones")
    if args.kit or args.results:
        for name in ("trials", "max_minutes", "rpc", "key"):
            if getattr(args, name) is not None:
                raise NindslError.one("E0504", f"--{name.replace('_', '-')} is for tuning here or over RPC; a kit's "
                                               "round is sized by --candidates", None)
    network = _network(args)
    profile = load_profile(args.target)
    require_tvm()
    check_target(profile)
    batch = batch_size(args.batch) or 1
    if args.results:
        return _record_results(args, network, profile)
    if args.kit:
        from ..tvm.deploy.kit import KIT, write_kit

        with _claim(args, Output("--kit", Path(args.kit), KIT)):
            made = write_kit(network, profile, batch, args.kit, args.db, args.candidates or 32, args.precision,
                             wheels=[Path(w) for w in args.python_wheel or ()], progress=ConsoleProgress())
        print(f"wrote {made.out}/: {made.candidates:,} candidates of {made.tasks} tasks for {profile.name}, "
              f"{made.bytes / 2**20:.1f} MiB, in {made.seconds:.0f} s. On the target machine run {made.out}/measure, "
              f"then here: nindsl tune {args.spec} --target {args.target} --results {made.out}/results.json"
              + (f" --db {args.db}" if args.db else ""))
        return 0
    from ..tvm.tune.search import tune

    _, folder = tune(network, profile, batch, _tuning(args), progress=ConsoleProgress())
    print(f"tuned {network.name} for {profile.name} at batch {batch}: records in {folder}")
    return 0


def _record_results(args, network, profile) -> int:
    from ..tvm.deploy.kit import check_kit_matches, read_results
    from ..tvm.tune.kit import record
    from ..tvm.tune.search import cache_root

    kit, manifest, results = read_results(args.results)
    check_kit_matches(manifest, network, profile, kit)
    made = record(kit, manifest, results, profile, args.db)
    machine = results.get("machine", {}).get("device") if isinstance(results.get("machine"), dict) else None
    print(f"recorded {made.timed:,} candidates timed on {machine or 'the target'}"
          + (f", {made.failed:,} that failed there" if made.failed else "")
          + (f"; {made.missing:,} have no result" if made.missing else "")
          + f", in {made.database}. Build from them with: nindsl compile {args.spec} --target {args.target} "
          f"--batch {manifest.get('batch')} --db {args.db or cache_root() / 'tuning'}"
          + (f" --precision {manifest['precision']}" if manifest.get("precision", "fp32") != "fp32" else ""))
    return 0


def drive_bundle(args) -> int:
    from ..tvm.deploy.bundle import BUNDLE, bundle

    with _claim(args, Output("-o", Path(args.output), BUNDLE)):  # never over one of its own artifacts
        made = bundle(args.artifact, args.output, args.python_wheel or ())
    print(f"wrote {made.out}/ ({', '.join(made.artifacts)} and TVM's runtime): {made.files:,} files, "
          f"{made.bytes:,} bytes ({made.bytes / 2**20:.1f} MiB); {made.disk_bytes / 2**20:.1f} MiB on disk, as du "
          f"counts it (whole blocks, folders too). Run with {made.out}/nindsl run "
          f"{made.out}/artifacts/{made.artifacts[0]} --input ... (needs Python 3 with numpy)")
    return 0


def drive_rpc(args) -> int:
    from ..tvm.tune.rpc import launch

    status = launch(args.role, args.host, args.port, args.tracker, args.key, ConsoleProgress())
    return 0 if status == 0 else EXIT_USER  # TVM said why it stopped


def drive_train(args) -> int:
    from ..torch.training import TrainOptions, train

    network = _network(args)
    options = TrainOptions(data=args.data, epochs=args.epochs, batch=args.batch, out=args.out, resume=args.resume,
                           device=args.device, seed=args.seed, patience=args.patience, threads=args.threads)
    result = train(network, options, ConsoleProgress(quiet=args.quiet))
    if result["rank"] == 0 and result["trained"]:
        best = result["best_val_acc"]
        score = f"best held-out accuracy {best:.2%} (epoch {result['best_epoch']})" if best is not None else \
            "no held-out examples"
        trained, first = result["trained"], result["first_epoch"]
        which = f"epoch{'s' if trained > 1 else ''} {first}" + (f"–{first + trained - 1}" if trained > 1 else "")
        print(f"trained {network.name} for {trained} epoch{'s' if trained > 1 else ''} ({which} of "
              f"{result['epochs']}) in {result['wall_s']:.1f} s; {score}; "
              f"weights: {Path(result['out']) / 'best.safetensors'}")
    return 0


def drive_plot(args) -> int:
    from ..torch.logs import curves_png, read_history

    folder = Path(args.run) if Path(args.run).is_dir() else Path(args.run).parent
    out = Path(args.output) if args.output else folder / "curves.png"
    with _claim(args, Output("-o", out, PNG)) as claimed:
        name, history = read_history(Path(args.run))
        claimed.write("-o", curves_png(history, f"{name or folder.name}: {len(history)} epochs"))
    print(f"wrote {out}")
    return 0
