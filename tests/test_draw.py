"""`nindsl draw`: a picture of every shipped network, written atomically; a bad suffix is a clear error."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from conftest import SHIPPED, SPECS  # noqa: E402


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_spec_draws(cli, tmp_path, spec):
    out = tmp_path / "net.png"
    assert cli("draw", spec, "-o", out).code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_svg_names_every_layer_and_marks_the_head(cli, tmp_path):
    out = tmp_path / "net.svg"
    assert cli("draw", SPECS / "nin_cifar10.nin", "-o", out).code == 0
    text = out.read_text()
    for word in ("conv1", "conv3", "pool2", "head: no parameters", "966,986 parameters", "192×8×8"):
        assert word in text, word
    assert [p.name for p in tmp_path.iterdir()] == ["net.svg"]  # no temporary file left


def test_an_unknown_picture_format_is_refused(cli, tmp_path):
    result = cli("draw", SPECS / "nin_digits.nin", "-o", tmp_path / "net.gif")
    assert result.code == 1 and "E0504" in result.err and not (tmp_path / "net.gif").exists()


def test_the_picture_has_a_legend_of_the_colours_it_uses(cli, tmp_path):
    import nindsl
    from nindsl.draw import COLOURS, legend

    cifar = dict(legend(nindsl.load(SPECS / "nin_cifar10.nin")))
    assert cifar == {COLOURS["conv"]: "k×k convolution", COLOURS["one"]: "1×1 convolution (mlpconv stage)",
                     COLOURS["pool"]: "pooling", COLOURS["head"]: "softmax (shaded: the head)",
                     COLOURS["other"]: "dropout, flatten, ReLU"}
    textbook = dict(legend(nindsl.load(SPECS / "nin_textbook.nin")))  # no softmax: the band alone is green
    assert textbook[COLOURS["head"]] == "shaded: the head" and COLOURS["dense"] not in textbook
    out = tmp_path / "net.svg"
    assert cli("draw", SPECS / "nin_cifar10.nin", "-o", out).code == 0
    text = out.read_text()
    for meaning in cifar.values():
        assert meaning in text, meaning
