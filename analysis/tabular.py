"""Writing lists of flat row dicts as CSV and JSON (the interchange formats of every analysis output)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return value


def write_json(path: Path, payload) -> None:
    """JSON with NaN/inf written as null (strict JSON)."""
    path.write_text(json.dumps(_json_safe(payload), indent=2) + "\n")


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    """CSV with the union of the rows' keys as header, in first-seen order."""
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
