"""`test-appimage` against hostile releases (issue 13): manifests, SHA256SUMS and cached files that lie.

A real release directory (two AppImages, the big one in four parts) is published to a mirror
directory and served by a loopback HTTP server; each test then edits what the mirror serves.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from release import cache, config
from release.artifact_source import resolve_artifact
from release.checksums import format_sums, read_sums
from release.errors import ChecksumError, ConfigError, DownloadError
from release.publish import publish
from test_publish import LLM, PARTS, PLAIN, TAG, make_dist, sha256

MiB = 1 << 20


class _QuietHandler(SimpleHTTPRequestHandler):
    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # a client that refuses what it gets hangs up
            super().handle()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path) -> Path:
    make_dist(tmp_path / "dist", MiB)
    publish(tmp_path / "dist", f"dir:{tmp_path / 'mirror'}", tag=TAG)
    return tmp_path / "mirror"


@pytest.fixture
def served(mirror):
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(mirror)))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def resolve(spec: str, tmp_path: Path, name: str | None = LLM, workdir: str = "work") -> Path:
    return resolve_artifact(spec, sums=None, cache_dir=tmp_path / "cache", workdir=tmp_path / workdir, name=name)


def edit_manifest(mirror: Path, change) -> None:
    manifest = json.loads((mirror / "manifest.json").read_text())
    change(next(a for a in manifest["artifacts"] if a["name"] == LLM), manifest)
    (mirror / "manifest.json").write_text(json.dumps(manifest))


def edit_sums(mirror: Path, change) -> None:
    sums = read_sums(mirror / "SHA256SUMS")
    change(sums)
    (mirror / "SHA256SUMS").write_text(format_sums(sums))


def whole(tmp_path: Path) -> bytes:
    return (tmp_path / "dist" / LLM).read_bytes()


def test_the_untouched_release_reassembles(served, tmp_path):
    assert resolve(served, tmp_path).read_bytes() == whole(tmp_path)


def test_a_manifest_naming_a_path_outside_the_workdir_is_never_followed(served, mirror, tmp_path):
    """The issue's finding 5: the joined file used to land where the manifest's name pointed."""
    escape = "../../../../" + str(tmp_path / "escaped" / "x.AppImage").lstrip("/")
    edit_manifest(mirror, lambda artifact, manifest: manifest.update(artifacts=[{**artifact, "name": escape}]))
    with pytest.raises(ConfigError, match="lists 2 AppImages"):  # names come from SHA256SUMS only
        resolve(served, tmp_path, name=None)
    assert resolve(served, tmp_path).read_bytes() == whole(tmp_path)
    with pytest.raises(ConfigError, match="only plain file names"):
        resolve(served, tmp_path, name=escape)
    assert not (tmp_path / "escaped").exists()
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == sorted([LLM, "SHA256SUMS", "manifest.json"])


@pytest.mark.parametrize("how", ["reordered", "subset", "other hash"])
def test_a_manifest_that_disagrees_about_the_parts_is_refused(served, mirror, tmp_path, how):
    def change(artifact, manifest):
        parts = artifact["parts"]
        artifact["parts"] = {"reordered": parts[::-1], "subset": parts[:-1],
                             "other hash": [*parts[:-1], {**parts[-1], "sha256": "0" * 64}]}[how]

    edit_manifest(mirror, change)
    with pytest.raises(ChecksumError, match="disagree about the parts"):
        resolve(served, tmp_path)
    assert not (tmp_path / "work" / LLM).exists()


def test_a_manifest_whole_hash_the_parts_do_not_give_is_refused(served, mirror, tmp_path):
    edit_manifest(mirror, lambda artifact, manifest: artifact.update(sha256="0" * 64))
    with pytest.raises(ChecksumError, match="do not match the sha256 in manifest.json"):
        resolve(served, tmp_path)
    assert not (tmp_path / "work" / LLM).exists() and not list((tmp_path / "work").glob(".*partial"))


def test_a_manifest_that_disagrees_about_a_whole_file_is_refused(mirror, tmp_path):
    def change(artifact, manifest):
        plain = next(a for a in manifest["artifacts"] if a["name"] == PLAIN)
        plain["sha256"] = "0" * 64

    edit_manifest(mirror, change)
    with pytest.raises(ChecksumError, match="disagree about"):
        resolve(str(mirror), tmp_path, name=PLAIN)


def test_a_whole_file_line_in_sha256sums_must_match_the_joined_parts(served, mirror, tmp_path):
    edit_sums(mirror, lambda sums: sums.update({LLM: "0" * 64}))
    edit_manifest(mirror, lambda artifact, manifest: manifest.update(artifacts=[]))  # no second opinion
    with pytest.raises(ChecksumError, match=f"do not match the sha256 in {served}SHA256SUMS"):
        resolve(served, tmp_path)


@pytest.mark.parametrize("how", ["gap", "renumbered"])
def test_parts_out_of_sequence_in_sha256sums_are_refused(served, mirror, tmp_path, how):
    def change(sums):
        if how == "gap":
            del sums[PARTS[1]]
        else:
            sums[f"{LLM}.part5"] = sums.pop(PARTS[3])

    edit_sums(mirror, change)
    with pytest.raises(ChecksumError, match="out of sequence"):
        resolve(served, tmp_path)


def test_a_same_size_corrupted_cached_download_is_fetched_again(served, mirror, tmp_path):
    """The issue's finding 9: the cache used to be trusted on size alone."""
    resolve(served, tmp_path, name=PLAIN, workdir="first")
    cached = cache.cache_path(tmp_path / "cache", sha256((mirror / PLAIN).read_bytes()), PLAIN)
    data = bytearray(cached.read_bytes())
    data[100] ^= 0xFF
    cached.write_bytes(bytes(data))
    again = resolve(served, tmp_path, name=PLAIN, workdir="second")
    assert again.read_bytes() == (mirror / PLAIN).read_bytes()


