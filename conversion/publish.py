"""Publishing a staged dataset (under the dataset lock): park the datasets it replaces aside, rename the staging
folder into place, copy the split files into ``nnUNet_preprocessed``, then delete the parked datasets. Any failure
before the deletion undoes every step, so the old dataset stays."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from nnunet_se.conversion.manifest import SPLITS_FILE, SPLITS_SIDECAR
from nnunet_se.conversion.safety import aside_name, remove_path

log = logging.getLogger(__name__)


def swap_in(
    staging: Path, output: Path, replaced: list[Path], dataset_id: int, then: Callable[[list[Path]], None]
) -> None:
    """Rename ``staging`` to ``output`` after parking every ``replaced`` dataset folder (or link) aside, then call
    ``then(created)``, which appends every folder it creates to ``created``. On any exception the created folders
    are removed (``output`` goes back to ``staging``) and the parked ones renamed back; on success the parked ones
    are deleted (a failure there is only logged: the new dataset is already in place)."""
    parked: list[tuple[Path, Path]] = []
    created: list[Path] = []
    try:
        for old in replaced:
            aside = aside_name(dataset_id, old)
            old.rename(aside)
            parked.append((old, aside))
        staging.rename(output)
        created.append(output)
        then(created)
    except BaseException:
        for path in reversed(created):
            if path == output:
                path.rename(staging)
            else:
                remove_path(path)
        for old, aside in reversed(parked):
            aside.rename(old)
        raise
    for old, aside in parked:
        try:
            remove_path(aside)
        except OSError as exc:
            log.warning("%s: could not delete the replaced dataset (%s); delete it yourself", aside, exc)
        else:
            log.info("replaced %s%s", old, " (a symbolic link: only the link was removed)" if old.is_symlink()
                     or aside.is_symlink() else "")


def copy_splits(output: Path, preprocessed_dir: Path | None, has_splits: bool, created: list[Path]) -> None:
    """Copy the split files of the published dataset ``output`` into a new folder
    ``<preprocessed_dir>/<output.name>`` (the writer has refused or parked every earlier folder of the id, so an
    existing one is an error, never rewritten); the folder goes to ``created`` before anything is written into it."""
    if preprocessed_dir is None:
        if has_splits:
            log.warning(
                "nnUNet_preprocessed is not set: splits_final.json is only in %s "
                "(nnUNetv2_plan_and_preprocess copies it from there)", output
            )
        return
    if not has_splits:
        return
    target = preprocessed_dir / output.name
    preprocessed_dir.mkdir(parents=True, exist_ok=True)
    target.mkdir()
    created.append(target)
    for fname in (SPLITS_FILE, SPLITS_SIDECAR):
        shutil.copyfile(output / fname, target / fname)
