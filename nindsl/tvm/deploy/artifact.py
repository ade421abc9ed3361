"""The artifact folder: writing it, verifying it, and running it on its device.

An artifact is a folder, written atomically::

    model.so            the exported library (native code: see "Trust" below)
    weights.safetensors the weights, passed to the library at run time
    model.onnx          the ONNX model it was built from
    manifest.json       spec hash, names, shapes, target, versions, file hashes

Trust: loading a library runs its native code. :class:`Artifact` loads ``model.so`` only
when its sha256 equals the manifest's, the manifest's TVM version is the running one, and
the target's device is present; it refuses anything else before loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...kernel import limits
from ...kernel.diagnostics import NindslError
from ...kernel.io import atomic_directory, regular_file
from ...kernel.outputs import listed_folder
from ...kernel.machine import missing_cpu_features
from ...kernel.progress import SILENT, Progress
from ...kernel.version import __version__
from ...language import ir
from ...language.ir import format_shape, shape_fits
from ...language.train_section import preprocess_mistake
from ..build import Build, build, template_build
from ..env import require_tvm, require_tvm_runtime
from ..compat import refusal_summary, refuses_arguments
from ..compat.cuda import captures_cuda_graph, load_cuda_runtime
from ..gpu.cuda import GpuImage, find_nvcc, gpu_images, runs_on
from ..profiles import Profile, check_runs_here, cpu_features
from ..tune.choose import measures_here

LIBRARY, WEIGHTS, ONNX_FILE, MANIFEST = "model.so", "weights.safetensors", "model.onnx", "manifest.json"


#: What `compile -o` replaces: a folder holding an artifact's manifest and the files it lists, nothing else.
ARTIFACT = listed_folder("a nindsl artifact", MANIFEST)
FORMAT = 1  # bumped when the artifact layout changes


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class CompileReport:
    """What :func:`compile_artifact` made."""

    out: Path
    seconds: float
    gpu_kernels: int | None  # for CUDA targets
    quantized: object = None  # nindsl.tvm.checked.QuantizedBuild of an int8, bf16 or fp16 build


def compile_artifact(network: ir.Network, profile: Profile, out: str | Path, weights=None, seed: int = 0,
                     batch: int | None = None, tuning=None, progress: Progress = SILENT, precision: str = "fp32",
                     calibration=None, gate=None) -> CompileReport:
    """Build ``network`` for ``profile`` into the artifact folder ``out``; with ``tuning``
    (:class:`nindsl.tvm.tune.search.TuneOptions`), tune first (at batch 1 unless ``batch`` is given).

    ``precision="int8"`` quantizes with ``calibration`` (:class:`nindsl.onnx.quantize.Calibration`)
    and builds :mod:`nindsl.tvm.narrow.int8`'s kernels; ``"bf16"`` builds :mod:`nindsl.tvm.narrow.bf16`'s
    (for both, tuning measures each convolution's register or tile block); ``"fp16"`` (CUDA)
    builds :mod:`nindsl.tvm.gpu.half`'s mixed-precision module. All are compared with float32 on the
    calibration's held-out images; ``gate(agreement)`` may refuse the result before anything is
    written."""
    from ...onnx.lower import lower

    require_tvm()
    if profile.device == "cuda":
        find_nvcc()  # before tuning, not after: CUDA builds need it
    out = Path(out)
    weights = lower(network, weights, seed)  # resolved and lowered once, for every step below
    start = time.perf_counter()
    if precision in ("int8", "bf16", "fp16"):
        if precision == "int8":
            from ..narrow.int8 import build_quantized

            narrow = build_quantized(network, profile, weights, seed, batch, calibration, Runner.from_build,
                                     tuning, progress)
        elif precision == "bf16":
            from ..narrow.bf16 import build_checked

            narrow = build_checked(network, profile, weights, seed, batch, calibration, Runner.from_build, tuning,
                                   progress)
        else:
            from ..gpu.half import build_checked

            narrow = build_checked(network, profile, weights, seed, batch, calibration, Runner.from_build, progress,
                                   tuning)
        if gate is not None:
            gate(narrow.agreement)
        seconds = time.perf_counter() - start
        db = None
        if tuning is not None:  # (its measured blocks are kept there)
            from ..tune.search import database_dir

            db = str(database_dir(profile, tuning.db))
        write_artifact(out, network, profile, narrow.built, seconds, db, weights.origin,
                       _narrow_manifest(precision, narrow, calibration)
                       | ({"tuning_searched": tuning.search} if tuning is not None else {}))
        kernels = gpu_kernel_count(out / LIBRARY) if profile.device == "cuda" else None
        return CompileReport(out, seconds, kernels, narrow)
    tuned, db = None, None
    if tuning is not None:
        from ..tune.search import open_records, tune

        if not tuning.search:
            open_records(profile, tuning.db)  # (refused here, before anything is said, when it holds none)
        if batch is None:
            batch = 1
            progress.note("tuned kernels are for a fixed batch size: building for --batch 1")
        tuned, db = tune(network, profile, batch, tuning, weights, seed, progress)
    built = build(network, profile, weights, seed, batch, tuned)
    extra = {"tuning_searched": tuning.search} if tuning is not None else {}
    template, rule, forms = template_build(profile, tuned is not None), None, None
    if tuned is not None and template_build(profile) and measures_here(profile, tuning):
        built, choice, rule, forms = _measured_choice(network, profile, weights, seed, batch, built, progress)
        extra["tuned_choice"] = choice.manifest() | ({"template_forms": forms} if forms else {})
        template = choice.kept == "template"
    if template:
        extra |= winograd_manifest(network, rule) if profile.schedule.winograd else {"winograd": "off"}
    if built.unscheduled:  # (a schedule primitive refused the shape)
        extra["unscheduled"] = list(built.unscheduled)
        _warn_unscheduled(progress, built.unscheduled)
    seconds = time.perf_counter() - start
    write_artifact(out, network, profile, built, seconds, str(db) if db else None, weights.origin, extra)
    kernels = gpu_kernel_count(out / LIBRARY) if profile.device == "cuda" else None
    return CompileReport(out, seconds, kernels)


def _measured_choice(network: ir.Network, profile: Profile, weights, seed: int, batch: int, tuned: Build,
                     progress: Progress):
    """The tuned build or the untuned template, whichever runs faster here (:mod:`nindsl.tvm.tune.choose`)."""
    from ..tune.choose import faster

    rule, forms = _measured_forms(network, profile, batch, progress) if profile.schedule.winograd else (None, {})
    progress.note("building the untuned template too (channels-last, Winograd where measured faster), to keep the faster")
    template = build(network, profile, weights, seed, batch, winograd_rule=rule)
    sample = np.random.default_rng(seed).standard_normal((batch, *network.input.shape[1:])).astype(np.float32)
    choice = faster({"tuned": Runner.from_build(tuned), "template": Runner.from_build(template)}, sample)
    progress.note(choice.describe())
    if choice.kept == "tuned":  # (a kept template's are said with the build's)
        _warn_unscheduled(progress, template.unscheduled, "for the template the tuned build beat")
    return (tuned if choice.kept == "tuned" else template), choice, rule, forms


def _measured_forms(network: ir.Network, profile: Profile, batch: int, progress: Progress):
    """Each stride-1 3×3 and 5×5 convolution that can take Winograd form, built alone in every form
    (direct, and each tile) and timed here side by side at ``batch``: a rule that gives each its
    fastest (:func:`nindsl.tvm.winograd.measured`), and the medians by layer and form."""
    from ...language import check
    from ..tune.choose import median_ms
    from ..winograd import convolutions, forms, measured, tile

    chosen, measured_shapes, table = {}, {}, {}
    for name, layer, shape, key in convolutions(network):
        options = forms(*key)
        if not options:
            continue
        if key not in measured_shapes:  # (layers of one shape are measured once)
            progress.note(f"timing {name} directly and in Winograd form ({len(options)} builds)")
            _, channels, height, width = shape.in_shape
            alone = check(f"network {name.replace('.', '_')}_alone() {{\n    input x: f32[N, {channels}, {height}, "
                          f"{width}]\n    conv({key[-1]}, {layer.kernel}, pad = {layer.pad})\n}}\n")
            builds = {m: build(alone, profile, batch=batch, winograd_rule=lambda *_, m=m: m) for m in options}
            _warn_unscheduled(progress, sorted({k for built in builds.values() for k in built.unscheduled}),
                              f"timing {name}")
            sample = np.random.default_rng(0).standard_normal((batch, *alone.input.shape[1:])).astype(np.float32)
            medians = median_ms({m: Runner.from_build(built) for m, built in builds.items()}, sample)
            chosen[key] = min(options, key=medians.__getitem__)
            measured_shapes[key] = {"times_ms": {_form_name(m, layer.kernel): round(medians[m], 4) for m in options},
                                    "rule": _form_name(tile(*key), layer.kernel)}
        table[name] = measured_shapes[key]
    return measured(chosen), table


def _warn_unscheduled(progress: Progress, kernels, where: str = "") -> None:
    """Say the convolution kernels the template could not schedule (they run TVM's naive loops)."""
    if kernels:
        progress.note(f"warning: {where + ', ' if where else ''}the template could not schedule {len(kernels)} convolution kernel(s), "
                      f"which run unscheduled and slowly: {', '.join(kernels)}")


def _form_name(m: int | None, kernel: int) -> str:
    return "direct" if m is None else f"F({m}x{m},{kernel}x{kernel})"


def winograd_manifest(network: ir.Network, rule=None) -> dict:
    """The convolutions in Winograd form (by ``rule``: :func:`nindsl.tvm.winograd.tile`'s unless
    measured), by name, and the multiplications per image: the spec's multiply-adds (direct), and
    those the build does."""
    from ..winograd import fraction, plan, tile

    rule = rule or tile
    chosen = {name: f"F({m}x{m},{r}x{r})" for name, (m, r, _) in plan(network, rule).items()}
    return {"winograd": chosen, "multiplications": {"direct": network.total_macs,
                                                    "done": round(network.total_macs * fraction(network, rule))}}


def _narrow_manifest(precision: str, narrow, calibration) -> dict:
    result = narrow.agreement
    if precision == "int8":
        numbers = {"quantization": {**narrow.plan.describe(), "instructions": narrow.isa.name,
                                    "blocks": _blocks_json(narrow.blocks),
                                    "calibration": {"source": calibration.source, "images": len(calibration.images)}}}
    elif precision == "fp16":
        numbers = {"fp16": {"instructions": narrow.isa.name,
                            "tensor_core_kernels": narrow.built.tensor_cores,
                            "weights": "stored as float16 (rounded to nearest even at build time)",
                            "activations": "fp16 between kernels, sums in float32", "compared_on": calibration.source,
                            "judged_on": "the build machine's CPU: the same module compiled for it, against "
                                         "float32 ONNX Runtime"}}
    else:
        numbers = {"bf16": {"instructions": narrow.isa.name, "blocks": _blocks_json(narrow.blocks),
                            "weights": "bf16, rounded to nearest even",
                            "activations": "bf16 between kernels, sums in float32", "compared_on": calibration.source}}
    fallback = getattr(narrow.isa, "fallback", "")
    if fallback:
        numbers[next(iter(numbers))]["fallback"] = fallback
    return {"precision": precision, **numbers,
            "accuracy": {"held_out_images": result.images, "top1_agreement": result.top1_agreement,
                         "mean_abs_diff": result.mean_abs_diff, "accuracy_fp32": result.accuracy_fp32,
                         f"accuracy_{precision}": result.accuracy_quantized}}


def _blocks_json(blocks: dict) -> dict:
    """Each convolution's measured block (--tune) as the manifest keeps it: ``[vectors, columns]``
    of a register block, ``[rows, across, deep, depth]`` of an AMX tile block."""
    from ..narrow.chain import block_json

    return {output: block_json(block) for output, block in blocks.items()}


def write_artifact(out: Path, network: ir.Network, profile: Profile, built: Build, seconds: float,
                   tuning_db: str | None = None, weights: str | None = None, extra: dict | None = None) -> None:
    import tvm

    from ...onnx.model import serialize
    from ...weights import save_weights

    with atomic_directory(out, ARTIFACT) as staging:
        built.executable.export_library(str(staging / LIBRARY))
        save_weights(staging / WEIGHTS, built.weights, {"spec_hash": network.spec_hash})
        (staging / ONNX_FILE).write_bytes(serialize(built.model))
        shape = list(network.input.shape)
        if built.batch is not None:
            shape[0] = built.batch
        target = built.target
        manifest = {
            "format": FORMAT,
            "nindsl_version": __version__,
            "tvm_version": tvm.__version__,
            "network": network.name,
            "spec_hash": network.spec_hash,
            "params": dict(network.params),
            "input": {"name": network.input.name, "shape": shape, "dtype": "float32"},
            "output": {"name": network.output.name, "shape": list(network.output.shape), "dtype": "float32"},
            "preprocess": network.train.preprocess,  # how `nindsl run` prepares images (resize, mean, std)
            "profile": profile.name,
            "device": profile.device,
            "target": json.loads(str(target)) if str(target).startswith("{") else str(target),
            "parity": {"rtol": profile.parity.rtol, "atol": profile.parity.atol},
            "parameters": built.order,
            "parameter_types": {name: [built.weights[name].dtype.name, list(built.weights[name].shape)]
                                for name in built.order},  # what the library takes (checked when it loads)
            "transform_params": built.packs,
            "tuning_db": tuning_db,
            "compile_seconds": round(seconds, 2),
            "weights": weights,  # where they came from, as the ONNX metadata says it
            "files": {name: _sha256(staging / name) for name in (LIBRARY, WEIGHTS, ONNX_FILE)},
            "precision": "fp32",
            "cpu_features": cpu_features(target),  # what a CPU needs to run it (checked when it loads)
        } | (extra or {})
        if profile.device == "cuda":  # what the machine that runs it needs (nindsl/tvm/cuda.py)
            sass = [image for image in gpu_code(staging / LIBRARY) if image.kind == "sass"]
            manifest["gpu_code"] = {"archs": sorted({image.arch for image in sass}),
                                    "kernels": len({k for image in sass for k in image.kernels}),
                                    "nvcc": getattr(built.executable, "nvcc", None)}
            manifest["cuda_graph"] = {"captured": captures_cuda_graph(built.executable),  # read from the executable
                                      "max_batch": built.max_batch}  # any batch: one graph per size up to it
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def gpu_code(library: Path) -> tuple[GpuImage, ...]:
    """The GPU code in a library: each fatbin image or cubin with its kind (``sass``, machine
    code, or ``ptx``), architecture and kernel names. A library that holds CUDA source
    (compiled when loaded) has none."""
    return gpu_images(Path(library).read_bytes())


def gpu_kernel_count(library: Path) -> int:
    """The kernels a library has GPU machine code (SASS) for; 0 for CUDA source only."""
    return len({k for image in gpu_code(library) if image.kind == "sass" for k in image.kernels})


# --- running an artifact -------------------------------------------------------------------


def _refuse(folder: Path, why: str, help: str | None = None) -> NindslError:
    return NindslError.one("E0502", f"artifact `{folder}`: {why}", None, help)


def check_files(folder: Path, manifest: dict) -> None:
    """Every file the manifest lists is there and has its hash (the ONNX model it was built from
    may be left out: provenance, not needed to run, and a bundle leaves it out)."""
    for name, expected in manifest["files"].items():
        if name == ONNX_FILE and not (folder / name).exists():
            continue
        if not (folder / name).is_file():
            raise _refuse(folder, f"{name} is missing")
        if _sha256(folder / name) != expected:
            raise _refuse(folder, f"{name} does not match its manifest (changed or damaged after the build); "
                                  "it is not loaded", "compile the spec again")


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not folder.is_dir() or not os.path.lexists(path):
        raise _refuse(folder, f"no {MANIFEST}: not a nindsl artifact",
                      "build one with `nindsl compile SPEC --target llvm`")
    try:
        manifest = json.loads(regular_file(path, "a manifest", limits.MAX_MANIFEST_BYTES).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:  # RecursionError: [[[[…
        raise _refuse(folder, f"{MANIFEST} is damaged ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _refuse(folder, f"unknown artifact format {manifest.get('format') if isinstance(manifest, dict) else '?'}")
    _check_schema(folder, manifest)
    return manifest


# What a manifest must hold, and of which type, before anything it names is opened.
_SCHEMA = {"tvm_version": str, "network": str, "device": str, "parameters": list, "files": dict, "input": dict,
           "output": dict}


def _check_schema(folder: Path, manifest: dict) -> None:
    """The manifest's shape, validated before anything is loaded: the library and the weights are
    listed with their hashes, every listed file is a plain name inside the folder, and the
    fields the loader reads have their types."""
    for key, kind in _SCHEMA.items():
        if not isinstance(manifest.get(key), kind):
            raise _refuse(folder, f"{MANIFEST} is damaged: `{key}` is missing or not a {kind.__name__}",
                          "compile the spec again")
    files = manifest["files"]
    for name in (LIBRARY, WEIGHTS):
        if name not in files:
            raise _refuse(folder, f"{MANIFEST} does not list {name} with its hash; it is not loaded",
                          "compile the spec again")
    for name, digest in files.items():
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", "..") \
                or not isinstance(digest, str) or len(digest) != 64:
            raise _refuse(folder, f"{MANIFEST} lists `{name}`, which is not a file of this folder with a sha256",
                          "an artifact's files sit in its own folder; compile the spec again")
    shape = manifest["input"].get("shape")
    if not isinstance(manifest["input"].get("name"), str) or not isinstance(shape, list) \
            or not all(isinstance(d, (int, str)) for d in shape) \
            or not all(isinstance(p, str) for p in manifest["parameters"]) \
            or len(set(manifest["parameters"])) != len(manifest["parameters"]):
        raise _refuse(folder, f"{MANIFEST} is damaged: its input or parameters are malformed", "compile the spec again")
    if not isinstance(manifest.get("transform_params", False), bool):
        raise _refuse(folder, f"{MANIFEST} is damaged: `transform_params` is not true or false", "compile the spec again")
    mistake = preprocess_mistake(manifest.get("preprocess", {}), tuple(shape))
    if mistake:
        raise _refuse(folder, f"{MANIFEST} is damaged: its preprocess {mistake}", "compile the spec again")


def _check_weights(folder: Path, manifest: dict, tensors: dict[str, np.ndarray]) -> None:
    """The weights are the parameters the manifest lists, each of the type and shape it records
    (``parameter_types``; older artifacts record none), before the library is loaded: the
    library's own checks would only fail at the first call."""
    listed = manifest["parameters"]
    missing, extra = [n for n in listed if n not in tensors], sorted(set(tensors) - set(listed))
    if missing or extra:
        what = f"lacks {', '.join(f'`{n}`' for n in missing[:3])}" if missing else \
            f"holds {', '.join(f'`{n}`' for n in extra[:3])}, which the manifest does not list"
        raise _refuse(folder, f"{WEIGHTS} {what}; it is not loaded", "compile the spec again")
    types = manifest.get("parameter_types", {})
    if not isinstance(types, dict):
        raise _refuse(folder, f"{MANIFEST} is damaged (parameter_types is not an object)", "compile the spec again")
    for name, recorded in types.items():
        tensor = tensors.get(name)
        if tensor is not None and recorded != [tensor.dtype.name, list(tensor.shape)]:
            raise _refuse(folder, f"`{name}` in {WEIGHTS} is {tensor.dtype.name} {list(tensor.shape)}; the library "
                                  f"takes {recorded}; it is not loaded", "compile the spec again")


class Runner:
    """A loaded library on its device: ``runner(batch) → outputs``."""

    def __init__(self, library, device, weights: list, packs: bool, input_shape: list, max_batch: int | None = None):
        from tvm.runtime.vm import VirtualMachine  # (tvm.relax needs TVM's compiler; this, its runtime only)

        self.device = device
        self.input_shape = input_shape
        self.max_batch = max_batch  # CUDA graphs per batch size, memory planned up to it: larger batches are split
        self.vm = VirtualMachine(library, device)
        if packs:  # pack the weights once, as the tuned kernels want them
            weights = list(self.vm["main_transform_params"](weights))
        self.weights = weights
        self._main = self.vm["main"]
        self._input = None  # the input tensor, refilled each call (replaced when the batch shape changes)
        self._host_view = None  # on the CPU: a numpy view of it, filled without a round through TVM's FFI

    @classmethod
    def from_build(cls, built: Build, device=None) -> "Runner":
        import tvm

        device = device or tvm.cpu(0)
        check_runs_here(built.target, "this build", "build it for this machine: --target llvm")
        weights = [tvm.runtime.tensor(built.weights[name], device) for name in built.order]
        dims = built.model.graph.input[0].type.tensor_type.shape.dim
        shape = [built.batch or dims[0].dim_param, *(d.dim_value for d in dims[1:])]
        return cls(built.executable, device, weights, built.packs, shape, built.max_batch)

    def check_input(self, batch: np.ndarray) -> None:
        expected = self.input_shape
        if not shape_fits(expected, batch.shape):
            raise NindslError.one("E0503", f"the input has shape {format_shape(batch.shape)}, but this artifact "
                                           f"was built for {format_shape(expected)}", None,
                                  "rebuild without --batch for any batch size" if isinstance(expected[0], int)
                                  else None)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.max_batch is not None and len(batch) > self.max_batch:
            return np.concatenate([self(batch[start:start + self.max_batch])
                                   for start in range(0, len(batch), self.max_batch)])
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        import tvm

        if self._input is None or tuple(self._input.shape) != batch.shape:
            self.check_input(batch)
            self._input = tvm.runtime.empty(batch.shape, "float32", self.device)
            cpu = self.device.dlpack_device_type() == tvm.cpu(0).dlpack_device_type()
            self._host_view = np.from_dlpack(self._input) if cpu else None
        if self._host_view is None:
            self._input.copyfrom(np.ascontiguousarray(batch, dtype=np.float32))
            return self._main(self._input, *self.weights).numpy()
        # Through numpy views, not TVM's copyfrom and .numpy(), which each cost a round through its
        # FFI (docs/performance.md). The output is copied into an array the caller owns.
        np.copyto(self._host_view, batch, casting="unsafe")  # as np.asarray(batch, np.float32) would
        return np.from_dlpack(self._main(self._input, *self.weights)).copy()


def _check_gpu_code(folder: Path, compute_version: str) -> None:
    """Refuse a CUDA library without machine code for this GPU (before it is loaded)."""
    archs = sorted({image.arch for image in gpu_code(folder / LIBRARY) if image.kind == "sass"})
    if not archs:
        raise _refuse(folder, f"{LIBRARY} holds CUDA source, not GPU machine code (an artifact from an older "
                              "nindsl)", "compile the spec again")
    if not any(runs_on(arch, compute_version) for arch in archs):
        sm = "sm_" + compute_version.replace(".", "")
        raise _refuse(folder, f"its GPU machine code is for {', '.join(archs)}, which does not run on this GPU "
                              f"(compute capability {compute_version})",
                      f"compile it for {sm}: a profile with arch = \"{sm}\" (h100 and h200 are sm_90), or "
                      f"--target '{{\"kind\": \"cuda\", \"arch\": \"{sm}\"}}'")


def _check_cpu(folder: Path, manifest: dict) -> None:
    """Refuse a library with instructions this CPU lacks (before it is loaded: running it would
    end the process with SIGILL)."""
    features = manifest.get("cpu_features", [])  # (older artifacts record none)
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise _refuse(folder, f"{MANIFEST} is damaged (cpu_features is not a list of names)", "compile the spec again")
    missing = missing_cpu_features(features)
    if missing:
        target = manifest.get("target")
        cpu = target.get("mcpu", "another CPU") if isinstance(target, dict) else "another CPU"
        raise _refuse(folder, f"it is built for `{cpu}` and uses {', '.join(missing)}, which this CPU lacks",
                      "compile the spec for this machine: --target llvm")


def _graph_bound(folder: Path, manifest: dict) -> int | None:
    """The largest batch one call of an any-batch CUDA-graph artifact takes (None: no bound)."""
    graph = manifest.get("cuda_graph")  # (older artifacts and CPU ones have none)
    bound = graph.get("max_batch") if isinstance(graph, dict) else None
    if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool) or bound < 1):
        raise _refuse(folder, f"{MANIFEST} is damaged (cuda_graph.max_batch is not a positive whole number)",
                      "compile the spec again")
    return bound


class Artifact(Runner):
    """A verified artifact folder, loaded on its device."""

    def __init__(self, folder: str | Path):
        tvm = require_tvm_runtime()  # loading and running needs no compiler: TVM_USE_RUNTIME_LIB=1 works

        from ...weights import read_tensors

        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest["tvm_version"] != tvm.__version__:
            raise _refuse(folder, f"built by TVM {manifest['tvm_version']}; this is TVM {tvm.__version__}",
                          "compile the spec again with this TVM")
        check_files(folder, manifest)
        _check_cpu(folder, manifest)
        if manifest["device"] == "cuda":
            load_cuda_runtime()
        device = tvm.cuda(0) if manifest["device"] == "cuda" else tvm.cpu(0)
        if not device.exist:
            raise _refuse(folder, f"it runs on `{manifest['device']}`, and this machine has no such device",
                          "run it on a machine with a CUDA GPU, or build for --target llvm")
        if manifest["device"] == "cuda":
            _check_gpu_code(folder, device.compute_version)
        tensors, _ = read_tensors(folder / WEIGHTS)
        _check_weights(folder, manifest, tensors)
        self.manifest = manifest
        self.folder = folder
        self.input_name = manifest["input"]["name"]
        weights = [tvm.runtime.tensor(tensors[name], device) for name in manifest["parameters"]]
        with self._refused_arguments():  # (the weights are packed here, by the library)
            super().__init__(tvm.runtime.load_module(str(folder / LIBRARY)), device, weights,
                             manifest.get("transform_params", False), manifest["input"]["shape"],
                             _graph_bound(folder, manifest))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        with self._refused_arguments():
            return super()._run(batch)

    @contextlib.contextmanager
    def _refused_arguments(self):
        """The library refusing its weights or input (a manifest rewritten to agree with other
        weights) is a damaged artifact, said as one, not a crash."""
        try:
            yield
        except (ValueError, TypeError, RuntimeError) as error:
            if not refuses_arguments(error):
                raise
            raise _refuse(self.folder, f"its library does not take these weights or this input "
                                       f"({refusal_summary(error)})", "compile the spec again") from None
