"""Standard output as the `nindsl` program writes it: what the user's terminal or file cannot
take is their environment, not a bug in nindsl.

- A character the output's encoding lacks (``PYTHONIOENCODING=ascii``, a C locale) is
  written as ``?`` instead of ending the command with UnicodeEncodeError.
- A write that fails (``nindsl summary spec > /dev/full``: no space left) raises
  :class:`OutputError` once, which the command line reports as a user error (exit 1); what
  the command writes after that is dropped, so Python's own flush at exit stays quiet.

A closed pipe (``| head``) stays BrokenPipeError, which the command line treats as success.
"""

from __future__ import annotations

import errno
import io
import sys


class OutputError(OSError):
    """Standard output could not be written (a full disk, a device error, a closed terminal)."""


class _Output(io.FileIO):
    """File descriptor 1, whose first failed write raises :class:`OutputError`."""

    failed = False

    def write(self, data) -> int:
        if self.failed:
            return len(data)  # (already reported: the rest is dropped)
        try:
            return super().write(data)
        except OSError as error:
            if error.errno == errno.EPIPE:
                raise
            self.failed = True
            raise OutputError(error.errno, error.strerror) from None


class _Closed(io.TextIOBase):
    """Standard output when the program started without one (``nindsl explain E0401 >&-``)."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        raise OutputError(errno.EBADF, "standard output is closed")


def guard_stdout() -> None:
    """Replace ``sys.stdout`` (file descriptor 1, its encoding kept) with one that writes
    unencodable characters as ``?`` and reports a failed write as :class:`OutputError`."""
    old = sys.stdout
    if old is None:
        sys.stdout = _Closed()
        return
    try:
        fd = old.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (an embedding, a test's capture): leave it alone
    old.flush()
    raw = _Output(fd, "w", closefd=False)
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(raw), encoding=old.encoding, errors="replace",
                                  line_buffering=old.line_buffering)


def flush_stdout() -> None:
    """Write what is still buffered (raising :class:`OutputError` if it cannot be)."""
    sys.stdout.flush()


def write_utf8(text: str) -> None:
    """Write text that is a file's content (``fmt --stdout``: a spec) as UTF-8, as the file
    holds it, whatever the terminal's encoding: a spec redirected to a file stays the spec."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(text)
        return
    sys.stdout.flush()
    buffer.write(text.encode("utf-8"))
    buffer.flush()
