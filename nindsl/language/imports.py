"""A spec's files → scopes: `import`s resolved, followed and confined to the project.

Each file's `let` constants and `block` definitions, with those of the files it imports,
make its :class:`Scope`. An import is relative to the importing file, must stay inside
the project folder once symbolic links are followed, and may not form a cycle.
"""

from __future__ import annotations

import dataclasses
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
    where: dict[str, Span | None] = field(default_factory=dict)  # each constant's `let` name, in whichever file


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
        self.failed_lets: set[str] = set()  # `let`s whose value has an error (reported there, not at each use)

    def scope(self, module: ast.Module, chain: tuple[str, ...]) -> Scope:
        scope = Scope(module)
        defined: dict[str, Span | None] = {}
        below = _lets(module)  # the constants this file defines, and where: a `let` sees only those above it
        # each `let` with the names it used before anything defined them, and its value's error
        unbound: list[tuple[ast.Let, list[ast.Name], ValueMistake | None]] = []
        for index, item in enumerate(module.items):
            match item:
                case ast.Import():
                    imported = self.load_import(item, module, chain)
                    if imported is None:
                        self.failed.append(item)
                    else:
                        self.merge(scope, imported, item)
                case ast.Let(name=name) | ast.BlockDef(name=name):
                    name_span = item.name_span
                    if name in defined:
                        self.errors.error("E0108", f"`{name}` is defined twice in this file", name_span,
                                          notes=[Note("first defined here", defined[name])])
                        continue
                    defined[name] = name_span
                    if isinstance(item, ast.BlockDef):
                        self.refuse_shadowing(scope, name, name_span, scope.blocks.get(name, (None,))[0])
                        scope.blocks[name] = (item, scope)
                        continue
                    self.refuse_shadowing(scope, name, name_span, None)
                    names = [n for n in names_used(item.value) if n.id not in scope.constants]
                    later = [n for n in names if below.get(n.id, (-1, None))[0] > index]
                    if later:
                        self.defined_below(name, later, below)
                        continue
                    try:
                        scope.constants[name] = evaluate(item.value, scope.constants)
                        scope.where[name] = name_span
                        unbound.append((item, names, None))
                    except ValueMistake as error:
                        unbound.append((item, names, error))
        for item, names, error in unbound:  # a name an import below defines: the `let` took it for a word
            later = [n for n in names if n.id in scope.constants]
            if later:
                self.defined_below(item.name, later, {n.id: (0, scope.where.get(n.id)) for n in later})
                scope.constants.pop(item.name, None)
            elif error is not None:
                self.errors.error(error.code, error.message, error.span, error.help)
                self.failed_lets.add(item.name)
        return scope

    def defined_below(self, name: str, later: list[ast.Name], below: dict[str, tuple[int, Span | None]]) -> None:
        """`let a = b` above `let b = 3` (or an import that defines `b`): order matters."""
        for used in later:
            where = below[used.id][1]
            self.errors.error("E0106", f"`{used.id}` is defined below this `let`; a `let` sees only the names "
                                       "defined above it", used.span,
                              f"move the definition of `{used.id}` above `let {name}`",
                              [Note(f"`{used.id}` is defined here", where)] if where else [])
        self.failed_lets.add(name)

    def merge(self, scope: Scope, imported: Scope, item: ast.Import) -> None:
        """What an import defines, into the importer's scope; a name it defines that the scope
        has from elsewhere (another import, a `let` or `block` above) is an error, not the last one
        silently winning. The same file reached twice (two imports of one library) defines it once."""
        for name, value in imported.constants.items():
            origin = imported.where.get(name)
            if name in scope.constants and scope.where.get(name) is not origin:
                self.clash(name, item, scope.where.get(name), origin)
                continue
            scope.constants[name], scope.where[name] = value, origin
        for name, (block, home) in imported.blocks.items():
            if name in scope.blocks and scope.blocks[name][0] is not block:
                self.clash(name, item, scope.blocks[name][0].name_span, block.name_span)
                continue
            scope.blocks[name] = (block, home)

    def clash(self, name: str, item: ast.Import, first: Span | None, second: Span | None) -> None:
        self.errors.error("E0108", f"`{name}` is defined twice: this import defines it again", item.span,
                          "rename one of them, or import only one of the files that define it",
                          [Note(f"`{name}` is defined here", first), Note("and here", second)])

    def refuse_shadowing(self, scope: Scope, name: str, span: Span | None, block: ast.BlockDef | None) -> None:
        """A `let` or `block` of this file may not redefine what an import above brought."""
        first = block.name_span if block is not None else scope.where.get(name) if name in scope.constants else None
        if first is not None:
            self.errors.error("E0108", f"`{name}` is already defined by an import above", span,
                              "rename it: the imported definition would be silently replaced",
                              [Note(f"`{name}` is defined here", first)])

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


def _lets(module: ast.Module) -> dict[str, tuple[int, Span | None]]:
    """Each constant a file's `let`s define: the item's index, and where (the first)."""
    found: dict[str, tuple[int, Span | None]] = {}
    for index, item in enumerate(module.items):
        if isinstance(item, ast.Let):
            found.setdefault(item.name, (index, item.name_span))
    return found


def names_used(node: Any) -> list[ast.Name]:
    """Every name an expression (or any part of the syntax tree) uses, in order; no recursion."""
    found, stack = [], [node]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name):
            found.append(node)
        elif isinstance(node, (tuple, list)):
            stack.extend(reversed(node))
        elif dataclasses.is_dataclass(node):
            stack.extend(reversed([getattr(node, f.name) for f in dataclasses.fields(node) if f.compare]))
    return found


def drop_explained(errors: Collector, failed_lets: set[str]) -> None:
    """A `let` whose value has an error is reported there: its uses, where the name is then
    unknown, are not reported again."""
    if failed_lets:
        errors.diagnostics[:] = [d for d in errors.diagnostics if not (
            d.code == "E0106" and any(d.message == f"unknown name `{name}`" for name in failed_lets))]


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
