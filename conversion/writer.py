"""Atomic writer of nnU-Net raw datasets (2D RGB PNG, labels background 0 / lesion 1), shared by every converter.

API (also used by the demo's synthetic generator)::

    from nnunet_se.conversion.writer import Case, RawDatasetWriter

    with RawDatasetWriter(raw_dir, 501, "Synthetic", overwrite=True) as writer:
        writer.add(Case("case_0001", rgb, mask))            # rgb (H, W, 3) uint8, mask (H, W) bool or 0/1
        writer.add(Case("test_0001", rgb2, None, subset="test"))   # imagesTs, no label
        writer.set_splits(splits, {"scheme": "paper", "seed": 42})  # optional, see nnunet_se.conversion.splits
    # on a clean exit: <raw_dir>/Dataset501_Synthetic/ exists with
    #   imagesTr/<case>_0000.png  labelsTr/<case>.png  [imagesTs/, labelsTs/]  dataset.json  nnunet_se_cases.csv
    #   [splits_final.json  nnunet_se_splits.json]  (the splits also go to <preprocessed_dir>/Dataset501_Synthetic/)
    # on an exception, Ctrl-C or SIGTERM (see install_sigterm_handler): nothing named Dataset501_* is left behind.

Cases are staged in a hidden folder ``.nnunet-se-partial-NNN-<pid>`` inside ``raw_dir`` (same file system) that
is renamed to ``DatasetNNN_Name`` at the end, under a per-id lock (``.nnunet-se-lock-NNN``, see
:mod:`nnunet_se.conversion.safety`, which also holds the folder checks made before anything is written).
Parallel converters call :func:`stage_case` in worker processes with :attr:`RawDatasetWriter.staging` and hand
the returned :class:`StagedCase` to :meth:`RawDatasetWriter.record`.
An id already used by a dataset in ``raw_dir`` (or by a differently named one in ``preprocessed_dir``) is an error
unless ``overwrite``; overwriting parks the raw and preprocessed folders of that id aside, publishes the new raw
folder (and its splits), then deletes the parked ones; a failure before that renames them back.

The jobs live in their own modules: one case's files (:mod:`~nnunet_se.conversion.staging`), the description
files (:mod:`~nnunet_se.conversion.manifest`) and the swap into place (:mod:`~nnunet_se.conversion.publish`);
this module holds the writer that ties them together under the lock.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from nnunet_se.conversion.duplicates import PHASH_THRESHOLD, duplicate_groups
from nnunet_se.conversion.manifest import write_manifest
from nnunet_se.conversion.publish import copy_splits, swap_in
from nnunet_se.conversion.safety import (
    PARTIAL_PREFIX,
    DatasetLock,
    check_folders,
    check_replaceable,
    check_writable_folder,
    name_max,
    recover_partials,
    resolve_path,
)
from nnunet_se.conversion.staging import Case, StagedCase, stage_case, unstage_case
from nnunet_se.errors import UserError

__all__ = ["Case", "RawDatasetWriter", "StagedCase", "install_sigterm_handler", "stage_case"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


def install_sigterm_handler() -> Any:
    """Make SIGTERM raise KeyboardInterrupt in the main process, so ``kill`` cleans up like Ctrl-C.

    Returns the previous handler (restore it with ``signal.signal(signal.SIGTERM, previous)``).
    """

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


class RawDatasetWriter:
    """Context manager that stages cases and publishes ``<raw_dir>/DatasetNNN_<name>`` atomically on success."""

    def __init__(
        self,
        raw_dir: str | os.PathLike[str],
        dataset_id: int,
        name: str,
        *,
        overwrite: bool = False,
        preprocessed_dir: str | os.PathLike[str] | None = None,
        results_dir: str | os.PathLike[str] | None = None,
        sources: Sequence[str | os.PathLike[str]] = (),
        source_folders: Sequence[str | os.PathLike[str]] = (),
        metadata: dict[str, Any] | None = None,
        phash_threshold: int = PHASH_THRESHOLD,
    ) -> None:
        if not 1 <= dataset_id <= 999:
            raise UserError(f"-d/--dataset-id {dataset_id}: nnU-Net dataset ids are 1-999")
        if not _NAME_RE.fullmatch(name):
            raise UserError(f"--name {name!r}: use letters, digits, '_' and '-' only")
        self.raw_dir = resolve_path(raw_dir, "folder")
        self.dataset_id = dataset_id
        self.dataset_name = f"Dataset{dataset_id:03d}_{name}"
        self.overwrite = overwrite
        self.preprocessed_dir = resolve_path(preprocessed_dir, "folder") if preprocessed_dir else None
        results = results_dir if results_dir is not None else os.environ.get("nnUNet_results")
        self.results_dir = resolve_path(results, "folder") if results else None
        self.sources = [resolve_path(s, "source") for s in sources]
        self.source_folders = [resolve_path(s, "source") for s in source_folders]
        self.metadata = dict(metadata or {})
        self.phash_threshold = phash_threshold
        self.staging = self.raw_dir / f"{PARTIAL_PREFIX}{dataset_id:03d}-{os.getpid()}"
        self._lock = DatasetLock(self.raw_dir, dataset_id)
        self._records: dict[str, StagedCase] = {}
        self._splits: list[dict[str, list[str]]] | None = None
        self._splits_meta: dict[str, Any] = {}
        self._groups: list[list[str]] | None = None

    @property
    def output(self) -> Path:
        """The final dataset folder ``<raw_dir>/DatasetNNN_<name>``."""
        return self.raw_dir / self.dataset_name

    def _roots(self) -> list[tuple[Path, str]]:
        roots = [(self.raw_dir, "raw")]
        return roots + ([(self.preprocessed_dir, "preprocessed")] if self.preprocessed_dir else [])

    def _same_id(self, root: Path | None) -> list[Path]:
        """``DatasetNNN_*`` entries of this id in ``root`` (folders, or symbolic links to folders)."""
        if root is None or not root.is_dir():
            return []
        prefix = f"Dataset{self.dataset_id:03d}_"
        return sorted(p for p in root.iterdir() if p.name.startswith(prefix) and (p.is_dir() or p.is_symlink()))

    def _check_folders(self) -> None:
        """Distinct roots, writable, sources outside them and they outside every source folder, and a name the file
        system can store (see safety)."""
        roots = {"--raw-dir": self.raw_dir, "--preprocessed-dir": self.preprocessed_dir,
                 "nnUNet_results": self.results_dir}
        check_folders(roots, self.sources, written=("--raw-dir", "--preprocessed-dir"),
                      source_folders=self.source_folders)
        longest = name_max(self.raw_dir) - len(f"{PARTIAL_PREFIX}000-{2**22}.old-")
        if len(os.fsencode(self.dataset_name)) > longest:
            raise UserError(f"--name: {self.dataset_name!r} is too long for the file system in {self.raw_dir} "
                            f"(at most {longest} bytes for DatasetNNN_<name>)")
        for root, kind in self._roots():
            check_writable_folder(root, f"the {kind} folder")

    def _check_ids(self) -> None:
        """Without ``overwrite``: the id must be free in both folders (a preprocessed folder of the id holds a
        ``splits_final.json`` that trained folds depend on). With it: everything it would remove must be
        replaceable (a preprocessed folder only if it holds nothing but the converter's split files)."""
        for root, kind in self._roots():
            for existing in self._same_id(root):
                if self.overwrite:
                    check_replaceable(existing, kind)
                elif kind == "raw":
                    raise UserError(f"{existing}: id {self.dataset_id} is already used "
                                    "(pass --overwrite to replace it)")
                else:
                    raise UserError(
                        f"{existing}: id {self.dataset_id} is already used in nnUNet_preprocessed (its "
                        "splits_final.json, which trained folds depend on, would be replaced; pass --overwrite to "
                        "replace it)"
                    )

    def __enter__(self) -> RawDatasetWriter:
        self._check_folders()
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            for root, _ in self._roots():
                recover_partials(root, self.dataset_id, self.staging)
            self._check_ids()
            self.staging.mkdir()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            try:
                shutil.rmtree(self.staging, ignore_errors=True)
            finally:
                self._lock.release()

    # -- cases ---------------------------------------------------------------------------------------------------
    def add(self, case: Case) -> StagedCase:
        """Write one in-memory case into the staging folder and record it."""
        staged = stage_case(self.staging, case)
        self.record(staged)
        return staged

    def record(self, staged: StagedCase) -> None:
        """Record a case already written by :func:`stage_case` (e.g. in a worker process)."""
        if staged.case_id in self._records:
            raise UserError(f"case id {staged.case_id} occurs twice (two sources map to the same id)")
        self._records[staged.case_id] = staged
        self._groups = None

    @property
    def records(self) -> list[StagedCase]:
        """Recorded cases sorted by case id."""
        return [self._records[k] for k in sorted(self._records)]

    def training_cases(self) -> list[StagedCase]:
        return [r for r in self.records if r.subset == "train"]

    def duplicate_groups(self) -> list[list[str]]:
        """Exact/near duplicate groups among the training cases (see :mod:`nnunet_se.conversion.duplicates`)."""
        if self._groups is None:
            train = self.training_cases()
            self._groups = duplicate_groups(
                [r.case_id for r in train], [r.digest for r in train], [r.phash for r in train], self.phash_threshold
            )
        return self._groups

    def drop(self, case_ids: Sequence[str]) -> None:
        """Remove recorded cases and their staged files (used by ``--dedupe``)."""
        for case_id in case_ids:
            unstage_case(self.staging, self._records.pop(case_id))
        self._groups = None

    def set_splits(self, splits: list[dict[str, list[str]]] | None, meta: dict[str, Any] | None = None) -> None:
        """Folds as nnU-Net's ``splits_final.json`` list of ``{"train": [...], "val": [...]}``, plus a sidecar."""
        self._splits = splits
        self._splits_meta = dict(meta or {})

    # -- publishing ----------------------------------------------------------------------------------------------
    def _commit(self) -> None:
        """Write the description files into the staging folder, then swap it in (lock held)."""
        if not self.training_cases():
            raise UserError(f"{self.dataset_name}: no training cases to write")
        write_manifest(self.staging, self.dataset_name, self.records, self.duplicate_groups(), self.metadata,
                       self._splits, self._splits_meta)
        self._check_ids()  # again at publish time: another tool may have added a dataset with this id meanwhile
        replaced = [p for root, _ in self._roots() for p in self._same_id(root)] if self.overwrite else []
        swap_in(self.staging, self.output, replaced, self.dataset_id,
                lambda created: copy_splits(self.output, self.preprocessed_dir, self._splits is not None, created))
