"""Errors as data, rendered once.

Every mistake nindsl finds in a user's input becomes a :class:`Diagnostic`: a code,
a message, a :class:`Span` in a source file, an optional ``help`` and notes. A stage
collects all it can find and raises one :class:`NindslError` carrying them; the CLI
renders them rustc-style::

    specs/broken.nin:7:12: error[E0101]: unknown layer `mlpcov`
       |
     7 |     conv1: mlpcov([192, 160, 96], kernel = 5, pad = 2)
       |            ^^^^^^
       = help: did you mean `mlpconv`?
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Iterable

#: Every diagnostic code, with a one-line meaning (``nindsl explain`` material and the
#: golden tests' index). Codes are stable: tests and users may grep for them.
CODES: dict[str, str] = {
    # text
    "E0001": "syntax error",
    "E0002": "unclosed delimiter",
    "E0003": "forbidden character",
    "E0004": "file is not valid UTF-8",
    "E0005": "number too large",
    "E0006": "empty spec",
    # names and arguments
    "E0101": "unknown layer or block",
    "E0102": "unknown argument",
    "E0103": "duplicate argument",
    "E0104": "missing argument",
    "E0105": "wrong type",
    "E0106": "unknown name",
    "E0107": "value out of range",
    "E0108": "duplicate definition",
    "E0109": "too many positional arguments",
    "E0110": "misplaced statement",
    "E0111": "recursive block",
    # shapes
    "E0201": "spatial size collapses",
    "E0202": "layer needs a different rank",
    "E0203": "declared output does not match",
    "E0204": "declared input is invalid",
    # files and imports
    "E0301": "cannot read file",
    "E0302": "import cycle",
    "E0303": "path escapes the project folder",
    # limits
    "E0401": "limit exceeded",
    # weights and artifacts
    "E0501": "weights do not match the spec",
    "E0502": "refused or damaged file",
    "E0503": "bad input data",
    "E0504": "bad command-line value",
    "E0505": "output refused",
}


@dataclass(frozen=True)
class Source:
    """A file's text as the diagnostics see it (BOM and CRs already removed)."""

    path: str
    text: str

    @cached_property
    def lines(self) -> list[str]:
        """The text split once, so that rendering many diagnostics stays linear."""
        return self.text.split("\n")

    def line(self, number: int) -> str:
        return self.lines[number - 1] if 0 < number <= len(self.lines) else ""


@dataclass(frozen=True)
class Span:
    """Where a node came from: 1-based line and column, end column exclusive."""

    source: Source | None
    line: int
    column: int
    end_line: int
    end_column: int

    @property
    def path(self) -> str:
        return self.source.path if self.source else "<unknown>"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


def span_field():
    """A dataclass field for a span: kept out of equality, hashing and repr."""
    return field(default=None, compare=False, repr=False, hash=False)


@dataclass(frozen=True)
class Note:
    message: str
    span: Span | None = None


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span | None
    help: str | None = None
    notes: tuple[Note, ...] = ()

    def render(self, color: bool = False) -> str:
        return render(self, color=color)


class NindslError(Exception):
    """A user's mistake (or damaged input): one or more located diagnostics."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        assert self.diagnostics, "a NindslError needs at least one diagnostic"
        super().__init__(self.diagnostics[0].message)

    def __str__(self) -> str:  # rendered when asked for, not when raised
        return "\n".join(render(d) for d in self.diagnostics)

    @classmethod
    def one(cls, code: str, message: str, span: Span | None = None, help: str | None = None,
            notes: Iterable[Note] = ()) -> "NindslError":
        return cls([Diagnostic(code, message, span, help, tuple(notes))])


class Collector:
    """Accumulates diagnostics across a stage so that all mistakes are reported."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def error(self, code: str, message: str, span: Span | None, help: str | None = None,
              notes: Iterable[Note] = ()) -> None:
        assert code in CODES, code
        self.diagnostics.append(Diagnostic(code, message, span, help, tuple(notes)))

    def extend(self, error: NindslError) -> None:
        self.diagnostics.extend(error.diagnostics)

    def raise_if_any(self) -> None:
        if self.diagnostics:
            raise NindslError(sorted_by_location(self.diagnostics))

    def __bool__(self) -> bool:
        return bool(self.diagnostics)


