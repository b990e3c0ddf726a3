"""`classifyd classify`: a file (or stdin) of texts in, one result row per text out.

    classifyd classify --model DIR reviews.jsonl --field body -o scored.jsonl   # or an org/name
    classifyd classify --url http://127.0.0.1:8000 reviews.csv --column text -o scored.csv

The texts run on a local Classifier (offline/classifier.py) or, with --url, on a running server
through the client (client/); either way at most one window of rows is held, and rows are
written in input order as their results arrive.

Rules, also in the README:
- Bad rows (blank, undecodable, not JSON, no such field, over-long without --auto-truncate)
  are reported on stderr with their line numbers, listed in --errors FILE, counted in the
  summary, and never stop the run.
- An existing output is refused unless --resume (skip the ids it holds, drop a last row a
  kill cut short, append the rest) or --overwrite says what to do with it.
- Exit status: 0 every row classified or reported as bad (3 instead when there were bad rows
  and --fail-on-bad-rows); 1 stopped by an error (model failed, server gone after retries:
  what is written stays valid, finish with --resume); 2 bad usage or unreadable input or
  output; 130 interrupted (SIGINT or SIGTERM), resumable like 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, replace
from types import FrameType
from typing import IO, Any

import orjson

from filejob.config import JobConfig
from filejob.inputs import (
    BadRow,
    InputError,
    InputSpec,
    Row,
    count_rows,
    guess_delimiter,
    guess_format,
    id_key,
    open_input,
    read_rows,
)
from filejob.outputs import (
    CsvSink,
    DoneIndex,
    JsonlSink,
    OutputError,
    Result,
    Sink,
    guess_output_format,
    resume,
)
from offline.options import TextOptions

PROG = "classifyd classify"
# Bad rows printed one by one before the rest are only counted (all go to --errors).
SHOWN_BAD_ROWS = 20
# Seconds between flushes of the output: a kill loses at most this much finished work.
FLUSH_EVERY_S = 0.5

EXIT_OK = 0
EXIT_STOPPED = 1
EXIT_USAGE = 2
EXIT_BAD_ROWS = 3
EXIT_INTERRUPTED = 130

# A text's outcome from either backend: its result, or why it was refused.
RowOutcome = Result | str
# Texts in, one outcome per text out, in order: a local Classifier or the client.
Backend = Callable[[Iterable[str]], Generator[RowOutcome, None, None]]


class UsageError(Exception):
    """The flags cannot work together, or the output cannot be opened as asked: exit 2."""


class Interrupted(BaseException):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the output is flushed first."""


