"""Caffe → spec: a net's prototxt (old ``layers { type: CONVOLUTION }`` or new ``layer { type:
"Convolution" }``) and, if given, its .caffemodel weights.

Parsed with protobuf against the schema in :mod:`caffe_schema` (text format for the prototxt,
wire format for the weights). The layers must form a chain from the input: a convolution
followed by a ReLU, then 1×1 stride-1 convolutions each followed by a ReLU, become one mlpconv,
with Caffe's per-blob learning rates (``blobs_lr`` / ``param { lr_mult }``: weight → ``lr_scale``,
bias ÷ weight → ``bias_lr_scale``) and weight fillers (``init``) per stage; pooling rounds up
(``round = ceil``), as Caffe's does; a pool over the whole map is ``global_avgpool()``. Loss and
accuracy layers (training heads) are left out. Any other layer type is an error naming the
layer; nothing is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..kernel import limits
from ..kernel.diagnostics import NindslError, Source, Span
from ..kernel.io import regular_file
from .caffe_schema import V1_TYPES, messages
from .spec import IDENTIFIER, Imported, Labels, label

# V1's enum names → the new layer type strings
_V1_NAMES = {"CONVOLUTION": "Convolution", "RELU": "ReLU", "POOLING": "Pooling", "DROPOUT": "Dropout",
             "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "ACCURACY": "Accuracy", "DATA": "Data",
             "IMAGE_DATA": "ImageData", "HDF5_DATA": "HDF5Data", "MEMORY_DATA": "MemoryData",
             "WINDOW_DATA": "WindowData", "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss",
             "HINGE_LOSS": "HingeLoss", "INFOGAIN_LOSS": "InfogainLoss", "SILENCE": "Silence",
             "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
             "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "INNER_PRODUCT": "InnerProduct"}
_V1_BY_NUMBER = {number: _V1_NAMES.get(name, name) for name, number in V1_TYPES.items()}
_DATA = {"Data", "ImageData", "HDF5Data", "MemoryData", "WindowData", "DummyData", "Input"}
_HEADS = {"SoftmaxWithLoss", "Accuracy", "EuclideanLoss", "HingeLoss", "InfogainLoss", "MultinomialLogisticLoss",
          "SigmoidCrossEntropyLoss", "Silence"}
_SUPPORTED = "Convolution, ReLU, Pooling (MAX, AVE), Dropout, Softmax, Input/Data, SoftmaxWithLoss and Accuracy"


@dataclass
class _Layer:
    name: str
    type: str
    bottom: list[str]
    top: list[str]
    lrs: list[float]
    message: object
    span: Span | None = None

    def where(self) -> str:
        return f"layer `{self.name}` ({self.type})"


@dataclass
class _Stage:
    layer: _Layer
    out: int
    kernel: int
    stride: int
    pad: int
    weight_lr: float
    bias_lr: float
    init: str | None
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None


@dataclass
class _State:
    shape: list[int]  # C, H, W
    lines: list[str] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    taken: Labels = field(default_factory=Labels)  # (numbering each fallback from where it got to)
    origins: dict[str, object] = field(default_factory=dict)  # label → its layer's place in the prototxt


def _error(message: str, span: Span | None = None, help: str | None = None, code: str = "E0502") -> NindslError:
    return NindslError.one(code, message, span, help)


def _number(value: float) -> str:
    """A float32 field as its shortest spelling (0.05, not 0.05000000074505806)."""
    number = float(str(np.float32(value)))
    return str(int(number)) if number.is_integer() else repr(number)


def identifier(text: str) -> str:
    """``text`` as a nindsl name: ASCII letters, digits and `_`, at most limits.MAX_NAME characters."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in text).strip("_") or "x"
    return (cleaned if IDENTIFIER.match(cleaned) else f"x_{cleaned}")[: limits.MAX_NAME]


