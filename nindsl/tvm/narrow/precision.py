"""Which narrow precision a CPU target can run fast: refused with what it runs instead."""

from __future__ import annotations

from ...kernel.diagnostics import NindslError
from ..profiles import Profile, resolved_target
from .chain import check_tunable
from .int8 import isa_of
from .kernels.bf16 import bf16_isa


def check_precision(precision: str, profile: Profile, tuned: bool = False) -> None:
    """Refuse a precision the target's CPU cannot run fast, saying what it can run instead, and
    ``tuned`` builds for a CPU this machine cannot measure (:func:`check_tunable`)."""
    if profile.device != "cpu":
        raise NindslError.one("E0504", f"--precision {precision} builds are for CPU targets; `{profile.name}` runs on "
                                       f"{profile.device}", None, "on a GPU use --precision fp16 (tensor cores) or "
                                                                  "fp32; or build for --target llvm")
    if precision == "int8":
        target, isa = isa_of(profile)  # (refuses a CPU without AVX2)
        check_tunable(target, isa.name, tuned, precision)
        return
    import tvm
    from tvm.target import codegen


    target = tvm.target.Target(resolved_target(profile))
    cpu = target.attrs.get("mcpu", "the host")
    has = [f for f in ("avx512bf16", "amx-bf16") if codegen.llvm_cpu_has_features(f, target)]
    try:
        alternative = f"int8 ({isa_of(profile)[1].name}) or fp32"
    except NindslError:
        alternative = "fp32"
    if not has:
        raise NindslError.one("E0504", f"`{cpu}` has no bfloat16 instructions (AVX512-BF16 or AMX): bf16 would run "
                                       f"slower than float32 there", None,
                              f"this CPU runs --precision {alternative}")
    if "avx512bf16" not in has:
        raise NindslError.one("E0504", f"`{cpu}` has AMX but not AVX512-BF16, which nindsl's bf16 kernels use",
                              None, f"use --precision {alternative}")
    check_tunable(target, bf16_isa(target).name, tuned, precision)
