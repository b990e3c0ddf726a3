"""`classifyd classify`: file in → file out for each format, stdin, bad rows with line numbers,
resume after a cut-short file and after a kill, and --url equal to the local run and the
server's own answers."""

from __future__ import annotations

import csv
import gzip
import io
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.builders import sentences
from tests.filejob.conftest import QUIET, Run
from tests.live import Child
from tests.reference import reference_probs
from tests.support import max_abs_diff

Cli = Callable[..., Run]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _csv(path: Path, delimiter: str = ",") -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def _check(rows: list[dict[str, Any]], reference: list[list[float]]) -> None:
    probs = [r["probs"] if isinstance(r["probs"], list) else json.loads(r["probs"]) for r in rows]
    assert max_abs_diff(probs, reference) <= 1e-5
    labels = ["neg", "neu", "pos"]
    for row, p in zip(rows, probs, strict=True):
        assert row["label"] == labels[max(range(3), key=p.__getitem__)]
        assert int(row["num_classes"]) == 3


@pytest.mark.parametrize("name", ["in.txt", "in.txt.gz"])
def test_text_file_to_jsonl(
    classify_cli: Cli, bert_dir: Path, tmp_path: Path, texts: list[str], reference: Any, name: str
) -> None:
    source = tmp_path / name
    data = ("\n".join(texts) + "\n").encode()
    source.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    out = tmp_path / "out.jsonl"
    run = classify_cli("--model", str(bert_dir), str(source), "-o", str(out), *QUIET)
    assert run.status == 0, run.stderr
    rows = _jsonl(out)
    assert [r["id"] for r in rows] == list(range(1, len(texts) + 1))
    assert all(set(r) == {"id", "label", "probs", "num_classes", "prompt_tokens"} for r in rows)
    assert all(isinstance(r["prompt_tokens"], int) and r["prompt_tokens"] >= 3 for r in rows)
    _check(rows, reference)
    assert f"{len(texts)} rows classified, 0 bad" in run.stderr
    # Piped stderr: no progress bar.
    assert "rows/s" not in run.stderr


def test_jsonl_field_and_id_to_csv_with_text(
    classify_cli: Cli, bert_dir: Path, tmp_path: Path, texts: list[str], reference: Any
) -> None:
    source = tmp_path / "in.jsonl"
    lines = [json.dumps({"key": f"r{i}", "review": t, "stars": 3}) for i, t in enumerate(texts)]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    run = classify_cli(
        "--model", str(bert_dir), str(source), "--field", "review", "--id-field", "key",
        "-o", str(out), "--include-text", *QUIET,
    )  # fmt: skip
    assert run.status == 0, run.stderr
    rows = _csv(out)
    assert list(rows[0]) == ["id", "label", "probs", "num_classes", "prompt_tokens", "text"]
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(len(texts))]
    assert [r["text"] for r in rows] == texts
    _check(rows, reference)


def test_csv_column_to_jsonl_with_bom_and_quoted_newlines(
    classify_cli: Cli, bert_dir: Path, tmp_path: Path
) -> None:
    texts = ["a great movie", "the plot was dull,\nand long", 'lovely "quoted" cast']
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["n", "body"])
    for i, text in enumerate(texts):
        writer.writerow([i, text])
    source = tmp_path / "in.csv"
    source.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
    out = tmp_path / "out.jsonl"
    run = classify_cli(
        "--model", str(bert_dir), str(source), "--column", "body", "--include-text",
        "-o", str(out), *QUIET,
    )  # fmt: skip
    assert run.status == 0, run.stderr
    rows = _jsonl(out)
    # Default ids: the line each record starts on (the header is line 1).
    assert [r["id"] for r in rows] == [2, 3, 5]
    assert [r["text"] for r in rows] == texts
    _check(rows, reference_probs(bert_dir, texts))