def parse_prototxt(path: Path):
    """The prototxt as a NetParameter and its Source (a syntax error is located in the file)."""
    from google.protobuf import text_format

    path = regular_file(path, "a Caffe prototxt", limits.MAX_FILE_BYTES)
    try:
        text = path.read_bytes().decode("utf-8").lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError:
        raise _error(f"`{path}` is not a Caffe prototxt (not UTF-8 text)",
                     help="give the net's .prototxt; its .caffemodel goes to --weights") from None
    source = Source(str(path), text)
    net = messages()["NetParameter"]()
    try:
        text_format.Parse(text, net, allow_unknown_field=True, allow_unknown_extension=True)
    except text_format.ParseError as error:
        line, column = error.GetLine(), error.GetColumn()
        message = re.sub(r"^\d+:\d+ : ", "", str(error))
        message = re.sub(r"^'.*?': ", "", message, count=1)  # the line itself: the caret shows it
        span = Span(source, line, max(column, 1), line, max(column, 1) + 1) if line else None
        raise _error(f"`{path}` is not a valid Caffe prototxt: {message}", span) from None
    except RecursionError:  # `layer {` 50,000 times: protobuf's text parser recurses per brace
        raise _error(f"`{path}` is not a valid Caffe prototxt: its braces nest too deeply", None) from None
    return net, source


def _span(source: Source, name: str, after: int) -> tuple[Span | None, int]:
    match = re.compile(r'\bname\s*:\s*"' + re.escape(name) + '"').search(source.text, after)
    if match is None:
        return None, after
    line = source.text.count("\n", 0, match.start()) + 1
    column = match.start() - source.text.rfind("\n", 0, match.start())
    return Span(source, line, column, line, column + match.end() - match.start()), match.end()


def _layers(path: Path, net, source: Source) -> list[_Layer]:
    if len(net.layers) and len(net.layer):
        raise _error(f"`{path}` mixes old `layers {{}}` and new `layer {{}}` entries; Caffe reads one or the other")
    found, after = [], 0
    for entry in net.layers:
        span, after = _span(source, entry.name, after)
        found.append(_Layer(entry.name, _V1_BY_NUMBER.get(entry.type, str(entry.type)), list(entry.bottom),
                            list(entry.top), list(entry.blobs_lr), entry, span))
    for entry in net.layer:
        span, after = _span(source, entry.name, after)
        found.append(_Layer(entry.name, entry.type, list(entry.bottom), list(entry.top),
                            [p.lr_mult for p in entry.param], entry, span))
    return found


def _input(path: Path, net, layers: list[_Layer], input_shape: tuple[int, ...] | None) -> tuple[str, list[int]]:
    """The input blob's name and its C, H, W."""
    if len(net.input):
        if len(net.input) != 1:
            raise _error(f"`{path}` declares {len(net.input)} inputs; a NiN has one")
        dims = list(net.input_shape[0].dim) if len(net.input_shape) else list(net.input_dim)
        if len(dims) != 4:
            raise _error(f"`{path}`: input `{net.input[0]}` has {len(dims)} dims; nindsl imports N×C×H×W images")
        return net.input[0], [int(d) for d in dims[1:]]
    data = next((layer for layer in layers if layer.type in _DATA), None)
    if data is None or not data.top:
        raise _error(f"`{path}` declares no input (`input:` with `input_dim`/`input_shape`, or an Input or Data "
                     "layer)")
    if data.type == "Input" and len(data.message.input_param.shape):
        dims = list(data.message.input_param.shape[0].dim)
        if len(dims) != 4:
            raise _error(f"{data.where()} has an input of {len(dims)} dims; nindsl imports N×C×H×W images",
                         data.span)
        return data.top[0], [int(d) for d in dims[1:]]
    if input_shape is None:
        raise _error(f"{data.where()} reads its shape from its data set", data.span,
                     "give it with --input-shape C,H,W (3,32,32 for CIFAR)")
    return data.top[0], list(input_shape)


def _lr(layer: _Layer) -> tuple[float, float]:
    weight = layer.lrs[0] if layer.lrs else 1.0
    bias = layer.lrs[1] if len(layer.lrs) > 1 else 1.0
    return float(weight), float(bias)


def _side(param, name: str, default: int, layer: _Layer) -> int:
    """One window setting of a convolution or pooling: ``name`` or ``name_h``/``name_w``, square."""
    if param.HasField(f"{name}_h") or param.HasField(f"{name}_w"):
        values = [getattr(param, f"{name}_h"), getattr(param, f"{name}_w")]
    else:
        field_name = "kernel_size" if name == "kernel" else name
        value = getattr(param, field_name)
        values = ([value] if param.HasField(field_name) else []) if isinstance(value, int) else list(value)
    if not values:
        return default
    if len(set(values)) != 1:
        raise _error(f"{layer.where()}: {name} {values} differs between sides; nindsl's windows are square",
                     layer.span)
    if name == "stride" and values[0] < 1:  # Caffe's own check (stride > 0); a division by zero here
        raise _error(f"{layer.where()}: stride {values[0]} is not a step (it must be 1 or more)", layer.span)
    return int(values[0])