def sorted_by_location(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Files in the order first seen; within a file, by line and column."""
    files: dict[str, int] = {}
    for diagnostic in diagnostics:
        files.setdefault(diagnostic.span.path if diagnostic.span else "", len(files))

    def key(diagnostic: Diagnostic):
        if diagnostic.span is None:
            return (files[""], 0, 0)
        return (files[diagnostic.span.path], diagnostic.span.line, diagnostic.span.column)

    return sorted(diagnostics, key=key)


_MANY = 60  # names beyond which suggestions look only at names of about the same length and first letter


@lru_cache(maxsize=16)
def _by_length(names: frozenset[str]) -> dict[tuple[str, int], list[str]]:
    """Names grouped by (first letter, length): built once for a large set of names."""
    groups: dict[tuple[str, int], list[str]] = {}
    for name in sorted(names):
        groups.setdefault((name[:1].lower(), len(name)), []).append(name)
    return groups


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A ``did you mean `x`?`` hint, or None when nothing is close.

    Bounded work: among many names (thousands of `let`s), only those within two characters of
    the word's length that share its first letter are compared, at most ``_MANY`` of them.
    """
    names = frozenset(candidates) - {word}  # (the word itself is known: it is not what was meant)
    if len(names) > _MANY:
        groups = _by_length(names)
        first = word[:1].lower()
        near = [n for size in sorted(range(len(word) - 2, len(word) + 3), key=lambda s: abs(s - len(word)))
                for n in groups.get((first, size), ())]
        names = frozenset(near[:_MANY])
    close = difflib.get_close_matches(word, sorted(names), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


# What a terminal would act on instead of showing: C0 and C1 controls but tab and newline
# (ESC starts colour, cursor and title sequences, CR overwrites a line), bidirectional
# overrides and isolates, invisible format characters, line separators, and lone surrogates
# (a file name that is not UTF-8: printing one would fail).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
                     "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]")


def _escaped(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on shown as an escape (``\\x1b``,
    ``\\u202e``), so that a hostile file or name cannot drive the terminal that prints it.

    >>> printable("a\x1b[2Jb")
    'a\\\\x1b[2Jb'
    """
    return _UNSAFE.sub(_escaped, text)


def _display_width(text: str) -> int:
    """Columns a prefix of a source line takes on a terminal, as printed (tabs to 4, escapes)."""
    return len(printable(text).expandtabs(4))


_MAX_SHOWN = 100


def _snippet(span: Span, marker: str = "^") -> list[str]:
    if span.source is None:
        return []
    raw = span.source.line(span.line)
    shown = printable(raw).expandtabs(4)
    gutter = " " * len(str(span.line))
    start = _display_width(raw[: span.column - 1])
    if span.end_line == span.line:
        end = _display_width(raw[: max(span.end_column - 1, span.column)])
    else:
        end = _display_width(raw.rstrip())
    carets = marker * max(end - start, 1)
    if len(shown) > _MAX_SHOWN:  # keep a huge line readable: a window around the span
        left = max(0, min(start - 20, len(shown) - _MAX_SHOWN))
        shown = ("…" if left else "") + shown[left: left + _MAX_SHOWN] + ("…" if left + _MAX_SHOWN < len(shown) else "")
        start = start - left + (1 if left else 0)
        carets = carets[: _MAX_SHOWN - (start - (1 if left else 0))]
    return [f" {gutter} |", f" {span.line} | {shown}", f" {gutter} | {' ' * start}{carets}"]


_MAX_WORD = 200  # characters of one word of a message (a name, a value, a path) shown whole
_LONG_WORD = re.compile(r"\S{%d,}" % (_MAX_WORD + 1))


def _shortened(match: re.Match) -> str:
    word = match.group()
    return f"{word[:120]}…{word[-40:]} ({len(word):,} characters)"


def shown(text: str) -> str:
    """``text`` as a message shows it: :func:`printable`, and a word longer than 200 characters
    (a name or a value a user gave, a 900 KB name) cut to its ends, so what is echoed is bounded.

    >>> shown("unknown name `" + "n" * 1000 + "`")[-30:]
    'nnnnnnnnnn` (1,002 characters)'
    """
    return _LONG_WORD.sub(_shortened, printable(text))


def render(diagnostic: Diagnostic, color: bool = False) -> str:
    """Render one diagnostic as text: header, source line, caret, help and notes. Whatever
    came from a file or a name is shown through :func:`shown`."""
    red, blue, bold, reset = ("\x1b[31;1m", "\x1b[34;1m", "\x1b[1m", "\x1b[0m") if color else ("",) * 4
    where = shown(f"{diagnostic.span}: ") if diagnostic.span else ""
    lines = [f"{bold}{where}{red}error[{diagnostic.code}]{reset}{bold}: {shown(diagnostic.message)}{reset}"]
    if diagnostic.span:
        lines += _snippet(diagnostic.span)
    for note in diagnostic.notes:
        if note.span:
            lines.append(f"{blue}note{reset}: {shown(str(note.span))}: {shown(note.message)}")
            lines += _snippet(note.span, marker="-")
        else:
            lines.append(f"{blue}note{reset}: {shown(note.message)}")
    if diagnostic.help:
        lines.append(f"{blue}help{reset}: {shown(diagnostic.help)}")
    return "\n".join(lines)
