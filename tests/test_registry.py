"""The trainer registry (nnunet_se/trainer_registry.py): families, baselines and Table I rows against the paper's
Table I, against what the trainer names promise, and against ``nnunet-se list``; name checks and family expansion."""

from __future__ import annotations

import subprocess
import sys

import pytest
from trainer_checks import promise

from nnunet_se.errors import UserError
from nnunet_se.trainer_registry import (
    baseline_of,
    check_trainer,
    expand_trainers,
    families,
    table_row_of,
    trainer_infos,
)

# The first column of the paper's Table I (Martins, Coimbra, Renna), top to bottom.
PAPER_TABLE_I_ROWS = ("U-Net", "+cSE", "+SRM", "+FCA", "+Mono")
STOCK = "nnUNetTrainer"  # nnU-Net's own trainer class


def test_module_import_does_not_import_torch() -> None:
    code = "import sys, nnunet_se.trainer_registry; assert 'torch' not in sys.modules and 'nnunetv2' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_lists_nnunets_trainer_and_every_plugin_trainer() -> None:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunet_se.trainers import ALL_TRAINERS

    assert nnUNetTrainer.__name__ == STOCK
    assert list(trainer_infos()) == [STOCK, *ALL_TRAINERS]
    assert all(name == info.name for name, info in trainer_infos().items())


def test_transcribed_table_i_has_the_papers_rows() -> None:
    from nnunet_se.analysis.paper_values import TABLE_I

    assert all(tuple(rows) == PAPER_TABLE_I_ROWS for rows in TABLE_I.values())


@pytest.mark.parametrize("family", ["auto", "paper"])
def test_family_has_one_trainer_per_table_i_row(family: str) -> None:
    """Each Table I row once; the row's module is the one the trainer's name and module attribute say."""
    rows = {table_row_of(name): name for name in families()[family] if table_row_of(name)}
    assert sorted(rows) == sorted(PAPER_TABLE_I_ROWS)
    assert len(rows) == sum(table_row_of(name) is not None for name in families()[family])  # no row twice
    for row, name in rows.items():
        info, named = trainer_infos()[name], promise(name)
        expected = None if row == "U-Net" else row.removeprefix("+").lower()
        assert info.recalibration == expected == (named.module.name if named.module else None)
        assert info.flavour in ("paper", "-") and info.skip_connections


def test_original_family_has_no_table_i_row_but_its_baseline() -> None:
    members = families()["original"]
    assert [table_row_of(name) for name in members] == ["U-Net"] + [None] * (len(members) - 1)
    assert members[0] == STOCK
    assert all(trainer_infos()[name].flavour == "original" for name in members[1:])


def test_rows_only_where_the_paper_has_them() -> None:
    """No row for sSE, scSE (not in Table I), cSE without skips (Fig. 3) or any original-flavour trainer."""
    without = {name for name, info in trainer_infos().items() if info.table_row is None}
    for name in without:
        named = promise(name)
        assert (named.module is not None and named.module.name in ("sse", "scse")) or not named.skip_connections \
            or named.flavour == "original", name


@pytest.mark.parametrize("family", ["auto", "original", "paper"])
def test_family_baseline_comes_first_and_every_member_is_tested_against_it(family: str) -> None:
    baseline, *others = families()[family]
    assert baseline == ("nnUNetTrainerPaper" if family == "paper" else STOCK)
    assert baseline_of(baseline) is None and table_row_of(baseline) == "U-Net"
    assert trainer_infos()[baseline].recalibration is None
    assert others and all(baseline_of(name) == baseline for name in others)
    assert all(trainer_infos()[name].family == family for name in others)
    assert len(set(families()[family])) == len(families()[family])


def test_every_trainer_is_in_a_family() -> None:
    assert set().union(*map(set, families().values())) == set(trainer_infos())


def _table(text: str) -> list[dict[str, str]]:
    """Rows of a ``format_table`` block: column spans from the dashed line under the header."""
    header, dashes, *lines = text.splitlines()
    spans, start = [], 0
    for width in map(len, dashes.split("  ")):
        spans.append((start, start + width))
        start += width + 2
    names = [header[a:b].strip() for a, b in spans]
    return [{n: line[a:b].strip() for n, (a, b) in zip(names, spans, strict=True)} for line in lines]


def test_list_shows_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    from nnunet_se.workflow import listing

    assert listing.main(["trainers"], prog="nnunet-se list") == 0
    trainers_block, families_block = capsys.readouterr().out.split("\n\n")
    shown = {row["trainer"]: row for row in _table(trainers_block)}
    assert list(shown) == list(trainer_infos())
    for name, info in trainer_infos().items():
        row = shown[name]
        assert (row["family"], row["baseline"], row["Table I row"]) == (
            info.family, info.baseline or "-", info.table_row or "-")
        assert row["module"].split()[0] == (info.recalibration or "-")
    expansions = {row["family"]: row["-tr <family> expands to (baseline first)"].split()
                  for row in _table(families_block)}
    assert expansions == {family: list(members) for family, members in families().items()}
    assert all(expand_trainers([family]) == members for family, members in expansions.items())


