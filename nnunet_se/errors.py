"""User-facing errors and the one-line error convention of every console script (see docs/errors.md).

Exit codes of ``nnunet-se``, ``nnunet-se-convert`` and ``nnunet-se-analyze``:

- 0: success
- 1: an expected failure: bad input (:class:`UserError`) or an operating-system error (missing or unreadable
  file, full disk, permission denied)
- 2: the command line itself is malformed (argparse's usage errors)
- 70: an internal error, i.e. a bug (``EX_SOFTWARE`` of sysexits.h)
- 130: interrupted (Ctrl-C)
- 141: the output pipe was closed early (``128 + SIGPIPE``, what a shell reports for a process killed by it)

Every failure prints exactly one line ``<prog>: error: <message>`` on stderr; ``--debug`` re-raises instead, so
the traceback is shown.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence

EXIT_USER = 1
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class UserError(Exception):
    """A problem with the user's input: reported as one line, no traceback, exit code 1.

    The message should name the file (or argument) and say what is wrong with it.
    """


def _configure_logging(debug: bool) -> None:
    """Show the plugin's own INFO messages on stderr; third-party loggers stay at WARNING (``--debug``: all)."""
    logger = logging.getLogger("nnunet_se")
    for old in [h for h in logger.handlers if getattr(h, "nnunet_se_cli", False)]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)  # the current stderr (tests may have replaced it)
    handler.nnunet_se_cli = True
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (``\\n``), so a message stays one line even
    when it quotes a multi-line value the user gave."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


SHOWN_LENGTH = 60


def shown(value: str) -> str:
    """A user-given value for a message: as is when it is a plain word, else quoted (empty, spaces, line breaks);
    cut after ``SHOWN_LENGTH`` characters (``...(N characters)``) so a huge value keeps the message short."""
    if len(value) > SHOWN_LENGTH:
        return f"{shown(value[:SHOWN_LENGTH])}...({len(value)} characters)"
    return value if value and value.isprintable() and not any(c.isspace() for c in value) else repr(value)


def os_error_message(exc: OSError) -> str:
    """``<file>: <reason>`` for an OSError (both files for a rename or copy), else its text."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return reason
    files = str(exc.filename) if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    return f"{files}: {reason}"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured in tests)
        pass


def run_cli(prog: str, func: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None) -> int:
    """Run ``func(argv)`` as a console command and turn every failure into one line and an exit code.

    ``--debug`` anywhere in ``argv`` is removed and makes failures re-raise with their traceback. The exit codes
    are those of the module docstring; ``SystemExit`` (argparse) passes through.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    _configure_logging(debug)

    def fail(message: str, code: int) -> int:
        print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
        return code

    try:
        return int(func(args) or 0)
    except UserError as exc:
        if debug:
            raise
        return fail(str(exc), EXIT_USER)
    except BrokenPipeError:
        if debug:
            raise
        _silence_stdout()
        return fail("output closed early (broken pipe)", EXIT_BROKEN_PIPE)
    except OSError as exc:
        if debug:
            raise
        return fail(os_error_message(exc), EXIT_USER)
    except KeyboardInterrupt:
        if debug:
            raise
        return fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - any other exception is a bug: say so in one line
        if debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        return fail(f"internal error {type(exc).__name__}: {first} (a bug; rerun with --debug for the traceback "
                    "and report it)", EXIT_INTERNAL)
