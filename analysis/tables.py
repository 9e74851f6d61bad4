"""Table I from fold results: Dice mean +- std over folds, tests against a baseline, and its renderings.

Dice is reported in %. The std is the sample std over folds (ddof = 1). Tests pair a model with its baseline on
the folds both finished (t-tests) and on the (fold, case) pairs both evaluated with a non-empty case (Wilcoxon).
By default every test is one-sided (H1: the model beats its baseline), so the marks flag improvements only, as the
paper's Table I does; ``alternative="two-sided"`` flags any difference.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from nnunet_se.analysis.paper_values import paper_value
from nnunet_se.analysis.stats import holm, nadeau_bengio, paired_ttest, significance_mark, wilcoxon
from nnunet_se.results import FoldResult, FoldState


@dataclass
class Entry:
    """One dataset x model cell of Table I with its statistics (Dice in %)."""

    dataset: str
    model: str
    trainer: str
    baseline: str | None
    folds: list[int]
    mean: float
    std: float
    p_ttest: float = math.nan
    p_nadeau_bengio: float = math.nan
    p_wilcoxon: float = math.nan
    p_wilcoxon_holm: float = math.nan
    n_paired_folds: int = 0
    n_paired_cases: int = 0
    n_cases: int = 0
    n_empty_reference: int = 0
    n_empty_excluded: int = 0
    unfinished_folds: list[int] = field(default_factory=list)
    missing_folds: list[int] = field(default_factory=list)
    best: bool = False
    paper: tuple[float, float, str] | None = None
    alternative: str = "greater"

    @property
    def mark(self) -> str:
        return significance_mark(self.p_ttest)

    def as_dict(self) -> dict:
        return {**asdict(self), "mark": self.mark}


BASELINES = ("nnUNetTrainer", "nnUNetTrainerPaper")


def row_order(model: str) -> tuple[bool, str]:
    """Sort key: the baseline trainers first, then by folder name."""
    return model.split("__")[0] not in BASELINES, model


def default_baseline(model: str) -> str:
    """``nnUNetTrainerPaper`` for the paper family, else ``nnUNetTrainer``, with the model's plans and config."""
    trainer, plans, config = model.split("__")
    base = "nnUNetTrainerPaper" if trainer.startswith("nnUNetTrainerPaper") else "nnUNetTrainer"
    return f"{base}__{plans}__{config}"


def build_table(
    results: Sequence[FoldResult],
    baseline: str | None = None,
    expected_folds: Sequence[int] | None = None,
    test_train_ratio: float = 0.25,
    compare_paper: bool = False,
    alternative: str = "greater",
) -> list[Entry]:
    """Entries per dataset and model. ``baseline`` is a trainer name (same plans/config) or a full model folder name.

    Folds expected per dataset: ``expected_folds`` or the union of the folds found for that dataset.
    """
    by_model: dict[tuple[str, str], dict[int, FoldResult]] = defaultdict(dict)
    for r in results:
        by_model[(r.dataset, r.model)][r.fold] = r
    entries: list[Entry] = []
    for dataset in sorted({d for d, _ in by_model}):
        models = sorted((m for d, m in by_model if d == dataset), key=row_order)
        expected = sorted(expected_folds) if expected_folds is not None else sorted(
            {f for m in models for f in by_model[(dataset, m)]})
        for model in models:
            folds = by_model[(dataset, model)]
            done = {f: r for f, r in folds.items() if r.finished}
            values = [done[f].dice * 100.0 for f in sorted(done)]
            entry = Entry(
                dataset, model, model.split("__")[0], None, sorted(done),
                float(np.mean(values)) if values else math.nan,
                float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
                n_cases=sum(len(r.per_case) for r in done.values()),
                n_empty_reference=sum(r.n_empty_reference for r in done.values()),
                n_empty_excluded=sum(r.n_empty for r in done.values()),
                unfinished_folds=sorted(f for f, r in folds.items() if r.state is FoldState.RUNNING),
                missing_folds=sorted(set(expected) - {f for f, r in folds.items() if r.state is not FoldState.MISSING}),
                paper=paper_value(dataset, model.split("__")[0]) if compare_paper else None,
                alternative=alternative,
            )
            base_name = _resolve_baseline(model, baseline, models)
            if base_name is not None and base_name != model:
                _compare(entry, done, {f: r for f, r in by_model[(dataset, base_name)].items() if r.finished},
                         test_train_ratio)
                entry.baseline = base_name
            entries.append(entry)
        _holm_and_best([e for e in entries if e.dataset == dataset])
    return entries


