"""Whether this machine's AMX tiles compute what nindsl's tile kernels expect: the kernels of
:mod:`nindsl.tvm.narrow.kernels.amx` were written from Intel's manuals, so a build for this
machine uses tiles only where a probe (the tile kernel and its emulation, built for the target
and run on the same inputs in a child process) gives the same numbers; otherwise the build
takes vector instructions and says why (:func:`tile_problem`)."""

from __future__ import annotations

from .amx import INT8, BF16, Numbers, conv_func, weight_layout
from .int8 import ConvShape


PROBE = ConvShape(1, 64, 4, 16, 32, 3, 1, 1, 16, 2, 1, 1)  # padded, 2 weight tiles, int8 zero points


def probes(numbers: Numbers) -> tuple[ConvShape, ...]:
    """The convolutions :func:`works_here` runs, in three tile configurations (rows × bytes):
    :data:`PROBE` (16 × 64), a folded input layer's (16 × 16 int8 or 32 bf16), and 8-pixel
    rows (8 × 32 int8 or 64 bf16), and for int8 16 × 32: nin_cifar10's four configurations."""
    folded = ConvShape(1, 15, 6, 16, 32, 3, 1, 0, 8 if numbers is INT8 else 2, 2, 1, 1,
                       kernel_width=1, stride_width=1)
    narrow = ConvShape(1, 32, 3, 8, 32, 1, 1, 0, 16, 2, 1, 1)  # 8-pixel tiles of 32 int8 or 64 bf16 bytes
    if numbers is INT8:  # 16 pixels × 32 bytes, which no other probe of int8 takes
        return PROBE, folded, narrow, ConvShape(1, 32, 3, 16, 32, 1, 1, 0, 16, 2, 1, 1)
    return PROBE, folded, narrow


# Each probe's verdict, by (numbers, target, emulated_only), for the life of the process: a probe
# compiles and runs tile kernels in a child process (seconds), and a CPU does not change under it.
_works: dict[tuple[str, str, bool], str] = {}  # "" where the tiles work, else what went wrong


def works_here(numbers: Numbers, target, timeout: float = 300, emulated_only: bool = False) -> bool:
    """Whether the tile kernel built for ``target`` computes on this machine what the emulation
    does, on :func:`probes`: checked once per process and target, in a child process (a tile
    instruction the CPU or Linux refuses ends the process that runs it). nindsl's tile kernels
    have been written from Intel's manuals and run here only emulated: a build for this machine
    uses tiles only where this check passes. (``emulated_only``: compare the emulation with
    itself, which tests this plumbing on a machine without AMX.)"""
    return not tile_problem(numbers, target, timeout, emulated_only)


def tile_problem(numbers: Numbers, target, timeout: float = 300, emulated_only: bool = False) -> str:
    """What went wrong when :func:`works_here` probed the tile kernels here ("" where nothing did)."""
    key = (numbers.name, str(target), emulated_only)  # (TVM 0.27 prints a target as the JSON it is made from)
    if key not in _works:
        import os
        import signal
        import subprocess
        import sys

        code = (f"from nindsl.tvm.narrow.kernels.amx_probe import _probe; "
                f"raise SystemExit(_probe({numbers.name!r}, {key[1]!r}, {emulated_only}))")
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=timeout,
                                  env={**os.environ, "TVM_NUM_THREADS": "1"})
            code = done.returncode
            _works[key] = ("" if code == 0 else "computed other numbers than their emulation" if code == 1
                           else f"were killed by {signal.Signals(-code).name}" if code < 0
                           else f"failed to run (exit {code})")
        except subprocess.TimeoutExpired:
            _works[key] = f"took over {timeout:.0f} s"
        except OSError as error:
            _works[key] = f"could not be run ({error.strerror})"
    return _works[key]


def _probe(name: str, target: str, emulated_only: bool = False) -> int:
    """0 when the tile kernels of :func:`probes`, built for ``target`` (JSON), give the
    emulation's results here."""
    import json

    import numpy as np
    import tvm

    numbers = BF16 if name == "bf16" else INT8
    for shape in probes(numbers):
        arguments = _probe_arguments(shape, numbers, np.random.default_rng(0))
        outputs = []
        for emulated in (True, emulated_only):
            library = tvm.compile(tvm.IRModule({"main": conv_func(shape, numbers, True, emulated)}),
                                  target=tvm.target.Target(json.loads(target)))
            out = tvm.runtime.empty((1, *shape.out_size, 2, 16), numbers.storage)
            library["main"](*(tvm.runtime.tensor(a) for a in arguments), out)
            outputs.append(out.numpy())
        emulated, tiles = outputs
        same = np.array_equal(emulated, tiles) if numbers is INT8 else bf16_close(emulated, tiles)  # (int8: exact)
        if not same:
            return 1
    return 0


def _probe_arguments(s: ConvShape, numbers: Numbers, rng) -> list:
    """Random inputs, packed weights and the store step's parameters of a probe convolution."""
    import numpy as np

    from .bf16 import AVX512BF16, to_bf16
    from .int8 import ISAS, pack_weights

    x_shape = (1, s.height, s.width, -(-s.channels // s.in_block), s.in_block)
    w_shape = (s.out_channels, s.channels, s.kernel, s.kw)
    if numbers is BF16:
        weights = to_bf16(rng.standard_normal(w_shape) * 0.1)
        return [to_bf16(rng.standard_normal(x_shape)), pack_weights(weights, weight_layout(s), AVX512BF16),
                rng.standard_normal(32).astype("float32")]
    weights = rng.integers(-127, 128, w_shape).astype(np.int8)
    return [rng.integers(0, 128, x_shape).astype(np.uint8), pack_weights(weights, weight_layout(s), ISAS[0]),
            rng.integers(-999, 999, 32).astype("int32"), (rng.random(32) * 2e-4).astype("float32")]


def bf16_close(expected, got) -> bool:
    """Whether two bf16 results (their bits) agree up to rounding: the hardware may add its
    float32 sums in another order than the emulation, which moves a few outputs by one unit of
    bf16; a wrong layout or address moves most of them by far more."""
    import numpy as np

    from .bf16 import from_bf16

    a, b = from_bf16(expected), from_bf16(got)
    near = np.abs(a - b) <= 2 ** -7 * np.maximum(np.abs(a), 1e-3)
    return bool(near.all() and np.mean(expected == got) >= 0.9)
