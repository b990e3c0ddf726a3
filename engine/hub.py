"""Models by name: a Hugging Face Hub id (`org/name`) resolved to a local directory before
the engine loads it, with huggingface_hub's own cache, token and offline mode.

A local directory is used as it is. An id is looked up once (the repo's file listing, or the
cached listing when the Hub cannot be reached or HF_HUB_OFFLINE=1) and only the files a
classifier needs are fetched: config, tokenizer, chat template, the weights in one format
(safetensors when the repo has them, never .bin besides), remote code with
trust_remote_code. The token is huggingface_hub's (HF_TOKEN or a stored login); it is never
logged. Every failure becomes one ModelLoadError sentence that says what to do.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import logging
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.config import EngineConfig
from engine.errors import ModelLoadError
from engine.model.loading import check_model_dir, first_line

logger = logging.getLogger("classifyd.hub")

_CONFIG = ("config.json",)
_TOKENIZER = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",  # sentencepiece: spiece.model, tokenizer.model, sentencepiece.bpe.model
    "chat_template.jinja",
    "chat_template.json",
    "additional_chat_templates/*.jinja",
)
_SAFETENSORS = ("*.safetensors", "*.safetensors.index.json")
_BIN = ("pytorch_model*.bin", "pytorch_model*.bin.index.json")
_REMOTE_CODE = ("*.py",)


def is_local(model: str) -> bool:
    """A directory, or something spelt as a path (absolute, ./, ~, more than one /): never
    looked up on the Hub, so a mistyped path fails as a missing directory."""
    if Path(model).expanduser().exists():
        return True
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model


def fetch_model(cfg: EngineConfig, *, endpoint: str | None = None) -> EngineConfig:
    """`cfg` with `model` (and `tokenizer`) as local directories, downloaded when they are
    Hub ids; the names clients use stay the ones given (the id, not a cache path)."""
    model = _local_or_fetched(
        cfg.model, cfg.revision, cfg.download_dir, endpoint,
        weights=True, remote_code=cfg.trust_remote_code,
    )  # fmt: skip
    tokenizer = None
    if cfg.tokenizer:
        tokenizer = _local_or_fetched(
            cfg.tokenizer, cfg.tokenizer_revision, cfg.download_dir, endpoint,
            weights=False, remote_code=cfg.trust_remote_code,
        )  # fmt: skip
    return replace(cfg, model=model, tokenizer=tokenizer, served_model_names=cfg.names)


def _local_or_fetched(
    name: str,
    revision: str | None,
    cache_dir: str | None,
    endpoint: str | None,
    *,
    weights: bool,
    remote_code: bool,
) -> str:
    if is_local(name):
        path = str(Path(name).expanduser()) if name.startswith("~") else name
        if weights:
            check_model_dir(path)
        elif not Path(path).is_dir():
            raise ModelLoadError(f"The tokenizer directory {name!r} does not exist.")
        return path
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    what = "model" if weights else "tokenizer"
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise ModelLoadError(
            f"The {what} {name!r} is neither a local directory nor a Hugging Face Hub id "
            "(org/name: letters, digits, '-', '_', '.')."
        ) from None
    try:
        return download(
            name, revision, cache_dir, endpoint, weights=weights, remote_code=remote_code
        )
    except ModelLoadError:
        raise
    except Exception as exc:
        raise explain(exc, name, revision, cache_dir) from exc


def download(
    repo_id: str,
    revision: str | None,
    cache_dir: str | None,
    endpoint: str | None,
    *,
    weights: bool,
    remote_code: bool,
) -> str:
    """The snapshot directory of `repo_id` at `revision` holding the files a classifier
    needs; raises huggingface_hub's own errors (see `explain`)."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import OfflineModeIsEnabled

    unreachable: tuple[type[BaseException], ...] = (OfflineModeIsEnabled, *_connection_errors())
    online = True
    files: list[str] | None
    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, files_metadata=False)
        files = [s.rfilename for s in info.siblings or ()]
    except unreachable:
        # No Hub: what the cache listed when this revision was downloaded.
        files = _cached_files(repo_id, revision, cache_dir)
        online = False
    patterns = (
        None
        if files is None
        else choose_files(repo_id, files, weights=weights, remote_code=remote_code)
    )
    if online:
        logger.info("fetching %s (%s) from the Hub: %s", repo_id, revision or "main", patterns)
    path: str = snapshot_download(
        repo_id,
        revision=revision,
        cache_dir=cache_dir,
        endpoint=endpoint,
        allow_patterns=patterns,
        local_files_only=not online,
        tqdm_class=_progress_class(),
    )
    return path


