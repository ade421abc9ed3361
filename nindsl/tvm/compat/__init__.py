"""Every use of TVM's internals, in one place, for the TVM version it was written against.

nindsl pins ``apache-tvm==0.27.0.post1``. Three things here reach past TVM's public API or
work around its behaviour: MetaSchedule's builder worker (``_worker_func``,
``_serialize_params``), reused so that build workers outlive a batch; a stand-in for
``inspect.stack`` while TVM's tensor intrinsics are imported; and :func:`noalias_single_buffer_functions`,
for an LLVM code generation that loses ``noalias`` in mixed modules. :func:`check_version`
refuses another TVM before any is used; moving to a new TVM means reading these again.
:func:`winograd_matrices` reads topi's Cook–Toom matrices through its private helpers.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys

import numpy as np

from ...kernel.diagnostics import NindslError

WRITTEN_FOR = "0.27"


def check_version() -> None:
    """Refuse a TVM these internals were not written for, with what to do."""
    import tvm

    if not tvm.__version__.startswith(WRITTEN_FOR):
        raise NindslError.one("E0504", f"nindsl's tuning was written for TVM {WRITTEN_FOR}.x; this is TVM "
                                       f"{tvm.__version__}", None,
                              "install the pinned version: pip install 'nindsl[tvm]'")


def import_tensor_intrinsics() -> None:
    """Import TVM's tensor intrinsics in about a second instead of about a minute.

    A tune context imports them, and so does every build worker (each build batch starts
    fresh worker processes): ~500 TVMScript functions, each calling ``inspect.stack()``,
    which resolves a source file for every frame through ``inspect.getmodule`` (most of a
    minute per process with TVM 0.27). :func:`tvmscript_frames` gives the parser a cheaper
    stack while they load.
    """
    with tvmscript_frames():
        import tvm.s_tir.tensor_intrin  # noqa: F401


@contextlib.contextmanager
def tvmscript_frames():
    """While inside, ``inspect.stack`` is built straight from the frames (their locals and
    source lines, all that TVMScript's parser reads) instead of resolving a module per frame."""
    import inspect
    import linecache

    check_version()

    def stack(context: int = 1):
        frames, frame = [], sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            line = linecache.getline(code.co_filename, frame.f_lineno)
            frames.append(inspect.FrameInfo(frame, code.co_filename, frame.f_lineno, code.co_name,
                                            [line] if line else None, 0 if line else None))
            frame = frame.f_back
        return frames

    original, inspect.stack = inspect.stack, stack
    try:
        yield
    finally:
        inspect.stack = original


def reusing_builder(timeout: float, batches_per_pool: int):
    """A MetaSchedule builder whose worker processes outlive a build batch.

    TVM's LocalBuilder starts fresh workers for every batch (against a slow leak in
    long-lived ones), and each worker spends seconds importing TVM. These workers are
    replaced every ``batches_per_pool`` batches instead, which bounds the leak
    (docs/performance.md has what it saved).
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import _serialize_params, _worker_func
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    check_version()

    @derived_object
    class ReusingBuilder(PyBuilder):
        def __init__(self):
            super().__init__()
            self.pool, self.batches = None, 0

        def build(self, build_inputs):
            if self.pool is None or self.batches >= batches_per_pool:
                self.close()
                self.pool = PopenPoolExecutor(max_workers=os.cpu_count(), timeout=timeout,
                                              initializer=import_tensor_intrinsics)
            self.batches += 1
            work = [(None, None, i.mod, i.target, _serialize_params(i.params)) for i in build_inputs]
            results = []
            for result in self.pool.map_with_error_catching(lambda x: _worker_func(*x), work):
                if result.status == StatusKind.COMPLETE:
                    results.append(BuilderResult(result.value, None))
                elif result.status == StatusKind.TIMEOUT:
                    results.append(BuilderResult(None, f"build timed out after {timeout:.0f} s"))
                else:
                    results.append(BuilderResult(None, f"build failed:\n{result.value}"))
            return results

        def close(self):
            if self.pool is not None:
                self.pool.shutdown()
            self.pool, self.batches = None, 0

    return ReusingBuilder()


def noalias_single_buffer_functions():
    """A module pass: mark every PrimFunc of one parameter or none ``tirx.noalias``.

    In TVM 0.27, one PrimFunc without ``tirx.noalias`` in an LLVM module (such as the shape
    function a Relax build makes for a symbolic batch size) makes the code generator drop
    ``noalias`` and ``noinline`` from every other function's compute scope. LLVM then inlines
    them and can no longer keep a kernel's sums in registers (docs/precision.md has what it
    cost int8 builds). A function of at most one parameter cannot alias itself, so the mark is
    true for it."""
    import tvm
    from tvm import tirx

    @tvm.transform.module_pass(opt_level=0, name="nindsl.NoAliasEverywhere")
    def mark(module, _context):
        updates = {gv: func.with_attr("tirx.noalias", True) for gv, func in module.functions.items()
                   if isinstance(func, tirx.PrimFunc) and len(func.params) <= 1
                   and not (func.attrs or {}).get("tirx.noalias", False)}
        for gv, func in updates.items():
            module[gv] = func
        return module

    return mark


def cpu_lowering_passes(target) -> list:
    """Relax's CPU pipeline without its fusion and default schedules: the passes that lower
    calls of PrimFuncs scheduled already (``relax.backend.cpu_generic.pipeline``'s dataflow
    lowering and finalisation, which TVM 0.27 does not export as a pipeline of their own)."""
    from tvm.relax.backend.cpu_generic.pipeline import dataflow_lower_passes, finalize_passes

    check_version()
    return dataflow_lower_passes(target) + finalize_passes(target)


def relax_parameter_name(name: str) -> str:
    """How TVM 0.27's ONNX importer sanitises an initializer name into a Relax parameter name
    (``relax.frontend.onnx``; not exported by it)."""
    return re.sub(r"[^0-9a-zA-Z_]", "_", name)


def dlight_blocks(sch):
    """DLight's normalised view of a schedule's blocks (``dlight.analysis.normalize_prim_func``:
    each block's iteration kinds and domains), or None where DLight cannot normalise it."""
    from tvm.s_tir.dlight.analysis import normalize_prim_func

    check_version()
    return normalize_prim_func(sch)


def without_tensor_cores(func):
    """``func`` marked so that DLight's ``Matmul`` rule schedules it without tensor cores (the
    function attribute its rule reads, ``dlight.do_not_tensorize``)."""
    check_version()
    return func.with_attr("dlight.do_not_tensorize", True)


# How TVM 0.27 says a call's arguments do not fit the function (its message is all there is: the
# type is a plain ValueError, TypeError or RuntimeError): the Relax VM's checks carry an
# ErrorContext naming the function and parameter; a compiled kernel's say "Mismatched ... on
# argument #".
_ARGUMENT_CHECKS = re.compile(r"ErrorContext\(fn=|Mismatched \S+ on argument #")


def refuses_arguments(error: BaseException) -> bool:
    """Whether ``error`` is a TVM function refusing its arguments' count, type or shape."""
    return bool(_ARGUMENT_CHECKS.search(str(error)))


def refusal_summary(error: BaseException) -> str:
    """The part of such an error a user can act on, on one line."""
    text = " ".join(str(error).split())
    kernel = re.search(r"(Mismatched \S+) on argument #\d+.*?(expected .*)$", text)
    if kernel:
        return f"{kernel.group(1)}: {kernel.group(2)}"[:240]
    context = re.search(r"ErrorContext\(fn=(\w+), loc=[^,]*, param=(\w+)", text)
    if not context:
        return text[:240]
    said = text[:context.start()].rstrip(" :") or text[text.rfind("))") + 2:].strip()
    return f"`{context.group(1)}` parameter `{context.group(2)}`: {said}"[:240]


def winograd_matrices(m: int, r: int):
    """The Cook–Toom matrices (A, B, G) of Winograd's F(m×m, r×r), float64 numpy arrays, from
    the interpolation points TVM's topi picks for them (private functions of
    ``tvm.topi.nn.winograd_util``; the public ``winograd_transform_matrices`` returns them as
    TE select chains in one dtype, where nindsl transforms the weights in float64)."""
    check_version()
    from tvm.topi.nn import winograd_util

    points = winograd_util._interpolation_points(m + r - 2)
    return tuple(np.asarray(x, np.float64) for x in winograd_util._cook_toom_convolution(points, m, r))
