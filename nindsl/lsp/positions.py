"""Positions between the client and the checker: LSP counts columns in the client's units
(UTF-16 code units unless both sides agree on another), spans in code points from 1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types

from ..kernel.diagnostics import Span


@dataclass(frozen=True)
class Positions:
    """Columns in the client's units (LSP's default is UTF-16 code units) ↔ code points."""

    encoding: str = types.PositionEncodingKind.Utf16

    def units(self, text: str) -> int:
        if self.encoding == types.PositionEncodingKind.Utf32:
            return len(text)
        if self.encoding == types.PositionEncodingKind.Utf8:
            return len(text.encode("utf-8", errors="surrogatepass"))
        return len(text.encode("utf-16-le", errors="surrogatepass")) // 2

    def position(self, lines: list[str], line: int, column: int) -> types.Position:
        """A 1-based (line, column in code points) as a client position."""
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        return types.Position(line=max(line - 1, 0), character=self.units(text[: max(column - 1, 0)]))

    def range(self, span: Span) -> types.Range:
        lines = span.source.lines if span.source else []
        return types.Range(start=self.position(lines, span.line, span.column),
                           end=self.position(lines, span.end_line, span.end_column))

    def from_client(self, text: str, position: types.Position) -> tuple[int, int]:
        """A client position in ``text`` as a 1-based (line, column in code points)."""
        lines = text.split("\n")
        line = lines[position.line] if position.line < len(lines) else ""
        column, used = 0, 0
        while column < len(line) and used < position.character:
            used += self.units(line[column])
            column += 1
        return position.line + 1, column + 1


def uri(path: str | Path) -> str:
    return Path(path).absolute().as_uri()
