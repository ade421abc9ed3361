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
