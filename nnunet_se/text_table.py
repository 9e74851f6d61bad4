"""Plain-text tables for the terminal (``nnunet-se list``, ``nnunet-se status``)."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain-text table: the header, a dashed rule, then one line per row; columns left-aligned, padded to their
    widest cell and separated by two spaces; trailing spaces stripped. Every row has ``len(header)`` cells."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
