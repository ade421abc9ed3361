"""The layer registry: every kind of layer, registered once.

An entry holds all nindsl knows about a kind of layer: its IR class, the spec names and
signatures that build it, its shape rule, its ONNX lowering, its PyTorch twin code and
its one-line description. Every stage looks layers up here (:func:`kind`), so a new kind
of layer is one new entry (and its tests): CONTRIBUTING.md walks through adding one.

Nothing here imports ONNX or PyTorch: a lowering emits nodes through a :class:`Graph`
(the ONNX stage passes its builder), and twin code is Python source text.

>>> sorted(SIGNATURES)[:3]
['avgpool', 'batchnorm', 'conv']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from . import ir
from .signature import Param, Signature, fixed
from .windows import ShapeError, image, window


class Graph(Protocol):
    """What an ONNX lowering writes to: nodes in order, and weights by name."""

    def node(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        """Append a node; returns its output's name."""

    def weight(self, name: str) -> str:
        """Add the network's weight ``name`` as an initializer; returns its name."""


@dataclass(frozen=True)
class Twin:
    """One layer in the generated PyTorch module: its constructor, and how forward() calls it."""

    make: str  # e.g. "nn.Conv2d(3, 96, 5, stride=1, padding=2)"
    relu: bool = False  # forward applies ReLU (in place) to the layer's output
    helper: str = ""  # source of a helper class the constructor needs


@dataclass(frozen=True)
class LayerKind:
    """Everything nindsl knows about one kind of layer."""

    layer: type[ir.Layer]  # its IR class
    signatures: dict[str, Signature]  # spec names that build it, e.g. maxpool and avgpool
    shape: Callable[[Any, tuple], ir.LayerShape]  # (layer, input shape) → shapes, weights, mult-adds
    onnx: Callable[[Graph, Any, str], str]  # (graph, layer, input tensor) → output tensor
    twin: Callable[[Any, ir.LayerShape], Twin]  # (layer, its shapes) → PyTorch code
    describe: Callable[[Any], str]  # one line for `nindsl summary`
    width: str | None = None  # what sets its output channels, for hints ("`out`")


KINDS: dict[type[ir.Layer], LayerKind] = {}


def register(entry: LayerKind) -> LayerKind:
    if entry.layer in KINDS or any(name in SIGNATURES for name in entry.signatures):
        raise ValueError(f"{entry.layer.__name__} is registered twice")
    KINDS[entry.layer] = entry
    SIGNATURES.update(entry.signatures)
    return entry


SIGNATURES: dict[str, Signature] = {}  # spec name → signature, over every kind


def kind(layer: ir.Layer) -> LayerKind:
    """The registry entry of ``layer``'s class (a class without one is a bug, and says so)."""
    try:
        return KINDS[type(layer)]
    except KeyError:
        raise NotImplementedError(f"layer class {type(layer).__name__} is not registered in "
                                  "nindsl.language.layers") from None


# --- pieces several kinds share ------------------------------------------------------------

_INIT = (Param("init", "init", None), Param("lr_scale", "scale", 1.0), Param("bias_lr_scale", "scale", None))
# mlpconv's take one value, or a list with one per stage (Caffe sets them per convolution)
_STAGE_INIT = (Param("init", "inits", None), Param("lr_scale", "scales", 1.0), Param("bias_lr_scale", "scales", None))


@dataclass(frozen=True)
class Training:
    """How one weight starts and trains: its init (None: the train section's) and learning-rate scale."""

    init: ir.Init | None
    lr_scale: float


def training(layer: ir.Layer, weight: ir.Weight, bias_lr_scale: float = 1.0) -> Training:
    """A weight's init and learning-rate scale, from its layer (per stage for an mlpconv).

    A bias trains at ``lr_scale × bias_lr_scale``: the layer's own bias scale where it gives
    one, else ``bias_lr_scale`` (the train section's).
    """
    def pick(value):
        return value[weight.stage] if isinstance(value, tuple) else value

    scale = pick(getattr(layer, "lr_scale", 1.0))
    if weight.role == "bias":
        own = pick(getattr(layer, "bias_lr_scale", None))
        scale *= bias_lr_scale if own is None else own
    return Training(pick(getattr(layer, "init", None)) if weight.role == "weight" else None, scale)


