"""Property-based tests on the real grammar (Hypothesis; profiles in conftest.py, picked by
HYPOTHESIS_PROFILE)."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.lark import from_lark

import nindsl
from nindsl.language import ir, layers
from nindsl.kernel.diagnostics import NindslError
from nindsl.language.fmt import format_module
from nindsl.language.parser import grammar

from conftest import SHIPPED
from strategies import specs

# The lexer glues tokens; give the generator separators so keywords stay keywords.
_TEXT = from_lark(grammar(), start="start", explicit={
    "NAME": st.sampled_from(["x", "mlpconv", "conv", "relu", "N", "classes", "ceil", "kernel", "a_1"]),
    "NUMBER": st.sampled_from(["0", "1", "3", "2.5", "1e-4", "99999"]),
    "STRING": st.sampled_from(['"blocks.nin"', '"x"', '""']),
})


def _assert_only_located_errors(text: str) -> None:
    try:
        module = nindsl.parse(text, path="fuzz.nin")
        nindsl.check(module)
    except NindslError as error:
        for diagnostic in error.diagnostics:
            if diagnostic.span is not None:
                assert diagnostic.span.line >= 1 and diagnostic.span.column >= 1
            assert diagnostic.render()


@pytest.mark.slow
@given(_TEXT)
def test_grammar_text_only_raises_nindsl_errors(text):
    _assert_only_located_errors(text)


@given(st.text(alphabet=st.sampled_from(list("network(){}[]:=,+-*/#\"\n\t 019.eNx_")), max_size=80))
def test_arbitrary_text_only_raises_nindsl_errors(text):
    _assert_only_located_errors(text)


@given(st.sampled_from(SHIPPED), st.integers(0, 10_000), st.sampled_from(["delete", "insert", "replace"]),
       st.sampled_from(list("(){}[],:=#\"0a-\n")))
def test_one_character_mutations_only_raise_nindsl_errors(spec, position, action, char):
    text = spec.read_text()
    position %= len(text)
    if action == "delete":
        text = text[:position] + text[position + 1:]
    elif action == "insert":
        text = text[:position] + char + text[position:]
    else:
        text = text[:position] + char + text[position + 1:]
    _assert_only_located_errors(text)


@pytest.mark.slow
@given(_TEXT)
def test_parsed_grammar_text_survives_fmt(text):
    try:
        module = nindsl.parse(text)
    except NindslError:
        return
    formatted = format_module(module)
    assert nindsl.parse(formatted) == module
    assert format_module(nindsl.parse(formatted)) == formatted


@given(specs())
def test_generated_specs_check_and_round_trip(case):
    text, (channels, size), classes = case
    network = nindsl.check(text)
    assert network.output.shape == ("N", classes)
    head = max(i for i, layer in enumerate(network.layers) if isinstance(layer, layers.MlpConv))
    assert network.shapes[head].in_shape[1:] == (channels, size, size)
    module = nindsl.parse(text)
    assert nindsl.parse(format_module(module)) == module
