"""The demo's ``<out>/report.md``: what ran, Table I read in plain words, what was reduced, and the figures of
:mod:`nnunet_se.workflow.demo_figures`."""

from __future__ import annotations

import datetime
import json
import math
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunet_se.workflow.demo_figures import DICE_BAR, curves_figure, dice_figure, example_figure
from nnunet_se.workflow.demo_profiles import Profile
from nnunet_se.workflow.demo_runs import Pipeline
from nnunet_se.workflow.demo_scoring import ModelScores

PAPER_SIZE = "224x224 RGB images, 400 epochs of batch 16, 10 folds, about 1,000-2,600 cases per dataset"


@dataclass(frozen=True)
class ReportInputs:
    """What the report describes: the profile (and its name), the command line, the data, scores, module sizes."""

    profile_name: str
    profile: Profile
    argv: Sequence[str]
    source: Path | None
    dataset: str | None
    seed: int
    raw_folder: Path
    scores: Sequence[ModelScores]
    modules: Sequence[tuple[str, int]]
    seconds: float


def module_parameters(pipeline: Pipeline) -> list[tuple[str, int]]:
    """(module, trainable parameters added to the paper U-Net): one module at each gated depth (32/64/128 ch)."""
    with pipeline.stage("recalibration modules: parameters added to the paper U-Net") as record:
        from nnunet_se.modules import available_recalibrations, parameter_count

        widths = (32, 64, 128)
        rows = [(name, sum(parameter_count(name, c) for c in widths)) for name in available_recalibrations()]
        record.note = ", ".join(f"{name} {count}" for name, count in rows)
        return rows


def significance_lines(table_json: Path, folds: int) -> list[str]:
    """Plain-language reading of Table I's tests: each model against its baseline, and what the fold count allows.

    The verdict follows the fold-level Nadeau-Bengio test (trainings are the units); the case-level Wilcoxon is
    reported beside it with what it does not cover (training-to-training variation).
    """
    entries = json.loads(table_json.read_text())["entries"]
    means = {e["model"]: e["mean"] for e in entries}
    lines = []
    for e in (e for e in entries if e.get("baseline")):
        p_nb, p_w = (math.nan if e.get(k) is None else e[k] for k in ("p_nadeau_bengio", "p_wilcoxon_holm"))
        verdict = "significant" if p_nb < 0.05 else "not significant"  # NaN (JSON null): untested
        lines.append(f"- {e['trainer']}: {e['mean']:.1f} ± {e['std']:.1f} % against {e['baseline'].split('__')[0]}'s "
                     f"{means.get(e['baseline'], math.nan):.1f} %: {verdict} over the folds (corrected resampled "
                     f"t-test p = {_p(p_nb)}); over the cases, Wilcoxon (Holm) p = {_p(p_w)}"
                     + (" (these trained models differ on these cases, but one training per fold says little about "
                        "another training)" if p_w < 0.05 <= p_nb else "") + ". One-sided: improvements only.")
    lines += [
        "",
        f"Why this scale cannot settle the paper's question: {folds} folds give the Nadeau-Bengio corrected t-test "
        f"{folds - 1} degrees of freedom, and its variance correction (n_test/n_train = 1/{folds - 1}) widens the "
        "interval further, so only a gap several times the fold-to-fold spread would count. The synthetic lesions "
        "are separable by colour alone, so every model approaches the same ceiling and the remaining differences are "
        "mostly training noise (seed, fold, dev-set choice, a few steps), not recalibration. The demo shows that the "
        "models learn and that the statistics run; `docs/reproduce_paper.md` is the study that can answer the "
        "question.",
    ]
    return lines


def _p(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3g}"


def _link(out: Path, path: Path) -> str:
    return path.relative_to(out).as_posix()


def _figures(out: Path, folder: Path) -> list[str]:
    """Markdown image links for the PNG figures in ``folder`` and plain links for its CSV tables."""
    pngs, tables = sorted(folder.glob("*.png")), sorted(folder.glob("*.csv"))
    return [*(f"![{p.stem}]({_link(out, p)})" for p in pngs), "",
            *(f"- [{p.name}]({_link(out, p)})" for p in tables), ""]


def reductions(inputs: ReportInputs) -> list[str]:
    """What this run reduced compared with the paper, and why."""
    from nnunet_se.workflow.demo_trainers import LEARNING_RATE, SUFFIX

    p = inputs.profile
    schedule = (f"{p.epochs} epochs x {p.iterations} iterations of batch 16" if p.iterations else
                f"{p.epochs} epochs (one pass over the fit cases each)")
    return [
        "What this run reduced compared with the paper (" + PAPER_SIZE + "), and why:",
        "",
        f"- **Data**: {p.n_train} training + {p.n_test} test synthetic cases of {p.size}x{p.size} px (seeded; "
        "lesions separable by colour) instead of ISIC 2018, Kvasir-SEG and BUSI: no downloads, and small images "
        "make one training iteration cheap enough for a CPU.",
        f"- **Folds**: {p.folds} instead of 10, all trained, so Table I has statistics over folds.",
        f"- **Training**: {schedule} instead of 400 epochs (the demo's bar: test Dice {DICE_BAR} for every fold's "
        "model; the Dice section says whether this run reached it).",
        f"- **Models**: {', '.join(t.replace('nnUNetTrainer', '') for t in p.trainers)}"
        + (f"; `_demo` = the paper trainer at a constant learning rate of {LEARNING_RATE:g} instead of 1e-4, so that "
           "the few steps suffice" if any(t.endswith(SUFFIX) for t in p.trainers) else "")
        + ". Unchanged: the authors' U-Net at full width 32/64/128/256, modules, loss, Adam, dev-set rule, "
        "best-dev-loss checkpoint; the patch is the image (the trainers fit it to small images).",
        "",
    ]


