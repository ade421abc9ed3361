"""bf16 builds (issue 18), AMX tiles, and builds for a CPU other than this one: the bf16
convolutions (vector and tile) against float64 sums rounded to bf16, the whole network against
ONNX Runtime, ``vdpbf16ps`` and the tile instructions in the code built for AVX512-BF16 and AMX
CPUs, the probe that guards AMX, the command line, and artifacts that refuse a CPU without
their instructions.

This project's machines have had neither AVX512-BF16 nor AMX: the kernels that run here are
emulations (:data:`nindsl.tvm.narrow.kernels.bf16.EMULATED`, the same sums from float32 FMAs;
``amx_kernels.emulated_tile_ir``, the tile operations on memory); the real ones are compiled
and their assembly read. On a machine that has them, the command-line tests run them."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

import nindsl
from nindsl.kernel.machine import cpu_flags, missing_cpu_features
from tests.conftest import SPECS
from tests.conftest import TINY_SPEC as TINY
from tests.numerics import test_inputs, test_weights

tvm = pytest.importorskip("tvm")
pytestmark = pytest.mark.tvm

from nindsl.onnx.lower import to_onnx  # noqa: E402
from nindsl.onnx.runtime import runner  # noqa: E402
from nindsl.tvm.narrow.kernels import bf16 as B  # noqa: E402
from nindsl.tvm.narrow.bf16 import bf16_plan, build_bf16, isa_of  # noqa: E402
from nindsl.tvm.narrow.kernels.bf16 import from_bf16, to_bf16  # noqa: E402
from nindsl.tvm.narrow.kernels.int8 import ConvShape, pack_weights  # noqa: E402
from nindsl.tvm.profiles import load_profile, resolved_target  # noqa: E402

HOST = load_profile("llvm")
SAPPHIRE_RAPIDS = '{"kind": "llvm", "mcpu": "sapphirerapids"}'
LACKS_BF16 = bool(missing_cpu_features(["avx512bf16"]))
# The tile kernels run emulated everywhere, and for real where this CPU has AMX-BF16 (its flags,
# and Linux's permission): against the float64 sums, and the emulation's network outputs.
TILES_HERE = cpu_flags() is not None and not missing_cpu_features(["amx-tile", "amx-bf16", "avx512bf16"])
TILES = [True, *([False] if TILES_HERE else [])]  # emulated?


def test_bf16_rounding_is_to_nearest_even():
    values = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 1.0 + 2 ** -9, -2.5, 0.0, 3e38], np.float32)
    # 1 + 2^-8 is halfway between 1 and 1 + 2^-7: to the even one, 1; 1 + 3·2^-8 to 1 + 2^-6
    assert from_bf16(to_bf16(values)).tolist()[:6] == [1.0, 1.0, 1.0 + 2 ** -6, 1.0, -2.5, 0.0]
    assert abs(from_bf16(to_bf16(values))[6] / 3e38 - 1) < 2 ** -8
    assert np.array_equal(to_bf16(from_bf16(np.arange(0, 0x7F80, 7, dtype=np.uint16))),
                          np.arange(0, 0x7F80, 7, dtype=np.uint16))  # bf16 numbers are their own rounding


def _run_conv(shape: ConvShape, relu: bool, seed: int = 0, kernel=None, layout: ConvShape | None = None):
    """The emulated bf16 convolution of random bf16 numbers (or ``kernel()``'s, its weights
    packed for ``layout``), and float64 sums of the same numbers."""
    import torch

    rng = np.random.default_rng(seed)
    isa = B.EMULATED
    x = to_bf16(rng.standard_normal((shape.batch, shape.channels, shape.height, shape.width)))
    w = to_bf16(rng.standard_normal((shape.out_channels, shape.channels, shape.kernel, shape.kw)) * 0.2)
    bias = rng.standard_normal(shape.out_channels).astype(np.float32)
    b, lanes = shape.in_block, isa.lanes
    blocked = np.zeros((shape.batch, shape.height, shape.width, -(-shape.channels // b) * b), np.uint16)
    blocked[..., :shape.channels] = x.transpose(0, 2, 3, 1)
    blocked = blocked.reshape(*blocked.shape[:3], -1, b)
    blocks_out = -(-shape.out_channels // lanes)
    bias_ = np.zeros(blocks_out * lanes, np.float32)
    bias_[:shape.out_channels] = bias
    func = kernel() if kernel else B.schedule_conv(B.conv_func(shape, isa, relu), shape, isa)
    library = tvm.compile(tvm.IRModule({"main": func}), target=resolved_target(HOST))
    oh, ow = shape.out_size
    out = tvm.runtime.empty((shape.batch, oh, ow, blocks_out, lanes), "uint16")
    library["main"](tvm.runtime.tensor(blocked), tvm.runtime.tensor(pack_weights(w, layout or shape, isa)),
                    tvm.runtime.tensor(bias_), out)
    got = out.numpy().reshape(shape.batch, oh, ow, -1)[..., :shape.out_channels].transpose(0, 3, 1, 2)
    exact = torch.nn.functional.conv2d(torch.tensor(from_bf16(x), dtype=torch.float64),
                                       torch.tensor(from_bf16(w), dtype=torch.float64),
                                       torch.tensor(bias, dtype=torch.float64),
                                       stride=(shape.stride, shape.sw), padding=shape.pad).numpy()
    return got, np.maximum(exact, 0) if relu else exact


@pytest.mark.parametrize("shape, relu", [
    (ConvShape(2, 6, 9, 9, 20, 3, 1, 1, 2, 0, 0, 0), True),  # padded, output channels not whole vectors
    (ConvShape(1, 32, 8, 8, 48, 1, 1, 0, 16, 0, 0, 0), False),  # 1×1, negative outputs kept
    (ConvShape(1, 16, 11, 11, 32, 5, 2, 2, 16, 0, 0, 0), True),  # strided, 2 pairs per input block… of 16
    (ConvShape(1, 6, 9, 7, 16, 3, 2, 0, 2, 0, 0, 0, kernel_width=1, stride_width=1), True),  # a folded K × 1 layer
])
def test_the_bf16_convolution_is_the_float64_sum_rounded_to_bf16(shape, relu):
    got, exact = _run_conv(shape, relu)
    # every product of two bf16 numbers is exact in float32, so float32 sums are within a few
    # float32 ulps of float64's; rounding both to bf16 agrees but for sums that fall within
    # those ulps of a halfway point
    assert np.mean(got == to_bf16(exact.astype(np.float32))) > 0.999
    assert np.abs(from_bf16(got) - exact).max() <= 2 ** -8 * np.abs(exact).max()
    if relu:
        assert from_bf16(got).min() >= 0


@pytest.mark.parametrize("mcpu", ["sapphirerapids", "znver4"])
def test_avx512_bf16_targets_get_vdpbf16ps_inlined(mcpu):
    shape = ConvShape(1, 64, 8, 8, 64, 3, 1, 1, 16, 0, 0, 0)
    isa = B.bf16_isa(tvm.target.Target({"kind": "llvm", "mcpu": mcpu}))
    assert isa is (B.AMX if mcpu == "sapphirerapids" else B.AVX512BF16)
    vector = isa.vector  # (AMX's convolutions that tiles do not fit)
    func = B.schedule_conv(B.conv_func(shape, vector, True), shape, vector)
    library = tvm.compile(tvm.IRModule({"main": func}), target={"kind": "llvm", "mcpu": mcpu})
    assembly = library.mod.inspect_source("asm") if hasattr(library, "mod") else library.inspect_source("asm")
    assert assembly.count("vdpbf16ps") >= 4  # one per sum vector of the register block, unrolled
    assert B.step_function(vector) not in assembly  # inlined: no call


def _run_tiles(shape: ConvShape, relu: bool, seed: int = 0, emulated: bool = True):
    """The AMX convolution (``emulated``, or the real tiles), as :func:`_run_conv`."""
    from nindsl.tvm.narrow.kernels import amx as amx_kernels

    return _run_conv(shape, relu, seed, lambda: amx_kernels.conv_func(shape, amx_kernels.BF16, relu,
                                                                      emulated=emulated),
                     amx_kernels.weight_layout(shape))


@pytest.mark.parametrize("shape, relu, block", [
    (ConvShape(2, 64, 9, 8, 64, 3, 1, 1, 16, 0, 0, 0), True, (8, 1, 2)),  # padded, 2 tiles of output channels
    (ConvShape(1, 32, 16, 32, 48, 1, 1, 0, 16, 0, 0, 0), False, (16, 2, 1)),  # 2 tiles of pixels, 3 of channels
    (ConvShape(1, 32, 23, 23, 32, 5, 2, 2, 16, 0, 0, 0), True, (12, 1, 2)),  # strided: rows 2 pixels apart
    (ConvShape(1, 96, 10, 10, 16, 3, 1, 1, 16, 0, 0, 0), True, (10, 1, 1)),  # 3 input tiles, 10-pixel rows
    (ConvShape(1, 24, 12, 12, 10, 1, 1, 0, 16, 0, 0, 0), True, (12, 1, 1)),  # 24 channels in a tile of 32
    (ConvShape(1, 48, 8, 16, 32, 3, 1, 1, 16, 0, 0, 0), True, (16, 1, 2, 32)),  # 48 channels: tiles of 16
    (ConvShape(1, 15, 9, 12, 32, 3, 2, 0, 2, 0, 0, 0, kernel_width=1, stride_width=1), True, (12, 1, 2, 32)),
    # a folded input layer: 15 taps in pairs (16 numbers, 32 bytes), output rows from every other input row
])
@pytest.mark.parametrize("emulated", TILES, ids=lambda e: "emulated" if e else "tiles")
def test_the_amx_convolution_is_the_float64_sum_rounded_to_bf16(shape, relu, block, emulated):
    from nindsl.tvm.narrow.kernels.amx import TileBlock, tile_block

    assert tile_block(shape) == TileBlock(*block)
    got, exact = _run_tiles(shape, relu, emulated=emulated)
    assert np.mean(got == to_bf16(exact.astype(np.float32))) > 0.999
    assert np.abs(from_bf16(got) - exact).max() <= 2 ** -8 * np.abs(exact).max()


def test_tiles_fit_inputs_in_16_or_32_byte_steps_and_8_to_16_pixel_rows():
    from nindsl.tvm.narrow.kernels.amx import tile_block

    assert tile_block(ConvShape(1, 48, 8, 8, 16, 1, 1, 0, 16, 0, 0, 0)).depth == 32  # 96 bytes: 3 tiles of 32
    assert tile_block(ConvShape(1, 32, 6, 6, 16, 1, 1, 0, 16, 0, 0, 0)) is None  # 6-pixel rows
    assert tile_block(ConvShape(1, 32, 7, 7, 16, 1, 1, 0, 16, 0, 0, 0)) is None
    assert tile_block(ConvShape(1, 30, 8, 8, 16, 1, 1, 0, 2, 0, 0, 0)) is None  # 60 bytes a pixel: no whole tiles
    assert tile_block(ConvShape(1, 8, 8, 8, 16, 1, 1, 0, 2, 0, 0, 0)).depth == 16  # 8 channels in pairs: 16 bytes


def test_amx_targets_get_tile_instructions_and_ask_linux_for_them():
    from nindsl.tvm.narrow.kernels import amx as amx_kernels

    shape = ConvShape(1, 64, 16, 16, 64, 3, 1, 1, 16, 0, 0, 0)
    library = tvm.compile(tvm.IRModule({"main": amx_kernels.conv_func(shape, amx_kernels.BF16, True)}),
                          target={"kind": "llvm", "mcpu": "sapphirerapids"})
    assembly = library.mod.inspect_source("asm") if hasattr(library, "mod") else library.inspect_source("asm")
    for instruction in ("ldtilecfg", "tileloadd", "tdpbf16ps", "tilestored", "tilerelease"):
        assert instruction in assembly, instruction
    assert "syscall" in assembly  # arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA), once per process
    assert "nindsl_tiles" not in assembly  # every tile operation inlined


def test_no_bf16_instructions_on_avx2_or_avx512_without_bf16():
    for mcpu in ("znver3", "skylake-avx512", "cascadelake"):
        assert B.bf16_isa(tvm.target.Target({"kind": "llvm", "mcpu": mcpu})) is None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("bf16") / "tiny.nin"
    path.write_text(TINY)
    return nindsl.load(path), path


@pytest.mark.parametrize("spec, isa", [("tiny", B.EMULATED), ("tiny pointwise", B.EMULATED),
                                       ("nin_digits", B.EMULATED), ("tiny", B.EMULATED_AMX),
                                       *([("tiny", B.AMX)] if TILES_HERE else [])])
def test_the_bf16_network_agrees_with_onnx_runtime(tiny, spec, isa, tmp_path):
    from nindsl.tvm.deploy.artifact import Runner
    from nindsl.tvm.narrow.chain import folds

    if spec == "tiny pointwise":  # a 1×1 input layer: channels in pairs, not folded
        (tmp_path / "p.nin").write_text(TINY.replace("kernel = 3, pad = 1)\n    pool1", "kernel = 1)\n    pool1"))
        network = nindsl.load(tmp_path / "p.nin")
    else:
        network = tiny[0] if spec == "tiny" else nindsl.load(SPECS / f"{spec}.nin")
    model = to_onnx(network, test_weights(network))  # He-scaled: outputs far from uniform
    plan = bf16_plan(model)
    assert folds(network, plan) == (spec != "tiny pointwise")  # a K × K layer over 3 or 1 input channels
    built = build_bf16(network, HOST, plan, model, None, isa)
    images = test_inputs(network, 8)
    got, expected = Runner.from_build(built)(images), runner(model)(images)
    # bf16 keeps 8 significant bits: each layer's outputs are within 2^-8 of their float32 value
    assert np.abs(got - expected).max() < 2e-2 * np.abs(expected).max()
    assert np.mean(got.argmax(axis=1) == expected.argmax(axis=1)) >= 7 / 8
    assert not np.array_equal(got, expected)  # (it did compute in bf16)


@pytest.mark.slow  # 6-11 s on 2 cores
def test_compile_bf16_for_a_bf16_cpu_records_its_accuracy_and_instructions(cli, tiny, tmp_path):
    _, spec = tiny
    out = tmp_path / "spr"
    made = cli("compile", spec, "--target", SAPPHIRE_RAPIDS, "--precision", "bf16", "--calibrate", "random",
               "-o", out)
    assert made.code == 0, made.err
    # tiles where they fit, vdpbf16ps elsewhere (on a machine with AMX: if its probe passes)
    isa = isa_of(replace(HOST, target=json.loads(SAPPHIRE_RAPIDS)))[1].name
    assert isa == "amx-bf16" or not LACKS_BF16
    assert f"bf16 on {isa}" in made.out
    if LACKS_BF16:
        assert "this CPU cannot run amx-bf16: comparing the same sums" in made.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "bf16" and manifest["bf16"]["instructions"] == isa
    assert manifest["accuracy"]["top1_agreement"] > 0.9 and manifest["accuracy"]["held_out_images"] == 500
    assert {"avx512bf16", "avx512f", "amx-tile", "amx-bf16"} <= set(manifest["cpu_features"])
    shown = cli("inspect", out)
    assert re.search(r"\n  precision +bf16, untuned\n", shown.out) and re.search(r"accuracy +top-1 agreement", shown.out)
    assert "amx-bf16" in shown.out.split("CPU features")[1]
    assert ("it will not load here" in shown.out) == LACKS_BF16
    if LACKS_BF16:  # refused, not SIGILL
        np.save(tmp_path / "x.npy", np.zeros((1, 3, 12, 12), np.float32))
        ran = cli("run", out, "-i", tmp_path / "x.npy")
        assert ran.code == 1 and "which this CPU lacks" in ran.err and "amx-bf16" in ran.err


def test_bf16_is_refused_with_what_the_cpu_runs_instead(cli, tiny, tmp_path):
    _, spec = tiny
    no_bf16 = cli("compile", spec, "--target", '{"kind": "llvm", "mcpu": "znver3"}', "--precision", "bf16",
                  "-o", tmp_path / "a")
    assert no_bf16.code == 1 and "`znver3` has no bfloat16 instructions" in no_bf16.err
    assert "--precision int8 (avx2) or fp32" in no_bf16.err
    assert not (tmp_path / "a").exists()
    if missing_cpu_features(["avx512bf16", "amx-bf16", "amx-tile"]):
        tuned = cli("compile", spec, "--target", SAPPHIRE_RAPIDS, "--precision", "bf16", "--tune", "-o",
                    tmp_path / "b")
        assert tuned.code == 1 and "--tune measures the bf16 kernels on this machine" in tuned.err
        assert "cannot run amx-bf16" in tuned.err and not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """The tiny network whose tile convolution has 2 tiles of output channels: its model and plan."""
    path = tmp_path_factory.mktemp("bf16") / "deep.nin"
    path.write_text(TINY.replace("mlpconv([24, 16]", "mlpconv([32, 32]"))
    network = nindsl.load(path)
    model = to_onnx(network, test_weights(network))
    return network, model, bf16_plan(model)


def test_bf16_blocks_are_searched_and_kept_by_precision(deep, tmp_path):
    """--tune's search for bf16, run here on the emulations (a machine with AMX and AVX512-BF16
    searches its real kernels the same way): tile and register blocks, cached by precision and
    instructions."""
    from nindsl.tvm.narrow.kernels.amx import TileBlock
    from nindsl.tvm.narrow.bf16 import Bf16Kernels
    from nindsl.tvm.narrow.blocks import search_blocks

    network, _, plan = deep
    cache = tmp_path / "blocks.json"
    chosen = search_blocks(network, plan, HOST, 2, candidates=1, cache=cache, make=Bf16Kernels, isa=B.EMULATED_AMX)
    assert isinstance(chosen["conv1.1.relu"], TileBlock) and isinstance(chosen["conv1.0.relu"], tuple)
    assert sorted(key.split("|")[1] for key in json.loads(cache.read_text())) == \
        ["amx-emulated", *["bf16-emulated"] * (len(chosen) - 1)]
    assert all(key.startswith("bf16|") for key in json.loads(cache.read_text()))


@pytest.mark.slow  # 6-11 s on 2 cores
def test_bf16_kernels_in_other_blocks_compute_the_same_sums(deep):
    """The sums of each output are added in the same order whatever the block of a kernel
    (tile or register block): bit for bit, each convolution run alone on random numbers."""
    from nindsl.tvm.narrow.kernels.amx import TileBlock
    from nindsl.tvm.narrow.bf16 import Bf16Kernels
    from nindsl.tvm.narrow.chain import kernels

    network, _, plan = deep
    calls, weights, _ = kernels(network, plan, 2, B.EMULATED_AMX, None, make=Bf16Kernels)
    others = {c.output: [b for b in c.choice.options[1:] if type(b) is type(c.choice.default)][-1]
              for c in calls if c.choice and len(c.choice.options) > 1}  # (tiles and vectors add in other orders)
    assert others["conv1.1.relu"] == TileBlock(12, 1, 1, 64)  # one tile of channels deep, not the default two
    rng = np.random.default_rng(0)
    shape = None
    for call in calls:
        if call.output in others:
            x = tvm.runtime.tensor(to_bf16(rng.standard_normal(shape)))
            parts = [tvm.runtime.tensor(weights[name]) for name in call.weights]
            results = []
            for func in (call.choice.func(), call.choice.func(others[call.output])):
                out = tvm.runtime.empty(call.shape, call.dtype)
                tvm.compile(tvm.IRModule({"main": func}), target=resolved_target(HOST))["main"](x, *parts, out)
                results.append(out.numpy())
            assert call.choice.func(others[call.output]).script() != call.choice.func().script()
            assert np.array_equal(*results), call.output
        shape = call.shape


# --- builds for another CPU --------------------------------------------------------------------

def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx2", "fma", "avx512_bf16"}
    assert missing_cpu_features(["avx2", "avx512bf16", "amx-bf16", "sse2"], cpu_flags(info)) == ["amx-bf16"]
    assert cpu_flags(tmp_path / "missing") is None


@pytest.mark.skipif(not missing_cpu_features(["avx512f"]), reason="this CPU has AVX-512")
def test_an_artifact_for_a_cpu_with_more_instructions_is_refused_not_run(cli, tmp_path):
    out = tmp_path / "skx"
    made = cli("compile", SPECS / "nin_digits.nin", "--target", '{"kind": "llvm", "mcpu": "skylake-avx512"}',
               "-o", out)
    assert made.code == 0, made.err
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    ran = cli("run", out, "-i", tmp_path / "x.npy")
    assert ran.code == 1 and "built for `skylake-avx512` and uses avx512f" in ran.err  # (was: SIGILL, exit 132)
    assert "--target llvm" in ran.err
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["cpu_features"] = "avx512f"
    (out / "manifest.json").write_text(json.dumps(manifest))
    damaged = cli("run", out, "-i", tmp_path / "x.npy")
    assert damaged.code == 1 and "cpu_features is not a list" in damaged.err


@pytest.mark.skipif(not missing_cpu_features(["avx512vnni"]), reason="this CPU has VNNI")
def test_an_int8_build_for_another_cpu_is_judged_by_the_same_integers_here(cli, tiny, tmp_path):
    _, spec = tiny
    target = '{"kind": "llvm", "mcpu": "cascadelake"}'
    made = cli("compile", spec, "--target", target, "--precision", "int8", "--calibrate", "random",
               "-o", tmp_path / "clx")
    assert made.code == 0, made.err
    assert "this CPU cannot run avx512vnni: comparing the same integer kernels built for portable" in made.err
    manifest = json.loads((tmp_path / "clx" / "manifest.json").read_text())
    assert manifest["quantization"]["instructions"] == "avx512vnni" and manifest["accuracy"]["top1_agreement"] > 0.9
    tuned = cli("compile", spec, "--target", target, "--precision", "int8", "--calibrate", "random", "--tune",
                "-o", tmp_path / "t")
    assert tuned.code == 1 and "--tune measures the int8 kernels on this machine" in tuned.err
    fp32 = cli("compile", spec, "--target", target, "--tune", "--trials", "2", "-o", tmp_path / "f")
    assert fp32.code == 1 and "tuning measures candidates on this machine" in fp32.err
    assert not any((tmp_path / name).exists() for name in ("t", "f"))


@pytest.mark.slow  # (three tile configurations, each built twice for both numbers)
def test_the_tile_probe_passes_when_tiles_compute_what_the_emulation_does(monkeypatch):
    from nindsl.tvm.narrow.kernels import amx_probe

    emulation = amx_probe.conv_func
    monkeypatch.setattr(amx_probe, "conv_func", lambda s, numbers, relu, emulated: emulation(s, numbers, relu, True))
    target = str(tvm.target.Target(resolved_target(HOST)))  # as works_here passes it to the child
    assert amx_probe._probe("int8", target) == 0 and amx_probe._probe("bf16", target) == 0

    def wrong(s, numbers, relu, emulated):  # a "tile" kernel without its ReLU, or with another zero point
        return emulation(s, numbers, relu, True) if emulated else \
            emulation(replace(s, zero_out=s.zero_out + 1), numbers, False, True)

    monkeypatch.setattr(amx_probe, "conv_func", wrong)
    assert amx_probe._probe("bf16", target) == 1 and amx_probe._probe("int8", target) == 1



def test_the_bf16_probe_forgives_rounding_but_not_layout():
    from nindsl.tvm.narrow.kernels.amx_probe import bf16_close

    expected = to_bf16(np.random.default_rng(0).standard_normal((4, 16, 2, 16)))
    assert bf16_close(expected, expected)
    rounded = expected.copy()
    rounded.flat[::20] += 1  # one unit of bf16 on 5 % of the outputs: sums added in another order
    assert bf16_close(expected, rounded)
    assert not bf16_close(expected, expected[:, :, ::-1])  # the weight tiles swapped
    assert not bf16_close(expected, np.roll(expected, 1, axis=-1))  # lanes one off


@pytest.mark.slow
def test_the_probe_runs_in_a_child_process():
    from nindsl.tvm.narrow.kernels import amx as amx_kernels
    from nindsl.tvm.narrow.kernels import amx_probe

    here = tvm.target.Target(resolved_target(HOST))
    assert amx_probe.works_here(amx_kernels.BF16, here, emulated_only=True)  # the emulation against itself
    if missing_cpu_features(["amx-tile"]):
        target = tvm.target.Target(json.loads(SAPPHIRE_RAPIDS))
        assert not amx_probe.works_here(amx_kernels.INT8, target)  # (the child died of SIGILL; this one goes on)
