"""What ``nindsl inspect`` shows: where an ONNX model or an artifact folder came from, in one layout.

Both begin with a line that names the network and what built it, then rows under the same
labels in the same order (spec, parameters, weights, input, output, and images where the spec
prepares them), then what only that kind has: an ONNX model's graph; an artifact's target, its
precision, the code it holds and its files. Everything is read from the model's metadata or the
folder's ``manifest.json``; nothing is loaded or run. A manifest is a file like any other, so
every value is checked for its type before it is shown (a wrong one is shown as ``?``)::

    runs/digits-llvm: TVM artifact of network `nin_digits`, built by nindsl 0.1.0 with TVM 0.27.0
      spec          sha256 f88a06cc…
      parameters    classes = 10
      weights       runs/digits
      input         image [N, 1, 8, 8] float32
      output        probs [N, 10] float32
      target        CPU emeraldrapids, 2 cores (profile `llvm`)
      precision     fp32, untuned
      CPU features  avx, avx2, fma (this CPU has them all)
      files         model.onnx, model.so, weights.safetensors
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


LABEL_WIDTH = len("CPU features")  # the longest label: every description's values start in one column


@dataclass(frozen=True)
class Description:
    """A title line and labelled rows, printed with the labels in one column."""

    title: str
    rows: tuple[tuple[str, str], ...]

    def text(self) -> str:
        width = max([LABEL_WIDTH] + [len(label) for label, _ in self.rows])
        return "\n".join([self.title] + [f"  {label.ljust(width)}  {value}" for label, value in self.rows])


def _words(value) -> list[str] | None:
    """A list of strings from a file, or None where it is something else."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


def _tensor(name, shape, dtype) -> str:
    dims = ", ".join(str(d) for d in shape) if isinstance(shape, (list, tuple)) else "?"
    return f"{name if isinstance(name, str) else '?'} [{dims}] {dtype if isinstance(dtype, str) else '?'}"


def _parameters(params) -> str:
    if not isinstance(params, dict):
        return "?"
    return ", ".join(f"{name} = {value}" for name, value in params.items()) or "none"


def _prepared(preprocess) -> str | None:
    """How image files are prepared (``{"resize": 256, "mean": [...]}``), in words."""
    if not isinstance(preprocess, dict) or not preprocess:
        return None
    words = {"resize": "resized to {0}×{0}", "mean": "mean {0} subtracted", "std": "divided by std {0}"}
    return ", ".join(words[key].format(value) if key in words else f"{key} {value}"
                     for key, value in preprocess.items())


def _common(spec_hash, sources, params, weights, inputs, outputs, preprocess) -> list[tuple[str, str]]:
    """The rows every description has, in this order."""
    spec = f"sha256 {spec_hash if isinstance(spec_hash, str) else '?'}"
    if sources:
        spec += f", from {', '.join(sources)}"
    rows = [("spec", spec), ("parameters", _parameters(params)),
            ("weights", weights if isinstance(weights, str) else "not recorded"),
            ("input", inputs), ("output", outputs)]
    prepared = _prepared(preprocess)
    if prepared:
        rows.append(("images", prepared))
    return rows


# --- an ONNX model ---------------------------------------------------------------------------


def describe_onnx(path: str | Path) -> Description:
    """An ``.onnx`` file: its nindsl metadata (or that it has none) and its graph."""
    from onnx import helper

    from ..onnx.model import model_metadata, read_model

    model = read_model(path)
    meta = model_metadata(model)
    graph = model.graph
    stored = {init.name for init in graph.initializer}

    def tensor(value) -> str:
        kind = value.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in kind.shape.dim]
        try:
            dtype = helper.tensor_dtype_to_np_dtype(kind.elem_type).name
        except (KeyError, ValueError, TypeError):
            dtype = "?"
        return _tensor(value.name, dims, dtype)

    inputs = "; ".join(tensor(i) for i in graph.input if i.name not in stored) or "none"
    outputs = "; ".join(tensor(o) for o in graph.output) or "none"
    values = sum(int(np.prod(t.dims)) for t in graph.initializer) if graph.initializer else 0
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), "?")
    shape = ("graph", f"opset {opset}, {len(graph.node)} nodes, {values:,} stored values")
    if not meta:
        title = f"{path}: ONNX model not built by nindsl (producer: {model.producer_name or 'unknown'})"
        return Description(title, (("input", inputs), ("output", outputs), shape))
    try:
        sources = list(json.loads(meta.get("spec", "{}")))
        params = json.loads(meta.get("params", "{}"))
        preprocess = json.loads(meta.get("preprocess", "{}"))
    except (ValueError, TypeError, RecursionError):
        sources, params, preprocess = [], None, None
    title = f"{path}: ONNX model of network `{meta.get('network', '?')}`, built by nindsl {meta.get('version', '?')}"
    rows = _common(meta.get("spec_hash"), _words(sources), params, meta.get("weights"), inputs, outputs,
                   preprocess)
    return Description(title, (*rows, shape))


