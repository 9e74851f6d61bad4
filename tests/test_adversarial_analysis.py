"""Adversarial table for ``nnunet-se-analyze``: bad input from a careful but unlucky user.

Every row builds the same small workspace (generated excitation files, hand-written nnU-Net ``summary.json`` files,
a table JSON, an earlier output folder and a user folder), runs one command in-process and checks: exit code 1, one
``<prog>: error:`` line naming the option or file and the problem, no traceback and no "internal error", and that
the whole workspace is byte-for-byte unchanged (no output, no temporary folder left behind, no input touched).
The rows after the table check the successful side: output folders are replaced whole, never merged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cli_harness import assert_one_line_error, call_main, tree_digest

from nnunet_se.analysis import cli
from nnunet_se.analysis.excitation_io import save_excitations
from nnunet_se.analysis.outputs import MARKER, check_output_folder, staged_output
from nnunet_se.errors import UserError

DATASET = "Dataset901_X"
MODEL = "nnUNetPlans__2d"
CASES, CHANNELS = 12, 4


def _npz(path: Path, meta: dict | None = None, **arrays: np.ndarray) -> None:
    if meta is None:
        np.savez(path, **arrays)
    else:
        save_excitations(path, {int(k.split("_")[1]): v for k, v in arrays.items()}, [str(i) for i in range(CASES)],
                         meta)


def _summary(folder: Path, dice: float) -> None:
    folder.mkdir(parents=True)
    case = {"reference_file": "/gt/case_000.png", "metrics": {"1": {"Dice": dice, "n_ref": 5}}}
    (folder / "summary.json").write_text(json.dumps({"foreground_mean": {"Dice": dice}, "metric_per_case": [case]}))


def workspace(root: Path) -> None:
    """The generated inputs every row starts from (a few kB in all)."""
    rng = np.random.default_rng(0)
    g = rng.uniform(0.2, 0.8, (CASES, CHANNELS))
    exc, bad = root / "exc", root / "bad"
    exc.mkdir()
    bad.mkdir()
    meta = {"dataset": DATASET, "trainer": "nnUNetTrainerPaperCSE", "plans": "nnUNetPlans", "configuration": "2d",
            "fold": 0}
    _npz(exc / "cse.npz", meta, depth_1=g)
    (bad / "empty.npz").write_bytes(b"")
    (bad / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    _npz(bad / "ints.npz", depth_1=np.ones((CASES, CHANNELS), np.int64))
    _npz(bad / "nan.npz", depth_1=np.full((CASES, CHANNELS), np.nan))
    _npz(bad / "zero_channels.npz", depth_1=np.zeros((CASES, 0)))
    _npz(bad / "gap.npz", depth_1=g, depth_3=g)
    _npz(bad / "one_case.npz", depth_1=g[:1])
    _npz(bad / "case_ids_2d.npz", depth_1=g, case_ids=np.array([["a"] * CASES]))
    for name, sidecar in {"side_text": "{not json", "side_list": "[1, 2]", "side_channels_int": '{"channels": 5}',
                          "side_channels_str": '{"channels": {"1": "x"}}', "side_mismatch": '{"channels": {"1": 7}}',
                          "side_trainer": '{"trainer": 5}', "side_binary": "\udcff"}.items():
        _npz(bad / f"{name}.npz", depth_1=g)
        (bad / f"{name}.json").write_bytes(sidecar.encode("utf-8", "surrogateescape"))
    results = root / "results"
    for trainer, dice in (("nnUNetTrainerPaper", 0.7), ("nnUNetTrainerPaperCSE", 0.75)):
        for fold in (0, 1):
            _summary(results / DATASET / f"{trainer}__{MODEL}" / f"fold_{fold}" / "validation", dice + fold / 100)
    broken = root / "broken_results" / DATASET / f"nnUNetTrainerPaper__{MODEL}" / "fold_0" / "validation"
    broken.mkdir(parents=True)
    (broken / "summary.json").write_text('{"foreground_mean": {}}')
    fold = {"dataset": DATASET, "trainer": "nnUNetTrainerPaperCSE", "plans": "nnUNetPlans", "configuration": "2d",
            "fold": 0, "finished": True, "dice": 75.0}
    dice = root / "dice"
    dice.mkdir()
    for name, payload in {"text": "{oops", "list": "[1, 2]", "entry_int": '{"folds": [1]}',
                          "entry_short": json.dumps({"folds": [{"dataset": DATASET, "fold": 0}]}),
                          "dice_str": json.dumps({"folds": [{**fold, "dice": "high"}]}),
                          "other_plans": json.dumps({"folds": [{**fold, "plans": "nnUNetResEncUNetMPlans"}]}),
                          "other_config": json.dumps({"folds": [{**fold, "configuration": "3d_fullres"}]})}.items():
        (dice / f"{name}.json").write_text(payload)
    for command in ("responses", "pca"):
        prior = root / f"prior_{command}"
        prior.mkdir()
        (prior / MARKER).write_text(json.dumps({"command": f"nnunet-se-analyze {command}"}))
        (prior / f"{'responses' if command == 'responses' else 'thresholds'}.png").write_bytes(b"old figure")
    prior = root / "prior_excitations"  # an earlier capture of another trainer
    prior.mkdir()
    (prior / MARKER).write_text(json.dumps({"command": "nnunet-se-analyze excitations", "identity": {
        "dataset": DATASET, "trainer": "nnUNetTrainerPaperCSE", "plans": "nnUNetPlans", "configuration": "2d",
        "folds": [0]}}))
    (prior / f"{DATASET}__nnUNetTrainerPaperCSE__{MODEL}__fold_0.npz").write_bytes(b"captured on a GPU")
    user = root / "userdir"
    user.mkdir()
    (user / "thesis.tex").write_text("irreplaceable")
    (root / "file.txt").write_text("a file, not a folder")
    (root / "link").symlink_to(user)


@dataclass(frozen=True)
class Row:
    id: str
    argv: Callable[[Path], list[str]]
    fragments: tuple[str, ...]
    env: dict[str, str | None] = field(default_factory=dict)  # nnunetv2.paths overrides ("{root}" expanded)
    setup: Callable[[Path], None] | None = None
    code: int = 1  # 2: a malformed command line (argparse)


def pca(*extra: str, files: tuple[str, ...] = ("exc/cse.npz",)) -> Callable[[Path], list[str]]:
    def argv(root: Path) -> list[str]:
        args = ["pca", *(str(root / f) for f in files), "--n-boot", "2"]
        return args + [str(root / a[5:]) if a.startswith("root:") else a for a in extra] + (
            [] if "-o" in extra else ["-o", str(root / "out")])
    return argv


def command(name: str, *extra: str) -> Callable[[Path], list[str]]:
    """``name`` with arguments; ``root:<rel>`` becomes a path in the workspace."""
    def argv(root: Path) -> list[str]:
        return [name, *(str(root / a[5:]) if a.startswith("root:") else a for a in extra)]
    return argv


def _fake_fold(root: Path, trainer: str = "nnUNetTrainerPaperSSE", folds: tuple[int, ...] = (0,)) -> None:
    """Trained-looking folds (empty checkpoint files) for the excitations rows."""
    for fold in folds:
        folder = root / "results" / DATASET / f"{trainer}__{MODEL}" / f"fold_{fold}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "checkpoint_best.pth").write_bytes(b"")


def _preprocessed(root: Path, trainer: str = "nnUNetTrainerPaperSSE") -> None:
    _fake_fold(root, trainer)
    (root / "pre").mkdir()


def _three_fold_split(root: Path) -> None:
    """Fold 0 trained, and a splits_final.json of 3 folds (so ``-f all`` asks for folds 0, 1 and 2)."""
    _preprocessed(root)
    (root / "pre" / DATASET).mkdir()
    fold = {"train": ["a"], "val": ["b"]}
    (root / "pre" / DATASET / "splits_final.json").write_text(json.dumps([fold] * 3))


def _preprocessed_cse(root: Path) -> None:
    _fake_fold(root, "nnUNetTrainerPaperCSE", folds=(0, 1))
    (root / "pre").mkdir()


EXC = ("excitations", "-d", DATASET, "-tr", "nnUNetTrainerPaperSSE", "--device", "cpu")
ROWS = [
    # ---- excitation files and sidecars ----
    Row("npz-empty", pca(files=("bad/empty.npz",)), ("bad/empty.npz", "empty file")),
    Row("npz-garbage", pca(files=("bad/garbage.npz",)), ("garbage.npz", "not a readable .npz")),
    Row("npz-missing", pca(files=("exc/nope.npz",)), ("nope.npz", "no such excitation file")),
    Row("npz-folder", pca(files=("exc",)), ("exc", "no such excitation file")),
    Row("npz-int-array", pca(files=("bad/ints.npz",)), ("ints.npz", "float array")),
    Row("npz-nan", pca(files=("bad/nan.npz",)), ("nan.npz", "NaN")),
    Row("npz-zero-channels", pca(files=("bad/zero_channels.npz",)), ("zero_channels.npz", "non-empty")),
    Row("npz-depth-gap", pca(files=("bad/gap.npz",)), ("gap.npz", "without gaps")),
    Row("npz-one-case", pca(files=("bad/one_case.npz",)), ("one_case.npz", "at least 2")),
    Row("npz-case-ids-2d", pca(files=("bad/case_ids_2d.npz",)), ("case_ids_2d.npz", "1-d")),
    Row("sidecar-not-json", pca(files=("bad/side_text.npz",)), ("side_text.json", "invalid JSON")),
    Row("sidecar-not-utf8", pca(files=("bad/side_binary.npz",)), ("side_binary.json", "invalid JSON")),
    Row("sidecar-list", pca(files=("bad/side_list.npz",)), ("side_list.json", "JSON object")),
    Row("sidecar-channels-int", pca(files=("bad/side_channels_int.npz",)), ("side_channels_int.json", "'channels'")),
    Row("sidecar-channels-str", pca(files=("bad/side_channels_str.npz",)), ("side_channels_str.json", "integer")),
    Row("sidecar-channels-mismatch", pca(files=("bad/side_mismatch.npz",)), ("side_mismatch.json", "= 7")),
    Row("sidecar-trainer-int", pca(files=("bad/side_trainer.npz",)), ("side_trainer.json", "'trainer'")),
    Row("responses-empty-npz", command("responses", "root:bad/empty.npz", "-o", "root:out"), ("empty file",)),
    # ---- pca options ----
    Row("pca-seed-negative", pca("--seed", "-1"), ("--seed", "-1"), code=2),
    Row("pca-seed-huge", pca("--seed", str(2**80)), ("--seed", str(2**80)), code=2),
    Row("pca-n-boot-negative", pca("--n-boot", "-5"), ("--n-boot", "-5")),
    Row("pca-n-boot-huge", pca("--n-boot", str(10**12)), ("--n-boot",)),
    Row("pca-ci-out-of-range", pca("--ci", "1.5"), ("--ci", "1.5")),
    Row("pca-ci-nan", pca("--ci", "nan"), ("--ci", "nan")),
    Row("pca-delta-zero", pca("--delta", "0"), ("delta", "(0, 1]")),
    Row("pca-delta-nan", pca("--delta", "nan"), ("delta", "nan")),
    # ---- output folders: never an input, never someone else's files, never a link or a file ----
    Row("pca-out-is-input-folder", pca("-o", "root:exc"), ("exc", "is or contains the input")),
    Row("pca-out-contains-input", pca("-o", "root:"), ("is or contains the input",)),
    Row("pca-out-is-input-file", pca("-o", "root:exc/cse.npz"), ("cse.npz", "not a folder")),
    Row("pca-out-user-folder", pca("-o", "root:userdir"), ("userdir", "not written by nnunet-se-analyze")),
    Row("pca-out-other-command", pca("-o", "root:prior_responses"),
        ("prior_responses", "`nnunet-se-analyze responses`")),
    Row("pca-out-symlink", pca("-o", "root:link"), ("link", "symbolic link")),
    Row("pca-out-parent-is-file", pca("-o", "root:file.txt/out"), ("file.txt", "parent folder")),
    Row("pca-failed-run-keeps-old-output", pca("-o", "root:prior_pca", files=("bad/nan.npz",)), ("nan.npz", "NaN")),
    # ---- responses --dice ----
    Row("dice-not-json", command("responses", "root:exc/cse.npz", "--dice", "root:dice/text.json", "-o", "root:out"),
        ("text.json", "not valid JSON")),
    Row("dice-list", command("responses", "root:exc/cse.npz", "--dice", "root:dice/list.json", "-o", "root:out"),
        ("list.json", "'folds' list")),
    Row("dice-entry-int", command("responses", "root:exc/cse.npz", "--dice", "root:dice/entry_int.json", "-o",
                                  "root:out"), ("entry_int.json", "folds[0] lacks")),
    Row("dice-entry-short", command("responses", "root:exc/cse.npz", "--dice", "root:dice/entry_short.json", "-o",
                                    "root:out"), ("entry_short.json", "trainer, plans, configuration")),
    Row("dice-value-str", command("responses", "root:exc/cse.npz", "--dice", "root:dice/dice_str.json", "-o",
                                  "root:out"), ("dice_str.json", "Dice in % (0-100) or null", "'high'")),
    Row("dice-other-plans", command("responses", "root:exc/cse.npz", "--dice", "root:dice/other_plans.json", "-o",
                                    "root:out"), ("other_plans.json", "no fold matches", "plans, configuration")),
    Row("dice-other-config", command("responses", "root:exc/cse.npz", "--dice", "root:dice/other_config.json", "-o",
                                     "root:out"), ("other_config.json", "no fold matches")),
    Row("dice-missing", command("responses", "root:exc/cse.npz", "--dice", "root:dice/nope.json", "-o", "root:out"),
        ("nope.json", "No such file")),
    Row("dice-inside-output", command("responses", "root:exc/cse.npz", "--dice", "root:dice/list.json", "-o",
                                      "root:dice"), ("dice", "is or contains the input")),
    # ---- table ----
    Row("table-d-no-match", command("table", "root:results", "-d", "999"), ("-d/--datasets 999",
                                                                          "no Dataset999_", DATASET)),
    Row("table-d-empty", command("table", "root:results", "-d", ""), ("-d", "empty value")),
    Row("table-c-no-match", command("table", "root:results", "-c", "3d_fullres"), ("-c '3d_fullres'", "found 2d")),
    Row("table-tr-unknown", command("table", "root:results", "-tr", "nnUNetTrainerPaperFoo"),
        ("-tr 'nnUNetTrainerPaperFoo'", "known: nnUNetTrainerPaper, nnUNetTrainerPaperCSE")),
    Row("table-baseline-unknown", command("table", "root:results", "--baseline", "nnUNetTrainerFoo"),
        ("--baseline 'nnUNetTrainerFoo'", "known: nnUNetTrainerPaper, nnUNetTrainerPaperCSE")),
    Row("table-baseline-model-unknown", command("table", "root:results", "--baseline", "nnUNetTrainerPaper__x__2d"),
        ("--baseline", "known: ", f"nnUNetTrainerPaper__{MODEL})")),
    Row("table-o-folder", command("table", "root:results", "-o", "root:results"), ("results", "is a folder")),
    Row("table-o-is-input", command("table", "root:results", "-o",
                                    f"root:results/{DATASET}/nnUNetTrainerPaper__{MODEL}/fold_0/validation/summary.json"),
        ("summary.json", "is the input")),
    Row("table-cases-csv-is-input", command("table", "root:results", "-o", "root:t.md", "--cases-csv",
                                            f"root:results/{DATASET}/nnUNetTrainerPaperCSE__{MODEL}/fold_1/validation/"
                                            "summary.json"), ("summary.json", "is the input")),  # t.md not written
    Row("table-o-same-as-cases-csv", command("table", "root:results", "-o", "root:t.csv", "--cases-csv", "root:t.csv"),
        ("t.csv", "same file")),
    Row("table-o-parent-is-file", command("table", "root:results", "-o", "root:file.txt/t.md"),
        ("file.txt", "parent folder")),
    Row("table-cases-csv-folder", command("table", "root:results", "--cases-csv", "root:userdir"),
        ("userdir", "is a folder")),
    Row("table-ratio-negative", command("table", "root:results", "--test-train-ratio", "-1"),
        ("--test-train-ratio", "-1")),
    Row("table-ratio-nan", command("table", "root:results", "--test-train-ratio", "nan"),
        ("--test-train-ratio", "nan")),
    Row("table-ratio-inf", command("table", "root:results", "--test-train-ratio", "inf"),
        ("--test-train-ratio", "inf")),
    Row("table-n-folds-one", command("table", "root:results", "--n-folds", "1"), ("--n-folds", "1")),
    Row("table-folds-negative", command("table", "root:results", "--folds", "-1"), ("--folds", "-1"), code=2),
    Row("table-folder-is-file", command("table", "root:file.txt"), ("file.txt", "not a folder")),
    Row("table-no-results", command("table", "root:userdir"), ("userdir", "no Dataset")),
    Row("table-broken-summary", command("table", "root:broken_results"), ("summary.json", "not an nnU-Net summary")),
    # ---- excitations (no model is loaded: every check comes first) ----
    Row("exc-preprocessed-unset", command(*EXC, "-f", "0", "-o", "root:out"), ("nnUNet_preprocessed is not set",),
        env={"nnUNet_results": "{root}/results", "nnUNet_preprocessed": None}, setup=_fake_fold),
    Row("exc-out-is-results", command(*EXC, "-f", "0", "-o", "root:results"), ("results", "is or contains the input"),
        env={"nnUNet_results": "{root}/results", "nnUNet_preprocessed": "{root}/pre"}, setup=_preprocessed),
    Row("exc-out-contains-preprocessed", command(*EXC, "-f", "0", "-o", "root:"), ("is or contains the input",),
        env={"nnUNet_results": "{root}/results", "nnUNet_preprocessed": "{root}/pre"}, setup=_preprocessed),
    Row("exc-out-user-folder", command(*EXC, "-f", "0", "-o", "root:userdir"), ("userdir", "not written by"),
        env={"nnUNet_results": "{root}/results", "nnUNet_preprocessed": "{root}/pre"}, setup=_preprocessed),
    Row("exc-out-other-trainer", command(*EXC, "-f", "0", "-o", "root:prior_excitations"),
        ("prior_excitations", "trainer nnUNetTrainerPaperCSE", "own folder"),
        env={"nnUNet_results": "{root}/results", "nnUNet_preprocessed": "{root}/pre"}, setup=_preprocessed),
    Row("exc-out-other-folds", command("excitations", "-d", DATASET, "-tr", "nnUNetTrainerPaperCSE", "--device", "cpu",
                                       "-f", "0", "1", "-o", "root:prior_excitations"), ("folds [0]", "own folder"),
        env={"nnUNet_results": "{root}/results", "nnUNet_preprocessed": "{root}/pre"}, setup=_preprocessed_cse),
    Row("exc-out-is-cases-folder", command(*EXC, "-f", "0", "--cases", "root:userdir", "-o", "root:userdir"),
        ("userdir", "is or contains the input"), env={"nnUNet_results": "{root}/results"}, setup=_fake_fold),
    Row("exc-fold-huge", command(*EXC, "-f", str(10**30), "-o", "root:out"), ("-f/--folds", "too large"), code=2),
    Row("exc-fold-all-untrained", command(*EXC, "-f", "all", "-o", "root:out"), ("fold_1", "checkpoint not found"),
        env={"nnUNet_results": "{root}/results", "nnUNet_preprocessed": "{root}/pre"}, setup=_three_fold_split),
    Row("exc-trainer-typo", command("excitations", "-d", DATASET, "-tr", "nnUNetTrainerPaperSS", "-f", "0", "-o",
                                   "root:out"),
        ("-tr nnUNetTrainerPaperSS", "did you mean nnUNetTrainerPaperSSE"),
        env={"nnUNet_results": "{root}/results"}, setup=_fake_fold),
    Row("exc-known-trainer-untrained", command("excitations", "-d", DATASET, "-tr", "nnUNetTrainerPaperSRM", "-f",
                                              "0", "-o", "root:out"),
        ("nnUNetTrainerPaperSRM", "no trained model folder"), env={"nnUNet_results": "{root}/results"},
        setup=_fake_fold),
    Row("exc-cases-missing-folder", command(*EXC, "-f", "0", "--cases", "root:nope", "-o", "root:out"),
        ("--cases", "nope", "folder of images"), env={"nnUNet_results": "{root}/results"}, setup=_fake_fold),
    Row("exc-fold-negative", command(*EXC, "-f", "-1", "-o", "root:out"), ("-f/--folds -1",), code=2),
    Row("exc-fold-untrained", command(*EXC, "-f", "3", "-o", "root:out"), ("fold_3", "checkpoint not found"),
        env={"nnUNet_results": "{root}/results"}, setup=_fake_fold),
    Row("exc-incomplete-model-folder", command(*EXC, "-f", "0", "-o", "root:out"), ("dataset.json", "No such file"),
        env={"nnUNet_results": "{root}/results", "nnUNet_preprocessed": "{root}/pre"}, setup=_preprocessed),
]


def _set_paths(monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None], root: Path) -> None:
    import nnunetv2.paths
    import nnunetv2.utilities.file_path_utilities as paths_util

    for name, value in env.items():
        value = None if value is None else value.format(root=root)
        monkeypatch.setattr(nnunetv2.paths, name, value)
        if value is None:  # the plugin reads the roots from the environment (nnunet_se.layout), nnU-Net at import
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
        if hasattr(paths_util, name):
            monkeypatch.setattr(paths_util, name, value)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_one_line_and_changes_nothing(row: Row, tmp_path: Path, capsys, monkeypatch) -> None:
    run_row(row, tmp_path, capsys, monkeypatch)


def run_row(row: Row, tmp_path: Path, capsys, monkeypatch) -> None:
    """Build the workspace, run ``row``: one error line with its fragments, exit code, the workspace unchanged."""
    root = tmp_path / "ws"
    root.mkdir()
    workspace(root)
    if row.setup:
        row.setup(root)
    _set_paths(monkeypatch, row.env, root)
    before = tree_digest(root)
    result = call_main(cli.main, row.argv(root), capsys)
    line = assert_one_line_error(result, *row.fragments)
    assert result.code == row.code and "internal error" not in line, line
    assert tree_digest(root) == before


# ---- excitations and responses, round 2: checkpoint contents, excitation ranges, Dice JSON values, joins -----------
# Every value read from a file is checked where it enters (one line naming the file); a checkpoint is never unpickled
# as code; a join on (dataset, trainer, plans, configuration, fold) refuses duplicated keys.

SSE = "nnUNetTrainerPaperSSE"
SSE_CKPT = f"results/{DATASET}/{SSE}__{MODEL}/fold_0/checkpoint_best.pth"


class _RunsCode:
    """Unpickling this creates ``path`` (a folder): a checkpoint holding it must be refused without unpickling."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def _checkpoint(**changes) -> dict:
    """An nnU-Net checkpoint of the SSE folder's fold 0, as nnU-Net writes its keys, with ``changes``."""
    import torch

    init = {"configuration": "2d", "fold": 0, "plans": {"plans_name": "nnUNetPlans"}}
    good = {"trainer_name": SSE, "init_args": init, "network_weights": {"w": torch.zeros(1)},
            "inference_allowed_mirroring_axes": None}
    return {**good, **changes}


