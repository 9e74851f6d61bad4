"""The one conversion mechanism: dataset rules (data) -> decoded, resized cases -> atomic raw dataset + splits.

Each dataset module (``isic2018``, ``kvasir``, ``busi``) only provides a :class:`DatasetRules`: where its files are
in the downloaded layout, how images pair with masks, the mask threshold, classes and the authors' split scheme.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from nnunet_se.conversion.duplicates import PHASH_THRESHOLD
from nnunet_se.conversion.images import decode_image, decode_mask, image_array, mask_array, union
from nnunet_se.conversion.sources import SourceFile
from nnunet_se.conversion.splits import DEFAULT_FOLDS, make_splits
from nnunet_se.conversion.staging import CASE_ID_RE
from nnunet_se.conversion.writer import Case, RawDatasetWriter, StagedCase, stage_case
from nnunet_se.errors import UserError

log = logging.getLogger(__name__)
_R = TypeVar("_R")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class CaseSource:
    """Where one case comes from: its image, its mask file(s) (union; empty = no label) and class."""

    case_id: str
    image: SourceFile
    masks: tuple[SourceFile, ...]
    subset: str = "train"
    cls: str = ""


@dataclass(frozen=True)
class DatasetRules:
    """Everything dataset-specific. ``find_cases(files, include_normal)`` returns the cases in canonical order."""

    key: str
    default_name: str
    layout: str
    mask_threshold: int | None
    find_cases: Callable[[list[SourceFile], bool], list[CaseSource]]
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Options:
    """Conversion settings: ``size`` = target side in pixels or None (native)."""

    size: int | None = 224
    workers: int = 1
    include_normal: bool = False
    dedupe: bool = False
    scheme: str = "paper"
    folds: int | None = None
    seed: int = 42


def sanitize(name: str) -> str:
    """A source file stem as an nnU-Net-safe case id (letters, digits, '_', '-')."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9\-]+", "_", name)).strip("_")


def is_image(file: SourceFile) -> bool:
    return file.suffix in IMAGE_SUFFIXES


def pair_files(
    images: Iterable[tuple[str, SourceFile]],
    masks: Iterable[tuple[str, SourceFile]],
    require_mask: bool = True,
    mask_folder: str | None = None,
    image_folder: str | None = None,
) -> Iterator[tuple[str, SourceFile, tuple[SourceFile, ...]]]:
    """Join (key, image) with (key, mask) pairs: every image needs a mask (if required), every mask an image.

    No images and no masks yields nothing (the caller reports the layout). ``mask_folder`` names the folder
    expected beside the images' folder: when masks are required and there are none at all, the error names that
    missing folder instead of the first image; ``image_folder`` likewise names the images' folder when there are
    masks but no images at all (masks are never dropped silently).
    """
    by_key: dict[str, SourceFile] = {}
    for key, image in images:
        if key in by_key:
            raise UserError(f"{image.display}: a second image for {key!r} (first: {by_key[key].display})")
        by_key[key] = image
    masks = list(masks)
    if not by_key:
        if masks and image_folder is not None:
            first_mask = min(f for _, f in masks)
            raise UserError(f"{first_mask.sibling_folder(image_folder)}: images folder is missing or has no images "
                            f"(masks given in {first_mask.sibling_folder(first_mask.parent_name)})")
        if masks:
            raise UserError(f"{masks[0][1].display}: mask without image (no image named {masks[0][0]!r} beside it)")
        return
    if require_mask and not masks and mask_folder is not None:
        first = by_key[min(by_key)]
        raise UserError(f"{first.sibling_folder(mask_folder)}: masks folder is missing or has no masks "
                        f"(expected beside {first.sibling_folder(first.parent_name)})")
    masks_of: dict[str, list[SourceFile]] = {}
    for key, mask in masks:
        if key not in by_key:
            raise UserError(f"{mask.display}: mask without image (no image named {key!r} beside it)")
        masks_of.setdefault(key, []).append(mask)
    for key in sorted(by_key):
        if require_mask and key not in masks_of:
            raise UserError(f"{by_key[key].display}: image without mask")
        yield key, by_key[key], tuple(sorted(masks_of.get(key, ())))


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def convert_case(task: tuple[CaseSource, int | None, int | None, Path]) -> StagedCase:
    """Decode, check, resize and stage one case (runs in worker processes)."""
    source, size, threshold, staging = task
    image = decode_image(source.image.read(), source.image.display, size)
    notes = list(image.notes)
    masks = []
    for mask_file in source.masks:
        decoded = decode_mask(mask_file.read(), mask_file.display, threshold)
        if decoded.size != image.size:
            (mw, mh), (iw, ih) = decoded.size, image.size
            raise UserError(
                f"{mask_file.display}: mask size {mw}x{mh} does not match its image {source.image.display} ({iw}x{ih})"
            )
        masks.append(decoded.image)
        notes.extend(decoded.notes)
    if len(masks) > 1:
        notes.append(f"union of {len(masks)} masks")
    pixels = image_array(image.image, size)
    mask = mask_array(union(masks), size) if masks else None
    case = Case(
        source.case_id, pixels, mask, source.subset, source.cls, source.image.rel,
        tuple(m.rel for m in source.masks), image.size, _unique(notes),
    )
    return stage_case(staging, case)


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C and cleans up


