"""Packaging: the three top-level folders are installed under the one namespace ``nnunet_se``, and the declared
dependencies are exactly the third-party distributions the installed code imports."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"nnunet_se.conversion": "conversion", "nnunet_se.trainers": "trainers", "nnunet_se.analysis": "analysis"}
INSTALLED_FOLDERS = ("nnunet_se", *MAPPED.values())
# Distributions needed at run time that no source file imports by name: distribution -> (the source text that
# needs it, why). The test declares them needed exactly while that text occurs in the installed code.
RUNTIME_ONLY = {"jinja2": (".to_latex(", "pandas renders DataFrame.to_latex through its jinja2 Styler")}


@pytest.mark.parametrize("package, folder", sorted(MAPPED.items()))
def test_editable_install_maps_folder(package: str, folder: str) -> None:
    module = importlib.import_module(package)
    assert Path(module.__file__).resolve().parent == ROOT / folder


def test_no_generic_top_level_packages_installed(tmp_path: Path) -> None:
    """Checked in a fresh interpreter started outside the checkout without ``PYTHONPATH``: ``python -m pytest``
    puts the repository root on ``sys.path``, where the folders are importable whatever the installation does."""
    code = "import importlib.util, sys; print(*[n for n in sys.argv[1:] if importlib.util.find_spec(n)])"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code, *MAPPED.values()], check=True, capture_output=True, text=True,
                         cwd=tmp_path, env=env).stdout.split()
    assert out == [], f"{out} must not be importable as top-level packages"


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


def _source_files() -> list[Path]:
    return sorted(f for folder in INSTALLED_FOLDERS for f in (ROOT / folder).rglob("*.py"))


def _imported_top_level_modules() -> dict[str, str]:
    """Absolute imports of the installed code that are neither stdlib nor first party: module -> first file."""
    found: dict[str, str] = {}
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "nnunet_se":
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_declared_dependencies_are_the_imported_ones() -> None:
    """pyproject's ``dependencies`` and run-time extras (all but ``dev``) == the distributions of the imported
    third-party modules (import names mapped by ``importlib.metadata.packages_distributions()``) + the run-time-only
    ones whose use is in the source."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = {extra: {canonicalize_name(Requirement(r).name) for r in reqs}
                for extra, reqs in project["optional-dependencies"].items() if extra != "dev"}
    declared = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    declared |= set().union(*optional.values())
    distributions = importlib.metadata.packages_distributions()
    imported = _imported_top_level_modules()
    unmapped = sorted(f"{module} ({where})" for module, where in imported.items() if module not in distributions)
    assert not unmapped, f"imported but not installed: {unmapped}"
    needed = {canonicalize_name(d) for module in imported for d in distributions[module]}
    source = "".join(path.read_text() for path in _source_files())
    needed |= {dist for dist, (text, _) in RUNTIME_ONLY.items() if text in source}
    assert sorted(needed - declared) == [], "imported but not declared in pyproject.toml"
    assert sorted(declared - needed) == [], "declared in pyproject.toml but never imported"


def test_import_scan_sees_lazy_and_nested_imports() -> None:
    """Control: imports inside functions and try blocks count (torchvision in the self-check, matplotlib in the
    demo report), relative imports and first-party modules do not."""
    imported = _imported_top_level_modules()
    assert imported["torchvision"] == "nnunet_se/workflow/selfcheck.py"
    assert {"matplotlib", "numpy", "torch"} <= set(imported)
    assert "nnunet_se" not in imported and "os" not in imported


@pytest.mark.xdist_group("nnunet_e2e")
def test_xdist_groups_reach_the_scheduler(request: pytest.FixtureRequest) -> None:
    """Under ``--dist loadgroup`` a grouped test's id carries ``@<group>``, which is how pytest-xdist keeps the group
    on one worker (pytest 9.2 dropped it: hence the pin in the dev extra); the end-to-end tests rely on it to train
    their shared models once."""
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@nnunet_e2e"), request.node.nodeid
