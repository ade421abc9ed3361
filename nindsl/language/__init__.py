"""The language: text → syntax tree → typed IR, every shape checked.

One stage per module, chained here::

    parser.parse → elaborate.elaborate → shapes.infer

``layers.py`` is the registry of layer kinds (signature, IR class, shape rule, ONNX
lowering, twin code, description); ``fmt.py`` prints a syntax tree back as text and
``summary.py`` tabulates a checked network. This package imports Lark and nothing
heavier: no numpy, ONNX, PyTorch, TVM or rich.
"""

from __future__ import annotations

from pathlib import Path

from .ir import Network
from .syntax import Module


def parse(text: str, path: str = "<string>") -> Module:
    """Parse spec text into a syntax tree; raise ``NindslError`` on bad syntax."""
    from .parser import parse as parse_text

    return parse_text(text, path)


def check(spec: Module | str, overrides: dict[str, str] | None = None, root: str | Path | None = None) -> Network:
    """Elaborate and shape-check a parsed module (or spec text): a typed :class:`Network`.

    ``overrides`` sets network parameters from expression text, as ``--set k=v`` does.
    Raises ``NindslError`` with every mistake found.
    """
    from .elaborate import elaborate
    from .shapes import infer

    module = parse(spec) if isinstance(spec, str) else spec
    return infer(elaborate(module, overrides, root))


def load(path: str | Path, overrides: dict[str, str] | None = None, root: str | Path | None = None) -> Network:
    """Read, parse and check the spec at ``path``."""
    from .parser import parse_file

    return check(parse_file(path), overrides, root)