# --- an artifact folder ----------------------------------------------------------------------


def _target(manifest: dict) -> str:
    """The target in words: the GPU's architecture, or the CPU, its cores and the features
    its build turned on or off; the profile it came from."""
    target, profile = manifest.get("target"), manifest.get("profile")
    if not isinstance(target, dict):
        text = str(target)
    elif target.get("kind") == "cuda":
        text = f"NVIDIA GPU {target.get('arch', '?')} (CUDA)"
        host = target.get("host")
        triple = host.get("mtriple") if isinstance(host, dict) else None
        if isinstance(triple, str):
            text += f", host code for {triple.split('-')[0]}"
    elif target.get("kind") == "llvm":
        text = f"CPU {target.get('mcpu') or 'generic'}"
        if isinstance(target.get("num-cores"), int):
            text += f", {target['num-cores']} cores"
        switched = _words(target.get("mattr")) or []
        on = [f[1:] for f in switched if f.startswith("+")]
        off = [f[1:] for f in switched if f.startswith("-")]
        text += (f", features turned on: {', '.join(on)}" if on else "") + \
            (f", features turned off: {', '.join(off)}" if off else "")
    else:
        text = str(target.get("kind", "?"))
    return text + (f" (profile `{profile}`)" if isinstance(profile, str) else "")


def _code(manifest: dict) -> list[tuple[str, str]]:
    """What the machine that runs it needs: the CPU's vector features, or the GPU code's
    architectures (checked again when it loads)."""
    from ..kernel.machine import missing_cpu_features

    rows = []
    gpu = manifest.get("gpu_code")
    if isinstance(gpu, dict):
        archs = _words(gpu.get("archs"))
        kernels = gpu.get("kernels")
        text = f"{kernels} kernels" if isinstance(kernels, int) else "kernels"
        text += f" as machine code for {', '.join(archs) if archs else '?'}"
        if isinstance(gpu.get("nvcc"), str):
            text += f" (nvcc {gpu['nvcc']})"
        rows.append(("GPU code", text))
        rows.append(("CUDA graphs", _graphs(manifest.get("cuda_graph"))))
    features = _words(manifest.get("cpu_features"))
    if features is not None and (features or not isinstance(gpu, dict)):  # (a GPU build's host code: none)
        missing = missing_cpu_features(features)
        text = ", ".join(features) or "none beyond the architecture's baseline"
        if features:
            text += f" (this CPU lacks {', '.join(missing)}: it will not load here)" if missing else \
                " (this CPU has them all)"
        rows.append(("CPU features", text))
    return rows


def _graphs(graph) -> str:
    """Whether a CUDA build launches its kernels through a captured CUDA graph."""
    if not isinstance(graph, dict):
        return "not recorded (an artifact from an older nindsl)"
    if graph.get("captured") is not True:
        return "off: one launch per kernel"
    bound = graph.get("max_batch")
    return ("captured on the first call and replayed after" if bound is None else
            f"one captured per batch size, up to {bound} images a call (larger batches run in pieces)"
            if isinstance(bound, int) else "captured (bound: ?)")


def _narrow(manifest: dict) -> list[tuple[str, str]]:
    """An int8, bf16 or fp16 build: its accuracy against float32, tensor cores, measured blocks,
    and the fallback it took (the manifest says why)."""
    from ..onnx.quantize import Agreement

    accuracy = manifest.get("accuracy")
    if not isinstance(accuracy, dict):
        return []
    precision = str(manifest.get("precision", "int8"))
    try:
        result = Agreement(accuracy["held_out_images"], accuracy["top1_agreement"], accuracy["mean_abs_diff"],
                           accuracy.get("accuracy_fp32"), accuracy.get(f"accuracy_{precision}"))
        rows = [("accuracy", result.describe())]
    except (KeyError, TypeError, ValueError):
        rows = [("accuracy", "its record is damaged")]
    numbers = next((manifest[key] for key in ("quantization", "bf16", "fp16") if isinstance(manifest.get(key), dict)),
                   {})
    if isinstance(numbers.get("tensor_core_kernels"), list):
        rows.append(("tensor cores", f"{len(numbers['tensor_core_kernels'])} kernels"))
    if isinstance(numbers.get("blocks"), dict) and numbers["blocks"]:
        rows.append(("blocks", f"measured by --tune for {len(numbers['blocks'])} convolutions"))
    if isinstance(numbers.get("fallback"), str) and numbers["fallback"]:
        rows.append(("fallback", numbers["fallback"]))
    return rows


