"""Stage 5: ONNX → TVM Relax → a deployable artifact folder, and running one.

An artifact is a folder, written atomically::

    model.so            the exported library (native code: see "Trust" below)
    weights.safetensors the weights, passed to the library at run time
    model.onnx          the ONNX model it was built from
    manifest.json       spec hash, names, shapes, target, versions, file hashes

Trust: loading a library runs its native code. ``nindsl run`` loads ``model.so`` only when
its sha256 equals the manifest's, the manifest's TVM version is the running one, and the
target's device is present; it refuses anything else before loading.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__, ir
from .diagnostics import NindslError
from .io import atomic_directory
from .profiles import Profile, load_profile, resolved_target

LIBRARY, WEIGHTS, ONNX_FILE, MANIFEST = "model.so", "weights.safetensors", "model.onnx", "manifest.json"
FORMAT = 1  # bumped when the artifact layout changes


def physical_cores() -> int:
    """Cores this process may use, counting hyper-threads of one core once."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    siblings = set()
    for cpu in cpus:
        try:
            siblings.add(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip())
        except OSError:
            return len(cpus)
    return len(siblings) or 1


def require_tvm():
    """Import TVM, or explain how to install it.

    TVM's runtime runs parallel loops on half the logical CPUs, assuming two hyper-threads
    per core; on this 2-core machine, which has none, it ran on one core (measured: 86
    against 160 GFLOP/s on nin_cifar10's largest convolution). nindsl sets its thread
    count to the physical cores, unless TVM_NUM_THREADS is already set; tuning workers
    inherit it.
    """
    os.environ.setdefault("TVM_NUM_THREADS", str(physical_cores()))
    try:
        import tvm
        from tvm import relax  # noqa: F401 - the part nindsl needs, not only the package
    except ImportError:
        raise NindslError.one("E0504", "TVM is not installed, so nindsl cannot build for LLVM or CUDA", None,
                              "install it with: pip install 'nindsl[tvm]'") from None
    return tvm


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _relax_name(name: str) -> str:
    """How TVM's ONNX importer sanitises an initializer name into a parameter name."""
    return re.sub(r"[^0-9a-zA-Z_]", "_", name)


