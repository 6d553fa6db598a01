"""A loopback HTTP server for a release directory, with real byte ranges, that misbehaves on cue.

Files are served from `root` by plain name, with `Range: bytes=a-b` / `bytes=a-` answered as
206 + Content-Range, several ranges (what zsync asks) as multipart/byteranges, HEAD, and 404 for
anything else. Every body byte sent is counted
(`bytes_sent`, per file in `sent`), every request recorded, so "fetched only what changed" is an
equation on the wire. `faults` is consumed one per ranged GET:
- "drop" sends half the body, then hangs up;
- "ignore-range" answers 200 with the whole file;
- "ignore-range-announced" the same, under the Content-Range asked for (a cache that copies headers);
- "shift" answers the right Content-Range with the bytes one further on (a server off by one);
- "wrong-range" announces and sends the range one block (64 KiB) further on;
- "tamper" flips one byte of the body.
`stall_after`: after that many body bytes in all, the server stops sending and holds the
connection until `release()` (a download that is killed half-way). `rate` (bytes per second)
paces every answer like a slower link. `redirect_to` (a base URL) answers every request for a
file with a 302 to that file there. With `tls` (a PEM file holding a key and its certificate,
see self_signed) it speaks HTTPS; a client trusts it through SSL_CERT_FILE=that file.
Used by the tests and the delta benchmark.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import subprocess
import threading
import time
from collections import defaultdict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PLAIN = re.compile(r"/([A-Za-z0-9][A-Za-z0-9._+-]*)")
SHIFT = 1 << 16


def parse_ranges(header: str, size: int) -> list[tuple[int, int]]:
    """[start, end] (inclusive) of each range of a `bytes=` header; [] for none or anything malformed."""
    if not header.startswith("bytes="):
        return []
    found = []
    for spec in header[len("bytes="):].split(","):
        match = re.fullmatch(r"(\d+)-(\d*)", spec.strip())
        if not match:
            return []
        start, end = int(match[1]), min(int(match[2]) if match[2] else size - 1, size - 1)
        if start > end:
            return []
        found.append((start, end))
    return found


def self_signed(directory: Path) -> Path:
    """A key and a self-signed certificate for 127.0.0.1 in one PEM file (made once per directory)."""
    pem = Path(directory) / "loopback-tls.pem"
    if not pem.exists():
        Path(directory).mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(pem.with_suffix(".key")), "-out", str(pem.with_suffix(".crt"))],
                       check=True, capture_output=True)
        pem.write_bytes(pem.with_suffix(".key").read_bytes() + pem.with_suffix(".crt").read_bytes())
    return pem


class _TLSServer(ThreadingHTTPServer):
    """The TLS handshake happens in the request's own thread: a slow client never holds up the others."""

    context: ssl.SSLContext

    def get_request(self):
        connection, address = super().get_request()
        return self.context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False), address

    def finish_request(self, request, client_address) -> None:
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)


class ReleaseServer:
    def __init__(self, root: Path, tls: Path | None = None) -> None:
        self.root, self.tls = Path(root), tls
        self.faults: deque[str] = deque()
        self.requests: list[tuple[str, str, dict]] = []
        self.sent: dict[str, int] = defaultdict(int)
        self.stall_after: int | None = None
        self.rate: float | None = None
        self.redirect_to: str | None = None
        self.stalled = threading.Event()
        self._go_on = threading.Event()
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"server_state": self})
        if tls is None:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        else:
            self.httpd = _TLSServer(("127.0.0.1", 0), handler)
            self.httpd.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.httpd.context.load_cert_chain(tls)
        self.httpd.daemon_threads = True
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def bytes_sent(self) -> int:
        return sum(self.sent.values())

    def ranges(self) -> list[str]:
        return [headers.get("Range", "") for method, _path, headers in self.requests if method == "GET"]

    def release(self) -> None:
        self._go_on.set()

    def close(self) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> ReleaseServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: ReleaseServer

    def log_message(self, *args: object) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # a client that hangs up on a bad answer
            super().handle()

    def do_HEAD(self) -> None:
        self.serve(body=False)

    def do_GET(self) -> None:
        self.serve(body=True)

    def serve(self, body: bool) -> None:
        state = self.server_state
        with state.lock:
            state.requests.append((self.command, self.path, dict(self.headers)))
        match = PLAIN.fullmatch(self.path)
        if match and state.redirect_to:
            return self.empty(302, {"Location": state.redirect_to + match[1]})
        path = state.root / match[1] if match else None
        if path is None or not path.is_file():
            return self.empty(404)
        with path.open("rb") as handle:
            send_file(self, FileBytes(handle, path.stat().st_size), body, lambda n: self.count(path.name, n), state)

    def empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def count(self, name: str, sent: int) -> None:
        with self.server_state.lock:
            self.server_state.sent[name] += sent


