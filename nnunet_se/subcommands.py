"""Dispatch of ``<script> <subcommand> [args]`` to lazily imported modules.

Each subcommand lives in its own module exposing ``main(argv: list[str]) -> int``; importing it
only when it runs keeps ``--help`` fast (no torch import).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from nnunet_se.cli_options import add_debug
from nnunet_se.errors import run_cli


@dataclass(frozen=True)
class Subcommand:
    name: str
    module: str
    help: str


def build_parser(prog: str, description: str, commands: Sequence[Subcommand]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_debug(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands:
        sub.add_parser(command.name, help=command.help, add_help=False)
    return parser


def dispatch(prog: str, description: str, commands: Sequence[Subcommand], argv: Sequence[str] | None) -> int:
    """Parse the subcommand name, then hand the remaining arguments to its module's ``main``."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog, description, commands)
    by_name = {c.name: c for c in commands}
    first = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
    if first is None or args[first] not in by_name:
        if first is not None:
            parser.error(f"unknown command {args[first]!r} (choose from {', '.join(by_name)})")
        parser.parse_args(args)  # handles --help
        parser.print_help()
        return 2
    command = by_name[args[first]]
    rest = args[:first] + args[first + 1 :]

    def run(rest_args: Sequence[str]) -> int:
        module = importlib.import_module(command.module)
        return module.main(list(rest_args), prog=f"{prog} {command.name}")

    return run_cli(f"{prog} {command.name}", run, rest)
