"""Per-epoch run logs as CSV or JSON lines, safe to append to across resumes.

The trainer keeps every logged row in its checkpoint; on resume :meth:`RunLog.rewrite` writes
the file again from those rows (atomically), so rows of epochs that are re-run after a kill
are never duplicated and rows written before the kill are never lost. :meth:`RunLog.append`
adds one row (a CSV whose columns change is rewritten with the union of the columns).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._checks import check_choice
from .checkpoint import atomic_write_text

FORMATS = ("csv", "jsonl")


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RunLog:
    """One log file ``<directory>/log.<csv|jsonl>`` of rows ``{column: number or str}``."""

    def __init__(self, directory: str | Path, fmt: str = "csv") -> None:
        check_choice("log format", fmt, FORMATS)
        self.format = fmt
        self.path = Path(directory) / f"log.{fmt}"
        self.rows: list[dict[str, Any]] = []

    def _columns(self, rows: Sequence[dict[str, Any]]) -> list[str]:
        cols: list[str] = []
        for r in rows:
            cols.extend(k for k in r if k not in cols)
        return cols

    def _render(self, rows: Sequence[dict[str, Any]]) -> str:
        if self.format == "jsonl":
            return "".join(json.dumps({k: _json_value(v) for k, v in r.items()}) + "\n"
                           for r in rows)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self._columns(rows), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue() if rows else ""

    def rewrite(self, rows: Sequence[dict[str, Any]]) -> None:
        """Replace the file's contents with ``rows`` (atomically)."""
        self.rows = [dict(r) for r in rows]
        atomic_write_text(self._render(self.rows), self.path)

    def append(self, row: dict[str, Any]) -> None:
        """Add one row at the end of the file."""
        new_columns = self.format == "csv" and bool(self.rows) and any(
            k not in self._columns(self.rows) for k in row)
        self.rows.append(dict(row))
        if not self.path.exists() or new_columns:
            self.rewrite(self.rows)
            return
        if self.format == "jsonl":
            text = json.dumps({k: _json_value(v) for k, v in row.items()}) + "\n"
        else:
            buf = io.StringIO()
            csv.DictWriter(buf, fieldnames=self._columns(self.rows),
                           lineterminator="\n").writerow(row)
            text = buf.getvalue()
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()

    def read(self) -> list[dict[str, Any]]:
        """The rows in the file (CSV values as strings, JSON values as written)."""
        return read_log_rows(self.path) if self.path.exists() else []


def read_log_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``.csv`` (header row; values as strings) or ``.jsonl`` log file (one JSON
    object per line, values as written); a malformed JSON line is an error naming it."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {i}: not JSON ({e.msg})") from None
        return rows
    if path.suffix == ".csv":
        return list(csv.DictReader(io.StringIO(text)))
    raise ValueError(f"training log {path}: expected a .csv or .jsonl file")


__all__ = ["FORMATS", "RunLog", "read_log_rows"]
