"""Run a nindsl command that stops, as if frozen, at a chosen point of an atomic write.

    python tests/interrupt.py POINT MARKER -- nindsl arguments...

POINT is ``write`` (half of a file's bytes are in its temporary file) or ``rename`` (the
temporary file or folder is complete, not yet renamed into place). At that point the
process creates MARKER and sleeps, so that a test can kill it there with SIGKILL. Only
the N-th write is stopped when POINT is followed by ``:N`` (1 by default); writes to a
path whose name does not contain the env variable ``STOP_AT_NAME`` (when set) are not counted.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def freeze(marker: str) -> None:
    Path(marker).write_text(str(os.getpid()))
    while True:
        time.sleep(60)


def main() -> int:
    point, marker, rest = sys.argv[1], sys.argv[2], sys.argv[4:]
    point, _, nth = point.partition(":")
    wanted, seen = int(nth or 1), [0]
    name = os.environ.get("STOP_AT_NAME", "")

    import nindsl.kernel.io as io

    def counts(path) -> bool:
        if name and name not in Path(path).name:
            return False
        seen[0] += 1
        return seen[0] == wanted

    if point == "write":
        real_fdopen = io.os.fdopen

        class HalfWriter:
            def __init__(self, handle, path):
                self.handle, self.path = handle, path

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self.handle.__exit__(*exc)

            def write(self, data):
                if counts(self.path):
                    self.handle.write(data[: len(data) // 2])
                    self.handle.flush()
                    freeze(marker)
                return self.handle.write(data)

            def __getattr__(self, attr):
                return getattr(self.handle, attr)

        real_mkstemp = io.tempfile.mkstemp
        names = {}

        def mkstemp(*args, **kwargs):
            fd, tmp = real_mkstemp(*args, **kwargs)
            names[fd] = tmp
            return fd, tmp

        io.tempfile.mkstemp = mkstemp
        def fdopen(fd, *args, **kwargs):
            handle = real_fdopen(fd, *args, **kwargs)
            return HalfWriter(handle, names.pop(fd)) if fd in names else handle

        io.os.fdopen = fdopen
    elif point == "rename":
        real_replace = io.os.replace

        def replace(src, dst):
            if Path(src).name.endswith(".tmp") and counts(dst):
                freeze(marker)
            return real_replace(src, dst)

        io.os.replace = replace
    else:
        raise SystemExit(f"unknown point {point}")

    from nindsl.cli import main as nindsl

    return nindsl(rest)


if __name__ == "__main__":
    sys.exit(main())
