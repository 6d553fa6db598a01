"""release.download against a real loopback HTTP server that serves real bytes and misbehaves on cue.

The server counts every body byte it sends, so "resumed without re-fetching" is an exact equation,
and records every request's headers, so "the token went only to its host" is checked on the wire.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from release import cache
from release.download import RemoteFile, RetryPolicy, download, fetch, sha256_file
from release.errors import ChecksumError, ConfigError, DownloadError

REPO = Path(__file__).resolve().parents[2]
SIZE = 3 * (1 << 20) + 12345  # a few MiB, not a multiple of the 1 MiB block
TOKEN = "hf_s3cr3t-token-do-not-leak"
FAST = RetryPolicy(attempts=3, base_delay=0.001, timeout=(5.0, 10.0))
ENDLESS = 64 << 20


class BlobServer:
    """One blob at /file (with Range/If-Range), a 302 at /redirect, a HuggingFace-like 302 at /hf.

    `faults` is consumed one per GET of /file: an int status, a (status, headers) pair, "drop"
    (send half the body, then close), "ignore-range" (answer 200 with everything), "endless" (no
    length, then the blob over and over, up to ENDLESS bytes), "dup-length" (Content-Length: N, N)
    or "two-lengths" (Content-Length: N, N+1), "no-length" (the blob, then hang up: no Content-Length) or
    "wrong-offset" (a 206 from byte 0, whatever range was asked for).
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.etag = f'"{self.sha256[:16]}"'
        self.faults: deque = deque()
        self.requests: list[tuple[str, str, dict]] = []
        self.bytes_sent = 0
        self.redirect_to = ""
        self.linked: dict[str, str] = {}
        self.gate: threading.Event | None = None  # when set up, /file pauses after 1 MiB until set
        self.streaming = threading.Event()
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (BlobHandler,), {"blob": self}))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def remote(self, path: str = "/file", **fields) -> RemoteFile:
        return RemoteFile(**{"filename": "blob.bin", "urls": (self.url + path,), "sha256": self.sha256,
                             "size": len(self.data), **fields})

    def gets(self, path: str = "/file") -> list[dict]:
        return [headers for method, got, headers in self.requests if method == "GET" and got == path]

    def close(self) -> None:
        if self.gate:
            self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class BlobHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    blob: BlobServer

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # clients hang up on hostile answers, as they should
            super().handle()

    def do_HEAD(self) -> None:
        self.route(body=False)

    def do_GET(self) -> None:
        self.route(body=True)

    def route(self, body: bool) -> None:
        blob = self.blob
        with blob.lock:
            blob.requests.append((self.command, self.path, dict(self.headers)))
        if self.path == "/file":
            return self.file(body, blob.faults.popleft() if body and blob.faults else None)
        if self.path == "/redirect":
            return self.empty(302, {"Location": blob.redirect_to})
        if self.path == "/hf":
            return self.empty(302, {"Location": "/file", **blob.linked})
        self.empty(404)

    def empty(self, status: int, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def file(self, body: bool, fault) -> None:
        if isinstance(fault, (int, tuple)):
            status, headers = fault if isinstance(fault, tuple) else (fault, {})
            return self.empty(status, headers)
        if fault == "endless":
            return self.endless()
        data, start = self.blob.data, self.range_start(fault == "ignore-range")
        if start is not None and start >= len(data):
            return self.empty(416, {"Content-Range": f"bytes */{len(data)}"})
        self.send_response(200 if start is None else 206)
        if fault == "wrong-offset":
            start = 0  # a 206 for another range than the one asked for
        if fault == "no-length":
            return self.close_delimited(data)
        if start is not None:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        length = len(data) - (start or 0)
        self.send_header("Content-Length", {"dup-length": f"{length}, {length}",
                                            "two-lengths": f"{length}, {length + 1}"}.get(fault, str(length)))
        self.send_header("ETag", self.blob.etag)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        payload = data[start or 0:]
        if body:
            self.send_body(payload[: len(payload) // 2] if fault == "drop" else payload)
        self.close_connection = fault == "drop"

    def close_delimited(self, data: bytes) -> None:
        """The body ends where the connection does (HTTP/1.0 style): only the client can cap it."""
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.count(data)

    def endless(self) -> None:
        """A hostile server: no length, and bytes until the client hangs up (or ENDLESS)."""
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        with contextlib.suppress(OSError):
            while self.blob.bytes_sent < ENDLESS:
                self.count(self.blob.data)

    def range_start(self, ignore: bool) -> int | None:
        wanted, if_range = self.headers.get("Range", ""), self.headers.get("If-Range")
        if ignore or not wanted.startswith("bytes=") or (if_range and if_range != self.blob.etag):
            return None
        return int(wanted[len("bytes="):].rstrip("-"))

    def send_body(self, payload: bytes) -> None:
        first = (1 << 20) if self.blob.gate else len(payload)
        self.count(payload[:first])
        if self.blob.gate:
            self.blob.streaming.set()
            self.blob.gate.wait()
            self.count(payload[first:])

    def count(self, payload: bytes) -> None:
        # counted before the write: the client may return before this thread runs again
        with self.blob.lock:
            self.blob.bytes_sent += len(payload)
        try:
            self.wfile.write(payload)
        except OSError:
            with self.blob.lock:
                self.blob.bytes_sent -= len(payload)
            raise

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers():
    started: list[BlobServer] = []

    def start(data: bytes | None = None) -> BlobServer:
        started.append(BlobServer(data if data is not None else os.urandom(SIZE)))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def server(servers) -> BlobServer:
    return servers()


def cached(tmp_path: Path, server: BlobServer) -> Path:
    return cache.cache_path(tmp_path / "cache", server.sha256, "blob.bin")


def leave_part(tmp_path: Path, server: BlobServer, data: bytes, validators: dict | None = None) -> Path:
    """What an interrupted earlier run leaves behind: a part file (and maybe its sidecar)."""
    part = cache.partial_path(tmp_path / "cache", server.sha256)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data)
    if validators:
        cache.write_json(part.with_name(part.name + ".json"), validators)
    return part


def test_fresh_download_lands_verified_in_the_content_addressed_cache(tmp_path, server):
    path = fetch(server.remote(), tmp_path / "cache", retry=FAST)
    assert path == cached(tmp_path, server)
    assert path.read_bytes() == server.data
    assert server.bytes_sent == SIZE
    assert not list((tmp_path / "cache" / "downloads" / "partial").iterdir())


def test_cache_hit_makes_no_request(tmp_path, server):
    fetch(server.remote(), tmp_path / "cache", retry=FAST)
    server.requests.clear()
    assert fetch(server.remote(), tmp_path / "cache", retry=FAST, verify=True).read_bytes() == server.data
    assert server.requests == []


def test_corrupt_cache_entry_of_the_wrong_size_is_fetched_again(tmp_path, server):
    target = cached(tmp_path, server)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"garbage")
    assert fetch(server.remote(), tmp_path / "cache", retry=FAST).read_bytes() == server.data


def test_download_to_a_path_returns_sha256_and_leaves_no_part(tmp_path, server):
    dest = tmp_path / "out" / "blob.bin"
    dest.parent.mkdir()
    assert download(server.remote(sha256=None, size=None), dest, retry=FAST) == server.sha256
    assert dest.read_bytes() == server.data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob.bin"]


def test_mid_stream_drop_resumes_without_refetching_a_byte(tmp_path, server):
    server.faults.extend(["drop", "drop"])
    assert fetch(server.remote(), tmp_path / "cache", retry=FAST).read_bytes() == server.data
    assert server.bytes_sent == SIZE  # every byte crossed the wire exactly once
    ranges = [headers.get("Range") for headers in server.gets()]
    assert ranges[0] is None and ranges[1] == f"bytes={SIZE // 2}-"
    assert all(headers.get("If-Range") == server.etag for headers in server.gets()[1:])


def test_truncated_body_fails_cleanly_then_the_next_run_resumes(tmp_path, server):
    server.faults.append("drop")  # Content-Length promises more than is sent
    with pytest.raises(DownloadError, match=r"blob\.bin.*connection broken"):
        fetch(server.remote(), tmp_path / "cache", retry=RetryPolicy(attempts=1))
    assert not cached(tmp_path, server).exists()
    assert fetch(server.remote(), tmp_path / "cache", retry=FAST).read_bytes() == server.data
    assert server.bytes_sent == SIZE
    assert server.gets()[-1]["Range"] == f"bytes={SIZE // 2}-"


def test_server_ignoring_range_restarts_from_zero(tmp_path, server):
    leave_part(tmp_path, server, server.data[:1000])
    server.faults.append("ignore-range")
    assert fetch(server.remote(), tmp_path / "cache", retry=FAST).read_bytes() == server.data
    assert server.gets()[0]["Range"] == "bytes=1000-"
    assert server.bytes_sent == SIZE


def test_changed_file_on_the_server_fails_if_range_and_restarts(tmp_path, server):
    leave_part(tmp_path, server, b"x" * 1000, {"url": server.url + "/file", "etag": '"stale"'})
    assert fetch(server.remote(), tmp_path / "cache", retry=FAST).read_bytes() == server.data
    assert server.gets()[0]["If-Range"] == '"stale"'
    assert server.bytes_sent == SIZE


def test_416_for_a_part_that_is_already_complete_keeps_it(tmp_path, server):
    leave_part(tmp_path, server, server.data)
    assert fetch(server.remote(), tmp_path / "cache", retry=FAST).read_bytes() == server.data
    assert server.bytes_sent == 0
    assert server.gets()[0]["Range"] == f"bytes={SIZE}-"


def test_416_for_an_oversized_part_restarts(tmp_path, server):
    leave_part(tmp_path, server, os.urandom(SIZE + 10))
    assert fetch(server.remote(), tmp_path / "cache", retry=FAST).read_bytes() == server.data
    assert [headers.get("Range") for headers in server.gets()] == [f"bytes={SIZE + 10}-", None]


def test_503_then_success_backs_off_with_growing_delays(tmp_path, server):
    delays: list[float] = []
    server.faults.extend([503, 503])
    retry = RetryPolicy(attempts=3, base_delay=0.01, sleep=delays.append)
    assert fetch(server.remote(), tmp_path / "cache", retry=retry).read_bytes() == server.data
    assert len(delays) == 2 and 0.005 <= delays[0] <= 0.01 and 0.01 <= delays[1] <= 0.02


def test_429_honours_retry_after(tmp_path, server):
    delays: list[float] = []
    server.faults.append((429, {"Retry-After": "7"}))
    retry = RetryPolicy(base_delay=0.01, sleep=delays.append)
    assert fetch(server.remote(), tmp_path / "cache", retry=retry).read_bytes() == server.data
    assert delays == [7.0]


def test_bounded_retries_end_in_one_clear_error(tmp_path, server):
    server.faults.extend([503] * 5)
    with pytest.raises(DownloadError, match=r"^could not download blob\.bin .*HTTP 503 \(3 attempts\)$"):
        fetch(server.remote(), tmp_path / "cache", retry=FAST)
    assert len(server.gets()) == 3
    assert not cached(tmp_path, server).exists()


def test_wrong_hash_raises_and_keeps_nothing(tmp_path, server):
    remote = server.remote(sha256="0" * 64)
    with pytest.raises(ChecksumError, match=r"blob\.bin.*sha256"):
        fetch(remote, tmp_path / "cache", retry=FAST)
    downloads = tmp_path / "cache" / "downloads"
    assert not (downloads / "sha256").exists()
    assert not list((downloads / "partial").iterdir())


def test_missing_mirror_falls_back_at_once(tmp_path, servers):
    dead, good = servers(), servers()
    remote = good.remote(urls=(dead.url + "/missing", good.url + "/file"))
    assert fetch(remote, tmp_path / "cache", retry=FAST).read_bytes() == good.data
    assert len(dead.gets("/missing")) == 1  # a 404 is not retried


def test_token_goes_to_its_host_only_and_never_into_logs(tmp_path, servers, monkeypatch, capfd, caplog):
    first, other = servers(), servers()
    first.redirect_to = other.url + "/file"
    monkeypatch.setenv("TEST_TOKEN", TOKEN)
    remote = other.remote(urls=(first.url + "/redirect",), token_env="TEST_TOKEN", sha256=None, size=None)
    assert fetch(remote, tmp_path / "cache", retry=FAST).read_bytes() == other.data
    assert first.gets("/redirect")[0]["Authorization"] == f"Bearer {TOKEN}"
    assert all("Authorization" not in headers for _, _, headers in other.requests)
    output = capfd.readouterr()
    assert TOKEN not in output.out + output.err + caplog.text


def test_token_is_not_sent_to_a_second_mirror(tmp_path, servers, monkeypatch):
    first, mirror = servers(), servers()
    monkeypatch.setenv("TEST_TOKEN", TOKEN)
    remote = mirror.remote(urls=(first.url + "/missing", mirror.url + "/file"), token_env="TEST_TOKEN")
    assert fetch(remote, tmp_path / "cache", retry=FAST).read_bytes() == mirror.data
    assert first.gets("/missing")[0]["Authorization"] == f"Bearer {TOKEN}"
    assert "Authorization" not in mirror.gets()[0]


FETCH_SCRIPT = """
import sys
from pathlib import Path
from release.download import RemoteFile, fetch
print(fetch(RemoteFile("blob.bin", (sys.argv[1],), sys.argv[2], int(sys.argv[3])), Path(sys.argv[4])))
"""


@pytest.mark.timeout(120)
def test_two_processes_fetching_one_file_download_it_once(tmp_path, server):
    server.gate = threading.Event()  # hold the first transfer until the second process waits on the lock
    command = [sys.executable, "-c", FETCH_SCRIPT, server.url + "/file", server.sha256, str(SIZE),
               str(tmp_path / "cache")]
    options = dict(cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, text=True)
    first = subprocess.Popen(command, **options)
    assert server.streaming.wait(60)
    second = subprocess.Popen(command, **options)
    lines = iter(second.stderr.readline, "")
    assert any("waiting for another process" in line for line in lines)
    server.gate.set()
    outputs = [process.communicate()[0].strip() for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0]
    assert outputs == [str(cached(tmp_path, server))] * 2
    assert len(server.gets()) == 1 and server.bytes_sent == SIZE
    assert sha256_file(cached(tmp_path, server)) == server.sha256


def test_offline_mode_uses_the_cache_only(tmp_path, server, monkeypatch):
    fetch(server.remote(), tmp_path / "cache", retry=FAST)
    server.requests.clear()
    assert fetch(server.remote(), tmp_path / "cache", offline=True) == cached(tmp_path, server)
    with pytest.raises(DownloadError, match=r"other\.bin .*offline mode is on"):
        fetch(server.remote(filename="other.bin"), tmp_path / "cache", offline=True)
    assert server.requests == []


def test_offline_has_one_meaning_the_callers_flag(tmp_path, server, monkeypatch):
    """The environment is read once, by config.offline_mode; the downloader obeys its argument."""
    monkeypatch.setenv("TEA_RELEASE_OFFLINE", "1")
    assert fetch(server.remote(), tmp_path / "cache", retry=FAST, offline=False) == cached(tmp_path, server)
    assert server.requests


def test_unpinned_file_uses_x_linked_etag_and_prints_the_pin(tmp_path, server, capfd):
    server.linked = {"X-Linked-Etag": f'"{server.sha256}"', "X-Linked-Size": str(SIZE)}
    remote = server.remote("/hf", sha256=None, size=None)
    assert fetch(remote, tmp_path / "cache", retry=FAST) == cached(tmp_path, server)
    assert f'sha256 = "{server.sha256}", size = {SIZE}' in capfd.readouterr().err
    assert fetch(remote, tmp_path / "cache", offline=True) == cached(tmp_path, server)


def test_unpinned_file_with_a_wrong_linked_etag_is_rejected(tmp_path, server):
    server.linked = {"X-Linked-Etag": '"' + "ab" * 32 + '"'}
    with pytest.raises(ChecksumError):
        fetch(server.remote("/hf", sha256=None, size=None), tmp_path / "cache", retry=FAST)


def test_require_pins_refuses_before_downloading(tmp_path, server):
    server.linked = {"X-Linked-Etag": f'"{server.sha256}"', "X-Linked-Size": str(SIZE)}
    with pytest.raises(ConfigError, match=f'blob.bin is not pinned.*sha256 = "{server.sha256}"'):
        fetch(server.remote("/hf", sha256=None, size=None), tmp_path / "cache", require_pins=True)
    with pytest.raises(ConfigError, match="blob.bin is not pinned"):
        fetch(server.remote("/hf", sha256=None, size=None), tmp_path / "cache", require_pins=True, offline=True)
    assert server.bytes_sent == 0


def test_unpinned_file_without_headers_is_hashed_and_pinned(tmp_path, server, capfd):
    path = fetch(server.remote(sha256=None, size=None), tmp_path / "cache", retry=FAST)
    assert path == cached(tmp_path, server)
    assert f'sha256 = "{server.sha256}"' in capfd.readouterr().err


def test_retry_delay_has_jitter_caps_and_respects_retry_after():
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0)
    assert all(0.5 <= policy.delay(0) <= 1.0 for _ in range(50))
    assert all(5.0 <= policy.delay(20) <= 10.0 for _ in range(50))
    assert policy.delay(0, retry_after=4.0) == 4.0
    assert policy.delay(0, retry_after=3600.0) == 10.0


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom(SIZE)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


