"""The one command-line grammar of ``nnunet-se``, ``nnunet-se-convert`` and ``nnunet-se-analyze`` (docs/cli.md).

Every command adds its dataset, trainer, configuration, plans, fold, output, seed, device and worker options with
these helpers, so each option has one spelling, one meaning and one range check for all commands. The spellings
follow nnU-Net's (``-d``, ``-tr``, ``-c``, ``-p``, ``-f``, ``-o``). Old spellings stay accepted for one release
through :func:`add_deprecated`, which prints one warning line when they are used.

Range errors of ``--seed``, ``--workers`` and ``-f/--folds`` are usage errors: argparse prints the usage line and
exits with 2 (docs/errors.md). Importing this module is cheap (no torch, no nnU-Net).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from nnunet_se.errors import UserError, shown
from nnunet_se.layout import ALL_FOLDS, DEFAULT_CONFIGURATION, DEFAULT_PLANS, FOLDS_OPTION

DEFAULT_SEED = 42
"""One default seed for convert, pca and demo: the authors' BUSI split seed."""
MAX_SEED = 2**32 - 1
"""Largest seed: scikit-learn's and NumPy's legacy seed range; 32 bits keep the outputs portable."""
MAX_FOLD = 999
"""Largest fold number accepted (keeps a typo like ``0-99999999`` from building a huge list)."""

_FOLD_RANGE_RE = re.compile(r"(\d+)(?:-(\d+))?", re.ASCII)


def _help(text: str, default: object) -> str:
    return text if default is None else f"{text} (default: %(default)s)"


def add_datasets(p: argparse.ArgumentParser, required: bool = False,
                 help: str = "dataset ids (601) or folder names (Dataset601_Kvasir); several allowed") -> None:
    """``-d/--datasets`` (``args.datasets``: list of str, or None)."""
    p.add_argument("-d", "--datasets", nargs="+", required=required, metavar="DATASET", help=help)


def add_trainers(p: argparse.ArgumentParser, required: bool = False, default: Sequence[str] | None = None,
                 families: bool = True, help: str | None = None) -> None:
    """``-tr/--trainers`` (``args.trainers``: list of str, or ``default``); names are checked by the command
    (:func:`nnunet_se.trainer_registry.expand_trainers` or ``check_trainer``)."""
    if help is None:
        help = ("trainer class names" + (" or family names (paper, auto, original)" if families else "")
                + "; several allowed")
    if default is not None:
        help = f"{help} (default: {' '.join(default)})"
        default = list(default)
    p.add_argument("-tr", "--trainers", nargs="+", required=required, default=default, metavar="TRAINER", help=help)


def add_configuration(p: argparse.ArgumentParser, default: str | None = DEFAULT_CONFIGURATION,
                      help: str = "nnU-Net configuration") -> None:
    """``-c/--configuration`` (``args.configuration``)."""
    p.add_argument("-c", "--configuration", default=default, metavar="CONFIG", help=_help(help, default))


def add_plans(p: argparse.ArgumentParser, default: str | None = DEFAULT_PLANS,
              help: str = "nnU-Net plans identifier") -> None:
    """``-p/--plans`` (``args.plans``)."""
    p.add_argument("-p", "--plans", default=default, metavar="PLANS", help=_help(help, default))


def parse_folds(tokens: Sequence[str]) -> list[int] | Literal["all"]:
    """Fold indices from ``0 1 2``, ``0-4``, ``0-4,7`` (sorted, unique, each at most ``MAX_FOLD``) or ``all``
    (every fold of the dataset's splits_final.json, resolved by the command); else a UserError."""
    if ALL_FOLDS in tokens:
        if len(tokens) > 1:
            raise UserError(f"{FOLDS_OPTION} {' '.join(map(shown, tokens))}: 'all' stands alone")
        return ALL_FOLDS
    folds: set[int] = set()
    for token in tokens:
        for part in token.split(","):
            match = _FOLD_RANGE_RE.fullmatch(part.strip())
            if not match:
                raise UserError(f"{FOLDS_OPTION} {shown(token)}: expected fold numbers or ranges like 0-9 or 0,2,4, "
                                "or all")
            ends = (match[1], match[2] or match[1])
            first, last = (int(n) if len(n) <= 9 else MAX_FOLD + 1 for n in ends)  # no int() of 5000 digits
            for text, value in zip(ends, (first, last), strict=True):
                if value > MAX_FOLD:
                    raise UserError(f"{FOLDS_OPTION} {shown(token)}: fold {shown(text)} is too large (folds are "
                                    f"numbered 0-{MAX_FOLD} at most)")
            if last < first:
                raise UserError(f"{FOLDS_OPTION} {shown(token)}: range {part} is empty")
            folds.update(range(first, last + 1))
    if not folds:
        raise UserError(f"{FOLDS_OPTION}: no fold given")
    return sorted(folds)


