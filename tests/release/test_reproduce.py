"""`invoke reproduce`'s decisions, with the second build stood in for (the real one: tests/e2e/test_reproducible.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from release import reproduce, signing
from release.errors import ConfigError, VerifyError
from test_appimage_format import appdir, appimage, runtime  # noqa: F401

COMMIT = "c" * 40
LLM, PLAIN = "tea-python-llm-0.1.0-x86_64.AppImage", "tea-python-0.1.0-x86_64.AppImage"


def artifact(name: str, flavor: str, unsigned: str, **extra) -> dict:
    return {"name": name, "sha256": "0" * 64, "kind": "appimage", "arch": "x86_64", "flavor": flavor,
            "packager": "builtin", "base": "bullseye", "unsigned_sha256": unsigned, **extra}


@pytest.fixture
def release(tmp_path, appimage, monkeypatch) -> Path:
    """dist/ with a manifest of two AppImages (the first build), in a clean checkout of COMMIT."""
    dist = tmp_path / "dist"
    dist.mkdir()
    digest = signing.appimage_digest(appimage)
    manifest = {"version": "0.1.0", "commit": COMMIT, "artifacts": [
        artifact(LLM, "python-llm", digest, model={"name": "gemma-3-270m"}), artifact(PLAIN, "python", digest)]}
    (dist / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(reproduce, "unbuilt_changes", lambda commit: "")
    return dist


def second_build(monkeypatch, tmp_path, files: dict[str, Path]) -> list:
    """Stand in for the clone and `invoke appimage` in it: its dist/ holds `files`; returns the calls."""
    calls = []

    def rebuild(checkout, options):
        calls.append(options)
        dist = tmp_path / "second" / "dist"
        dist.mkdir(parents=True, exist_ok=True)
        for name, source in files.items():
            (dist / name).write_bytes(source.read_bytes())
        return dist

    monkeypatch.setattr(reproduce, "second_checkout", lambda commit, where: where)
    monkeypatch.setattr(reproduce, "rebuild", rebuild)
    return calls


def test_identical_rebuilds_are_recorded_per_artifact(release, appimage, tmp_path, monkeypatch):
    calls = second_build(monkeypatch, tmp_path, {LLM: appimage, PLAIN: appimage})
    reproduce.reproduce(release, arch="x86_64")
    assert calls == [["--arch", "x86_64", "--flavor", "all", "--model", "gemma-3-270m", "--packager", "builtin",
                      "--base", "bullseye"]]
    records = {a["name"]: a["reproduced"] for a in json.loads((release / "manifest.json").read_text())["artifacts"]}
    assert {name: record["identical"] for name, record in records.items()} == {LLM: True, PLAIN: True}


def test_a_rebuild_with_other_bytes_fails_and_is_recorded(release, appimage, tmp_path, monkeypatch):
    other = tmp_path / "other.AppImage"
    data = bytearray(appimage.read_bytes())
    data[-100] ^= 0xFF
    other.write_bytes(bytes(data))
    second_build(monkeypatch, tmp_path, {LLM: appimage, PLAIN: other})
    with pytest.raises(VerifyError, match=f"not reproducible: {PLAIN} built from cccccccccccc"):
        reproduce.reproduce(release, arch="x86_64")
    records = {a["name"]: a["reproduced"] for a in json.loads((release / "manifest.json").read_text())["artifacts"]}
    assert records[PLAIN]["identical"] is False and records[LLM]["identical"] is True
    assert records[PLAIN]["second_unsigned_sha256"] == signing.appimage_digest(other)


def test_the_signature_sections_do_not_count(release, appimage, tmp_path, monkeypatch, signing_key):
    """The first build was signed, the second is not: their unsigned sha256 is what must match."""
    signed = tmp_path / "signed.AppImage"
    signed.write_bytes(appimage.read_bytes())
    signing.finish_appimage(signed, signing_key)
    second_build(monkeypatch, tmp_path, {LLM: signed, PLAIN: appimage})
    reproduce.reproduce(release, arch="x86_64")


def test_a_missing_rebuilt_file_fails(release, appimage, tmp_path, monkeypatch):
    second_build(monkeypatch, tmp_path, {LLM: appimage})
    with pytest.raises(VerifyError, match=f"the second build made no {PLAIN}"):
        reproduce.reproduce(release, arch="x86_64")


def test_a_checkout_with_changes_beyond_the_commit_is_refused(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "tracked").write_text("one\n")
    subprocess.run([*git, "add", "tracked"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.setattr(reproduce, "REPO", repo)
    assert reproduce.unbuilt_changes(head) == "" and reproduce.unbuilt_changes("f" * 40) == ""
    (repo / "tracked").write_text("two\n")
    assert "tracked" in reproduce.unbuilt_changes(head)
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "manifest.json").write_text(json.dumps({"commit": head, "artifacts": [artifact(LLM, "python-llm", "")]}))
    with pytest.raises(ConfigError, match="this checkout has changes beyond"):
        reproduce.reproduce(dist, arch="x86_64")


def test_build_options_need_one_packager_and_base(appimage):
    manifest = {"artifacts": [artifact(PLAIN, "python", ""), artifact(LLM, "python-llm", "", base="trixie")]}
    with pytest.raises(ConfigError, match="do not record one base"):
        reproduce.build_options(manifest, "x86_64")
    with pytest.raises(ConfigError, match="no aarch64 AppImage"):
        reproduce.build_options(manifest, "aarch64")
    assert reproduce.build_options({"artifacts": [artifact(PLAIN, "python", "")]}, "x86_64") == \
        ["--arch", "x86_64", "--flavor", "python", "--packager", "builtin", "--base", "bullseye"]
