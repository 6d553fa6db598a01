"""Resumable, verified HTTP downloads into the content-addressed cache.

Bytes are hashed while they stream into a `.part` file; only after size and SHA256 match does the
file move to its final path. Interrupted transfers resume with `Range` + `If-Range`; flaky servers
get bounded retries with backoff; dead mirrors, and mirrors that send wrong bytes, are skipped. A
bearer token goes only to the host of the first URL (host:port), never to a redirect target or
another mirror, and is never printed. Servers are not trusted: no more bytes are accepted than the
pinned size (or the caller's limit), and malformed headers or a full disk end in one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import hashlib
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

from . import cache, log
from .cache import BLOCK, Partial, cache_path, sha256_file
from .errors import ChecksumError, ConfigError, DownloadError

__all__ = ["RemoteFile", "RetryPolicy", "fetch", "download", "sha256_file", "cache_path"]

SHA256_RE = re.compile(r"[0-9a-f]{64}")
SKIP_MIRROR = {401, 403, 404, 410, 451}  # this URL will not work: retrying it only wastes time


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None  # None/"" = not pinned yet
    size: int | None = None  # None/0 = unknown
    token_env: str | None = None  # env var holding a bearer token for the first URL's host
    limit: int | None = None  # most bytes to accept when size is unknown (small metadata files)

    @property
    def cap(self) -> int | None:
        return self.size or self.limit


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one URL before moving to the next mirror."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0  # also caps Retry-After, so a hostile server cannot park us for hours
    timeout: tuple[float, float] = (15.0, 60.0)  # connect, read (between bytes)
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Exponential backoff with jitter (so parallel clients spread out), at least Retry-After."""
        backoff = min(self.max_delay, self.base_delay * 2**attempt) * random.uniform(0.5, 1.0)
        return max(backoff, min(retry_after or 0.0, self.max_delay))


class _Retry(Exception):
    """Worth another attempt at the same URL: 5xx, 429, a dropped or truncated transfer."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _NextMirror(Exception):
    """This URL is done for: go to the next mirror."""


def fetch(remote: RemoteFile, cache_dir: Path, *, offline: bool = False, require_pins: bool = False,
          session: requests.Session | None = None, retry: RetryPolicy = RetryPolicy(),
          verify: bool = False) -> Path:
    """Return the path of a verified copy in the content-addressed cache, downloading if needed.

    `verify=True` re-hashes a cache hit instead of trusting its size (the rename made it whole).
    """
    with _disk_errors(remote, cache.downloads_dir(cache_dir)):
        if offline:
            path = _offline_hit(_pinned(remote, None, retry, require_pins), cache_dir, verify)
        else:
            with _session(session) as http:
                path = _cached_or_downloaded(_pinned(remote, http, retry, require_pins), cache_dir, http, retry,
                                             verify)
        if not remote.sha256:
            _remember_pin(remote, cache_dir, path)
    return path


def download(remote: RemoteFile, dest: Path, *, session: requests.Session | None = None,
             retry: RetryPolicy = RetryPolicy(), partial: Path | None = None) -> str:
    """Stream `remote` to `dest` (resuming `partial`, default `dest.part`); return its sha256.

    `dest` only ever appears complete and verified.
    """
    with _disk_errors(remote, dest.parent):
        part = Partial(partial or dest.with_name(dest.name + ".part"))
        with _session(session) as http:
            digest = _transfer(remote, part, http, retry)
        part.finish(dest)
    return digest


@contextlib.contextmanager
def _disk_errors(remote: RemoteFile, where: Path) -> Iterator[None]:
    """A full disk or a read-only cache is the user's to fix: one line, not a traceback."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, requests.RequestException):
            raise
        raise DownloadError(f"cannot store {remote.filename} under {where}: {exc.strerror or exc}") from None


# --- the cache ---------------------------------------------------------------------------------


def _key(remote: RemoteFile) -> str:
    """Pinned files are keyed by content; unpinned ones by where they come from."""
    if remote.sha256:
        return remote.sha256
    return hashlib.sha256(f"{remote.filename}\n{remote.urls[0]}".encode()).hexdigest()[:32]


