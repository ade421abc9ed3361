"""Per-stage settings of an mlpconv: `init`, `lr_scale` and `bias_lr_scale` as one value or one
per stage, as Caffe sets them per convolution; the shipped specs use them to match their prototxts."""

from __future__ import annotations

import pytest

import nindsl
from nindsl.language import ir
from nindsl.language.layers import training
from nindsl.weights import initial_weights

from conftest import SPECS

STAGES = """network s() {{
    input x: f32[N, 3, 8, 8]
    c: mlpconv([4, 4, 2], 3, {args})
    global_avgpool()
}}
train {{
    bias_lr_scale = 2
}}
"""


def _settings(network: ir.Network) -> dict[str, tuple]:
    layer, shape = network.layers[0], network.shapes[0]
    return {w.name: training(layer, w, network.train.bias_lr_scale) for w in shape.weights}


def test_one_value_applies_to_every_stage():
    settings = _settings(nindsl.check(STAGES.format(args="lr_scale = 0.5, init = normal(std = 0.2)")))
    assert {s.lr_scale for n, s in settings.items() if n.endswith("weight")} == {0.5}
    assert {s.lr_scale for n, s in settings.items() if n.endswith("bias")} == {1.0}
    assert {s.init.std for n, s in settings.items() if n.endswith("weight")} == {0.2}


def test_a_list_gives_each_stage_its_own():
    network = nindsl.check(STAGES.format(
        args="lr_scale = [1, 1, 0.1], bias_lr_scale = [2, 2, 1], init = [normal(std = 0.01), xavier(), kaiming()]"))
    settings = _settings(network)
    assert [settings[f"c.{i}.weight"].lr_scale for i in range(3)] == [1, 1, 0.1]
    assert [settings[f"c.{i}.bias"].lr_scale for i in range(3)] == [2, 2, 0.1]
    assert [settings[f"c.{i}.weight"].init.kind for i in range(3)] == ["normal", "xavier", "kaiming"]
    assert abs(float(initial_weights(network)["c.0.weight"].std()) - 0.01) < 0.004


@pytest.mark.parametrize("args, where, message", [
    ("lr_scale = [1, 0.1]", "lr_scale", "`lr_scale` has 2 entries; this mlpconv has 3 stages"),
    ("init = [xavier()]", "init", "`init` has 1 entry; this mlpconv has 3 stages"),
    ("bias_lr_scale = [1, 2, 3, 4]", "bias_lr_scale", "`bias_lr_scale` has 4 entries"),
    ("lr_scale = [1, -1, 1]", "-1", "`lr_scale[1]` must be at least 0"),
    ("init = [xavier(), nrmal(), xavier()]", "nrmal", "unknown `init[1]` `nrmal`"),
    ("lr_scale = []", "[]", "must be a value or a non-empty list"),
])
def test_a_wrong_list_is_a_located_error(args, where, message):
    text = STAGES.format(args=args)
    with pytest.raises(nindsl.NindslError) as error:
        nindsl.check(text)
    (diagnostic,) = error.value.diagnostics
    assert message in diagnostic.message and diagnostic.span is not None
    line = text.splitlines()[diagnostic.span.line - 1]
    assert line[diagnostic.span.column - 1:].startswith(where)


def test_conv_and_dense_take_a_bias_scale():
    network = nindsl.check("network s() {\n    input x: f32[N, 3]\n    d: dense(2, lr_scale = 0.5, bias_lr_scale = 1)\n}\n")
    layer, (weight, bias) = network.layers[0], network.shapes[0].weights
    assert training(layer, bias, 2.0).lr_scale == 0.5 and training(layer, weight, 2.0).lr_scale == 0.5


def test_imagenet_inits_follow_the_prototxt():
    """std 0.01 for conv1, conv3 and cccp8 (conv4's last stage), 0.05 for every other convolution."""
    network = nindsl.load(SPECS / "nin_imagenet.nin")
    stds = {w.name: (training(layer, w).init or network.train.init).std
            for layer, shape in zip(network.layers, network.shapes) for w in shape.weights if w.role == "weight"}
    narrow = {"conv1.0.weight", "conv3.0.weight", "conv4.2.weight"}
    assert {name for name, std in stds.items() if std == 0.01} == narrow
    assert all(std == 0.05 for name, std in stds.items() if name not in narrow) and len(stds) == 12
    assert (network.train.epochs, network.train.schedule.every, network.train.bias_lr_scale) == (22, 10, 2.0)


def test_cifar10_learning_rates_follow_the_prototxt():
    """blobs_lr 1 and 2 everywhere but cccp6 (conv3's last stage): 0.1 and 0.1."""
    pytest.importorskip("torch")
    from nindsl.torch.training import param_groups

    network = nindsl.load(SPECS / "nin_cifar10.nin")
    twin = nindsl.to_torch(network)
    names = {id(p): n for n, p in twin.named_parameters()}
    scales = {names[id(p)]: group["lr_scale"] for group in param_groups(network, twin) for p in group["params"]}
    assert scales["conv3.2.weight"] == pytest.approx(0.1) and scales["conv3.2.bias"] == pytest.approx(0.1)
    assert {s for n, s in scales.items() if n.endswith("weight") and n != "conv3.2.weight"} == {1.0}
    assert {s for n, s in scales.items() if n.endswith("bias") and n != "conv3.2.bias"} == {2.0}
