"""`classifyd serve | classify | build-default`: flags, each also settable as a CLASSIFYD_*
variable."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from engine import EngineConfig
from engine.config import default_num_threads
from server.config import ServerConfig


def _env(name: str) -> str:
    return "CLASSIFYD_" + name.upper().replace("-", "_")


def _add(
    parser: argparse.ArgumentParser,
    name: str,
    help_text: str,
    default: Any = None,
    type_: Callable[[str], Any] = str,
    short: str | None = None,
    **kwargs: Any,
) -> None:
    """Add --name (and `short`, e.g. -o), defaulting to $CLASSIFYD_NAME, then `default`;
    --help shows both."""
    env = _env(name)
    raw = os.environ.get(env)
    value = default
    if raw is not None:
        listed = kwargs.get("nargs") == "+" or kwargs.get("action") == "append"
        value = [v for v in raw.split(",") if v] if listed else type_(raw)
    shown = "none" if default is None else default
    parser.add_argument(
        *([short] if short else []),
        f"--{name}",
        default=value,
        type=type_,
        help=f"{help_text} (default: {shown}; env {env})",
        **kwargs,
    )


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def _import_hook(text: str) -> Callable[[list[list[int]]], None]:
    module, _, name = text.partition(":")
    try:
        hook: Callable[[list[list[int]]], None] = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"cannot import {text!r}: {exc}") from exc
    return hook


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(t for t in text.split(",") if t)


def _engine_flags(p: argparse.ArgumentParser) -> None:
    """The model and how it runs: the same flags for `serve` and for `classify`."""
    _add(p, "device", "auto, cpu, cuda or cuda:N; auto picks CUDA when present", "auto")
    _add(
        p,
        "dtype",
        "weights and compute dtype; auto is bfloat16 (or float16) on a GPU, float32 on CPU",
        "auto",
        choices=["auto", "float32", "bfloat16", "float16"],
    )
    _add(
        p,
        "quantization",
        "int8: dynamic int8 quantization of the Linear layers (CPU, float32 only); faster, "
        "but probabilities move (mean 2e-2 on the default model; bench/precision.py)",
        "none",
        choices=["none", "int8"],
    )
    _add(
        p,
        "max-batch-tokens",
        "tokens per forward: prompts × longest, or their own tokens when packed",
        16384,
        int,
    )
    _add(p, "max-num-seqs", "prompts per forward", 256, int)
    _add(
        p,
        "max-model-len",
        "longest prompt in tokens; longer ones are refused unless truncated "
        "(default: the model's limit)",
        None,
        int,
    )
    _add(p, "num-threads", "torch CPU threads", default_num_threads(), int)
    _add(
        p,
        "trust-remote-code",
        "allow model code shipped inside the model directory",
        False,
        _flag,
        nargs="?",
        const=True,
    )
    _add(
        p,
        "hf-overrides",
        "JSON object of config attributes to replace before loading, e.g. "
        '\'{"id2label": {"0": "no", "1": "yes"}, "problem_type": "single_label_classification"}\'',
        None,
        _json_object,
    )
    _add(
        p,
        "convert",
        "classify: serve a *ForCausalLM as a classifier over --classifier-from-tokens",
        "none",
        choices=["none", "classify"],
    )
    _add(
        p,
        "classifier-from-tokens",
        "label tokens for --convert classify, comma-separated (e.g. no,yes)",
        None,
        _tokens,
    )
    _add(p, "tokenizer-workers", "tokenizer threads", 1, int)


def _serve_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve a sequence-classification model over HTTP",
        description="Serve a Hugging Face sequence-classification model with the vLLM "
        "(/classify) and SGLang (/v1/classify) APIs.",
    )
    _add(
        p,
        "model",
        "local model directory (config.json, weights, tokenizer); without it, the built-in "
        "sentiment model classifyd/minilm-sentiment, built on first use",
    )
    _add(
        p,
        "served-model-name",
        "names clients may send as `model`; the first is echoed in responses "
        "(default: the --model value)",
        nargs="+",
    )
    _add(p, "host", "address to listen on", "127.0.0.1")
    _add(p, "port", "port to listen on", 8000, int)
    _engine_flags(p)
    _add(
        p,
        "max-concurrent-requests",
        "prompts admitted and not yet answered; more get 429 at once",
        1024,
        int,
    )
    _add(
        p,
        "api-key",
        "accepted bearer key; repeat for several (env: comma-separated); every route but "
        "/health, /ping and /metrics then needs `Authorization: Bearer <key>`",
        action="append",
    )
    _add(p, "max-client-batch-size", "inputs per request; more is a 400", 512, int)
    _add(p, "max-body-bytes", "request body limit in bytes; more is a 413", 8 * 1024 * 1024, int)
    _add(
        p,
        "auto-truncate",
        "truncate over-long prompts to the maximum length instead of refusing them",
        False,
        _flag,
        nargs="?",
        const=True,
    )
    _add(p, "log-level", "logging level", "info", choices=["debug", "info", "warning", "error"])
    _add(p, "log-format", "log lines as text or JSON", "text", choices=["text", "json"])
    _add(
        p,
        "request-timeout",
        "seconds a request may wait for its answer; then 503 and its queued work is dropped",
        None,
        float,
    )
    _add(p, "max-waiting-tokens", "tokens allowed to wait in the queue; more is a 429", None, int)
    _add(
        p,
        "shutdown-timeout",
        "seconds a SIGTERM drain waits for admitted work before exiting",
        30.0,
        float,
    )
    _add(
        p,
        "max-inflight-batches",
        "batches handed to the model worker at once (default: 2 on a GPU, 1 on CPU)",
        None,
        int,
    )
    _add(
        p,
        "fault-hook",
        "for chaos tests: module:function called with each batch's token ids before its "
        "forward; what it raises fails that batch",
        None,
        _import_hook,
    )
    _add(p, "batch-scan", "waiting prompts looked at to group similar lengths; 1: FIFO", 256, int)
    _add(
        p,
        "workers",
        "model worker threads sharing one copy of the weights (default: 2 on CPU with 2+ "
        "threads, 1 on a GPU); under load each runs its own batch on num-threads/workers threads",
        None,
        int,
    )
    _add(
        p,
        "parallel-from",
        "with several workers: prompts waiting before batches run side by side; below it one "
        "batch runs at a time on every thread (latency)",
        4,
        int,
    )
    _add(p, "padding-slack", "padded tokens ≤ (1 + slack) × real tokens per batch", 0.15, float)
    _add(
        p,
        "packed",
        "unpadded forward for BERT-family encoders on CPU, int8 included (batches then take "
        "the queue in order; batch-scan and padding-slack do not apply); false: the model's "
        "own forward",
        True,
        _flag,
        nargs="?",
        const=True,
    )


def _engine_config(args: argparse.Namespace) -> EngineConfig:
    return EngineConfig(
        model=args.model,
        served_model_names=tuple(args.served_model_name or ()),
        device=args.device,
        dtype=args.dtype,
        quantization=args.quantization,
        max_batch_tokens=args.max_batch_tokens,
        max_num_seqs=args.max_num_seqs,
        max_model_len=args.max_model_len,
        max_concurrent_requests=args.max_concurrent_requests,
        num_threads=args.num_threads,
        tokenizer_workers=args.tokenizer_workers,
        trust_remote_code=args.trust_remote_code,
        hf_overrides=args.hf_overrides,
        convert=args.convert,
        classifier_from_tokens=args.classifier_from_tokens or (),
        request_timeout=args.request_timeout,
        max_waiting_tokens=args.max_waiting_tokens,
        max_inflight_batches=args.max_inflight_batches,
        workers=args.workers,
        parallel_from=args.parallel_from,
        batch_scan=args.batch_scan,
        padding_slack=args.padding_slack,
        packed=args.packed,
        fault_hook=args.fault_hook,
    )


def _fail(message: str, code: int = 2) -> int:
    print(f"classifyd serve: {message}", file=sys.stderr)
    return code


def serve(args: argparse.Namespace) -> int:
    from server import logs, runtime

    logs.configure(args.log_level, args.log_format)
    if args.model is None:
        from default_model import DEFAULT_MODEL_NAME, DefaultModelError, ensure_default_model

        # The built-in default: built once (training; see the README), then served from the cache.
        try:
            args.model = str(ensure_default_model(progress=True))
        except DefaultModelError as exc:
            return _fail(f"cannot build the default model: {exc}", 1)
        args.served_model_name = args.served_model_name or [DEFAULT_MODEL_NAME]
    try:
        config = _engine_config(args)
        settings = ServerConfig(
            api_keys=tuple(args.api_key or ()),
            max_client_batch_size=args.max_client_batch_size,
            max_body_bytes=args.max_body_bytes,
            auto_truncate=args.auto_truncate,
        )
    except ValueError as exc:
        return _fail(str(exc))
    return runtime.run(
        runtime.serve(
            config,
            settings,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            shutdown_timeout=args.shutdown_timeout,
        )
    )


def _classify_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "classify",
        help="classify a file of texts (or stdin) offline, or through a server with --url",
        description="Classify every row of INPUT and write one result row per text, in input "
        "order: locally with --model (the server's engine, no HTTP), or on a running server "
        "with --url. Bad rows are reported with their line numbers and skipped; an "
        "interrupted run continues with --resume. Exit status: 0 done (bad rows reported), "
        "1 stopped by an error (resumable), 2 bad usage, 3 done with bad rows under "
        "--fail-on-bad-rows, 130 interrupted (resumable).",
    )
    p.add_argument(
        "input",
        metavar="INPUT",
        help="text (one per line), .jsonl or .csv/.tsv file (.gz too), or - for stdin",
    )
    _add(p, "output", "output file, .jsonl or .csv/.tsv (default: JSONL on stdout)", short="-o")
    _add(p, "format", "input format (default: by extension; text for stdin)", None,
         choices=["text", "jsonl", "csv"])  # fmt: skip
    _add(p, "field", "JSONL: the field holding the text", "text")
    _add(p, "id-field", "JSONL: the field holding each row's id (default: the line number)")
    _add(p, "column", "CSV: the column holding the text", "text")
    _add(p, "id-column", "CSV: the column holding each row's id (default: the line number)")
    _add(p, "delimiter", "CSV input delimiter (default: tab for .tsv, else comma)")
    _add(p, "output-format", "output format (default: by -o extension, else jsonl)", None,
         choices=["jsonl", "csv"])  # fmt: skip
    _add(p, "include-text", "also write each row's text", False, _flag, nargs="?", const=True)
    _add(
        p,
        "resume",
        "the output exists: skip the ids it holds, drop a last row cut short, append the rest",
        False,
        _flag,
        nargs="?",
        const=True,
    )
    _add(p, "overwrite", "the output exists: start it over", False, _flag, nargs="?", const=True)
    _add(p, "errors", "also write bad rows (line, id, error) to this JSONL file")
    _add(
        p,
        "fail-on-bad-rows",
        "exit 3 instead of 0 when some rows were bad",
        False,
        _flag,
        nargs="?",
        const=True,
    )
    _add(p, "progress", "progress bar on stderr; auto: when stderr is a terminal", "auto",
         choices=["auto", "always", "never"])  # fmt: skip
    _add(
        p,
        "batch-size",
        "texts per engine call, or per request with --url (at most the server's "
        "--max-client-batch-size)",
        64,
        int,
    )
    _add(
        p,
        "url",
        "classify on the classifyd (or vLLM) server at this URL instead of loading a model",
    )
    _add(p, "api-key", "with --url: bearer key to send (env: the first of a comma list)")
    _add(p, "served-model-name", "with --url: the model name to ask for (default: the server's)")
    _add(p, "max-in-flight", "with --url: requests at once", 4, int)
    _add(p, "timeout", "with --url: seconds to wait for one answer", 120.0, float)
    _add(p, "max-retries", "with --url: retries of a request refused (429, 503) or lost", 8, int)
    _add(
        p,
        "model",
        "local model directory, or `default`: the built-in sentiment model "
        "classifyd/minilm-sentiment, also when not given (ignored with --url)",
    )
    _engine_flags(p)
    _add(p, "max-concurrent-requests", "texts handed to the engine at once", 1024, int)
    _add(
        p,
        "auto-truncate",
        "truncate over-long texts to the maximum length instead of reporting them as bad rows",
        False,
        _flag,
        nargs="?",
        const=True,
    )
    _add(p, "truncate-prompt-tokens", "keep at most this many tokens of each text", None, int)
    _add(p, "truncation-side", "left or right (default: the tokenizer's)", None,
         choices=["left", "right"])  # fmt: skip
    _add(p, "use-activation", "false: raw logits instead of probabilities", True, _flag,
         nargs="?", const=True)  # fmt: skip
    _add(p, "log-level", "logging level", "warning",
         choices=["debug", "info", "warning", "error"])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="classifyd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _classify_parser(sub)
    sub.add_parser(
        "build-default",
        help="build the built-in sentiment model into the cache (run by serve on first use)",
        add_help=False,
    )
    if argv is None:
        argv = sys.argv[1:]
    # This process runs the model workers (serve, classify): before any thread starts.
    from engine.memory import limit_malloc_arenas

    limit_malloc_arenas()
    if argv[:1] == ["build-default"]:
        from default_model import main as build_default

        return build_default(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "classify":
        from filejob.job import run as classify

        return classify(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
