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
import resource
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


def time_ours(remote: RemoteFile, dest: Path) -> tuple[float, float]:
    """Wall and CPU seconds (all our threads): CPU time shows the cost even on a busy machine."""
    dest.unlink(missing_ok=True)
    started, cpu = time.perf_counter(), time.process_time()
    download(remote, dest)
    return time.perf_counter() - started, time.process_time() - cpu


def time_curl(url: str, dest: Path) -> tuple[float, float]:
    dest.unlink(missing_ok=True)
    started, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(["curl", "-s", "-f", "-o", str(dest), url], check=True)
    return time.perf_counter() - started, _children_cpu() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # finished children only: curl, not the server
    return usage.ru_utime + usage.ru_stime


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
        report(size_mb << 20, [statistics.median(column) for column in zip(*ours)],
               [statistics.median(column) for column in zip(*curl)])
    finally:
        server.terminate()
        server.wait()


def report(size: int, ours: list[float], curl: list[float]) -> None:
    """Each of `ours`/`curl` is [wall seconds, CPU seconds] (medians)."""
    mib = size / (1 << 20)
    print(f"file: {mib:.0f} MiB over loopback, median of alternating runs; load average {os.getloadavg()[0]:.1f}")
    print(f"release.download: {ours[0]:.3f} s {mib / ours[0]:8.1f} MiB/s  CPU {ours[1]:.2f} s (hashes + verifies)")
    print(f"curl -s -o:       {curl[0]:.3f} s {mib / curl[0]:8.1f} MiB/s  CPU {curl[1]:.2f} s")
    print(f"ratio (ours/curl throughput): {curl[0] / ours[0]:.2f}x  (goal >= 0.90x)")


if __name__ == "__main__":
    main()
