"""What this process may use of the machine. Two questions, two functions.

>>> usable_cpus() >= physical_cores() >= 1
True
"""

from __future__ import annotations

import os
from pathlib import Path


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask): threads for thread pools."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def max_threads() -> int:
    """The most threads one process may ask for (``--threads``): a few per usable CPU."""
    from .limits import MAX_THREADS_PER_CPU

    return MAX_THREADS_PER_CPU * usable_cpus()


def checked_threads(threads: int) -> int:
    """``threads`` for a thread pool, once known to be 1 to :func:`max_threads` (a user error
    otherwise: a pool of tens of thousands ends the process when thread creation fails)."""
    from .diagnostics import NindslError

    if not 1 <= threads <= max_threads():
        raise NindslError.one("E0504", f"{threads:,} threads: the most this machine takes is {max_threads()} "
                                       f"(a few per usable CPU)", None)
    return threads


def free_cpus() -> int:
    """Usable CPUs that other work is not already keeping busy (by the 1-minute load
    average), at least 1: threads that do not fight what else runs.

    >>> 1 <= free_cpus() <= usable_cpus()
    True
    """
    try:
        busy = int(os.getloadavg()[0])
    except (AttributeError, OSError):
        busy = 0
    return max(1, usable_cpus() - busy)


def physical_cores() -> int:
    """Cores this process may use, counting hyper-threads of one core once."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    siblings = set()
    for cpu in cpus:
        try:
            siblings.add(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip())
        except OSError:
            return len(cpus)
    return len(siblings) or 1


# The x86 vector features a build's code may use, by LLVM's name, with Linux's name for each
# (/proc/cpuinfo's flags). An artifact records those of its target; loading it where one is
# missing would end the process with SIGILL at the first such instruction.
CPU_FEATURES = {"avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "avx512f": "avx512f",
                "avx512bw": "avx512bw", "avx512dq": "avx512dq", "avx512vl": "avx512vl", "avx512cd": "avx512cd",
                "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16", "avx512fp16": "avx512_fp16",
                "avxvnni": "avx_vnni", "amx-tile": "amx_tile", "amx-int8": "amx_int8", "amx-bf16": "amx_bf16"}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """This CPU's feature flags as Linux reports them; None where they cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def missing_cpu_features(features, flags: frozenset[str] | None = None) -> list[str]:
    """The features (LLVM's names) that this CPU lacks; none where its flags are unknown.

    >>> missing_cpu_features(["avx2", "avx512f", "amx-int8"], frozenset({"avx2", "fma"}))
    ['avx512f', 'amx-int8']
    """
    if flags is None:
        flags = cpu_flags()
        if flags is not None and "amx_tile" in flags and not amx_permitted():
            flags = flags - {"amx_tile", "amx_int8", "amx_bf16"}  # (the first tile instruction would be SIGILL)
    if flags is None:
        return []
    return [f for f in features if f in CPU_FEATURES and CPU_FEATURES[f] not in flags]


_amx: bool | None = None  # Linux's answer, asked once per process (a permission granted stays granted)


def amx_permitted() -> bool:
    """Whether Linux lets this process use AMX tiles: asks it once, as nindsl's tile kernels
    do before their first tile instruction (``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``;
    Linux 5.16 and later)."""
    global _amx
    if _amx is None:
        import ctypes
        import platform

        _amx = False
        if platform.system() == "Linux" and platform.machine() == "x86_64":
            try:
                _amx = ctypes.CDLL(None, use_errno=True).syscall(158, 0x1023, 18) == 0
            except (OSError, AttributeError):
                pass
    return _amx