def _resolve_baseline(model: str, baseline: str | None, models: Sequence[str]) -> str | None:
    if baseline is None:
        name = default_baseline(model)
    elif "__" in baseline:
        name = baseline
    else:
        name = "__".join([baseline, *model.split("__")[1:]])
    return name if name in models else None


def _compare(entry: Entry, model: dict[int, FoldResult], base: dict[int, FoldResult], ratio: float) -> None:
    common = sorted(set(model) & set(base))
    a = [model[f].dice for f in common]
    b = [base[f].dice for f in common]
    entry.n_paired_folds = len(common)
    entry.p_ttest = paired_ttest(a, b, entry.alternative)
    entry.p_nadeau_bengio = nadeau_bengio(a, b, ratio, entry.alternative)
    pairs = [(model[f].per_case[c], base[f].per_case[c]) for f in common for c in sorted(model[f].per_case)
             if c in base[f].per_case]
    pairs = [(x, y) for x, y in pairs if not (math.isnan(x) or math.isnan(y))]
    entry.n_paired_cases = len(pairs)
    if pairs:
        x, y = zip(*pairs, strict=True)
        entry.p_wilcoxon = wilcoxon(x, y, entry.alternative)


def _holm_and_best(entries: list[Entry]) -> None:
    for entry, p in zip(entries, holm([e.p_wilcoxon for e in entries]), strict=True):
        entry.p_wilcoxon_holm = p
    means = [e.mean for e in entries if not math.isnan(e.mean)]
    for e in entries:
        e.best = bool(means) and e.mean == max(means)


# ---- renderings -------------------------------------------------------------------------------------------------

def _labels(entries: Sequence[Entry]) -> dict[str, str]:
    """Row label per model folder: the trainer name, or the full folder name when a trainer has several."""
    models = sorted({e.model for e in entries})
    trainers = [m.split("__")[0] for m in models]
    return {m: (t if trainers.count(t) == 1 else m) for m, t in zip(models, trainers, strict=True)}


def _cell(e: Entry | None, latex: bool) -> str:
    if e is None or math.isnan(e.mean):
        return "–"
    std = "–" if math.isnan(e.std) else f"{e.std:.2f}"
    if latex:
        text = f"{e.mean:.2f} $\\pm$ {std}"
        text = f"\\textbf{{{text}}}" if e.best else text
        mark = {"†": "$^\\dagger$", "‡": "$^\\ddagger$"}.get(e.mark, "")
        return text + mark
    text = f"{e.mean:.2f} ± {std}"
    return (f"**{text}**" if e.best else text) + (f" {e.mark}" if e.mark else "")


def _paper_cell(e: Entry | None, latex: bool) -> str:
    if e is None or e.paper is None:
        return "–"
    mean, std, mark = e.paper
    if latex:
        return f"{mean:.2f} $\\pm$ {std:.2f}" + {"†": "$^\\dagger$", "‡": "$^\\ddagger$"}.get(mark, "")
    return f"{mean:.2f} ± {std:.2f}" + (f" {mark}" if mark else "")


def _grid(entries: Sequence[Entry], latex: bool) -> tuple[list[str], list[list[str]]]:
    datasets = sorted({e.dataset for e in entries})
    compare = any(e.paper is not None for e in entries)
    header = ["model"]
    for d in datasets:
        header += [d, f"{d} (paper)"] if compare else [d]
    cells = {(e.dataset, e.model): e for e in entries}
    labels = _labels(entries)
    rows = []
    for model in sorted(labels, key=row_order):
        row = [labels[model]]
        for d in datasets:
            row.append(_cell(cells.get((d, model)), latex))
            if compare:
                row.append(_paper_cell(cells.get((d, model)), latex))
        rows.append(row)
    return header, rows