class _FoldsAction(argparse.Action):
    """Stores :func:`parse_folds` of the tokens; a bad token is a usage error (exit 2)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        try:
            setattr(namespace, self.dest, parse_folds(values))
        except UserError as exc:
            raise argparse.ArgumentError(None, str(exc)) from exc


def add_folds(p: argparse.ArgumentParser, required: bool = False,
              help: str = "fold indices: 0 1 2, 0-4, 0-4,7 or all (every fold of splits_final.json)") -> None:
    """``-f/--folds`` (``args.folds``: sorted list of int, ``"all"``, or None when not given)."""
    p.add_argument("-f", "--folds", nargs="+", action=_FoldsAction, required=required, metavar="FOLD", help=help)


def add_output(p: argparse.ArgumentParser, kind: Literal["folder", "file"], default: str | Path | None = None,
               help: str | None = None) -> None:
    """``-o/--output`` (``args.output``: Path or None); the help says whether it is a folder or a file."""
    text = f"output {kind}" if help is None else f"output {kind}: {help}"
    p.add_argument("-o", "--output", type=Path, default=None if default is None else Path(default),
                   metavar=kind.upper(), help=_help(text, default))


def _seed(value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 10 or int(value) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {MAX_SEED}, got {shown(value)}")
    return int(value)


def add_seed(p: argparse.ArgumentParser, default: int = DEFAULT_SEED, help: str = "random seed") -> None:
    """``--seed`` (``args.seed``: int in 0..``MAX_SEED``; anything else exits 2)."""
    p.add_argument("--seed", type=_seed, default=default, help=f"{help}, 0..{MAX_SEED} (default: %(default)s)")


def add_device(p: argparse.ArgumentParser, default: str | None = None, choices: Sequence[str] = ("cpu", "cuda"),
               help: str | None = None) -> None:
    """``--device`` (``args.device``: one of ``choices``, or ``default``)."""
    text = help or "torch device"
    p.add_argument("--device", choices=tuple(choices), default=default, help=_help(text, default))


def cpu_count() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def max_workers() -> int:
    """More processes than this only cost memory (the work is CPU-bound)."""
    return max(4, 4 * cpu_count())


def _workers(value: str) -> int:
    most = max_workers()
    if not value.isascii() or not value.isdigit() or len(value) > 9 or not 1 <= int(value) <= most:
        raise argparse.ArgumentTypeError(f"expected 1-{most} processes (the work is CPU-bound; {cpu_count()} "
                                         f"cores), got {shown(value)}")
    return int(value)


def add_workers(p: argparse.ArgumentParser, default: int | None = None,
                help: str = "worker processes") -> None:
    """``--workers`` (``args.workers``: int in 1..:func:`max_workers`; default: all cores)."""
    p.add_argument("--workers", type=_workers, default=cpu_count() if default is None else default,
                   help=f"{help} (default: all cores, %(default)s here)" if default is None else
                   f"{help} (default: %(default)s)")


def add_debug(p: argparse.ArgumentParser) -> None:
    """``--debug`` in a script's ``--help``; :func:`nnunet_se.errors.run_cli` takes it out of the command line
    before any parser runs, so it works in any position and on every subcommand."""
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure, and debug logging "
                                                        "(anywhere on the command line)")


def deprecation_line(prog: str, old: str, new: str) -> str:
    """The one warning line printed when a deprecated spelling is used."""
    return f"{prog}: warning: {old} is deprecated, use {new}"


def _deprecated_action(base: type[argparse.Action], old: str, new: str) -> type[argparse.Action]:
    class Deprecated(base):
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                     option_string: str | None = None) -> None:
            print(deprecation_line(parser.prog, old, new), file=sys.stderr)
            super().__call__(parser, namespace, values, option_string)

    return Deprecated


def _require_after_parsing(p: argparse.ArgumentParser, target: argparse.Action) -> None:
    """Make ``p`` fail like argparse's required check (exit 2) when ``target``'s destination is still unset."""
    parse_known_args = p.parse_known_args

    def checked(args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        parsed, extras = parse_known_args(args, namespace)
        if getattr(parsed, target.dest, None) is None:
            p.error(f"the following arguments are required: {'/'.join(target.option_strings)}")
        return parsed, extras

    p.parse_known_args = checked  # type: ignore[method-assign]


def add_deprecated(p: argparse.ArgumentParser, old: str, new: str, **kwargs: Any) -> None:
    """Accept ``old`` (an option such as ``--id``, or a positional's name) as a hidden alias of the option ``new``
    until release 0.3.0 (docs/cli.md); each use prints one line ``<prog>: warning: <old> is deprecated, use <new>``
    on stderr. The alias stores into ``new``'s destination with ``new``'s action, type, nargs and choices unless
    ``kwargs`` say otherwise; a deprecated positional is optional (one value, or a list when ``new`` takes
    several)."""
    target = p._option_string_actions.get(new)  # noqa: SLF001 - argparse has no public lookup of an option
    if target is None or target.nargs == 0:
        raise ValueError(f"add_deprecated: add the option {new} (taking a value) before its old spelling {old}")
    settings: dict[str, Any] = {"type": target.type, "nargs": target.nargs, "choices": target.choices,
                                "metavar": target.metavar, **kwargs}
    action = _deprecated_action(type(target), old, new)
    if target.required:  # either spelling satisfies it: argparse's own check would demand the new one
        target.required = False
        target.help = f"{target.help} (required)"
        _require_after_parsing(p, target)
    if old.startswith("-"):
        p.add_argument(old, dest=target.dest, action=action, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                       **settings)
    else:
        settings["nargs"] = "?" if settings["nargs"] in (None, "?") else "*"
        settings["metavar"] = old
        p.add_argument(target.dest, action=action, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **settings)
