"""Training data for ``nindsl train``: scikit-learn's digits, CIFAR folders, image folders,
``.npz`` files.

Every source becomes float32 images ``[N, C, H, W]`` in [0, 1] and int64 labels, checked
against the network's input shape and number of classes before any training starts::

    digits              1,797 real 8×8 digits shipped with scikit-learn (pixels 0..16 → 0..1)
    cifar10:FOLDER      the CIFAR-10 "python version": data_batch_1..5 and test_batch
    cifar100:FOLDER     the CIFAR-100 "python version": train and test (fine labels)
    imagefolder:FOLDER  one subfolder of images per class (torchvision's ImageFolder layout),
                        or `train/` and `val/` folders of such subfolders; labels follow the
                        sorted class names; images resized to the input (or to `resize`)
    FILE.npz            arrays `images` [N, C, H, W] or [N, H, W] and `labels` [N]

CIFAR is evaluated on its test batch, an image folder on its `val/` folder when it has one;
the rest hold out ``val_split`` of the examples, stratified, with a fixed seed, so every run
and every training seed is judged on the same images. A spec may name a kind without its
folder (``data = "cifar10"``): the folder then comes with ``--data cifar10:DIR``.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..language import ir
from ..kernel.diagnostics import NindslError
from ..kernel.io import regular_file
from ..language.ir import DATA_KINDS, format_shape
from ..weights import check_npz, numpy_refusal
from .images import IMAGE_SUFFIXES, read_image

SPLIT_SEED = 0  # the held-out split never changes with the training seed
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
_CIFAR = {  # kind → (folder name in the archive, training files, held-out files, label key)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels"),
}
USAGE = "digits | cifar10:FOLDER | cifar100:FOLDER | imagefolder:FOLDER | FILE.npz"
MAX_IMAGE_BYTES = 8 << 30  # an image folder is read into memory: refuse one larger than this as float32


@dataclass(frozen=True)
class Dataset:
    """Training and held-out examples (the held-out part may be empty)."""

    name: str
    train_images: np.ndarray  # float32 [N, C, H, W]
    train_labels: np.ndarray  # int64 [N]
    val_images: np.ndarray
    val_labels: np.ndarray
    class_names: tuple[str, ...] = ()  # an image folder's, in label order


def _bad(message: str, help: str | None = None) -> NindslError:
    return NindslError.one("E0503", message, None, help)


def load_data(network: ir.Network, data: str | None = None) -> Dataset:
    """Read ``data`` (default: the spec's ``train { data = ... }``) and check it fits the network."""
    data = data or network.train.data
    kind, sep, rest = data.partition(":")
    if kind in DATA_KINDS and kind != "digits" and not (sep and rest):
        where = "the spec's `train` section names" if data == network.train.data else "--data names"
        raise NindslError.one("E0504", f"{where} `{kind}` without its folder", network.train.span,
                              f"pass --data {kind}:DIR, DIR holding {DATA_KINDS[kind]}")
    if sep and kind in _CIFAR:
        train, val = _cifar(kind, Path(rest))
        dataset = Dataset(data, *train, *val)
    elif sep and kind == "imagefolder":
        dataset = _image_folder(network, data, Path(rest))
    elif data == "digits":
        dataset = Dataset(data, *_split(*_digits(), network.train.val_split))
    elif data.endswith(".npz"):
        dataset = Dataset(data, *_split(*_npz(Path(data)), network.train.val_split))
    else:
        raise _bad(f"unknown data set `{data}`", f"use {USAGE}")
    if not len(dataset.train_labels):
        raise _bad(f"`{data}` has no training examples")
    for images, labels in ((dataset.train_images, dataset.train_labels), (dataset.val_images, dataset.val_labels)):
        _check(network, images, labels, data)
    return dataset


# --- image folders ---------------------------------------------------------------------------


def _classes_in(folder: Path) -> dict[str, list[Path]]:
    """Class name → its image files (sorted), for each subfolder of ``folder`` that holds images."""
    found = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in sub.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                       and not p.name.startswith("."))
        if files:
            found[sub.name] = files
    return found


