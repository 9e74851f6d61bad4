"""Shared fixtures: the real dataset samples (``NNUNET_SE_REAL_SAMPLES``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each of the N workers (and every process it starts) gets cores // N torch threads: with
    ``-n 2`` on 2 cores, two threads per worker only made the workers compete (measured in
    ``benchmarks/results/test_suite_timings.md``)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(workers)))


@pytest.fixture(scope="session")
def real_samples() -> Path:
    """Folder with the real samples (``kvasir_seg/``, ``busi/``, ``isic2018/``).

    Skips outside CI when the variable is unset; in CI (``CI=true``) a missing folder is an error,
    so real-data tests are never silently skipped there.
    """
    value = os.environ.get("NNUNET_SE_REAL_SAMPLES")
    if not value:
        if os.environ.get("CI"):
            pytest.fail("CI=true but NNUNET_SE_REAL_SAMPLES is not set")
        pytest.skip("NNUNET_SE_REAL_SAMPLES is not set")
    path = Path(value)
    if not path.is_dir():
        pytest.fail(f"NNUNET_SE_REAL_SAMPLES={value} is not a folder")
    return path


@pytest.fixture(scope="session")
def authors_excitations(real_samples: Path) -> Path:
    """The authors' stored Fig. 3 excitations, ``authors_excitations/`` beside the real samples (same gating:
    skipped outside CI without ``NNUNET_SE_REAL_SAMPLES``, an error in CI when the folder is missing)."""
    path = real_samples.parent / "authors_excitations"
    if not (path / "fig3_published.json").is_file():
        pytest.fail(f"{path}/fig3_published.json is missing (expected beside NNUNET_SE_REAL_SAMPLES)")
    return path


# End-to-end nnU-Net session fixtures (tests/nnunet_e2e.py): nnunet_preprocessed, nnunet_e2e.
from nnunet_e2e import nnunet_e2e, nnunet_preprocessed  # noqa: E402, F401