def run_parallel(
    tasks: Sequence[Any], func: Callable[[Any], _R], workers: int, costs: Sequence[float] | None = None
) -> list[_R]:
    """``func`` over ``tasks`` in ``workers`` processes (fork where available) with a tqdm bar; results in order.

    With ``costs`` (e.g. source bytes per task), processes take the costliest tasks first, so that no large task
    is left running alone at the end (longest-processing-time-first scheduling).
    """
    bar = tqdm(total=len(tasks), unit="img", desc="converting", disable=None)
    try:
        if workers <= 1 or len(tasks) <= 1:
            out = []
            for task in tasks:
                out.append(func(task))
                bar.update()
            return out
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        executor = ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context, initializer=_worker_init)
        order = sorted(range(len(tasks)), key=lambda i: -costs[i]) if costs is not None else range(len(tasks))
        try:
            results: dict[int, _R] = {}
            for i, result in zip(order, executor.map(func, [tasks[i] for i in order]), strict=True):
                results[i] = result
                bar.update()
            return [results[i] for i in range(len(tasks))]
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def _dedupe(writer: RawDatasetWriter, groups: list[list[str]]) -> list[str]:
    """Keep the first case of each duplicate group; drop whole groups whose members disagree on the class."""
    cls = {r.case_id: r.cls for r in writer.training_cases()}
    dropped = []
    for group in groups:
        conflicting = len({cls[c] for c in group}) > 1
        dropped.extend(group if conflicting else group[1:])
    writer.drop(dropped)
    return dropped


def check_case_ids(cases: Sequence[CaseSource]) -> None:
    """Every case id is usable by nnU-Net and unique, also ignoring case (two ids differing only in case would
    overwrite each other on a case-insensitive file system); else :class:`UserError` naming the source file(s)."""
    seen: dict[str, CaseSource] = {}
    for case in cases:
        if not CASE_ID_RE.fullmatch(case.case_id):
            raise UserError(f"{case.image.display}: its file name gives no usable case id ({case.case_id!r}: "
                            "letters, digits, '_', '-', '.' only, non-ASCII characters are dropped); rename the file")
        first = seen.setdefault(case.case_id.lower(), case)
        if first is not case:
            raise UserError(f"{case.image.display}: gives the same case id as {first.image.display} "
                            f"({first.case_id!r}); rename one of them")


def check_sources_used(cases: Sequence[CaseSource], sources: Sequence[str], layout: str) -> None:
    """Every given source provides a file of some case: a source that contributes nothing is refused (it would
    otherwise be dropped silently), naming the expected layout."""
    used = {f.source for c in cases for f in (c.image, *c.masks)}
    for source in sources:
        if source not in used:
            raise UserError(f"{source}: no case uses a file of this source; expected {layout}")


def convert(
    rules: DatasetRules,
    files: list[SourceFile],
    writer: RawDatasetWriter,
    options: Options,
    sources: Sequence[str],
) -> dict[str, Any]:
    """Convert ``files`` (found in the resolved ``sources``) with ``rules`` into ``writer`` (already entered);
    returns a summary for the CLI."""
    cases = rules.find_cases(files, options.include_normal)
    n_train = sum(c.subset == "train" for c in cases)
    if not n_train:
        raise UserError(f"{', '.join(sources)}: empty or wrong layout; expected {rules.layout}")
    check_sources_used(cases, sources, rules.layout)
    check_case_ids(cases)
    folds = options.folds if options.folds is not None else DEFAULT_FOLDS.get(options.scheme)
    if folds is not None and folds > n_train:
        given = f"--n-folds {folds}" if options.folds is not None else f"--splits {options.scheme} ({folds} folds)"
        raise UserError(f"{given}: more folds than the {n_train} training cases found")
    tasks = [(c, options.size, rules.mask_threshold, writer.staging) for c in cases]
    costs = [c.image.nbytes() + sum(m.nbytes() for m in c.masks) for c in cases]
    for staged in run_parallel(tasks, convert_case, options.workers, costs):
        writer.record(staged)
    groups = writer.duplicate_groups()
    for group in groups:
        log.warning("duplicate group: %s", ", ".join(group))
    dropped = _dedupe(writer, groups) if options.dedupe else []
    if dropped:
        log.warning("--dedupe dropped %d cases: %s", len(dropped), ", ".join(dropped))
    train = writer.training_cases()
    summary: dict[str, Any] = {
        "train": len(train),
        "test": len(writer.records) - len(train),
        "duplicate_groups": len(groups),
        "dropped": len(dropped),
        "scheme": options.scheme,
    }
    if folds is not None:
        ids = [r.case_id for r in train]
        classes = [r.cls for r in train]
        kept = set(ids)
        remaining = [[c for c in g if c in kept] for g in groups]
        splits = make_splits(ids, classes, [g for g in remaining if len(g) > 1], options.scheme, folds, options.seed)
        writer.set_splits(
            splits,
            {
                "scheme": options.scheme,
                "folds": folds,
                "seed": options.seed,
                "stratified_by": "class" if any(classes) else None,
                "grouped_by": "duplicate_group" if options.scheme == "paper" else None,
                "phash_threshold": writer.phash_threshold,
            },
        )
        summary.update(folds=folds, seed=options.seed)
    return summary


def conversion_metadata(rules: DatasetRules, options: Options) -> dict[str, Any]:
    """The ``dataset.json`` extras that record how the dataset was made (no paths, no times: deterministic)."""
    return {
        **rules.metadata,
        "nnunet_se": {
            "converter": rules.key,
            "size": options.size if options.size is not None else "native",
            "image_resize": "bilinear (Pillow, reducing_gap 2; JPEG DCT-scaled decode first)",
            "mask_resize": "bilinear on 0/1, threshold 0.5",
            "mask_threshold": rules.mask_threshold,
            "include_normal": options.include_normal,
            "dedupe": options.dedupe,
            "phash_threshold": PHASH_THRESHOLD,
        },
    }