def _with_checkpoint(payload: Callable[[Path], object]) -> Callable[[Path], None]:
    """Setup: SSE fold 0 trained, its model folder with (dummy) dataset.json and plans.json, and ``payload(root)``
    saved as the checkpoint (bytes as they are, anything else with ``torch.save``)."""
    def setup(root: Path) -> None:
        import torch

        _preprocessed(root)
        folder = root / "results" / DATASET / f"{SSE}__{MODEL}"
        for name in ("dataset.json", "plans.json"):
            (folder / name).write_text("{}")
        value = payload(root)
        if isinstance(value, bytes):
            (root / SSE_CKPT).write_bytes(value)
        else:
            torch.save(value, root / SSE_CKPT)
    return setup


def _excitation_file(name: str, values: np.ndarray, **meta) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        side = {"dataset": DATASET, "trainer": "nnUNetTrainerPaperCSE", "plans": "nnUNetPlans", "configuration": "2d",
                "fold": 0, **meta}
        _npz(root / "exc" / f"{name}.npz", side, depth_1=values)
    return setup


def _dice_file(name: str, *folds: dict) -> Callable[[Path], None]:
    """Setup: ``dice/<name>.json`` as ``table --format json`` writes it, one entry per ``folds`` change (JSON's
    ``NaN`` / ``Infinity`` for non-finite floats, as Python's json module writes them)."""
    def setup(root: Path) -> None:
        base = {"dataset": DATASET, "trainer": "nnUNetTrainerPaperCSE", "plans": "nnUNetPlans", "configuration": "2d",
                "fold": 0, "finished": True, "dice": 75.0}
        (root / "dice" / f"{name}.json").write_text(json.dumps({"folds": [{**base, **f} for f in folds]}))
    return setup


