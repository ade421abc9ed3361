"""The language: the issue's examples, reference figures, shapes, names, API."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import nindsl
from nindsl.language import ir, layers
from nindsl.language.windows import conv_size, pool_size

from conftest import FIXTURES, ROOT, SHIPPED, SPECS

LANGUAGE = FIXTURES / "language"

# ../shared/NIN_REFERENCE.md
REFERENCE_PARAMS = {
    "nin_cifar10.nin": 966_986,
    "nin_cifar100.nin": 984_356,
    "nin_imagenet.nin": 7_595_176,
    "nin_textbook.nin": 1_992_166,
}


@pytest.mark.parametrize("name,params", REFERENCE_PARAMS.items())
def test_reference_parameter_counts(name, params):
    assert nindsl.load(SPECS / name).total_params == params


def test_reference_multiply_adds():
    assert nindsl.load(SPECS / "nin_cifar10.nin").total_macs == 222_486_528  # "about 222.5 M"
    assert round(nindsl.load(SPECS / "nin_imagenet.nin").total_macs / 1e9, 2) == 1.10


def test_cifar10_shapes_follow_caffe():
    net = nindsl.load(SPECS / "nin_cifar10.nin")
    spatial = {layer.label: shape.out_shape[2:] for layer, shape in zip(net.layers, net.shapes)}
    assert spatial["conv1"] == (32, 32) and spatial["pool1"] == (16, 16) and spatial["pool2"] == (8, 8)
    assert net.output == ir.TensorSpec("probs", "f32", ("N", 10))


def test_imagenet_shapes_follow_caffe():
    net = nindsl.load(SPECS / "nin_imagenet.nin")
    spatial = [s.out_shape[2:] for layer, s in zip(net.layers, net.shapes) if isinstance(layer, layers.Pool)]
    assert spatial == [(27, 27), (13, 13), (6, 6), (1, 1)]


@pytest.mark.parametrize("name", ["issue_cifar10.nin", "issue_textbook.nin", "issue_digits.nin"])
def test_the_issue_examples_check_as_written(name):
    net = nindsl.load(LANGUAGE / name)
    assert net.output.shape == ("N", 10)


def test_issue_textbook_matches_reference():
    assert nindsl.load(LANGUAGE / "issue_textbook.nin").total_params == 1_992_166


def test_cifar100_by_override_equals_the_shipped_spec():
    by_override = nindsl.load(SPECS / "nin_cifar10.nin", overrides={"classes": "100"})
    assert by_override.total_params == 984_356
    assert by_override.output.shape == ("N", 100)


def test_generated_names_are_stable_and_unique():
    net = nindsl.load(SPECS / "nin_digits.nin")
    labels = [layer.label for layer in net.layers]
    assert labels == ["mlpconv1", "mlpconv2", "mlpconv3", "maxpool1", "dropout1", "mlpconv4",
                      "global_avgpool1", "softmax1"]
    assert [w.name for w in net.weights][:4] == ["mlpconv1.0.weight", "mlpconv1.0.bias",
                                                  "mlpconv1.1.weight", "mlpconv1.1.bias"]


def test_labels_in_repeats_and_labelled_block_calls():
    net = nindsl.check("""
block pair(width) {
    a: conv(width, 3, pad = 1)
    b: conv(width, 1)
}
network t() {
    input x: f32[N, 2, 8, 8]
    first: pair(4)
    second: pair(8)
    repeat 2 {
        r: relu()
    }
    conv(3, 1)
    conv1: conv(5, 1)
    global_avgpool()
}
""")
    assert [l.label for l in net.layers] == ["first_a", "first_b", "second_a", "second_b", "r_1", "r_2",
                                             "conv2", "conv1", "global_avgpool1"]


def test_constants_arithmetic_and_types():
    net = nindsl.check("""
