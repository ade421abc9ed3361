"""Importing TVM for nindsl: a clear error where it is missing, and its thread count."""

from __future__ import annotations

import os

from ..kernel.diagnostics import NindslError
from ..kernel.machine import physical_cores


def require_tvm():
    """Import TVM with its compiler, or explain how to install it.

    TVM's runtime runs parallel loops on half the logical CPUs, assuming two hyper-threads
    per core; on a machine without hyper-threads that leaves half the cores idle. nindsl
    sets its thread count to the physical cores, unless TVM_NUM_THREADS is already set;
    tuning workers inherit it.
    """
    tvm = require_tvm_runtime()
    try:
        from tvm import relax  # noqa: F401 - the part nindsl needs, not only the package
    except ImportError:
        raise _missing() from None
    return tvm


def require_tvm_runtime():
    """Import TVM for loading and running artifacts: its runtime is enough, so this works
    where TVM runs without its compiler (``TVM_USE_RUNTIME_LIB=1``, or a runtime-only TVM)."""
    os.environ.setdefault("TVM_NUM_THREADS", str(physical_cores()))
    try:
        import tvm
        import tvm.runtime.vm  # noqa: F401 - the Relax virtual machine
    except ImportError:
        raise _missing() from None
    return tvm


def _missing() -> NindslError:
    return NindslError.one("E0504", "TVM is not installed, so nindsl cannot build for LLVM or CUDA", None,
                           "install it with: pip install 'nindsl[tvm]'")