def _fifo_beside(root: Path) -> None:
    """A named pipe outside the workspace (the digest would block reading it): ``<root>/../fifo.json``."""
    os.mkfifo(root.parent / "fifo.json")


ROOTS = {"nnUNet_results": "{root}/results", "nnUNet_preprocessed": "{root}/pre"}
EXC_SSE = command(*EXC, "-f", "0", "-o", "root:out")
G = np.random.default_rng(1).uniform(0.2, 0.8, (CASES, CHANNELS))
ROUND2_ROWS = [
    # ---- excitations: the checkpoint's contents (read with weights_only, checked against its folder) ----
    Row("exc-ckpt-other-trainer", EXC_SSE, ("checkpoint_best.pth", "trainer nnUNetTrainerPaperCSE", f"trainer {SSE}"),
        env=ROOTS, setup=_with_checkpoint(lambda r: _checkpoint(trainer_name="nnUNetTrainerPaperCSE"))),
    Row("exc-ckpt-other-configuration", EXC_SSE, ("checkpoint_best.pth", "configuration 3d_fullres",
                                                  "configuration 2d"),
        env=ROOTS, setup=_with_checkpoint(lambda r: _checkpoint(init_args={"configuration": "3d_fullres"}))),
    Row("exc-ckpt-other-plans", EXC_SSE, ("checkpoint_best.pth", "plans nnUNetResEncUNetMPlans", "plans nnUNetPlans"),
        env=ROOTS, setup=_with_checkpoint(lambda r: _checkpoint(init_args={
            "configuration": "2d", "plans": {"plans_name": "nnUNetResEncUNetMPlans"}}))),
    Row("exc-ckpt-other-dataset", EXC_SSE, ("checkpoint_best.pth", "dataset Dataset902_Y", f"dataset {DATASET}"),
        env=ROOTS, setup=_with_checkpoint(lambda r: _checkpoint(init_args={
            "configuration": "2d", "plans": {"plans_name": "nnUNetPlans", "dataset_name": "Dataset902_Y"}}))),
    Row("exc-ckpt-other-fold", EXC_SSE, ("checkpoint_best.pth", "fold 1", "fold 0"),
        env=ROOTS, setup=_with_checkpoint(lambda r: _checkpoint(init_args={"configuration": "2d", "fold": 1}))),
    Row("exc-ckpt-pickled-module", EXC_SSE, ("checkpoint_best.pth", "Python objects other than tensors",
                                             "torch.nn.modules.linear.Linear"),
        env=ROOTS, setup=_with_checkpoint(lambda r: __import__("torch").nn.Linear(2, 2))),
    Row("exc-ckpt-code-not-run", EXC_SSE, ("checkpoint_best.pth", "Python objects other than tensors"),
        env=ROOTS, setup=_with_checkpoint(lambda r: _checkpoint(logging=_RunsCode(str(r / "UNPICKLED"))))),
    Row("exc-ckpt-not-a-dict", EXC_SSE, ("checkpoint_best.pth", "not an nnU-Net checkpoint"),
        env=ROOTS, setup=_with_checkpoint(lambda r: [1, 2])),
    Row("exc-ckpt-weights-not-tensors", EXC_SSE, ("checkpoint_best.pth", "not an nnU-Net checkpoint"),
        env=ROOTS, setup=_with_checkpoint(lambda r: _checkpoint(network_weights={"w": "text"}))),
    Row("exc-ckpt-garbage", EXC_SSE, ("checkpoint_best.pth", "not a readable torch checkpoint"),
        env=ROOTS, setup=_with_checkpoint(lambda r: b"PK\x03\x04 not a torch file")),
    Row("exc-ckpt-empty", EXC_SSE, ("checkpoint_best.pth", "empty file"), env=ROOTS,
        setup=_with_checkpoint(lambda r: b"")),
    Row("exc-plans-json-list", EXC_SSE, ("plans.json", "expected a JSON dict"), env=ROOTS,
        setup=lambda r: (_with_checkpoint(lambda r: _checkpoint())(r),
                         (r / "results" / DATASET / f"{SSE}__{MODEL}" / "plans.json").write_text("[]"))),
    # ---- excitations: every subset option selects its model folder, or is refused ----
    Row("exc-c-untrained", command(*EXC, "-f", "0", "-c", "3d_fullres", "-o", "root:out"),
        (f"{SSE}__nnUNetPlans__3d_fullres", "no trained model folder", "3d_fullres"), env=ROOTS, setup=_preprocessed),
    Row("exc-p-untrained", command(*EXC, "-f", "0", "-p", "nnUNetResEncUNetMPlans", "-o", "root:out"),
        (f"{SSE}__nnUNetResEncUNetMPlans__2d", "no trained model folder"), env=ROOTS, setup=_preprocessed),
    Row("exc-d-unknown", command("excitations", "-d", "902", "-tr", SSE, "-f", "0", "-o", "root:out"), ("902",),
        env=ROOTS, setup=_preprocessed),
    Row("exc-cases-is-a-file", command(*EXC, "-f", "0", "--cases", "root:file.txt", "-o", "root:out"),
        ("--cases", "file.txt", "folder of images"), env=ROOTS, setup=_preprocessed),
    # ---- responses: excitation values and shapes ----
    Row("responses-excitation-above-one", command("responses", "root:exc/above.npz", "-o", "root:out"),
        ("above.npz", "outside [0, 1]", "max 1.5"), setup=_excitation_file("above", np.full((CASES, CHANNELS), 1.5))),
    Row("responses-excitation-negative", command("responses", "root:exc/negative.npz", "-o", "root:out"),
        ("negative.npz", "outside [0, 1]", "min -0.25"), setup=_excitation_file("negative", G - G.min() - 0.25)),
    Row("pca-excitation-above-one", pca(files=("exc/above.npz",)), ("above.npz", "outside [0, 1]"),
        setup=_excitation_file("above", np.full((CASES, CHANNELS), 1.5))),
    # ---- responses: joins keyed on (dataset, trainer, plans, configuration, fold) ----
    Row("responses-duplicate-key", command("responses", "root:exc/cse.npz", "root:exc/copy.npz", "-o", "root:out"),
        ("copy.npz", "same (dataset, trainer, plans, configuration, fold)", "cse.npz"),
        setup=_excitation_file("copy", G)),
    Row("dice-duplicate-fold", command("responses", "root:exc/cse.npz", "--dice", "root:dice/twice.json", "-o",
                                       "root:out"), ("twice.json: folds[1]", "same", "folds[0]"),
        setup=_dice_file("twice", {}, {"dice": 60.0})),
    # ---- responses: values of the Dice JSON (NaN and Infinity are JSON to Python's parser) ----
    Row("dice-nan", command("responses", "root:exc/cse.npz", "--dice", "root:dice/nan.json", "-o", "root:out"),
        ("nan.json", "folds[0].dice", "nan"), setup=_dice_file("nan", {"dice": float("nan")})),  # written as NaN
    Row("dice-infinity", command("responses", "root:exc/cse.npz", "--dice", "root:dice/inf.json", "-o", "root:out"),
        ("inf.json", "folds[0].dice", "inf"), setup=_dice_file("inf", {"dice": float("inf")})),
    Row("dice-above-100", command("responses", "root:exc/cse.npz", "--dice", "root:dice/big.json", "-o", "root:out"),
        ("big.json", "folds[0].dice", "100.5"), setup=_dice_file("big", {"dice": 100.5})),
    Row("dice-negative", command("responses", "root:exc/cse.npz", "--dice", "root:dice/neg.json", "-o", "root:out"),
        ("neg.json", "folds[0].dice", "-1"), setup=_dice_file("neg", {"dice": -1})),
    Row("dice-finished-not-bool", command("responses", "root:exc/cse.npz", "--dice", "root:dice/fin.json", "-o",
                                          "root:out"), ("fin.json", "folds[0].finished", "'yes'"),
        setup=_dice_file("fin", {"finished": "yes"})),
    Row("dice-named-pipe", lambda root: ["responses", str(root / "exc" / "cse.npz"), "--dice",
                                         str(root.parent / "fifo.json"), "-o", str(root / "out")],
        ("fifo.json", "not a regular file"), setup=_fifo_beside),
]


