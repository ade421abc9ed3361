"""Stage 4b: the PyTorch twin, a readable ``nn.Module`` generated as Python source.

One code path: :func:`twin_source` writes the module (it imports only torch) and
:func:`to_torch` executes that same text. Its ``state_dict()`` keys are exactly the
spec's weight names (``network.weights``), so every nindsl checkpoint loads into it.
Per-layer code lives in :data:`LAYERS`, keyed by IR class like ``shapes.RULES``.

>>> import nindsl
>>> net = nindsl.check("network t() { input x: f32[N, 1, 4, 4] conv(2, 3) global_avgpool() }")
>>> sorted(to_torch(net).state_dict())
['conv1.bias', 'conv1.weight']
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..kernel.version import __version__
from ..language import ir
from ..kernel.diagnostics import Collector
from ..kernel.io import atomic_write_text
from ..language.shapes import format_shape

if TYPE_CHECKING:  # pragma: no cover
    import torch

# --- helper modules, emitted into the source only when a layer uses them ------------------

_MLPCONV = '''
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

_GLOBAL_POOL = '''
class GlobalPool(nn.Module):
    """Average (or max) over H and W: [N, C, H, W] → [N, C]."""

    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        return x.mean(dim=(2, 3)) if self.mode == "avg" else x.amax(dim=(2, 3))
'''

_BATCHNORM = '''
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


@dataclass(frozen=True)
class Twin:
    """One layer in the generated module: its constructor, and how forward() calls it."""

    make: str  # e.g. "nn.Conv2d(3, 96, 5, stride=1, padding=2)"
    relu: bool = False  # forward applies ReLU (in place) to the layer's output
    helper: str = ""  # a helper class the constructor needs


def _mlpconv(layer: ir.MlpConv, shape: ir.LayerShape) -> Twin:
    return Twin(f"MlpConv({shape.in_shape[1]}, {list(layer.channels)}, kernel={layer.kernel}, "
                f"stride={layer.stride}, pad={layer.pad})", helper=_MLPCONV)


def _conv(layer: ir.Conv, shape: ir.LayerShape) -> Twin:
    return Twin(f"nn.Conv2d({shape.in_shape[1]}, {layer.out}, {layer.kernel}, stride={layer.stride}, "
                f"padding={layer.pad})", relu=layer.act == "relu")


def _pool(layer: ir.Pool, shape: ir.LayerShape) -> Twin:
    # Caffe's ceil rounding is PyTorch's ceil_mode with the spec's own padding (a `padding=1`
    # imitation gives the same shapes on even sizes but different numbers at the border).
    args = f"{layer.kernel}, stride={layer.stride}, padding={layer.pad}, ceil_mode={layer.ceil}"
    if layer.mode == "avg":
        return Twin(f"nn.AvgPool2d({args}, count_include_pad=False)")
    return Twin(f"nn.MaxPool2d({args})")


def _dense(layer: ir.Dense, shape: ir.LayerShape) -> Twin:
    return Twin(f"nn.Linear({shape.in_shape[1]}, {layer.out})", relu=layer.act == "relu")


LAYERS: dict[type, Callable[[ir.Layer, ir.LayerShape], Twin]] = {
    ir.MlpConv: _mlpconv,
    ir.Conv: _conv,
    ir.Pool: _pool,
    ir.GlobalPool: lambda layer, shape: Twin(f'GlobalPool("{layer.mode}")', helper=_GLOBAL_POOL),
    ir.Dropout: lambda layer, shape: Twin(f"nn.Dropout({layer.p})"),
    ir.Softmax: lambda layer, shape: Twin("nn.Softmax(dim=1)"),
    ir.Relu: lambda layer, shape: Twin("nn.ReLU()"),
    ir.BatchNorm: lambda layer, shape: Twin(f"BatchNorm({shape.in_shape[1]}, eps={layer.eps}, "
                                            f"momentum={layer.momentum})", helper=_BATCHNORM),
    ir.Flatten: lambda layer, shape: Twin("nn.Flatten()"),
    ir.Dense: _dense,
}

#: nn.Module attributes a label must not shadow (checked when torch is importable).
_MODULE_NAMES = {"forward", "logits", "train", "eval", "to", "cuda", "cpu", "float", "half", "double",
                 "training", "state_dict", "parameters", "buffers", "children", "modules", "apply", "type"}


def _reserved() -> set[str]:
    try:
        from torch import nn
    except ImportError:  # the source can still be written without torch installed
        return _MODULE_NAMES
    return _MODULE_NAMES | set(dir(nn.Module)) | set(vars(nn.Module()))  # methods, and `_modules` & co.


def class_name(network: ir.Network) -> str:
    """``nin_cifar10`` → ``NinCifar10`` (``Net`` appended if a helper class has the name)."""
    name = "".join(part[:1].upper() + part[1:] for part in network.name.split("_")) or "Net"
    return name + "Net" if name in ("MlpConv", "GlobalPool", "BatchNorm") else name


def _check_labels(network: ir.Network) -> None:
    errors = Collector()
    reserved = _reserved()
    for layer in network.layers:
        if keyword.iskeyword(layer.label) or layer.label in reserved:
            errors.error("E0107", f"label `{layer.label}` cannot name a PyTorch module attribute",
                         layer.span, "rename the layer: it is a Python keyword or a torch.nn.Module member")
    errors.raise_if_any()


def ends_with_softmax(network: ir.Network) -> bool:
    return bool(network.layers) and isinstance(network.layers[-1], ir.Softmax)


def twin_source(network: ir.Network) -> str:
    """The twin as a standalone Python module that imports only torch."""
    _check_labels(network)
    twins = [LAYERS[type(layer)](layer, shape) for layer, shape in zip(network.layers, network.shapes)]
    helpers = list(dict.fromkeys(twin.helper for twin in twins if twin.helper))
    name, shape = class_name(network), network.input.shape
    head = ends_with_softmax(network)
    body = list(zip(network.layers, twins))[: -1 if head else None]
    lines = [
        f'"""PyTorch twin of `{network.name}`, generated by nindsl {__version__}; do not edit.',
        "",
        f"Spec sha256 {network.spec_hash}.",
        f"Input `{network.input.name}` {format_shape(shape)}, output `{network.output.name}` {format_shape(network.output.shape)}.",
        "state_dict() keys are the spec's weight names: nindsl checkpoints load as they are.",
        '"""',
        "",
        "import torch",
        *(["import torch.nn.functional as F"] if _BATCHNORM in helpers else []),
        "from torch import nn",
        *(line for helper in helpers for line in ["", *helper.rstrip().split("\n")]),
        "", "",
        f"class {name}(nn.Module):",
        f'    """{network.name}: {network.total_params:,} parameters."""',
        "",
        "    def __init__(self):",
        "        super().__init__()",
        *(f"        self.{layer.label} = {twin.make}" for layer, twin in zip(network.layers, twins)),
        "",
        "    def logits(self, x):",
        '        """Every layer but a final softmax: the scores the training loss takes."""',
        *(f"        x = torch.relu_(self.{layer.label}(x))" if twin.relu else f"        x = self.{layer.label}(x)"
          for layer, twin in body),
        "        return x",
        "",
        "    def forward(self, x):",
        f'        """{network.input.name} {format_shape(shape)} → {network.output.name} {format_shape(network.output.shape)}."""',
        f"        return self.{network.layers[-1].label}(self.logits(x))" if head else "        return self.logits(x)",
        "", "",
        'if __name__ == "__main__":',
        f"    model = {name}().eval()",
        f"    print(model(torch.zeros(2, {', '.join(str(d) for d in shape[1:])})).shape)",
    ]
    return "\n".join(lines) + "\n"


def write_twin_source(network: ir.Network, path: str | Path) -> None:
    """Write :func:`twin_source` to ``path`` atomically."""
    atomic_write_text(path, twin_source(network))


def twin_class(network: ir.Network) -> type:
    """The generated ``nn.Module`` class, executed from :func:`twin_source`."""
    namespace: dict[str, object] = {"__name__": f"nindsl_twin_{network.name}"}
    exec(compile(twin_source(network), f"<nindsl twin {network.name}>", "exec"), namespace)  # noqa: S102
    return namespace[class_name(network)]  # type: ignore[return-value]


def load_state(module: "torch.nn.Module", weights: dict[str, np.ndarray]) -> None:
    """Copy ``name → array`` weights into the module (every name must match)."""
    import torch

    module.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in weights.items()},
                           strict=True)


def to_torch(network: ir.Network, weights: str | Path | dict | None = None, seed: int = 0) -> "torch.nn.Module":
    """The twin with ``weights`` (a checkpoint, a dict, or drawn from the spec's init)."""
    from ..weights import resolve

    module = twin_class(network)()
    load_state(module, resolve(network, weights, seed))
    return module
