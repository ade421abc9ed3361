"""`nindsl run`: one batch through a spec, an ONNX file or a TVM artifact.

Inputs are ``.npy`` arrays or image files. Images are converted to the input's channel
count (grey or RGB), resized to its height and width, and scaled to [0, 1].
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .diagnostics import NindslError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


@dataclass(frozen=True)
class Signature:
    """What a model takes and gives: names and shapes (the batch may be a name)."""

    input_name: str
    input_shape: tuple
    output_name: str


def _bad_input(message: str, help: str | None = None) -> NindslError:
    return NindslError.one("E0503", message, None, help)


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def shape_fits(expected, shape) -> bool:
    """Does an array shape fit a declared one (a named batch dimension takes any size)?"""
    return len(shape) == len(expected) and all(not isinstance(e, int) or e == a for e, a in zip(expected, shape))


def load_input(paths: list[str], signature: Signature) -> np.ndarray:
    """Read ``.npy`` or image files into one float32 batch matching ``signature``."""
    expected = signature.input_shape
    if len(paths) == 1 and Path(paths[0]).suffix.lower() == ".npy":
        array = _read_npy(Path(paths[0]))
        if array.ndim == len(expected) - 1:
            array = array[None]  # one example without its batch dimension
    else:
        array = np.stack([_read_image(Path(p), expected) for p in paths])
    if not shape_fits(expected, array.shape):
        raise _bad_input(f"the input has shape {_shape(array.shape)}, but `{signature.input_name}` expects "
                         f"{_shape(expected)}", "give an array of that shape (the batch size may vary)")
    return np.ascontiguousarray(array, dtype=np.float32)


def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise NindslError.one("E0301", f"no such file `{path}`", None) from None
    except (ValueError, OSError, EOFError) as error:
        raise _bad_input(f"`{path}` is not a readable .npy array ({error})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise _bad_input(f"`{path}` holds {getattr(array, 'dtype', type(array))}; the input needs float32 numbers")
    if array.dtype.kind in "iu":
        raise _bad_input(f"`{path}` holds integers ({array.dtype}); the input needs float32",
                         "scale images to [0, 1] floats first, e.g. array.astype('float32') / 255")
    if not np.isfinite(array).all():
        raise _bad_input(f"`{path}` contains NaN or infinite values")
    return array


def _read_image(path: Path, expected: tuple) -> np.ndarray:
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise _bad_input(f"`{path}`: give .npy arrays or images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if len(expected) != 4:
        raise _bad_input(f"images need an image input [N, C, H, W]; this model takes {_shape(expected)}")
    from PIL import Image, UnidentifiedImageError

    _, channels, height, width = expected
    if channels not in (1, 3):
        raise _bad_input(f"images have 1 or 3 channels; this model takes {channels}")
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
            array = np.asarray(image, dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise NindslError.one("E0301", f"no such file `{path}`", None) from None
    except (UnidentifiedImageError, OSError) as error:
        raise _bad_input(f"`{path}` is not a readable image ({error})") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _onnx_signature(model) -> Signature:
    graph_input, graph_output = model.graph.input[0], model.graph.output[0]
    dims = tuple(d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim)
    return Signature(graph_input.name, dims, graph_output.name)


def run_onnx(model, batch: np.ndarray, backend: str = "onnxruntime") -> np.ndarray:
    """Run an ONNX model on one batch with ONNX Runtime or ONNX's reference evaluator."""
    from .lower_onnx import serialize

    name = model.graph.input[0].name
    if backend == "reference":
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(model).run(None, {name: batch})[0]
    import onnxruntime

    session = onnxruntime.InferenceSession(serialize(model), providers=["CPUExecutionProvider"])
    return session.run(None, {name: batch})[0]


def print_top(outputs: np.ndarray, top: int, file=None) -> None:
    file = file or sys.stdout
    if outputs.ndim != 2:
        print(f"output shape {_shape(outputs.shape)}", file=file)
        return
    for index, row in enumerate(outputs):
        best = np.argsort(-row, kind="stable")[:top]
        shown = ", ".join(f"{c} ({row[c]:.4g})" for c in best)
        print(f"example {index}: {shown}", file=file)


def run_command(args) -> int:
    from .cli import _overrides
    from .io import atomic_write_bytes

    source = Path(args.model)
    backend = args.backend
    if source.is_dir():
        from .build_tvm import run_artifact

        outputs = run_artifact(source, args.input)
    elif source.suffix == ".onnx":
        from .lower_onnx import read_model

        model = read_model(source)
        backend = backend or "onnxruntime"
        _check_backend(backend, ("onnxruntime", "reference"))
        outputs = run_onnx(model, load_input(args.input, _onnx_signature(model)), backend)
    else:
        import nindsl

        network = nindsl.load(source, _overrides(args.set))
        signature = Signature(network.input.name, network.input.shape, network.output.name)
        batch = load_input(args.input, signature)
        backend = backend or "onnxruntime"
        _check_backend(backend, ("onnxruntime", "reference", "torch"))
        if backend == "torch":
            import torch

            from .twin import to_torch

            module = to_torch(network, weights=args.weights, seed=args.seed).eval()
            with torch.no_grad():
                outputs = module(torch.from_numpy(batch)).numpy()
        else:
            from .lower_onnx import to_onnx

            outputs = run_onnx(to_onnx(network, args.weights, args.seed, check=False), batch, backend)
    print_top(outputs, args.top)
    if args.output:
        import io

        buffer = io.BytesIO()
        np.save(buffer, outputs)
        atomic_write_bytes(args.output, buffer.getvalue())
        print(f"saved outputs {_shape(outputs.shape)} to {args.output}", file=sys.stderr)
    return 0


def _check_backend(backend: str, known: tuple[str, ...]) -> None:
    if backend not in known:
        from .diagnostics import did_you_mean

        raise NindslError.one("E0504", f"unknown backend `{backend}` for this model", None,
                              did_you_mean(backend, known) or f"use one of: {', '.join(known)}")
