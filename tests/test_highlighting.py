"""Highlighting: the TextMate grammar (editors/) and the Pygments lexer cover every shipped spec.

The TextMate grammar uses `match` rules only (the language has no multi-line token), so a
small engine with Python's `re` runs it as an editor does: line by line, at each point the
rule that matches earliest (the first listed on a tie). No text may be left unmatched.
"""

from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT

GRAMMAR = ROOT / "editors" / "nin.tmLanguage.json"
SPECS = sorted([*ROOT.glob("specs/*.nin"), *ROOT.glob("examples/**/*.nin")])


def _rules(grammar: dict) -> list[dict]:
    rules = []
    for pattern in grammar["patterns"]:
        rule = grammar["repository"][pattern["include"][1:]] if "include" in pattern else pattern
        assert set(rule) <= {"match", "name", "captures"}, f"only `match` rules: {rule}"
        rules.append(rule)
    return rules


def tokenize(text: str, grammar: dict) -> tuple[list[tuple[int, str, str]], list[tuple[int, str]]]:
    """(line, text, scope) for every token, and (line, text) for everything no rule matched."""
    rules = [(re.compile(rule["match"]), rule) for rule in _rules(grammar)]
    tokens, unmatched = [], []
    for number, line in enumerate(text.split("\n"), start=1):
        position = 0
        while position < len(line):
            found = [(m.start(), index, m, rule) for index, (regex, rule) in enumerate(rules)
                     if (m := regex.search(line, position)) and m.end() > m.start()]
            if not found:
                break
            start, _, match, rule = min(found, key=lambda f: f[:2])
            if line[position:start].strip():
                unmatched.append((number, line[position:start].strip()))
            if "captures" in rule:
                for group, capture in rule["captures"].items():
                    if match.group(int(group)):
                        tokens.append((number, match.group(int(group)), capture["name"]))
            else:
                tokens.append((number, match.group(), rule["name"]))
            position = match.end()
        if line[position:].strip():
            unmatched.append((number, line[position:].strip()))
    return tokens, unmatched


@pytest.fixture(scope="module")
def grammar() -> dict:
    return json.loads(GRAMMAR.read_text())


def test_there_are_specs_to_check():
    assert len(SPECS) >= 8 and ROOT / "specs" / "nin_cifar10.nin" in SPECS


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_textmate_grammar_matches_all_of_every_shipped_spec(grammar, spec):
    tokens, unmatched = tokenize(spec.read_text(), grammar)
    assert unmatched == []
    assert tokens


def test_the_textmate_grammar_gives_each_kind_of_token_its_scope(grammar):
    text = (ROOT / "specs" / "nin_cifar10.nin").read_text()
    tokens, _ = tokenize(text, grammar)
    scope = {}
    for _, token, name in tokens:
        scope.setdefault(token, name)
    assert scope["# Network in Network for CIFAR-10 (Lin, Chen & Yan, 2013),"].startswith("comment.")
    assert scope["network"].startswith("storage.type") and scope["nin_cifar10"].startswith("entity.name.function")
    assert scope["train"].startswith("keyword") and scope["input"].startswith("keyword")
    assert scope["conv1"] == "entity.name.label.nin" and scope["mlpconv"].startswith("entity.name.function")
    assert scope["kernel"] == "variable.parameter.nin" and scope["5"] == "constant.numeric.nin"
    assert scope["1e-4"] == "constant.numeric.nin" and scope['"cifar10"'].startswith("string.quoted")
    assert scope["true"].startswith("constant.language") and scope["f32"].startswith("support.type")


def test_the_tokenizer_reports_text_no_rule_matches(grammar):
    _, unmatched = tokenize('let x = 1 @ 2\nlet s = "open\n', grammar)
    assert unmatched == [(1, "@"), (2, '"')]


def test_the_vscode_extension_ships_the_same_grammar_and_registers_the_server():
    folder = ROOT / "editors" / "vscode"
    assert (folder / "syntaxes" / "nin.tmLanguage.json").read_bytes() == GRAMMAR.read_bytes()
    manifest = json.loads((folder / "package.json").read_text())
    (language,) = manifest["contributes"]["languages"]
    (grammar,) = manifest["contributes"]["grammars"]
    assert language["extensions"] == [".nin"] and grammar["language"] == language["id"]
    assert (folder / grammar["path"]).is_file() and (folder / language["configuration"]).is_file()
    assert grammar["scopeName"] == json.loads(GRAMMAR.read_text())["scopeName"]
    assert manifest["contributes"]["configuration"]["properties"]["nindsl.command"]["default"] == ["nindsl", "lsp"]
    assert '"vscode-languageclient/node"' in (folder / manifest["main"]).read_text()


# --- Pygments ----------------------------------------------------------------------------------

pygments = pytest.importorskip("pygments")


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_pygments_lexer_has_no_error_tokens_on_a_shipped_spec(spec):
    from pygments.token import Error

    from nindsl.lsp.pygments_lexer import NinLexer

    text = spec.read_text()
    tokens = list(NinLexer().get_tokens(text))
    assert [value for kind, value in tokens if kind in Error] == []
    assert "".join(value for _, value in tokens) == (text if text.endswith("\n") else text + "\n")


def test_the_pygments_lexer_is_found_for_nin_files_through_its_entry_point():
    from pygments.lexers import get_lexer_by_name, get_lexer_for_filename

    from nindsl.lsp.pygments_lexer import NinLexer

    assert isinstance(get_lexer_for_filename("spec.nin"), NinLexer)
    assert isinstance(get_lexer_by_name("nin"), NinLexer)


def test_the_pygments_lexer_tells_tokens_apart_and_flags_what_is_not_nin():
    from pygments.token import Comment, Error, Keyword, Name, Number, String

    from nindsl.language.parser import KEYWORDS
    from nindsl.lsp.pygments_lexer import CONSTANTS, KEYWORDS as LEXER_KEYWORDS, NinLexer

    assert set(LEXER_KEYWORDS) | set(CONSTANTS) == set(KEYWORDS)
    text = 'network n() {  # c\n    conv1: mlpconv([8], kernel = 3)\n    my_block(0.5, s = "x")\n}\n@'
    kinds = {value: kind for kind, value in NinLexer().get_tokens(text)}
    assert kinds["network"] in Keyword and kinds["# c"] in Comment and kinds["conv1"] in Name.Label
    assert kinds["mlpconv"] in Name.Builtin and kinds["my_block"] in Name.Function
    assert kinds["kernel"] in Name.Attribute and kinds["0.5"] in Number and kinds['"x"'] in String
    assert kinds["@"] in Error
