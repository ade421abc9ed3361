"""How untuned CUDA builds schedule their kernels: DLight's rules, with two changes.

TVM's CUDA pipeline schedules every kernel with DLight's ``Matmul``, ``GEMV``, ``Reduction``,
``GeneralReduction`` and ``Fallback``, in that order. nindsl puts two rules in front:

- :class:`Windows`: pooling (max, and average over a window or the whole map) reduces a few
  elements (up to :data:`WINDOW` of them) per output. DLight's ``GeneralReduction`` gives each
  output row a thread block that splits its reduction among threads, which suits a softmax over
  thousands of classes, not a 3 × 3 window: one thread per output, summing its window, is what a
  pooling kernel wants, and DLight's ``Fallback`` schedules exactly that.
- :class:`Matmul`: DLight's own, falling back from tensor cores to its plain schedule where TVM
  0.27's tensor-core (``wmma``) schedule fails outright (``compute_at``: "not a stage
  pipeline"; seen on convolutions over a symbolic batch, e.g. nin_cifar10's 8 × 8 maps), instead
  of ending the build.

:func:`schedule_passes` is the legalization half of TVM's CUDA pipeline with these rules;
:func:`tensor_core_kernels` names the convolutions that got tensor cores.
"""

from __future__ import annotations

from ..compat import dlight_blocks, import_tensor_intrinsics, without_tensor_cores

WINDOW = 64  # at most this many elements reduced per output: a pooling window (or a small map)


def _window_reduction(func) -> bool:
    """Whether every reduction in ``func`` reads one buffer over at most :data:`WINDOW` elements
    (pooling), rather than two (a convolution's data and weights)."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    blocks = dlight_blocks(sch)
    if blocks is None:
        return False
    reductions = [block for block in blocks if "R" in block.dom_kind()]
    for block in reductions:
        size = 1
        for kind, dom in zip(block.dom_kind(), block.dom()):
            if kind == "R":
                extent = dom if isinstance(dom, int) else getattr(dom, "value", None)
                if extent is None:
                    return False  # a symbolic window
                size *= int(extent)
        if size > WINDOW or len(sch.get(block.block_rv).reads) != 1:
            return False
    return bool(reductions)


def _rules():
    from tvm.s_tir import dlight as dl
    from tvm.s_tir.schedule import ScheduleError

    class Windows(dl.gpu.Fallback):
        """One thread per output for reductions over small windows (pooling)."""

        def apply(self, func, target, tunable):
            return super().apply(func, target, tunable) if _window_reduction(func) else None

    class Matmul(dl.gpu.Matmul):
        """DLight's rule, falling back from tensor cores to its plain schedule where TVM 0.27's
        tensor-core schedule fails."""

        def apply(self, func, target, tunable):
            try:
                return super().apply(func, target, tunable)
            except ScheduleError:
                return super().apply(without_tensor_cores(func), target, tunable)

    return [Windows(), Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback()]


def schedule_passes() -> list:
    """Legalize, fuse and schedule a Relax module for a CUDA target (run inside the target)."""
    return fusion_passes() + [default_schedule()]


def fusion_passes() -> list:
    """Legalize and fuse: the kernels as tuning sees them, not yet scheduled."""
    from tvm.relax import transform

    return [transform.LegalizeOps(), transform.AnnotateTIROpPattern(), transform.FoldConstant(),
            transform.FuseOps(), transform.FuseTIR()]


def default_schedule():
    """DLight's rules with nindsl's in front, for every kernel not scheduled already (a tuned one is)."""
    from tvm.s_tir import dlight as dl

    import_tensor_intrinsics()  # (the tensor-core rule's wmma intrinsics, in a second, not a minute)
    return dl.ApplyDefaultSchedule(*_rules())


def tensor_core_kernels(module) -> tuple[list[str], int]:
    """The convolution kernels of a scheduled module that run on tensor cores (``wmma``
    fragments), and how many convolution kernels it has."""
    import tvm

    convs = {gv.name_hint: func for gv, func in module.functions.items()
             if isinstance(func, tvm.tirx.PrimFunc) and gv.name_hint.startswith("fused_conv2d")}
    return sorted(name for name, func in convs.items() if "wmma.matrix_a" in func.script()), len(convs)