@pytest.mark.parametrize("row", ROUND2_ROWS, ids=[r.id for r in ROUND2_ROWS])
def test_round2_values_and_joins_are_checked_where_they_enter(row: Row, tmp_path: Path, capsys, monkeypatch) -> None:
    run_row(row, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize(("slack", "ok"), [(0, True), (-1, False)], ids=["at-the-bound", "one-byte-over"])
def test_excitation_file_size_is_bounded_before_reading(tmp_path: Path, monkeypatch, slack: int, ok: bool) -> None:
    """The arrays' declared (uncompressed) size is checked before any is decompressed: exactly the bound loads,
    one byte more is refused naming the file."""
    import zipfile

    from nnunet_se.analysis import excitation_io

    path = tmp_path / "g.npz"
    _npz(path, depth_1=np.full((CASES, CHANNELS), 0.5))
    with zipfile.ZipFile(path) as archive:
        declared = sum(info.file_size for info in archive.infolist())  # the oracle: the zip's own headers
    monkeypatch.setattr(excitation_io, "MAX_NPZ_BYTES", declared + slack)
    if ok:
        assert excitation_io.load_excitations(path).depths[1].shape == (CASES, CHANNELS)
    else:
        with pytest.raises(UserError, match=f"g.npz: declares {declared} bytes"):
            excitation_io.load_excitations(path)


@pytest.mark.parametrize(("low", "high", "ok"), [(0.0, 1.0, True), (-1e-6, 1.0, False), (0.0, 1.0 + 1e-6, False)],
                         ids=["closed-interval", "just-below-0", "just-above-1"])
def test_excitation_range_boundaries(tmp_path: Path, low: float, high: float, ok: bool) -> None:
    """Both ends of [0, 1] are excitations (a saturated sigmoid); anything beyond is refused."""
    from nnunet_se.analysis.excitation_io import load_excitations

    path = tmp_path / "g.npz"
    values = np.tile(np.array([low, high]), (CASES, 1))
    _npz(path, depth_1=values)
    if ok:
        np.testing.assert_array_equal(load_excitations(path).depths[1], values)
    else:
        with pytest.raises(UserError, match="outside"):
            load_excitations(path)


@pytest.mark.parametrize("added", [None, "notes.txt", "sub/notes.txt"], ids=["own-files-only", "user-file",
                                                                              "user-file-in-subfolder"])
def test_rerun_deletes_only_what_an_earlier_run_wrote(tmp_path: Path, capsys, added: str | None) -> None:
    """The marker lists the files a run wrote: a rerun replaces a folder holding only those, and refuses (one line
    naming the file, folder unchanged) one where the user has added a file since."""
    workspace(tmp_path)
    out = tmp_path / "resp"
    argv = ["responses", str(tmp_path / "exc" / "cse.npz"), "-o", str(out)]
    assert call_main(cli.main, argv, capsys).code == 0
    if added:
        (out / added).parent.mkdir(exist_ok=True)
        (out / added).write_text("the user's")
    before = tree_digest(out)
    result = call_main(cli.main, argv, capsys)
    if added is None:
        assert result.code == 0, result.stderr
    else:
        assert_one_line_error(result, f"{out / added}: not written by `nnunet-se-analyze responses`")
        assert tree_digest(out) == before


# ---- the successful side: replaced whole, never merged; the inputs untouched ----------------------------------------

def test_rerun_replaces_the_output_folder_whole(tmp_path: Path, capsys) -> None:
    workspace(tmp_path)
    out = tmp_path / "prior_responses"
    inputs = tree_digest(tmp_path / "exc")
    result = call_main(cli.main, ["responses", str(tmp_path / "exc" / "cse.npz"), "-o", str(out)], capsys)
    assert result.code == 0, result.stderr
    assert (out / "responses.png").read_bytes() != b"old figure"  # the stale figure was replaced, not kept
    names = {p.name for p in out.iterdir()}
    assert names == {"channels.csv", "variability.csv", "variability.json", "responses.png", "responses.pdf", MARKER}
    assert tree_digest(tmp_path / "exc") == inputs
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".prior_responses.")]  # no temporary sibling left


