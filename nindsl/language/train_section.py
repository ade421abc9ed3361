"""The `train { ... }` section → :class:`~nindsl.language.ir.TrainConfig`.

Each setting is evaluated, converted to its kind (:data:`TRAIN_SETTINGS`) and checked
against the network's input (a mean per channel, a crop the image fits); `data` must name
a known data set and stay inside the project (:mod:`nindsl.language.data_paths`).
"""

from __future__ import annotations

from typing import Any

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
    if name == "resize" and value and any(isinstance(d, int) and value < d for d in shape[2:]):
        errors.error("E0107", f"`resize = {value}` is smaller than the input's {shape[2]}×{shape[3]}", span,
                     "images are resized to resize×resize and then cropped to the input: use at least its size")
        return False
    return True