def _winograd(manifest: dict) -> list[tuple[str, str]]:
    """The convolutions in Winograd form and the multiplications it does, of the spec's."""
    chosen, counts = manifest.get("winograd"), manifest.get("multiplications")
    if chosen == "off":
        return [("winograd", "off (--no-winograd, or the profile's `winograd = false`): every convolution direct")]
    if not isinstance(chosen, dict):
        return []
    if not chosen:
        return [("winograd", "none of its convolutions (every one direct)")]
    text = ", ".join(f"{name} {tile}" for name, tile in chosen.items() if isinstance(tile, str))
    if isinstance(counts, dict) and all(isinstance(counts.get(k), int) and counts[k] > 0 for k in ("direct", "done")):
        text += (f"; {counts['done'] / 1e6:,.1f} M multiplications per image of the spec's "
                 f"{counts['direct'] / 1e6:,.1f} M multiply-adds ({counts['done'] / counts['direct']:.0%})")
    return [("winograd", text)]


def _tuning(manifest: dict) -> str:
    database = manifest.get("tuning_db")
    if not isinstance(database, str):
        return "untuned"
    if manifest.get("tuning_searched") is False:
        return f"tuned from the records in {database} (no search here: measured elsewhere, e.g. by a kit)"
    choice = manifest.get("tuned_choice")
    if isinstance(choice, dict) and choice.get("kept") == "template":
        return f"tuned (database {database}), but the untuned template was faster here and is the build"
    return f"tuned (database {database})"


def _tuned_choice(manifest: dict) -> list[tuple[str, str]]:
    """What the tuned build was measured against, and which was kept (``--tune`` on a CPU)."""
    choice = manifest.get("tuned_choice")
    if not isinstance(choice, dict):
        return []
    times, kept = choice.get("median_ms"), choice.get("kept")
    if not (isinstance(times, dict) and kept in ("tuned", "template")
            and all(isinstance(times.get(k), (int, float)) for k in ("tuned", "template"))):
        return []
    names = {"tuned": "tuned kernels", "template": "untuned template"}
    other = "template" if kept == "tuned" else "tuned"
    rows = [("measured choice", f"{names[kept]} {times[kept]:.3g} ms, kept over the {names[other]} {times[other]:.3g} ms "
                                f"(medians here at batch {choice.get('batch', '?')})")]
    forms = choice.get("template_forms")
    if isinstance(forms, dict):
        layers = []
        for name, measured in forms.items():
            by_form = measured.get("times_ms") if isinstance(measured, dict) else None
            if isinstance(by_form, dict) and by_form and all(isinstance(t, (int, float)) for t in by_form.values()):
                ranked = sorted(by_form, key=by_form.get)
                layers.append(f"{name} " + ", ".join(f"{form} {by_form[form]:.3g} ms" for form in ranked))
        if layers:
            rows.append(("template forms", "; ".join(layers) + " (each layer alone, the fastest first: the template's)"))
    return rows


def describe_artifact(folder: Path) -> Description:
    """An artifact folder, from its manifest (validated as loading validates it)."""
    from ..tvm.deploy.artifact import read_manifest

    manifest = read_manifest(folder)
    made_in = manifest.get("input", {})
    made_out = manifest.get("output") if isinstance(manifest.get("output"), dict) else {}
    title = (f"{folder}: TVM artifact of network `{manifest.get('network')}`, built by nindsl "
             f"{manifest.get('nindsl_version', '?')} with TVM {manifest.get('tvm_version')}")
    rows = _common(manifest.get("spec_hash"), None, manifest.get("params"), manifest.get("weights"),
                   _tensor(made_in.get("name"), made_in.get("shape"), made_in.get("dtype", "float32")),
                   _tensor(made_out.get("name"), made_out.get("shape"), made_out.get("dtype", "float32")),
                   manifest.get("preprocess"))
    precision = manifest.get("precision", "fp32")
    rows += [("target", _target(manifest)), ("precision", f"{precision}, {_tuning(manifest)}")]
    rows += _code(manifest) + _narrow(manifest) + _tuned_choice(manifest) + _winograd(manifest)
    unscheduled = manifest.get("unscheduled")
    if isinstance(unscheduled, list) and unscheduled:
        rows.append(("unscheduled", f"{len(unscheduled)} convolution kernel(s) the template could not schedule run "
                                    f"TVM's naive loops: {', '.join(map(str, unscheduled))}"))
    rows.append(("files", ", ".join(sorted(manifest["files"]))))
    return Description(title, tuple(rows))

