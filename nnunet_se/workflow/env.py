"""``nnunet-se env``: shell exports that make nnU-Net find the plugin trainers (``eval "$(nnunet-se env)"``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import nnunet_se.nnunet_ext

EXT_VARIABLE = "nnUNet_extTrainer"
NNUNET_PATH_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
SHELL_SYNTAX = {
    "sh": "export {name}={value}",
    "fish": "set -gx {name} {value}",
    "csh": "setenv {name} {value}",
}


def shim_folder() -> Path:
    """The folder holding only the shim module (``nnunet_se_trainers_shim.py``) for ``nnUNet_extTrainer``."""
    return Path(nnunet_se.nnunet_ext.__file__).resolve().parent


def ext_trainer_value(current: str | None) -> str:
    """``nnUNet_extTrainer`` with the shim folder first, keeping any other folders the user already has."""
    ours = str(shim_folder())
    others = [p for p in (current or "").split(os.pathsep) if p and Path(p).resolve() != Path(ours)]
    return os.pathsep.join([ours, *others])


def unset_nnunet_paths() -> list[str]:
    """Names of nnU-Net's path variables that are unset or empty."""
    return [name for name in NNUNET_PATH_VARIABLES if not os.environ.get(name)]


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
