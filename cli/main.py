"""`classifyd serve | classify | build-default`: flags, each also settable as a CLASSIFYD_*
variable."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cli.options import add_options, build, values
from engine import EngineConfig
from filejob.config import JobConfig
from offline.options import TextOptions
from server.config import ServerConfig


def _serve_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve a sequence-classification model over HTTP",
        description="Serve a Hugging Face sequence-classification model with the vLLM "
        "(/classify) and SGLang (/v1/classify) APIs.",
    )
    add_options(p.add_argument_group("the model and how it runs"), EngineConfig)
    add_options(p.add_argument_group("the HTTP server"), ServerConfig)


def _fail(message: str, code: int = 2) -> int:
    print(f"classifyd serve: {message}", file=sys.stderr)
    return code


def serve(args: argparse.Namespace) -> int:
    from server import logs, runtime

    try:
        settings = build(ServerConfig, args)
    except ValueError as exc:
        return _fail(str(exc))
    logs.configure(settings.log_level, settings.log_format)
    if args.model is None:
        from default_model import DEFAULT_MODEL_NAME, DefaultModelError, ensure_default_model

        # The built-in default: built once (training; see the README), then served from the cache.
        try:
            args.model = str(ensure_default_model(progress=True))
        except DefaultModelError as exc:
            return _fail(f"cannot build the default model: {exc}", 1)
        args.served_model_names = args.served_model_names or [DEFAULT_MODEL_NAME]
    try:
        config = build(EngineConfig, args)
    except ValueError as exc:
        return _fail(str(exc))
    return runtime.run_on_uvloop(
        runtime.serve(
            config,
            settings,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            shutdown_timeout=settings.shutdown_timeout,
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
    add_options(p, JobConfig)
    add_options(p.add_argument_group("each text"), TextOptions)
    add_options(p.add_argument_group("the local model's engine (without --url)"), EngineConfig,
                offline=True)  # fmt: skip


def classify(args: argparse.Namespace) -> int:
    from filejob.job import classify_file
    from server import logs

    job = build(JobConfig, args)
    logs.configure(job.log_level, "text")
    return classify_file(job, build(TextOptions, args), values(EngineConfig, args, offline=True))


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; defaults read the CLASSIFYD_* variables set now."""
    parser = argparse.ArgumentParser(prog="classifyd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _classify_parser(sub)
    sub.add_parser(
        "build-default",
        help="build the built-in sentiment model into the cache (run by serve on first use)",
        add_help=False,
    )
    return parser


def _dashed(arg: str) -> str:
    """`--hf_overrides` as `--hf-overrides`: vLLM's parser takes either, and so do we."""
    if not arg.startswith("--"):
        return arg
    name, sep, value = arg.partition("=")
    return name.replace("_", "-") + sep + value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if argv is None:
        argv = sys.argv[1:]
    # This process runs the model workers (serve, classify): before any thread starts.
    from engine.memory import limit_malloc_arenas

    limit_malloc_arenas()
    if argv[:1] == ["build-default"]:
        from default_model import main as build_default

        return build_default(argv[1:])
    args = parser.parse_args([_dashed(a) for a in argv])
    if args.command == "serve":
        return serve(args)
    if args.command == "classify":
        return classify(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
