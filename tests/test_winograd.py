"""Winograd convolutions (nindsl.tvm.winograd): the transforms compute the convolution, the
float32 kernel stays within a documented error of a float64 reference on He-initialised
weights and inputs, the rule picks the layers it should, and an untuned build with it equals
ONNX Runtime (and without it, when the profile says so).

The error bounds (max |error| over a 2 × 16 × 16 output, outputs of about unit size: He-scaled
weights, standard normal inputs) are about three times what was measured; a direct float32
convolution of the same shapes errs by about 1.2e-6 (3×3) and 1.5e-6 (5×5):

| tile      | measured | bound  |
|-----------|----------|--------|
| F(2×2,3×3) | 1.8e-6  | 6e-6   |
| F(4×4,3×3) | 1.7e-5  | 5e-5   |
| F(2×2,5×5) | 1.1e-5  | 4e-5   |
| F(6×6,3×3) | 5.5e-5  | 2e-4   |
| F(4×4,5×5) | 3.9e-5  | 1.5e-4 |

Builds use all but F(6×6,3×3) (``winograd.TILES``), whose error is measured so that it is
known before anyone makes it a choice.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

import nindsl  # noqa: E402
from conftest import SPECS  # noqa: E402
from nindsl.tvm import schedules, winograd  # noqa: E402
from nindsl.tvm.profiles import load_profile, resolved_target  # noqa: E402

LLVM = load_profile("llvm")
BOUNDS = {(2, 3): 6e-6, (4, 3): 5e-5, (2, 5): 4e-5, (6, 3): 2e-4, (4, 5): 1.5e-4}


def _reference(x, w, pad):
    """The convolution in float64 (NHWC input, OIHW weights, stride 1)."""
    n, h, width, _ = x.shape
    r = w.shape[2]
    padded = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    oh, ow = h + 2 * pad - r + 1, width + 2 * pad - r + 1
    out = np.zeros((n, oh, ow, w.shape[0]))
    for i in range(r):
        for j in range(r):
            out += np.einsum("nhwc,oc->nhwo", padded[:, i:i + oh, j:j + ow], w[:, :, i, j].astype(np.float64))
    return out


def _winograd(x, w, m, pad, accumulators=None, images=1):
    """The scheduled float32 kernel of an untuned build, the weights transformed as a build does
    (``accumulators``: as many sum registers as another CPU has; ``images`` a step)."""
    from tvm import s_tir, te

    target = tvm.target.Target(resolved_target(LLVM))
    weight = te.placeholder(w.shape, "float32", name="w")
    transformed = winograd.transform_weights(weight, m)
    u = tvm.runtime.tensor(np.zeros([int(d) for d in transformed.shape], np.float32))
    tvm.compile(te.create_prim_func([weight, transformed]), target=target)(tvm.runtime.tensor(w), u)
    data = te.placeholder(x.shape, "float32", name="x")
    u_in = te.placeholder(transformed.shape, "float32", name="u")
    out = winograd.conv2d(data, u_in, m, w.shape[2], (pad,) * 4)
    sch = s_tir.Schedule(te.create_prim_func([data, u_in, out]))
    lanes, sums = schedules.lanes_and_accumulators(target)
    winograd.schedule(sch, lanes, accumulators or sums, images=images)
    y = tvm.runtime.tensor(np.zeros([int(d) for d in out.shape], np.float32))
    tvm.compile(sch.mod, target=target)(tvm.runtime.tensor(x), u, y)
    return y.numpy()


@pytest.mark.parametrize("m, r", sorted(BOUNDS))
def test_the_transforms_compute_the_convolution_exactly_in_float64(m, r):
    from nindsl.tvm.compat import winograd_matrices

    a, b, g = winograd_matrices(m, r)
    rng = np.random.default_rng(m * 10 + r)
    d, kernel = rng.standard_normal((m + r - 1, m + r - 1)), rng.standard_normal((r, r))
    y = a.T @ ((g @ kernel @ g.T) * (b.T @ d @ b)) @ a
    expected = [[np.sum(d[i:i + r, j:j + r] * kernel) for j in range(m)] for i in range(m)]
    np.testing.assert_allclose(y, expected, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("m, r", sorted(BOUNDS))
def test_the_float32_kernel_is_within_its_bound_of_float64(m, r):
    rng = np.random.default_rng(0)
    channels = 96 if r == 5 else 64
    w = rng.normal(0, np.sqrt(2 / (channels * r * r)), (48, channels, r, r)).astype(np.float32)
    x = rng.standard_normal((2, 16, 16, channels)).astype(np.float32)
    error = np.abs(_winograd(x, w, m, r // 2) - _reference(x, w, r // 2)).max()
    assert error <= BOUNDS[(m, r)], f"F({m}×{m},{r}×{r}): max |error| {error:.2e}"


@pytest.mark.parametrize("shape, m, pad, accumulators", [((1, 9, 11, 16, 20), 4, 0, None),
                                                         ((1, 12, 12, 32, 48), 2, 1, None),
                                                         ((1, 13, 13, 16, 32), 2, 1, 12)],
                         ids=["7x9-map-20-channels", "block-of-9-tiles-across-rows", "49-tiles-in-12-sums"])
def test_odd_maps_and_channels_are_computed_too(shape, m, pad, accumulators):
    """A 7×9 output (no whole tiles), 20 output channels (no whole 16-lane vector), no padding;
    a 6 × 6 grid of tiles whose register blocks (9 tiles on AVX-512) straddle rows of tiles;
    49 tiles with AVX2's 12 sums (no block of 3 or more divides them: the last is partial)."""
    n, h, w_, c, o = shape
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.1, (o, c, 3, 3)).astype(np.float32)
    x = rng.standard_normal((n, h, w_, c)).astype(np.float32)
    np.testing.assert_allclose(_winograd(x, w, m, pad, accumulators), _reference(x, w, pad), atol=1e-4)


