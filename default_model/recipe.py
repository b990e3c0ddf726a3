"""What a build is made of (the recipe) and what it reports, plus the model's fixed names."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from default_model.sources import DOMAIN_FILES

DEFAULT_MODEL_NAME = "classifyd/minilm-sentiment"
# Bump the suffix whenever a change in this package (recipe defaults, data, pinned artifacts)
# changes what gets built, so that machines holding an older build rebuild instead of serving it.
DEFAULT_MODEL_DIRNAME = "minilm-sentiment-v2"

LABELS = ("negative", "positive")

Precision = Literal["auto", "bf16", "fp32"]


@dataclass(frozen=True)
class Recipe:
    """Every knob of the build. The defaults are the shipped model."""

    seed: int = 1234
    epochs: int = 2
    learning_rate: float = 2e-4
    warmup_fraction: float = 0.06
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    # The embeddings and the lowest `frozen_layers` encoder layers stay as pretrained: the
    # build runs them once over the training set and trains the layers above from their cached
    # outputs, which costs a fraction of fine-tuning the whole encoder.
    frozen_layers: int = 2
    batch_size: int = 32
    max_length: int = 64
    # Sentences whose text hashes below this fraction are held out (see `data.is_heldout`).
    holdout_fraction: float = 0.2
    domains: tuple[str, ...] = ("movie", "amazon", "tweets")
    # Evaluated on their held-out part only, never trained on: an out-of-domain check.
    report_only_domains: tuple[str, ...] = ("nyt",)
    # A seeded subset of each domain's training sentences; None uses all (tests use a subset).
    max_train_per_domain: int | None = None
    # A seeded subset of each domain's held-out sentences; None evaluates all.
    max_eval_per_domain: int | None = None
    # fp32 by default: every CPU then builds the same model with the same accuracy in about
    # the same time. "auto" (bf16 autocast where the CPU has it natively) is faster and opt-in.
    precision: Precision = "fp32"
    # Fixed rather than "all cores": float reductions depend on the thread split, so a fixed
    # count keeps builds identical across machines with the same instruction set.
    num_threads: int = 2

    def __post_init__(self) -> None:
        unknown = [d for d in (*self.domains, *self.report_only_domains) if d not in DOMAIN_FILES]
        if unknown:
            raise ValueError(f"unknown domains {unknown}; known: {sorted(DOMAIN_FILES)}")
        if not self.domains:
            raise ValueError("at least one training domain is needed")
        if set(self.domains) & set(self.report_only_domains):
            raise ValueError("a domain cannot be both trained on and report-only")
        positive = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "num_threads": self.num_threads,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        for name, limit in (
            ("max_train_per_domain", self.max_train_per_domain),
            ("max_eval_per_domain", self.max_eval_per_domain),
        ):
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be at least 1 or None, got {limit}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.frozen_layers < 0:
            raise ValueError(f"frozen_layers must be at least 0, got {self.frozen_layers}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision}")

    @property
    def all_domains(self) -> tuple[str, ...]:
        """The trained domains, then the report-only ones: the order of every report."""
        return (*self.domains, *self.report_only_domains)

    @property
    def reduced(self) -> bool:
        """True when the build uses a subset of the data (tests do; the shipped model does not)."""
        return self.max_train_per_domain is not None or self.max_eval_per_domain is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        known = {f.name for f in fields(cls)}
        # JSON turns the tuple fields into lists.
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
        }
        return cls(**kwargs)


DEFAULT_RECIPE = Recipe()


@dataclass(frozen=True)
class DomainResult:
    domain: str
    trained: bool
    train_count: int
    heldout_count: int
    accuracy: float
    # Always answering the class that is the majority in the domain's training part.
    baseline_label: str
    baseline_accuracy: float


@dataclass(frozen=True)
class BuildReport:
    recipe: Recipe
    domains: tuple[DomainResult, ...]
    seconds: float
    download_seconds: float
    train_seconds: float
    eval_seconds: float
    precision: str
    num_threads: int
    torch_version: str
    transformers_version: str
    python_version: str
    cpu: str
    encoder_sha256: str
    data_sha256: str
    weights_sha256: str
    finished_at: str
    # The part of train_seconds spent running the frozen layers once over the training set.
    features_seconds: float = 0.0

    def domain(self, name: str) -> DomainResult:
        for result in self.domains:
            if result.domain == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["recipe"] = self.recipe.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildReport:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["recipe"] = Recipe.from_dict(data["recipe"])
        kwargs["domains"] = tuple(DomainResult(**d) for d in data["domains"])
        return cls(**kwargs)

    def table(self) -> str:
        lines = [
            f"{'domain':<8} {'train':>6} {'held-out':>8} {'accuracy':>9} {'baseline':>9}  "
            "(majority class)",
        ]
        for d in self.domains:
            note = "" if d.trained else "  not trained on"
            lines.append(
                f"{d.domain:<8} {d.train_count:>6} {d.heldout_count:>8} "
                f"{d.accuracy:>8.1%} {d.baseline_accuracy:>9.1%}  ({d.baseline_label}){note}"
            )
        lines.append(
            f"built in {self.seconds:.0f} s (download {self.download_seconds:.0f} s, train "
            f"{self.train_seconds:.0f} s, of which frozen layers {self.features_seconds:.0f} s; "
            f"eval {self.eval_seconds:.0f} s; {self.precision}, "
            f"{self.num_threads} threads)"
        )
        return "\n".join(lines)