def _cache_hit(remote: RemoteFile, cache_dir: Path, verify: bool) -> Path | None:
    sha256 = remote.sha256 or cache.read_json(cache.resolved_path(cache_dir, _key(remote))).get("sha256")
    path = cache_path(cache_dir, sha256, remote.filename) if sha256 else None
    if not path or not path.is_file():
        return None
    if (remote.size and path.stat().st_size != remote.size) or (verify and sha256_file(path) != sha256):
        log.warn(f"{path} does not match its pin; fetching it again")
        path.unlink(missing_ok=True)
        return None
    return path


def _cached_or_downloaded(remote: RemoteFile, cache_dir: Path, http: requests.Session, retry: RetryPolicy,
                          verify: bool) -> Path:
    """Check, lock, check again: a process that waited for the lock finds the other one's file."""
    hit = _cache_hit(remote, cache_dir, verify)
    if hit:
        return hit
    with cache.locked(cache_dir, _key(remote), remote.filename):
        return _cache_hit(remote, cache_dir, verify) or _download_to_cache(remote, cache_dir, http, retry)


def _offline_hit(remote: RemoteFile, cache_dir: Path, verify: bool) -> Path:
    hit = _cache_hit(remote, cache_dir, verify)
    if not hit:
        raise DownloadError(f"{remote.filename} is not in the download cache ({cache.downloads_dir(cache_dir)}) "
                            "and offline mode is on: run once online to fill the cache")
    return hit


def _download_to_cache(remote: RemoteFile, cache_dir: Path, http: requests.Session,
                       retry: RetryPolicy) -> Path:
    part = Partial(cache.partial_path(cache_dir, _key(remote)))
    digest = _transfer(remote, part, http, retry)
    return part.finish(cache_path(cache_dir, digest, remote.filename))


# --- pins for unpinned files -------------------------------------------------------------------


def _pinned(remote: RemoteFile, http: requests.Session | None, retry: RetryPolicy,
            require_pins: bool) -> RemoteFile:
    """Take an unpinned file's expected sha256/size from HuggingFace's X-Linked-* headers (if online)."""
    if remote.sha256:
        return remote
    sha256, size = _linked_pin(remote, http, retry) if http else (None, None)
    if require_pins:
        pin = f'sha256 = "{sha256}" and size = {size}' if sha256 else "its sha256 and size"
        raise ConfigError(f"{remote.filename} is not pinned and pins are required: add {pin} to release.toml")
    if not sha256:
        return remote  # learned after the download (or from an earlier run's record)
    return dataclasses.replace(remote, sha256=sha256, size=size or remote.size)


def _linked_pin(remote: RemoteFile, http: requests.Session, retry: RetryPolicy) -> tuple[str | None, int | None]:
    """HEAD the first URL without following redirects: HF puts the LFS sha256 on its 302."""
    try:
        response = http.head(remote.urls[0], auth=_auth(remote), timeout=retry.timeout, allow_redirects=False)
    except requests.RequestException:
        return None, None  # best effort: the GET that follows reports the real problem
    etag = response.headers.get("X-Linked-Etag", "").strip().strip('"').lower()
    size = response.headers.get("X-Linked-Size", "")
    # Non-LFS files carry a git sha1 there: only a 64-hex value is a sha256.
    return (etag if SHA256_RE.fullmatch(etag) else None), (int(size) if size.isdigit() else None)


def _remember_pin(remote: RemoteFile, cache_dir: Path, path: Path) -> None:
    """Record what an unpinned file turned out to be (for offline runs) and print the pin to add."""
    sha256, size = path.parent.name, path.stat().st_size  # the cache is content-addressed
    cache.write_json(cache.resolved_path(cache_dir, _key(remote)), {"sha256": sha256, "size": size})
    log.info(f'{remote.filename} is not pinned; add to its entry in release.toml: sha256 = "{sha256}", size = {size}')


