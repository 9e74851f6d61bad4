"""``nnunet-se demo``: end-to-end demo: data, nnU-Net planning, training, prediction, analysis and a report.

Everything runs with nnU-Net's and the plugin's own commands (subprocesses, logged per stage under
``<out>/logs/``) in private nnU-Net folders inside ``<out>``, so the user's own nnU-Net folders are never touched.
Data: a seeded synthetic lesion dataset (:mod:`nnunet_se.synthetic`), or real data converted with
``nnunet-se-convert`` (``--source DIR --dataset kvasir|busi|isic2018``). The trainings are smoke-sized (a few
iterations; set by ``--epochs``/``--iterations``): the report shows the workflow and its outputs, not results.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_se.env import ext_trainer_value
from nnunet_se.errors import UserError

DATASET_ID = 999
DATASET_NAME = "NnunetSeDemo"
MARKER = ".nnunet-se-demo"
CONFIGURATION = "2d"
PLANS = "nnUNetPlans"
FOLD = 0
SOURCES = ("kvasir", "busi", "isic2018")


@dataclass(frozen=True)
class Profile:
    """Demo size: synthetic cases and image side (px), folds, trainers, epochs x iterations per epoch."""

    n_train: int
    n_test: int
    size: int
    folds: int
    trainers: tuple[str, ...]
    epochs: int
    iterations: int
    bootstrap: int


PROFILES = {
    "full": Profile(n_train=40, n_test=8, size=224, folds=5, epochs=1, iterations=2, bootstrap=200,
                    trainers=("nnUNetTrainerPaper", "nnUNetTrainerPaperMono")),  # + PaperCSE: 5.6 min, over budget
    "quick": Profile(n_train=20, n_test=4, size=64, folds=5, epochs=1, iterations=2, bootstrap=50,
                     trainers=("nnUNetTrainerPaper", "nnUNetTrainerPaperMono")),
}


@dataclass
class StageRecord:
    """One stage: wall-clock ``seconds`` and ``cpu_seconds`` (user + system, this process and its children)."""

    name: str
    seconds: float
    cpu_seconds: float = 0.0
    commands: list[str] = field(default_factory=list)
    note: str = ""


class Pipeline:
    """Runs the stages in ``out``; each external command's output goes to ``out/logs/<stage>.log``."""

    def __init__(self, out: Path, device: str, seed: int, total_stages: int) -> None:
        self.out = out
        self.device = device
        self.seed = seed
        self.total = total_stages
        self.done = 0
        self.records: list[StageRecord] = []
        self.raw, self.preprocessed, self.results = (out / "nnUNet_raw", out / "nnUNet_preprocessed",
                                                     out / "nnUNet_results")
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "nnUNet_raw": str(self.raw),
            "nnUNet_preprocessed": str(self.preprocessed),
            "nnUNet_results": str(self.results),
            "nnUNet_extTrainer": ext_trainer_value(os.environ.get("nnUNet_extTrainer")),
            "nnUNet_compile": "0",
            "NNUNET_SE_SEED": str(seed),
            "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        }
        if device == "cpu":  # 2-core friendly: no worker pools (nnunet_integration.md §6)
            self.env["nnUNet_def_n_proc"] = "1"

    def stage(self, name: str) -> _Stage:
        return _Stage(self, name)

    def run(self, record: StageRecord, command: Sequence[str], log_name: str, **extra_env: str) -> str:
        """Run one command, append its output to the stage log; raise UserError naming the log on failure."""
        log = self.out / "logs" / f"{log_name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        record.commands.append(shlex.join(command))
        result = subprocess.run(list(command), env={**self.env, **extra_env}, capture_output=True, text=True)
        with log.open("a") as handle:
            handle.write(f"$ {shlex.join(command)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
            raise UserError(f"{log}: '{command[0]}' failed (exit {result.returncode}): {last}")
        return result.stdout


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (s)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class _Stage:
    """Context manager printing one progress line per stage: ``[i/n] name ... done in s``."""

    def __init__(self, pipeline: Pipeline, name: str) -> None:
        self.pipeline = pipeline
        self.record = StageRecord(name, 0.0)

    def __enter__(self) -> StageRecord:
        self.pipeline.done += 1
        self.start, self.cpu_start = time.perf_counter(), cpu_seconds()
        print(f"[{self.pipeline.done}/{self.pipeline.total}] {self.record.name} ...", flush=True)
        return self.record

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.record.seconds = time.perf_counter() - self.start
        self.record.cpu_seconds = cpu_seconds() - self.cpu_start
        if exc_type is None:
            self.pipeline.records.append(self.record)
            note = f" ({self.record.note})" if self.record.note else ""
            print(f"      done in {self.record.seconds:.1f} s{note}", flush=True)


def check_output(out: Path) -> None:
    """``out`` may be new, empty or a previous demo output (marker file); anything else is refused."""
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out}: exists and is not a folder")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise UserError(f"{out}: exists and is not a demo output; choose another --out or remove it")


