"""Excitation files: one ``.npz`` per trained fold plus an optional JSON sidecar with the same stem.

The ``.npz`` holds float arrays ``depth_<l>`` (l = 1 for the shallowest gated stage), each of shape
``(cases, channels)``, and a string array ``case_ids`` of length ``cases``. The sidecar holds the keys
``dataset``, ``trainer``, ``plans``, ``configuration``, ``fold``, ``checkpoint``, ``module``, ``flavour``,
``channels`` ({depth: C}) and ``versions``. Without a sidecar the model name is the file stem.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_se.errors import UserError

DEPTH_KEY = re.compile(r"^depth_(\d+)$")
SIDECAR_KEYS = ("dataset", "trainer", "plans", "configuration", "fold", "checkpoint", "module", "flavour", "channels")


@dataclass
class ExcitationSet:
    """Excitations of one model and fold: ``depths[l]`` has shape ``(cases, channels_l)``, values in [0, 1]."""

    path: Path
    depths: dict[int, np.ndarray]
    case_ids: list[str]
    meta: dict = field(default_factory=dict)

    @property
    def model(self) -> str:
        """The trainer name from the sidecar, else the file stem."""
        return str(self.meta.get("trainer") or self.path.stem)

    @property
    def dataset(self) -> str:
        return str(self.meta.get("dataset", ""))

    @property
    def fold(self) -> str:
        fold = self.meta.get("fold", "")
        return "" if fold is None else str(fold)


def sidecar_path(npz: Path) -> Path:
    return npz.with_suffix(".json")


def load_excitations(path: str | Path) -> ExcitationSet:
    """Read and validate one excitation file (and its sidecar when present); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such excitation file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a readable .npz file ({exc})") from exc
    depths: dict[int, np.ndarray] = {}
    for key, value in arrays.items():
        match = DEPTH_KEY.match(key)
        if match is None:
            continue
        if value.ndim != 2 or not np.issubdtype(value.dtype, np.floating):
            raise UserError(f"{path}: array {key} must be a float array of shape (cases, channels), got "
                            f"{value.dtype} {value.shape}")
        if not np.all(np.isfinite(value)):
            raise UserError(f"{path}: array {key} contains NaN or infinite values")
        depths[int(match.group(1))] = value.astype(np.float64)
    if not depths:
        raise UserError(f"{path}: no depth_<l> arrays (found {sorted(arrays) or 'nothing'})")
    if sorted(depths) != list(range(1, len(depths) + 1)):
        raise UserError(f"{path}: depths must be numbered 1..L without gaps, got {sorted(depths)}")
    n_cases = {v.shape[0] for v in depths.values()}
    if len(n_cases) != 1:
        raise UserError(f"{path}: depth arrays disagree on the number of cases: {sorted(n_cases)}")
    n = n_cases.pop()
    case_ids = [str(c) for c in arrays["case_ids"]] if "case_ids" in arrays else [str(i) for i in range(n)]
    if len(case_ids) != n:
        raise UserError(f"{path}: case_ids has {len(case_ids)} entries but the depth arrays have {n} rows")
    meta = _read_sidecar(path, depths)
    return ExcitationSet(path=path, depths=dict(sorted(depths.items())), case_ids=case_ids, meta=meta)


def _read_sidecar(path: Path, depths: dict[int, np.ndarray]) -> dict:
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{side}: invalid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise UserError(f"{side}: expected a JSON object")
    channels = meta.get("channels") or {}
    for depth, array in depths.items():
        declared = channels.get(str(depth))
        if declared is not None and int(declared) != array.shape[1]:
            raise UserError(f"{side}: channels[{depth}] = {declared} but {path.name} has {array.shape[1]} channels")
    return meta


def save_excitations(path: Path, depths: dict[int, np.ndarray], case_ids: Sequence[str], meta: dict) -> None:
    """Write ``path`` (.npz) and its sidecar; ``meta`` gets ``channels`` filled in from the arrays."""
    arrays = {f"depth_{d}": np.asarray(v, dtype=np.float32) for d, v in sorted(depths.items())}
    arrays["case_ids"] = np.asarray(list(case_ids), dtype=str)
    meta = {**meta, "channels": {str(d): int(v.shape[1]) for d, v in sorted(depths.items())}}
    with path.open("wb") as fh:
        np.savez(fh, **arrays)
    sidecar_path(path).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_many(paths: Sequence[str | Path]) -> list[ExcitationSet]:
    if not paths:
        raise UserError("no excitation files given")
    return [load_excitations(p) for p in paths]


@contextmanager
def staged_output(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success move its files into ``out`` (created if needed).

    Nothing lands in ``out`` when the body raises, so a failed command leaves no partial output.
    """
    import shutil
    import tempfile

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        out.mkdir(exist_ok=True)
        for item in sorted(tmp.iterdir()):
            item.replace(out / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
