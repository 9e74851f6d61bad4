"""Matplotlib figures of the excitation study: Fig. 3 (k against depth), Fig. 2 (responses), IVI against Dice.

Every function writes ``<stem>.png`` (150 dpi) and ``<stem>.pdf`` and returns their paths.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from nnunet_se.analysis.excitation_io import ExcitationSet  # noqa: E402
from nnunet_se.analysis.responses import channel_summary  # noqa: E402


def _save(fig: plt.Figure, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    return paths


def threshold_series(rows: Sequence[dict]) -> dict[str, dict[str, tuple[list[int], list[float], list, list]]]:
    """What Fig. 3 draws: dataset -> model label -> (depths, k, band low, band high).

    A model is one (trainer, plans, configuration); when a dataset holds several plans or configurations of one
    trainer the label names them. Several folds are drawn at their mean k and the mean of their intervals, which
    contains the mean k because each interval contains its own k.
    """
    out: dict[str, dict[str, tuple]] = {}
    for dataset in sorted({r["dataset"] for r in rows}):
        sel = [r for r in rows if r["dataset"] == dataset]
        variants: dict[str, set] = defaultdict(set)
        for r in sel:
            variants[r["model"]].add((r.get("plans", ""), r.get("configuration", "")))
        grouped: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for r in sel:
            extra = [v for v in (r.get("plans", ""), r.get("configuration", "")) if v]
            label = r["model"] if len(variants[r["model"]]) == 1 or not extra else f"{r['model']} ({', '.join(extra)})"
            grouped[label][int(r["depth"])].append(r)
        out[dataset] = {}
        for label, by_depth in sorted(grouped.items()):
            depths = sorted(by_depth)
            out[dataset][label] = (depths, *([float(np.mean([r[key] for r in by_depth[d]])) for d in depths]
                                             for key in ("k", "k_ci_low", "k_ci_high")))
    return out


def plot_thresholds(rows: Sequence[dict], stem: Path, title: str) -> list[Path]:
    """Fig. 3: one panel per dataset, k against depth l, one line per model (``threshold_series``), band = interval.

    ``rows`` are threshold rows (keys ``dataset``, ``model``, ``plans``, ``configuration``, ``depth``, ``k``,
    ``k_ci_low``, ``k_ci_high``).
    """
    series = threshold_series(rows)
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.4), squeeze=False)
    for ax, (dataset, models) in zip(axes[0], series.items(), strict=True):
        for label, (depths, k, low, high) in models.items():
            (line,) = ax.plot(depths, k, marker="o", label=label)
            if np.all(np.isfinite(low)):
                ax.fill_between(depths, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.set_title(dataset or "(no dataset)")
        ax.set_xlabel("encoder depth l")
        ax.set_ylabel("linear excitation threshold k")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize="small")
    fig.suptitle(title, fontsize="small")
    return _save(fig, stem)


def plot_responses(sets: Sequence[ExcitationSet], stem: Path) -> list[Path]:
    """Fig. 2: rows = excitation files (models), columns = depths.

    Each channel c gets its cases' excitations as faint horizontal segments, and its Gaussian summary (mean as a
    dot, +- one std as a bar). Channels keep their network order on the x axis.
    """
    n_depth = max(len(s.depths) for s in sets)
    fig, axes = plt.subplots(len(sets), n_depth, figsize=(4.0 * n_depth, 2.6 * len(sets)), squeeze=False,
                             layout="constrained")
    for row, exc in enumerate(sets):
        for col in range(n_depth):
            ax = axes[row][col]
            depth = col + 1
            if depth not in exc.depths:
                ax.axis("off")
                continue
            g = exc.depths[depth]
            channels = np.arange(g.shape[1])
            x0 = np.broadcast_to(channels - 0.4, g.shape).ravel()
            x1 = np.broadcast_to(channels + 0.4, g.shape).ravel()
            y = g.ravel()
            segments = np.stack([np.stack([x0, y], 1), np.stack([x1, y], 1)], 1)
            alpha = float(np.clip(8.0 / g.shape[0], 0.02, 0.5))
            ax.add_collection(LineCollection(segments, colors="tab:blue", alpha=alpha, linewidths=0.6))
            mean, std = channel_summary(g)
            ax.errorbar(channels, mean, yerr=std, fmt="o", color="black", markersize=1.8,
                        elinewidth=0.6, capsize=0)
            ax.set_xlim(-1, g.shape[1])
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{exc.model} fold {exc.fold or '?'}, l={depth} (C={g.shape[1]}, n={g.shape[0]})",
                         fontsize="x-small")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_xlabel("channel")
            ax.set_ylabel("excitation")
    return _save(fig, stem)


def plot_ivi_dice(points: Sequence[dict], stem: Path) -> list[Path]:
    """Scatter of the instance-variability index (x) against Dice % (y), one colour per depth, labelled by model."""
    fig, ax = plt.subplots(figsize=(5.0, 3.8))
    for depth in sorted({p["depth"] for p in points}):
        sel = [p for p in points if p["depth"] == depth]
        ax.scatter([p["ivi"] for p in sel], [p["dice"] for p in sel], label=f"l={depth}", s=18)
        for p in sel:
            ax.annotate(p["model"], (p["ivi"], p["dice"]), fontsize=5, alpha=0.7)
    ax.set_xlabel("instance-variability index (mean per-channel std)")
    ax.set_ylabel("Dice (%)")
    ax.legend(fontsize="small")
    return _save(fig, stem)
