"""A Hugging Face Hub-compatible HTTP server for tests, run in a thread on 127.0.0.1.

It speaks the endpoints huggingface_hub 2.x uses for qimeng-serve's calls, with the Hub's status
codes and headers, so the real client runs unmodified against it:

  POST /api/repos/create                          409 + url when the repo exists
  GET  /api/models/{repo}[/revision/{rev}]        repo info: sha, siblings
  GET  /api/models/{repo}/refs                    branches and tags with their target commits
  GET  /api/models/{repo}/tree/{rev}[/{path}]     recursive listing, LFS sizes and sha256
  POST /api/models/{repo}/preupload/{rev}         regular or lfs per file, with the remote oid
  POST /{repo}.git/info/lfs/objects/batch         LFS batch: upload + verify actions (or none if stored)
  PUT  <cdn>/lfs-upload/{sha256}                  the upload URL (another origin, like S3)
  POST /{repo}.git/info/lfs/objects/verify
  POST /api/models/{repo}/commit/{branch}         NDJSON; 412 when parentCommit is not the branch head
  POST /api/models/{repo}/branch/{name}, tag/{rev}, DELETE branch/tag
  POST /api/validate-yaml                         README front matter
  HEAD/GET /{repo}/resolve/{rev}/{path}           X-Repo-Commit, ETag; LFS files answer 302 to the CDN
                                                  origin with X-Linked-Etag (sha256) / X-Linked-Size
  404s carry X-Error-Code RepoNotFound / RevisionNotFound / EntryNotFound, as the client expects.

Every commit is a full snapshot (path -> stored file) with a sha; branches and tags point at commits.
Tests can make it fail (`fail`), stall (`hang`), serve altered bytes (`tamper`), and read its request log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_THRESHOLD = 10 * 1024 * 1024
LFS_SUFFIXES = (".safetensors", ".bin", ".cubin")
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class StoredFile:
    size: int
    git_oid: str  # git blob sha1 of the content, or of the LFS pointer for LFS files
    content_sha256: str  # key of the bytes in HubState.objects
    lfs: bool


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, StoredFile]
    date: float


@dataclass
class Repo:
    repo_id: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> str | None:
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        return rev if rev in self.commits else None


class HubState:
    """Everything the fake Hub stores, plus the knobs tests turn."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.objects: dict[str, bytes] = {}  # sha256 -> bytes (what is served)
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str, str]] = []  # (origin, method, path)
        self.faults: list[dict] = []
        self.stopping = threading.Event()
        self._counter = 0

    # ---------------------------------------------------------------- test helpers
    def head(self, repo_id: str, branch: str = "main") -> str:
        return self.repos[repo_id].branches[branch]

    def files_at(self, repo_id: str, rev: str = "main") -> dict[str, StoredFile]:
        repo = self.repos[repo_id]
        return dict(repo.commits[repo.resolve(rev)].files)

    def tamper(self, repo_id: str, path: str, rev: str = "main", offset: int = -100) -> None:
        """Serve different bytes for a file without changing any metadata (a compromised CDN)."""
        stored = self.files_at(repo_id, rev)[path]
        data = bytearray(self.objects[stored.content_sha256])
        data[offset] ^= 0xFF
        self.objects[stored.content_sha256] = bytes(data)

    def fail(self, status: int = 500, match: str = ".*") -> None:
        """Answer every request whose path matches with this status."""
        self.faults.append({"status": status, "match": re.compile(match)})

    def hang(self, seconds: float, match: str = ".*") -> None:
        """Stall requests whose path matches (a time-out on the client's side)."""
        self.faults.append({"hang": seconds, "match": re.compile(match)})

    def heal(self) -> None:
        self.faults.clear()

    def downloads(self) -> list[str]:
        """Paths whose content was sent: GETs of /resolve and of the CDN."""
        return [p for _, m, p in self.requests if m == "GET" and ("/resolve/" in p or p.startswith("/lfs-cdn/"))]

    def clear_log(self) -> None:
        self.requests.clear()

    # ---------------------------------------------------------------- storage
    def new_sha(self, *parts: object) -> str:
        self._counter += 1
        return hashlib.sha1(json.dumps([self._counter, *map(str, parts)]).encode()).hexdigest()

    def store_regular(self, data: bytes) -> StoredFile:
        sha = hashlib.sha256(data).hexdigest()
        self.objects.setdefault(sha, data)
        return StoredFile(len(data), git_blob_sha1(data), sha, lfs=False)

    def create_repo(self, repo_id: str) -> Repo:
        repo = Repo(repo_id)
        files = {".gitattributes": self.store_regular(GITATTRIBUTES)}
        sha = self.new_sha(repo_id, "initial commit")
        repo.commits[sha] = Commit(sha, None, "initial commit", files, time.time())
        repo.branches["main"] = sha
        self.repos[repo_id] = repo
        return repo


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, hub: FakeHub, origin: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hub = hub
        self.origin = origin  # "hub" or "cdn"
        self.connections: set[socket.socket] = set()  # open keep-alive connections, closed on stop

    def process_request_thread(self, request, client_address):
        self.connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.discard(request)

    def close_connections(self) -> None:
        """A stopped server must not keep answering on the client's pooled connections."""
        for conn in list(self.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # ---------------------------------------------------------------- plumbing
    @property
    def state(self) -> HubState:
        return self.server.hub.state

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.segments = [unquote(s) for s in url.path.split("/")[1:]]
        self.body = self._read_body()
        self.state.requests.append((self.server.origin, method, url.path))
        try:
            for fault in list(self.state.faults):
                if fault["match"].search(url.path):
                    if "hang" in fault:
                        self.state.stopping.wait(fault["hang"])
                    else:
                        raise _HTTPError(fault["status"], "Internal Error - We're working hard to fix this as soon as possible!")
            if self.server.origin == "cdn":
                self._cdn(method)
            else:
                self._hub(method)
        except _HTTPError as exc:
            headers = dict(exc.headers)
            if exc.code:
                headers["X-Error-Code"] = exc.code
            headers["X-Error-Message"] = exc.message
            self._send(exc.status, json.dumps({"error": exc.message}).encode(), "application/json", headers, method)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (time-out): nothing to answer
            pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", ctype: str = "application/json", headers: dict | None = None,
              method: str = "GET") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        if method != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _payload(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError:
            raise _HTTPError(400, "Invalid JSON body") from None

    def _require_auth(self) -> None:
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        valid = self.server.hub.tokens
        if not token or (token not in valid if valid is not None else not token.startswith("hf_")):
            raise _HTTPError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo_id: str) -> Repo:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            raise _HTTPError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit(self, repo: Repo, rev: str) -> Commit:
        sha = repo.resolve(rev)
        if sha is None:
            raise _HTTPError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return repo.commits[sha]

    # ---------------------------------------------------------------- CDN origin
    def _cdn(self, method: str) -> None:
        s = self.segments
        if method == "PUT" and len(s) == 2 and s[0] == "lfs-upload":
            oid = s[1]
            if hashlib.sha256(self.body).hexdigest() != oid:
                raise _HTTPError(400, "content does not match the oid")
            with self.state.lock:
                self.state.objects[oid] = self.body
            self._send(200, b"", "text/plain", {"ETag": f'"{oid}"'})
            return
        if method in ("GET", "HEAD") and len(s) == 2 and s[0] == "lfs-cdn":
            if self.headers.get("Authorization"):  # a signed URL must not also carry the Hub token
                raise _HTTPError(400, "Only one auth mechanism allowed")
            data = self.state.objects.get(s[1])
            if data is None:
                raise _HTTPError(404, "NoSuchKey")
            self._send_bytes(data, method, {"ETag": f'"{s[1]}"'})
            return
        raise _HTTPError(404, "not found")

    def _send_bytes(self, data: bytes, method: str, headers: dict) -> None:
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        headers = {"Accept-Ranges": "bytes", **headers}
        if m:
            start = int(m[1])
            end = int(m[2]) if m[2] else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, data[start:end + 1], "application/octet-stream", headers, method)
        else:
            self._send(200, data, "application/octet-stream", headers, method)

    # ---------------------------------------------------------------- Hub origin
    def _hub(self, method: str) -> None:
        s = self.segments
        if s[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo()
        if s[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml()
        if len(s) >= 4 and s[:2] == ["api", "models"]:
            return self._api_repo(method, f"{s[2]}/{s[3]}", s[4:])
        if len(s) >= 4 and s[0] == "api":
            raise _HTTPError(400, f"this server serves model repos only, not {s[1]}")
        if len(s) >= 6 and s[1].endswith(".git") and s[2:5] == ["info", "lfs", "objects"]:
            return self._lfs(method, f"{s[0]}/{s[1][:-4]}", s[5])
        if len(s) >= 5 and s[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(method, f"{s[0]}/{s[1]}", s[3], "/".join(s[4:]))
        raise _HTTPError(404, "Sorry, we can't find the page you are looking for.")

    def _create_repo(self) -> None:
        self._require_auth()
        p = self._payload()
        if p.get("type", "model") != "model":
            raise _HTTPError(400, "this server creates model repos only")
        if not p.get("organization") or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", p.get("name", "")):
            raise _HTTPError(400, "Invalid repo name")
        repo_id = f"{p['organization']}/{p['name']}"
        url = f"{self.server.hub.url}/{repo_id}"
        with self.state.lock:
            if repo_id in self.state.repos:
                self._json({"error": "You already created this model repo", "url": url}, 409)
                return
            self.state.create_repo(repo_id)
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self) -> None:
        import yaml

        content = self._payload().get("content", "")
        m = re.match(r"^---\n(.*?)\n---\n", content, re.DOTALL)
        if m:
            try:
                meta = yaml.safe_load(m[1])
            except yaml.YAMLError as exc:
                self._json({"errors": [{"message": f"Invalid YAML: {exc}"}], "warnings": []}, 400)
                return
            if not isinstance(meta, dict):
                self._json({"errors": [{"message": "metadata must be a mapping"}], "warnings": []}, 400)
                return
        self._json({"errors": [], "warnings": []})

    def _api_repo(self, method: str, repo_id: str, rest: list[str]) -> None:
        with self.state.lock:
            repo = self._repo(repo_id)
            if method == "GET" and not rest:
                return self._repo_info(repo, "main")
            if method == "GET" and rest[0] == "revision" and len(rest) == 2:
                return self._repo_info(repo, rest[1])
            if method == "GET" and rest == ["refs"]:
                return self._json({
                    "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in sorted(repo.branches.items())],
                    "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in sorted(repo.tags.items())],
                    "converts": [], "pullRequests": []})
            if method == "GET" and rest[0] == "tree" and len(rest) >= 2:
                return self._tree(repo, rest[1], "/".join(rest[2:]))
            if method == "POST" and rest[0] == "preupload" and len(rest) == 2:
                self._require_auth()
                return self._preupload(repo, rest[1])
            if method == "POST" and rest[0] == "commit" and len(rest) == 2:
                self._require_auth()
                return self._commit_files(repo, rest[1])
            if rest[0] == "branch" and len(rest) == 2 and method in ("POST", "DELETE"):
                self._require_auth()
                return self._branch(repo, rest[1], method)
            if rest[0] == "tag" and len(rest) == 2 and method in ("POST", "DELETE"):
                self._require_auth()
                return self._tag(repo, rest[1], method)
        raise _HTTPError(404, "Sorry, we can't find the page you are looking for.")

    def _repo_info(self, repo: Repo, rev: str) -> None:
        commit = self._commit(repo, rev)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(commit.date))
        self._json({"_id": repo.repo_id, "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
                    "sha": commit.sha, "lastModified": stamp, "createdAt": stamp, "private": False, "disabled": False,
                    "gated": False, "tags": [], "downloads": 0, "likes": 0,
                    "siblings": [{"rfilename": p} for p in sorted(commit.files)]})

    def _tree(self, repo: Repo, rev: str, prefix: str) -> None:
        commit = self._commit(repo, rev)
        recursive = self.query.get("recursive", "false").lower() in ("true", "1")
        base = prefix.rstrip("/") + "/" if prefix else ""
        under = {p: f for p, f in commit.files.items() if p.startswith(base)}
        if prefix and not under:
            raise _HTTPError(404, f"{prefix} does not exist on {rev}", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        entries, dirs = [], set()
        for path, f in sorted(under.items()):
            parts = path[len(base):].split("/")
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    dirs.add(base + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entry = {"type": "file", "oid": f.git_oid, "size": f.size, "path": path}
                if f.lfs:
                    entry["lfs"] = {"oid": f.content_sha256, "size": f.size,
                                    "pointerSize": len(lfs_pointer(f.content_sha256, f.size))}
                entries.append(entry)
        folders = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                   for d in sorted(dirs)]
        self._json(folders + entries)

    def _preupload(self, repo: Repo, rev: str) -> None:
        head = self._commit(repo, rev)
        out = []
        for f in self._payload().get("files", []):
            sample = base64.b64decode(f.get("sample", ""))
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] >= LFS_THRESHOLD or b"\0" in sample
            remote = head.files.get(f["path"])
            oid = None if remote is None else (remote.content_sha256 if remote.lfs else remote.git_oid)
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json({"files": out, "commitOid": head.sha})

    def _commit_files(self, repo: Repo, rev: str) -> None:
        if self.query.get("create_pr"):
            raise _HTTPError(400, "pull requests are not supported by this server")
        if rev not in repo.branches:
            if repo.resolve(rev) is None:
                raise _HTTPError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            raise _HTTPError(400, f"Invalid rev id: {rev} is not a branch")
        lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HTTPError(400, "The first line must be the commit header")
        header = lines[0]["value"]
        head_sha = repo.branches[rev]
        parent = header.get("parentCommit")
        if parent is not None and parent != head_sha:
            raise _HTTPError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.commits[head_sha].files)
        for line in lines[1:]:
            key, v = line["key"], line["value"]
            if key == "file":
                files[v["path"]] = self.state.store_regular(base64.b64decode(v["content"]))
            elif key == "lfsFile":
                data = self.state.objects.get(v["oid"])
                if data is None or len(data) != v["size"]:
                    raise _HTTPError(422, f"LFS file {v['path']} ({v['oid']}) was not uploaded")
                files[v["path"]] = StoredFile(v["size"], git_blob_sha1(lfs_pointer(v["oid"], v["size"])), v["oid"], lfs=True)
            elif key == "deletedFile":
                if files.pop(v["path"], None) is None:
                    raise _HTTPError(404, f"A file with this name doesn't exist: {v['path']}", "EntryNotFound")
            elif key == "deletedFolder":
                folder = v["path"].rstrip("/") + "/"
                for p in [p for p in files if p.startswith(folder)]:
                    del files[p]
            else:
                raise _HTTPError(400, f"unsupported commit operation {key}")
        sha = self.state.new_sha(repo.repo_id, head_sha, header.get("summary"), sorted((p, f.git_oid) for p, f in files.items()))
        repo.commits[sha] = Commit(sha, head_sha, header.get("summary", ""), files, time.time())
        repo.branches[rev] = sha
        self._json({"success": True, "commitOid": sha, "commitUrl": f"{self.server.hub.url}/{repo.repo_id}/commit/{sha}",
                    "hookOutput": "", "pullRequestUrl": None})

    def _branch(self, repo: Repo, name: str, method: str) -> None:
        if method == "DELETE":
            if repo.branches.pop(name, None) is None:
                raise _HTTPError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            return self._json({})
        if name in repo.branches:
            raise _HTTPError(409, f"Reference already exists: refs/heads/{name}")
        start = self._payload().get("startingPoint") or "main"
        repo.branches[name] = self._commit(repo, start).sha
        self._json({})

    def _tag(self, repo: Repo, rev: str, method: str) -> None:
        if method == "DELETE":
            if repo.tags.pop(rev, None) is None:
                raise _HTTPError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            return self._json({})
        tag = self._payload().get("tag")
        if not tag:
            raise _HTTPError(400, "tag is required")
        if tag in repo.tags:
            raise _HTTPError(409, f"Reference already exists: refs/tags/{tag}")
        repo.tags[tag] = self._commit(repo, rev).sha
        self._json({})

    def _lfs(self, method: str, repo_id: str, action: str) -> None:
        self._require_auth()
        with self.state.lock:
            self._repo(repo_id)
            p = self._payload()
        if action == "batch" and method == "POST":
            if p.get("operation") != "upload":
                raise _HTTPError(400, "only uploads go through this batch endpoint")
            cdn, hub = self.server.hub.cdn_url, self.server.hub.url
            objects = []
            for o in p.get("objects", []):
                stored = self.state.objects.get(o["oid"])
                if stored is not None and len(stored) == o["size"]:
                    objects.append({"oid": o["oid"], "size": o["size"]})  # already there: no actions
                else:
                    objects.append({"oid": o["oid"], "size": o["size"], "authenticated": True, "actions": {
                        "upload": {"href": f"{cdn}/lfs-upload/{o['oid']}?X-Amz-Signature=test", "expires_in": 900},
                        "verify": {"href": f"{hub}/{repo_id}.git/info/lfs/objects/verify"}}})
            self._json({"transfer": "basic", "objects": objects})
            return
        if action == "verify" and method == "POST":
            stored = self.state.objects.get(p.get("oid", ""))
            if stored is None or len(stored) != p.get("size"):
                raise _HTTPError(404, "Object not found")
            self._json({"success": True})
            return
        raise _HTTPError(404, "not found")

    def _resolve(self, method: str, repo_id: str, rev: str, path: str) -> None:
        with self.state.lock:
            commit = self._commit(self._repo(repo_id), rev)
            f = commit.files.get(path)
            data = None if f is None else self.state.objects[f.content_sha256]
        if f is None:
            raise _HTTPError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{f.git_oid}"'}
        if f.lfs:  # the Hub answers LFS files with a redirect to a signed URL on another host
            headers.update({"X-Linked-Etag": f'"{f.content_sha256}"', "X-Linked-Size": str(f.size),
                            "Location": f"{self.server.hub.cdn_url}/lfs-cdn/{f.content_sha256}?X-Amz-Signature=test"})
            self._send(302, b"", "text/plain", headers, method)
            return
        self._send_bytes(data, method, headers)


class FakeHub:
    """The Hub origin and its CDN origin, each a ThreadingHTTPServer on 127.0.0.1, port chosen by the OS."""

    def __init__(self, tokens: set[str] | None = None) -> None:
        self.state = HubState()
        self.tokens = tokens  # None: any token starting with hf_ is valid
        self._hub = _Server(self, "hub")
        self._cdn = _Server(self, "cdn")
        self.url = f"http://127.0.0.1:{self._hub.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._cdn.server_address[1]}"
        self._threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
                         for s in (self._hub, self._cdn)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self.state.stopping.set()  # release stalled handlers
        for s in (self._hub, self._cdn):
            s.shutdown()
            s.server_close()
            s.close_connections()
