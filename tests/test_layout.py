"""nnunet_se.layout: nnU-Net's folder conventions against hand-built folder trees and nnU-Net's own helpers.

Oracles: nnU-Net's ``get_output_folder`` / ``convert_identifier_to_trainer_plans_config`` (model folder names) and
``maybe_convert_to_dataset_name`` (dataset ids), which read the same environment variables; fold counts and error
cases are written by hand into ``tmp_path``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnunet_se.errors import UserError
from nnunet_se.layout import (
    ALL_FOLDS,
    DEFAULT_CONFIGURATION,
    DEFAULT_PLANS,
    NNUNET_ROOTS,
    Dataset,
    check_folds,
    dataset_folds,
    find_datasets,
    fold_ranges,
    folds_for,
    model_folder,
    model_folder_name,
    nnunet_roots,
    parse_model_folder_name,
    resolve_datasets,
    split_fold_count,
)

FOLD = {"train": ["a", "b"], "val": ["c"]}


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """nnU-Net folders with Dataset601_Kvasir (raw, preprocessed, results), Dataset602_Busi (raw only), a file and
    a folder that only look like datasets; the environment points at them."""
    roots = {name: tmp_path / name for name in NNUNET_ROOTS}
    for name in NNUNET_ROOTS:
        (roots[name] / "Dataset601_Kvasir").mkdir(parents=True)
        monkeypatch.setenv(name, str(roots[name]))
    (roots["nnUNet_raw"] / "Dataset602_Busi").mkdir()
    (roots["nnUNet_raw"] / "Dataset603_File").write_text("not a folder")
    (roots["nnUNet_raw"] / "Dataset60_Short").mkdir()  # two digits: not a dataset folder
    (roots["nnUNet_raw"] / "notes").mkdir()
    return roots


def test_defaults_are_nnunets() -> None:
    """nnU-Net's default plans identifier (the default of its model folder helper, as of ``nnUNetv2_train -p``) and
    the 2D configuration that every paper dataset uses."""
    import inspect

    from nnunetv2.utilities.file_path_utilities import get_output_folder

    assert DEFAULT_PLANS == inspect.signature(get_output_folder).parameters["plans_identifier"].default
    assert DEFAULT_CONFIGURATION == "2d"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, {"nnUNet_raw": None, "nnUNet_preprocessed": None, "nnUNet_results": None}),
        ({"nnUNet_raw": "/r", "nnUNet_preprocessed": "", "nnUNet_results": "rel"},
         {"nnUNet_raw": Path("/r"), "nnUNet_preprocessed": None, "nnUNet_results": Path("rel")}),
        ({"nnUNet_RAW": "/wrong/case", "nnUNet_results": "/res"},
         {"nnUNet_raw": None, "nnUNet_preprocessed": None, "nnUNet_results": Path("/res")}),
    ],
)
def test_nnunet_roots(environ: dict[str, str], expected: dict[str, Path | None]) -> None:
    assert nnunet_roots(environ) == expected


@pytest.mark.parametrize(
    ("trainer", "plans", "configuration"),
    [
        ("nnUNetTrainerPaperMono", "nnUNetPlans", "2d"),
        ("nnUNetTrainerCSE_original", "nnUNetResEncUNetMPlans", "3d_fullres"),
        ("nnUNetTrainer", "nnUNetPlans", "3d_cascade_fullres"),
        ("MyTrainer", "my.plans-v2", "2d"),
    ],
)
def test_model_folder_matches_nnunet(tree: dict[str, Path], trainer: str, plans: str, configuration: str) -> None:
    from nnunetv2.utilities.file_path_utilities import convert_identifier_to_trainer_plans_config, get_output_folder

    name = model_folder_name(trainer, plans, configuration)
    folder = model_folder(tree["nnUNet_results"], "Dataset601_Kvasir", trainer, plans, configuration)
    assert folder == Path(get_output_folder(601, trainer, plans, configuration))
    assert folder.name == name
    assert parse_model_folder_name(name) == tuple(convert_identifier_to_trainer_plans_config(name))
    assert parse_model_folder_name(name) == (trainer, plans, configuration)


def test_model_folder_defaults() -> None:
    assert model_folder(Path("r"), "Dataset601_Kvasir", "T") == Path("r/Dataset601_Kvasir/T__nnUNetPlans__2d")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("T__P__C", ("T", "P", "C")),
        ("T__P__Q__C", ("T", "P__Q", "C")),  # the trainer ends at the first "__", the configuration after the last
        ("T_x__P__C_y", ("T_x", "P", "C_y")),
        ("T__P___C", ("T", "P_", "C")),  # a configuration does not start with "_"
    ],
)
def test_parse_model_folder_name(name: str, expected: tuple[str, str, str]) -> None:
    assert parse_model_folder_name(name) == expected


@pytest.mark.parametrize("name", ["T__P", "TPC", "__P__C", "T__P__", "fold_0", "Dataset601_Kvasir", "T____C"])
def test_parse_model_folder_name_refuses(name: str) -> None:
    with pytest.raises(ValueError, match="not a <trainer>__<plans>__<configuration> folder name"):
        parse_model_folder_name(name)


def test_find_datasets(tree: dict[str, Path]) -> None:
    assert find_datasets([None, tree["nnUNet_raw"], tree["nnUNet_results"], tree["nnUNet_raw"] / "missing"]) == {
        601: "Dataset601_Kvasir", 602: "Dataset602_Busi"}


def test_find_datasets_refuses_one_id_named_twice(tree: dict[str, Path]) -> None:
    (tree["nnUNet_results"] / "Dataset602_Other").mkdir()
    with pytest.raises(UserError, match="dataset id 602 is also named Dataset602_Busi"):
        find_datasets(tree.values())


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (["601"], [Dataset(601, "Dataset601_Kvasir")]),
        (["602", "Dataset601_Kvasir"], [Dataset(602, "Dataset602_Busi"), Dataset(601, "Dataset601_Kvasir")]),
        (["Dataset604_New"], [Dataset(604, "Dataset604_New")]),  # a folder name not created yet is taken as given
    ],
)
def test_resolve_datasets_like_nnunet(tree: dict[str, Path], tokens: list[str], expected: list[Dataset]) -> None:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    assert resolve_datasets(tokens, nnunet_roots()) == expected
    assert [maybe_convert_to_dataset_name(t) for t in tokens] == [d.name for d in expected]


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (["605"], "-d/--datasets 605: no Dataset605_\\* folder in the nnU-Net folders \\(nnUNet_raw="),
        (["0"], "--datasets 0: expected a dataset id \\(1-999\\)"),
        (["1000"], "--datasets 1000: expected a dataset id"),
        (["0601"], "--datasets 0601: expected a dataset id"),
        (["kvasir"], "--datasets kvasir: expected a dataset id"),
        (["Dataset000_Zero"], "expected a dataset id"),
        (["Dataset601_Other"], "dataset id 601 is Dataset601_Kvasir"),
        (["601", "Dataset601_Kvasir"], "a dataset is named twice"),
    ],
)
def test_resolve_datasets_refuses(tree: dict[str, Path], tokens: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        resolve_datasets(tokens, nnunet_roots())


def test_resolve_datasets_id_range_ends(tmp_path: Path) -> None:
    """1 and 999 are the first and last dataset ids (three digits in the folder name)."""
    for name in ("Dataset001_First", "Dataset999_Last"):
        (tmp_path / name).mkdir()
    assert resolve_datasets(["1", "999"], {"nnUNet_raw": tmp_path}) == [Dataset(1, "Dataset001_First"),
                                                                        Dataset(999, "Dataset999_Last")]


def _splits(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "splits_final.json").write_text(json.dumps([FOLD] * n))


def test_dataset_folds_prefers_the_preprocessed_split(tree: dict[str, Path]) -> None:
    kvasir = Dataset(601, "Dataset601_Kvasir")
    _splits(tree["nnUNet_raw"] / kvasir.name, 10)
    raw_only = dataset_folds(nnunet_roots(), kvasir)
    assert (raw_only.folds, raw_only.assumed, raw_only.warning) == (list(range(10)), False, None)
    assert raw_only.lookup == f"{tree['nnUNet_raw'] / kvasir.name / 'splits_final.json'} has 10 folds"
    _splits(tree["nnUNet_preprocessed"] / kvasir.name, 3)
    assert dataset_folds(nnunet_roots(), kvasir).folds == [0, 1, 2]


def test_dataset_folds_without_a_split_assumes_nnunets_five(tree: dict[str, Path]) -> None:
    busi = Dataset(602, "Dataset602_Busi")
    split = dataset_folds(nnunet_roots(), busi)
    assert (split.folds, split.assumed) == ([0, 1, 2, 3, 4], True)
    assert split.warning == (f"no splits_final.json in {tree['nnUNet_preprocessed'] / busi.name} or "
                             f"{tree['nnUNet_raw'] / busi.name} yet, and nnU-Net's default split of Dataset602_Busi "
                             "has 5 folds; assuming folds 0-4")
    unset = dataset_folds({"nnUNet_raw": None}, busi)
    assert unset.lookup == "neither nnUNet_preprocessed nor nnUNet_raw is set" and unset.assumed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "non-empty list"),
        ('{"train": [], "val": []}', "non-empty list"),
        ('[{"train": []}]', "non-empty list"),
        ("[1, 2]", "non-empty list"),
        ("not json", "not a splits file"),
        ("[" * 100_000, "not a splits file"),
    ],
)
def test_split_fold_count_refuses(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "splits_final.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        split_fold_count(path)


def test_check_folds_both_sides_of_the_last_fold(tree: dict[str, Path]) -> None:
    kvasir = Dataset(601, "Dataset601_Kvasir")
    _splits(tree["nnUNet_preprocessed"] / kvasir.name, 3)
    assert check_folds([0, 2], nnunet_roots(), kvasir).folds == [0, 1, 2]
    with pytest.raises(UserError, match="-f/--folds 3: not a fold of Dataset601_Kvasir .*has 3 folds, 0-2"):
        check_folds([2, 3], nnunet_roots(), kvasir)


@pytest.mark.parametrize(("requested", "expected"), [(ALL_FOLDS, [0, 1, 2]), (None, [0, 1, 2]), ([1], [1])])
def test_folds_for(tree: dict[str, Path], requested: list[int] | str | None, expected: list[int]) -> None:
    kvasir = Dataset(601, "Dataset601_Kvasir")
    _splits(tree["nnUNet_raw"] / kvasir.name, 3)
    folds, split = folds_for(requested, nnunet_roots(), kvasir)
    assert folds == expected and split.folds == [0, 1, 2]


def test_folds_for_checks_explicit_folds(tree: dict[str, Path]) -> None:
    with pytest.raises(UserError, match="-f/--folds 5,7: not a fold of Dataset602_Busi"):
        folds_for([4, 5, 7], nnunet_roots(), Dataset(602, "Dataset602_Busi"))


@pytest.mark.parametrize(("folds", "text"), [([], "-"), ([3], "3"), ([0, 1], "0-1"), ([7, 0, 1, 2, 4], "0-2,4,7")])
def test_fold_ranges(folds: list[int], text: str) -> None:
    assert fold_ranges(folds) == text