@pytest.mark.parametrize("images", [2, 3])
def test_several_images_a_step_compute_the_same_convolution(images):
    """A fixed batch of 6 taken 2 or 3 images a step; a 6×6 map of 4 tiles; 20 output channels."""
    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.1, (20, 16, 3, 3)).astype(np.float32)
    x = rng.standard_normal((6, 6, 6, 16)).astype(np.float32)
    np.testing.assert_allclose(_winograd(x, w, 2, 1, images=images), _reference(x, w, 1), atol=1e-4)


def test_a_fixed_batch_takes_as_many_images_a_step_as_fit_and_divide_it():
    from tvm import te

    def images(batch, size, m=4):
        data = te.placeholder((batch, size, size, 32), "float32")
        u = te.placeholder((m + 2, m + 2, 32, 32), "float32")
        return winograd.images(te.create_prim_func([data, u, winograd.conv2d(data, u, m, 3, (1,) * 4)]))

    assert images(64, 16) == 4 and images(6, 16) == 3 and images(1, 16) == 1  # 16 tiles an image: up to 64
    assert images(64, 32) == 1 and images(tvm.tirx.Var("n", "int64"), 16) == 1  # 64 tiles; any batch size


def test_blocks_of_tiles_fill_the_sums_where_no_block_divides_the_tiles():
    assert winograd._block_size(16, 49, 12) == (4, 3)  # nin_imagenet conv2.0's 7 × 7 tiles on AVX2: 17 blocks, the last of 1
    assert winograd._block_size(12, 16, 28) == (3, 8) and winograd._block_size(16, 49, 28) == (4, 7)


def test_the_rule_takes_stride_one_3x3_and_5x5_layers_with_enough_tiles_and_channels():
    assert winograd.tile(5, 1, 16, 16, 96, 192) == 4  # nin_cifar10 conv2.0: 16 tiles of F(4×4, 5×5)
    assert winograd.tile(5, 1, 27, 27, 96, 256) == 4  # nin_imagenet conv2.0: 49 tiles
    assert winograd.tile(5, 1, 6, 6, 96, 256) is None  # 4 tiles of F(4×4), 9 of F(2×2): too few
    assert winograd.tile(3, 1, 32, 32, 64, 64) == 4 and winograd.tile(3, 1, 16, 16, 128, 64) == 4
    assert winograd.tile(3, 1, 8, 8, 192, 192) == 2  # nin_cifar10 conv3.0: 4 tiles of F(4×4), 16 of F(2×2)
    assert winograd.tile(3, 1, 13, 13, 256, 384) is None  # F(4×4): 14 MB of weights for 16 tiles; F(2×2) saves 1.94×
    assert winograd.tile(3, 1, 6, 6, 384, 1024) is None  # nin_imagenet conv4.0: 4 tiles
    assert winograd.tile(3, 2, 32, 32, 64, 64) is None and winograd.tile(1, 1, 32, 32, 64, 64) is None
    assert winograd.tile(5, 1, 32, 32, 3, 192) is None  # 3 input channels (nin_cifar10 conv1.0)
    assert winograd.tile(11, 1, 54, 54, 96, 96) is None
    assert winograd.tile(3, 1, 8, 8, 64, 64) is None  # nin_digits: 2.4 M multiply-adds an image, too little work