class Report:
    """Counts, the progress bar, bad-row messages and the --errors file. Thread-safe: rows
    are read (bad ones reported) on the backend's reader thread, results written here."""

    def __init__(self, total: int | None, show_progress: bool, errors: IO[bytes] | None) -> None:
        self.classified = self.bad = self.skipped = 0
        self._lock = threading.Lock()
        self._errors = errors
        self._bar: Any = None
        if show_progress:
            from tqdm import tqdm

            size = shutil.get_terminal_size((100, 20))
            self._bar = tqdm(
                total=total,
                unit=" rows",
                file=sys.stderr,
                # A terminal that reports no size (some ptys) still gets a bar.
                ncols=size.columns,
                nrows=size.lines,
                mininterval=0.5,
                smoothing=0.05,
            )

    def _say(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def _tick(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def bad_row(self, line: int, row_id: object, reason: str) -> None:
        with self._lock:
            self.bad += 1
            if self.bad <= SHOWN_BAD_ROWS:
                self._say(f"{PROG}: line {line}: {reason}")
            elif self.bad == SHOWN_BAD_ROWS + 1:
                more = "listed in --errors" if self._errors else "counted at the end"
                self._say(f"{PROG}: more bad rows; the rest are {more}")
            if self._errors is not None:
                record = {"line": line, "id": row_id, "error": reason}
                self._errors.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            if self._bar is not None:
                self._bar.set_postfix(bad=self.bad, refresh=False)
            self._tick()

    def skip(self) -> None:
        with self._lock:
            self.skipped += 1
            self._tick()

    def done(self) -> None:
        with self._lock:
            self.classified += 1
            self._tick()

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.close()
            if self._errors is not None:
                self._errors.flush()


def _input_spec(job: JobConfig) -> InputSpec:
    path = job.input
    fmt = job.format or ("text" if path == "-" else guess_format(path))
    return InputSpec(
        path=path,
        format=fmt,
        field=job.field,
        id_field=job.id_field,
        column=job.column,
        id_column=job.id_column,
        delimiter=job.delimiter or guess_delimiter(path),
    )


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _open_output(job: JobConfig) -> tuple[IO[bytes], DoneIndex | None, bool]:
    """(stream, ids already written or None, write a CSV header)."""
    fmt = job.output_format or guess_output_format(job.output)
    if job.resume and job.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    if job.output is None or job.output == "-":
        if job.resume:
            raise UsageError("--resume needs an output file (-o FILE)")
        return sys.stdout.buffer, None, fmt == "csv"
    path = job.output
    if job.input != "-" and _same_file(job.input, path):
        raise UsageError("the output file is the input file")
    exists = os.path.exists(path) and os.path.getsize(path) > 0
    if exists and job.overwrite:
        return open(path, "wb"), None, fmt == "csv"
    if exists and not job.resume:
        raise UsageError(
            f"{path} exists; add --resume to classify only the rows it lacks, or --overwrite "
            "to start over"
        )
    if not exists:
        return open(path, "wb"), None, fmt == "csv"
    resumed = resume(path, fmt, job.include_text, guess_delimiter(path))
    if resumed.dropped_bytes:
        _say(f"dropped a last row cut short ({resumed.dropped_bytes} bytes) from {path}")
    _say(f"resuming: {len(resumed.done)} rows already in {path} will be skipped")
    return open(path, "ab"), resumed.done, resumed.needs_header


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _sink(job: JobConfig, out: IO[bytes], needs_header: bool) -> Sink:
    fmt = job.output_format or guess_output_format(job.output)
    if fmt == "csv":
        return CsvSink(out, job.include_text, guess_delimiter(job.output or ""), needs_header)
    return JsonlSink(out, job.include_text)


def _too_long(length: int, limit: int) -> str:
    return f"{length} tokens, more than the maximum of {limit}; shorten it or pass --auto-truncate"


def _local_outcomes(
    job: JobConfig, text: TextOptions, engine: dict[str, Any], stack: ExitStack
) -> Backend:
    """A function texts → outcomes in order, on a Classifier in this process."""
    from engine.errors import InputTooLong
    from offline.classifier import Classifier, Failed

    clf = stack.enter_context(
        Classifier(job.model, **engine, **asdict(text), chunk_size=job.batch_size)
    )

    def outcomes(texts: Iterable[str]) -> Generator[RowOutcome, None, None]:
        for item in clf.classify_iter(texts, errors="return"):
            if isinstance(item, Failed):
                error = item.error
                if isinstance(error, InputTooLong):
                    yield _too_long(error.length, error.limit)
                else:
                    yield error.message
            else:
                yield Result(item.label, item.probs, item.num_classes, item.prompt_tokens)

    return outcomes


def _remote_outcomes(url: str, job: JobConfig, text: TextOptions, stack: ExitStack) -> Backend:
    """A function texts → outcomes in order, from the server at --url."""
    from client import APIError, Client, Refused

    key = (job.api_key or "").split(",")[0] or None
    client = stack.enter_context(
        Client(
            url,
            api_key=key,
            model=text.adapter or (job.served_model_name or "").split(",")[0] or None,
            batch_size=job.batch_size,
            max_in_flight=job.max_in_flight,
            timeout=job.timeout,
            max_retries=job.max_retries,
            truncate_prompt_tokens=text.truncate_prompt_tokens,
            truncation_side=text.truncation_side,
            # Left unset unless turned off: the server's defaults are the same, and its
            # default activation is the model's.
            add_special_tokens=None if text.add_special_tokens else False,
            use_activation=None if text.use_activation else False,
        )
    )

    def refusal(item: Refused) -> str:
        # An over-long text worded as the local run words it: the 400 gives the lengths only
        # in its English, the server's /tokenize as numbers.
        if item.error.param != "input_tokens":
            return item.message
        try:
            counted = client.tokenize(item.text)
        except APIError:
            return item.message
        return _too_long(counted.count, counted.max_model_len)

    def outcomes(texts: Iterable[str]) -> Generator[RowOutcome, None, None]:
        for item in client.classify_iter(texts, errors="return"):
            if isinstance(item, Refused):
                yield refusal(item)
            else:
                yield Result(item.label, item.probs, item.num_classes, None)

    return outcomes


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted()


def classify_file(job: JobConfig, text: TextOptions, engine: dict[str, Any]) -> int:
    """The command, with the engine's options for a local run (EngineConfig's offline ones);
    returns the exit status (see the module docstring)."""
    if job.auto_truncate:
        text = replace(text, truncate_prompt_tokens=-1)
    try:
        spec = _input_spec(job)
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    show = job.progress == "always" or (job.progress == "auto" and sys.stderr.isatty())
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    began = time.perf_counter()
    report: Report | None = None
    sink: Sink | None = None
    stopped: str | None = None
    status = EXIT_OK
    with ExitStack() as stack:
        try:
            try:
                stream = open_input(spec.path)
            except OSError as exc:
                raise UsageError(f"cannot read {spec.path}: {exc.strerror or exc}") from None
            if spec.path != "-":
                stack.enter_context(stream)
            # Reads a CSV header now, so a missing column fails before the model loads.
            rows = read_rows(stream, spec)
            out, done, needs_header = _open_output(job)
            if out is not sys.stdout.buffer:
                stack.enter_context(out)
            errors = stack.enter_context(open(job.errors, "wb")) if job.errors else None
            sink = _sink(job, out, needs_header)
            try:
                outcomes = (
                    _remote_outcomes(job.url, job, text, stack)
                    if job.url
                    else _local_outcomes(job, text, engine, stack)
                )
            except Exception as exc:  # the model or the options could not be loaded
                _say(str(getattr(exc, "message", None) or exc))
                return EXIT_STOPPED
            report = Report(count_rows(spec) if show else None, show, errors)
            began = time.perf_counter()
            _pump(rows, done, outcomes, sink, report)
        except (UsageError, InputError, OutputError) as exc:
            _say(str(exc))
            return EXIT_USAGE
        except (KeyboardInterrupt, Interrupted):
            stopped, status = "interrupted", EXIT_INTERRUPTED
        except BrokenPipeError:
            # `... | head`: the reader left. Nothing more can be written; say so once.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            stopped, status = "stopped: the output was closed (broken pipe)", EXIT_STOPPED
        except Exception as exc:
            # The model failed or the server is gone (after retries): keep what is written.
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            stopped, status = f"stopped by an error: {message}", EXIT_STOPPED
            logging.getLogger("classifyd.batch").debug("stopped", exc_info=exc)
        finally:
            signal.signal(signal.SIGTERM, previous)
            if sink is not None:
                with contextlib.suppress(BrokenPipeError):
                    sink.flush()
            if report is not None:
                report.close()
    if report is None:
        _say("interrupted before the first row")
        return status
    elapsed = time.perf_counter() - began
    rate = report.classified / elapsed if elapsed > 0 else 0.0
    target = job.output if job.output not in (None, "-") else "stdout"
    skipped = f", {report.skipped} skipped (already in {target})" if report.skipped else ""
    _say(
        f"{report.classified} rows classified, {report.bad} bad{skipped} in {elapsed:.2f} s "
        f"({rate:.1f} texts/s)"
    )
    if stopped is not None:
        again = " Rerun with --resume to finish." if target != "stdout" else ""
        _say(f"{stopped}. The rows written so far are complete.{again}")
        return status
    if report.bad and job.fail_on_bad_rows:
        return EXIT_BAD_ROWS
    return EXIT_OK


def _pump(
    rows: Iterator[Row | BadRow],
    done: DoneIndex | None,
    outcomes: Backend,
    sink: Sink,
    report: Report,
) -> None:
    """Rows → texts for the backend; results back, in order, → the sink."""
    waiting: deque[Row] = deque()

    def texts() -> Iterator[str]:
        # Pulled by the backend's reader thread as its window frees.
        for item in rows:
            if isinstance(item, BadRow):
                report.bad_row(item.line, None, item.reason)
            elif done is not None and done.take(id_key(item.id)):
                report.skip()
            else:
                waiting.append(item)
                yield item.text

    results = outcomes(texts())
    # Closed here, whatever ends the loop, so the backend's queued work stops before it does.
    with contextlib.closing(results):
        _write(results, waiting, sink, report)
    if done is not None and done.matched < len(done):
        _say(
            f"{len(done) - done.matched} rows in the output match no row of the input "
            "(another input, or changed ids?)"
        )


def _write(results: Iterator[RowOutcome], waiting: deque[Row], sink: Sink, report: Report) -> None:
    flushed = time.monotonic()
    for outcome in results:
        row = waiting.popleft()
        if isinstance(outcome, str):
            report.bad_row(row.line, row.id, outcome)
        else:
            sink.write(row, outcome)
            report.done()
        now = time.monotonic()
        # Also when every row read so far is written: the input may be a pipe that pauses.
        if not waiting or now - flushed >= FLUSH_EVERY_S:
            sink.flush()
            flushed = now