def prepare_output(out: Path) -> None:
    """Create ``out`` afresh (after :func:`check_output`), with the marker file."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("nnunet-se demo output; safe to delete\n")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="CI size: 64x64 images, 20+4 cases, 2 trainers, 1 epoch (about 1-2 minutes)")
    parser.add_argument("--source", type=Path, help="real data to convert instead of the synthetic set")
    parser.add_argument("--dataset", choices=SOURCES, help="which converter reads --source")
    parser.add_argument("--epochs", type=int, help="training epochs per trainer (default: 1)")
    parser.add_argument("--iterations", type=int, help="train and val iterations per epoch (default: 2)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=20261123, help="data, split and training seed")
    return parser


def check_args(args: argparse.Namespace) -> Profile:
    """The profile with the command-line overrides; bad combinations are one-line errors."""
    if (args.source is None) != (args.dataset is None):
        raise UserError("--source and --dataset go together (e.g. --source ~/Kvasir-SEG --dataset kvasir)")
    if args.source is not None and not args.source.exists():
        raise UserError(f"{args.source}: no such file or folder (--source)")
    check_output(args.out)
    profile = PROFILES["quick" if args.quick else "full"]
    for name in ("epochs", "iterations"):
        value = getattr(args, name)
        if value is not None:
            if value < 1:
                raise UserError(f"--{name} {value}: must be >= 1")
            profile = dataclasses.replace(profile, **{name: value})
    return profile


def make_data(pipeline: Pipeline, profile: Profile, args: argparse.Namespace) -> Path:
    """The raw dataset (synthetic or converted) plus its seeded splits; returns its folder."""
    with pipeline.stage("data: " + (f"convert {args.dataset} from {args.source}" if args.source else
                                    f"synthetic lesions ({profile.n_train}+{profile.n_test} cases, "
                                    f"{profile.size}x{profile.size} RGB)")) as record:
        if args.source is None:
            from nnunet_se.synthetic import SyntheticSpec, write_synthetic_dataset

            spec = SyntheticSpec(profile.n_train, profile.n_test, profile.size, profile.folds, args.seed)
            folder = write_synthetic_dataset(pipeline.raw, DATASET_ID, DATASET_NAME, spec, pipeline.preprocessed)
            record.note = f"seed {args.seed}, {profile.folds} class-stratified folds"
            return folder
        pipeline.run(record, ["nnunet-se-convert", args.dataset, str(args.source.resolve()), "--id", str(DATASET_ID),
                              "--size", str(profile.size), "--folds", str(profile.folds), "--seed", str(args.seed),
                              "--workers", "2", "--raw-dir", str(pipeline.raw),
                              "--preprocessed-dir", str(pipeline.preprocessed)], "data")
        return next(pipeline.raw.glob(f"Dataset{DATASET_ID:03d}_*"))


def plan(pipeline: Pipeline) -> None:
    with pipeline.stage("plan and preprocess (nnUNetv2_plan_and_preprocess)") as record:
        # nnUNet_n_proc_DA must not be 0 while planning (nnunet_integration.md §6): set it to 1 here
        pipeline.run(record, ["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", CONFIGURATION,
                              "-np", "2", "-npfp", "2"], "plan", nnUNet_n_proc_DA="1")


def train(pipeline: Pipeline, profile: Profile, trainer: str) -> None:
    with pipeline.stage(f"train {trainer} fold {FOLD} ({profile.epochs} epoch(s) x {profile.iterations} "
                        f"iterations, nnUNetv2_train)") as record:
        pipeline.run(record, ["nnUNetv2_train", str(DATASET_ID), CONFIGURATION, str(FOLD), "-tr", trainer, "-p", PLANS,
                              "-device", pipeline.device], f"train_{trainer}",
                     NNUNET_SE_NUM_EPOCHS=str(profile.epochs), NNUNET_SE_NUM_ITERATIONS=str(profile.iterations),
                     **({"nnUNet_n_proc_DA": "0"} if pipeline.device == "cpu" else {}))
        dice = fold_summary_dice(pipeline, trainer)
        record.note = f"validation Dice {dice:.3f}" if dice is not None else "no validation summary"


def fold_summary_dice(pipeline: Pipeline, trainer: str) -> float | None:
    from nnunet_se.matrix import Dataset, Job, fold_dice

    name = next(pipeline.raw.glob(f"Dataset{DATASET_ID:03d}_*")).name
    return fold_dice(Job(Dataset(DATASET_ID, name), trainer, FOLD, CONFIGURATION, PLANS).fold_folder(pipeline.results))


def predict(pipeline: Pipeline, raw_folder: Path, trainer: str) -> float | None:
    """Predict ``imagesTs`` and score it against ``labelsTs``; returns the test foreground Dice (None: no test set)."""
    images, labels = raw_folder / "imagesTs", raw_folder / "labelsTs"
    with pipeline.stage(f"predict the test images with {trainer} (nnUNetv2_predict)") as record:
        if not images.is_dir():
            record.note = "no imagesTs: skipped"
            return None
        target = pipeline.out / "predictions" / trainer
        cpu = {"nnUNet_n_proc_DA": "0"} if pipeline.device == "cpu" else {}
        pipeline.run(record, ["nnUNetv2_predict", "-i", str(images), "-o", str(target), "-d", str(DATASET_ID),
                              "-c", CONFIGURATION, "-f", str(FOLD), "-tr", trainer, "-p", PLANS,
                              "-device", pipeline.device, "-npp", "0", "-nps", "0", "--disable_progress_bar"],
                     f"predict_{trainer}", **cpu)
        if not labels.is_dir():
            record.note = "no labelsTs: not scored"
            return None
        dice = score_test_set(labels, target)
        record.note = f"test Dice {dice:.3f}"
        return dice


def score_test_set(labels: Path, predictions: Path) -> float:
    """Foreground Dice averaged over cases with nnU-Net's own per-case metric (empty/empty cases are NaN, skipped).

    In-process: nnUNetv2_evaluate_simple would cost a process start and a worker pool for a handful of images.
    """
    import numpy as np
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

    reader = NaturalImage2DIO()
    scores = [compute_metrics(str(ref), str(predictions / ref.name), reader, [1])["metrics"][1]["Dice"]
              for ref in sorted(labels.glob("*.png"))]
    return float(np.nanmean(scores))


def module_parameters(pipeline: Pipeline) -> list[tuple[str, int]]:
    """(module, trainable parameters added to the paper U-Net): one module at each gated depth (32/64/128 ch)."""
    with pipeline.stage("recalibration modules: parameters added to the paper U-Net") as record:
        from nnunet_se.modules import available_recalibrations, parameter_count

        widths = (32, 64, 128)
        rows = [(name, sum(parameter_count(name, c) for c in widths)) for name in available_recalibrations()]
        record.note = ", ".join(f"{name} {count}" for name, count in rows)
        return rows


def analyse(pipeline: Pipeline, profile: Profile, trainers: Sequence[str]) -> None:
    """Excitations of every gated trainer, then ``pca``, ``table`` (md + json) and ``responses`` into ``analysis/``."""
    analysis = pipeline.out / "analysis"
    files: list[Path] = []
    with pipeline.stage("capture excitations (nnunet-se-analyze excitations)") as record:
        for trainer in trainers:
            if trainer == "nnUNetTrainerPaper":  # no gates
                continue
            target = analysis / "excitations" / trainer
            pipeline.run(record, ["nnunet-se-analyze", "excitations", str(DATASET_ID), "-tr", trainer, "-p", PLANS,
                                  "-c", CONFIGURATION, "-f", str(FOLD), "--cases", "all", "--device",
                                  pipeline.device, "-o", str(target)], "excitations")
            files += sorted(target.glob("*.npz"))
        record.note = f"{len(files)} excitation files (all training cases of the dataset)"
    with pipeline.stage("linear excitation thresholds (nnunet-se-analyze pca)") as record:
        pipeline.run(record, ["nnunet-se-analyze", "pca", *map(str, files), "--n-boot", str(profile.bootstrap),
                              "--seed", str(pipeline.seed), "-o", str(analysis / "pca")], "pca")
    with pipeline.stage("Table I (nnunet-se-analyze table)") as record:
        for fmt, name in (("md", "table.md"), ("json", "table.json")):
            pipeline.run(record, ["nnunet-se-analyze", "table", "-d", str(DATASET_ID), "--n-folds", str(profile.folds),
                                  "--format", fmt, "-o", str(analysis / name)], "table")
    with pipeline.stage("excitation responses (nnunet-se-analyze responses)") as record:
        pipeline.run(record, ["nnunet-se-analyze", "responses", *map(str, files), "--dice",
                              str(analysis / "table.json"), "-o", str(analysis / "responses")], "responses")


def example_figure(raw_folder: Path, target: Path, count: int = 4) -> Path:
    """The first ``count`` training images with their lesion outlines (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    labels = sorted((raw_folder / "labelsTr").glob("*.png"))[:count]
    fig, axes = plt.subplots(1, len(labels), figsize=(2.4 * len(labels), 2.6), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        image = np.asarray(Image.open(raw_folder / "imagesTr" / f"{label.stem}_0000.png").convert("RGB"))
        ax.imshow(image)
        ax.contour(np.asarray(Image.open(label)) > 0, levels=[0.5], colors="cyan", linewidths=1.2)
        ax.set_title(label.stem, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def _link(out: Path, path: Path) -> str:
    return path.relative_to(out).as_posix()


def write_report(pipeline: Pipeline, profile: Profile, args: argparse.Namespace, raw_folder: Path,
                 test_dice: dict[str, float | None], modules: list[tuple[str, int]], seconds: float) -> Path:
    """``<out>/report.md``: data, Dice, Table I, the excitation figures, module sizes and every command run."""
    from nnunet_se.matrix import Dataset
    from nnunet_se.status import collect

    out = pipeline.out
    dataset = Dataset(DATASET_ID, raw_folder.name)
    rows = collect(pipeline.results, pipeline.preprocessed, [dataset], profile.trainers, [FOLD], PLANS, CONFIGURATION)
    examples = example_figure(raw_folder, out / "figures" / "examples.png")
    data = (f"`nnunet-se-convert {args.dataset} {args.source}`" if args.source else
            f"synthetic lesions (`nnunet_se.synthetic`, seed {args.seed}): {profile.n_train} training and "
            f"{profile.n_test} test cases, {profile.size}x{profile.size} RGB")
    lines = [
        "# nnunet-se demo report",
        "",
        f"Generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC by "
        f"`nnunet-se demo {shlex.join(args.argv)}` in {seconds / 60:.1f} min on {os.cpu_count()} CPU cores "
        f"(device `{pipeline.device}`); nnU-Net folders: `{_link(out, pipeline.raw)}/`, "
        f"`{_link(out, pipeline.preprocessed)}/`, `{_link(out, pipeline.results)}/`.",
        "",
        f"> Smoke-sized training: {profile.epochs} epoch(s) x {profile.iterations} iterations per trainer (the paper "
        "trains 400 epochs). The numbers below show that the workflow runs end to end; they are not results. "
        "`docs/reproduce_paper.md` gives the real protocol.",
        "",
        "## Data",
        "",
        f"Dataset `{raw_folder.name}` from {data}; fold {FOLD} of {profile.folds} seeded class-stratified folds "
        "(`splits_final.json`).",
        "",
        f"![training examples with lesion outlines]({_link(out, examples)})",
        "",
        "## Trainings (fold 0)",
        "",
        "| trainer | validation Dice (fold 0) | test Dice |",
        "|---|---|---|",
        *(f"| {r.trainer} | {_fmt(r.dice.get(FOLD))} | {_fmt(test_dice.get(r.trainer))} |" for r in rows),
        "",
        "Validation Dice: nnU-Net's final validation of the fold's held-out cases (`validation/summary.json`, "
        "foreground mean); test Dice: `nnUNetv2_predict` on `imagesTs`, scored with nnU-Net's `compute_metrics` "
        "(mean over cases; a case with empty reference and empty prediction is left out, as nnU-Net does).",
        "",
        "## Table I (`nnunet-se-analyze table`)",
        "",
        (out / "analysis" / "table.md").read_text().rstrip(),
        "",
        "## Linear excitation thresholds, Fig. 3 style (`nnunet-se-analyze pca`)",
        "",
        *_figures(out, out / "analysis" / "pca"),
        "## Excitation responses, Fig. 2 style (`nnunet-se-analyze responses`)",
        "",
        *_figures(out, out / "analysis" / "responses"),
        "## Recalibration modules",
        "",
        "Trainable parameters one module adds at each gated depth of the paper U-Net (32, 64, 128 channels; "
        "the plain U-Net has about 1.9 M).",
        "",
        "| module | added parameters |",
        "|---|---|",
        *(f"| {name} | {count:,} |" for name, count in modules),
        "",
        "## Stages",
        "",
        f"Load average at the end: {' / '.join(f'{v:.1f}' for v in os.getloadavg())} (1 / 5 / 15 min) on "
        f"{os.cpu_count()} cores; CPU time counts this process and the commands it ran.",
        "",
        "| stage | wall s | CPU s |",
        "|---|---|---|",
        *(f"| {r.name} | {r.seconds:.1f} | {r.cpu_seconds:.1f} |" for r in pipeline.records),
        "",
        "Commands (logs in `logs/`):",
        "",
        "```",
        *(command for r in pipeline.records for command in r.commands),
        "```",
        "",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _figures(out: Path, folder: Path) -> list[str]:
    """Markdown image links for the PNG figures in ``folder`` and plain links for its CSV tables."""
    pngs, tables = sorted(folder.glob("*.png")), sorted(folder.glob("*.csv"))
    return [*(f"![{p.stem}]({_link(out, p)})" for p in pngs), "",
            *(f"- [{p.name}]({_link(out, p)})" for p in tables), ""]


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    args.argv = argv
    profile = check_args(args)
    out = args.out.resolve()
    prepare_output(out)
    pipeline = Pipeline(out, args.device, args.seed, total_stages=2 + 2 * len(profile.trainers) + 1 + 4 + 1)
    start = time.perf_counter()
    raw_folder = make_data(pipeline, profile, args)
    plan(pipeline)
    for trainer in profile.trainers:
        train(pipeline, profile, trainer)
    test_dice = {trainer: predict(pipeline, raw_folder, trainer) for trainer in profile.trainers}
    modules = module_parameters(pipeline)
    analyse(pipeline, profile, profile.trainers)
    with pipeline.stage("report") as record:
        report = write_report(pipeline, profile, args, raw_folder, test_dice, modules, time.perf_counter() - start)
        record.note = str(report)
    print(f"report: {report}")
    return 0
