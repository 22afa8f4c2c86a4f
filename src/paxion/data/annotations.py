"""Reading annotation files so that every malformed row is reported as ``file:line: what is wrong``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator, Sequence


class AnnotationError(ValueError):
    """A malformed or missing annotation file or row; the message starts with ``path[:line]``."""


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None


def read_json_list(path: str | Path) -> list[dict[str, Any]]:
    """A JSON file holding a list of objects (SSv2 style)."""
    items = read_json(path)
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise AnnotationError(f"{path}: expected a JSON list of objects")
    return items


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-empty line; tolerates the bare ``NaN`` pandas writes."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AnnotationError(f"{path}:{line_no}: invalid JSON line: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise AnnotationError(f"{path}:{line_no}: expected a JSON object")
            yield line_no, obj


def read_csv(
    path: str | Path, required: Sequence[str] = (), delimiter: str = ",", header: bool = True
) -> Iterator[tuple[int, dict[str, str] | list[str]]]:
    """(line number, row) with a header (dict rows, ``required`` columns checked) or without (list rows)."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        columns: list[str] = []
        if header:
            columns = next(reader, [])
            missing = [c for c in required if c not in columns]
            if missing:
                raise AnnotationError(f"{path}:1: missing columns {missing}; header has {columns}")
        for row in reader:
            line_no = reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            if header:
                if len(row) != len(columns):
                    raise AnnotationError(f"{path}:{line_no}: expected {len(columns)} fields, got {len(row)}")
                yield line_no, dict(zip(columns, row))
            else:
                yield line_no, row


def field(row: dict[str, Any], key: str, where: str, kind: type = str) -> Any:
    """``row[key]`` converted to ``kind``, or an error naming the row (``where`` = ``file:line``)."""
    if key not in row or row[key] is None:
        raise AnnotationError(f"{where}: missing field '{key}'")
    try:
        return kind(row[key])
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: field '{key}'={row[key]!r} is not a valid {kind.__name__}") from None