def _p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.3g}"


def _sides(entries: Sequence[Entry]) -> str:
    two = any(e.alternative == "two-sided" for e in entries)
    return "two-sided: any difference" if two else "one-sided: improvements only"


def render_markdown(entries: Sequence[Entry], ratio: float) -> str:
    header, rows = _grid(entries, latex=False)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "Dice (%) mean ± std (ddof 1) over finished folds; bold = best mean per dataset; "
              f"† p ≤ 0.05, ‡ p ≤ 0.01 (paired t-test over folds vs the baseline, {_sides(entries)}).", "",
              "| dataset | model | baseline | folds | t-test p | Nadeau-Bengio p | Wilcoxon p (cases) | Holm p | "
              "cases | empty ref | excluded (NaN) | unfinished | missing |",
              "|" + "---|" * 13]
    labels = _labels(entries)
    for e in entries:
        lines.append(
            f"| {e.dataset} | {labels[e.model]} | {labels.get(e.baseline, e.baseline) or '–'} | "
            f"{len(e.folds)} | {_p(e.p_ttest)} | {_p(e.p_nadeau_bengio)} | {_p(e.p_wilcoxon)} "
            f"({e.n_paired_cases}) | {_p(e.p_wilcoxon_holm)} | {e.n_cases} | {e.n_empty_reference} | "
            f"{e.n_empty_excluded} | {_folds(e.unfinished_folds)} | {_folds(e.missing_folds)} |")
    lines += ["", f"All p-values {_sides(entries)}. Nadeau-Bengio corrected resampled t-test with n_test/n_train = "
              f"{ratio:g}. Wilcoxon signed-rank "
              "over per-case Dice pooled across the paired folds, Holm-corrected over the models of each dataset. "
              "Cases with an empty reference and an empty prediction have NaN Dice in nnU-Net and are excluded "
              "(column 'excluded'); an empty reference with a non-empty prediction counts as Dice 0."]
    incomplete = [e for e in entries if e.unfinished_folds or e.missing_folds]
    if incomplete:
        lines += ["", "Incomplete (never averaged in): " + "; ".join(
            f"{e.dataset} {labels[e.model]}: unfinished {_folds(e.unfinished_folds)}, missing "
            f"{_folds(e.missing_folds)}" for e in incomplete)]
    return "\n".join(lines) + "\n"


def _folds(folds: Sequence[int]) -> str:
    return ",".join(map(str, folds)) if folds else "–"


def render_latex(entries: Sequence[Entry], ratio: float) -> str:
    header, rows = _grid(entries, latex=True)
    esc = [h.replace("_", "\\_") for h in header]
    lines = ["\\begin{tabular}{l" + "c" * (len(header) - 1) + "}", "\\toprule", " & ".join(esc) + " \\\\",
             "\\midrule"]
    lines += [" & ".join([r[0].replace("_", "\\_"), *r[1:]]) + " \\\\" for r in rows]
    lines += ["\\bottomrule", "\\end{tabular}",
              f"% Dice (%) mean $\\pm$ std over folds; $^\\dagger$ p<=0.05, $^\\ddagger$ p<=0.01 (paired t-test vs "
              f"baseline, {_sides(entries)}); Nadeau-Bengio ratio {ratio:g}"]
    return "\n".join(lines) + "\n"


def entry_rows(entries: Sequence[Entry]) -> list[dict]:
    """Flat rows for CSV (lists joined by spaces, the paper tuple split)."""
    rows = []
    for e in entries:
        d = e.as_dict()
        paper = d.pop("paper")
        d.update({k: " ".join(map(str, d[k])) for k in ("folds", "unfinished_folds", "missing_folds")})
        d.update(paper_mean=paper[0] if paper else "", paper_std=paper[1] if paper else "",
                 paper_mark=paper[2] if paper else "")
        rows.append(d)
    return rows
