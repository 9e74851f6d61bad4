"""``nnunet-se env``: shell exports that make nnU-Net find the plugin trainers (``eval "$(nnunet-se env)"``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from nnunet_se.layout import EXT_VARIABLE, ext_trainer_value, nnunet_roots

SHELL_SYNTAX = {
    "sh": "export {name}={value}",
    "fish": "set -gx {name} {value}",
    "csh": "setenv {name} {value}",
}


def unset_nnunet_paths() -> list[str]:
    """Names of nnU-Net's path variables that are unset or empty."""
    return [name for name, path in nnunet_roots().items() if path is None]


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    shell = parser.add_mutually_exclusive_group()
    shell.add_argument("--fish", dest="shell", action="store_const", const="fish", help="fish syntax")
    shell.add_argument("--csh", dest="shell", action="store_const", const="csh", help="csh/tcsh syntax")
    args = parser.parse_args(argv)
    value = ext_trainer_value(os.environ.get(EXT_VARIABLE))
    print(SHELL_SYNTAX[args.shell or "sh"].format(name=EXT_VARIABLE, value=shlex.quote(value)))
    for name in unset_nnunet_paths():
        print(f"{prog}: warning: {name} is not set; nnU-Net needs it (see nnU-Net's setting_up_paths.md)",
              file=sys.stderr)
    return 0
