"""Benchmark: release.download vs curl on the same loopback URL (goal: >= 0.9x curl's throughput).

    python benchmarks/download.py [--size-mb 256] [--runs 3]

A separate server process serves a file of random bytes with sendfile(2), so the server costs
neither client any CPU in its own process. Runs alternate (ours, curl, ours, ...) so page-cache and
CPU-frequency drift hit both equally; the median of each is compared. Our downloader also hashes
(SHA256) and verifies what it writes, which curl does not.
"""

from __future__ import annotations

import argparse
import http.server
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from release.download import RemoteFile, download, sha256_file  # noqa: E402


class SendfileHandler(http.server.BaseHTTPRequestHandler):
    """GET /<name> from the served directory, body through sendfile: as fast as loopback goes."""

    directory: Path

    def do_GET(self) -> None:
        path = self.directory / self.path.lstrip("/")
        with path.open("rb") as handle:
            self.send_response(200)
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            self.wfile.flush()
            self.connection.sendfile(handle)

    def log_message(self, *args: object) -> None:
        pass


def serve(directory: str) -> None:
    SendfileHandler.directory = Path(directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SendfileHandler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def make_file(path: Path, size_mb: int) -> str:
    with path.open("wb") as handle:
        for _ in range(size_mb):
            handle.write(os.urandom(1 << 20))
    return sha256_file(path)


def time_ours(remote: RemoteFile, dest: Path) -> float:
    dest.unlink(missing_ok=True)
    started = time.perf_counter()
    download(remote, dest)
    return time.perf_counter() - started


def time_curl(url: str, dest: Path) -> float:
    dest.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run(["curl", "-s", "-f", "-o", str(dest), url], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    with tempfile.TemporaryDirectory(prefix="tea-download-bench-") as scratch:
        run(Path(scratch), args.size_mb, args.runs)


def run(scratch: Path, size_mb: int, runs: int) -> None:
    (scratch / "www").mkdir()
    sha256 = make_file(scratch / "www" / "blob.bin", size_mb)
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(scratch / "www")], stdout=subprocess.PIPE,
                              text=True)
    try:
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/blob.bin"
        remote = RemoteFile("blob.bin", (url,), sha256, size_mb << 20)
        ours, curl = [], []
        for _ in range(runs):
            ours.append(time_ours(remote, scratch / "ours.bin"))
            curl.append(time_curl(url, scratch / "curl.bin"))
        report(size_mb << 20, statistics.median(ours), statistics.median(curl))
    finally:
        server.terminate()
        server.wait()


def report(size: int, ours: float, curl: float) -> None:
    mib = size / (1 << 20)
    print(f"file: {mib:.0f} MiB over loopback, median of alternating runs")
    print(f"release.download: {ours:.3f} s  {mib / ours:8.1f} MiB/s  (streams, hashes, verifies)")
    print(f"curl -s -o:       {curl:.3f} s  {mib / curl:8.1f} MiB/s")
    print(f"ratio (ours/curl throughput): {curl / ours:.2f}x  (goal >= 0.90x)")


if __name__ == "__main__":
    main()
