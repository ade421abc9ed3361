"""How a call in a spec is bound: a :class:`Signature` lists its parameters (name, kind of
value, default) and the function that builds the result from the bound values.

>>> Signature((Param("p", "prob"),), dict).usage("dropout")
'dropout(p)'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

REQUIRED = object()  # the default of a parameter that must be given


@dataclass(frozen=True)
class Param:
    """One parameter of a layer (or of `normal(...)`, `sgd(...)`, ...); ``kind`` names the
    conversion the binder applies (`size`, `count`, `widths`, `prob`, `round`, ...)."""

    name: str
    kind: str
    default: Any = REQUIRED


@dataclass(frozen=True)
class Signature:
    params: tuple[Param, ...]
    build: Callable[..., Any]

    def usage(self, name: str) -> str:
        def show(p: Param) -> str:
            return p.name if p.default is REQUIRED else f"{p.name} = {_show_default(p.default)}"
        return f"{name}({', '.join(show(p) for p in self.params)})"


def _show_default(value: Any) -> str:
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def fixed(cls, **values):
    """A builder that adds ``values`` to the bound arguments: ``fixed(GlobalPool, mode="avg")``."""
    return lambda **kwargs: cls(**values, **kwargs)
