"""Table I from fold results: Dice mean +- std over folds, tests against a baseline, and its renderings.

Dice is reported in %. The std is the sample std over folds (ddof = 1). Tests pair a model with its baseline on
the folds both finished (t-tests) and on the (fold, case) pairs both evaluated with a non-empty case (Wilcoxon).
The marks come from the Nadeau-Bengio corrected t-test: under K-fold cross-validation it is the one of the table's
tests whose false-positive rate stays below alpha (``benchmarks/table_test_calibration.py``); the paper's plain
paired t-test and the pooled Wilcoxon are reported beside it, unmarked. By default every test is one-sided (H1: the
model beats its baseline), so the marks flag improvements only, as the paper's Table I does;
``alternative="two-sided"`` flags any difference. Baselines and the row order come from the
trainer registry (its first use imports the trainers, about 4 s). Tables are built as pandas frames and written as
markdown, LaTeX or CSV from them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import pandas as pd

from nnunet_se.analysis.paper_values import paper_value
from nnunet_se.analysis.stats import fold_mean_std, holm, nadeau_bengio, paired_ttest, significance_mark, wilcoxon
from nnunet_se.errors import UserError
from nnunet_se.layout import MODEL_RE, model_folder_name, parse_model_folder_name
from nnunet_se.results import FoldResult, FoldState
from nnunet_se.trainer_registry import baseline_of, trainer_infos


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
    n_unpaired_cases: int = 0  # case ids of the paired folds found on one side only (left out of the Wilcoxon test)
    n_cases: int = 0
    n_empty_reference: int = 0
    n_empty_excluded: int = 0
    nan_folds: list[int] = field(default_factory=list)  # finished, but nnU-Net's fold Dice is NaN: left out
    unfinished_folds: list[int] = field(default_factory=list)
    missing_folds: list[int] = field(default_factory=list)
    best: bool = False
    paper: tuple[float, float, str] | None = None
    alternative: str = "greater"
    test_train_ratio: float = math.nan  # Nadeau-Bengio n_test/n_train used for this dataset

    @property
    def mark(self) -> str:
        """† / ‡ from the Nadeau-Bengio p (the calibrated test, see the module docstring)."""
        return significance_mark(self.p_nadeau_bengio)

    def as_dict(self) -> dict:
        return {**asdict(self), "mark": self.mark}


def default_baseline(model: str) -> str | None:
    """The model folder of ``model``'s registry baseline with the same plans and configuration; None for a baseline
    and for trainers the registry does not know."""
    trainer, plans, config = parse_model_folder_name(model)
    base = baseline_of(trainer)
    return None if base is None else model_folder_name(base, plans, config)


def row_order(models: Sequence[str], baselines: Sequence[str]) -> list[str]:
    """``models`` with the baselines first, then in trainer registry order (unknown trainers last), then by name."""
    position = {name: i for i, name in enumerate(trainer_infos())}
    return sorted(models, key=lambda m: (m not in baselines,
                                         position.get(parse_model_folder_name(m)[0], len(position)), m))


def build_table(
    results: Sequence[FoldResult],
    baseline: str | None = None,
    expected_folds: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    test_train_ratio: float | Mapping[str, float] = 0.25,
    compare_paper: bool = False,
    alternative: str = "greater",
) -> list[Entry]:
    """Entries per dataset and model. ``baseline`` is a trainer name (same plans/config) or a full model folder name;
    by default each model's registry baseline (:func:`default_baseline`).

    Folds expected per dataset: ``expected_folds`` (the same for every dataset, or per dataset name) or the union of
    the folds found for that dataset. ``test_train_ratio``: the Nadeau-Bengio n_test/n_train, one value or one per
    dataset name.
    """
    by_model: dict[tuple[str, str], dict[int, FoldResult]] = defaultdict(dict)
    for r in results:
        if (twin := by_model[(r.dataset, r.model)].get(r.fold)) is not None:
            raise UserError(f"{r.path}: {r.dataset} {r.model} fold {r.fold} is also in {twin.path}; give one of them")
        by_model[(r.dataset, r.model)][r.fold] = r
    entries: list[Entry] = []
    for dataset in sorted({d for d, _ in by_model}):
        found = [m for d, m in by_model if d == dataset]
        bases = {m: _resolve_baseline(m, baseline, found) for m in found}
        models = row_order(found, [b for b in bases.values() if b is not None])
        wanted = expected_folds.get(dataset) if isinstance(expected_folds, Mapping) else expected_folds
        ratio = test_train_ratio[dataset] if isinstance(test_train_ratio, Mapping) else test_train_ratio
        entries += dataset_entries(dataset, {m: by_model[(dataset, m)] for m in models}, bases, wanted, ratio,
                                   compare_paper, alternative)
    return entries


def dataset_entries(
    dataset: str,
    folds_by_model: Mapping[str, Mapping[int, FoldResult]],
    baselines: Mapping[str, str | None],
    expected_folds: Sequence[int] | None,
    test_train_ratio: float,
    compare_paper: bool = False,
    alternative: str = "greater",
) -> list[Entry]:
    """The entries of one dataset, one per model in the order of ``folds_by_model`` (model folder -> fold ->
    result): mean +- std over its finished folds with a finite Dice, the tests against ``baselines[model]`` (a
    model folder of ``folds_by_model``, or None), Holm over the models, and the best mean. No trainer registry."""
    expected = sorted(expected_folds if expected_folds is not None else {f for m in folds_by_model.values() for f in m})
    usable = {m: {f: r for f, r in folds.items() if r.finished and not math.isnan(r.dice)}
              for m, folds in folds_by_model.items()}
    entries = []
    for model, folds in folds_by_model.items():
        done = usable[model]
        mean, std, _ = fold_mean_std([done[f].dice * 100.0 for f in sorted(done)])
        entry = Entry(
            dataset, model, parse_model_folder_name(model)[0], None, sorted(done), mean, std,
            nan_folds=sorted(f for f, r in folds.items() if r.finished and math.isnan(r.dice)),
            n_cases=sum(len(r.per_case) for r in done.values()),
            n_empty_reference=sum(r.n_empty_reference for r in done.values()),
            n_empty_excluded=sum(r.n_empty for r in done.values()),
            unfinished_folds=sorted(f for f, r in folds.items() if r.state is FoldState.RUNNING),
            missing_folds=sorted(set(expected) - {f for f, r in folds.items() if r.state is not FoldState.MISSING}),
            paper=paper_value(dataset, parse_model_folder_name(model)[0]) if compare_paper else None,
            alternative=alternative,
            test_train_ratio=test_train_ratio,
        )
        base_name = baselines.get(model)
        if base_name is not None and base_name != model:
            _compare(entry, done, usable[base_name], test_train_ratio)
            entry.baseline = base_name
        entries.append(entry)
    _holm_and_best(entries)
    return entries


def is_model_folder_name(name: str) -> bool:
    """Whether ``name`` (a ``--baseline``) is a whole ``<trainer>__<plans>__<configuration>``, not a trainer."""
    return MODEL_RE.fullmatch(name) is not None


def baseline_trainer(baseline: str) -> str:
    """The trainer of a ``--baseline``: the name itself, or the trainer part of a model folder name."""
    return parse_model_folder_name(baseline)[0] if is_model_folder_name(baseline) else baseline


def _resolve_baseline(model: str, baseline: str | None, models: Sequence[str]) -> str | None:
    """The model folder ``model`` is tested against, if it is among ``models``."""
    if baseline is None:
        name = default_baseline(model)
    elif is_model_folder_name(baseline):
        name = baseline
    else:
        name = model_folder_name(baseline, *parse_model_folder_name(model)[1:])
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
    entry.n_unpaired_cases = sum(len(set(model[f].per_case) ^ set(base[f].per_case)) for f in common)
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
    trainers = [parse_model_folder_name(m)[0] for m in models]
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


def grid_frame(entries: Sequence[Entry], latex: bool) -> pd.DataFrame:
    """Table I: one row per model (``model`` column: its label), one column per dataset (and ``<dataset> (paper)``
    beside it when the paper's values are compared); "–" where a model has no result."""
    datasets = sorted({e.dataset for e in entries})
    compare = any(e.paper is not None for e in entries)
    labels = _labels(entries)
    rows: dict[str, dict[str, str]] = {labels[m]: {} for m in row_order(list(labels), [e.baseline for e in entries
                                                                                       if e.baseline])}
    for e in entries:
        rows[labels[e.model]] |= {e.dataset: _cell(e, latex), f"{e.dataset} (paper)": _paper_cell(e, latex)}
    columns = [c for d in datasets for c in ([d, f"{d} (paper)"] if compare else [d])]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns).fillna("–")
    return frame.rename_axis("model").reset_index()


