"""Input rows for `classifyd classify`: text lines, JSONL (one field) or CSV (one column).

Every row comes out as a `Row` (an id and a text) or a `BadRow` (a line number and why), so
one empty line or one undecodable byte is reported, not fatal. Files are read as bytes, a
line at a time, so memory stays flat whatever the file's size and one bad line cannot spoil
the lines around it. The default id is the line number (where the row starts, from 1).
"""

from __future__ import annotations

import csv
import gzip
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

import orjson

InputFormat = Literal["text", "jsonl", "csv"]
# A row's id: the line number, or a JSONL/CSV value (JSON scalars only, so it round-trips).
RowId = str | int

_BOM = b"\xef\xbb\xbf"


class InputError(Exception):
    """The input as a whole cannot be read as asked (no such column, no header): exit 2."""


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    id: RowId
    text: str


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str


@dataclass(frozen=True)
class InputSpec:
    path: str  # "-" for stdin
    format: InputFormat
    field: str = "text"
    id_field: str | None = None
    column: str = "text"
    id_column: str | None = None
    delimiter: str = ","


def guess_format(path: str) -> InputFormat:
    """By extension (after any .gz): .jsonl/.ndjson → jsonl, .csv/.tsv → csv, else text."""
    name = path.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    return "text"


def guess_delimiter(path: str) -> str:
    return "\t" if path.lower().removesuffix(".gz").endswith(".tsv") else ","


def open_input(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    if path.endswith(".gz"):
        return cast("IO[bytes]", gzip.open(path, "rb"))
    return open(path, "rb")


def count_rows(spec: InputSpec) -> int | None:
    """Rows in a plain file, for the progress bar's ETA: a fast count of line ends (a CSV
    value that spans lines makes it an upper bound). None when it cannot be known cheaply."""
    if spec.path == "-" or spec.path.endswith(".gz"):
        return None
    try:
        if not Path(spec.path).is_file():
            return None
        lines = 0
        last = b"\n"
        with open(spec.path, "rb") as f:
            while block := f.read(1 << 20):
                lines += block.count(b"\n")
                last = block[-1:]
        if last != b"\n":
            lines += 1
    except OSError:
        return None
    return max(0, lines - 1) if spec.format == "csv" else lines


def read_rows(stream: IO[bytes], spec: InputSpec) -> Iterator[Row | BadRow]:
    if spec.format == "jsonl":
        return _jsonl_rows(stream, spec.field, spec.id_field)
    if spec.format == "csv":
        return _csv_rows(stream, spec)
    return _text_rows(stream)


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes without the line end), a UTF-8 byte-order mark dropped."""
    for number, raw in enumerate(stream, 1):
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if raw.endswith(b"\n"):
            raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
        yield number, raw


def _checked_text(line: int, row_id: RowId, text: str) -> Row | BadRow:
    # Whitespace alone classifies as nothing; the server refuses "" for the same reason.
    if not text.strip():
        return BadRow(line, "empty text")
    return Row(line, row_id, text)


def _text_rows(stream: IO[bytes]) -> Iterator[Row | BadRow]:
    for number, raw in _lines(stream):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield BadRow(number, f"not valid UTF-8 (byte {exc.start + 1} of the line)")
            continue
        yield _checked_text(number, number, text)


def _row_id(value: Any, name: str) -> tuple[RowId | None, str]:
    """(the id, "") or (None, why it cannot be one)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None, f"the id field `{name}` is {type(value).__name__}, not a string or an integer"
    if value == "":
        return None, f"the id field `{name}` is empty"
    return value, ""


def _jsonl_rows(stream: IO[bytes], field: str, id_field: str | None) -> Iterator[Row | BadRow]:
    for number, raw in _lines(stream):
        if not raw.strip():
            yield BadRow(number, "empty line")
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield BadRow(number, f"not valid JSON: {exc}")
            continue
        if not isinstance(obj, dict):
            yield BadRow(number, f"not a JSON object but {type(obj).__name__}")
            continue
        if field not in obj:
            yield BadRow(number, f"no field `{field}`")
            continue
        text = obj[field]
        if not isinstance(text, str):
            yield BadRow(number, f"the field `{field}` is {type(text).__name__}, not a string")
            continue
        row_id: RowId = number
        if id_field is not None:
            if id_field not in obj:
                yield BadRow(number, f"no id field `{id_field}`")
                continue
            found, why = _row_id(obj[id_field], id_field)
            if found is None:
                yield BadRow(number, why)
                continue
            row_id = found
        yield _checked_text(number, row_id, text)


class _LineCounter:
    """Feeds csv.reader one decoded physical line at a time and counts them, so each record
    knows the line it starts on. Undecodable bytes survive as surrogates (surrogateescape),
    to be reported for their row alone."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._lines = _lines(stream)
        self.line = 0

    def __iter__(self) -> Iterator[str]:
        for number, raw in self._lines:
            self.line = number
            yield raw.decode("utf-8", "surrogateescape") + "\n"


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _column(header: list[str], name: str, flag: str) -> int:
    try:
        return header.index(name)
    except ValueError:
        shown = ", ".join(f"`{h}`" for h in header) or "none"
        raise InputError(
            f"the CSV header has no column `{name}` ({flag}); it has {shown}"
        ) from None


def _csv_rows(stream: IO[bytes], spec: InputSpec) -> Iterator[Row | BadRow]:
    """Reads the header at once (a missing column is an InputError before any work), then
    returns the records' generator."""
    # One document may be longer than csv's default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    lines = _LineCounter(stream)
    reader = csv.reader(lines, delimiter=spec.delimiter)
    try:
        header = next(reader)
    except StopIteration:
        return iter(())
    except csv.Error as exc:
        raise InputError(f"cannot read the CSV header: {exc}") from None
    if any(_has_surrogates(h) for h in header):
        raise InputError("the CSV header is not valid UTF-8")
    text_at = _column(header, spec.column, "--column")
    id_at = None if spec.id_column is None else _column(header, spec.id_column, "--id-column")
    return _csv_records(reader, lines, spec, text_at, id_at)


def _csv_records(
    reader: Any, lines: _LineCounter, spec: InputSpec, text_at: int, id_at: int | None
) -> Iterator[Row | BadRow]:
    while True:
        start = lines.line + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield BadRow(start, f"not valid CSV: {exc}")
            continue
        if not record:
            yield BadRow(start, "empty line")
            continue
        if text_at >= len(record):
            yield BadRow(start, f"no value in column `{spec.column}`")
            continue
        text = record[text_at]
        row_id: RowId = start
        if id_at is not None:
            if id_at >= len(record) or not record[id_at]:
                yield BadRow(start, f"no value in id column `{spec.id_column}`")
                continue
            row_id = record[id_at]
        if _has_surrogates(text) or (isinstance(row_id, str) and _has_surrogates(row_id)):
            yield BadRow(start, "not valid UTF-8")
            continue
        yield _checked_text(start, row_id, text)


def id_key(row_id: Any) -> str:
    """An id as text, equal for the input's value and the value read back from the output
    (JSONL keeps 17 an integer; CSV writes it as "17"), so resume can match them."""
    if isinstance(row_id, str):
        return row_id
    return orjson.dumps(row_id).decode()
