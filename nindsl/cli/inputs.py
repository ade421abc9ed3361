"""What the command line reads for a command: ``--set`` pairs, batch sizes, and the input
arrays of ``nindsl run``.

Inputs are ``.npy`` arrays or image files. Images are converted to the input's channel
count (grey or RGB), resized to its height and width, and scaled to [0, 1]; a model whose
spec's train section resizes or normalises images gets them prepared as training evaluated
them (``nindsl.torch.images``). ``.npy`` arrays are used as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..kernel import limits
from ..kernel.diagnostics import NindslError
from ..kernel.io import regular_file
from ..language.ir import format_shape, shape_fits

from ..torch.images import IMAGE_SUFFIXES, load_images
from ..weights import numpy_refusal


def _usage(message: str, help: str | None = None) -> NindslError:
    return NindslError.one("E0504", message, None, help)


def _bad_input(message: str, help: str | None = None) -> NindslError:
    return NindslError.one("E0503", message, None, help)


def overrides(pairs: list[str] | None) -> dict[str, str]:
    """``--set name=value`` pairs as a dict of expression texts; a name given twice is refused
    (the last would silently win)."""
    result = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise _usage(f"`--set {pair}` is not of the form name=value", "for example `--set classes=100`")
        if name.strip() in result:
            raise _usage(f"--set {name.strip()} is given twice (`{result[name.strip()]}` and `{value.strip()}`)",
                         "give each parameter once")
        result[name.strip()] = value.strip()
    return result


def batch_size(text: str | None) -> int | None:
    """``compile --batch``: one size, or None for a build that takes any batch size."""
    if text is None:
        return None
    try:
        batch = int(text)
    except ValueError:
        raise _usage(f"--batch must be one whole number, got `{text}`",
                     "leave it out for a build that takes any batch size") from None
    if not 1 <= batch <= limits.MAX_DIM:
        raise _usage(f"--batch must be between 1 and {limits.MAX_DIM:,}, got {batch:,}")
    return batch


def batch_sizes(text: str) -> tuple[int, ...]:
    """``bench --batch``: a comma-separated list of sizes."""
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1 or max(batches) > limits.MAX_DIM:
        raise _usage(f"--batch must be a comma-separated list of sizes from 1 to {limits.MAX_DIM:,}, got `{text}`",
                     "for example --batch 1,64")
    return tuple(batches)


def onnx_signature(model) -> tuple[str, tuple]:
    """The input name and shape of an ONNX model (a named batch dimension stays a name); a model
    nindsl cannot feed one float array (no input, several, another type, a foreign op domain)
    is refused before a session is opened."""
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    float32 = 1  # onnx.TensorProto.FLOAT
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != float32:
        shown = ", ".join(f"`{i.name}`" for i in inputs) or "none"
        told = f"its input {shown} is not float32" if len(inputs) == 1 else f"it takes {len(inputs)} inputs ({shown})"
        raise NindslError.one("E0502", f"nindsl runs ONNX models with one float32 input; {told}", None,
                              "give a model with a single float32 image input")
    foreign = sorted({op.domain for op in model.opset_import} - {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
    if foreign:
        raise NindslError.one("E0502", f"the model uses operators of the domain(s) {', '.join(foreign)}, which "
                              "no nindsl backend runs", None)
    graph_input = inputs[0]
    return graph_input.name, tuple(d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim)


def finite_initializers(model, path: Path) -> None:
    """Refuse an ONNX model whose weights (initializers, as float32) hold NaN or infinite values
    before it runs: its outputs would be NaN probabilities (compile refuses such weights too)."""
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        if tensor.data_type not in (1, 10, 11, 16):  # FLOAT, FLOAT16, DOUBLE, BFLOAT16: only floats can be
            continue
        with np.errstate(over="ignore", invalid="ignore"):  # 1e300 in a double is inf as float32
            finite = np.isfinite(numpy_helper.to_array(tensor).astype(np.float32)).all()
        if not finite:
            raise NindslError.one("E0501", f"`{path}`: initializer `{tensor.name}` holds NaN or infinite values "
                                           "(as float32)", None,
                                  "export the model from a checkpoint whose weights are finite")


def finite_outputs(outputs: np.ndarray, what: str) -> None:
    """Refuse outputs that are NaN or infinite instead of printing them as predictions: finite
    weights and inputs whose products overflow float32 end there."""
    if not np.isfinite(outputs).all():
        raise _bad_input(f"the {what} computed NaN or infinite outputs: the input or the weights are too large "
                         "for float32", "scale the input as the model was trained (images in [0, 1], normalised)")


def load_input(paths: list[str], name: str, expected: tuple, preprocess: dict | None = None,
               variable_batch: str = "export the model with a named (dynamic) batch dimension") -> np.ndarray:
    """Read ``.npy`` or image files into one float32 batch for the input ``name`` of shape ``expected``;
    images are prepared as ``preprocess`` (a model's recorded resize, mean and std) says. A model
    built for one batch size is refused other sizes, saying how to get one that takes any
    (``variable_batch``)."""
    arrays = [path for path in paths if Path(path).suffix.lower() == ".npy"]
    if arrays and len(paths) > 1:
        raise _bad_input(f"`{arrays[0]}` is an .npy array, which holds a whole batch: give it alone",
                         "give one .npy array [N, ...], or image files only")
    if len(paths) == 1 and Path(paths[0]).suffix.lower() == ".npy":
        array = _read_npy(Path(paths[0]))
        if array.ndim == len(expected) - 1:
            array = array[None]  # one example without its batch dimension
    else:
        array = _read_images([Path(p) for p in paths], expected, preprocess or {})
    if not shape_fits(expected, array.shape):
        fixed = expected and isinstance(expected[0], int)
        if fixed and array.ndim == len(expected) and shape_fits(expected[1:], array.shape[1:]):
            size, what = expected[0], "image" if len(expected) == 4 else "example"
            raise _bad_input(f"this build takes exactly {size} {what}{'s' if size != 1 else ''} per run "
                             f"(`{name}` is {format_shape(expected)}); the input has {array.shape[0]}",
                             f"give {size} at a time, or {variable_batch} for a build that takes any batch size")
        raise _bad_input(f"the input has shape {format_shape(array.shape)}, but `{name}` expects "
                         f"{format_shape(expected)}", "give an array of that shape"
                         + ("" if fixed else " (the batch size may vary)"))
    return np.ascontiguousarray(array, dtype=np.float32)


def load_labels(path: str | None, count: int) -> np.ndarray | None:
    """``run --labels``: a .npy of ``count`` whole numbers, each example's class (None without one)."""
    if path is None:
        return None
    path = Path(path)
    regular_file(path, "an .npy array of labels", limits.MAX_INPUT_BYTES)
    _npy_claim(path)
    try:
        labels = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise _bad_input(f"`{path}` is not a readable .npy array ({numpy_refusal(error)})") from None
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise _bad_input(f"`{path}` holds {labels.dtype} of shape {format_shape(labels.shape)}; labels are whole "
                         "numbers, one per example", "save them with numpy.save(path, numpy.array(labels))")
    if len(labels) != count:
        raise _bad_input(f"`{path}` holds {len(labels)} labels for {count} example{'s' if count != 1 else ''}",
                         "give one label per example, in the order of the input")
    return labels


def _npy_claim(path: Path) -> None:
    """Refuse an .npy whose header claims more data than the file holds, before allocating it."""
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(handle)
        except (ValueError, OSError, EOFError, TypeError, SyntaxError) as error:
            raise _bad_input(f"`{path}` is not a readable .npy array ({numpy_refusal(error)})") from None
        claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        held = path.stat().st_size - handle.tell()
    if claimed > held:
        raise _bad_input(f"`{path}` claims {format_shape(shape)} {dtype} ({claimed:,} bytes) but holds {held:,}",
                         "is the file truncated or damaged? save it again with numpy.save")


def _read_npy(path: Path) -> np.ndarray:
    regular_file(path, "an .npy array", limits.MAX_INPUT_BYTES)
    _npy_claim(path)
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise NindslError.one("E0301", f"no such file `{path}`", None) from None
    except (ValueError, OSError, EOFError) as error:
        raise _bad_input(f"`{path}` is not a readable .npy array ({numpy_refusal(error)})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise _bad_input(f"`{path}` holds {getattr(array, 'dtype', type(array))}; the input needs float32 numbers")
    if array.dtype.kind in "iu":
        raise _bad_input(f"`{path}` holds integers ({array.dtype}); the input needs float32",
                         "scale images to [0, 1] floats first, e.g. array.astype('float32') / 255")
    with np.errstate(over="ignore"):  # as the model will see it: 1e300 is inf in float32
        finite = np.isfinite(array.astype(np.float32)).all()
    if not finite:
        raise _bad_input(f"`{path}` contains NaN or infinite values (as float32)")
    return array


def _read_images(paths: list[Path], expected: tuple, preprocess: dict) -> np.ndarray:
    for path in paths:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise _bad_input(f"`{path}`: give .npy arrays or images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if len(expected) != 4 or not all(isinstance(d, int) for d in expected[1:]):
        raise _bad_input(f"images need an image input [N, C, H, W]; this model takes {format_shape(expected)}")
    return load_images(paths, *expected[1:], preprocess)


CALIBRATION_IMAGES, HELD_OUT_IMAGES = 512, 2000
CALIBRATION_BYTES = 512 << 20  # float32 images of each set, at most: fewer images of a large input
CALIBRATION_USAGE = "digits | cifar10:DIR | cifar100:DIR | imagefolder:DIR | FILE.npz | random"


def calibration(network, source: str | None, precision: str = "int8"):
    """The images an int8 build calibrates on, and held-out ones to compare it (or a bf16
    build) with float32:
    ``CALIBRATION_IMAGES`` drawn (seed 0) from the training images of ``source`` (default: the
    spec's train data), up to ``HELD_OUT_IMAGES`` of its held-out ones with their labels, both
    prepared as training prepares them. ``random``: standard normal images, no labels."""
    from ..onnx.quantize import Calibration
    from ..torch.data import load_data
    from ..torch.images import normalise

    rng = np.random.default_rng(0)
    shape = tuple(network.input.shape[1:])
    fit = max(1, CALIBRATION_BYTES // (4 * int(np.prod(shape))))  # images of this size in the budget
    if source == "random":
        return Calibration("random", rng.standard_normal((min(CALIBRATION_IMAGES, fit), *shape), dtype=np.float32),
                           rng.standard_normal((min(HELD_OUT_IMAGES // 4, fit), *shape), dtype=np.float32))
    from ..language.ir import DATA_KINDS

    named = source or network.train.data
    if named in DATA_KINDS and named != "digits":  # a kind of data set without its folder
        what = f"--calibrate names `{named}` without its folder" if source else \
            f"{precision} takes its images from the spec's train data, `{named}`, which names no folder"
        raise _usage(what,
                     f"pass --calibrate {named}:DIR, or --calibrate random to calibrate on random images")
    source = named
    if not source:
        raise _usage(f"{precision} needs images to calibrate on or compare with, and this spec names no training "
                     "data",
                     f"pass --calibrate {CALIBRATION_USAGE}")
    data = load_data(network, source)
    pick = rng.permutation(len(data.train_images))
    count = min(CALIBRATION_IMAGES, fit)
    images, held_out, labels = data.train_images[pick[:count]], data.val_images[:fit], data.val_labels[:fit]
    if not len(held_out):  # no held-out split: judge on training images not calibrated on
        rest = pick[count:count + fit]
        held_out, labels = data.train_images[rest], data.train_labels[rest]
    if not len(held_out):
        raise _bad_input(f"`{source}` has {len(images)} images: too few to calibrate on and to judge the result",
                         f"give more than {count} images, or a held-out split")
    prepare = network.train.preprocess
    return Calibration(source, normalise(images, prepare), normalise(held_out[:HELD_OUT_IMAGES], prepare),
                       labels[:HELD_OUT_IMAGES])
