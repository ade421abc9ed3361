"""ONNX files: bytes, reading with clear errors, and nindsl's metadata in them.

Every ``.onnx`` nindsl writes says where it came from in its ``metadata_props``: the
nindsl version, the spec's sha256 and text, the network parameters and the weights'
origin (``nindsl inspect`` prints them); and, when the spec's train section sets any, how
image files are prepared for it (``preprocess``: resize, mean, std), which ``nindsl run``
applies to images.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..kernel import limits
from ..kernel.diagnostics import NindslError
from ..kernel.io import refuse_kind, regular_file
from ..kernel.version import __version__
from ..language import ir

METADATA_PREFIX = "nindsl."


UNTRAINED = "drawn from the spec's init"


def weights_origin(weights, seed: int = 0) -> str:
    """Where a model's weights came from, as its metadata records it."""
    if weights is None:
        return f"{UNTRAINED}, seed {seed}"
    return str(weights) if not isinstance(weights, dict) else "given in memory"


def metadata(network: ir.Network, weights_origin: str) -> dict[str, str]:
    sources = {source.path: source.text for source in network.sources or ()}
    return {
        f"{METADATA_PREFIX}version": __version__,
        f"{METADATA_PREFIX}spec_hash": network.spec_hash,
        f"{METADATA_PREFIX}network": network.name,
        f"{METADATA_PREFIX}params": json.dumps(dict(network.params), sort_keys=True, default=str),
        f"{METADATA_PREFIX}weights": weights_origin,
        f"{METADATA_PREFIX}spec": json.dumps(sources, sort_keys=True),
    } | ({f"{METADATA_PREFIX}preprocess": json.dumps(network.train.preprocess, sort_keys=True)}
         if network.train.preprocess else {})  # absent otherwise: such models stay byte for byte as before


def serialize(model) -> bytes:
    return model.SerializeToString(deterministic=True)


def read_model(path: str | Path):
    """Load an ONNX file with a clear error when it is missing, truncated or not ONNX."""
    import onnx
    from google.protobuf.message import DecodeError

    path = regular_file(path, "an ONNX model", limits.MAX_MODEL_BYTES)
    refuse_kind(path, "an ONNX model", ("onnx",))
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except FileNotFoundError:
        raise NindslError.one("E0301", f"no such file `{path}`", None) from None
    except (DecodeError, onnx.checker.ValidationError, ValueError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NindslError.one("E0502", f"`{path}` is not a valid ONNX model ({first})", None,
                              "is the file truncated? compile it again with `nindsl compile --target onnx`") \
            from None
    return model


def model_metadata(model) -> dict[str, str]:
    return {p.key[len(METADATA_PREFIX):]: p.value for p in model.metadata_props
            if p.key.startswith(METADATA_PREFIX)}
