"""Importing TVM for nindsl: a clear error where it is missing, and its thread count."""

from __future__ import annotations

import os
import sys

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


# What tvm_ffi imports whenever it is installed, and loading and running an artifact never uses:
# PyTorch (for its tensors; ~2.5 s) and ml_dtypes (for bfloat16/float8 numpy arrays; ~1.3 s).
# nindsl's artifacts take and give uint8, uint16 (bf16 as its bits), int32, float16 and float32.
OPTIONAL_IMPORTS = ("torch", "ml_dtypes")


def runtime_only() -> None:
    """Make the next import of TVM load its runtime alone, for a command that only loads and runs
    artifacts (``nindsl run`` and ``inspect`` on an artifact folder): TVM's runtime library instead
    of its 259 MB compiler (``TVM_USE_RUNTIME_LIB=1``, as bundles run), and none of
    :data:`OPTIONAL_IMPORTS`, each refused during that import only (a later ``import torch`` works
    as ever). Where TVM is imported already, nothing changes."""
    if "tvm" in sys.modules:
        return
    os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")
    refused = [name for name in OPTIONAL_IMPORTS if name not in sys.modules]
    sys.modules.update(dict.fromkeys(refused))  # None: `import torch` raises ImportError
    try:
        require_tvm_runtime()
    finally:
        for name in refused:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


def _missing() -> NindslError:
    return NindslError.one("E0504", "TVM is not installed, so nindsl cannot build for LLVM or CUDA", None,
                           "install it with: pip install 'nindsl[tvm]'")