def choose_files(repo_id: str, files: list[str], *, weights: bool, remote_code: bool) -> list[str]:
    """The repo's files to fetch, as exact patterns: config, tokenizer, the weights in one
    format, remote code when trusted."""
    wanted = list(_CONFIG + _TOKENIZER)
    if weights:
        top = [f for f in files if "/" not in f]
        if "config.json" not in top:
            raise ModelLoadError(
                f"The Hub repo {repo_id!r} has no config.json; it is not a Transformers model."
            )
        if any(fnmatch.fnmatch(f, "*.safetensors") for f in top):
            wanted += _SAFETENSORS
        elif any(fnmatch.fnmatch(f, "pytorch_model*.bin") for f in top):
            wanted += _BIN
        else:
            raise ModelLoadError(
                f"The Hub repo {repo_id!r} has no Transformers weights (*.safetensors or "
                "pytorch_model*.bin) at its top level."
            )
    if remote_code:
        wanted += _REMOTE_CODE
    chosen = [f for f in files if _matches(f, wanted)]
    # Exact names, escaped: a pattern would also match the same name in a subfolder.
    return [glob.escape(f) for f in chosen]


def _matches(name: str, patterns: list[str]) -> bool:
    depth = name.count("/")
    return any(p.count("/") == depth and fnmatch.fnmatchcase(name, p) for p in patterns)


def _cached_files(repo_id: str, revision: str | None, cache_dir: str | None) -> list[str] | None:
    """The cached listing of this revision; None when the cache holds none (a snapshot an
    older huggingface_hub wrote), and then the snapshot is taken as it is."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        return [
            f.path for f in get_cached_repo_tree(repo_id, revision=revision, cache_dir=cache_dir)
        ]
    except CachedRepoTreeNotFoundError:
        return None


def _connection_errors() -> tuple[type[BaseException], ...]:
    # huggingface_hub's HTTP client; a proxy error is a misconfiguration, not "offline".
    import httpx2

    return (httpx2.ConnectError, httpx2.TimeoutException)


def _progress_class() -> Any:
    """huggingface_hub's bars on a terminal; none in a log file or a container's stdout."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    if sys.stderr is not None and sys.stderr.isatty():
        return hf_tqdm

    class Silent(hf_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent


def _at(revision: str | None) -> str:
    return f" at revision {revision!r}" if revision else ""


def _cache(cache_dir: str | None) -> str:
    from huggingface_hub import constants

    return repr(str(Path(cache_dir or constants.HF_HUB_CACHE).expanduser()))


def explain(
    exc: BaseException, repo_id: str, revision: str | None, cache_dir: str | None
) -> ModelLoadError:
    """One sentence for a huggingface_hub failure, naming what to do about it."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo = repr(repo_id)
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError):
        message = (
            f"{repo} is a gated repo: accept its terms on the Hub and set HF_TOKEN to a token "
            "of an account with access."
            if status == 401
            else f"{repo} is a gated repo and the token in HF_TOKEN has no access to it; "
            "accept its terms on the Hub with that account."
        )
    elif isinstance(exc, RepositoryNotFoundError):
        # A mistyped relative directory reads as an id too: say both.
        message = (
            f"No local directory and no Hugging Face Hub model {repo}; check the name, or set "
            "HF_TOKEN if it is a private repo."
        )
    elif isinstance(exc, RevisionNotFoundError):
        message = f"The Hub repo {repo} has no revision {revision!r} (a branch, tag or commit)."
    elif isinstance(exc, (OfflineModeIsEnabled, LocalEntryNotFoundError)):
        # LocalEntryNotFoundError (an EntryNotFoundError too): not in the cache, no Hub.
        message = _offline(repo, revision, cache_dir)
    elif isinstance(exc, EntryNotFoundError):
        message = f"A file of {repo}{_at(revision)} is missing on the Hub: {first_line(exc)}"
    elif isinstance(exc, HfHubHTTPError) and status in (401, 403):
        message = (
            f"The Hub refused {repo} ({status}); set HF_TOKEN to a valid token with read "
            "access to it."
        )
    elif isinstance(exc, HfHubHTTPError):
        message = f"The Hugging Face Hub failed on {repo} ({status}); try again later."
    elif isinstance(exc, _connection_errors()):
        message = _offline(repo, revision, cache_dir)
    elif isinstance(exc, OSError):
        message = f"Cannot download {repo}: {first_line(exc)}"
    else:
        message = f"Cannot fetch {repo} from the Hub: {first_line(exc)}"
    return ModelLoadError(message)


def _offline(repo: str, revision: str | None, cache_dir: str | None) -> str:
    return (
        f"Cannot reach the Hugging Face Hub and {repo}{_at(revision)} is not (completely) in the "
        f"cache {_cache(cache_dir)}; download it once with network access (or pass a local "
        "directory)."
    )


@contextlib.contextmanager
def named_as_given(cfg: EngineConfig, local: EngineConfig) -> Iterator[None]:
    """Load errors name the model as the user gave it (a Hub id), not its cache directory."""
    try:
        yield
    except ModelLoadError as exc:
        text = str(exc)
        for given, path in ((cfg.model, local.model), (cfg.tokenizer, local.tokenizer)):
            if given and path and given != path:
                text = text.replace(repr(path), repr(given)).replace(path, given)
        if text == str(exc):
            raise
        raise ModelLoadError(text) from exc
