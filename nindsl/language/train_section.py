"""The `train { ... }` section → :class:`~nindsl.language.ir.TrainConfig`.

Each setting is evaluated, converted to its kind (:data:`TRAIN_SETTINGS`) and checked
against the network's input (a mean per channel, a crop the image fits); `data` must name
a known data set and stay inside the project (:mod:`nindsl.language.data_paths`).
"""

from __future__ import annotations

import math
from typing import Any

from ..kernel import limits
from ..kernel.diagnostics import Collector, Note, Span, did_you_mean
from . import ir
from . import syntax as ast
from .binding import FAILED, Binder
from .data_paths import DataPlace, data_inside, data_known
from .evaluate import ValueMistake, evaluate

#: The `train { ... }` settings: name → the kind of value it takes (defaults: ir.TrainConfig's)
TRAIN_SETTINGS: dict[str, str] = {
    "epochs": "size", "batch": "size", "optimizer": "optimizer", "schedule": "schedule", "init": "init",
    "bias_lr_scale": "scale", "data": "string", "val_split": "fraction", "seed": "count",
    "patience": "count", "crop_pad": "count", "flip": "bool", "resize": "count", "mean": "numbers",
    "std": "numbers",
}


def train_section(node: ast.TrainDef | None, constants, errors: Collector, image: ir.TensorSpec | None,
                  place: DataPlace = DataPlace(None, None)) -> ir.TrainConfig:
    """The `train` section's settings, each converted and checked (defaults without one)."""
    if node is None:
        return ir.TrainConfig()
    binder = Binder(errors)
    values: dict[str, Any] = {}
    seen: dict[str, Span | None] = {}
    for setting in node.settings:
        if setting.name not in TRAIN_SETTINGS:
            errors.error("E0102", f"unknown training setting `{setting.name}`", setting.span,
                         did_you_mean(setting.name, TRAIN_SETTINGS) or f"settings: {', '.join(TRAIN_SETTINGS)}")
            continue
        if setting.name in seen:
            errors.error("E0103", f"`{setting.name}` is set twice", setting.span,
                         notes=[Note("first set here", seen[setting.name])])
            continue
        seen[setting.name] = setting.span
        try:
            value = evaluate(setting.value, constants)
            converted = binder.convert(TRAIN_SETTINGS[setting.name], value, f"`{setting.name}`",
                                       setting.value.span, setting.value, constants)
        except ValueMistake as error:
            errors.error(error.code, error.message, error.span or setting.value.span, error.help)
            continue
        if converted is FAILED:
            continue
        if setting.name == "data":
            if not data_known(converted, setting.value.span, errors):
                continue
            converted = data_inside(converted, setting.value.span, errors, place)
            if converted is None:
                continue
        if not _fits_input(setting.name, converted, image, setting.value.span, errors):
            continue
        values[setting.name] = converted
    return ir.TrainConfig(**values, span=node.span)


def _fits_input(name: str, value: Any, image: ir.TensorSpec | None, span: Span | None, errors: Collector) -> bool:
    """Preprocessing settings that must agree with the input: a value per channel, a size it can crop."""
    shape = image.shape if image is not None else ()
    if name in ("crop_pad", "flip", "resize", "mean", "std") and value and len(shape) != 4:
        errors.error("E0107", f"`{name}` is for image inputs [N, C, H, W]", span)
        return False
    if name in ("mean", "std") and len(value) not in (1, shape[1]):
        errors.error("E0107", f"`{name}` has {len(value)} values; the input has {shape[1]} channel"
                              f"{'s' if shape[1] != 1 else ''}", span,
                     "give one value per channel, or one for all")
        return False
    if name == "std" and min(value) <= 0:
        errors.error("E0107", "`std` must be greater than 0", span)
        return False
    if name == "resize" and value > limits.MAX_RESIZE:
        errors.error("E0401", f"`resize = {value:,}` is over the limit of {limits.MAX_RESIZE:,}", span,
                     "images are read at resize×resize before they are cropped to the input")
        return False
    if name == "resize" and value and any(isinstance(d, int) and value < d for d in shape[2:]):
        errors.error("E0107", f"`resize = {value}` is smaller than the input's {shape[2]}×{shape[3]}", span,
                     "images are resized to resize×resize and then cropped to the input: use at least its size")
        return False
    return True


def preprocess_mistake(record: object, shape: tuple) -> str | None:
    """What is wrong with how images are prepared, as a model records it (ONNX metadata, an
    artifact's manifest: :attr:`ir.TrainConfig.preprocess`), for an input of ``shape``, by the
    rules of a train section's `resize`, `mean` and `std`; None when nothing is.

    >>> preprocess_mistake({"resize": 10**9}, ("N", 3, 32, 32))
    '`resize` is 1000000000: a whole number from 0 to 8,192'
    """
    if not isinstance(record, dict):
        return f"is {type(record).__name__}, not an object of `resize`, `mean` and `std`"
    unknown = sorted(str(key)[:40] for key in set(record) - {"resize", "mean", "std"})
    if unknown:
        return f"has {', '.join(f'`{key}`' for key in unknown[:3])}, which nindsl does not know"
    resize = record.get("resize", 0)
    if type(resize) is not int or not 0 <= resize <= limits.MAX_RESIZE:
        return f"`resize` is {str(resize)[:40]}: a whole number from 0 to {limits.MAX_RESIZE:,}"
    sides = [d for d in shape[2:] if isinstance(d, int)] if len(shape) == 4 else []
    if resize and any(resize < side for side in sides):
        return f"`resize` is {resize}, smaller than the input's {shape[2]}×{shape[3]}"
    channels = shape[1] if len(shape) == 4 and isinstance(shape[1], int) else None
    for name in ("mean", "std"):
        values = record.get(name, [])
        if not isinstance(values, list) or not all(type(v) in (int, float) and math.isfinite(v) for v in values):
            return f"`{name}` is not a list of numbers"
        if values and len(values) not in (1, channels or len(values)):
            return f"`{name}` has {len(values)} values for {channels} channels"
        if name == "std" and any(v <= 0 for v in values):
            return "`std` has a value that is not greater than 0"
    return None