def _init(layer: _Layer, state: _State) -> str | None:
    param = layer.message.convolution_param
    if not param.HasField("weight_filler"):
        return None
    filler = param.weight_filler
    if filler.type == "gaussian":
        mean = f", mean = {_number(filler.mean)}" if filler.mean else ""
        return f"normal(std = {_number(filler.std)}{mean})"
    if filler.type == "xavier":
        return "xavier()"
    if filler.type == "msra":
        return "kaiming()"
    state.notes.append(f"{layer.name}'s weight_filler {filler.type!r} has no nindsl init; the default is used.")
    return None


def _stage(layer: _Layer, state: _State) -> _Stage:
    param = layer.message.convolution_param
    if not layer.message.HasField("convolution_param") or not param.num_output:
        raise _error(f"{layer.where()} has no num_output", layer.span)
    if param.num_output > limits.MAX_DIM:
        raise _error(f"{layer.where()}: num_output {param.num_output:,} is more than nindsl's limit of "
                     f"{limits.MAX_DIM:,} channels", layer.span, code="E0401")
    if param.group != 1:
        raise _error(f"{layer.where()}: grouped convolutions (group {param.group}) have no nindsl layer", layer.span)
    if any(d != 1 for d in param.dilation):
        raise _error(f"{layer.where()}: dilated convolutions have no nindsl layer", layer.span)
    kernel = _side(param, "kernel", 0, layer)
    if not kernel:
        raise _error(f"{layer.where()} has no kernel_size", layer.span)
    stride, pad = _side(param, "stride", 1, layer), _side(param, "pad", 0, layer)
    weight_lr, bias_lr = _lr(layer)
    return _Stage(layer, int(param.num_output), kernel, stride, pad, weight_lr, bias_lr, _init(layer, state))


def _label(state: _State, layer: _Layer, fallback: str) -> str:
    """The label of ``layer``'s line: its name where it can be one (else ``fallback`` numbered),
    remembered with the layer's place, where a mistake in that line is reported."""
    made = label(identifier(layer.name), fallback, state.taken)
    state.origins[made] = layer.span
    return made


def _same(values: list[str]) -> str:
    return values[0] if len(set(values)) == 1 else "[" + ", ".join(values) + "]"


def _emit_convolutions(stages: list[_Stage], relu: bool, state: _State) -> None:
    first = stages[0]
    name = _label(state, first.layer, "conv")
    args = [str(first.kernel)] + ([f"stride = {first.stride}"] if first.stride != 1 else []) + \
        ([f"pad = {first.pad}"] if first.pad else [])
    if not relu:
        args.append("act = none")
    inits = [s.init for s in stages]
    if all(inits):
        args.append(f"init = {_same(inits)}")
    elif any(inits):
        state.notes.append(f"only some stages of {name} have a weight filler; nindsl's default init is used.")
    for stage in stages:
        if stage.weight_lr == 0 and stage.bias_lr != 0:
            raise _error(f"{stage.layer.where()}: a frozen weight (lr 0) with a trained bias (lr "
                         f"{_number(stage.bias_lr)}) has no nindsl setting", stage.layer.span)
    lrs = [_number(s.weight_lr) for s in stages]
    biases = [_number(s.bias_lr / s.weight_lr if s.weight_lr else 1.0) for s in stages]
    if set(lrs) != {"1"}:
        args.append(f"lr_scale = {_same(lrs)}")
    if set(biases) != {"1"}:
        args.append(f"bias_lr_scale = {_same(biases)}")
    if len(stages) == 1:
        state.lines.append(f"{name}: conv({first.out}, {', '.join(args)})")
        keys = [(f"{name}.weight", f"{name}.bias")]
    else:
        widths = ", ".join(str(s.out) for s in stages)
        state.lines.append(f"{name}: mlpconv([{widths}], {', '.join(args)})")
        keys = [(f"{name}.{i}.weight", f"{name}.{i}.bias") for i in range(len(stages))]
    for stage, (weight, bias) in zip(stages, keys):
        if stage.weight is not None:
            state.weights[weight], state.weights[bias] = stage.weight, stage.bias


