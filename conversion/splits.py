"""Cross-validation folds in nnU-Net's ``splits_final.json`` format, grouped so duplicates never leak.

Schemes:

- ``paper``: seeded, shuffled grouped folds (default 10): ``StratifiedGroupKFold`` on the class when classes are
  given (BUSI), else ``GroupKFold(shuffle=True)``.
- ``authors``: the authors' assignment (default 5 folds): unshuffled ``KFold`` (Kvasir, ISIC) or
  ``StratifiedKFold(shuffle=True, random_state=seed)`` on the class (BUSI, seed 42 in their code) over the cases in
  their given order. Without duplicate groups this is exactly their split; each duplicate group is then moved whole
  into the fold of its first member (in case order), the smallest change that keeps groups together.
- ``nnunet``: no file; nnU-Net makes its own 5 folds at the first training (ungrouped).

A fold is ``{"train": [...], "val": [...]}``; ``val`` is the held-out (test) fold, both lists sorted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnunet_se.errors import UserError

SCHEMES = ("paper", "authors", "nnunet")
DEFAULT_FOLDS = {"paper": 10, "authors": 5}


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
    """Folds for ``case_ids`` (in their canonical order); ``classes`` per case or None; ``groups`` = duplicates."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold  # slow import

    if scheme not in ("paper", "authors"):
        raise ValueError(f"scheme {scheme!r} writes no splits (choose from paper, authors)")
    n = len(case_ids)
    labels = group_labels(case_ids, groups)
    n_groups = len(set(labels))
    if folds < 2 or folds > n_groups:
        raise UserError(f"--folds {folds}: need 2 <= folds <= {n_groups} (independent cases/duplicate groups)")
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
    if y is not None:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y)
    else:
        splitter = KFold(folds, shuffle=False).split(x)
    for k, (_, test) in enumerate(splitter):
        fold_of[test] = k
    first_fold: dict[str, int] = {}
    for i, label in enumerate(labels):
        fold_of[i] = first_fold.setdefault(label, int(fold_of[i]))
    if len(set(fold_of.tolist())) < folds:
        raise UserError(f"--folds {folds}: keeping duplicate groups together leaves a fold empty")
    return _assignments_to_folds(case_ids, fold_of, folds)
