"""Writing lists of flat row dicts as CSV and JSON (the interchange formats of every analysis output)."""

from __future__ import annotations

import csv
import io
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


def json_text(payload) -> str:
    """Strict JSON (NaN/inf written as null), indented."""
    return json.dumps(_json_safe(payload), indent=2) + "\n"


def csv_text(rows: Sequence[dict]) -> str:
    """CSV with the union of the rows' keys as header, in first-seen order."""
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_json(path: Path, payload) -> None:
    path.write_text(json_text(payload))


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    path.write_text(csv_text(rows))
