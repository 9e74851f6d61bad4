"""User-facing errors and the one-line error convention of every console script."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence


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


def run_cli(prog: str, func: Callable[[Sequence[str]], int | None], argv: Sequence[str] | None) -> int:
    """Run ``func(argv)`` as a console command.

    ``--debug`` anywhere in ``argv`` is removed and re-raises errors with their traceback.
    A :class:`UserError` prints ``<prog>: error: <message>`` on stderr and returns 1;
    ``KeyboardInterrupt`` returns 130.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if debug:
        args.remove("--debug")
    _configure_logging(debug)
    try:
        return int(func(args) or 0)
    except UserError as exc:
        if debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
