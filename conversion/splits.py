"""Cross-validation folds in nnU-Net's ``splits_final.json`` format, grouped so duplicates never leak.

Schemes:

- ``paper``: seeded, shuffled grouped folds (default 10): ``StratifiedGroupKFold`` on the class when classes are
  given (BUSI), else ``GroupKFold(shuffle=True)``.
- ``authors``: the authors' assignment (5 folds, ``experiments/*`` of their code): unshuffled ``KFold`` (Kvasir,
  ISIC) or ``StratifiedKFold(shuffle=True, random_state=42)`` on the class (BUSI) over the sorted case ids. Exactly
  their split, so duplicate groups may straddle folds as in their experiments (logged as a warning).
  :func:`authors_dev_split` is their dev (early-stopping) set inside a fold's training part.
- ``nnunet``: no file; nnU-Net makes its own 5 folds at the first training (ungrouped).

A fold is ``{"train": [...], "val": [...]}``; ``val`` is the held-out (test) fold, both lists sorted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from nnunet_se.errors import UserError

log = logging.getLogger(__name__)
SCHEMES = ("paper", "authors", "nnunet")
AUTHORS_FOLDS = 5
AUTHORS_SEED = 42  # StratifiedKFold and the stratified dev split of their BUSI scripts
DEFAULT_FOLDS = {"paper": 10, "authors": AUTHORS_FOLDS}
AUTHORS_DEV_FRACTION = 0.1  # Kvasir, ISIC: the last int(0.1 n) cases of the training part
AUTHORS_DEV_STRATIFIED_FRACTION = 0.2  # BUSI: train_test_split(test_size=0.2, stratify=class, random_state=42)


def check_authors_options(folds: int | None, seed: int, dedupe: bool, include_normal: bool) -> None:
    """UserError (one line) for options that cannot give the authors' assignment with ``--splits authors``."""
    if folds is not None and folds != AUTHORS_FOLDS:
        raise UserError(f"--splits authors uses the authors' {AUTHORS_FOLDS} folds, not --n-folds {folds}")
    if seed != AUTHORS_SEED:
        raise UserError(f"--splits authors uses the authors' seed {AUTHORS_SEED}, not --seed {seed}")
    if dedupe:
        raise UserError("--dedupe drops cases the authors kept: not possible with --splits authors")
    if include_normal:
        raise UserError("--include-normal adds cases the authors excluded: not possible with --splits authors")


def group_labels(case_ids: Sequence[str], groups: Sequence[Sequence[str]]) -> list[str]:
    """Group label per case: the group's first member for duplicates, the case itself otherwise."""
    label = {c: group[0] for group in groups for c in group}
    return [label.get(c, c) for c in case_ids]


def _assignments_to_folds(case_ids: Sequence[str], fold_of: np.ndarray, folds: int) -> list[dict[str, list[str]]]:
    ids = np.asarray(case_ids)
    return [
        {"train": sorted(ids[fold_of != k].tolist()), "val": sorted(ids[fold_of == k].tolist())} for k in range(folds)
    ]


def make_splits(
    case_ids: Sequence[str],
    classes: Sequence[str] | None,
    groups: Sequence[Sequence[str]],
    scheme: str,
    folds: int,
    seed: int,
) -> list[dict[str, list[str]]]:
    """Folds for ``case_ids``; ``classes`` per case or None; ``groups`` = duplicates (kept together by ``paper``).

    ``paper`` splits the cases in the given (canonical) order; ``authors`` in sorted case-id order.
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold  # slow import

    if scheme not in ("paper", "authors"):
        raise ValueError(f"scheme {scheme!r} writes no splits (choose from paper, authors)")
    n = len(case_ids)
    labels = group_labels(case_ids, groups)
    n_units = len(set(labels)) if scheme == "paper" else n
    if folds < 2 or folds > n_units:
        raise UserError(f"--n-folds {folds}: need 2 <= folds <= {n_units} (independent cases/duplicate groups)")
    x = np.zeros((n, 1))
    y = np.asarray(classes) if classes is not None and any(classes) else None
    fold_of = np.full(n, -1)
    if scheme == "paper":
        if y is not None:
            splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x, y, labels)
        else:
            splitter = GroupKFold(folds, shuffle=True, random_state=seed).split(x, groups=labels)
        for k, (_, test) in enumerate(splitter):
            fold_of[test] = k
        return _assignments_to_folds(case_ids, fold_of, folds)
    order = sorted(range(n), key=lambda i: case_ids[i])  # the authors list their files sorted by name
    y_sorted = y[order] if y is not None else None
    if y_sorted is not None:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y_sorted)
    else:
        splitter = KFold(folds, shuffle=False).split(x)
    for k, (_, test) in enumerate(splitter):
        fold_of[np.asarray(order)[test]] = k
    fold_sets = [{int(fold_of[i]) for i, label in enumerate(labels) if label == group} for group in set(labels)]
    straddling = sum(len(s) > 1 for s in fold_sets)
    if straddling:
        log.warning("--splits authors: %d duplicate group(s) span several folds, as in the authors' experiments",
                    straddling)
    return _assignments_to_folds(case_ids, fold_of, folds)


def authors_dev_split(
    train_ids: Sequence[str], classes: Mapping[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """(fit, dev) of a fold's training cases by the authors' rule, both sorted by case id.

    The training part is taken in sorted case order (their ``train_index`` order). Without ``classes``: the last
    ``int(0.1 n)`` cases are the dev set (at least one when n >= 2; the authors' rule gives none below 10 cases).
    With ``classes`` (BUSI): ``train_test_split(test_size=0.2, stratify=class, random_state=42)``.
    ValueError if a stratified split is impossible (fewer cases than classes, or a class with one case).
    """
    from sklearn.model_selection import train_test_split  # slow import

    ids = sorted(set(train_ids))
    n = len(ids)
    if n < 2:
        return ids, []
    if classes:
        try:
            _, dev_idx = train_test_split(np.arange(n), test_size=AUTHORS_DEV_STRATIFIED_FRACTION,
                                          stratify=[classes.get(c, "") for c in ids], random_state=AUTHORS_SEED)
        except ValueError as err:
            raise ValueError(f"the authors' stratified dev split of {n} cases is impossible: {err}") from None
        dev = {ids[i] for i in dev_idx}
    else:
        dev = set(ids[n - max(1, int(AUTHORS_DEV_FRACTION * n)):])
    return [c for c in ids if c not in dev], sorted(dev)