class FileBytes:
    """A file's bytes, sliced like `bytes` (`data[a:b]`) without reading the rest (multi-GB files)."""

    def __init__(self, handle, size: int) -> None:
        self.handle, self.size = handle, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, span: slice) -> bytes:
        start, stop, _ = span.indices(self.size)
        self.handle.seek(start)
        return self.handle.read(max(0, stop - start))


class Window:
    """bytes [start, stop) of `data`, sliced lazily."""

    def __init__(self, data, start: int, stop: int) -> None:
        self.data, self.start, self.stop = data, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, span: slice) -> bytes:
        low, high, _ = span.indices(len(self))
        return self.data[self.start + low:self.start + high]


def send_file(handler: BaseHTTPRequestHandler, data, body: bool, count, state: ReleaseServer | None = None) -> None:
    """Answer a GET/HEAD of `data` (bytes or FileBytes), honouring Range; faults (for single ranges)
    from `state`, if given."""
    wanted = parse_ranges(handler.headers.get("Range", ""), len(data))
    if len(wanted) > 1:
        return _send_multipart(handler, data, wanted, body, count)
    fault = state.faults.popleft() if state and body and wanted and state.faults else None
    if not wanted or fault in ("ignore-range", "ignore-range-announced"):
        status, (start, end), announced = 200, (0, len(data) - 1), None
        if fault == "ignore-range-announced":
            announced = f"bytes {wanted[0][0]}-{wanted[0][1]}/{len(data)}"
    else:
        status, (start, end) = 206, wanted[0]
        if fault == "wrong-range":
            start, end = min(start + SHIFT, len(data) - 1), min(end + SHIFT, len(data) - 1)
        announced = f"bytes {start}-{end}/{len(data)}"
    payload = Window(data, start, end + 1)
    if fault == "shift":
        payload = data[start + 1:end + 2].ljust(end - start + 1, b"\0")
    elif fault == "tamper":
        payload = bytes([data[start:start + 1][0] ^ 0xFF]) + data[start + 1:end + 1]
    handler.send_response(status)
    if announced:
        handler.send_header("Content-Range", announced)
    handler.send_header("Content-Length", str(end - start + 1))
    handler.send_header("Accept-Ranges", "bytes")
    handler.end_headers()
    if body:
        _send_body(handler, payload[: len(payload) // 2] if fault == "drop" else payload, count, state)
        if fault == "drop":
            handler.close_connection = True


def _send_multipart(handler: BaseHTTPRequestHandler, data: bytes, wanted: list[tuple[int, int]], body: bool,
                    count) -> None:
    boundary = "tea-release-test-boundary"
    # Apache's form: CRLF before each delimiter (zsync reads a blank line, then the delimiter)
    payload = b"".join(f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                       f"Content-Range: bytes {start}-{end}/{len(data)}\r\n\r\n".encode() + data[start:end + 1]
                       for start, end in wanted) + f"\r\n--{boundary}--\r\n".encode()
    handler.send_response(206)
    handler.send_header("Content-Type", f"multipart/byteranges; boundary={boundary}")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if body:
        _send_body(handler, payload, count, None)


def _send_body(handler: BaseHTTPRequestHandler, payload, count, state: ReleaseServer | None) -> None:
    started, sent = time.monotonic(), 0
    for offset in range(0, len(payload), 1 << 20):
        chunk = payload[offset:offset + (1 << 20)]
        for piece in (chunk[at:at + (1 << 16)] for at in range(0, len(chunk), 1 << 16)):
            if state and state.stall_after is not None and state.bytes_sent + len(piece) > state.stall_after:
                state.stalled.set()
                state._go_on.wait()
                handler.close_connection = True
                return
            if state and state.rate:
                time.sleep(max(0.0, started + sent / state.rate - time.monotonic()))
            handler.wfile.write(piece)
            sent += len(piece)
            count(len(piece))