def _image_folder(network: ir.Network, data: str, folder: Path) -> Dataset:
    layout = ("one subfolder of images per class (FOLDER/cat/1.png, FOLDER/dog/2.jpg, ...), "
              "or train/ and val/ folders laid out so")
    if not folder.is_dir():
        raise _bad(f"no such folder `{folder}` for imagefolder", f"the folder should hold {layout}")
    split = (folder / "train").is_dir() and (folder / "val").is_dir()
    parts = [_classes_in(folder / "train"), _classes_in(folder / "val")] if split else [_classes_in(folder)]
    names = tuple(sorted(set().union(*parts)))
    if not parts[0]:
        raise _bad(f"`{folder}` holds no class folders of images ({', '.join(sorted(IMAGE_SUFFIXES))})",
                   f"the folder should hold {layout}")
    shape = network.input.shape
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        raise _bad(f"image folders need an image input [N, C, H, W]; `{network.input.name}` is "
                   f"{format_shape(shape)}")
    channels = shape[1]
    height, width = (network.train.resize,) * 2 if network.train.resize else shape[2:]
    count = sum(len(files) for part in parts for files in part.values())
    if count * channels * height * width * 4 > MAX_IMAGE_BYTES:
        raise _bad(f"`{folder}` holds {count:,} images: {count * channels * height * width * 4 / 2**30:.1f} GiB "
                   f"at {channels}×{height}×{width}, more than nindsl reads into memory "
                   f"({MAX_IMAGE_BYTES / 2**30:.0f} GiB)", "train on a subset, or at a smaller `resize`")

    def read(part: dict[str, list[Path]]) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(path, names.index(name)) for name, files in part.items() for path in files]
        if not pairs:
            return np.zeros((0, channels, height, width), np.float32), np.zeros(0, np.int64)
        images = np.stack([read_image(path, channels, height, width) for path, _ in pairs])
        return images, np.array([label for _, label in pairs], np.int64)

    if split:
        return Dataset(data, *read(parts[0]), *read(parts[1]), class_names=names)
    return Dataset(data, *_split(*read(parts[0]), network.train.val_split), class_names=names)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images[:, None] / 16.0).astype(np.float32), digits.target.astype(np.int64)


def _split(images: np.ndarray, labels: np.ndarray, fraction: float) -> tuple[np.ndarray, ...]:
    """Hold out ``fraction`` of each class (at least one example of a class that has two)."""
    rng = np.random.default_rng(SPLIT_SEED)
    held = np.zeros(len(labels), dtype=bool)
    if fraction > 0:
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            count = min(len(members) - 1, max(1, round(len(members) * fraction)))
            held[members[:count]] = True
    return images[~held], labels[~held], images[held], labels[held]