# --- hostile servers (issue 13) -------------------------------------------------------------------


def test_endless_body_stops_at_the_pinned_size(tmp_path, server):
    server.faults.extend(["endless"] * 3)
    with pytest.raises(DownloadError, match=f"sent more than the {SIZE} bytes expected"):
        fetch(server.remote(), tmp_path / "cache", retry=FAST)
    assert server.bytes_sent < ENDLESS // 2  # the client hung up; it did not drain 64 MiB
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.stat().st_size > SIZE]


def test_endless_body_of_an_unpinned_small_file_stops_at_its_limit(tmp_path, server):
    server.faults.append("endless")
    with pytest.raises(DownloadError, match="sent more than the 65536 bytes expected"):
        download(server.remote(sha256=None, size=None, limit=65536), tmp_path / "SHA256SUMS", retry=FAST)
    assert not (tmp_path / "SHA256SUMS").exists()


def test_announced_length_beyond_the_pin_is_refused_before_the_body(tmp_path, servers):
    small = servers(os.urandom(1000))
    remote = RemoteFile("blob.bin", (small.url + "/file",), None, None, limit=999)
    with pytest.raises(DownloadError, match="announces 1000 bytes, more than the 999 expected"):
        download(remote, tmp_path / "x", retry=FAST)


def test_a_body_of_exactly_the_limit_is_accepted_announced_or_not(tmp_path, servers):
    small = servers(os.urandom(1000))
    small.faults.extend([None, "no-length"])
    for run in ("announced", "close-delimited"):
        dest = tmp_path / run
        assert download(small.remote(sha256=None, size=None, limit=1000), dest, retry=FAST) == small.sha256
        assert dest.read_bytes() == small.data


