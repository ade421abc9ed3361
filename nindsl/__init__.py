"""nindsl: a compiler for Network-in-Network models.

A ``.nin`` spec goes through one stage per module::

    parser.py → elaborate.py → shapes.py → lower_onnx.py / twin.py → build_tvm.py

>>> import nindsl
>>> net = nindsl.load("specs/nin_cifar10.nin")          # doctest: +SKIP
>>> net.total_params                                    # doctest: +SKIP
966986

Only ``lark`` and ``numpy`` are needed to check a spec; ONNX, PyTorch and TVM are
imported by the functions that need them.
"""

from __future__ import annotations

from pathlib import Path

from .diagnostics import Diagnostic, NindslError
from .ir import Network
from .syntax import Module

__version__ = "0.1.0"
__all__ = ["parse", "check", "load", "to_onnx", "to_torch", "train", "Network", "Module", "NindslError",
           "Diagnostic", "__version__"]


def parse(text: str, path: str = "<string>") -> Module:
    """Parse spec text into a syntax tree; raise :class:`NindslError` on bad syntax."""
    from .parser import parse as _parse

    return _parse(text, path)


def check(spec: Module | str, overrides: dict[str, str] | None = None, root: str | Path | None = None) -> Network:
    """Elaborate and shape-check a parsed module (or spec text): a typed :class:`Network`.

    ``overrides`` sets network parameters from expression text, as ``--set k=v`` does.
    Raises :class:`NindslError` with every mistake found.
    """
    from .elaborate import elaborate
    from .shapes import infer

    module = parse(spec) if isinstance(spec, str) else spec
    return infer(elaborate(module, overrides, root))


def load(path: str | Path, overrides: dict[str, str] | None = None, root: str | Path | None = None) -> Network:
    """Read, parse and check the spec at ``path``."""
    from .parser import parse_file

    return check(parse_file(path), overrides, root)


def to_onnx(network: Network, weights=None, seed: int = 0):
    """The checked ``onnx.ModelProto`` of a network; needs ``nindsl[onnx]``."""
    from .lower_onnx import to_onnx as _to_onnx

    return _to_onnx(network, weights, seed)


def to_torch(network: Network, weights=None, seed: int = 0):
    """The PyTorch twin (an ``nn.Module``) of a checked network; needs ``nindsl[torch]``."""
    from .twin import to_torch as _to_torch

    return _to_torch(network, weights, seed)


def train(network: Network, **options) -> dict:
    """Train the twin as the spec's ``train`` section says (see :func:`nindsl.training.train`)."""
    from .training import train as _train

    return _train(network, **options)