def test_list_all_shows_the_modules_too(capsys: pytest.CaptureFixture[str]) -> None:
    from nnunet_se.modules import available_recalibrations, parameter_count
    from nnunet_se.workflow import listing

    assert listing.main([], prog="nnunet-se list") == 0
    modules = {row["module"]: row for row in _table(capsys.readouterr().out.split("\n\n")[-1])}
    assert list(modules) == available_recalibrations()
    for name, row in modules.items():
        assert row["params C=64 paper"] == str(parameter_count(name, 64))
        assert row["params C=64 original"] == str(parameter_count(name, 64, flavour="original"))


@pytest.mark.parametrize(
    ("name", "families_allowed", "suggestion"),
    [
        ("nnUNetTrainerPaperMon", True, "nnUNetTrainerPaperMono"),
        ("nnUNetTrainer-Mono", False, "nnUNetTrainerMono"),
        ("nnUNetTrainerCSE_orignal", True, "nnUNetTrainerCSE_original"),
        ("papr", True, "paper"),
        ("orginal", True, "original"),
    ],
)
def test_unknown_name_gets_the_closest_match(name: str, families_allowed: bool, suggestion: str) -> None:
    with pytest.raises(UserError) as error:
        check_trainer(name, "--trainers", families=families_allowed)
    message = str(error.value)
    assert message.startswith(f"--trainers {name}: unknown trainer")
    assert f"did you mean {suggestion}?" in message
    assert ("families: auto, original, paper;" in message) == families_allowed


def test_family_names_are_refused_where_families_are_not_allowed() -> None:
    assert check_trainer("paper") == "paper"
    with pytest.raises(UserError, match=r"^-tr paper: unknown trainer; paper is a family \(nnUNetTrainerPaper "
                                        r"nnUNetTrainerPaperCSE .*\), this option takes trainer names; trainers: "):
        check_trainer("paper", families=False)
    with pytest.raises(UserError) as error:
        check_trainer("zzz")
    assert "did you mean" not in str(error.value) and str(error.value).startswith("-tr zzz: unknown trainer or family")


def test_expand_keeps_first_mention_order_without_duplicates() -> None:
    expanded = expand_trainers(["nnUNetTrainerPaperMono", "paper", "nnUNetTrainer", "auto", "original", "paper"])
    paper = [n for n in families()["paper"] if n != "nnUNetTrainerPaperMono"]
    auto = [n for n in families()["auto"] if n != STOCK]
    original = [n for n in families()["original"] if n != STOCK]
    assert expanded == ["nnUNetTrainerPaperMono", *paper, STOCK, *auto, *original]
    # 8 paper + 7 auto (with nnUNetTrainer) + 5 original-flavour trainers: every name the registry knows, once
    assert len(expanded) == 20 == len(trainer_infos())
    with pytest.raises(UserError, match="^--trainers nnUNetTrainer-Mono: "):
        expand_trainers(["paper", "nnUNetTrainer-Mono"], "--trainers")


def test_lookups_of_unknown_trainers() -> None:
    assert baseline_of("MyThirdPartyTrainer") is None and table_row_of("MyThirdPartyTrainer") is None
    assert baseline_of(STOCK) is None
    assert (baseline_of("nnUNetTrainerPaperCSENoSkip"), table_row_of("nnUNetTrainerPaperCSENoSkip")) == (
        "nnUNetTrainerPaper", None)


def test_paper_values_come_from_the_table_row() -> None:
    from nnunet_se.analysis.paper_values import paper_value

    # the paper's Table I, BUSI column: U-Net 62.20 +- 2.40; +Mono 69.00 +- 2.53 ‡; ISIC18 +cSE 85.94 +- 0.36 †
    assert paper_value("Dataset603_BUSI", "nnUNetTrainer") == (62.20, 2.40, "")
    assert paper_value("Dataset603_BUSI", "nnUNetTrainerPaperMono") == (69.00, 2.53, "‡")
    assert paper_value("Dataset601_ISIC2018", "nnUNetTrainerCSE") == (85.94, 0.36, "†")
    for no_row in ("nnUNetTrainerPaperSSE", "nnUNetTrainerCSE_original", "nnUNetTrainerPaperCSENoSkip", "MyTrainer"):
        assert paper_value("Dataset603_BUSI", no_row) is None
    assert paper_value("Dataset999_Other", "nnUNetTrainerPaperMono") is None


def test_demo_trainers_are_tested_against_the_demo_baseline() -> None:
    from nnunet_se.workflow.demo import PROFILES
    from nnunet_se.workflow.demo_trainers import DEMO_TRAINERS, common_baseline, demo_infos

    assert DEMO_TRAINERS["nnUNetTrainerPaperCSE_demo"].baseline == "nnUNetTrainerPaper_demo"
    assert DEMO_TRAINERS["nnUNetTrainerPaper_demo"].baseline is None
    assert DEMO_TRAINERS["nnUNetTrainerPaperMono_demo"].table_row == "+Mono"
    for profile in PROFILES.values():
        assert common_baseline(profile.trainers) == profile.trainers[0]  # the profile lists its baseline first
        assert demo_infos(profile.trainers)[profile.trainers[0]].recalibration is None
    # the gpu profile trains the paper family with skip connections (Table I's five + sSE and scSE)
    paper = [n for n in families()["paper"] if trainer_infos()[n].skip_connections]
    assert list(PROFILES["gpu"].trainers) == paper
    with pytest.raises(ValueError, match="one common baseline"):
        common_baseline(["nnUNetTrainerCSE", "nnUNetTrainerPaperCSE_demo"])