def test_one_byte_past_the_limit_is_refused_without_a_length(tmp_path, servers):
    small = servers(os.urandom(1000))
    small.faults.extend(["no-length"] * 3)
    with pytest.raises(DownloadError, match="sent more than the 999 bytes expected"):
        download(small.remote(sha256=None, size=None, limit=999), tmp_path / "x", retry=FAST)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()


def test_a_206_for_another_offset_is_never_spliced_onto_the_part(tmp_path, server):
    """An unpinned file has no sha256 to catch spliced bytes afterwards: they would become its pin."""
    dest = tmp_path / "blob.bin"
    part = dest.with_name(dest.name + ".part")
    part.write_bytes(server.data[:1000])
    cache.write_json(part.with_name(part.name + ".json"), {"url": server.url + "/file", "etag": server.etag})
    server.faults.append("wrong-offset")
    assert download(server.remote(sha256=None, size=None), dest, retry=FAST) == server.sha256
    assert dest.read_bytes() == server.data
    assert [headers.get("Range") for headers in server.gets()] == ["bytes=1000-", None]


def test_wrong_bytes_from_one_mirror_fall_back_to_the_next(tmp_path, servers):
    liar, good = servers(os.urandom(SIZE)), servers()
    remote = good.remote(urls=(liar.url + "/file", good.url + "/file"))
    assert fetch(remote, tmp_path / "cache", retry=FAST).read_bytes() == good.data
    assert len(liar.gets()) == 1 and len(good.gets()) == 1
    assert [headers.get("Range") for headers in good.gets()] == [None]  # nothing of the liar's kept