def details_frame(entries: Sequence[Entry]) -> pd.DataFrame:
    """The tests and counts behind each cell, one row per dataset x model, formatted for the markdown notes."""
    labels = _labels(entries)
    return pd.DataFrame([{
        "dataset": e.dataset, "model": labels[e.model], "baseline": labels.get(e.baseline, e.baseline) or "–",
        "folds (paired)": f"{len(e.folds)} ({e.n_paired_folds})" if e.baseline else str(len(e.folds)),
        "t-test p": _p(e.p_ttest), "Nadeau-Bengio p": _p(e.p_nadeau_bengio),
        "Wilcoxon p (cases)": f"{_p(e.p_wilcoxon)} ({e.n_paired_cases}"
                              + (f", {e.n_unpaired_cases} unpaired)" if e.n_unpaired_cases else ")"),
        "Holm p": _p(e.p_wilcoxon_holm),
        "cases": e.n_cases, "empty ref": e.n_empty_reference, "excluded (NaN)": e.n_empty_excluded,
        "NaN Dice": _folds(e.nan_folds), "unfinished": _folds(e.unfinished_folds),
        "missing": _folds(e.missing_folds)} for e in entries])


def markdown_table(frame: pd.DataFrame) -> list[str]:
    """A pipe table, one line per row (pandas' own ``to_markdown`` needs the undeclared ``tabulate``)."""
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
    return lines + ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]