def write_report(pipeline: Pipeline, inputs: ReportInputs) -> Path:
    """``<out>/report.md``: reductions, data, Dice per fold, learning curves, Table I with its reading, the excitation
    figures, module sizes, stage times and every command run."""
    out, p = pipeline.out, inputs.profile
    figures = out / "figures"
    examples = example_figure(inputs.raw_folder, figures / "examples.png")
    schedule = f"{p.iterations} iterations of 16 images" if p.iterations else "one pass over the fit cases"
    curves = curves_figure(pipeline.results, inputs.raw_folder.name, p.trainers, p.folds, schedule,
                           figures / "learning_curves.png")
    dice = dice_figure(inputs.scores, figures / "dice_per_fold.png")
    data = (f"`nnunet-se-convert {inputs.dataset} {inputs.source}`" if inputs.source else
            f"synthetic lesions (`nnunet_se.synthetic`, seed {inputs.seed}): {p.n_train} training and {p.n_test} "
            f"test cases, {p.size}x{p.size} RGB, lesion radius {p.radius[0]:.2f}-{p.radius[1]:.2f} of the side")
    lowest = min((v for s in inputs.scores for v in s.test.values()), default=math.nan)
    analysis = out / "analysis"
    lines = [
        "# nnunet-se demo report",
        "",
        f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by "
        f"`nnunet-se demo {shlex.join(inputs.argv)}` (profile `{inputs.profile_name}`) in "
        f"{inputs.seconds / 60:.1f} min on {os.cpu_count()} CPU cores (device `{pipeline.device}`); nnU-Net folders: "
        f"`{_link(out, pipeline.raw)}/`, `{_link(out, pipeline.preprocessed)}/`, `{_link(out, pipeline.results)}/`.",
        "",
        *reductions(inputs),
        "## Data",
        "",
        f"Dataset `{inputs.raw_folder.name}` from {data}; {p.folds} seeded class-stratified folds "
        "(`splits_final.json`), every fold trained.",
        "",
        f"![training examples with lesion outlines]({_link(out, examples)})",
        "",
        "## Dice per trainer (mean ± sd over folds, min-max)",
        "",
        "| trainer | validation Dice (held-out fold) | test Dice (each fold's model) |",
        "|---|---|---|",
        *(f"| {s.trainer} | {ModelScores.summary(s.validation)} | {ModelScores.summary(s.test)} |"
          for s in inputs.scores),
        "",
        ("No test set (`imagesTs` + `labelsTs`) to score. " if math.isnan(lowest) else
         f"Lowest test Dice of any fold's model: {lowest:.3f}: the demo's bar of {DICE_BAR} was "
         f"{'reached' if lowest >= DICE_BAR else '**not** reached'}. ") + "Validation: nnU-Net's final "
        "validation of the fold's held-out cases (`validation/summary.json`); test: `nnUNetv2_predict -f <fold>` on "
        "`imagesTs`, scored with nnU-Net's `compute_metrics` (mean over cases).",
        "",
        f"![Dice per fold]({_link(out, dice)})",
        "",
        "## Learning curves",
        "",
        f"![learning curves]({_link(out, curves)})",
        "",
        "## Table I (`nnunet-se-analyze table`)",
        "",
        (analysis / "table.md").read_text().rstrip(),
        "",
        *significance_lines(analysis / "table.json", p.folds),
        "",
        "## Linear excitation thresholds, Fig. 3 style (`nnunet-se-analyze pca`)",
        "",
        "Read these figures as the mechanism, not the paper's finding: every fold starts from the same seeded "
        f"network (`--seed {inputs.seed}`), and after this few steps the gates are still close to where that "
        "initialisation put them, which is why the folds' excitation patterns look alike.",
        "",
        *_figures(out, analysis / "pca"),
        "## Excitation responses, Fig. 2 style (`nnunet-se-analyze responses`)",
        "",
        *_figures(out, analysis / "responses"),
        "## Recalibration modules",
        "",
        "Trainable parameters one module adds at each gated depth of the paper U-Net (32, 64, 128 channels; "
        "the plain U-Net has about 1.9 M).",
        "",
        "| module | added parameters |",
        "|---|---|",
        *(f"| {name} | {count:,} |" for name, count in inputs.modules),
        "",
        "## Stages",
        "",
        f"Load average at the end: {' / '.join(f'{v:.1f}' for v in os.getloadavg())} (1 / 5 / 15 min) on "
        f"{os.cpu_count()} cores; CPU time counts this process and the commands it ran (user + system).",
        "",
        "| stage | wall s | CPU s |",
        "|---|---|---|",
        *(f"| {r.name} | {r.seconds:.1f} | {r.cpu_seconds:.1f} |" for r in pipeline.records),
        "",
        "Commands (logs in `logs/`, one per (trainer, fold) unit; the units run in parallel worker processes, and "
        "the commands of a worker or of the analysis stage run in one process, each through its own console-script "
        "entry point):",
        "",
        "```",
        *(command for r in pipeline.records for command in r.commands),
        "```",
        "",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report