def _blob(layer: _Layer, blobs, index: int, shape: tuple[int, ...], path: Path) -> np.ndarray:
    if index >= len(blobs):
        raise _error(f"`{path}`: {layer.where()} has {len(blobs)} blobs; it needs {index + 1}", layer.span)
    blob = blobs[index]
    with np.errstate(over="ignore", invalid="ignore"):  # 1e300 in double_data is inf as float32: refused below
        data = np.asarray(blob.data if len(blob.data) else blob.double_data, dtype=np.float32)
    if data.size != int(np.prod(shape)):
        dims = list(blob.shape.dim) if blob.HasField("shape") else [blob.num, blob.channels, blob.height, blob.width]
        raise _error(f"`{path}`: blob {index} of {layer.where()} has {data.size:,} values (shape {dims}); the "
                     f"prototxt needs {list(shape)}", layer.span, code="E0501")
    if not np.isfinite(data).all():
        raise _error(f"`{path}`: blob {index} of {layer.where()} holds NaN or infinite values (as float32)",
                     layer.span, "use a caffemodel whose weights are finite", code="E0501")
    return data.reshape(shape)


class _Reader:
    def __init__(self, path: Path, chain: list[_Layer], state: _State, blobs: dict | None, weights_path: Path | None):
        self.path, self.chain, self.state, self.blobs, self.weights_path = path, chain, state, blobs, weights_path

    def load(self, stage: _Stage, in_channels: int) -> None:
        if self.blobs is None:
            return
        layer = stage.layer
        if layer.name not in self.blobs:
            raise _error(f"`{self.weights_path}` has no weights for {layer.where()}", layer.span)
        blobs = self.blobs[layer.name]
        stage.weight = _blob(layer, blobs, 0, (stage.out, in_channels, stage.kernel, stage.kernel), self.weights_path)
        stage.bias = _blob(layer, blobs, 1, (stage.out,), self.weights_path) \
            if layer.message.convolution_param.bias_term else np.zeros(stage.out, np.float32)

    def convolutions(self, index: int) -> int:
        chain, state = self.chain, self.state
        first = _stage(chain[index], state)
        self.load(first, state.shape[0])
        relu = index + 1 < len(chain) and chain[index + 1].type == "ReLU"
        c, h, w = state.shape
        state.shape = [first.out, (h + 2 * first.pad - first.kernel) // first.stride + 1,
                       (w + 2 * first.pad - first.kernel) // first.stride + 1]
        stages, end = [first], index + (2 if relu else 1)
        while relu and end + 1 < len(chain) and chain[end].type == "Convolution" and chain[end + 1].type == "ReLU":
            stage = _stage(chain[end], state)
            if (stage.kernel, stage.stride, stage.pad) != (1, 1, 0):
                break
            self.load(stage, state.shape[0])
            state.shape[0] = stage.out
            stages.append(stage)
            end += 2
        _emit_convolutions(stages, relu, state)
        return end

    def pool(self, index: int) -> None:
        layer, state = self.chain[index], self.state
        param = layer.message.pooling_param
        if param.pool not in (0, 1):
            raise _error(f"{layer.where()}: stochastic pooling has no nindsl layer", layer.span)
        mode = "max" if param.pool == 0 else "avg"
        name = _label(state, layer, "pool")
        _, h, w = state.shape
        kernel = _side(param, "kernel", 0, layer)
        stride, pad = _side(param, "stride", 1, layer), _side(param, "pad", 0, layer)
        last_spatial = not any(later.type in ("Convolution", "Pooling") for later in self.chain[index + 1:])
        if param.global_pooling or (kernel == h == w and pad == 0 and last_spatial):
            if not last_spatial:
                raise _error(f"{layer.where()}: nindsl's global pooling gives [N, C], and layers that need a map "
                             "follow it", layer.span)
            state.lines.append(f"{name}: global_{mode}pool()")
            state.shape = [state.shape[0], 1, 1]
            return
        if not kernel:
            raise _error(f"{layer.where()} has no kernel_size", layer.span)
        args = [str(kernel)] + ([f"stride = {stride}"] if stride != kernel else []) + \
            ([f"pad = {pad}"] if pad else []) + ["round = ceil"]
        state.lines.append(f"{name}: {mode}pool({', '.join(args)})")

        def size(n: int) -> int:
            out = -(-(n + 2 * pad - kernel) // stride) + 1
            return out - 1 if pad and (out - 1) * stride >= n + pad else out

        state.shape = [state.shape[0], size(h), size(w)]

    def read(self) -> None:
        index = 0
        while index < len(self.chain):
            layer = self.chain[index]
            match layer.type:
                case "Convolution":
                    index = self.convolutions(index)
                    continue
                case "Pooling":
                    self.pool(index)
                case "ReLU":
                    if layer.message.relu_param.negative_slope:
                        raise _error(f"{layer.where()}: a leaky ReLU (negative_slope "
                                     f"{_number(layer.message.relu_param.negative_slope)}) has no nindsl layer",
                                     layer.span)
                    self.state.lines.append(f"{_label(self.state, layer, 'relu')}: relu()")
                case "Dropout":
                    ratio = layer.message.dropout_param.dropout_ratio
                    self.state.lines.append(f"{_label(self.state, layer, 'drop')}: "
                                            f"dropout({_number(ratio)})")
                case "Softmax":
                    self.state.lines.append(f"{_label(self.state, layer, 'softmax')}: "
                                            "softmax()")
                case _:
                    raise _error(f"`{self.path}`: {layer.where()} has no nindsl layer", layer.span,
                                 f"nindsl imports {_SUPPORTED}")
            index += 1


def _chain(path: Path, layers: list[_Layer], blob: str) -> tuple[list[_Layer], str]:
    """The layers from the input on, each reading the blob the one before wrote; heads and data left out."""
    chain, data_seen = [], False
    for layer in layers:
        if layer.type in _DATA:
            if data_seen and layer.top[:1] != [blob] and chain:
                raise _error(f"{layer.where()}: a second input; a NiN has one", layer.span)
            data_seen = True
            continue
        if layer.type in _HEADS:
            continue
        if layer.type == "Split":
            raise _error(f"`{path}`: {layer.where()} branches the net; nindsl imports a chain of layers",
                         layer.span)
        if layer.bottom != [blob] or len(layer.top) != 1:
            raise _error(f"`{path}`: {layer.where()} reads {layer.bottom} and writes {layer.top}; nindsl imports a "
                         f"chain of layers, each reading the one blob before it (`{blob}`)", layer.span)
        chain.append(layer)
        blob = layer.top[0]
    return chain, blob


def read_caffemodel(path: Path) -> dict[str, list]:
    """A .caffemodel's blobs by layer name (wire format; a truncated file is an error)."""
    from google.protobuf.message import DecodeError

    path = regular_file(path, "a .caffemodel", limits.MAX_MODEL_BYTES)
    net = messages()["NetParameter"]()
    try:
        net.ParseFromString(path.read_bytes())
    except (DecodeError, ValueError, RuntimeError) as error:
        raise _error(f"`{path}` is not a valid .caffemodel ({str(error).strip() or type(error).__name__})",
                     help="is the file truncated? it must be the binary NetParameter Caffe saves") from None
    return {layer.name: list(layer.blobs) for layer in [*net.layers, *net.layer] if len(layer.blobs)}


def read_caffe(path: Path, weights: Path | None = None, name: str | None = None,
               input_shape: tuple[int, ...] | None = None) -> Imported:
    """A Caffe prototxt (and its .caffemodel) → :class:`Imported`."""
    net, source = parse_prototxt(path)
    blobs = read_caffemodel(Path(weights)) if weights is not None else None
    layers = _layers(path, net, source)
    input_blob, shape = _input(path, net, layers, input_shape)
    if any(d <= 0 or d > limits.MAX_DIM for d in shape):
        raise _error(f"`{path}`: input shape {shape} is not a C×H×W image nindsl can take", code="E0401")
    chain, output = _chain(path, layers, input_blob)
    state = _State(list(shape))
    input_name = identifier(input_blob)
    state.taken.add(input_name)
    _Reader(path, chain, state, blobs, Path(weights) if weights is not None else None).read()
    output_name = identifier(output)
    if output_name in state.taken:
        output_name = label(f"{output_name}_out", "output", state.taken)
    header = f"Imported from {Path(path).name}" + (f" and {Path(weights).name}" if weights else "") + \
        " by nindsl import."
    header += "".join(f"\n{note}" for note in state.notes)
    network = name or (identifier(net.name) if net.name else identifier(Path(path).stem))
    return Imported(network, input_name, ("N", *shape), output_name, state.lines, state.weights,
                    header=header, model=str(path), origins=state.origins)
