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


# --- layers ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Layer:
    label: str  # the name its weights are called after
    span: Span | None = span_field()


@dataclass(frozen=True, kw_only=True)
class MlpConv(Layer):
    """A k×k convolution to ``channels[0]``, then 1×1 convolutions; ReLU after each."""

    channels: tuple[int, ...]
    kernel: int
    stride: int = 1
    pad: int = 0
    init: Init | None = None
    lr_scale: float = 1.0


@dataclass(frozen=True, kw_only=True)
class Conv(Layer):
    out: int
    kernel: int
    stride: int = 1
    pad: int = 0
    act: str = "relu"  # relu | none
    init: Init | None = None
    lr_scale: float = 1.0


@dataclass(frozen=True, kw_only=True)
class Pool(Layer):
    """Max or average pooling; ``ceil`` is Caffe's rounding (see shapes.pool_size)."""

    mode: str  # max | avg
    kernel: int
    stride: int
    pad: int = 0
    ceil: bool = False


@dataclass(frozen=True, kw_only=True)
class GlobalPool(Layer):
    mode: str  # max | avg


@dataclass(frozen=True, kw_only=True)
class Dropout(Layer):
    p: float


@dataclass(frozen=True, kw_only=True)
class Softmax(Layer):
    pass


@dataclass(frozen=True, kw_only=True)
class Relu(Layer):
    pass


@dataclass(frozen=True, kw_only=True)
class BatchNorm(Layer):
    eps: float = 1e-5
    momentum: float = 0.1


@dataclass(frozen=True, kw_only=True)
class Flatten(Layer):
    pass


@dataclass(frozen=True, kw_only=True)
class Dense(Layer):
    out: int
    act: str = "none"  # relu | none
    init: Init | None = None
    lr_scale: float = 1.0


LAYER_CLASSES: tuple[type[Layer], ...] = (
    MlpConv, Conv, Pool, GlobalPool, Dropout, Softmax, Relu, BatchNorm, Flatten, Dense)

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


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch: int = 64
    optimizer: Sgd = Sgd(lr=0.01, momentum=0.9)
    schedule: Schedule = Schedule()
    init: Init = Init()
    bias_lr_scale: float = 1.0  # Caffe's reference nets train biases at 2×
    data: str = "digits"
    val_split: float = 0.2
    seed: int = 0
    span: Span | None = span_field()


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
    role: str  # weight | bias | running_mean | running_var

    @property
    def size(self) -> int:
        size = 1
        for dim in self.shape:
            size *= dim
        return size

    @property
    def trainable(self) -> bool:
        return self.role in ("weight", "bias")


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