let base = 16
let widths = [base * 2, base // 2 + 1, (3 - 1) * 4]
let p = 1 / 4
network t(k = 3) {
    input x: f32[B, 1, 9, 9]
    mlpconv(widths, kernel = k, pad = k // 2)
    dropout(p)
    global_maxpool()
    output y: f32[B, 8]
}
""")
    assert net.layers[0].channels == (32, 9, 8)
    assert net.layers[1].p == 0.25
    assert net.batch_dim == "B"


def test_train_section_is_typed():
    train = nindsl.load(SPECS / "nin_cifar10.nin").train
    assert train.optimizer == ir.Sgd(lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert train.schedule == ir.Schedule(kind="step", every=256, gamma=0.1)  # the solver's 100k of 120k iterations
    assert train.init == ir.Init(kind="normal", std=0.05)
    assert (train.epochs, train.batch, train.bias_lr_scale) == (307, 128, 2.0)


@given(size=st.integers(1, 300), kernel=st.integers(1, 11), stride=st.integers(1, 6), data=st.data())
def test_pool_size_against_brute_force(size, kernel, stride, data):
    """Count window positions directly: floor keeps windows inside the padded input; ceil
    also keeps a last partial window, unless it would start in the right padding."""
    pad = data.draw(st.integers(0, kernel // 2), label="pad")  # the checker allows at most half a window
    assume(size + 2 * pad >= kernel)
    starts = range(0, size + 2 * pad, stride)  # in padded coordinates
    floor = sum(1 for s in starts if s + kernel <= size + 2 * pad)
    ceil = sum(1 for s in starts if s < size + pad and s <= size + 2 * pad - kernel + stride - 1)
    assert pool_size(size, kernel, stride, pad, ceil=False) == floor == conv_size(size, kernel, stride, pad)
    assert pool_size(size, kernel, stride, pad, ceil=True) == ceil


def test_api_parse_check_load_agree():
    text = (SPECS / "nin_cifar10.nin").read_text()
    module = nindsl.parse(text, path="cifar.nin")
    assert nindsl.check(module) == nindsl.load(SPECS / "nin_cifar10.nin")


def test_equality_ignores_spans():
    a = nindsl.parse("let x = 1\n")
    b = nindsl.parse("\n\n   let   x=1   # moved\n")
    assert a == b and a.items[0].span != b.items[0].span


def test_checking_imports_nothing_heavy():
    code = ("import sys, nindsl; nindsl.load('specs/nin_cifar10.nin'); "
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'tvm', 'rich') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_limits_are_checked_before_expansion():
    nested = "network t() {\n input x: f32[N, 1, 4, 4]\n" + "repeat 1 {\n" * 40 + "relu()\n" + "}\n" * 40 + "}\n"
    with pytest.raises(nindsl.NindslError) as error:
        nindsl.check(nested)
    assert error.value.diagnostics[0].code == "E0401"
    huge = "network t() {\n input x: f32[N, 1, 4, 4]\n repeat 10000 { repeat 10000 { relu() } } }\n"
    with pytest.raises(nindsl.NindslError) as error:
        nindsl.check(huge)
    assert "more than 100,000 layers" in error.value.diagnostics[0].message
    with pytest.raises(nindsl.NindslError) as error:
        nindsl.parse("let x = 1\n" * 200_000)
    assert error.value.diagnostics[0].code == "E0401"
    with pytest.raises(nindsl.NindslError) as error:
        nindsl.check("network t() { input x: f32[N, 1, 4, 4] mlpconv([1000000, 1000000, 1000000], kernel = 1) }")
    assert "parameters; the limit" in error.value.diagnostics[0].message


def test_library_files_check_clean(cli):
    assert cli("check", SPECS / "blocks.nin").code == 0


def test_cli_check_summary_on_every_shipped_spec(cli):
    result = cli("check", *SHIPPED)
    assert result.code == 0, result.err
    for spec in SHIPPED:
        result = cli("summary", spec)
        assert result.code == 0
        assert "total" in result.out and f"{nindsl.load(spec).total_params:,}" in result.out


def test_summary_makes_the_head_argument(cli):
    out = cli("summary", SPECS / "nin_cifar10.nin").out
    assert "global average pooling has 0 parameters" in out
    assert "192×8×8 feature map would need 122,890" in out  # 192·8·8·10 + 10


def test_bad_set_values(cli):
    result = cli("check", SPECS / "nin_cifar10.nin", "--set", "clases=100")
    assert result.code == 1 and "did you mean `classes`" in result.err
    result = cli("check", SPECS / "nin_cifar10.nin", "--set", "classes")
    assert result.code == 1 and "name=value" in result.err
    result = cli("check", SPECS / "nin_cifar10.nin", "--set", "classes=(")
    assert result.code == 1 and "in --set classes=(: not a valid value" in result.err
    result = cli("check", SPECS / "nin_cifar10.nin", "--set", "classes=0")
    assert result.code == 1 and "at least 1" in result.err


@pytest.mark.parametrize("value, message", [
    ("abc", "in --set classes=abc: unknown name `abc`"),
    ("abc + 1", "in --set classes=abc + 1: unknown name `abc`"),
    ('"abc"', 'in --set classes="abc": `classes` takes an integer (its default is 10), not a string'),
    ("[1, 2]", "in --set classes=[1, 2]: `classes` takes an integer (its default is 10), not a list"),
    ("1 let x = 2", "in --set classes=1 let x = 2: not a valid value"),
])
def test_a_bad_set_value_is_located_at_the_option_not_at_the_uses(cli, value, message):
    result = cli("check", SPECS / "nin_cifar10.nin", "--set", f"classes={value}")
    assert result.code == 1 and message in result.err and result.err.endswith("\n1 error\n"), result.err
    assert "nin_cifar10.nin:" not in result.err  # not at each use of `classes` in the spec


def test_a_set_value_that_does_not_fit_a_use_says_it_came_from_the_option(cli):
    result = cli("check", SPECS / "nin_cifar10.nin", "--set", "classes=2.5")
    assert result.code == 1 and "must be an integer, got 2.5" in result.err
    assert result.err.count("note: `classes` is 2.5 from the command line: in --set classes=2.5") == 2