def test_an_endless_sha256sums_is_cut_off(tmp_path):
    from test_download import ENDLESS, BlobServer

    server = BlobServer(b"0" * 64 + b"  x.AppImage\n")
    server.faults.extend(["endless"] * 5)
    try:
        with pytest.raises(DownloadError, match="sent more than the 1048576 bytes expected"):
            resolve_artifact(f"{server.url}/x.AppImage", sums=f"{server.url}/file", cache_dir=tmp_path / "cache",
                             workdir=tmp_path / "work")
        assert server.bytes_sent < ENDLESS // 2
    finally:
        server.close()


# --- servers that never stop sending (issue 24, N9) --------------------------------------------------


class EndlessFiles(_QuietHandler):
    """The mirror's files, except those named in `endless`: no length, and bytes until the client hangs up."""

    endless: set[str] = set()
    sent: dict[str, int] = {}

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        if name not in self.endless:
            return super().do_GET()
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        block = bytes(1 << 16)
        with contextlib.suppress(OSError):
            while self.sent.get(name, 0) < ENDLESS:
                self.sent[name] = self.sent.get(name, 0) + len(block)
                self.wfile.write(block)


ENDLESS = 256 << 20
HUNG_UP = 48 << 20  # sent after the client's cap, at most: what loopback socket buffers hold, with room


@pytest.fixture
def endless(mirror):
    """Serve the mirror, with the named files made endless; yields (url, endless names, bytes sent)."""
    handler = type("Handler", (EndlessFiles,), {"endless": set(), "sent": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(mirror)))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handler.endless, handler.sent
    server.shutdown()
    server.server_close()


def biggest_written(tmp_path: Path) -> int:
    """The largest file test-appimage left in its cache or work folder."""
    return max((path.stat().st_size for folder in ("cache", "work") for path in (tmp_path / folder).rglob("*")
                if path.is_file()), default=0)


def test_an_endless_artifact_stops_at_the_size_the_manifest_gives_it(endless, mirror, tmp_path):
    url, names, sent = endless
    names.add(PLAIN)
    size = (mirror / PLAIN).stat().st_size
    with pytest.raises(DownloadError, match=f"sent more than the {size} bytes expected"):
        resolve(url, tmp_path, name=PLAIN)
    assert sent[PLAIN] < HUNG_UP and biggest_written(tmp_path) <= size


def test_an_endless_part_stops_at_the_size_the_manifest_gives_it(endless, mirror, tmp_path):
    url, names, sent = endless
    names.add(PARTS[1])
    size = (mirror / PARTS[1]).stat().st_size
    with pytest.raises(DownloadError, match=f"{PARTS[1]}.*sent more than the {size} bytes expected"):
        resolve(url, tmp_path)
    assert sent[PARTS[1]] < HUNG_UP and not (tmp_path / "work" / LLM).exists()


def test_without_a_manifest_an_endless_artifact_stops_at_the_asset_size_cap(endless, mirror, tmp_path):
    url, names, sent = endless
    (mirror / "manifest.json").unlink()
    names.add(PLAIN)
    with pytest.raises(DownloadError, match="sent more than the 4194304 bytes expected"):
        resolve_artifact(url, sums=None, cache_dir=tmp_path / "cache", workdir=tmp_path / "work", name=PLAIN,
                         size_cap=4 << 20)
    assert sent[PLAIN] < HUNG_UP and biggest_written(tmp_path) <= 4 << 20


def test_the_default_cap_is_the_pinned_asset_size_cap(endless, mirror, tmp_path, monkeypatch):
    from release import artifact_source

    caps = []

    def fetch(remote, *args, **kwargs):
        caps.append(remote.cap)
        raise DownloadError("stopped before the download")

    monkeypatch.setattr(artifact_source, "fetch", fetch)
    url, _, _ = endless
    (mirror / "manifest.json").unlink()
    with pytest.raises(DownloadError):
        resolve(url, tmp_path, name=PLAIN)
    assert caps == [config.load_pins().asset_size_cap] and caps[0] < 2 << 30


def test_an_endless_sbom_stops_at_its_limit_and_is_only_noted(endless, mirror, tmp_path, capfd):
    from release.artifact_source import SBOM_LIMIT

    url, names, sent = endless
    sbom = f"{PLAIN}.cdx.json"
    (mirror / sbom).write_text("{}")
    edit_sums(mirror, lambda sums: sums.update({sbom: sha256(b"{}")}))
    names.add(sbom)
    assert resolve(url, tmp_path, name=PLAIN).read_bytes() == (mirror / PLAIN).read_bytes()
    assert sent[sbom] < SBOM_LIMIT + HUNG_UP and biggest_written(tmp_path) <= SBOM_LIMIT
    assert f"{sbom}: listed in SHA256SUMS but not at" in capfd.readouterr().err
