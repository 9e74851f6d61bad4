"""``excitations`` -> ``pca`` -> ``responses`` (+ ``table``) through the console script on the e2e-trained models."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nnunet_e2e")]


@dataclass
class Pipeline:
    run: object
    out: Path
    files: dict[str, Path]  # trainer -> excitation file of fold 0, val cases
    folder_trainer: str  # the last trainer trained, run on the raw imagesTs folder with the best checkpoint
    folder_file: Path


def expected_channels(run, trainer: str) -> list[int]:
    """The network's channels per gated depth: every encoder stage but the bottleneck."""
    from nnunet_se.trainers import ALL_TRAINERS

    cls = ALL_TRAINERS[trainer]
    if getattr(cls, "family", None) == "paper":
        return list(cls.features_per_stage[:-1])
    plans = json.loads((run.model_folder(trainer) / "plans.json").read_text())
    return list(plans["configurations"][run.configuration]["architecture"]["arch_kwargs"]["features_per_stage"][:-1])


@pytest.fixture(scope="session")  # session: xdist interleaves modules of the group
def pipeline(nnunet_e2e, tmp_path_factory) -> Pipeline:
    run = nnunet_e2e
    if not run.trainers:
        pytest.fail("the nnunet_e2e fixture trained no trainer")
    out = tmp_path_factory.mktemp("analysis_e2e")
    files, commands = {}, []
    for trainer in run.trainers:
        commands.append(["nnunet-se-analyze", "excitations", "-d", str(run.dataset_id), "-tr", trainer, "-f", "0",
                         "--checkpoint", "final", "--device", "cpu", "-o", str(out / "exc" / trainer)])  # a folder each
        files[trainer] = (out / "exc" / trainer /
                          f"{run.dataset_name}__{trainer}__{run.plans}__{run.configuration}__fold_0.npz")
    last = run.trainers[-1]
    exc = [str(f) for f in files.values()]
    run.run_all([  # one process (NnunetRun.run_all), each command through its console-script entry point
        *commands,
        ["nnunet-se-analyze", "excitations", "-d", run.dataset_name, "-tr", last, "-f", "0", "--cases",
         str(run.raw / run.dataset_name / "imagesTs"), "--device", "cpu", "-o", str(out / "exc_ts")],
        ["nnunet-se-analyze", "table", str(run.results), "--format", "json", "-o", str(out / "table.json")],
        ["nnunet-se-analyze", "pca", *exc, "--n-boot", "50", "-o", str(out / "pca")],
        ["nnunet-se-analyze", "responses", *exc, "--dice", str(out / "table.json"), "-o", str(out / "resp")],
    ])
    folder_file = out / "exc_ts" / files[last].name
    return Pipeline(run, out, files, last, folder_file)


def test_excitation_files_match_network_channels(pipeline: Pipeline) -> None:
    run = pipeline.run
    val = json.loads((run.preprocessed / run.dataset_name / "splits_final.json").read_text())[0]["val"]
    for trainer, path in pipeline.files.items():
        channels = expected_channels(run, trainer)
        with np.load(path) as data:
            depths = sorted(k for k in data.files if k.startswith("depth_"))
            assert depths == [f"depth_{d}" for d in range(1, len(channels) + 1)]
            for d, c in enumerate(channels, start=1):
                g = data[f"depth_{d}"]
                assert g.shape == (len(val), c) and g.dtype == np.float32
                assert np.all((g >= 0) & (g <= 1))
            assert sorted(data["case_ids"].tolist()) == sorted(val)
        meta = json.loads(path.with_suffix(".json").read_text())
        assert {"dataset", "trainer", "plans", "configuration", "fold", "checkpoint", "module", "flavour", "channels",
                "versions"} <= set(meta)  # the sidecar fields docs/analysis.md lists
        assert meta["channels"] == {str(d): c for d, c in enumerate(channels, start=1)}
        assert (meta["dataset"], meta["trainer"], meta["fold"], meta["checkpoint"]) == (
            run.dataset_name, trainer, 0, "final")
        assert meta["module"] == "mono" and meta["test_time_augmentation"] is False
        assert meta["gates"] == {str(d): "gate" for d in range(1, len(channels) + 1)}  # channel gates (not sSE)
        assert {"nnunetv2", "torch"} <= set(meta["versions"])


def test_folder_cases(pipeline: Pipeline) -> None:
    run = pipeline.run
    with np.load(pipeline.folder_file) as data:
        assert sorted(data["case_ids"].tolist()) == sorted(
            p.name.removesuffix("_0000.png") for p in (run.raw / run.dataset_name / "imagesTs").iterdir())
        assert data["depth_1"].shape[1] == expected_channels(run, pipeline.folder_trainer)[0]
    assert json.loads(pipeline.folder_file.with_suffix(".json").read_text())["checkpoint"] == "best"


def test_pca_and_responses_outputs(pipeline: Pipeline) -> None:
    run = pipeline.run
    rows = list(csv.DictReader((pipeline.out / "pca" / "thresholds.csv").open()))
    for trainer in pipeline.files:
        mine = [r for r in rows if r["model"] == trainer]
        assert [int(r["channels"]) for r in mine] == expected_channels(run, trainer)
        assert all(1 <= int(r["k"]) <= min(int(r["n_cases"]), int(r["channels"])) for r in mine)
    assert (pipeline.out / "pca" / "thresholds.png").stat().st_size > 0
    variability = json.loads((pipeline.out / "resp" / "variability.json").read_text())
    assert len(variability["rows"]) == sum(len(expected_channels(run, t)) for t in pipeline.files)
    points = variability["dice"]["points"]  # Dice from the trained folds' real summary.json
    assert {p["model"] for p in points} == set(pipeline.files)
    assert all(0.0 <= p["dice"] <= 100.0 for p in points)
    assert (pipeline.out / "resp" / "responses.pdf").stat().st_size > 0
