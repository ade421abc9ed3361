"""Image files to network inputs, the one way training and ``nindsl run`` both read them.

numpy and Pillow only (no torch), so ``nindsl run`` on an ONNX model uses it too. An image
is converted to the input's channels (grey or RGB), resized to ``resize``×``resize`` when the
train section sets ``resize`` (else straight to the input's height and width), scaled to
[0, 1]; at run time it is then cropped to the input at its centre and normalised with the
train section's ``mean`` and ``std``, as training evaluated it::

>>> import numpy as np
>>> normalise(np.ones((1, 3, 2, 2), np.float32), {"mean": [0.5], "std": [0.25]})[0, 0, 0, 0]
2.0
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..kernel.diagnostics import NindslError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def _bad(message: str, help: str | None = None) -> NindslError:
    return NindslError.one("E0503", message, None, help)


def read_image(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    """One image file as float32 [channels, height, width] in [0, 1] (resized, bilinear)."""
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise _bad(f"images have 1 or 3 channels; this model takes {channels}")
    try:
        with Image.open(path) as image:  # the structure first: a PNG cut short of its end decodes "fine"
            image.verify()
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
            array = np.asarray(image, dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise NindslError.one("E0301", f"no such file `{path}`", None) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error) as error:
        raise _bad(f"`{path}` is not a readable image ({error})",
                   "is the file truncated or damaged? save it again") from None
    except Image.DecompressionBombError as error:  # a small file that decodes to gigabytes
        raise _bad(f"`{path}` is refused: {error}", "resize the image before giving it to nindsl") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def stored_size(preprocess: dict, height: int, width: int) -> tuple[int, int]:
    """The size image files are read at: resize×resize, or the input's own."""
    resize = preprocess.get("resize") or 0
    return (resize, resize) if resize else (height, width)


def centre_crop(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """The central height×width window of [N, C, H, W] images (what evaluation sees)."""
    top, left = (images.shape[2] - height) // 2, (images.shape[3] - width) // 2
    return images[:, :, top: top + height, left: left + width]


def normalise(images: np.ndarray, preprocess: dict) -> np.ndarray:
    """(images − mean) / std per channel, when the train section sets them."""
    channels = images.shape[1]
    mean = np.asarray(preprocess.get("mean") or [0.0], np.float32)
    std = np.asarray(preprocess.get("std") or [1.0], np.float32)
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):  # (no division by 0)
        raise _bad(f"images are to be normalised with mean {mean.tolist()} and std {std.tolist()}: the std must "
                   "be greater than 0 and both finite", "was the model's recorded preprocessing changed? compile "
                   "the spec again")
    shape = (1, channels if len(mean) > 1 or len(std) > 1 else 1, 1, 1)
    return ((images - np.broadcast_to(mean, shape[1:2]).reshape(shape))
            / np.broadcast_to(std, shape[1:2]).reshape(shape)).astype(np.float32)


def load_images(paths: list[Path], channels: int, height: int, width: int, preprocess: dict) -> np.ndarray:
    """Image files as one float32 batch [N, C, H, W], prepared as training evaluated images."""
    size = stored_size(preprocess, height, width)
    batch = np.stack([read_image(path, channels, *size) for path in paths])
    return normalise(centre_crop(batch, height, width), preprocess)