def test_pca_rerun_drops_files_of_the_earlier_run(tmp_path: Path, capsys) -> None:
    workspace(tmp_path)
    out = tmp_path / "pca"
    argv = ["pca", str(tmp_path / "exc" / "cse.npz"), "--n-boot", "0", "-o", str(out)]
    assert call_main(cli.main, argv, capsys).code == 0
    (out / "stale_from_an_old_version.png").write_bytes(b"stale")
    marker = json.loads((out / MARKER).read_text())  # a file the earlier run wrote (listed), this one does not
    (out / MARKER).write_text(json.dumps({**marker, "files": [*marker["files"], "stale_from_an_old_version.png"]}))
    assert call_main(cli.main, argv, capsys).code == 0
    assert not (out / "stale_from_an_old_version.png").exists()
    assert out.stat().st_mode & 0o777 == 0o777 & ~_umask()  # not the 0700 of a temporary folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_table_output_with_missing_parent_is_created(tmp_path: Path, capsys) -> None:
    workspace(tmp_path)
    target = tmp_path / "new" / "deeper" / "table.md"
    result = call_main(cli.main, ["table", str(tmp_path / "results"), "-o", str(target)], capsys)
    assert result.code == 0, result.stderr
    assert "nnUNetTrainerPaperCSE" in target.read_text()
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not the 0600 of a temporary file
    assert [p.name for p in target.parent.iterdir()] == ["table.md"]  # no temporary file left