def _p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.3g}"


def _sides(entries: Sequence[Entry]) -> str:
    two = any(e.alternative == "two-sided" for e in entries)
    return "two-sided: any difference" if two else "one-sided: improvements only"


def _ratios(entries: Sequence[Entry]) -> str:
    """``0.25`` when every dataset used the same ratio, else ``Dataset601_A 0.111111, Dataset602_B 0.25``."""
    ratios = dict(sorted({e.dataset: e.test_train_ratio for e in entries}.items()))
    if len(set(ratios.values())) == 1:
        return f"{next(iter(ratios.values())):g}"
    return ", ".join(f"{d} {r:g}" for d, r in ratios.items())


def render_markdown(entries: Sequence[Entry]) -> str:
    lines = [*markdown_table(grid_frame(entries, latex=False)),
             "", "Dice (%) mean ± std (ddof 1) over finished folds; bold = best mean per dataset; "
             f"† p ≤ 0.05, ‡ p ≤ 0.01 (Nadeau-Bengio corrected t-test over folds vs the baseline, {_sides(entries)}).",
             "",
             *markdown_table(details_frame(entries)),
             "", f"All p-values {_sides(entries)}. Nadeau-Bengio corrected resampled t-test with n_test/n_train = "
             f"{_ratios(entries)} (the marks). Unmarked, as their false-positive rate exceeds alpha when folds share "
             "training cases: the paper's paired t-test over folds, and the Wilcoxon signed-rank test "
             "over per-case Dice pooled across the paired folds, Holm-corrected over the models of each dataset. "
             "Cases with an empty reference and an empty prediction have NaN Dice in nnU-Net and are excluded "
             "(column 'excluded'); an empty reference with a non-empty prediction counts as Dice 0."]
    labels = _labels(entries)
    incomplete = [e for e in entries if e.unfinished_folds or e.missing_folds or e.nan_folds]
    if incomplete:
        lines += ["", "Incomplete (never averaged in): " + "; ".join(
            f"{e.dataset} {labels[e.model]}: unfinished {_folds(e.unfinished_folds)}, missing "
            f"{_folds(e.missing_folds)}, NaN Dice {_folds(e.nan_folds)}" for e in incomplete)]
    return "\n".join(lines) + "\n"


def _folds(folds: Sequence[int]) -> str:
    return ",".join(map(str, folds)) if folds else "–"


def render_latex(entries: Sequence[Entry]) -> str:
    frame = grid_frame(entries, latex=True)
    frame.columns = [str(c).replace("_", "\\_") for c in frame.columns]
    frame.iloc[:, 0] = frame.iloc[:, 0].str.replace("_", "\\_")
    table = frame.to_latex(index=False, escape=False, column_format="l" + "c" * (frame.shape[1] - 1))
    return table + (f"% Dice (%) mean $\\pm$ std over folds; $^\\dagger$ p<=0.05, $^\\ddagger$ p<=0.01 (Nadeau-Bengio "
                    f"corrected t-test vs baseline, {_sides(entries)}); Nadeau-Bengio ratio {_ratios(entries)}\n")


def entries_csv(entries: Sequence[Entry]) -> str:
    """One CSV row per dataset x model: every field of :class:`Entry` (fold lists joined by spaces, the paper's
    value split into ``paper_mean``, ``paper_std``, ``paper_mark``) and the mark."""
    frame = pd.DataFrame([e.as_dict() for e in entries])
    for column in ("folds", "nan_folds", "unfinished_folds", "missing_folds"):
        frame[column] = frame[column].map(lambda folds: " ".join(map(str, folds)))
    frame["baseline"] = frame["baseline"].fillna("")
    paper = frame.pop("paper").map(lambda v: v or ("", "", ""))
    frame[["paper_mean", "paper_std", "paper_mark"]] = pd.DataFrame(paper.tolist(), index=frame.index)
    return frame.to_csv(index=False, na_rep="nan", lineterminator="\n")
