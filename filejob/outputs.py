"""Result rows for `classifyd classify` (JSONL or CSV), and resuming a file a killed run left.

A row is written whole, in input order, as soon as its result is in. Resuming reads the ids
already written into a compact index, drops a last row a kill cut short, and appends the
rest; a damaged row anywhere else stops the run instead of guessing.
"""

from __future__ import annotations

import csv
import io
import os
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Literal

import orjson

from filejob.inputs import Row, id_key

OutputFormat = Literal["jsonl", "csv"]


class OutputError(Exception):
    """The output file cannot be resumed as it is (damaged, other columns): exit 2."""


@dataclass(frozen=True, slots=True)
class Result:
    label: str
    probs: list[float]
    num_classes: int
    # None through --url: the wire reports tokens per request, not per text.
    prompt_tokens: int | None


def guess_output_format(path: str | None) -> OutputFormat:
    if path is not None and path.lower().endswith((".csv", ".tsv")):
        return "csv"
    return "jsonl"


def csv_header(include_text: bool) -> list[str]:
    return [
        "id",
        "label",
        "probs",
        "num_classes",
        "prompt_tokens",
        *(["text"] if include_text else []),
    ]


class JsonlSink:
    def __init__(self, out: IO[bytes], include_text: bool) -> None:
        self._out = out
        self._include_text = include_text

    def write(self, row: Row, result: Result) -> None:
        record: dict[str, object] = {
            "id": row.id,
            "label": result.label,
            "probs": result.probs,
            "num_classes": result.num_classes,
            "prompt_tokens": result.prompt_tokens,
        }
        if self._include_text:
            record["text"] = row.text
        # One write per row: a kill leaves at most the last line cut short.
        self._out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def flush(self) -> None:
        self._out.flush()


class CsvSink:
    """`probs` is a JSON array in one cell, so every model has the same columns."""

    def __init__(
        self, out: IO[bytes], include_text: bool, delimiter: str, write_header: bool
    ) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, delimiter=delimiter, lineterminator="\n")
        self._out = out
        self._include_text = include_text
        if write_header:
            self._emit(csv_header(include_text))

    def _emit(self, cells: list[str]) -> None:
        self._writer.writerow(cells)
        self._out.write(self._buffer.getvalue().encode("utf-8"))
        self._buffer.seek(0)
        self._buffer.truncate()

    def write(self, row: Row, result: Result) -> None:
        cells = [
            id_key(row.id),
            result.label,
            orjson.dumps(result.probs).decode(),
            str(result.num_classes),
            "" if result.prompt_tokens is None else str(result.prompt_tokens),
        ]
        if self._include_text:
            cells.append(row.text)
        self._emit(cells)

    def flush(self) -> None:
        self._out.flush()


Sink = JsonlSink | CsvSink


class DoneIndex:
    """The ids already in the output: their 64-bit hashes in a sorted array (9 bytes a row,
    where a set of strings would take ~60), matched as a multiset so that an input with a
    repeated id resumes with as many of them skipped as were written. Hashes are of this
    process (str hash), built and queried in the same run."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._hashes = array("q", sorted(array("q", (hash(k) for k in keys))))
        self._taken = bytearray(len(self._hashes))
        self.matched = 0

    def __len__(self) -> int:
        return len(self._hashes)

    def take(self, key: str) -> bool:
        """True (once per written copy) if a row with this id is already in the output."""
        hashed = hash(key)
        at = bisect_left(self._hashes, hashed)
        while at < len(self._hashes) and self._hashes[at] == hashed:
            if not self._taken[at]:
                self._taken[at] = 1
                self.matched += 1
                return True
            at += 1
        return False


@dataclass(frozen=True)
class Resumed:
    done: DoneIndex
    # Bytes of a last row cut short by a kill, dropped from the file.
    dropped_bytes: int
    # The file held no complete header (CSV): write one.
    needs_header: bool


def resume(path: str, fmt: OutputFormat, include_text: bool, delimiter: str) -> Resumed:
    """Index what `path` holds and cut it back to its last complete row."""
    size = os.path.getsize(path)
    end = _End()
    if fmt == "jsonl":
        done = DoneIndex(_scan_jsonl(path, end))
    else:
        done = DoneIndex(_scan_csv(path, csv_header(include_text), delimiter, end))
    good = end.good
    if good < size:
        with open(path, "r+b") as f:
            f.truncate(good)
    return Resumed(done, size - good, fmt == "csv" and good == 0)


@dataclass
class _End:
    # Bytes up to the end of the last complete row (the scans below advance it).
    good: int = 0


def _scan_jsonl(path: str, end: _End) -> Iterator[str]:
    """The ids in a JSONL output; `end.good` follows the complete rows."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                break  # the last line, cut short by a kill: dropped and redone
            try:
                key = id_key(orjson.loads(raw)["id"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise OutputError(
                    f"{path} line {number} is not a result row; fix or remove it, or start over "
                    "with --overwrite"
                ) from None
            end.good += len(raw)
            yield key


class _OffsetLines:
    """Lines for csv.reader, counting the bytes handed out, so a record's end is known."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.offset = 0
        self.ended_with_newline = True
        self.exhausted = False

    def __iter__(self) -> Iterator[str]:
        for raw in self._f:
            self.offset += len(raw)
            self.ended_with_newline = raw.endswith(b"\n")
            yield raw.decode("utf-8", "surrogateescape")
        self.exhausted = True


def _scan_csv(path: str, header: list[str], delimiter: str, end: _End) -> Iterator[str]:
    """The ids in a CSV output (header checked); `end.good` follows the complete records."""
    with open(path, "rb") as f:
        lines = _OffsetLines(f)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        first = True
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                if lines.exhausted:
                    break  # a quoted value cut short at the end of the file
                raise OutputError(f"{path} is not valid CSV: {exc}") from None
            if not lines.ended_with_newline:
                break  # the last record, cut short by a kill
            if first:
                if record != header:
                    raise OutputError(
                        f"{path} has the columns {record}, not {header}; resume with the same "
                        "flags (--include-text), or start over with --overwrite"
                    )
                first = False
            elif len(record) != len(header) or not record[0]:
                raise OutputError(
                    f"{path} has a damaged row at line {reader.line_num}; fix or remove it, or "
                    "start over with --overwrite"
                )
            else:
                end.good = lines.offset
                yield record[0]
                continue
            end.good = lines.offset
