"""``nnunet-se check``: verify the installation; one line per problem on stderr and exit 1 if there is any.

Checks: the installed nnunetv2 is in the range this package requires; nnU-Net's path variables are set; the shim
folder is on ``nnUNet_extTrainer``; torchvision imports (nnU-Net's trainer search needs it); every plugin trainer is
found by nnU-Net's own lookup (``recursive_find_trainer_class_by_name``) and pickles.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path

from packaging.requirements import Requirement

from nnunet_se.layout import EXT_VARIABLE, ext_trainer_value, shim_folder
from nnunet_se.workflow.env import unset_nnunet_paths

DISTRIBUTION = "nnunet-se"


def check_nnunet_version() -> list[str]:
    """nnunetv2's installed version against this distribution's requirement."""
    try:
        requirement = next(Requirement(r) for r in importlib.metadata.requires(DISTRIBUTION) or []
                           if Requirement(r).name == "nnunetv2")
        version = importlib.metadata.version("nnunetv2")
    except (importlib.metadata.PackageNotFoundError, StopIteration) as exc:
        return [f"cannot read the nnunetv2 requirement or version ({exc}); reinstall: pip install {DISTRIBUTION}"]
    if not requirement.specifier.contains(version, prereleases=True):
        return [f"nnunetv2 {version} is installed but {DISTRIBUTION} needs nnunetv2{requirement.specifier}; "
                f"fix: pip install 'nnunetv2{requirement.specifier}'"]
    return []


def check_environment() -> list[str]:
    problems = [f"{name} is not set (nnU-Net needs it; see nnU-Net's setting_up_paths.md)"
                for name in unset_nnunet_paths()]
    folders = [Path(p).resolve() for p in os.environ.get(EXT_VARIABLE, "").split(os.pathsep) if p]
    if shim_folder() not in folders:
        problems.append(f'{EXT_VARIABLE} does not contain {shim_folder()}; fix: eval "$(nnunet-se env)"')
    return problems


def check_torchvision() -> list[str]:
    try:
        import torchvision  # noqa: F401  (nnU-Net's trainer search imports timm -> torchvision)
    except Exception as exc:  # a mismatched build raises RuntimeError, not ImportError
        import torch

        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [f"torchvision does not import ({message}); every plugin trainer fails to load in nnU-Net; "
                f"fix: install the torchvision built for torch {torch.__version__}, e.g. "
                "pip install torch==2.14.1 torchvision==0.29.1 (see docs/install.md)"]
    return []


def check_trainers() -> list[str]:
    """Every trainer via nnU-Net's own lookup, with the shim folder on ``nnUNet_extTrainer``; then a pickle trip."""
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunet_se.trainers import ALL_TRAINERS

    problems = []
    previous = os.environ.get(EXT_VARIABLE)
    os.environ[EXT_VARIABLE] = ext_trainer_value(previous)
    try:
        for name, cls in ALL_TRAINERS.items():
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints every module it inspects
                    found = recursive_find_trainer_class_by_name(name)
            except Exception as exc:
                problems.append(f"nnU-Net's lookup of {name} failed: {type(exc).__name__}: {exc}".splitlines()[0])
                continue
            if found is not cls:
                problems.append(f"nnU-Net's lookup of {name} returns {found.__module__}.{found.__qualname__}, "
                                f"not the plugin's {cls.__module__}.{cls.__qualname__} (a name clash)")
            elif pickle.loads(pickle.dumps(found)) is not cls:
                problems.append(f"{name} does not survive pickling")
    finally:
        if previous is None:
            del os.environ[EXT_VARIABLE]
        else:
            os.environ[EXT_VARIABLE] = previous
    return problems


CHECKS: tuple[tuple[str, Callable[[], list[str]]], ...] = (
    ("nnunetv2 version", check_nnunet_version),
    ("environment variables", check_environment),
    ("torchvision import", check_torchvision),
    ("trainer lookup and pickling", check_trainers),  # last: it cannot pass when torchvision fails
)


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.parse_args(argv)
    failed = []
    for title, check in CHECKS:
        if check is check_trainers and "torchvision import" in failed:
            print(f"{title}: skipped (fix torchvision first)")
            continue
        problems = check()
        for problem in problems:
            print(f"{prog}: error: {problem}", file=sys.stderr)
        print(f"{title}: {'FAILED' if problems else 'ok'}")
        if problems:
            failed.append(title)
    return 1 if failed else 0
