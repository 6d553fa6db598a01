"""Splitting big artifacts into parts, and joining them back with the generated reassemble.sh."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from release.errors import ConfigError
from release.reassemble import write_reassemble_script
from release.split import part_sizes, split_if_needed

CAP = 1 << 20  # 1 MiB: each part is at most CAP - 1 bytes


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def appimage(tmp_path) -> Path:
    path = tmp_path / "dist" / "tea-python-llm-0.1.0-x86_64.AppImage"
    path.parent.mkdir()
    path.write_bytes(os.urandom(3 * CAP + 12345))
    return path


def manifest_for(path: Path, parts) -> dict:
    data = path.read_bytes()
    return {"schema": 1, "version": "0.1.0", "artifacts": [
        {"name": path.name, "size": len(data), "sha256": sha256(data), "parts": [p.to_json() for p in parts]}]}


def test_split_writes_ordered_parts_under_the_cap_that_join_back(appimage):
    parts = split_if_needed(appimage, CAP)
    assert [p.name for p in parts] == [f"{appimage.name}.part0{i}" for i in range(1, 5)]
    assert all(p.size < CAP for p in parts)
    joined = b"".join((appimage.parent / p.name).read_bytes() for p in parts)
    assert joined == appimage.read_bytes()
    assert [p.sha256 for p in parts] == [sha256((appimage.parent / p.name).read_bytes()) for p in parts]
    assert not list(appimage.parent.glob(".*.tmp"))


def test_file_below_the_cap_is_not_split_and_exactly_cap_is(tmp_path):
    small = tmp_path / "small.AppImage"
    small.write_bytes(b"x" * (CAP - 1))
    assert split_if_needed(small, CAP) == []
    small.write_bytes(b"x" * CAP)
    parts = split_if_needed(small, CAP)
    assert [p.size for p in parts] == [CAP // 2, CAP // 2]


@pytest.mark.parametrize("total", [2, 3, 9, 10, 11, 99, 100, 101, 1000])
def test_part_sizes_are_few_near_equal_and_under_the_cap(total):
    for cap in range(2, total + 2):
        sizes = part_sizes(total, cap)
        if total < cap:
            assert sizes == []
            continue
        assert sum(sizes) == total and max(sizes) < cap and max(sizes) - min(sizes) <= 1
        assert len(sizes) == -(-total // (cap - 1))  # no fewer parts could stay under the cap


def test_resplit_reuses_valid_parts_and_repairs_a_corrupted_one(appimage):
    first = split_if_needed(appimage, CAP)
    part_paths = [appimage.parent / p.name for p in first]
    inodes = [p.stat().st_ino for p in part_paths]
    corrupted = part_paths[2]
    data = bytearray(corrupted.read_bytes())
    data[100] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    corrupted_inode = corrupted.stat().st_ino

    again = split_if_needed(appimage, CAP)

    assert again == first
    assert [p.stat().st_ino for p in part_paths[:2]] == inodes[:2]  # untouched
    assert corrupted.stat().st_ino != corrupted_inode  # rewritten atomically
    assert sha256(corrupted.read_bytes()) == first[2].sha256


def test_parts_left_from_a_bigger_earlier_build_are_removed(appimage):
    split_if_needed(appimage, CAP)
    appimage.write_bytes(appimage.read_bytes()[: CAP + 5])
    parts = split_if_needed(appimage, CAP)
    assert sorted(p.name for p in appimage.parent.glob("*.part*")) == [p.name for p in parts]
    assert len(parts) == 2


def test_cap_too_small_is_a_config_error(appimage):
    with pytest.raises(ConfigError):
        split_if_needed(appimage, 1)


def run_script(directory: Path) -> subprocess.CompletedProcess:
    """Like a user without Python: an empty environment and only /usr/bin:/bin."""
    return subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "sh", "reassemble.sh"], cwd=directory,
                          capture_output=True, text=True)


def published_copy(appimage: Path, parts, target: Path) -> Path:
    target.mkdir()
    for part in parts:
        shutil.copy2(appimage.parent / part.name, target / part.name)
    shutil.copy2(appimage.parent / "reassemble.sh", target / "reassemble.sh")
    return target


def test_reassemble_sh_rebuilds_the_exact_file_with_only_coreutils(appimage, tmp_path):
    parts = split_if_needed(appimage, CAP)
    script = write_reassemble_script(appimage.parent, manifest_for(appimage, parts))
    assert script.stat().st_mode & 0o111
    copy = published_copy(appimage, parts, tmp_path / "downloaded")

    result = run_script(copy)

    assert result.returncode == 0, result.stderr
    rebuilt = copy / appimage.name
    assert sha256(rebuilt.read_bytes()) == sha256(appimage.read_bytes())
    assert rebuilt.stat().st_mode & 0o111
    assert run_script(copy).stdout.strip().endswith("already complete")


def test_reassemble_sh_refuses_a_corrupted_part_and_leaves_no_file(appimage, tmp_path):
    parts = split_if_needed(appimage, CAP)
    write_reassemble_script(appimage.parent, manifest_for(appimage, parts))
    copy = published_copy(appimage, parts, tmp_path / "downloaded")
    data = bytearray((copy / parts[1].name).read_bytes())
    data[0] ^= 1
    (copy / parts[1].name).write_bytes(bytes(data))

    result = run_script(copy)

    assert result.returncode != 0
    assert "corrupted" in result.stderr
    assert not (copy / appimage.name).exists() and not (copy / f"{appimage.name}.partial").exists()


@pytest.mark.parametrize("how", ["parts swapped", "whole hash"])
def test_reassemble_sh_checks_the_joined_file_not_only_the_parts(appimage, tmp_path, how):
    """Every part is intact, but the script joins them in another order, or expects another whole."""
    parts = split_if_needed(appimage, CAP)
    write_reassemble_script(appimage.parent, manifest_for(appimage, parts))
    copy = published_copy(appimage, parts, tmp_path / "downloaded")
    script = (copy / "reassemble.sh").read_text()
    first, second = parts[0].name, parts[1].name
    if how == "parts swapped":
        edited = script.replace(f" {first} {second} ", f" {second} {first} ")
    else:
        edited = script.replace(sha256(appimage.read_bytes()), "0" * 64)
    assert edited != script
    (copy / "reassemble.sh").write_text(edited)

    result = run_script(copy)

    assert result.returncode != 0 and "the joined file does not match its sha256" in result.stderr
    assert not (copy / appimage.name).exists() and not (copy / f"{appimage.name}.partial").exists()


def test_reassemble_sh_reports_missing_parts(appimage, tmp_path):
    parts = split_if_needed(appimage, CAP)
    write_reassemble_script(appimage.parent, manifest_for(appimage, parts))
    copy = published_copy(appimage, parts, tmp_path / "downloaded")
    (copy / parts[-1].name).unlink()
    result = run_script(copy)
    assert result.returncode != 0 and "only 3 of 4 parts" in result.stderr


def test_no_script_when_nothing_is_split_and_a_stale_one_is_removed(appimage):
    parts = split_if_needed(appimage, CAP)
    write_reassemble_script(appimage.parent, manifest_for(appimage, parts))
    assert write_reassemble_script(appimage.parent, manifest_for(appimage, [])) is None
    assert not (appimage.parent / "reassemble.sh").exists()


def test_unsafe_manifest_names_never_reach_the_script(appimage):
    parts = split_if_needed(appimage, CAP)
    manifest = manifest_for(appimage, parts)
    manifest["artifacts"][0]["parts"][0]["name"] = "x; rm -rf ~"
    with pytest.raises(ConfigError):
        write_reassemble_script(appimage.parent, manifest)