def _npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    expected = "an .npz file with arrays `images` [N, C, H, W] (or [N, H, W]) and `labels` [N]"
    if not path.exists() and not path.is_symlink():
        raise _bad(f"no such data file `{path}`", f"expected {expected}")
    regular_file(path, "an .npz", MAX_IMAGE_BYTES)  # a FIFO would block np.load, a device never end
    check_npz(path, MAX_IMAGE_BYTES, "a data set")  # what it decompresses to, before it does
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in ("images", "labels") if name in archive.files}
            names = archive.files
    except FileNotFoundError:
        raise _bad(f"no such data file `{path}`", f"expected {expected}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise _bad(f"cannot read `{path}` as .npz ({numpy_refusal(error)})", f"expected {expected}") from None
    missing = [name for name in ("images", "labels") if name not in arrays]
    if missing:
        raise _bad(f"`{path}` has no array {' or '.join(f'`{m}`' for m in missing)} "
                   f"(it has: {', '.join(names) or 'nothing'})", f"expected {expected}")
    images, labels = arrays["images"], arrays["labels"]
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise _bad(f"`images` in `{path}` has shape {list(images.shape)}", f"expected {expected}")
    if images.dtype == np.uint8:
        images = images / 255.0
    elif not np.issubdtype(images.dtype, np.floating):
        raise _bad(f"`images` in `{path}` is {images.dtype}", "use uint8 pixels (0..255, scaled to 0..1) "
                                                               "or floating point (used as they are)")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise _bad(f"`labels` in `{path}` is {labels.dtype} {list(labels.shape)}; expected integers [N]")
    if len(labels) != len(images):
        raise _bad(f"`{path}` has {len(images)} images but {len(labels)} labels")
    return images.astype(np.float32), labels.astype(np.int64)


# --- CIFAR's python batches ------------------------------------------------------------------


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Reads CIFAR's pickled batches without letting them run code.

    A pickle runs code only by naming a callable (``find_class``) and calling it. Here
    the only callables are numpy's array and dtype rebuilders, which allocate an array of
    a given dtype and fill it from bytes, and a latin-1 text-to-bytes conversion (how
    protocol 2 spells bytes in Python 3); dicts, lists, bytes, strings and numbers need
    no lookup at all. Anything else (``os.system``, ``builtins.eval``...) is refused
    before it is imported.
    """

    @staticmethod
    def _allowed() -> dict[tuple[str, str], object]:
        try:
            from numpy._core import multiarray, numeric
        except ImportError:  # numpy < 2
            from numpy.core import multiarray, numeric  # type: ignore[no-redef]
        objects = {"_reconstruct": multiarray._reconstruct, "ndarray": np.ndarray, "dtype": np.dtype,
                   "_frombuffer": getattr(numeric, "_frombuffer", None)}
        modules = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                   "numpy._core.numeric")
        allowed = {(m, n): obj for m in modules for n, obj in objects.items() if obj is not None}
        return allowed | {("_codecs", "encode"): _latin1}

    def find_class(self, module: str, name: str) -> object:
        allowed = self._allowed()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"it asks for `{module}.{name}`, which may run code; "
                                         "a CIFAR batch holds only numpy arrays and lists")
        return allowed[(module, name)]


def _latin1(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"it asks to encode text as `{encoding}`; only latin1 is allowed")
    return text.encode("latin1")


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = _NumpyOnlyUnpickler(handle, encoding="bytes").load()
        batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
        pixels, labels = np.asarray(batch["data"]), np.asarray(batch[label_key])
        if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3 * 32 * 32:
            raise ValueError(f"`data` is {pixels.dtype} {list(pixels.shape)}, not uint8 [N, 3072]")
        if labels.shape != (len(pixels),) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"`{label_key}` does not hold one integer per image")
    except OSError as error:
        raise NindslError.one("E0301", f"cannot read `{path}`: {error.strerror}", None) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, AttributeError,
            IndexError) as error:
        raise _bad(f"`{path}` is not a CIFAR python batch: {error}",
                   f"expected a pickled dict with `data` (uint8 [N, 3072]) and `{label_key}`; "
                   f"get the python version from {CIFAR_URL}") from None
    return (pixels.reshape(-1, 3, 32, 32) / 255.0).astype(np.float32), labels.astype(np.int64)


def _cifar(kind: str, folder: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    subfolder, train_files, test_files, label_key = _CIFAR[kind]
    if (folder / subfolder).is_dir():
        folder = folder / subfolder
    layout = f"{', '.join(train_files + test_files)} (in `{subfolder}/` as extracted from the python archive)"
    if not folder.is_dir():
        raise _bad(f"no such folder `{folder}` for {kind}", f"the folder should hold {layout}; see {CIFAR_URL}")
    missing = [name for name in train_files + test_files if not (folder / name).is_file()]
    if missing:
        raise _bad(f"`{folder}` is not a {kind} folder: it has no {', '.join(f'`{m}`' for m in missing)}",
                   f"the folder should hold {layout}; see {CIFAR_URL}")

    def read(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        parts = [_read_batch(folder / name, label_key) for name in names]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    return read(train_files), read(test_files)


# --- checks -----------------------------------------------------------------------------------


def classes(network: ir.Network) -> int:
    """How many classes the network scores: its output must be [N, classes]."""
    shape = network.output.shape
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise NindslError.one("E0202", f"training needs an [N, classes] output; `{network.output.name}` is "
                                       f"{format_shape(shape)}", network.output.span,
                              "end the network with global_avgpool() (and softmax())")
    return shape[1]


def _check(network: ir.Network, images: np.ndarray, labels: np.ndarray, origin: str) -> None:
    expected = tuple(network.input.shape[1:])
    resize = network.train.resize
    stored = (expected[0], resize, resize) if resize and len(expected) == 3 else expected
    if tuple(images.shape[1:]) not in (expected, stored):
        got = "×".join(map(str, images.shape[1:]))
        raise NindslError.one("E0503", f"`{origin}` has {got} images but the network's input "
                                       f"`{network.input.name}` is {format_shape(network.input.shape)}",
                              network.input.span, _fitting_data(expected))
    count = classes(network)
    if len(labels) and (labels.min() < 0 or labels.max() >= count):
        raise NindslError.one("E0503", f"`{origin}` has labels {labels.min()}..{labels.max()} but the network "
                                       f"scores {count} classes (0..{count - 1})", network.output.span,
                              "set the number of classes to match, e.g. `--set classes=100`")
    if not np.isfinite(images).all():
        raise _bad(f"`{origin}` has images with NaN or infinite values")


def _fitting_data(expected: tuple) -> str:
    """The `--data` values that would fit an input of shape ``expected`` [C, H, W]."""
    shown = "×".join(map(str, expected))
    fits = [kind for kind, shape in (("digits", (1, 8, 8)), ("cifar10:DIR", (3, 32, 32)),
                                     ("cifar100:DIR", (3, 32, 32))) if shape == expected]
    if len(expected) == 3 and expected[0] in (1, 3):
        fits.append("imagefolder:DIR (images resized to the input)")
    fits.append(f"FILE.npz of {shown} images")
    return f"pass --data {' or '.join(fits)}; or change the spec's input"
