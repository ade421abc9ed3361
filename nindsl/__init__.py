"""nindsl: a compiler for Network-in-Network models.

A ``.nin`` spec goes through one stage per subpackage::

    language (parse → elaborate → shapes) → onnx / torch → tvm

>>> import nindsl
>>> net = nindsl.load("specs/nin_cifar10.nin")          # doctest: +SKIP
>>> net.total_params                                    # doctest: +SKIP
966986

Only ``lark`` and ``numpy`` are needed to check a spec; ONNX, PyTorch and TVM are
imported by the functions that need them.
"""

from __future__ import annotations

from .kernel.diagnostics import Diagnostic, NindslError
from .kernel.progress import SILENT, Progress
from .kernel.version import __version__
from .language import check, load, parse
from .language.ir import Network
from .language.syntax import Module

__all__ = ["parse", "check", "load", "to_onnx", "to_torch", "train", "load_artifact", "Network", "Module",
           "NindslError", "Diagnostic", "__version__"]


def to_onnx(network: Network, weights=None, seed: int = 0):
    """The checked ``onnx.ModelProto`` of a network; needs ``nindsl[onnx]``."""
    from .onnx.lower import to_onnx as lower

    return lower(network, weights, seed)


def to_torch(network: Network, weights=None, seed: int = 0):
    """The PyTorch twin (an ``nn.Module``) of a checked network; needs ``nindsl[torch]``."""
    from .torch.twin import to_torch as twin

    return twin(network, weights, seed)


def train(network: Network, options=None, progress: Progress = SILENT) -> dict:
    """Train the twin as the spec's ``train`` section says (see :func:`nindsl.torch.training.train`)."""
    from .torch.training import train as run

    return run(network, options, progress)


def load_artifact(folder):
    """A compiled artifact folder, verified and loaded: ``artifact(batch) → outputs``."""
    from .tvm.deploy.artifact import Artifact

    return Artifact(folder)
