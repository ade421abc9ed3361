"""A Pygments lexer for .nin specs, registered for ``*.nin`` through Pygments' plugin entry
point (``pygments.lexers`` in pyproject.toml), so ``pygmentize spec.nin`` highlights.

It follows the grammar's terminals (``nindsl/language/grammar.lark``): comments, strings,
numbers, keywords; layer names from the layer registry are builtins, other calls functions,
``label:`` labels and ``name =`` keyword arguments attributes. It imports Pygments and the
layer registry only.

>>> from pygments import lex
>>> [(str(kind), text) for kind, text in lex("conv1: mlpconv([8], kernel = 3)", NinLexer())][:3]
[('Token.Name.Label', 'conv1'), ('Token.Punctuation', ':'), ('Token.Text.Whitespace', ' ')]
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Whitespace

from ..language.layers import SIGNATURES

#: The grammar's keywords (nindsl.language.parser.KEYWORDS, which imports Lark).
KEYWORDS = ("import", "let", "block", "network", "input", "output", "repeat", "train")
CONSTANTS = ("true", "false")
NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class NinLexer(RegexLexer):
    """Network-in-Network specs (nindsl)."""

    name = "nindsl"
    aliases = ["nin", "nindsl"]
    filenames = ["*.nin"]
    mimetypes = ["text/x-nin"]
    url = "https://github.com/nindsl/nindsl"

    tokens = {
        "root": [
            (r"\s+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r'"(?:[^"\\\n]|\\.)*"', String.Double),
            (words(KEYWORDS, suffix=r"\b"), Keyword),
            (words(CONSTANTS, suffix=r"\b"), Keyword.Constant),
            (r"(f32)(\s*)(\[)", bygroups(Keyword.Type, Whitespace, Punctuation)),
            (words(tuple(sorted(SIGNATURES, key=len, reverse=True)), suffix=r"(?=\s*\()"), Name.Builtin),
            (NAME + r"(?=\s*\()", Name.Function),
            (NAME + r"(?=\s*:)", Name.Label),
            (NAME + r"(?=\s*=(?!=))", Name.Attribute),
            (r"([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?", Number),
            (r"//|[-+*/=]", Operator),
            (r"[()\[\]{},:]", Punctuation),
            (NAME, Name),
        ],
    }
