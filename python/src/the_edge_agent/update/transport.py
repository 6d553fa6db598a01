"""Reading a release's files: small ones whole, big ones as byte ranges, over HTTP(S) or from a
directory.

HTTP ranges are single `Range: bytes=a-b` requests; an answer is used only when it is a 206 for
exactly that range (a server that ignores Range, or answers another range, is refused: its bytes
would land in the wrong place). A dropped connection or a 5xx is retried from the first byte not
yet received, a few times; no answer is read past the length asked for. Every byte received is
counted (`received`). HTTPS uses the system's CA certificates, wherever this distribution keeps
them (the frozen app's OpenSSL only knows the build system's place). With `https_only` (an
unsigned AppImage: nothing but TLS vouches for the bytes) a plain-HTTP URL, or a redirect to one,
is refused.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import UpdateError
from ..version import package_version

CHUNK = 1 << 20
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/pki/tls/cacert.pem",
              "/etc/ssl/ca-bundle.pem", "/etc/ssl/cert.pem", "/usr/local/share/certs/ca-root-nss.crt")
RETRYABLE = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


def tls_context() -> ssl.SSLContext:
    """The default context, with the first CA bundle of this system when OpenSSL's own is missing."""
    context = ssl.create_default_context()
    defaults = ssl.get_default_verify_paths()
    if not os.environ.get("SSL_CERT_FILE") and not (defaults.cafile and os.path.isfile(defaults.cafile)):
        bundle = next((path for path in CA_BUNDLES if os.path.isfile(path)), None)
        if bundle:
            context.load_verify_locations(cafile=bundle)
    return context


def refuse_plain_http(url: str) -> None:
    if not url.startswith("https://"):
        raise UpdateError(f"{display(url)}: refusing plain HTTP for an unsigned AppImage (anyone on the way "
                          f"could change what it sends): use an https:// release, or --keyring")


class _NoPlainRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, request, answer, code, message, headers, new_url):
        refuse_plain_http(new_url)
        return super().redirect_request(request, answer, code, message, headers, new_url)


@dataclass
class Transport:
    """Reads files by URL or path; `received` counts the bytes that came over the network."""

    timeout: float = 30.0
    attempts: int = 4
    delay: float = 1.0
    received: int = 0
    requests: int = 0
    https_only: bool = False

    def whole(self, location: str, limit: int) -> bytes:
        """A small file (SHA256SUMS, its signature, a block map, an API answer), at most `limit` bytes."""
        if not is_url(location):
            return b"".join(_read_local(location, 0, None, limit))
        attempt = 0
        while True:
            try:
                with self._open(location, {}) as answer:
                    data = answer.read(limit + 1)
                break
            except RETRYABLE as error:
                attempt = self._again(location, attempt, error)
        self.received += len(data)
        if len(data) > limit:
            raise UpdateError(f"{display(location)} is larger than the {limit} bytes expected: refusing it")
        return data

    def read(self, location: str, start: int, length: int) -> Iterator[bytes]:
        """Exactly `length` bytes from `start`, in chunks as they arrive."""
        if not is_url(location):
            yield from _read_local(location, start, length, length)
            return
        done, attempt = 0, 0
        while done < length:
            try:
                for chunk in self._range(location, start + done, length - done):
                    done += len(chunk)
                    yield chunk
            except RETRYABLE as error:
                attempt = self._again(location, attempt, error)

    def _again(self, location: str, attempt: int, error: BaseException) -> int:
        """Back off before the next attempt, or give up with one line once they are used up."""
        attempt += 1
        if attempt >= self.attempts:
            raise UpdateError(f"{display(location)}: {describe(error)} ({attempt} attempts); "
                              f"run `tea self-update` again to resume") from None
        time.sleep(self.delay * 2 ** (attempt - 1))
        return attempt

    def _range(self, url: str, start: int, length: int) -> Iterator[bytes]:
        wanted = f"bytes {start}-{start + length - 1}/"
        with self._open(url, {"Range": f"bytes={start}-{start + length - 1}"}) as answer:
            got = answer.headers.get("Content-Range", "")
            if answer.status != 206 or not got.startswith(wanted):
                raise UpdateError(f"{display(url)} answered {answer.status} {got or '(no Content-Range)'} "
                                  f"to a request for {wanted[6:-1]}: the server does not serve byte ranges "
                                  f"correctly, refusing its bytes")
            left = length
            while left:
                chunk = answer.read1(min(CHUNK, left))  # what has arrived: a drop loses nothing received
                if not chunk:
                    raise ConnectionError(f"the connection ended {left} bytes early")
                self.received += len(chunk)
                left -= len(chunk)
                yield chunk

    def _open(self, url: str, headers: dict[str, str]):
        if self.https_only:
            refuse_plain_http(url)
        request = urllib.request.Request(url, headers={"User-Agent": f"tea-self-update/{package_version()}",
                                                       "Accept-Encoding": "identity", **headers})
        self.requests += 1
        handlers = [urllib.request.HTTPSHandler(context=tls_context()), *([_NoPlainRedirect] if self.https_only else [])]
        try:
            return urllib.request.build_opener(*handlers).open(request, timeout=self.timeout)
        except urllib.error.HTTPError as error:
            if error.code >= 500 or error.code == 429:
                raise ConnectionError(f"HTTP {error.code}") from None
            raise UpdateError(f"{display(url)}: HTTP {error.code} {error.reason}") from None


def _read_local(path: str, start: int, length: int | None, limit: int) -> Iterator[bytes]:
    """A local file's bytes in chunks: `length` from `start`, or all of it (at most `limit`)."""
    wanted = limit + 1 if length is None else length
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            while wanted and (chunk := handle.read(min(CHUNK, wanted))):
                wanted -= len(chunk)
                yield chunk
    except OSError as error:
        raise UpdateError(f"cannot read {path}: {error.strerror}") from None
    if (length is None and not wanted) or (length is not None and wanted):
        raise UpdateError(f"{path} does not have the size the release says: refusing it")


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def display(url: str) -> str:
    """A URL without its query (signed download URLs carry credentials there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else url


def describe(error: BaseException) -> str:
    reason = getattr(error, "reason", None) or error
    return re.sub(r"\s+", " ", str(reason)) or type(error).__name__
