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


def _recorded(model, path: str | Path, key: str):
    """The JSON value of nindsl's metadata ``key`` in ``model`` (None when absent), or a clear
    refusal when it is not JSON, is nested past what the reader follows, or is too long."""
    text = model_metadata(model).get(key)
    if text is None:
        return None
    if len(text) > limits.MAX_MANIFEST_BYTES:
        raise _bad_record(path, key, f"is {len(text):,} characters; the most nindsl reads is "
                                     f"{limits.MAX_MANIFEST_BYTES:,}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        raise _bad_record(path, key, f"is not JSON ({str(error)[:80]})") from None


def _bad_record(path: str | Path, key: str, why: str) -> NindslError:
    return NindslError.one("E0502", f"`{path}`: its metadata `{METADATA_PREFIX}{key}` {why}", None,
                           "was it changed after nindsl wrote it? compile the spec again")


def recorded_preprocess(model, path: str | Path) -> dict:
    """How images are prepared for ``model`` (resize, mean, std) as its metadata records it,
    checked by the train section's rules for its input ({} when it records none)."""
    from ..language.train_section import preprocess_mistake

    record = _recorded(model, path, "preprocess")
    if record is None:
        return {}
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    shape = tuple(d.dim_param or d.dim_value for d in inputs[0].type.tensor_type.shape.dim) if inputs else ()
    mistake = preprocess_mistake(record, shape)
    if mistake:
        raise _bad_record(path, "preprocess", mistake)
    return record


def recorded_params(model, path: str | Path) -> dict:
    """The network parameters ``model`` was built with, as its metadata records them: names and
    values ({} when it records none)."""
    record = _recorded(model, path, "params")
    if record is None:
        return {}
    if not isinstance(record, dict) or len(record) > limits.MAX_LIST:
        raise _bad_record(path, "params", "is not an object of parameter names and values")
    for name, value in record.items():
        values = value if isinstance(value, list) else [value]
        if not name.isidentifier() or len(values) > limits.MAX_LIST or \
                not all(isinstance(v, (int, float, str)) for v in values):
            raise _bad_record(path, "params", f"gives `{name[:40]}` a value that is not a number, a word or a list")
    return record