# --- HTTP ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _session(session: requests.Session | None) -> Iterator[requests.Session]:
    if session is not None:
        yield session
        return
    with requests.Session() as own:
        yield own


def _origin(url: str) -> tuple[str, int]:
    """host:port identity (default port filled in): what a token is scoped to."""
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)


class _BearerFor(requests.auth.AuthBase):
    """Adds the bearer token to requests for one origin only; requests strips it on a redirect away."""

    def __init__(self, token: str, url: str) -> None:
        self._token, self._origin = token, _origin(url)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if _origin(request.url or "") == self._origin:
            request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerFor(<token hidden>)"


def _auth(remote: RemoteFile) -> _BearerFor | None:
    token = os.environ.get(remote.token_env, "") if remote.token_env else ""
    return _BearerFor(token, remote.urls[0]) if token else None


def _transfer(remote: RemoteFile, part: Partial, http: requests.Session, retry: RetryPolicy) -> str:
    """Complete `part` from the first URL that gives the right bytes; return their sha256."""
    reason, wrong_bytes = "no URL configured", None
    for url in remote.urls:
        try:
            _from_url(url, remote, part, http, retry)
            return _verify(remote, part)
        except _NextMirror as exc:
            reason = f"{_display(url)}: {exc}"
        except ChecksumError as exc:  # this mirror serves other bytes: another one may not
            reason = wrong_bytes = f"{_display(url)}: {exc}"
        log.warn(f"{remote.filename}: {reason}")
    if wrong_bytes == reason:
        raise ChecksumError(f"no URL gave the pinned bytes of {remote.filename}; last: {reason}")
    raise DownloadError(f"could not download {remote.filename} from {len(remote.urls)} URL(s); last error {reason}")


def _from_url(url: str, remote: RemoteFile, part: Partial, http: requests.Session, retry: RetryPolicy) -> None:
    for attempt in range(retry.attempts):
        try:
            return _attempt(url, remote, part, http, retry)
        except _Retry as exc:
            last = exc
            if attempt + 1 < retry.attempts:
                delay = retry.delay(attempt, exc.retry_after)
                log.warn(f"{remote.filename}: {exc} from {_display(url)}; retrying in {delay:.1f} s")
                retry.sleep(delay)
    raise _NextMirror(f"{last} ({retry.attempts} attempts)")


def _attempt(url: str, remote: RemoteFile, part: Partial, http: requests.Session, retry: RetryPolicy) -> None:
    headers = {"Accept-Encoding": "identity", **_resume_headers(url, remote, part)}
    try:
        with http.get(url, headers=headers, auth=_auth(remote), stream=True, timeout=retry.timeout) as response:
            _check_status(response)
            if response.status_code == 416 or not _starts_at_part_end(response, url, part):
                return _restart_unless_complete(url, remote, part, http, retry, response)
            _receive(response, remote, part)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.HTTPError) as exc:
        raise _Retry(f"connection broken ({type(exc).__name__})") from None
    except requests.RequestException as exc:  # a malformed URL, too many redirects: not transient
        raise _NextMirror(type(exc).__name__) from None


def _resume_headers(url: str, remote: RemoteFile, part: Partial) -> dict[str, str]:
    """Range (+ If-Range) for the bytes we lack; without a pin or validator, bytes could mix: restart."""
    if not part.size:
        return {}
    validators = part.validators if part.validators.get("url") == url else {}
    etag = validators.get("etag") or ""
    validator = (etag if etag and not etag.startswith("W/") else "") or validators.get("last_modified")
    if not validator and not remote.sha256:
        part.reset({})
        return {}
    return {"Range": f"bytes={part.size}-", **({"If-Range": validator} if validator else {})}


def _check_status(response: requests.Response) -> None:
    status = response.status_code
    if status in SKIP_MIRROR:
        raise _NextMirror(f"HTTP {status}")
    if status == 429 or status >= 500:
        raise _Retry(f"HTTP {status}", _retry_after(response.headers.get("Retry-After")))
    if status not in (200, 206, 416):
        raise _NextMirror(f"unexpected HTTP {status}")


