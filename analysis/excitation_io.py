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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_se.errors import UserError
from nnunet_se.reading import read_file

DEPTH_KEY = re.compile(r"^depth_(\d+)$")
MAX_NPZ_BYTES = 2**30
"""Largest uncompressed content of an excitation file (bytes): 10,000 cases x 1,000 channels x 8 depths in float32
is 320 MB."""


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
    def plans(self) -> str:
        return str(self.meta.get("plans") or "")

    @property
    def configuration(self) -> str:
        return str(self.meta.get("configuration") or "")

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
            declared = sum(info.file_size for info in data.zip.infolist())
            if declared > MAX_NPZ_BYTES:  # checked before any array is decompressed
                raise UserError(f"{path}: declares {declared} bytes of arrays, more than the {MAX_NPZ_BYTES} an "
                                "excitation file may have")
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = "empty file" if path.stat().st_size == 0 else f"{type(exc).__name__}: {exc}"
        raise UserError(f"{path}: not a readable .npz file ({reason})") from exc
    depths: dict[int, np.ndarray] = {}
    for key, value in arrays.items():
        match = DEPTH_KEY.match(key)
        if match is None:
            continue
        if value.ndim != 2 or not np.issubdtype(value.dtype, np.floating) or 0 in value.shape:
            raise UserError(f"{path}: array {key} must be a non-empty float array of shape (cases, channels), got "
                            f"{value.dtype} {value.shape}")
        if not np.all(np.isfinite(value)):
            raise UserError(f"{path}: array {key} contains NaN or infinite values")
        if value.min() < 0.0 or value.max() > 1.0:  # gates are sigmoid outputs
            raise UserError(f"{path}: array {key} has values outside [0, 1] (min {value.min():g}, max "
                            f"{value.max():g}); excitations are gate outputs in [0, 1]")
        if value.min() < 0 or value.max() > 1:  # every gate is a sigmoid (nnunet_se.modules)
            raise UserError(f"{path}: array {key} has values outside [0, 1] (min {value.min():.6g}, max "
                            f"{value.max():.6g}); excitations are gate outputs, within [0, 1]")
        depths[int(match.group(1))] = value.astype(np.float64)
    if not depths:
        raise UserError(f"{path}: no depth_<l> arrays (found {sorted(arrays) or 'nothing'})")
    if sorted(depths) != list(range(1, len(depths) + 1)):
        raise UserError(f"{path}: depths must be numbered 1..L without gaps, got {sorted(depths)}")
    n_cases = {v.shape[0] for v in depths.values()}
    if len(n_cases) != 1:
        raise UserError(f"{path}: depth arrays disagree on the number of cases: {sorted(n_cases)}")
    n = n_cases.pop()
    if "case_ids" in arrays and arrays["case_ids"].ndim != 1:
        raise UserError(f"{path}: case_ids must be a 1-d array, got shape {arrays['case_ids'].shape}")
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
        meta = json.loads(read_file(side, str(side)))  # a regular file, size-bounded
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{side}: invalid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise UserError(f"{side}: expected a JSON object, got {type(meta).__name__}")
    for key in ("dataset", "trainer", "plans", "configuration"):
        if not isinstance(meta.get(key, ""), str | type(None)):
            raise UserError(f"{side}: '{key}' must be a string, got {meta[key]!r}")
    fold = meta.get("fold")
    if fold is not None and (isinstance(fold, bool) or not isinstance(fold, int | str)):
        raise UserError(f"{side}: 'fold' must be an integer, got {fold!r}")
    channels = meta.get("channels") or {}
    if not isinstance(channels, dict):
        raise UserError(f"{side}: 'channels' must be an object {{depth: C}}, got {channels!r}")
    for depth, array in depths.items():
        declared = channels.get(str(depth))
        if declared is None:
            continue
        if isinstance(declared, bool) or not isinstance(declared, int):
            raise UserError(f"{side}: channels[{depth}] must be an integer, got {declared!r}")
        if declared != array.shape[1]:
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


def input_paths(paths: Sequence[str | Path]) -> list[Path]:
    """The excitation files and their sidecars: what an output folder must never contain."""
    return [q for p in paths for q in (Path(p), sidecar_path(Path(p)))]


def load_many(paths: Sequence[str | Path]) -> list[ExcitationSet]:
    if not paths:
        raise UserError("no excitation files given")
    return [load_excitations(p) for p in paths]