def test_wrong_bytes_from_every_mirror_is_a_checksum_error(tmp_path, servers):
    liar, other = servers(os.urandom(SIZE)), servers(os.urandom(SIZE))
    remote = RemoteFile("blob.bin", (liar.url + "/file", other.url + "/file"), "0" * 64, SIZE)
    with pytest.raises(ChecksumError, match="no URL gave the pinned bytes of blob.bin"):
        fetch(remote, tmp_path / "cache", retry=FAST)


def test_repeated_equal_content_length_is_accepted(tmp_path, server):
    server.faults.append("dup-length")
    assert fetch(server.remote(), tmp_path / "cache", retry=FAST).read_bytes() == server.data


def test_conflicting_content_lengths_are_one_line(tmp_path, server):
    server.faults.extend(["two-lengths"] * 3)
    with pytest.raises(DownloadError, match="blob.bin") as error:
        fetch(server.remote(), tmp_path / "cache", retry=FAST)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("value", ["\u00b2", "1e9", "-5", "soon", "99999999999999999999"])
def test_odd_retry_after_falls_back_to_backoff(tmp_path, server, value):
    delays: list[float] = []
    server.faults.append((503, {"Retry-After": value}))
    retry = RetryPolicy(attempts=3, base_delay=0.01, sleep=delays.append)
    assert fetch(server.remote(), tmp_path / "cache", retry=retry).read_bytes() == server.data
    assert len(delays) == 1 and delays[0] <= 0.01


def test_download_never_leaves_a_partial_dest(tmp_path, server):
    server.faults.extend(["drop"] * 3)
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(DownloadError):
        download(server.remote(), dest, retry=FAST)
    assert not dest.exists()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare")
def test_a_full_disk_is_one_line_with_the_download_exit_code(tmp_path, server):
    """A real ENOSPC: the cache on a 1 MiB tmpfs in a private mount namespace."""
    cache_dir = tmp_path / "small"
    cache_dir.mkdir()
    script = ("import sys; from pathlib import Path\n"
              "from release.download import RemoteFile, RetryPolicy, fetch\n"
              "from release.errors import ReleaseError\n"
              "try:\n"
              f"    fetch(RemoteFile('blob.bin', ('{server.url}/file',), '{server.sha256}', {SIZE}), Path('{cache_dir}'),"
              " retry=RetryPolicy(attempts=1))\n"
              "except ReleaseError as error:\n"
              "    print(error); sys.exit(error.exit_code)\n")
    result = subprocess.run(["unshare", "--mount", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {cache_dir} && "
                             f'exec "$0" -c "$1"', sys.executable, script], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert result.returncode == 3, result.stderr[-2000:]
    assert result.stdout.count("\n") == 1 and "No space left on device" in result.stdout