def test_multiplications_count_the_element_wise_products():
    assert winograd.multiplications(5, None, 16, 16, 96, 192) == 16 * 16 * 25 * 96 * 192
    assert winograd.multiplications(5, 2, 16, 16, 96, 192) == 8 * 8 * 36 * 96 * 192
    assert winograd.saving(3, 4, 32, 32) == 4.0 and round(winograd.saving(5, 2, 16, 16), 2) == 2.78


SPEC = ("network w() {\n    input x: f32[N, 32, 24, 24]\n    conv(32, 5, pad = 2)\n    conv(32, 3, pad = 1)\n"
        "    conv(10, 1)\n    global_avgpool()\n    softmax()\n}\n")


def test_a_build_takes_winograd_where_the_rule_says_and_not_when_the_profile_turns_it_off():
    from nindsl.tvm.frontend import prepare

    network = nindsl.check(SPEC)
    names = lambda **kw: [gv.name_hint for gv in prepare(network, LLVM, 1, channels_last=True, **kw).get_global_vars()]
    assert sum("winograd_conv2d" in n for n in names(legalize=winograd.legalize(winograd.choose))) == 2
    assert not any("winograd" in n for n in names())


@pytest.mark.slow
def test_every_winograd_convolution_gets_its_schedule():
    """An untuned build keeps TVM's own (slow) schedule for a kernel whose template fails: none may."""
    from tvm.s_tir import meta_schedule as ms

    from nindsl.tvm.frontend import prepare
    from nindsl.tvm.untuned import _schedule

    target = tvm.target.Target(resolved_target(LLVM))
    for spec, batch in ((SPEC, 1), (SPEC, None), (SPEC.replace("24, 24]", "27, 27]"), 2)):
        module = prepare(nindsl.check(spec), LLVM, batch, channels_last=True, legalize=winograd.legalize(winograd.choose))
        tasks = [t for t in ms.relax_integration.extract_tasks(module, target) if winograd.applies(t.dispatched[0])]
        assert len(tasks) == 2
        assert all(_schedule(t.dispatched[0], target, t.task_name) is not None for t in tasks), spec


@pytest.mark.slow
def test_an_untuned_build_with_winograd_equals_onnxruntime():
    """Top-1 equal, probabilities within 1e-4 (issue 33's contract), for any batch size; and the
    same network with ``winograd = false`` in the profile."""
    from nindsl.onnx.lower import to_onnx
    from nindsl.onnx.runtime import run as run_onnx
    from nindsl.tvm.build import build
    from nindsl.tvm.deploy.artifact import Runner

    from numerics import assert_agree, test_inputs, test_weights

    network = nindsl.check(SPEC)
    weights = test_weights(network)
    off = dataclasses.replace(LLVM, schedule=dataclasses.replace(LLVM.schedule, winograd=False))
    for profile in (LLVM, off):
        runner = Runner.from_build(build(network, profile, weights, batch=None))
        for batch in (1, 3):
            x = test_inputs(network, batch, seed=batch)
            assert_agree(runner(x), run_onnx(to_onnx(network, weights), x),
                         f"winograd={profile.schedule.winograd}, batch {batch}", tolerance=1e-4)


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("nin_*.nin")))
def test_the_plan_names_the_convolutions_the_build_puts_in_winograd_form(spec):
    """`winograd.plan` (the manifest, inspect and the bench count by it) reads the rule off the IR;
    the build applies it to Relax's calls: the two agree on every shipped spec."""
    from tvm.s_tir import meta_schedule as ms

    from nindsl.tvm.frontend import prepare

    network = nindsl.load(SPECS / spec)
    module = prepare(network, LLVM, 1, channels_last=True, legalize=winograd.legalize(winograd.choose))
    target = tvm.target.Target(resolved_target(LLVM))
    built = sorted(winograd.applies(t.dispatched[0]) for t in ms.relax_integration.extract_tasks(module, target))
    assert built.count(True) == len(winograd.plan(network))
    assert 0 < winograd.fraction(network) < 1 or not winograd.plan(network)