def _retry_after(value: str | None) -> float | None:
    """Retry-After is seconds or an HTTP date; anything else is ignored (plain backoff)."""
    if not value:
        return None
    if re.fullmatch(r"[0-9]{1,9}", value.strip()):
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def _starts_at_part_end(response: requests.Response, url: str, part: Partial) -> bool:
    """True when the body continues the part; a 200 (Range ignored or If-Range failed) restarts it."""
    validators = {"url": url, "etag": response.headers.get("ETag"),
                  "last_modified": response.headers.get("Last-Modified")}
    if response.status_code == 200:
        if part.size:
            log.info(f"{_display(url)} sent the whole file instead of resuming; starting over")
        part.reset(validators)
        return True
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    if response.status_code == 206 and match and int(match.group(1)) == part.size:
        part.remember(validators)  # the next resume asks this URL with these validators
        return True
    return False


def _restart_unless_complete(url: str, remote: RemoteFile, part: Partial, http: requests.Session,
                             retry: RetryPolicy, response: requests.Response) -> None:
    """416 or a 206 at the wrong offset: keep the part if it already is the whole file, else restart."""
    match = re.match(r"bytes \*/(\d+)", response.headers.get("Content-Range", ""))
    total = remote.size or (int(match.group(1)) if match else None)
    if part.size == total and (not remote.sha256 or part.hexdigest() == remote.sha256):
        return
    if not part.size:  # we asked for no range, so starting over would get the same answer
        raise _NextMirror(f"HTTP {response.status_code} to a request without Range")
    log.info(f"{remote.filename}: the partial download does not fit the server's file; starting over")
    part.reset({})
    response.close()
    return _attempt(url, remote, part, http, retry)  # without Range now, so this recursion ends


def _content_length(response: requests.Response) -> int:
    """The body's announced length, -1 if none; repeated equal values count once (RFC 9110)."""
    raw = response.headers.get("Content-Length")
    if raw is None:
        return -1
    values = {value.strip() for value in raw.split(",")}
    if len(values) != 1 or not re.fullmatch(r"[0-9]{1,18}", next(iter(values))):
        raise _NextMirror(f"malformed Content-Length {raw[:40]!r}")
    return int(values.pop())


def _receive(response: requests.Response, remote: RemoteFile, part: Partial) -> None:
    length = _content_length(response)
    start = part.size
    if remote.cap and length > remote.cap - start:
        raise _NextMirror(f"announces {start + length} bytes, more than the {remote.cap} expected")
    with log.Progress(remote.filename, remote.size or (start + length if length >= 0 else None), start) as bar:
        part.append(_capped(_body(response), part, remote), bar.update)
    received = part.size - start
    if 0 <= length != received or (remote.size and part.size < remote.size):
        expected = length if length >= 0 else remote.size - start
        raise _Retry(f"truncated body ({received} of {expected} bytes)")


def _capped(chunks: Iterator[bytes], part: Partial, remote: RemoteFile) -> Iterator[bytes]:
    """Stop a server that sends more than the file can hold, before the surplus is written."""
    for chunk in chunks:
        if remote.cap and part.size + len(chunk) > remote.cap:
            part.discard()
            raise _NextMirror(f"sent more than the {remote.cap} bytes expected")
        yield chunk


def _body(response: requests.Response) -> Iterator[bytes]:
    """Each block as it arrives: a drop loses nothing received (iter_content drops a partial block)."""
    while block := response.raw.read1(BLOCK, decode_content=False):
        yield block


def _verify(remote: RemoteFile, part: Partial) -> str:
    actual = part.hexdigest()
    if remote.size and part.size != remote.size:
        problem = f"{part.size} bytes, expected {remote.size}"
    elif remote.sha256 and actual != remote.sha256:
        problem = f"sha256 {actual}, expected {remote.sha256}"
    else:
        return actual
    part.discard()
    raise ChecksumError(f"{remote.filename}: downloaded {problem}; deleted it, nothing was kept")


def _display(url: str) -> str:
    """A URL without its query (signed CDN URLs carry credentials there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
