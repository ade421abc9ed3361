"""The `nindsl` command: a thin layer that maps flags to library calls.

``parser.py`` holds the grammar of the command line, ``commands.py`` one function per
command, ``inputs.py`` what commands read (``--set``, batch sizes, input arrays and labels),
``printing.py`` everything shown, and ``inspection.py`` what ``inspect`` says of an ONNX
model or an artifact folder. Exit status: 0 success, 1 a mistake in the user's input
(diagnostics with a code on stderr, a command-line value nindsl checks itself included: E0504),
2 a command line argparse cannot read (the usage is printed), 3 an internal error (a bug:
please report it), 130 interrupted.
"""

from __future__ import annotations

import sys
import traceback

from ..kernel.diagnostics import NindslError
from ..kernel.version import __version__
from .parser import build_parser
from .printing import report, use_color
from .streams import OutputError, flush_stdout, guard_stdout

EXIT_USER, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 2, 3, 130


def main(argv: list[str] | None = None, one_command: bool = False) -> int:
    """Run one command line (``argv``, else the process's). ``one_command``: this process runs
    this command alone (the `nindsl` program), so a command may import only what it needs, and
    ways no later command could use (`run` on an artifact: TVM's runtime without its compiler)."""
    args = build_parser().parse_args(argv)
    args.color_on = use_color(args.color)
    args.one_command = one_command
    try:
        return args.func(args)
    except NindslError as error:
        report(error, args.color_on)
        return EXIT_USER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except OutputError as error:
        return _output_failed(error, args.color_on)
    except Exception:  # noqa: BLE001 - the last line of defence against tracebacks
        if args.debug:
            traceback.print_exc()
        else:
            print(f"nindsl {__version__}: internal error: {traceback.format_exc().strip().splitlines()[-1]}\n"
                  "This is a bug in nindsl, not in your spec: please report it with the command you ran "
                  "(rerun with --debug for the traceback).", file=sys.stderr)
        return EXIT_INTERNAL


def _output_failed(error: OutputError, color: bool) -> int:
    """Standard output could not be written: the user's disk or terminal, said as an error."""
    try:
        report(NindslError.one("E0301", f"cannot write the output: {error.strerror}", None,
                               "free some space, or send the output somewhere that takes it"), color)
    except OSError:
        pass  # stderr is gone too: the exit status says it
    return EXIT_USER


def command() -> int:
    """The `nindsl` program (its console script and ``python -m nindsl``): one command per process.
    Its standard output reports a failed write as a user error (:mod:`.streams`)."""
    guard_stdout()
    code = main(one_command=True)
    try:
        flush_stdout()
    except OutputError as error:
        return _output_failed(error, False)
    except BrokenPipeError:
        pass
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(command())