def test_concurrent_runs_never_merge(tmp_path: Path) -> None:
    """Two runs of one command into one folder: the later swap wins whole; the earlier one's files are gone."""
    out = tmp_path / "out"
    with staged_output(out, "cmd") as first:
        (first / "a.txt").write_text("first")
        with staged_output(out, "cmd") as second:  # finishes while the first is still running
            (second / "b.txt").write_text("second")
        assert {p.name for p in out.iterdir()} == {"b.txt", MARKER}
    assert {p.name for p in out.iterdir()} == {"a.txt", MARKER}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_folder_taken_by_someone_else_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(UserError, match="not written by nnunet-se-analyze"), staged_output(out, "cmd") as tmp:
        (tmp / "a.txt").write_text("ours")
        out.mkdir()
        (out / "theirs.txt").write_text("theirs")
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_same_run_may_replace_its_own_output_only(tmp_path: Path) -> None:
    """The identity in the marker: the same capture may be redone in place, another one may not overwrite it."""
    out = tmp_path / "exc"
    run = {"dataset": DATASET, "trainer": "nnUNetTrainerPaperCSE", "plans": "nnUNetPlans", "configuration": "2d",
           "folds": [0]}
    with staged_output(out, "cmd", identity=run) as tmp:
        (tmp / "a.npz").write_bytes(b"first")
    check_output_folder(out, "cmd", identity=dict(run))  # a rerun of the same capture: allowed
    with pytest.raises(UserError, match="another run"):
        check_output_folder(out, "cmd", identity={**run, "trainer": "nnUNetTrainerPaperMono"})
    with pytest.raises(UserError, match="another run"):
        check_output_folder(out, "cmd", identity={**run, "folds": [0, 1]})
