"""Post-training int8 quantization: calibration, the quantized network, its QDQ ONNX form.

A :class:`Plan` is the float32 ONNX model's graph with a quantization for every tensor that
crosses a layer boundary as integers:

- weights: symmetric, one scale per output channel, -127..127;
- activations: one scale and zero point per tensor, **0..127** (7 bits; the AVX2 and
  AVX-512BW dot products add two products in a saturating 16-bit sum, which 7-bit
  activations keep exact: 2 × 127 × 127 < 32767), from the minimum and maximum seen on the
  calibration images; after a ReLU the zero point is 0;
- biases: int32 at the scale input × weight, added to the sums, as ONNX's QLinearConv does.

A convolution's output is ``clip(round((Σ x·w + bias) · s_in·s_w / s_out) + zero_out)``, rounding
to nearest even; pooling keeps its input's quantization; the head (global average pooling,
softmax) runs in float32 on the dequantized maps. :func:`to_qdq` writes the same network as
QuantizeLinear/DequantizeLinear pairs around float32 operators, the form ONNX Runtime
fuses into its integer kernels (it clips at 255 rather than 127: the two differ only on
activations beyond the calibration range).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..kernel.diagnostics import NindslError

LEVELS = 127  # activations and weights both use 0..127 / -127..127
PAIRED_WEIGHT_LEVELS = 63  # weights for CPUs that add two 8-bit products in 16 bits twice (nindsl.tvm.narrow.kernels.int8)
SUPPORTED = ("Conv", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Softmax", "Identity",
             "Dropout")


@dataclass(frozen=True)
class Quant:
    """One activation tensor's quantization: ``real = scale · (q - zero)``."""

    scale: float
    zero: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        q = np.rint(np.asarray(x, np.float32) / np.float32(self.scale)) + self.zero
        return np.clip(q, 0, LEVELS).astype(np.uint8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self.zero) * np.float32(self.scale)


def activation_quant(low: float, high: float) -> Quant:
    """The 0..127 quantization of a range (widened to hold 0, as zero must be exact)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if high - low < 1e-12:
        return Quant(1.0, 0)
    scale = (high - low) / LEVELS
    return Quant(scale, int(np.clip(round(-low / scale), 0, LEVELS)))


@dataclass
class Step:
    """One operator of the quantized network, in order; tensors are named as in the ONNX model."""

    op: str  # conv, maxpool, avgpool, head
    input: str
    output: str
    attributes: dict = field(default_factory=dict)
    weight: np.ndarray | None = None  # int8 [O, C, K, K] (float32 before quantization: float_steps)
    weight_scale: np.ndarray | None = None  # float32 [O]
    bias: np.ndarray | None = None  # int32 [O], at scale input · weight (float32 before quantization)
    relu: bool = False


@dataclass
class Plan:
    """A quantized network: its steps, the quantization of each integer tensor, and the names
    of the float32 model's input and output."""

    steps: list[Step]
    quants: dict[str, Quant]
    input: str
    output: str
    softmax: bool
    weight_levels: int = LEVELS

    def describe(self) -> dict:
        """The quantization parameters, as an artifact's manifest records them."""
        return {"activations": {name: {"scale": q.scale, "zero_point": q.zero} for name, q in self.quants.items()},
                "weights": f"int8, symmetric, one scale per output channel, within ±{self.weight_levels}",
                "activation_range": f"0..{LEVELS}",
                "convolutions": [{"input": s.input, "output": s.output,
                                  "weight_scale": [float(v) for v in s.weight_scale]}
                                 for s in self.steps if s.op == "conv"]}


def _unsupported(op: str, precision: str = "int8") -> NindslError:
    return NindslError.one("E0504", f"{precision} builds do not support the ONNX operator `{op}` yet", None,
                           f"{precision} covers {', '.join(SUPPORTED)}; build this network with --precision fp32")


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _chain(model, precision: str) -> list:
    """The model's nodes as one chain (every NiN is one), Identity and Dropout left out."""
    nodes = [n for n in model.graph.node if n.op_type not in ("Identity", "Dropout")]
    for node in nodes:
        if node.op_type not in SUPPORTED:
            raise _unsupported(node.op_type, precision)
    return nodes


CALIBRATION_BATCH_BYTES = 1 << 30  # every tensor of one calibration batch, float32