def test_stdin_to_stdout(
    classify_cli: Cli,
    bert_dir: Path,
    texts: list[str],
    reference: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = ("\n".join(texts[:20]) + "\n").encode()
    stdout = io.TextIOWrapper(io.BytesIO())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    monkeypatch.setattr(sys, "stdout", stdout)
    run = classify_cli("--model", str(bert_dir), "-", *QUIET)
    assert run.status == 0, run.stderr
    rows = [json.loads(line) for line in stdout.buffer.getvalue().decode().splitlines()]  # type: ignore[attr-defined]
    assert [r["id"] for r in rows] == list(range(1, 21))
    _check(rows, reference[:20])
    # stderr is not a terminal here: the summary, no progress bar.
    assert "rows/s" not in run.stderr and "%|" not in run.stderr
    assert "20 rows classified" in run.stderr


def test_progress_bar_when_asked(classify_cli: Cli, bert_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("one\ntwo\nthree\n", encoding="utf-8")
    run = classify_cli(
        "--model", str(bert_dir), str(source), "-o", str(tmp_path / "o.jsonl"),
        "--progress", "always", *QUIET,
    )  # fmt: skip
    assert run.status == 0
    assert "3/3" in run.stderr and "rows/s" in run.stderr


def test_bad_rows_are_reported_with_line_numbers(
    classify_cli: Cli, bert_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b'{"text": "a good film"}\n'  # 1
        b"\n"  # 2 empty line
        b"{not json\n"  # 3
        b'{"body": "x"}\n'  # 4 no field
        b'{"text": 5}\n'  # 5 not a string
        b'{"text": "   "}\n'  # 6 empty text
        b'{"text": "caf\xff"}\n'  # 7 not UTF-8
        b'{"text": "' + b"great " * 200 + b'"}\n'  # 8 over-long
        b'{"text": "the end"}'  # 9, no final newline
    )
    out = tmp_path / "out.jsonl"
    errors = tmp_path / "errors.jsonl"
    run = classify_cli(
        "--model", str(bert_dir), str(source), "-o", str(out), "--errors", str(errors), *QUIET
    )
    assert run.status == 0, run.stderr
    assert [r["id"] for r in _jsonl(out)] == [1, 9]
    bad = _jsonl(errors)
    assert [b["line"] for b in bad] == [2, 3, 4, 5, 6, 7, 8]
    for line in (2, 3, 4, 5, 6, 7, 8):
        assert f"line {line}: " in run.stderr
    assert "no field `text`" in run.stderr
    assert "202 tokens, more than the maximum of 128" in run.stderr
    assert bad[-1]["id"] == 8
    assert "2 rows classified, 7 bad" in run.stderr
    # Over-long texts are classified under --auto-truncate; the rest stay bad.
    run = classify_cli(
        "--model", str(bert_dir), str(source), "-o", str(out), "--overwrite",
        "--auto-truncate", "--fail-on-bad-rows", *QUIET,
    )  # fmt: skip
    assert run.status == 3
    rows = _jsonl(out)
    assert [r["id"] for r in rows] == [1, 8, 9] and rows[1]["prompt_tokens"] == 128


def test_an_existing_output_needs_resume_or_overwrite(
    classify_cli: Cli, bert_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("text\nfine\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": 1}\n', encoding="utf-8")
    run = classify_cli("--model", str(bert_dir), str(source), "-o", str(out), *QUIET)
    assert run.status == 2 and "--resume" in run.stderr and "--overwrite" in run.stderr
    run = classify_cli("--model", "/nonexistent", str(source), "--column", "body", *QUIET)
    assert run.status == 2 and "no column `body`" in run.stderr  # before any model loads
    run = classify_cli("--model", str(bert_dir), str(source), "--resume", *QUIET)
    assert run.status == 2 and "needs an output file" in run.stderr


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_resume_after_a_cut_short_file(
    classify_cli: Cli, bert_dir: Path, tmp_path: Path, suffix: str
) -> None:
    texts = sentences(50, seed=9)
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    full = tmp_path / f"full.{suffix}"
    assert classify_cli("--model", str(bert_dir), str(source), "-o", str(full), *QUIET).status == 0
    whole = full.read_bytes()
    # What a kill leaves: 20 complete rows (plus the CSV header) and half of the next one.
    keep = 21 if suffix == "csv" else 20
    lines = whole.splitlines(keepends=True)
    partial = b"".join(lines[:keep]) + lines[keep][: len(lines[keep]) // 2]
    out = tmp_path / f"out.{suffix}"
    out.write_bytes(partial)
    run = classify_cli("--model", str(bert_dir), str(source), "-o", str(out), "--resume", *QUIET)
    assert run.status == 0, run.stderr
    assert "30 rows classified, 0 bad, 20 skipped" in run.stderr
    assert "dropped a last row cut short" in run.stderr
    result = out.read_bytes()
    # The 20 rows already written are kept byte for byte; none is redone or lost.
    assert result.startswith(b"".join(lines[:keep]))
    rows = _csv(out) if suffix == "csv" else _jsonl(out)
    assert [int(r["id"]) for r in rows] == list(range(1, 51))
    # Resuming a complete file does nothing.
    run = classify_cli("--model", str(bert_dir), str(source), "-o", str(out), "--resume", *QUIET)
    assert "0 rows classified, 0 bad, 50 skipped" in run.stderr
    assert out.read_bytes() == result


def test_a_killed_run_resumes_without_redoing_rows(
    classify_cli: Cli, bert_dir: Path, tmp_path: Path, stalled_run: Child
) -> None:
    texts = sentences(3000, seed=11, max_words=12)
    texts[1500] = ""  # a bad row in the part the resumed run does
    source = tmp_path / "in.txt"
    source.write_text("\n".join(texts) + "\n", encoding="utf-8")
    # The child reads the same lines from its stdin (so its ids are the same line numbers)
    # and writes them to its output; it is killed with rows still in flight.
    proc, out = stalled_run.proc, stalled_run.log.with_name("stalled.jsonl")
    assert proc.stdin is not None
    proc.stdin.write(("\n".join(texts[:1000]) + "\n").encode())
    proc.stdin.flush()
    deadline = time.monotonic() + 120
    while not out.exists() or out.read_bytes().count(b"\n") < 50:
        assert proc.poll() is None, stalled_run.tail()
        assert time.monotonic() < deadline, f"no rows written: {stalled_run.tail()}"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    before = out.read_bytes()
    complete = before[: before.rfind(b"\n") + 1]
    done = complete.count(b"\n")
    assert 50 <= done <= 1000, done
    run = classify_cli("--model", str(bert_dir), str(source), "-o", str(out), "--resume", *QUIET)
    assert run.status == 0, run.stderr
    assert f"{2999 - done} rows classified, 1 bad, {done} skipped" in run.stderr
    assert "line 1501: empty text" in run.stderr
    after = out.read_bytes()
    assert after.startswith(complete)
    ids = [r["id"] for r in _jsonl(out)]
    assert ids == [i for i in range(1, 3001) if i != 1501]


def test_url_equals_local_and_the_servers_answers(
    classify_cli: Cli,
    bert_dir: Path,
    tmp_path: Path,
    live_server: str,
    texts: list[str],
    reference: Any,
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\n".join([*texts, "", "great " * 200]) + "\n", encoding="utf-8")
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    too_long = f"line {len(texts) + 2}: 202 tokens, more than the maximum of 128"
    run = classify_cli("--model", str(bert_dir), str(source), "-o", str(local), *QUIET)
    assert run.status == 0, run.stderr
    assert too_long in run.stderr
    run = classify_cli(
        "--url", live_server, str(source), "-o", str(remote), "--batch-size", "7",
        "--max-in-flight", "3",
    )  # fmt: skip
    assert run.status == 0, run.stderr
    assert f"{len(texts)} rows classified, 2 bad" in run.stderr
    assert too_long in run.stderr  # the server's 400 for that one text alone
    a, b = _jsonl(local), _jsonl(remote)
    assert [r["id"] for r in a] == [r["id"] for r in b] == list(range(1, len(texts) + 1))
    assert [r["label"] for r in a] == [r["label"] for r in b]
    assert all(r["prompt_tokens"] is None for r in b)  # the wire has no per-text count
    served = httpx.post(f"{live_server}/classify", json={"input": texts}, timeout=60).json()
    server_probs = [d["probs"] for d in served["data"]]
    assert max_abs_diff([r["probs"] for r in b], server_probs) <= 1e-5
    assert max_abs_diff([r["probs"] for r in a], server_probs) <= 1e-5
    _check(b, reference)
    _check(a, reference)


def test_help_names_every_flag_with_its_env_variable(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["classify", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("-o OUTPUT, --output OUTPUT", "--field", "--column", "--resume", "--url",
                 "--batch-size", "--max-in-flight", "--api-key", "--auto-truncate"):  # fmt: skip
        assert flag in text, flag
    assert "(default: 64; env CLASSIFYD_BATCH_SIZE)" in text
    assert "(default: none; env CLASSIFYD_URL)" in text
