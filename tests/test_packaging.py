"""The three top-level folders are installed under the one namespace ``nnunet_se``."""

from __future__ import annotations

import importlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"nnunet_se.conversion": "conversion", "nnunet_se.trainers": "trainers", "nnunet_se.analysis": "analysis"}


@pytest.mark.parametrize("package, folder", sorted(MAPPED.items()))
def test_editable_install_maps_folder(package: str, folder: str) -> None:
    module = importlib.import_module(package)
    assert Path(module.__file__).resolve().parent == ROOT / folder


def test_no_generic_top_level_packages_installed() -> None:
    for name in ("conversion", "trainers", "analysis"):
        assert importlib.util.find_spec(name) is None, f"{name} must not be importable as a top-level package"


@pytest.mark.slow
def test_wheel_contains_and_imports_mapped_packages(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheel_dir), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("nnunet_se-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for folder in MAPPED.values():
        assert f"nnunet_se/{folder}/__init__.py" in names
    assert not any(n.startswith(("conversion/", "trainers/", "analysis/")) for n in names)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    m = importlib.import_module(name)\n"
        "    print(m.__file__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *MAPPED],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    ).stdout.split()
    assert len(out) == 3
    for path in out:
        assert Path(path).resolve().is_relative_to(target.resolve())