def _conv_weights(label: str, c_out: int, c_in: int, kernel: int, stage: int = 0) -> tuple[ir.Weight, ir.Weight]:
    return (ir.Weight(f"{label}.weight", (c_out, c_in, kernel, kernel), "weight", stage),
            ir.Weight(f"{label}.bias", (c_out,), "bias", stage))


def _conv_node(graph: Graph, x: str, prefix: str, kernel: int, stride: int, pad: int, relu: bool) -> str:
    y = graph.node("Conv", [x, graph.weight(f"{prefix}.weight"), graph.weight(f"{prefix}.bias")], prefix,
                   kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
    return graph.node("Relu", [y], f"{prefix}.relu") if relu else y


def window_text(kernel: int, stride: int, pad: int) -> str:
    """`3×3/2 p1`: a window as the summary writes it."""
    text = f"{kernel}×{kernel}"
    if stride != 1:
        text += f"/{stride}"
    if pad:
        text += f" p{pad}"
    return text


def _same_shape(layer: ir.Layer, shape) -> ir.LayerShape:
    return ir.LayerShape(shape, shape)


# --- mlpconv: a k×k convolution, then 1×1 convolutions, ReLU after each ----------------------


@dataclass(frozen=True, kw_only=True)
class MlpConv(ir.Layer):
    """A k×k convolution to ``channels[0]``, then 1×1 convolutions; ReLU after each.

    ``init``, ``lr_scale`` and ``bias_lr_scale`` are one value for every stage, or a tuple
    with one per stage (the binder checks the length).
    """

    channels: tuple[int, ...]
    kernel: int
    stride: int = 1
    pad: int = 0
    init: ir.Init | tuple[ir.Init, ...] | None = None
    lr_scale: float | tuple[float, ...] = 1.0
    bias_lr_scale: float | tuple[float, ...] | None = None


def _mlpconv_shape(layer: MlpConv, shape) -> ir.LayerShape:
    n, c_in, _, _ = image(shape, "mlpconv")
    height, width = window(shape, layer.kernel, layer.stride, layer.pad, "mlpconv")
    weights, macs = [], 0
    for index, c_out in enumerate(layer.channels):
        kernel = layer.kernel if index == 0 else 1
        weights += _conv_weights(f"{layer.label}.{index}", c_out, c_in, kernel, index)
        macs += kernel * kernel * c_in * c_out * height * width
        c_in = c_out
    return ir.LayerShape(shape, (n, c_in, height, width), tuple(weights), macs)


def _mlpconv_onnx(graph: Graph, layer: MlpConv, x: str) -> str:
    for index in range(len(layer.channels)):
        first = index == 0
        x = _conv_node(graph, x, f"{layer.label}.{index}", layer.kernel if first else 1,
                       layer.stride if first else 1, layer.pad if first else 0, relu=True)
    return x


MLPCONV_HELPER = '''
class MlpConv(nn.ModuleList):
    """A k×k convolution, then 1×1 convolutions; ReLU after each (children `0`, `1`, ...)."""

    def __init__(self, c_in, channels, kernel, stride=1, pad=0):
        sizes = zip([c_in, *channels], channels)
        super().__init__(nn.Conv2d(i, o, kernel, stride, pad) if n == 0 else nn.Conv2d(i, o, 1)
                         for n, (i, o) in enumerate(sizes))

    def forward(self, x):
        for conv in self:
            x = torch.relu_(conv(x))  # in place: the convolution's output is not needed again
        return x
'''

register(LayerKind(
    MlpConv,
    {"mlpconv": Signature((Param("channels", "widths"), Param("kernel", "size"), Param("stride", "size", 1),
                           Param("pad", "count", 0), *_STAGE_INIT), MlpConv)},
    shape=_mlpconv_shape,
    onnx=_mlpconv_onnx,
    twin=lambda layer, shape: Twin(f"MlpConv({shape.in_shape[1]}, {list(layer.channels)}, kernel={layer.kernel}, "
                                   f"stride={layer.stride}, pad={layer.pad})", helper=MLPCONV_HELPER),
    describe=lambda l: f"mlpconv {window_text(l.kernel, l.stride, l.pad)} → {', '.join(map(str, l.channels))}",
    width="last width",
))


# --- conv: one convolution, ReLU or linear ---------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Conv(ir.Layer):
    out: int
    kernel: int
    stride: int = 1
    pad: int = 0
    act: str = "relu"  # relu | none
    init: ir.Init | None = None
    lr_scale: float = 1.0
    bias_lr_scale: float | None = None  # None: the train section's


def _conv_shape(layer: Conv, shape) -> ir.LayerShape:
    n, c_in, _, _ = image(shape, "conv")
    height, width = window(shape, layer.kernel, layer.stride, layer.pad, "conv")
    macs = layer.kernel ** 2 * c_in * layer.out * height * width
    return ir.LayerShape(shape, (n, layer.out, height, width),
                         _conv_weights(layer.label, layer.out, c_in, layer.kernel), macs)


register(LayerKind(
    Conv,
    {"conv": Signature((Param("out", "size"), Param("kernel", "size"), Param("stride", "size", 1),
                        Param("pad", "count", 0), Param("act", "act", "relu"), *_INIT), Conv)},
    shape=_conv_shape,
    onnx=lambda graph, layer, x: _conv_node(graph, x, layer.label, layer.kernel, layer.stride, layer.pad,
                                            relu=layer.act == "relu"),
    twin=lambda layer, shape: Twin(f"nn.Conv2d({shape.in_shape[1]}, {layer.out}, {layer.kernel}, "
                                   f"stride={layer.stride}, padding={layer.pad})", relu=layer.act == "relu"),
    describe=lambda l: f"conv {window_text(l.kernel, l.stride, l.pad)} → {l.out}" + ("" if l.act == "relu" else ", linear"),
    width="`out`",
))


# --- maxpool, avgpool ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Pool(ir.Layer):
    """Max or average pooling; ``ceil`` is Caffe's rounding (see windows.pool_size).

    An average pool divides each window by its size clipped to the *padded* input when
    ``count_pad`` (the default: Caffe's pooling_layer.cpp, PyTorch's count_include_pad=True),
    or by the input elements it covers when not. Without padding the two are the same.
    """

    mode: str  # max | avg
    kernel: int
    stride: int
    pad: int = 0
    ceil: bool = False
    count_pad: bool = True  # avg: the divisor is the window clipped to the padded input (Caffe's rule)


def _pool_build(mode: str):
    def build(*, kernel, stride, pad, round, count_pad=True, **common):
        return Pool(mode=mode, kernel=kernel, stride=stride or kernel, pad=pad, ceil=round == "ceil",
                    count_pad=count_pad, **common)
    return build


def _pool_shape(layer: Pool, shape) -> ir.LayerShape:
    n, c, _, _ = image(shape, f"{layer.mode}pool")
    height, width = window(shape, layer.kernel, layer.stride, layer.pad, f"{layer.mode}pool", layer.ceil)
    return ir.LayerShape(shape, (n, c, height, width))


def _pool_onnx(graph: Graph, layer: Pool, x: str) -> str:
    attributes = dict(kernel_shape=[layer.kernel] * 2, strides=[layer.stride] * 2, pads=[layer.pad] * 4,
                      ceil_mode=int(layer.ceil))
    if layer.mode == "avg":  # count_pad: ONNX's count_include_pad, clipped to the padded input as in Caffe
        return graph.node("AveragePool", [x], layer.label, count_include_pad=int(layer.count_pad), **attributes)
    return graph.node("MaxPool", [x], layer.label, **attributes)


def _pool_twin(layer: Pool, shape: ir.LayerShape) -> Twin:
    # Caffe's ceil rounding is PyTorch's ceil_mode with the spec's own padding (a `padding=1`
    # imitation gives the same shapes on even sizes but different numbers at the border).
    # PyTorch's count_include_pad=True divides by the window clipped to the padded input: Caffe's rule.
    args = f"{layer.kernel}, stride={layer.stride}, padding={layer.pad}, ceil_mode={layer.ceil}"
    if layer.mode == "avg":
        return Twin(f"nn.AvgPool2d({args}, count_include_pad={layer.count_pad})")
    return Twin(f"nn.MaxPool2d({args})")


def _pool_describe(layer: Pool) -> str:
    text = f"{layer.mode}pool {window_text(layer.kernel, layer.stride, layer.pad)}, {'ceil' if layer.ceil else 'floor'}"
    if layer.mode == "avg" and layer.pad:  # without padding both divisors are the same
        text += ", padding counted" if layer.count_pad else ", padding not counted"
    return text


_POOL = (Param("kernel", "size"), Param("stride", "size", None), Param("pad", "count", 0),
         Param("round", "round", "floor"))

register(LayerKind(
    Pool,
    {"maxpool": Signature(_POOL, _pool_build("max")),
     "avgpool": Signature((*_POOL, Param("count_pad", "bool", True)), _pool_build("avg"))},
    shape=_pool_shape,
    onnx=_pool_onnx,
    twin=_pool_twin,
    describe=_pool_describe,
))


# --- global_avgpool, global_maxpool: [N, C, H, W] → [N, C] -----------------------------------


@dataclass(frozen=True, kw_only=True)
class GlobalPool(ir.Layer):
    mode: str  # max | avg


def _global_pool_shape(layer: GlobalPool, shape) -> ir.LayerShape:
    n, c, _, _ = image(shape, f"global_{layer.mode}pool")
    return ir.LayerShape(shape, (n, c))


def _global_pool_onnx(graph: Graph, layer: GlobalPool, x: str) -> str:
    op = "GlobalAveragePool" if layer.mode == "avg" else "GlobalMaxPool"
    pooled = graph.node(op, [x], f"{layer.label}.pool")
    return graph.node("Flatten", [pooled], layer.label, axis=1)


GLOBAL_POOL_HELPER = '''
class GlobalPool(nn.Module):
    """Average (or max) over H and W: [N, C, H, W] → [N, C]."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        return x.mean(dim=(2, 3)) if self.mode == "avg" else x.amax(dim=(2, 3))
'''

register(LayerKind(
    GlobalPool,
    {"global_avgpool": Signature((), fixed(GlobalPool, mode="avg")),
     "global_maxpool": Signature((), fixed(GlobalPool, mode="max"))},
    shape=_global_pool_shape,
    onnx=_global_pool_onnx,
    twin=lambda layer, shape: Twin(f'GlobalPool("{layer.mode}")', helper=GLOBAL_POOL_HELPER),
    describe=lambda l: f"global {l.mode} pool",
))


# --- dropout: the identity at inference ------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Dropout(ir.Layer):
    p: float


register(LayerKind(
    Dropout,
    {"dropout": Signature((Param("p", "prob"),), Dropout)},
    shape=_same_shape,
    onnx=lambda graph, layer, x: x,  # inference graph: dropout is the identity
    twin=lambda layer, shape: Twin(f"nn.Dropout({layer.p})"),
    describe=lambda l: f"dropout {l.p:g}",
))


# --- softmax over the classes ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Softmax(ir.Layer):
    pass


def _softmax_shape(layer: Softmax, shape) -> ir.LayerShape:
    if len(shape) != 2:
        raise ShapeError(f"softmax needs an [N, classes] input, got {ir.format_shape(shape)}",
                         "put global_avgpool() (or flatten()) before softmax()", code="E0202")
    return ir.LayerShape(shape, shape)


register(LayerKind(
    Softmax,
    {"softmax": Signature((), Softmax)},
    shape=_softmax_shape,
    onnx=lambda graph, layer, x: graph.node("Softmax", [x], layer.label, axis=1),
    twin=lambda layer, shape: Twin("nn.Softmax(dim=1)"),
    describe=lambda l: "softmax",
))


# --- relu ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Relu(ir.Layer):
    pass


register(LayerKind(
    Relu,
    {"relu": Signature((), Relu)},
    shape=_same_shape,
    onnx=lambda graph, layer, x: graph.node("Relu", [x], layer.label),
    twin=lambda layer, shape: Twin("nn.ReLU()"),
    describe=lambda l: "relu",
))


# --- batchnorm over dim 1 ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BatchNorm(ir.Layer):
    eps: float = 1e-5
    momentum: float = 0.1


_BATCHNORM_ROLES = ("scale", "bias", "running_mean", "running_var")  # stored as weight, bias, ...


def _batchnorm_names(label: str) -> list[str]:
    return [f"{label}.{suffix}" for suffix in ("weight", "bias", "running_mean", "running_var")]


def _batchnorm_shape(layer: BatchNorm, shape) -> ir.LayerShape:
    weights = tuple(ir.Weight(name, (shape[1],), role)
                    for name, role in zip(_batchnorm_names(layer.label), _BATCHNORM_ROLES))
    return ir.LayerShape(shape, shape, weights)


def _batchnorm_onnx(graph: Graph, layer: BatchNorm, x: str) -> str:
    names = [graph.weight(name) for name in _batchnorm_names(layer.label)]
    return graph.node("BatchNormalization", [x, *names], layer.label, epsilon=layer.eps,
                      momentum=1.0 - layer.momentum)


BATCHNORM_HELPER = '''
class BatchNorm(nn.Module):
    """Batch normalisation over dim 1 of [N, C] or [N, C, H, W]; unlike nn.BatchNorm2d it keeps
    no `num_batches_tracked` counter, so its state is exactly the spec's four tensors."""

    def __init__(self, channels, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)
'''

register(LayerKind(
    BatchNorm,
    {"batchnorm": Signature((Param("eps", "positive", 1e-5), Param("momentum", "fraction", 0.1)), BatchNorm)},
    shape=_batchnorm_shape,
    onnx=_batchnorm_onnx,
    twin=lambda layer, shape: Twin(f"BatchNorm({shape.in_shape[1]}, eps={layer.eps}, momentum={layer.momentum})",
                                   helper=BATCHNORM_HELPER),
    describe=lambda l: "batchnorm",
))


# --- flatten: [N, ...] → [N, features] -------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Flatten(ir.Layer):
    pass


def _flatten_shape(layer: Flatten, shape) -> ir.LayerShape:
    features = 1
    for dim in shape[1:]:
        features *= dim
    return ir.LayerShape(shape, (shape[0], features))


register(LayerKind(
    Flatten,
    {"flatten": Signature((), Flatten)},
    shape=_flatten_shape,
    onnx=lambda graph, layer, x: graph.node("Flatten", [x], layer.label, axis=1),
    twin=lambda layer, shape: Twin("nn.Flatten()"),
    describe=lambda l: "flatten",
))


# --- dense: a fully connected layer ----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Dense(ir.Layer):
    out: int
    act: str = "none"  # relu | none
    init: ir.Init | None = None
    lr_scale: float = 1.0
    bias_lr_scale: float | None = None  # None: the train section's


def _dense_shape(layer: Dense, shape) -> ir.LayerShape:
    if len(shape) != 2:
        raise ShapeError(f"dense needs an [N, features] input, got {ir.format_shape(shape)}",
                         "put flatten() (or global_avgpool()) before dense()", code="E0202")
    n, features = shape
    weights = (ir.Weight(f"{layer.label}.weight", (layer.out, features), "weight"),
               ir.Weight(f"{layer.label}.bias", (layer.out,), "bias"))
    return ir.LayerShape(shape, (n, layer.out), weights, features * layer.out)


def _dense_onnx(graph: Graph, layer: Dense, x: str) -> str:
    y = graph.node("Gemm", [x, graph.weight(f"{layer.label}.weight"), graph.weight(f"{layer.label}.bias")],
                   layer.label, transB=1)
    return graph.node("Relu", [y], f"{layer.label}.relu") if layer.act == "relu" else y


register(LayerKind(
    Dense,
    {"dense": Signature((Param("out", "size"), Param("act", "act", "none"), *_INIT), Dense)},
    shape=_dense_shape,
    onnx=_dense_onnx,
    twin=lambda layer, shape: Twin(f"nn.Linear({shape.in_shape[1]}, {layer.out})", relu=layer.act == "relu"),
    describe=lambda l: f"dense → {l.out}" + (", relu" if l.act == "relu" else ""),
    width="`out`",
))
