"""The few GitHub Releases REST calls publishing needs, with retries and a token that is never shown.

The API root comes from `TEA_GITHUB_API_URL` (default api.github.com; tests point it at a loopback
fake), uploads go to the `upload_url` the release itself names (uploads.github.com on github.com).
Each asset's label records its size and sha256, so a re-run can tell a complete, identical asset
from a missing, partial or different one without downloading anything.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import requests

from . import log
from .errors import ConfigError, PublishError

DEFAULT_API_URL = "https://api.github.com"
API_URL_ENV = "TEA_GITHUB_API_URL"
TOKEN_ENVS = ("GITHUB_TOKEN", "GH_TOKEN")
_LABEL = re.compile(r"\((\d+) bytes, sha256:([0-9a-f]{64})\)$")
_PAGE = 100


def github_token(required: bool = True) -> str | None:
    for name in TOKEN_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    if required:
        raise PublishError(f"set {' or '.join(TOKEN_ENVS)} to a token that may write releases")
    return None


def api_url(given: str | None = None) -> str:
    return (given or os.environ.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")


def asset_label(name: str, size: int, sha256: str) -> str:
    return f"{name} ({size} bytes, sha256:{sha256})"


@dataclass(frozen=True)
class Asset:
    id: int
    name: str
    size: int
    label: str
    state: str

    def holds(self, size: int, sha256: str) -> bool:
        """True only for a finished upload whose label and size match these bytes."""
        match = _LABEL.search(self.label or "")
        return (self.state == "uploaded" and self.size == size and match is not None
                and (int(match.group(1)), match.group(2)) == (size, sha256))


def refusal(what: str, response: requests.Response) -> str:
    """GitHub's own words for a refused request: its message plus each error's message."""
    try:
        body = response.json()
    except ValueError:
        return f"{what}: HTTP {response.status_code}"
    details = [e.get("message") or e.get("code", "") for e in body.get("errors", []) if isinstance(e, dict)]
    return f"{what}: HTTP {response.status_code} {'; '.join([body.get('message', ''), *details]).strip('; ')}"


class UploadBody:
    """A file as a request body that reports progress; rewound before every attempt."""

    def __init__(self, handle, size: int, name: str) -> None:
        self.handle, self.size, self.name = handle, size, name
        self.progress: log.Progress | None = None

    def rewind(self) -> "UploadBody":
        self.close()
        self.handle.seek(0)
        self.progress = log.Progress(f"uploading {self.name}", self.size)
        return self

    def read(self, count: int = -1) -> bytes:
        block = self.handle.read(count)
        self.progress.update(len(block))
        return block

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.read(1 << 20), b"")

    def __len__(self) -> int:
        return self.size

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()


class GitHub:
    """One repository's releases, as the token's owner."""

    def __init__(self, repo: str, token: str | None, *, url: str | None = None, retries: int = 3,
                 retry_delay: float = 2.0, timeout: float = 60.0) -> None:
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
            raise ConfigError(f"repository must be owner/name, got '{repo}'")
        self.repo, self.api = repo, api_url(url)
        self.retries, self.retry_delay, self.timeout = retries, retry_delay, timeout
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/vnd.github+json", "User-Agent": "tea-release",
                                     "X-GitHub-Api-Version": "2022-11-28"})
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    @property
    def authenticated(self) -> bool:
        return "Authorization" in self.session.headers

    def _call(self, method: str, url: str, what: str,
              prepare: Callable[[int], dict[str, Any]] | None = None, **kwargs: Any) -> requests.Response:
        """The first answer that is not a server error; network errors and 5xx are retried."""
        last = ""
        for attempt in range(1, self.retries + 1):
            if attempt > 1:
                log.warn(f"{what}: {last}; retry {attempt - 1} of {self.retries - 1}")
                time.sleep(self.retry_delay * (attempt - 1))
            extra = prepare(attempt) if prepare else {}
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs, **extra)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__} talking to {url.split('?')[0]}"
                continue
            if response.status_code < 500:
                return response
            last = f"HTTP {response.status_code}"
        raise PublishError(f"{what} failed after {self.retries} attempts ({last}): re-run publish to finish")

    def _expect(self, response: requests.Response, codes: tuple[int, ...], what: str) -> requests.Response:
        if response.status_code not in codes:
            raise PublishError(refusal(what, response))
        return response

    def _pages(self, path: str, what: str) -> Iterator[dict]:
        for page in range(1, 10_000):
            response = self._call("GET", f"{self.api}{path}", what, params={"per_page": _PAGE, "page": page})
            items = self._expect(response, (200,), what).json()
            yield from items
            if len(items) < _PAGE:
                return

    def find_release(self, tag: str) -> dict | None:
        """The release for tag, drafts included (GitHub's by-tag lookup does not see drafts)."""
        releases = self._pages(f"/repos/{self.repo}/releases", f"listing releases of {self.repo}")
        return next((release for release in releases if release.get("tag_name") == tag), None)

    def create_release(self, tag: str, *, draft: bool, commit: str) -> dict:
        """A new release; a tag that does not exist yet is made at commit (not the default branch's HEAD)."""
        if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit or ""):
            raise PublishError(f"manifest.json records no git commit ({commit!r}): cannot create tag {tag}"
                               " at the commit the release was built from; build from a git checkout")
        response = self._call("POST", f"{self.api}/repos/{self.repo}/releases", f"creating release {tag}",
                              json={"tag_name": tag, "name": tag, "draft": draft, "target_commitish": commit})
        return self._expect(response, (201,), f"creating release {tag} in {self.repo}").json()

    def assets(self, release: dict) -> list[Asset]:
        found = self._pages(f"/repos/{self.repo}/releases/{release['id']}/assets",
                            f"listing assets of {release['tag_name']}")
        return [Asset(a["id"], a["name"], a["size"], a.get("label") or "", a.get("state", "uploaded")) for a in found]

    def delete_asset(self, asset: Asset) -> None:
        what = f"deleting {asset.name}"
        response = self._call("DELETE", f"{self.api}/repos/{self.repo}/releases/assets/{asset.id}", what)
        self._expect(response, (204, 404), what)

    def _drop_partial(self, release: dict, name: str) -> None:
        """A failed upload can leave a broken asset of that name behind; it blocks the retry."""
        for asset in self.assets(release):
            if asset.name == name:
                self.delete_asset(asset)

    def upload(self, release: dict, path: Path, name: str, size: int, sha256: str) -> None:
        url = release["upload_url"].split("{")[0]
        what = f"upload of {name}"
        with path.open("rb") as handle:
            body = UploadBody(handle, size, name)

            def prepare(attempt: int) -> dict[str, Any]:
                if attempt > 1:
                    self._drop_partial(release, name)
                return {"data": body.rewind()}

            try:
                response = self._call("POST", url, what, prepare,
                                      params={"name": name, "label": asset_label(name, size, sha256)},
                                      headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
            finally:
                body.close()
        if response.status_code == 422 and "size" in refusal(what, response):
            raise PublishError(f"{refusal(what, response)} — GitHub caps assets below 2 GiB: publish its parts"
                               " (lower asset_size_cap in release/release.toml and rebuild)")
        self._expect(response, (201,), what)