def _batch(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        batch = int(text)
    except ValueError:
        raise NindslError.one("E0504", f"--batch must be one whole number, got `{text}`", None,
                              "leave it out for a build that takes any batch size") from None
    if batch < 1:
        raise NindslError.one("E0504", f"--batch must be at least 1, got {batch}", None)
    return batch


def import_onnx(model, network: ir.Network, batch: int | None):
    """ONNX → Relax module with the weights as parameters (so the library holds no weights)."""
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    shapes = None  # the ONNX model's own: a symbolic batch dimension
    if batch is not None:
        shapes = {network.input.name: [batch, *network.input.shape[1:]]}
    module = from_onnx(model, shape_dict=shapes, keep_params_in_input=True)
    module, _ = relax.frontend.detach_params(module)
    return module


@dataclass
class Build:
    """A compiled network and what its artifact needs."""

    executable: object  # tvm.runtime.Executable
    model: object  # the onnx.ModelProto it came from
    weights: dict[str, np.ndarray]
    order: list[str]  # weight names in the order the library takes them
    target: object  # tvm.target.Target
    packs: bool  # weights go through `main_transform_params` first (CPU pre-packing)
    batch: int | None


def build(network: ir.Network, profile: Profile, weights=None, seed: int = 0, batch: int | None = None,
          tuned_module=None) -> Build:
    """Compile a network for a profile (untuned, or from a tuned Relax module)."""
    tvm = require_tvm()
    from .lower_onnx import to_onnx
    from .weights import resolve

    weights = resolve(network, weights, seed)
    model = to_onnx(network, weights)
    module = tuned_module if tuned_module is not None else import_onnx(model, network, batch)
    # With weight pre-packing, `main_transform_params` takes the weights and `main` the packed ones.
    packs = any(gv.name_hint == "main_transform_params" for gv in module.get_global_vars())
    # `main_transform_params` takes the weights as one tuple, in the imported module's order
    takes = (import_onnx(model, network, batch) if packs else module)["main"].params[1:]
    params = [str(p.name) for p in takes]
    by_relax = {**{_relax_name(w.name): w.name for w in network.weights}, **{w.name: w.name for w in network.weights}}
    order = [by_relax[p] for p in params]
    target = tvm.target.Target(resolved_target(profile))
    if profile.device == "cuda" and profile.schedule.untuned != "dlight":
        raise NindslError.one("E0504", f"profile `{profile.name}`: GPU builds need `untuned = \"dlight\"`", None,
                              "untuned GPU kernels must have every loop bound to threads")
    # TVM's default pipeline for a GPU target schedules every kernel with DLight's default
    # rules (Matmul, GEMV, Reduction, GeneralReduction, Fallback); for LLVM, its CPU rules.
    executable = tvm.compile(module, target=target)
    return Build(executable, model, weights, order, target, packs, batch)


def write_artifact(out: Path, network: ir.Network, profile: Profile, built: Build, seconds: float,
                   tuning_db: str | None = None) -> None:
    import tvm

    from .lower_onnx import serialize
    from .weights import save_weights

    with atomic_directory(out) as staging:
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
            "profile": profile.name,
            "device": profile.device,
            "target": json.loads(str(target)) if str(target).startswith("{") else str(target),
            "parity": {"rtol": profile.parity.rtol, "atol": profile.parity.atol},
            "parameters": built.order,
            "transform_params": built.packs,
            "tuning_db": tuning_db,
            "compile_seconds": round(seconds, 2),
            "files": {name: _sha256(staging / name) for name in (LIBRARY, WEIGHTS, ONNX_FILE)},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def compile_command(network: ir.Network, args) -> int:
    """`nindsl compile SPEC --target llvm|cuda|PROFILE|PATH.toml` (with --tune: tuning first)."""
    profile = load_profile(args.target)
    require_tvm()
    batch = _batch(args.batch)
    out = Path(args.output or f"{network.name}-{profile.name}")
    start = time.perf_counter()
    tuned, db = None, None
    if args.tune:
        from .tune import tune

        if batch is None:
            batch = 1
            print("tuning needs a fixed batch size: building for --batch 1", file=sys.stderr)
        tuned, db = tune(network, profile, batch=batch, trials=args.trials, db=args.db, max_minutes=args.max_minutes,
                         weights=args.weights, seed=args.seed, runner=measuring_runner(args))
    built = build(network, profile, args.weights, args.seed, batch, tuned)
    seconds = time.perf_counter() - start
    write_artifact(out, network, profile, built, seconds, str(db) if db else None)
    kernels = gpu_kernel_count(out / LIBRARY) if profile.device == "cuda" else None
    detail = f", {kernels} GPU kernels" if kernels is not None else ""
    print(f"wrote {out}/ for {profile.name} ({profile.device}{detail}) in {seconds:.1f} s")
    return 0


# What each tuning option is for: none means anything where nothing is tuned.
TUNING_OPTIONS = {"trials": "is a tuning budget", "max_minutes": "is a tuning time limit",
                  "db": "is the tuning database", "rpc": "measures tuning candidates",
                  "key": "names the device that measures tuning candidates"}


def refuse_tuning_options(args, names, needs: str) -> None:
    """A located error for the first tuning option given where nothing will be tuned."""
    for name in names:
        if getattr(args, name) is not None:
            raise NindslError.one("E0504", f"--{name.replace('_', '-')} {TUNING_OPTIONS[name]}: it needs {needs}",
                                  None)


def measuring_runner(args):
    """Where tuning measures candidates: here, or on the devices behind `--rpc HOST:PORT --key KEY`."""
    if args.key and not args.rpc:
        raise NindslError.one("E0504", "--key names a device at an RPC tracker: give --rpc HOST:PORT too", None)
    if not args.rpc:
        return "local"
    from .rpc import parse_address, runner

    parse_address(args.rpc)
    if not args.key:
        raise NindslError.one("E0504", "--rpc needs --key KEY: the key the devices registered under", None,
                              "list them with: python -m tvm.exec.query_rpc_tracker --port PORT")
    return runner(args.rpc, args.key)


def gpu_kernel_count(library: Path) -> int:
    """CUDA kernels embedded in a library (its PTX/cubin carries `.entry` / kernel names)."""
    data = library.read_bytes()
    return len(set(re.findall(rb"\.entry\s+([A-Za-z0-9_]+)", data))) or data.count(b"_kernel\x00")


# --- running an artifact -------------------------------------------------------------------


def _refuse(folder: Path, why: str, help: str | None = None) -> NindslError:
    return NindslError.one("E0502", f"artifact `{folder}`: {why}", None, help)


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise _refuse(folder, f"no {MANIFEST}: not a nindsl artifact",
                      "build one with `nindsl compile SPEC --target llvm`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _refuse(folder, f"{MANIFEST} is damaged ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _refuse(folder, f"unknown artifact format {manifest.get('format') if isinstance(manifest, dict) else '?'}")
    return manifest


class Runner:
    """A loaded library on its device: ``runner(batch) → outputs``."""

    def __init__(self, library, device, weights: list, packs: bool, input_shape: list):
        from tvm import relax

        self.device = device
        self.input_shape = input_shape
        self.vm = relax.VirtualMachine(library, device)
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
        weights = [tvm.runtime.tensor(built.weights[name], device) for name in built.order]
        dims = built.model.graph.input[0].type.tensor_type.shape.dim
        shape = [built.batch or dims[0].dim_param, *(d.dim_value for d in dims[1:])]
        return cls(built.executable, device, weights, built.packs, shape)

    def check_input(self, batch: np.ndarray) -> None:
        expected = self.input_shape
        from .run import shape_fits

        if not shape_fits(expected, batch.shape):
            raise NindslError.one("E0503", f"the input has shape {list(batch.shape)}, but this artifact was "
                                           f"built for {expected}", None,
                                  "rebuild without --batch for any batch size" if isinstance(expected[0], int)
                                  else None)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import tvm

        if self._input is None or tuple(self._input.shape) != batch.shape:
            self.check_input(batch)
            self._input = tvm.runtime.empty(batch.shape, "float32", self.device)
            cpu = self.device.dlpack_device_type() == tvm.cpu(0).dlpack_device_type()
            self._host_view = np.from_dlpack(self._input) if cpu else None
        if self._host_view is None:
            self._input.copyfrom(np.ascontiguousarray(batch, dtype=np.float32))
            return self._main(self._input, *self.weights).numpy()
        # Through numpy views: TVM's copyfrom and .numpy() cost ~25 µs each (measured on nin_cifar10
        # at batch 1, ~1 % of a 3 ms call). The output is copied into an array the caller owns.
        np.copyto(self._host_view, batch, casting="unsafe")  # as np.asarray(batch, np.float32) would
        return np.from_dlpack(self._main(self._input, *self.weights)).copy()


class Artifact(Runner):
    """A verified artifact folder, loaded on its device."""

    def __init__(self, folder: str | Path):
        tvm = require_tvm()

        from .weights import read_tensors

        folder = Path(folder)
        manifest = read_manifest(folder)
        if manifest["tvm_version"] != tvm.__version__:
            raise _refuse(folder, f"built by TVM {manifest['tvm_version']}; this is TVM {tvm.__version__}",
                          "compile the spec again with this TVM")
        for name, expected in manifest["files"].items():
            if not (folder / name).is_file():
                raise _refuse(folder, f"{name} is missing")
            if _sha256(folder / name) != expected:
                raise _refuse(folder, f"{name} does not match its manifest (changed or damaged after the build); "
                                      "it is not loaded", "compile the spec again")
        device = tvm.cuda(0) if manifest["device"] == "cuda" else tvm.cpu(0)
        if not device.exist:
            raise _refuse(folder, f"it runs on `{manifest['device']}`, and this machine has no such device",
                          "run it on a machine with a CUDA GPU, or build for --target llvm")
        tensors, _ = read_tensors(folder / WEIGHTS)
        self.manifest = manifest
        weights = [tvm.runtime.tensor(tensors[name], device) for name in manifest["parameters"]]
        super().__init__(tvm.runtime.load_module(str(folder / LIBRARY)), device, weights,
                         manifest.get("transform_params", False), manifest["input"]["shape"])


def run_artifact(folder: Path, inputs: list[str]) -> np.ndarray:
    from .run import Signature, load_input

    artifact = Artifact(folder)
    spec = artifact.manifest["input"]
    batch = load_input(inputs, Signature(spec["name"], tuple(spec["shape"]), artifact.manifest["output"]["name"]))
    return artifact(batch)
