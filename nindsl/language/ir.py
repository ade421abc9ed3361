"""The typed IR: a checked network is an input, a stack of layers and an output.

Small frozen dataclasses; spans are kept out of equality. Change a node with
:func:`dataclasses.replace`. Per-layer behaviour (shape rule, ONNX lowering, PyTorch
twin) lives in tables keyed by these classes, each with a test that every layer class
appears in it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Union

from ..kernel.diagnostics import Source, Span, span_field

Dim = Union[int, str]  # a size, or the name of the symbolic batch dimension


@dataclass(frozen=True)
class Init:
    """How a layer's weights are drawn; biases always start at 0."""

    kind: str = "normal"  # normal | xavier | kaiming
    std: float = 0.01  # for `normal`
    mean: float = 0.0


def format_shape(shape) -> str:
    """``[N, 3, 32, 32]``: how every message and report writes a shape."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def values_per_example(shape) -> int:
    """How many values one example of a [N, ...] tensor holds.

    >>> values_per_example(("N", 3, 32, 32))
    3072
    """
    count = 1
    for dim in shape[1:]:
        count *= dim
    return count


def shape_fits(expected, shape) -> bool:
    """Does an array shape fit a declared one (a named batch dimension takes any size)?

    >>> shape_fits(("N", 3, 8, 8), (5, 3, 8, 8)), shape_fits((1, 3, 8, 8), (5, 3, 8, 8))
    (True, False)
    """
    return len(shape) == len(expected) and all(not isinstance(e, int) or e == a for e, a in zip(expected, shape))



# --- layers ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Layer:
    """The base of every layer class; the classes and all they need are in layers.py."""

    label: str  # the name its weights are called after
    span: Span | None = span_field()


# --- training settings (validated by the checker, used by the PyTorch twin) --------


@dataclass(frozen=True)
class Sgd:
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False


@dataclass(frozen=True)
class Schedule:
    """``step(every, gamma)``, ``multistep(milestones, gamma)``, ``cosine()`` or ``constant()``."""

    kind: str = "constant"
    every: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1


DEFAULT_BATCH = 64
MIN_STEPS = 8  # an epoch of a small data set still takes this many steps under the default batch


def default_batch(examples: int, world: int = 1) -> int:
    """The batch of a spec that sets none: 64, or smaller for a small data set, so that an epoch
    takes at least :data:`MIN_STEPS` steps (at least ``world`` examples, one per process, and a
    multiple of it): 80 images at batch 64 would learn from one step an epoch.

    >>> default_batch(1437), default_batch(64), default_batch(10)
    (64, 8, 1)
    """
    batch = max(1, min(DEFAULT_BATCH, examples // MIN_STEPS))
    return max(world, batch - batch % world)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch: int | None = None  # None: default_batch of the training set's size
    optimizer: Sgd = Sgd(lr=0.01, momentum=0.9)
    schedule: Schedule = Schedule()
    init: Init | None = None  # None: He (kaiming) for layers a ReLU follows, Glorot (xavier) for others
    bias_lr_scale: float = 1.0  # Caffe's reference nets train biases at 2×
    data: str = "digits"  # a data set nindsl knows (DATA_KINDS), `KIND:PATH`, or FILE.npz
    val_split: float = 0.2
    seed: int = 0
    patience: int = 0  # stop after this many epochs without a better held-out accuracy (0: never)
    # augmentation and preprocessing (random streams from (seed, epoch, rank), as for dropout)
    crop_pad: int = 0  # random crops of the input's size from images padded by this many pixels
    flip: bool = False  # random horizontal flips
    resize: int = 0  # image files are resized to resize×resize, then cropped to the input (0: to the input)
    mean: tuple[float, ...] = ()  # per channel (or one for all), subtracted after augmentation
    std: tuple[float, ...] = ()  # per channel (or one for all), divided by after subtracting the mean
    span: Span | None = span_field()

    @property
    def preprocess(self) -> dict:
        """What is done to an image file before the network sees it, beyond scaling pixels to
        [0, 1]: recorded in ONNX metadata so that `nindsl run` on images does the same.

        >>> TrainConfig(mean=(0.5,), std=(0.25,)).preprocess
        {'mean': [0.5], 'std': [0.25]}
        """
        made = {"resize": self.resize, "mean": list(self.mean), "std": list(self.std)}
        return {key: value for key, value in made.items() if value}


#: The data sets nindsl knows: `KIND` in a spec (the folder then comes with `--data KIND:DIR`)
#: or `KIND:DIR`; any `FILE.npz` too.
DATA_KINDS: dict[str, str] = {
    "digits": "scikit-learn's 1,797 8×8 digits (1×8×8, 10 classes; no folder)",
    "cifar10": "CIFAR-10's python version (3×32×32, 10 classes)",
    "cifar100": "CIFAR-100's python version (3×32×32, 100 classes)",
    "imagefolder": "a folder with one subfolder of images per class (any size, resized to the input)",
}


# --- the network -------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[Dim, ...]
    span: Span | None = span_field()


@dataclass(frozen=True)
class Weight:
    """One named tensor of a layer, as ONNX, the twin and checkpoints call it."""

    name: str
    shape: tuple[int, ...]
    role: str  # weight | bias | scale (batch norm's) | running_mean | running_var
    stage: int = 0  # which stage of an mlpconv it belongs to (per-stage init and learning rates)

    @property
    def size(self) -> int:
        size = 1
        for dim in self.shape:
            size *= dim
        return size

    @property
    def trainable(self) -> bool:
        return self.role in ("weight", "bias", "scale")


@dataclass(frozen=True)
class LayerShape:
    """What the checker inferred for one layer."""

    in_shape: tuple[Dim, ...]
    out_shape: tuple[Dim, ...]
    weights: tuple[Weight, ...] = ()
    macs: int = 0  # multiply-adds per example

    @property
    def params(self) -> int:
        return sum(w.size for w in self.weights if w.trainable)


@dataclass(frozen=True)
class Network:
    name: str
    input: TensorSpec
    output: TensorSpec
    layers: tuple[Layer, ...]
    shapes: tuple[LayerShape, ...] = ()  # filled by shapes.infer, one per layer
    params: tuple[tuple[str, object], ...] = ()  # the network parameters' final values
    train: TrainConfig = TrainConfig()
    sources: tuple[Source, ...] = span_field()  # the spec and every file it imports

    @property
    def total_params(self) -> int:
        return sum(s.params for s in self.shapes)

    @property
    def total_macs(self) -> int:
        return sum(s.macs for s in self.shapes)

    @property
    def weights(self) -> tuple[Weight, ...]:
        return tuple(w for s in self.shapes for w in s.weights)

    @property
    def spec_hash(self) -> str:
        """sha256 of the sources and parameter values this network was built from."""
        digest = hashlib.sha256()
        for source in self.sources or ():  # texts only: the same spec hashes alike anywhere
            digest.update(source.text.encode() + b"\0")
        digest.update(repr(self.params).encode())
        return digest.hexdigest()

    @property
    def batch_dim(self) -> Dim:
        return self.input.shape[0]
