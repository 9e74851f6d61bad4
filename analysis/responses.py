"""Per-channel excitation responses (Fig. 2) and the instance-variability index.

For excitations g_{i,c} (case i = 1..n, channel c = 1..C) at one depth:

- Gaussian summary per channel: m_c = mean_i g_{i,c}, s_c = std_i g_{i,c} (ddof 1);
- instance-variability index IVI = (1/C) sum_c s_c: how much a gate's output changes from one input to the next
  (0 = a constant, input-independent gate such as the paper reports for FCA);
- bounded IVI = (1/C) sum_c s_c / sqrt(m_c (1 - m_c)): each channel's std relative to the largest std a [0, 1]
  variable with that mean can have (a Bernoulli's), so gates saturated near 0 or 1 are not read as stable;
  channels with m_c (1 - m_c) = 0 contribute 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from nnunet_se.analysis.excitation_io import ExcitationSet
from nnunet_se.errors import UserError
from nnunet_se.reading import read_file


def channel_summary(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m_c, s_c) of ``g`` (n, C); s_c = 0 when n = 1."""
    std = g.std(axis=0, ddof=1) if g.shape[0] > 1 else np.zeros(g.shape[1])
    return g.mean(axis=0), std


def variability(g: np.ndarray) -> dict[str, float]:
    mean, std = channel_summary(g)
    bound = np.sqrt(np.clip(mean * (1.0 - mean), 0.0, None))  # excitations lie in [0, 1] (checked on loading)
    ratio = np.divide(std, bound, out=np.zeros_like(std), where=bound > 0)
    return {"ivi": float(std.mean()), "ivi_bounded": float(ratio.mean()), "mean_excitation": float(mean.mean())}


def variability_rows(sets: Sequence[ExcitationSet]) -> list[dict]:
    """One row per file and depth: dataset, model, plans, configuration, fold, depth, channels, n_cases, ivi,
    ivi_bounded, mean_excitation."""
    return [{"dataset": s.dataset, "model": s.model, "plans": s.plans, "configuration": s.configuration,
             "fold": s.fold, "depth": d, "channels": int(g.shape[1]),
             "n_cases": int(g.shape[0]), **variability(g)} for s in sets for d, g in s.depths.items()]


def channel_rows(sets: Sequence[ExcitationSet]) -> list[dict]:
    rows = []
    for s in sets:
        for d, g in s.depths.items():
            mean, std = channel_summary(g)
            rows += [{"dataset": s.dataset, "model": s.model, "fold": s.fold, "depth": d, "channel": c,
                      "mean": float(m), "std": float(v), "n_cases": int(g.shape[0])}
                     for c, (m, v) in enumerate(zip(mean, std, strict=True))]
    return rows


DICE_KEYS = ("dataset", "trainer", "plans", "configuration", "fold")


def read_dice_folds(path: Path) -> list[dict]:
    """The ``folds`` list of a ``table --format json`` file, each entry checked; errors name the file and entry."""
    try:
        payload = json.loads(read_file(path, str(path)))  # a regular file, size-bounded
    except OSError as exc:
        raise UserError(f"{path}: --dice cannot be read ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: --dice is not valid JSON ({exc})") from exc
    folds = payload.get("folds") if isinstance(payload, dict) else None
    if not isinstance(folds, list):
        raise UserError(f"{path}: --dice must be the JSON of `nnunet-se-analyze table --format json` "
                        "(an object with a 'folds' list)")
    for i, fold in enumerate(folds):
        missing = [k for k in (*DICE_KEYS, "finished", "dice") if not isinstance(fold, dict) or k not in fold]
        if missing:
            raise UserError(f"{path}: folds[{i}] lacks {', '.join(missing)} (rerun `nnunet-se-analyze table "
                            "--format json`)")
        dice = fold["dice"]
        if dice is not None and (isinstance(dice, bool) or not isinstance(dice, int | float)
                                 or not 0 <= dice <= 100):  # also refuses NaN and Infinity
            raise UserError(f"{path}: folds[{i}].dice must be a Dice in % (0-100) or null, got {dice!r}")
        if not isinstance(fold["finished"], bool):
            raise UserError(f"{path}: folds[{i}].finished must be true or false, got {fold['finished']!r}")
    refuse_duplicates([tuple(str(f[k]) for k in DICE_KEYS) for f in folds], [f"{path}: folds[{i}]"
                                                                            for i in range(len(folds))])
    return folds


def refuse_duplicates(keys: Sequence[tuple], sources: Sequence[str]) -> None:
    """One-line error naming both sources when two of them share a (dataset, trainer, plans, configuration, fold)
    key: a join on that key would silently keep one of them."""
    seen: dict[tuple, str] = {}
    for key, source in zip(keys, sources, strict=True):
        if key in seen:
            raise UserError(f"{source}: the same (dataset, trainer, plans, configuration, fold) as {seen[key]}: "
                            f"{', '.join(key)}")
        seen[key] = source


def attach_dice(rows: list[dict], folds: Sequence[dict]) -> list[dict]:
    """Rows that have a Dice (%) for their (dataset, trainer, plans, configuration, fold) in ``folds`` (the table
    JSON's ``folds``); the row's ``model`` is the trainer. Unfinished folds and folds without a Dice never match."""
    dice = {tuple(str(f[k]) for k in DICE_KEYS): f["dice"] for f in folds
            if f["finished"] is True and f["dice"] is not None and math.isfinite(f["dice"])}
    matched = []
    for row in rows:
        value = dice.get((row["dataset"], row["model"], row["plans"], row["configuration"], row["fold"]))
        if value is not None:
            matched.append({**row, "dice": float(value)})
    return matched


def correlations(points: Sequence[dict]) -> list[dict]:
    """Spearman rho and p between IVI and Dice per depth (NaN with fewer than 3 points)."""
    out = []
    for depth in sorted({p["depth"] for p in points}):
        sel = [p for p in points if p["depth"] == depth]
        if len(sel) >= 3 and len({p["ivi"] for p in sel}) > 1 and len({p["dice"] for p in sel}) > 1:
            rho, p = stats.spearmanr([p["ivi"] for p in sel], [p["dice"] for p in sel])
        else:
            rho = p = math.nan
        out.append({"depth": depth, "n": len(sel), "spearman_rho": float(rho), "p": float(p)})
    return out
