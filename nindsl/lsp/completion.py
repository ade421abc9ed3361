"""Completion from the text before the cursor (which need not parse while one types): layer
names and blocks where a statement goes, keyword arguments and names in scope inside a call,
training settings in `train`, keywords at the top level."""

from __future__ import annotations

import re

from lsprotocol import types

from ..language.elaborate import INITS, OPTIMIZERS, SCHEDULES, TRAIN_SETTINGS
from ..language.layers import SIGNATURES
from .analysis import Analysis
from .features import CALLABLES

_DEFINED = re.compile(r"\b(let|block)\s+([A-Za-z_][A-Za-z0-9_]*)")
_OPEN = {")": "(", "]": "[", "}": "{"}
_STRING = re.compile(r'"([^"\\\n]|\\.)*"?')


def _open_brackets(text: str) -> list[tuple[str, int]]:
    """The brackets still open at the end of ``text`` (comments and strings skipped)."""
    stack: list[tuple[str, int]] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "#":
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
            continue
        if char == '"':
            match = _STRING.match(text, index)
            index = match.end()
            continue
        if char in "([{":
            stack.append((char, index))
        elif char in _OPEN and stack and stack[-1][0] == _OPEN[char]:
            stack.pop()
        index += 1
    return stack


def _word_before(text: str, index: int) -> str:
    match = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", text[:index])
    return match.group(1) if match else ""


def _header_params(text: str, brace: int) -> list[str]:
    """The parameter names of `network x(a, b = 1) {` or `block y(...) {` before a brace."""
    match = re.search(r"\b(?:network|block)\s+[A-Za-z_]\w*\s*\(([^()]*)\)\s*$", text[:brace])
    if not match:
        return []
    return re.findall(r"([A-Za-z_]\w*)\s*(?:=[^,]*)?(?:,|$)", match.group(1))


def _item(label: str, kind: types.CompletionItemKind, detail: str | None = None,
          insert: str | None = None) -> types.CompletionItem:
    return types.CompletionItem(label=label, kind=kind, detail=detail, insert_text=insert)


def complete(analysis: Analysis | None, text: str, line: int, column: int) -> list[types.CompletionItem]:
    """Layer names and blocks where a statement goes, keyword arguments and names in scope
    inside a call, training settings in `train`, keywords at the top level."""
    lines = text.split("\n")
    offset = sum(len(item) + 1 for item in lines[: line - 1]) + column - 1
    before = text[:offset]
    stack = _open_brackets(before)
    names = {match.group(2): match.group(1) for match in _DEFINED.finditer(text)}
    if analysis is not None:
        names.update({name: d.kind for name, d in analysis.symbols.items() if name not in names})
    braces = [index for char, index in stack if char == "{"]
    params = _header_params(before, braces[0]) if braces else []
    scope = [_item(name, types.CompletionItemKind.Variable if kind == "let" else types.CompletionItemKind.Class,
                   kind) for name, kind in names.items()]
    scope += [_item(name, types.CompletionItemKind.Variable, "parameter") for name in params]
    if not stack:
        return [_item(word, types.CompletionItemKind.Keyword) for word in ("import", "let", "block", "network",
                                                                            "train")]
    bracket, index = stack[-1]
    if bracket == "(":
        func = _word_before(before, index)
        items = [_item(p.name, types.CompletionItemKind.Field, p.kind, f"{p.name} = ")
                 for p in CALLABLES[func].params] if func in CALLABLES else []
        if func not in CALLABLES and names.get(func) == "block" and analysis is not None:
            block = analysis.symbols.get(func)
            if block is not None and block.kind == "block":
                items = [_item(p.name, types.CompletionItemKind.Field, "block parameter", f"{p.name} = ")
                         for p in block.node.params]
        return items + scope + [_item(word, types.CompletionItemKind.Keyword) for word in ("true", "false")]
    if bracket == "[":
        return scope
    opener = _word_before(before, index)
    header = re.search(r"\b(train|network|block|repeat)\b[^{}]*$", before[:index])
    if header and header.group(1) == "train" or opener == "train":
        statement = before[before.rfind("\n") + 1:]
        if "=" in statement:
            return scope + [_item(name, types.CompletionItemKind.Function, CALLABLES[name].usage(name))
                            for name in (*INITS, *OPTIMIZERS, *SCHEDULES)]
        return [_item(name, types.CompletionItemKind.Property, kind, f"{name} = ")
                for name, kind in TRAIN_SETTINGS.items()]
    layers = [_item(name, types.CompletionItemKind.Function, signature.usage(name))
              for name, signature in SIGNATURES.items()]
    blocks = [_item(name, types.CompletionItemKind.Class, "block") for name, kind in names.items() if kind == "block"]
    keywords = [_item(word, types.CompletionItemKind.Keyword) for word in ("input", "output", "repeat")]
    return layers + blocks + keywords
