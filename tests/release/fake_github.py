"""A loopback fake of the GitHub Releases API: a real HTTP server that keeps releases in memory.

It answers the calls release/github.py makes the way github.com does: a token is required, a
draft release is visible only in the release list, an upload of `cap` bytes or more gets the 422
GitHub sends ("size must be less than ..."), and a second asset with one name is refused. It can
be told to fail uploads after N successes — dropping the connection half-way or after the last
byte (leaving a "starter" asset, as GitHub does) or answering 500 — and serves asset bytes under /download/ (with byte
ranges) so a published release can be fetched back. Like github.com for a public repository, it
answers `releases/latest` and `releases/tags/TAG` without a token (what `tea self-update` asks).
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.release_server import send_file

GITHUB_CAP = 2_147_483_648


@dataclass
class FakeAsset:
    id: int
    name: str
    label: str
    data: bytes
    state: str = "uploaded"

    def to_json(self, base: str, tag: str) -> dict:
        return {"id": self.id, "name": self.name, "label": self.label, "size": len(self.data), "state": self.state,
                "browser_download_url": f"{base}/download/{tag}/{self.name}"}


@dataclass
class FakeRelease:
    id: int
    tag_name: str
    draft: bool
    target_commitish: str | None = None  # what GitHub creates a missing tag at (default: the default branch)
    assets: dict[int, FakeAsset] = field(default_factory=dict)

    def to_json(self, fake: "FakeGitHub", assets: bool = False) -> dict:
        upload_url = f"{fake.url}/uploads/repos/{fake.repo}/releases/{self.id}/assets{{?name,label}}"
        found = {"id": self.id, "tag_name": self.tag_name, "draft": self.draft, "upload_url": upload_url}
        if assets:  # what GET releases/latest and releases/tags/TAG include
            found["assets"] = [asset.to_json(fake.url, self.tag_name) for asset in self.assets.values()]
        return found

    def named(self, name: str) -> FakeAsset | None:
        return next((asset for asset in self.assets.values() if asset.name == name), None)


class FakeGitHub:
    """State and knobs of the fake; `url` is its API root, `requests` logs (method, path) per call."""

    def __init__(self, token: str, repo: str = "owner/tea", cap: int = GITHUB_CAP) -> None:
        self.token, self.repo, self.cap = token, repo, cap
        self.releases: dict[int, FakeRelease] = {}
        self.uploads: list[str] = []  # names of completed uploads, in order
        self.deleted: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.downloaded: dict[str, int] = {}  # asset name → body bytes sent under /download/
        self.fail_after: int | None = None  # uploads after this many successes fail
        self.failure = "drop"  # or "500", or "drop-at-end" (every byte received, still a "starter" asset)
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> "FakeGitHub":
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def release(self, tag: str) -> FakeRelease:
        return next(release for release in self.releases.values() if release.tag_name == tag)

    def corrupt(self, tag: str, name: str, offset: int = 0) -> None:
        asset = self.release(tag).named(name)
        data = bytearray(asset.data)
        data[offset] ^= 0xFF
        asset.data = bytes(data)

    def next_id(self) -> int:
        return next(self._ids)


def _handler(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def send_json(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def drain(self, limit: int | None = None) -> bytes:
            length = int(self.headers.get("Content-Length", 0))
            return self.rfile.read(length if limit is None else min(limit, length))

        def route(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            with fake.lock:
                fake.requests.append((method, url.path))
            prefix = f"/repos/{fake.repo}/releases"
            parts = url.path.removeprefix(prefix).strip("/").split("/") if url.path.startswith(prefix) else []
            shape = _shape(url.path, prefix, parts)
            public = method == "GET" and shape in ("download", "latest", "tag")
            if not public and self.headers.get("Authorization") != f"Bearer {fake.token}":
                self.drain()
                return self.send_json(401, {"message": "Bad credentials"})
            handler = _ROUTES.get((method, shape))
            if handler is None:
                self.drain()
                return self.send_json(404, {"message": "Not Found"})
            handler(self, fake, parts, query)

        def do_GET(self) -> None:
            self.route("GET")

        def do_POST(self) -> None:
            self.route("POST")

        def do_DELETE(self) -> None:
            self.route("DELETE")

    return Handler


def _shape(path: str, prefix: str, parts: list[str]) -> str:
    """Which endpoint a path is: the release list, one release's assets, one asset, an upload."""
    if path.startswith("/download/"):
        return "download"
    if path.startswith("/uploads" + prefix):
        return "upload"
    parts = [part for part in parts if part]
    if path.startswith(prefix) and (parts == ["latest"] or (len(parts) == 2 and parts[0] == "tags")):
        return "latest" if parts == ["latest"] else "tag"
    if not path.startswith(prefix) or len(parts) not in (0, 2):
        return "other"
    if not parts:
        return "releases"
    return {"assets": "asset"}.get(parts[0], "release-assets" if parts[1] == "assets" else "other")