def images_per_batch(model, most: int = 64) -> int:
    """How many images one run of ``model`` may take with all its tensors within
    ``CALIBRATION_BATCH_BYTES`` (from the shapes ONNX's value_info records)."""
    per_image = 4 * sum(int(np.prod([d.dim_value or 1 for d in v.type.tensor_type.shape.dim[1:]]))
                        for v in (*model.graph.input, *model.graph.value_info))
    return max(1, min(most, CALIBRATION_BATCH_BYTES // max(per_image, 1)))


def in_batches(run, images: np.ndarray, batch: int) -> np.ndarray:
    """``run`` over ``images`` ``batch`` at a time, the outputs joined."""
    return np.concatenate([run(np.ascontiguousarray(images[i:i + batch])) for i in range(0, len(images), batch)])


def _spatial(model, tensor: str) -> tuple[int, ...] | None:
    """The height and width of ``tensor`` as the model's value_info records them."""
    for value in (*model.graph.input, *model.graph.value_info):
        if value.name == tensor:
            return tuple(d.dim_value for d in value.type.tensor_type.shape.dim[2:])
    return None


def calibrate(model, images: np.ndarray, batch: int = 64) -> dict[str, tuple[float, float]]:
    """The minimum and maximum of every tensor of ``model`` over ``images`` (float32 NCHW),
    measured with ONNX Runtime, in batches whose tensors together stay within
    ``CALIBRATION_BATCH_BYTES``."""
    import onnx

    from .runtime import session

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = [o for n in probe.graph.node for o in n.output]
    known = {o.name for o in probe.graph.output}
    for name in names:
        if name not in known:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opened = session(probe)
    input_name = model.graph.input[0].name
    batch = images_per_batch(model, batch)
    outputs = [o.name for o in opened.get_outputs()]
    ranges = {input_name: (float(images.min()), float(images.max()))}
    for start in range(0, len(images), batch):
        values = opened.run(outputs, {input_name: np.ascontiguousarray(images[start:start + batch], np.float32)})
        for name, value in zip(outputs, values):
            low, high = float(value.min()), float(value.max())
            old = ranges.get(name)
            ranges[name] = (low, high) if old is None else (min(old[0], low), max(old[1], high))
    return ranges


def float_steps(model, precision: str = "int8") -> tuple[list[Step], bool]:
    """``model`` (a float32 NiN as nindsl lowers it) as a chain of steps with float32 weights and
    biases, and whether it ends in a softmax; E0504 for what narrow builds do not cover."""
    from onnx import numpy_helper

    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = _chain(model, precision)
    steps: list[Step] = []
    current = model.graph.input[0].name  # the tensor the next step reads
    i = 0
    while i < len(nodes):
        node = nodes[i]
        if node.op_type == "Conv":
            relu = i + 1 < len(nodes) and nodes[i + 1].op_type == "Relu"
            output = nodes[i + 1].output[0] if relu else node.output[0]
            w = weights[node.input[1]].astype(np.float32)
            b = weights[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.zeros(w.shape[0], np.float32)
            steps.append(Step("conv", current, output, _attributes(node), w, None, b, relu))
            current = output
            i += 2 if relu else 1
        elif node.op_type in ("MaxPool", "AveragePool"):
            op = "maxpool" if node.op_type == "MaxPool" else "avgpool"
            steps.append(Step(op, current, node.output[0], _attributes(node)))
            current = node.output[0]
            i += 1
        elif node.op_type == "Relu":  # a ReLU after pooling: the integers stay, the floor rises
            raise _unsupported("Relu (not after a Conv)", precision)
        elif node.op_type == "GlobalAveragePool" or node.op_type == "Flatten" and _spatial(model, current) == (1, 1):
            # the head; a Flatten of 1×1 maps (nin_imagenet's 6×6 average pool) is one too: a
            # global average of one pixel is that pixel
            rest = [n.op_type for n in nodes[i + 1:]]
            if any(op not in ("Flatten", "Softmax") for op in rest):
                raise _unsupported(next(op for op in rest if op not in ("Flatten", "Softmax")), precision)
            steps.append(Step("head", current, model.graph.output[0].name))
            return steps, "Softmax" in rest
        else:
            raise _unsupported(node.op_type, precision)
    raise _unsupported("a network without a global average pooling head", precision)


def plan(model, ranges: dict[str, tuple[float, float]], weight_levels: int = LEVELS) -> Plan:
    """Quantize ``model`` (a float32 NiN as nindsl lowers it) with calibrated ``ranges``;
    weights within ±``weight_levels`` (63 for CPUs whose int8 multiply-add saturates in 16 bits)."""
    chain, softmax = float_steps(model)
    input_name = model.graph.input[0].name
    quants = {input_name: activation_quant(*ranges[input_name])}
    steps: list[Step] = []
    for step in chain:
        if step.op == "conv":
            w, b = step.weight, step.bias
            w_scale = np.abs(w).reshape(w.shape[0], -1).max(axis=1) / weight_levels
            w_scale = np.where(w_scale > 0, w_scale, 1.0).astype(np.float32)
            w_q = np.clip(np.rint(w / w_scale[:, None, None, None]), -weight_levels, weight_levels).astype(np.int8)
            s_in = np.float32(quants[step.input].scale)
            b_q = np.rint(b / (s_in * w_scale)).astype(np.int64)
            if np.abs(b_q).max(initial=0) >= 2 ** 31:
                raise NindslError.one("E0504", f"the bias of the convolution computing `{step.output}` does not fit "
                                               "int32 at the scale of its input × weights", None,
                                      "build with --precision fp32")
            quants[step.output] = activation_quant(*ranges[step.output])
            step = replace(step, weight=w_q, weight_scale=w_scale, bias=b_q.astype(np.int32))
        elif step.op in ("maxpool", "avgpool"):
            quants[step.output] = quants[step.input]
        steps.append(step)
    return Plan(steps, quants, input_name, model.graph.output[0].name, softmax, weight_levels)


QDQ_OPSET = 19  # the first whose QuantizeLinear/DequantizeLinear ONNX's reference evaluator implements


def to_qdq(model, quantized: Plan):
    """The quantized network as a QDQ ONNX model (opset 19) that ONNX Runtime runs with its
    integer kernels; same input, output and metadata as ``model``."""
    import onnx
    from onnx import helper, numpy_helper

    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    def qdq(tensor: str, quant: Quant) -> str:
        """Quantize ``tensor`` and dequantize it again; the name of the float32 result."""
        scale = const(f"{tensor}.scale", np.array(quant.scale, np.float32))
        zero = const(f"{tensor}.zero", np.array(quant.zero, np.uint8))
        nodes.append(helper.make_node("QuantizeLinear", [tensor, scale, zero], [f"{tensor}.q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{tensor}.q", scale, zero], [f"{tensor}.dq"]))
        return f"{tensor}.dq"

    current = qdq(quantized.input, quantized.quants[quantized.input])
    for k, step in enumerate(quantized.steps):
        if step.op == "conv":
            w = const(f"{step.output}.w", step.weight)
            w_scale = const(f"{step.output}.w.scale", step.weight_scale)
            w_zero = const(f"{step.output}.w.zero", np.zeros(len(step.weight_scale), np.int8))
            nodes.append(helper.make_node("DequantizeLinear", [w, w_scale, w_zero], [f"{w}.dq"], axis=0))
            b_scale = const(f"{step.output}.b.scale",
                            (np.float32(quantized.quants[step.input].scale) * step.weight_scale).astype(np.float32))
            b = const(f"{step.output}.b", step.bias)
            b_zero = const(f"{step.output}.b.zero", np.zeros(len(step.bias), np.int32))
            nodes.append(helper.make_node("DequantizeLinear", [b, b_scale, b_zero], [f"{b}.dq"], axis=0))
            conv_out = f"{step.output}.conv" if step.relu else step.output
            nodes.append(helper.make_node("Conv", [current, f"{w}.dq", f"{b}.dq"], [conv_out], **step.attributes))
            if step.relu:
                nodes.append(helper.make_node("Relu", [conv_out], [step.output]))
            current = qdq(step.output, quantized.quants[step.output])
        elif step.op in ("maxpool", "avgpool"):
            op = "MaxPool" if step.op == "maxpool" else "AveragePool"
            nodes.append(helper.make_node(op, [current], [step.output], **step.attributes))
            current = qdq(step.output, quantized.quants[step.output])
        else:  # the head, in float32
            pooled = f"head.{k}.pooled"
            nodes.append(helper.make_node("GlobalAveragePool", [current], [pooled]))
            flat = quantized.output if not quantized.softmax else f"head.{k}.flat"
            nodes.append(helper.make_node("Flatten", [pooled], [flat]))
            if quantized.softmax:
                nodes.append(helper.make_node("Softmax", [flat], [quantized.output], axis=-1))
    graph = helper.make_graph(nodes, model.graph.name + "_int8", list(model.graph.input), list(model.graph.output),
                              inits)
    qdq_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", QDQ_OPSET)],
                                  producer_name=model.producer_name, producer_version=model.producer_version)
    qdq_model.ir_version = 9  # opset 19's
    helper.set_model_props(qdq_model, {p.key: p.value for p in model.metadata_props} | {"nindsl.precision": "int8"})
    onnx.checker.check_model(qdq_model, full_check=True)
    return qdq_model


def quantize(model, images: np.ndarray, weight_levels: int = LEVELS) -> Plan:
    """Calibrate ``model`` on ``images`` and quantize it."""
    if not len(images):
        raise NindslError.one("E0503", "no calibration images", None, "give a few hundred: --calibrate digits|F.npz")
    return plan(model, calibrate(model, images), weight_levels)


@dataclass(frozen=True)
class Calibration:
    """Images to calibrate on, and held-out images (with labels, when known) to judge the
    quantized build against float32."""

    source: str  # what they came from: "digits", "cifar10:DIR", "random", a file
    images: np.ndarray  # float32 [N, C, H, W]
    held_out: np.ndarray
    labels: np.ndarray | None = None


@dataclass(frozen=True)
class Agreement:
    """How a quantized build's outputs compare with float32's on the same held-out images."""

    images: int
    top1_agreement: float  # the fraction of images whose top class is the same
    mean_abs_diff: float  # of the outputs (probabilities after a softmax)
    accuracy_fp32: float | None = None  # with labels
    accuracy_quantized: float | None = None

    @property
    def drop_pp(self) -> float | None:
        """Accuracy lost, in percentage points (negative: gained)."""
        if self.accuracy_fp32 is None or self.accuracy_quantized is None:
            return None
        return 100 * (self.accuracy_fp32 - self.accuracy_quantized)

    def describe(self) -> str:
        text = (f"top-1 agreement with float32 {100 * self.top1_agreement:.2f}% and mean |Δ| "
                f"{self.mean_abs_diff:.1e} on {self.images:,} held-out images")
        if self.drop_pp is not None:
            text += (f"; accuracy {100 * self.accuracy_quantized:.2f}% against float32's "
                     f"{100 * self.accuracy_fp32:.2f}% ("
                     + (f"{self.drop_pp:.2f} pp lost)" if self.drop_pp >= 0 else f"{-self.drop_pp:.2f} pp gained)"))
        return text


def agreement(reference: np.ndarray, outputs: np.ndarray, labels: np.ndarray | None = None) -> Agreement:
    """Compare ``outputs`` [N, classes] with the float32 ``reference``."""
    top_ref, top = reference.argmax(axis=1), outputs.argmax(axis=1)
    accuracy = (lambda top_: float((top_ == labels).mean())) if labels is not None and len(labels) else None
    return Agreement(len(reference), float((top_ref == top).mean()), float(np.abs(reference - outputs).mean()),
                     accuracy(top_ref) if accuracy else None, accuracy(top) if accuracy else None)


# The accuracy gate of a quantized build with trained weights (docs/precision.md says why these):
WARN_DROP_PP, REFUSE_DROP_PP = 0.5, 2.0  # accuracy lost on held-out labels, percentage points
WARN_AGREEMENT, REFUSE_AGREEMENT = 0.99, 0.95  # top-1 agreement with float32


def judge(result: Agreement, precision: str = "int8") -> tuple[str, str | None]:
    """("ok" | "warn" | "refuse", why) for trained weights."""
    drop = result.drop_pp
    if result.top1_agreement < REFUSE_AGREEMENT or drop is not None and drop > REFUSE_DROP_PP:
        return "refuse", (f"the {precision} build agrees with float32 on {100 * result.top1_agreement:.1f}% of "
                          f"held-out images" + (f" and loses {drop:.2f} pp of accuracy" if drop is not None else "")
                          + f" (refused below {100 * REFUSE_AGREEMENT:.0f}% or above {REFUSE_DROP_PP} pp)")
    if result.top1_agreement < WARN_AGREEMENT or drop is not None and drop > WARN_DROP_PP:
        return "warn", (f"the {precision} build agrees with float32 on {100 * result.top1_agreement:.2f}% of held-out "
                        f"images" + (f" and loses {drop:.2f} pp of accuracy" if drop is not None else "")
                        + f" (warned below {100 * WARN_AGREEMENT:.0f}% or above {WARN_DROP_PP} pp)")
    return "ok", None
