"""A spec's files → scopes: `import`s resolved, followed and confined to the project.

Each file's `let` constants and `block` definitions, with those of the files it imports,
make its :class:`Scope`. An import is relative to the importing file, must stay inside
the project folder once symbolic links are followed, and may not form a cycle.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from ..kernel import limits
from ..kernel.diagnostics import Collector, NindslError, Note, Source, Span
from . import syntax as ast
from .evaluate import ValueMistake, evaluate
from .parser import parse, parse_file


@dataclass
class Scope:
    """What one file defines: constants and blocks (its own and its imports')."""

    module: ast.Module
    constants: dict[str, Any] = field(default_factory=dict)
    blocks: dict[str, tuple[ast.BlockDef, "Scope"]] = field(default_factory=dict)


class Loader:
    """Makes the scope of a file and, once each, of the files it imports; ``sources`` lists
    every file read, in order."""

    def __init__(self, root: Path | None, errors: Collector, open_texts: Mapping[str, str] | None = None):
        self.root = root
        self.errors = errors
        self.open_texts = open_texts or {}  # resolved path → text read instead of the file (an editor's buffer)
        self.scopes: dict[str, Scope] = {}
        self.sources: list[Source] = []
        self.failed: list[ast.Import] = []  # imports that could not be read: what they define is missing

    def scope(self, module: ast.Module, chain: tuple[str, ...]) -> Scope:
        scope = Scope(module)
        defined: dict[str, Span | None] = {}
        for item in module.items:
            match item:
                case ast.Import():
                    imported = self.load_import(item, module, chain)
                    if imported is None:
                        self.failed.append(item)
                    else:
                        scope.constants.update(imported.constants)
                        scope.blocks.update(imported.blocks)
                case ast.Let(name=name) | ast.BlockDef(name=name):
                    name_span = item.name_span
                    if name in defined:
                        self.errors.error("E0108", f"`{name}` is defined twice in this file", name_span,
                                          notes=[Note("first defined here", defined[name])])
                        continue
                    defined[name] = name_span
                    if isinstance(item, ast.BlockDef):
                        scope.blocks[name] = (item, scope)
                        continue
                    try:
                        scope.constants[name] = evaluate(item.value, scope.constants)
                    except ValueMistake as error:
                        self.errors.error(error.code, error.message, error.span, error.help)
        return scope

    def load_import(self, item: ast.Import, importer: ast.Module, chain: tuple[str, ...]) -> Scope | None:
        base = Path(importer.source.path).parent if importer.source and importer.source.path != "<string>" \
            else Path.cwd()
        if os.path.isabs(item.path):
            self.errors.error("E0303", f"import `{item.path}` is an absolute path", item.span,
                              "imports are relative to the importing file")
            return None
        try:
            target = (base / item.path).resolve()
        except RuntimeError:  # (Python 3.11 raises it for a symlink loop)
            self.errors.error("E0301", f"cannot import `{item.path}`: it is a symbolic link that leads to itself",
                              item.span)
            return None
        except OSError as error:  # a name too long, a folder that cannot be read
            self.errors.error("E0301", f"cannot import `{item.path}`: {error.strerror or error}", item.span)
            return None
        root = self.root.resolve() if self.root else base.resolve()
        if not target.is_relative_to(root):
            self.errors.error("E0303", f"import `{item.path}` leads outside the project folder", item.span,
                              "imports must stay inside the folder of the spec being checked "
                              "(symlinks are followed)")
            return None
        key = str(target)
        if key in chain:
            cycle = [Path(p).name for p in chain[chain.index(key):]] + [target.name]
            self.errors.error("E0302", f"import cycle: {' → '.join(cycle)}", item.span,
                              "move the shared blocks into a file that both import")
            return None
        if len(chain) >= limits.MAX_IMPORT_DEPTH:
            self.errors.error("E0401", f"imports nest deeper than {limits.MAX_IMPORT_DEPTH} files", item.span)
            return None
        if key in self.scopes:
            return self.scopes[key]
        try:
            text = self.open_texts.get(key)
            module = parse_file(_shown(target)) if text is None else parse(text, _shown(target))
        except NindslError as error:
            if error.diagnostics[0].code == "E0301" and error.diagnostics[0].span is None:
                self.errors.error("E0301", f"cannot import `{item.path}`: {error.diagnostics[0].message}",
                                  item.span)
            else:
                self.errors.extend(error)
            return None
        self.sources.append(module.source)
        scope = self.scope(module, chain + (key,))
        self.scopes[key] = scope
        return scope


# The diagnostics an import that failed explains: a name or block it would have defined.
_MISSING = {"E0106": "unknown name", "E0101": "unknown layer"}


def blame_failed_imports(errors: Collector, failed: list[ast.Import]) -> None:
    """Say, under each unknown name or layer, that it may come from an import that failed
    (reported on its own): `drop` in a copied spec whose `import "blocks.nin"` found no file."""
    if not failed:
        return
    where = ", ".join(f"`{item.path}` ({item.span})" if item.span else f"`{item.path}`" for item in failed)
    for index, diagnostic in enumerate(errors.diagnostics):
        named = re.match(r"unknown (?:name|layer) `([^`]+)`", diagnostic.message)
        if diagnostic.code not in _MISSING or not named:
            continue
        said = (f"`{named.group(1)}` may be defined in {where}, which could not be imported (see that error): "
                "fix the import first")
        errors.diagnostics[index] = replace(diagnostic, help=said) if diagnostic.help is None else \
            replace(diagnostic, notes=diagnostic.notes + (Note(said),))


def _shown(path: Path) -> str:
    """A path as diagnostics show it: relative to the working folder when that is shorter."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        return str(path)
    return relative if not relative.startswith("../..") else str(path)
