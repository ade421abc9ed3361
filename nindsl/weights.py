"""Weights: drawn from the spec's init, or read from a checkpoint, always checked.

Every backend (ONNX, the PyTorch twin, TVM) takes its weights from here as a dict
``name → float32 array`` whose names and shapes are ``network.weights``. Checkpoints are
safetensors (what ``nindsl train`` writes) or ``.npz``; a pickle is never loaded.

>>> import nindsl
>>> net = nindsl.check("network t() { input x: f32[N, 1, 4, 4] conv(2, 3) }")
>>> sorted((k, v.shape) for k, v in initial_weights(net, seed=0).items())
[('conv1.bias', (2,)), ('conv1.weight', (2, 1, 3, 3))]
"""

from __future__ import annotations

import json
import math
import re
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .language import ir
from .language.layers import training
from .kernel.diagnostics import Collector, NindslError, Note
from .kernel import limits
from .kernel.io import atomic_write_bytes, regular_file

CHECKPOINT_NAMES = ("best.safetensors", "last.safetensors", "model.safetensors")


def _owners(network: ir.Network) -> dict[str, ir.Layer]:
    return {w.name: layer for layer, shape in zip(network.layers, network.shapes) for w in shape.weights}


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _draw(init: ir.Init, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    if init.kind == "xavier":
        bound = float(np.sqrt(6.0 / (fan_in + fan_out)))
        return rng.uniform(-bound, bound, shape)
    if init.kind == "kaiming":
        return rng.normal(0.0, float(np.sqrt(2.0 / fan_in)), shape)
    return rng.normal(init.mean, init.std, shape)


HE = ir.Init("kaiming")  # normal, std √(2 / fan-in): keeps the signal's scale through ReLU layers
GLOROT = ir.Init("xavier")  # uniform, ±√(6 / (fan-in + fan-out)): for layers without a ReLU


def default_init(layer: ir.Layer) -> ir.Init:
    """The init of a layer whose spec sets none (nor its train section): He for a layer a ReLU
    follows (every mlpconv stage, `conv` and `dense` with `act = relu`), Glorot otherwise, as
    PyTorch's and Keras's users expect. (The paper's N(0, 0.01) is `normal(std = 0.01)`: through
    six or more ReLU layers it lets the signal vanish, and a new spec would not learn.)"""
    return HE if getattr(layer, "act", "relu") == "relu" else GLOROT


def initial_weights(network: ir.Network, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights drawn from each layer's ``init`` (else the train section's, else
    :func:`default_init`), biases 0.

    Each tensor has its own random stream, derived from the seed and its name, so adding
    a layer does not change the others' initial values.
    """
    owners = _owners(network)
    weights = {}
    for weight in network.weights:
        if weight.role == "weight":
            layer = owners[weight.name]
            init = training(layer, weight).init or network.train.init or default_init(layer)
            rng = np.random.default_rng([seed, zlib.crc32(weight.name.encode())])
            weights[weight.name] = _draw(init, weight.shape, rng).astype(np.float32)
        else:
            ones = weight.role in ("scale", "running_var")  # batch norm's
            weights[weight.name] = (np.ones if ones else np.zeros)(weight.shape, dtype=np.float32)
    return weights


# --- checkpoints ---------------------------------------------------------------------------


def _refused(path: Path, why: str, help: str | None = None) -> NindslError:
    return NindslError.one("E0502", f"`{path}`: {why}", None, help)


def read_tensors(path: str | Path, most: int = limits.MAX_MODEL_BYTES) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and metadata of a safetensors or .npz file (a folder: its best checkpoint), whose
    tensors take at most ``most`` bytes (checked before they are read or decompressed)."""
    path = Path(path)
    if path.is_dir():
        found = next((path / name for name in CHECKPOINT_NAMES if (path / name).is_file()), None)
        if found is None:
            raise _refused(path, f"the folder holds no checkpoint ({', '.join(CHECKPOINT_NAMES)})")
        path = found
    regular_file(path, "a checkpoint", limits.MAX_MODEL_BYTES)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except FileNotFoundError:
        raise NindslError.one("E0301", f"no such file `{path}`", None) from None
    except OSError as error:
        raise NindslError.one("E0301", f"cannot read `{path}`: {error.strerror}", None) from None
    if _is_safetensors(path, head):
        _check_size(path, path.stat().st_size - 8 - struct.unpack("<Q", head)[0], most)
        return _read_safetensors(path)
    if head[:1] == b"\x80" or head[:2] == b"PK" and _is_torch_zip(path):
        raise _refused(path, "is a pickle (a PyTorch .pt/.pth file?); nindsl never loads pickles, "
                             "which can run code", "save the weights with safetensors, or `nindsl train`")
    if head[:2] == b"PK":
        check_npz(path, most, "these weights")
        return _read_npz(path), {}
    if len(head) == 8:
        return _read_safetensors(path)  # says what is wrong with it
    raise _refused(path, "is neither safetensors nor .npz (it is too short)")


def _check_size(path: Path, held: int, most: int) -> None:
    if held > most:
        raise NindslError.one("E0401", f"`{path}` holds {held:,} bytes of tensors; the most nindsl reads as these "
                                       f"weights is {most:,}", None, "does the checkpoint belong to this spec?")


def _most_bytes(network: ir.Network) -> int:
    """The most a checkpoint of ``network`` may hold: each of its values in the widest floating
    type numpy stores (16 bytes), and room for each array's header."""
    return sum(16 * math.prod(weight.shape) + 4096 for weight in network.weights) + (1 << 20)


def _is_safetensors(path: Path, head: bytes) -> bool:
    """An 8-byte little-endian header length, then a JSON object. (The first byte alone
    can be 0x80, a pickle's first byte, so this is asked before the pickle check.)"""
    if len(head) < 8:
        return False
    (length,) = struct.unpack("<Q", head)
    with open(path, "rb") as handle:
        handle.seek(8)
        return 2 <= length <= path.stat().st_size - 8 and handle.read(1) == b"{"


def check_npz(path: str | Path, limit: int, what: str) -> None:
    """Refuse an .npz (a zip of .npy arrays) whose arrays would take more than ``limit`` bytes,
    from what it declares, before anything is decompressed: a 2 MB zip of zeros can hold
    gigabytes. The zip's directory gives each member's size once decompressed (Python's zipfile
    never inflates past it), and each array's header its shape and type (numpy allocates that
    before reading the data), checked against the member. A file that is no zip is left to the
    reader to refuse."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            declared = sum(member.file_size for member in members)
            if declared > limit:
                raise NindslError.one("E0401", f"`{path}` holds {declared:,} bytes once decompressed; the most "
                                               f"nindsl reads as {what} is {limit:,}", None)
            for member in members:
                with archive.open(member) as stream:
                    _check_npy_member(path, member, stream)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError):
        return  # not a readable zip: the reader says what is wrong with it


def _check_npy_member(path, member, stream) -> None:
    """An .npy inside an .npz may not claim more data than the member holds."""
    try:
        version = np.lib.format.read_magic(stream)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(stream)
    except (ValueError, OSError, EOFError, TypeError, SyntaxError):
        return  # not an .npy: the reader refuses it
    claimed = math.prod(shape) * dtype.itemsize
    if claimed > member.file_size:
        raise NindslError.one("E0502", f"`{path}`: `{member.filename}` claims {list(shape)} {dtype} "
                                       f"({claimed:,} bytes) but holds {member.file_size:,}", None,
                              "is the file damaged? save it again with numpy.savez")


def _is_torch_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(".pkl") for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise _refused(path, f"is not a readable .npz file ({numpy_refusal(error)})") from None


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import SafetensorError, deserialize

    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise _refused(path, "is truncated or not safetensors (its header runs past the end of the file)")
    try:
        metadata = json.loads(data[8: 8 + length]).get("__metadata__") or {}
        views = deserialize(data)
    except (SafetensorError, ValueError, UnicodeDecodeError, AttributeError, RecursionError) as error:
        raise _refused(path, f"is damaged or not safetensors ({error})") from None
    return {name: _array(path, name, view) for name, view in sorted(views, key=lambda item: item[0])}, metadata


# safetensors' dtypes that numpy has, by their names in the file
_NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "U64": "<u8", "I32": "<i4", "U32": "<u4",
                 "I16": "<i2", "U16": "<u2", "I8": "i1", "U8": "u1", "BOOL": "?", "C64": "<c8"}


def _array(path: Path, name: str, view: dict) -> np.ndarray:
    """One tensor of a safetensors file. bfloat16, which numpy lacks, is read as float32 exactly
    (a bfloat16 is a float32's upper 16 bits: mixed-precision training saves them); a type
    nindsl has no reading of (float8, ...) is refused by name."""
    kind, shape, data = view["dtype"], view["shape"], view["data"]
    if kind == "BF16":
        return (np.frombuffer(data, "<u2").astype("<u4") << 16).view("<f4").reshape(shape)
    if kind not in _NUMPY_DTYPES:
        raise _refused(path, f"tensor `{name}` is {kind}, which nindsl does not read",
                       "save the weights as float32, float16 or bfloat16")
    return np.frombuffer(data, _NUMPY_DTYPES[kind]).reshape(shape)


def check_weights(network: ir.Network, tensors: dict[str, np.ndarray], origin: str) -> dict[str, np.ndarray]:
    """Match tensors to the network: one error listing every missing, extra or mis-shaped one."""
    errors = Collector()
    owners = _owners(network)
    expected = {w.name: w.shape for w in network.weights}
    missing = [name for name in expected if name not in tensors]
    extra = sorted(set(tensors) - set(expected))
    renaming = _renaming(missing, extra)
    if missing:  # one error for every missing name, with a table, not one error per tensor
        rows = [f"{name} {list(expected[name])} (layer `{owners[name].label}`)" for name in missing[:10]]
        rows += [f"… and {len(missing) - 10} more"] if len(missing) > 10 else []
        errors.error("E0501", f"`{origin}` lacks {len(missing)} of the spec's {len(expected)} tensors",
                     owners[missing[0]].span, renaming or "does the checkpoint belong to this spec?",
                     [Note("missing: " + row) for row in rows])
    if extra and not renaming:  # (a renaming explains the extra names too)
        shown = ", ".join(f"`{n}`" for n in extra[:8]) + (f" and {len(extra) - 8} more" if len(extra) > 8 else "")
        # at the first layer whose name they carry (`conv2.2.weight`: a stage conv2 lacks); else no line
        # of the spec is to blame, and the message names the spec
        labelled = {layer.label: layer for layer in network.layers}
        near = next((labelled[n.split(".")[0]] for n in extra if n.split(".")[0] in labelled), None)
        spec = f"`{network.sources[0].path}`" if network.sources and not near else "the spec"
        errors.error("E0501", f"`{origin}` has tensors {spec} does not: {shown}", near.span if near else None,
                     "does the checkpoint belong to this spec?")
    for name, shape in expected.items():
        layer = owners[name]
        if name not in tensors:
            continue
        if tuple(tensors[name].shape) != shape:
            errors.error("E0501", f"`{name}` in `{origin}` has shape {list(tensors[name].shape)}; layer "
                                  f"`{layer.label}` needs {list(shape)}", layer.span,
                         "was the checkpoint trained from another spec or with other --set values?")
        elif not np.issubdtype(tensors[name].dtype, np.floating):
            errors.error("E0501", f"`{name}` in `{origin}` is {tensors[name].dtype}, not floating point",
                         layer.span)
        elif not np.isfinite(np.asarray(tensors[name], dtype=np.float32)).all():
            errors.error("E0501", f"`{name}` in `{origin}` holds NaN or infinite values (as float32)", layer.span,
                         "a diverged training run? resume from an earlier checkpoint or lower the learning rate")
    errors.raise_if_any()
    return {name: np.ascontiguousarray(tensors[name], dtype=np.float32) for name in expected}


def _renaming(missing: list[str], extra: list[str]) -> str | None:
    """A hint when the checkpoint's names are the spec's with a prefix added or dropped
    (`model.conv1.0.weight` for `conv1.0.weight`, as a wrapped PyTorch module saves them)."""
    if not missing or not extra:
        return None
    ours, theirs = missing[0], next((t for t in extra if t.endswith(missing[0]) or missing[0].endswith(t)), None)
    if theirs is None or theirs == ours:
        return None
    if theirs.endswith(ours):
        prefix = theirs[: -len(ours)]
        if all(prefix + name in extra for name in missing):
            return (f"its names carry the prefix `{prefix}` (`{theirs}` for `{ours}`): strip it, e.g. "
                    f"{{name.removeprefix('{prefix}'): tensor for name, tensor in tensors.items()}}")
    else:
        prefix = ours[: -len(theirs)]
        if all(name.removeprefix(prefix) in extra for name in missing):
            return f"its names lack the prefix `{prefix}` (`{theirs}` for `{ours}`): add it"
    return None


def load_weights(network: ir.Network, path: str | Path) -> dict[str, np.ndarray]:
    """Read a checkpoint and check it against ``network``; raise a located NindslError."""
    tensors, _ = read_tensors(path, _most_bytes(network))
    return check_weights(network, tensors, str(path))


def resolve(network: ir.Network, weights: str | Path | dict | None, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights for a backend: a checkpoint path, a dict (checked), or drawn from the init."""
    if weights is None:
        return initial_weights(network, seed)
    if isinstance(weights, dict):
        return check_weights(network, {k: np.asarray(v) for k, v in weights.items()}, "weights")
    return load_weights(network, weights)


def save_weights(path: str | Path, weights: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """Write safetensors atomically, replacing only a safetensors file."""
    from .kernel.outputs import CHECKPOINT

    atomic_write_bytes(path, checkpoint_bytes(weights, metadata), CHECKPOINT)


def checkpoint_bytes(weights: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """``weights`` as safetensors (tensors in name order: byte-identical for equal input)."""
    from safetensors.numpy import save

    ordered = {name: np.ascontiguousarray(weights[name]) for name in sorted(weights)}
    return save(ordered, metadata=metadata)


def numpy_refusal(error: BaseException) -> str:
    """Why numpy refused an .npy (or an .npz's member), in nindsl's words: numpy's own message
    may advise `allow_pickle=True`, which would let the file run code; nindsl never does.

    >>> numpy_refusal(ValueError("Object arrays cannot be loaded when allow_pickle=False"))
    'it holds Python objects (a pickle), which nindsl never loads: they could run code'
    """
    text = str(error)
    header = re.search(r"Header info length \((\d+)\)", text)
    if header:
        return f"its header is {int(header.group(1)):,} bytes, more than numpy reads safely (a damaged or hostile file?)"
    if "pickle" in text.lower():
        return "it holds Python objects (a pickle), which nindsl never loads: they could run code"
    return (text.splitlines() or [type(error).__name__])[0][:200]