def _page(items: list, query: dict) -> list:
    per_page, page = int(query.get("per_page", 30)), int(query.get("page", 1))
    return items[(page - 1) * per_page: page * per_page]


def _list_releases(h, fake: FakeGitHub, parts, query) -> None:
    h.send_json(200, _page([release.to_json(fake) for release in fake.releases.values()], query))


def _latest_release(h, fake: FakeGitHub, parts, query) -> None:
    """The newest published release (not a draft); or the one with the tag in the path."""
    tagged = [r for r in fake.releases.values() if not r.draft and parts[0] != "latest" and r.tag_name == parts[1]]
    newest = [r for r in fake.releases.values() if not r.draft][-1:] if parts[0] == "latest" else tagged
    if not newest:
        return h.send_json(404, {"message": "Not Found"})
    h.send_json(200, newest[0].to_json(fake, assets=True))


def _create_release(h, fake: FakeGitHub, parts, query) -> None:
    body = json.loads(h.drain() or b"{}")
    with fake.lock:
        release = FakeRelease(fake.next_id(), body["tag_name"], bool(body.get("draft")), body.get("target_commitish"))
        fake.releases[release.id] = release
    h.send_json(201, release.to_json(fake))


def _list_assets(h, fake: FakeGitHub, parts, query) -> None:
    release = fake.releases[int(parts[0])]
    assets = [a.to_json(fake.url, release.tag_name) for a in release.assets.values()]
    h.send_json(200, _page(assets, query))


def _delete_asset(h, fake: FakeGitHub, parts, query) -> None:
    with fake.lock:
        for release in fake.releases.values():
            asset = release.assets.pop(int(parts[1]), None)
            if asset is not None:
                fake.deleted.append(asset.name)
                h.send_response(204)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
    h.send_json(404, {"message": "Not Found"})


def _validation_failed(h, field_name: str, code: str, message: str) -> None:
    h.send_json(422, {"message": "Validation Failed", "errors": [
        {"resource": "ReleaseAsset", "code": code, "field": field_name, "message": message}],
        "documentation_url": "https://docs.github.com/rest/releases/assets#upload-a-release-asset"})


def _upload(h, fake: FakeGitHub, parts, query) -> None:
    release = fake.releases[int(urlsplit(h.path).path.split("/")[-2])]
    size = int(h.headers.get("Content-Length", 0))
    if size >= fake.cap:
        h.drain()
        return _validation_failed(h, "size", "custom", f"size must be less than {fake.cap}")
    if release.named(query["name"]) is not None:
        h.drain()
        return _validation_failed(h, "name", "already_exists", "name already exists")
    if fake.fail_after is not None and len(fake.uploads) >= fake.fail_after:
        return _fail_upload(h, fake, release, query)
    asset = FakeAsset(fake.next_id(), query["name"], query.get("label", ""), h.drain())
    with fake.lock:
        release.assets[asset.id] = asset
        fake.uploads.append(asset.name)
    h.send_json(201, asset.to_json(fake.url, release.tag_name))


def _fail_upload(h, fake: FakeGitHub, release: FakeRelease, query: dict) -> None:
    if fake.failure == "500":
        h.drain()
        return h.send_json(500, {"message": "Server Error"})
    length = int(h.headers.get("Content-Length", 0))
    received = h.drain(limit=length if fake.failure == "drop-at-end" else length // 2)
    with fake.lock:
        asset = FakeAsset(fake.next_id(), query["name"], query.get("label", ""), received, state="starter")
        release.assets[asset.id] = asset
    h.close_connection = True  # hang up with no answer, half the body unread


def _download(h, fake: FakeGitHub, parts, query) -> None:
    _, _, tag, name = urlsplit(h.path).path.split("/", 3)
    release = next((r for r in fake.releases.values() if r.tag_name == tag), None)
    asset = release.named(name) if release else None
    if asset is None:
        return h.send_json(404, {"message": "Not Found"})

    def count(sent: int) -> None:
        with fake.lock:
            fake.downloaded[name] = fake.downloaded.get(name, 0) + sent

    send_file(h, asset.data, True, count)


_ROUTES = {
    ("GET", "releases"): _list_releases,
    ("GET", "latest"): _latest_release,
    ("GET", "tag"): _latest_release,
    ("POST", "releases"): _create_release,
    ("GET", "release-assets"): _list_assets,
    ("DELETE", "asset"): _delete_asset,
    ("POST", "upload"): _upload,
    ("GET", "download"): _download,
}