def test_an_artifact_says_which_layers_took_winograd_and_inspect_shows_it(cli, tmp_path):
    (tmp_path / "w.nin").write_text(SPEC)
    assert cli("compile", tmp_path / "w.nin", "-t", "llvm", "-o", tmp_path / "on").code == 0
    manifest = json.loads((tmp_path / "on" / "manifest.json").read_text())
    assert manifest["winograd"] == {"conv1": "F(4x4,5x5)", "conv2": "F(4x4,3x3)"}
    direct = 24 * 24 * (25 * 32 * 32 + 9 * 32 * 32 + 32 * 10)
    done = 36 * (64 * 32 * 32 + 36 * 32 * 32) + 24 * 24 * 32 * 10  # 6 × 6 tiles of 4 × 4
    assert manifest["multiplications"] == {"direct": direct, "done": done}
    shown = cli("inspect", tmp_path / "on").out
    assert "conv1 F(4x4,5x5), conv2 F(4x4,3x3)" in shown and f"({done / direct:.0%})" in shown
    assert cli("compile", tmp_path / "w.nin", "-t", "llvm", "--no-winograd", "-o", tmp_path / "off").code == 0
    assert json.loads((tmp_path / "off" / "manifest.json").read_text())["winograd"] == "off"
    assert "winograd      off" in cli("inspect", tmp_path / "off").out


@pytest.mark.parametrize("options, says", [
    (["-t", "onnx"], "--no-winograd does nothing with --target onnx"),
    (["-t", "llvm", "--precision", "int8", "--calibrate", "random"], "does nothing with --precision int8"),
    (["-t", "llvm", "--db", "nowhere"], "does nothing with --db without --tune"),
    (["-t", "llvm", "--tune", "--rpc", "127.0.0.1:9", "--key", "cpu"], "does nothing with --rpc"),
    (["-t", "h200"], "does nothing with a CUDA target"),
])
def test_no_winograd_is_refused_where_it_would_do_nothing(cli, tmp_path, options, says):
    (tmp_path / "w.nin").write_text(SPEC)
    shown = cli("compile", tmp_path / "w.nin", *options, "--no-winograd", "-o", tmp_path / "out")
    assert shown.code == 1 and says in shown.err and not (tmp_path / "out").exists()


def test_the_bench_counts_winograd_multiplications_and_holds_them_to_the_peak():
    import io

    from nindsl.bench import Record, winograd_multiplications
    from nindsl.cli.printing import print_bench

    network = nindsl.check(SPEC)
    share = winograd_multiplications(network, LLVM, ("onnxruntime", "tvm-untuned"))
    assert share == {"tvm-untuned": pytest.approx(winograd.fraction(network))} and share["tvm-untuned"] < 0.5
    off = dataclasses.replace(LLVM, schedule=dataclasses.replace(LLVM.schedule, winograd=False))
    assert winograd_multiplications(network, off, ("tvm-untuned",)) == {}
    shown = io.StringIO()
    print_bench([Record("tvm-untuned", 1, 1.0, 1.0, 1.0, 1000, 50.0, 0.5, 0.0, multiplications=share["tvm-untuned"])],
                100.0, network, file=shown)
    assert "Winograd on conv1 F(4x4,5x5), conv2 F(4x4,3x3)" in shown.getvalue()


def test_summary_wide_shows_the_multiplications_a_cpu_build_does(cli):
    shown = cli("summary", SPECS / "nin_cifar10.nin", "--wide").out
    network = nindsl.load(SPECS / "nin_cifar10.nin")
    row = next(line for line in shown.splitlines() if "conv2.0" in line)
    assert "F(4×4,5×5) 18,874,368" in row  # 16 tiles of 8×8 per map, 96 × 192 channels
    done = round(network.total_macs * winograd.fraction(network))
    assert f"{done:,}" in shown and f"{done / 1e6:,.1f} M multiplications" in shown
    assert "Winograd" not in cli("summary", SPECS / "nin_cifar10.nin").out
