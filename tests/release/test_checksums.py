"""SHA256SUMS and manifests: written for `sha256sum -c`, merged per arch, and enforced on use."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from release.artifact_source import resolve_artifact
from release.checksums import merge_manifests, merge_sums, published_names, read_sums, write_sums
from release.errors import ChecksumError, DownloadError

NAME = "tea-python-0.1.0-x86_64.AppImage"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def dist(tmp_path) -> Path:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / NAME).write_bytes(os.urandom(300_000))
    (dist / "tea-python-0.1.0-aarch64.AppImage").write_bytes(os.urandom(1000))
    write_sums(dist, [NAME, "tea-python-0.1.0-aarch64.AppImage"])
    return dist


@pytest.fixture
def served(dist):
    """dist/ behind a real HTTP server on a free loopback port."""
    handler = functools.partial(_QuietHandler, directory=str(dist))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def tamper(path: Path, offset: int = 1234) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def resolve(spec: str, tmp_path: Path, sums: str | None = None) -> Path:
    return resolve_artifact(spec, sums=sums, cache_dir=tmp_path / "cache", workdir=tmp_path / "work")


def test_sums_are_sorted_basenames_that_sha256sum_accepts(dist):
    text = (dist / "SHA256SUMS").read_text()
    lines = text.splitlines()
    assert lines == sorted(lines, key=lambda line: line.split("  ")[1])
    assert lines[1] == f"{sha256((dist / NAME).read_bytes())}  {NAME}"
    result = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dist, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.count(": OK") == 2
    tamper(dist / NAME)
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=dist, capture_output=True).returncode != 0


def test_read_sums_round_trips_the_real_tool_output_and_rejects_junk(dist, tmp_path):
    made_by_tool = subprocess.run(["sha256sum", "-b", NAME], cwd=dist, capture_output=True, text=True).stdout
    (tmp_path / "tool").write_text(made_by_tool)  # "<hex> *name": the binary-mode marker
    assert read_sums(tmp_path / "tool") == {NAME: read_sums(dist / "SHA256SUMS")[NAME]}
    (tmp_path / "junk").write_text("this is not a checksum line\n")
    with pytest.raises(ChecksumError, match="junk:1"):
        read_sums(tmp_path / "junk")


def test_write_sums_takes_basenames_only(dist):
    with pytest.raises(ChecksumError, match="basenames"):
        write_sums(dist, [f"../{NAME}"])


def test_published_names_lists_parts_instead_of_a_split_whole():
    manifest = {"artifacts": [{"name": "a", "parts": [{"name": "a.part01"}, {"name": "a.part02"}]},
                              {"name": "b", "parts": []}, {"name": "c"}]}
    assert published_names(manifest) == ["a.part01", "a.part02", "b", "c", "reassemble.sh"]
    assert published_names({"artifacts": [{"name": "b", "parts": []}, {"name": "c"}]}) == ["b", "c"]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_merge_sums_combines_per_arch_files_and_agrees_on_repeats(tmp_path):
    x86 = write(tmp_path / "x86", f"{'a' * 64}  tea-x86_64.AppImage\n{'c' * 64}  notes.txt\n")
    arm = write(tmp_path / "arm", f"{'b' * 64}  tea-aarch64.AppImage\n{'c' * 64}  notes.txt\n")
    out = merge_sums([x86, arm], tmp_path / "out" / "SHA256SUMS")
    assert out.read_text() == (f"{'c' * 64}  notes.txt\n{'b' * 64}  tea-aarch64.AppImage\n"
                               f"{'a' * 64}  tea-x86_64.AppImage\n")


def test_merge_sums_lists_the_releases_reassemble_script_not_each_builds(tmp_path):
    """Issue 24 N8: each build's reassemble.sh covers its own parts; the release publishes the
    one `invoke manifest --merge` writes beside the merged sums, and lists it."""
    x86 = write(tmp_path / "x86", f"{'a' * 64}  tea-x86_64.AppImage.part01\n{'1' * 64}  reassemble.sh\n")
    arm = write(tmp_path / "arm", f"{'b' * 64}  tea-aarch64.AppImage.part01\n{'2' * 64}  reassemble.sh\n")
    (tmp_path / "dist").mkdir()
    without = read_sums(merge_sums([x86, arm], tmp_path / "dist" / "SHA256SUMS"))
    assert sorted(without) == ["tea-aarch64.AppImage.part01", "tea-x86_64.AppImage.part01"]
    script = write(tmp_path / "dist" / "reassemble.sh", "#!/bin/sh\n")
    merged = read_sums(merge_sums([x86, arm], tmp_path / "dist" / "SHA256SUMS"))
    assert merged["reassemble.sh"] == sha256(script.read_bytes()) and len(merged) == 3


def test_merge_sums_refuses_two_hashes_for_one_name(tmp_path):
    one = write(tmp_path / "one", f"{'a' * 64}  tea.AppImage\n")
    two = write(tmp_path / "two", f"{'b' * 64}  tea.AppImage\n")
    with pytest.raises(ChecksumError, match="two different sha256 for tea.AppImage"):
        merge_sums([one, two], tmp_path / "SHA256SUMS")
    assert not (tmp_path / "SHA256SUMS").exists()


def manifest(path: Path, *artifacts: tuple[str, str]) -> Path:
    body = {"schema": 1, "version": "0.1.0", "artifacts": [{"name": n, "sha256": s, "size": 1} for n, s in artifacts]}
    return write(path, json.dumps(body))


def test_merge_manifests_unions_artifacts_and_refuses_conflicts(tmp_path):
    x86 = manifest(tmp_path / "x86.json", ("tea-x86_64.AppImage", "a" * 64))
    arm = manifest(tmp_path / "arm.json", ("tea-aarch64.AppImage", "b" * 64), ("tea-x86_64.AppImage", "a" * 64))
    merged = json.loads(merge_manifests([x86, arm], tmp_path / "manifest.json").read_text())
    assert [a["name"] for a in merged["artifacts"]] == ["tea-aarch64.AppImage", "tea-x86_64.AppImage"]
    assert merged["version"] == "0.1.0"
    clash = manifest(tmp_path / "clash.json", ("tea-x86_64.AppImage", "c" * 64))
    with pytest.raises(ChecksumError, match="tea-x86_64.AppImage"):
        merge_manifests([x86, clash], tmp_path / "bad.json")
    other_release = json.loads(arm.read_text()) | {"version": "0.2.0"}
    with pytest.raises(ChecksumError, match="version 0.2.0"):
        merge_manifests([x86, write(tmp_path / "new.json", json.dumps(other_release))], tmp_path / "bad.json")


def test_merge_manifests_refuses_builds_of_another_commit(tmp_path):
    """Same version, other commit: two builds that must not be published as one release."""
    x86 = json.loads(manifest(tmp_path / "x86.json", ("tea-x86_64.AppImage", "a" * 64)).read_text())
    arm = json.loads(manifest(tmp_path / "arm.json", ("tea-aarch64.AppImage", "b" * 64)).read_text())
    one = write(tmp_path / "one.json", json.dumps({**x86, "commit": "1" * 40}))
    other = write(tmp_path / "other.json", json.dumps({**arm, "commit": "2" * 40}))
    with pytest.raises(ChecksumError, match=f"is from commit {'2' * 40}, .* from {'1' * 40}"):
        merge_manifests([one, other], tmp_path / "manifest.json")
    assert not (tmp_path / "manifest.json").exists()
    same = write(tmp_path / "same.json", json.dumps({**arm, "commit": "1" * 40}))
    assert json.loads(merge_manifests([one, same], tmp_path / "manifest.json").read_text())["commit"] == "1" * 40


def test_local_appimage_with_its_sums_line_is_accepted_in_place(dist, tmp_path):
    assert resolve(str(dist / NAME), tmp_path, sums=str(dist / "SHA256SUMS")) == dist / NAME
    assert resolve(str(dist / NAME), tmp_path) == dist / NAME  # the SHA256SUMS beside it is used


def test_tampered_byte_is_refused_before_anything_runs(dist, tmp_path):
    tamper(dist / NAME)
    with pytest.raises(ChecksumError, match="does not match"):
        resolve(str(dist / NAME), tmp_path, sums=str(dist / "SHA256SUMS"))


def test_sums_without_the_artifact_line_is_refused(dist, tmp_path):
    other = write(tmp_path / "OTHER_SUMS", f"{'a' * 64}  something-else.AppImage\n")
    with pytest.raises(ChecksumError, match=f"no line for {NAME}"):
        resolve(str(dist / NAME), tmp_path, sums=str(other))


def test_appimage_from_a_loopback_url_is_fetched_verified_and_executable(dist, served, tmp_path):
    path = resolve(f"{served}/{NAME}", tmp_path)
    assert path == tmp_path / "work" / NAME
    assert path.read_bytes() == (dist / NAME).read_bytes() and os.access(path, os.X_OK)
    assert resolve(f"{served}/{NAME}", tmp_path, sums=f"{served}/SHA256SUMS").read_bytes() == path.read_bytes()


def test_tampered_file_on_the_server_is_refused(dist, served, tmp_path):
    tamper(dist / NAME)
    with pytest.raises(ChecksumError):
        resolve(f"{served}/{NAME}", tmp_path)
    assert not (tmp_path / "work" / NAME).exists()


def test_url_that_404s_is_one_clear_error(dist, served, tmp_path):
    (dist / NAME).unlink()
    with pytest.raises(DownloadError) as error:
        resolve(f"{served}/{NAME}", tmp_path)
    assert "404" in str(error.value) and NAME in str(error.value) and "\n" not in str(error.value)


def test_url_without_published_sums_asks_for_them(dist, served, tmp_path):
    (dist / "SHA256SUMS").unlink()
    with pytest.raises(ChecksumError, match="--sums"):
        resolve(f"{served}/{NAME}", tmp_path)


def test_lone_local_build_without_any_sums_is_used_with_a_warning(tmp_path, capfd):
    lone = tmp_path / "built" / NAME
    lone.parent.mkdir()
    lone.write_bytes(b"fresh local build")
    assert resolve(str(lone), tmp_path) == lone
    assert "NOT verified" in capfd.readouterr().err
