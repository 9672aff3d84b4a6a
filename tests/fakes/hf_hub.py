"""A real HTTP server on 127.0.0.1 speaking the Hugging Face Hub endpoints huggingface_hub (1.x) calls to create a
repository and commit small files to it, so `cgd publish` is tested through the real client, over HTTP.

Routes (as huggingface_hub/hf_api.py and _commit_api.py send them):
    GET  /api/whoami-v2                                     the token's user
    POST /api/repos/create                                  {name, organization, visibility?, type}; 409 if it exists
    POST /api/validate-yaml                                 a README.md's metadata (always valid here)
    POST /api/{type}s/{org}/{name}/preupload/{revision}     upload mode per file: always "regular" (no LFS, no xet)
    POST /api/{type}s/{org}/{name}/commit/{revision}        ndjson: a header line, then one `file` line per file
Every request is kept (`requests`: method, path, headers, body) so a test can check where the token went, and
`fail_with = (status, message)` answers every request with that error (401, 403, ...).
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    visibility: str | None
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FakeHub:
    def __init__(self, user: str = "me") -> None:
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[Seen] = []
        self.fail_with: tuple[int, str] | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        return self.repos[(repo_type, repo_id)]

    # --- routes ----------------------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if self.fail_with is not None:
            return self.fail_with[0], {"error": self.fail_with[1]}
        parts = path.split("?")[0].strip("/").split("/")
        if method == "GET" and parts == ["api", "whoami-v2"]:
            return 200, {"type": "user", "name": self.user, "fullname": self.user, "orgs": [],
                         "auth": {"type": "access_token", "accessToken": {"role": "write"}}}
        if method == "POST" and parts == ["api", "repos", "create"]:
            payload = json.loads(body)
            repo_type = payload.get("type") or "model"
            repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
            url = f"{self.url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
            with self._lock:
                if (repo_type, repo_id) in self.repos:
                    return 409, {"error": "You already created this repo", "url": url}
                self.repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, payload.get("visibility"))
            return 200, {"url": url, "name": repo_id}
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return 200, {"errors": [], "warnings": []}
        if method == "POST" and len(parts) == 6 and parts[0] == "api" and parts[4] in ("preupload", "commit"):
            repo_type, repo_id = parts[1].removesuffix("s"), f"{parts[2]}/{parts[3]}"
            repo = self.repos.get((repo_type, repo_id))
            if repo is None:
                return 404, {"error": "Repository not found"}
            if parts[4] == "preupload":
                files = json.loads(body)["files"]
                return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                        "oid": None} for f in files]}
            return self._commit(repo, body)
        return 404, {"error": f"fake hub: no route {method} {path}"}

    def _commit(self, repo: Repo, body: bytes) -> tuple[int, dict[str, Any]]:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return 400, {"error": "a commit starts with its header"}
        for line in lines[1:]:
            if line["key"] != "file":  # lfsFile, deletions: not expected from small uploads
                return 400, {"error": f"fake hub: unexpected commit operation {line['key']}"}
            value = line["value"]
            repo.files[value["path"]] = base64.b64decode(value["content"])
        oid = f"{len(repo.commits) + 1:040x}"
        repo.commits.append(lines[0]["value"]["summary"])
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return 200, {"commitUrl": f"{self.url}/{prefix}{repo.repo_id}/commit/{oid}", "commitOid": oid,
                     "pullRequestUrl": None}

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with hub._lock:
                    hub.requests.append(Seen(method, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status, payload = hub.handle(method, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status >= 400:
                    self.send_header("X-Error-Message", payload.get("error", ""))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler
