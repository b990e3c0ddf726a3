"""A fake Hugging Face Hub on 127.0.0.1 for the real huggingface_hub download path.

It answers what huggingface_hub 2.x calls, with the Hub's headers and error codes:

- GET /api/models/{repo}[/revision/{rev}]: the repo's info (sha, siblings, gated, private)
- GET /api/models/{repo}/tree/{rev}: the file listing (blob oid, size, lfs for weights)
- HEAD/GET /{repo}/resolve/{rev}/{path}: X-Repo-Commit and ETag; a weight file (LFS on the
  Hub) answers 302 to a "CDN" (http://localhost:PORT/cdn/{sha256}, another host name) with
  X-Linked-Etag and X-Linked-Size, as the Hub does
- 401/403/404 with X-Error-Code (RepoNotFound, GatedRepo, RevisionNotFound, EntryNotFound)
  and X-Error-Message: a missing or private repo without the token is 401 RepoNotFound (404
  with a token), a gated repo's files 401 GatedRepo without a token and 403 with one that has
  no access, an unknown token 401 "Invalid credentials in Authorization header".

Every request is recorded (`requests`), so tests see what was downloaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

# Tokens the fake Hub knows: a reader with access to the gated repo, and one without.
READER_TOKEN = "hf_fake_reader"
OUTSIDER_TOKEN = "hf_fake_outsider"
_TOKENS = {READER_TOKEN, OUTSIDER_TOKEN}
_LFS = (".safetensors", ".bin")


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    """A model repo: commits (sha → {path: bytes}) and refs (branch or tag → sha)."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    private: bool = False
    # Files need a token with access (READER_TOKEN).
    gated: bool = False

    def add_commit(self, files: dict[str, bytes], *refs: str) -> str:
        sha = hashlib.sha1(json.dumps(sorted(files)).encode() + str(len(self.commits)).encode())
        commit = sha.hexdigest()
        self.commits[commit] = files
        for ref in refs or ("main",):
            self.refs[ref] = commit
        return commit

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)


def files_of(directory: Path, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """A saved model directory's files (recursively), plus `extra` ones."""
    found = {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }
    return {**found, **(extra or {})}


class FakeHub:
    """The fake Hub on a free port of 127.0.0.1, in a daemon thread; a context manager."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add(self, repo_id: str, files: dict[str, bytes], **kind: bool) -> Repo:
        repo = Repo(**kind)
        repo.add_commit(files)
        self.repos[repo_id] = repo
        return repo

    def fetched(self) -> set[str]:
        """The repo paths of the files asked for (HEAD or GET on resolve)."""
        return {p.split("/resolve/", 1)[1].split("/", 1)[1] for _, p in self.requests
                if "/resolve/" in p}  # fmt: skip

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+(?:/[^/]+)?)(?:/revision/(?P<rev>[^/]+))?$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+|[^/]+)/tree/(?P<rev>[^/]+)(?:/.*)?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+|[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client gone mid-answer; no traceback from a thread (tests/live.py says why).
        pass


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test's output is not the place for an access log

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        with self.fake._lock:
            self.fake.requests.append((self.command, path))
        try:
            if path.startswith("/cdn/"):
                blob = self.fake.blobs.get(path[len("/cdn/") :])
                if blob is None:
                    raise HubError(404, None, "Not found")
                self._send(200, {"ETag": f'"{hashlib.sha256(blob).hexdigest()}"'}, blob, head)
            elif match := _TREE.match(path):
                self._tree(match["repo"], match["rev"], head)
            elif match := _INFO.match(path):
                self._info(match["repo"], match["rev"] or "main", head)
            elif match := _RESOLVE.match(path):
                self._resolve(match["repo"], match["rev"], match["path"], head)
            else:
                raise HubError(404, None, "Not found")
        except HubError as exc:
            headers = {"X-Error-Message": exc.message, "Content-Type": "application/json"}
            if exc.code:
                headers["X-Error-Code"] = exc.code
            self._send(exc.status, headers, json.dumps({"error": exc.message}).encode(), head)

    def _token(self) -> str | None:
        auth = self.headers.get("authorization") or ""
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        if token is not None and token not in _TOKENS:
            raise HubError(401, None, "Invalid credentials in Authorization header")
        return token

    def _repo(self, repo_id: str, revision: str) -> tuple[Repo, str]:
        token = self._token()
        repo = self.fake.repos.get(repo_id)
        if repo is None or (repo.private and token != READER_TOKEN):
            # The Hub hides a private repo: the same answer as a missing one.
            raise HubError(401 if token is None else 404, "RepoNotFound", "Repository not found")
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo, commit

    def _info(self, repo_id: str, revision: str, head: bool) -> None:
        repo, commit = self._repo(repo_id, revision)
        body = {
            "_id": commit[:24],
            "id": repo_id,
            "modelId": repo_id,
            "sha": commit,
            "private": repo.private,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "tags": ["transformers"],
            "siblings": [{"rfilename": name} for name in repo.commits[commit]],
        }
        self._json(body, commit, head)

    def _tree(self, repo_id: str, revision: str, head: bool) -> None:
        repo, commit = self._repo(repo_id, revision)
        entries = []
        for name, data in repo.commits[commit].items():
            entry: dict[str, Any] = {
                "type": "file", "oid": _git_blob_oid(data), "size": len(data), "path": name,
            }  # fmt: skip
            if name.endswith(_LFS):
                sha = hashlib.sha256(data).hexdigest()
                entry["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 134}
            entries.append(entry)
        self._json(entries, commit, head)

    def _resolve(self, repo_id: str, revision: str, name: str, head: bool) -> None:
        repo, commit = self._repo(repo_id, revision)
        if repo.gated:
            token = self._token()
            if token is None:
                raise HubError(
                    401, "GatedRepo",
                    f"Access to model {repo_id} is restricted. You must have access to it and "
                    "be authenticated to access it. Please log in.",
                )  # fmt: skip
            if token != READER_TOKEN:
                raise HubError(
                    403, "GatedRepo",
                    f"Access to model {repo_id} is restricted and you are not in the authorized "
                    "list.",
                )  # fmt: skip
        data = repo.commits[commit].get(name)
        if data is None:
            raise HubError(404, "EntryNotFound", "Entry not found")
        common = {"X-Repo-Commit": commit, "Accept-Ranges": "bytes"}
        if name.endswith(_LFS):
            sha = hashlib.sha256(data).hexdigest()
            self.fake.blobs[sha] = data
            headers = {
                **common,
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(len(data)),
                "ETag": f'"{_git_blob_oid(data)}"',
                # Another host name for the same server: huggingface_hub follows a redirect
                # only within the Hub's host; a CDN's answer carries no Hub headers.
                "Location": f"{self.fake.url.replace('127.0.0.1', 'localhost')}/cdn/{sha}",
            }
            self._send(302, headers, b"", head)
            return
        headers = {**common, "ETag": f'"{_git_blob_oid(data)}"'}
        self._send(200, headers, data, head)

    def _json(self, body: Any, commit: str, head: bool) -> None:
        headers = {"Content-Type": "application/json", "X-Repo-Commit": commit}
        self._send(200, headers, json.dumps(body).encode(), head)

    def _send(self, status: int, headers: dict[str, str], body: bytes, head: bool) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
