"""What runs share, keyed by what they run (issue 24's N10): the shared mount by the identity of the
image file, the extract-and-run cache by the squashfs sha256 embedded in the image's own runtime,
checked against its content once per file. Images whose embedded digest lies (TARGET_APPIMAGE
naming another image, an AppImage assembled from another one's runtime bytes, an image changed
after its digest was checked) must never run another image's tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from release.appimage import digest_section_offset, elf_end_offset
from test_runtime import TIMEOUT, extracted_trees, extraction_cache, mounts_gone, squashfs_sha256, tmpdir_env  # noqa: F401
from test_runtime_hostile import image_with_model, runtime  # noqa: F401
from test_shared_mount import stop_servers

MISMATCH = "does not match its content: its extraction is not shared"


def run(image: Path, env: dict, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(image)], env={**env, **extra}, capture_output=True, text=True, timeout=TIMEOUT)


def model_of(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("model "))


def two_images(runtime: Path, tmp_path: Path) -> tuple[Path, Path]:  # noqa: F811
    return (image_with_model(runtime, tmp_path, "A", b"model A\n"),
            image_with_model(runtime, tmp_path, "B", b"model B\n"))


def assembled(a: Path, b: Path, out: Path) -> Path:
    """A's runtime bytes (its .sqfs_sha256 included) in front of B's squashfs."""
    offset = elf_end_offset(a)
    out.write_bytes(a.read_bytes()[:offset] + b.read_bytes()[offset:])
    out.chmod(0o755)
    return out


@contextmanager
def lingering(env: dict, *images: Path):
    """Runs whose shared mounts linger 30 s: every one is stopped, and gone, at the end."""
    try:
        yield {**env, "APPIMAGE_MOUNT_LINGER": "30"}
    finally:
        for image in images:
            stop_servers(image)
    assert mounts_gone(env["TMPDIR"])


def test_target_appimage_shares_the_targets_mount_not_the_runtimes(runtime, tmp_path, tmpdir_env):  # noqa: F811
    """TARGET_APPIMAGE=B A used to mount B under A's key: the next run of A joined it and ran B."""
    a, b = two_images(runtime, tmp_path)
    with lingering(tmpdir_env, a, b) as env:
        assert model_of(run(a, env, TARGET_APPIMAGE=str(b))) == "model B"
        assert model_of(run(a, env)) == "model A"
        assert model_of(run(b, env)) == "model B"


def test_an_image_assembled_from_anothers_runtime_does_not_join_its_mount(runtime, tmp_path, tmpdir_env):  # noqa: F811
    """Measured without any attacker: C, A's runtime bytes with B's squashfs, joined A's lingering
    mount and ran A's AppRun; then A joined C's."""
    a, b = two_images(runtime, tmp_path)
    c = assembled(a, b, tmp_path / "C.AppImage")
    with lingering(tmpdir_env, a, c) as env:
        assert model_of(run(a, env)) == "model A"
        assert model_of(run(c, env)) == "model B"
        assert model_of(run(a, env)) == "model A"


def test_target_appimage_caches_the_target_under_its_own_digest(runtime, tmp_path, tmpdir_env):  # noqa: F811
    a, b = two_images(runtime, tmp_path)
    env = {**tmpdir_env, "APPIMAGE_EXTRACT_AND_RUN": "1", "NO_CLEANUP": "1"}
    assert model_of(run(a, env, TARGET_APPIMAGE=str(b))) == "model B"
    assert model_of(run(a, env)) == "model A"
    assert extracted_trees(env) == sorted(f"extracted_{squashfs_sha256(image)}" for image in (a, b))


def test_a_digest_that_lies_is_checked_and_shares_nothing(runtime, tmp_path, tmpdir_env):  # noqa: F811
    """C claims A's digest: its run says so in one line, runs its own content, and leaves A's
    cached tree as it was."""
    a, b = two_images(runtime, tmp_path)
    c = assembled(a, b, tmp_path / "C.AppImage")
    env = {**tmpdir_env, "APPIMAGE_EXTRACT_AND_RUN": "1", "NO_CLEANUP": "1"}
    assert model_of(run(a, env)) == "model A"
    lied = run(c, env)
    assert model_of(lied) == "model B" and lied.stderr == f"appimage: the squashfs sha256 embedded in {c} {MISMATCH}\n"
    assert extracted_trees(env) == [f"extracted_{squashfs_sha256(a)}"]
    assert model_of(run(a, env)) == "model A"


def test_the_check_is_made_once_per_file_and_again_after_a_change(runtime, tmp_path, tmpdir_env):  # noqa: F811
    """A record of the checked identity makes later runs free; an image changed in place (same
    inode, size and modification time, its digest now wrong) has a new change time, so a new
    identity: it is checked again and does not get the old tree."""
    a, _ = two_images(runtime, tmp_path)
    env = {**tmpdir_env, "APPIMAGE_EXTRACT_AND_RUN": "1", "NO_CLEANUP": "1"}
    assert model_of(run(a, env)) == "model A"
    records = [name for name in os.listdir(extraction_cache(env)) if name.startswith("verified_")]
    assert len(records) == 1 and (extraction_cache(env) / records[0]).read_text() == squashfs_sha256(a) != ""
    assert model_of(run(a, env)) == "model A" and len(os.listdir(extraction_cache(env))) == 3  # tree, record, lock
    data, before = a.read_bytes(), a.stat()
    assert data.count(b"model A\n") == 1  # stored verbatim (uncompressed fragments)
    a.write_bytes(data.replace(b"model A\n", b"model X\n"))
    os.utime(a, ns=(before.st_atime_ns, before.st_mtime_ns))  # anyone can put the times back; not the ctime
    assert (a.stat().st_ino, a.stat().st_size, a.stat().st_mtime_ns) == (before.st_ino, before.st_size,
                                                                         before.st_mtime_ns)
    changed = run(a, env)
    assert model_of(changed) == "model X" and MISMATCH in changed.stderr


def test_an_image_without_a_digest_still_shares_its_mount(tmp_path, tmpdir_env, runtime):  # noqa: F811
    """The mount's key needs no digest: runs of one file share a mount (zeroed .sqfs_sha256)."""
    a, _ = two_images(runtime, tmp_path)
    data = bytearray(a.read_bytes())
    at = digest_section_offset(runtime)
    data[at:at + 32] = bytes(32)
    a.write_bytes(bytes(data))
    with lingering(tmpdir_env, a) as env:
        first, second = run(a, env), run(a, env)
        assert model_of(first) == model_of(second) == "model A"
        assert first.stdout.splitlines()[0] == second.stdout.splitlines()[0]  # APPDIR: one mount


@pytest.mark.parametrize("cpu", ["Westmere", "max"])
def test_the_digest_is_checked_with_and_without_sha_instructions(runtime, tmp_path, tmpdir_env, cpu):  # noqa: F811
    """sha256.c's two paths: the plain rounds on a CPU without SHA-NI (Westmere), the SHA-NI rounds
    where qemu has them (max): a right digest is recorded, a wrong one is said."""
    if shutil.which("qemu-x86_64-static") is None:
        pytest.skip("needs qemu-user-static")
    a, b = two_images(runtime, tmp_path)
    c = assembled(a, b, tmp_path / "C.AppImage")
    env = {**tmpdir_env, "APPIMAGE_EXTRACT_AND_RUN": "1", "NO_CLEANUP": "1"}
    emulated = ["qemu-x86_64-static", "-cpu", cpu]
    right = subprocess.run([*emulated, str(a)], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    wrong = subprocess.run([*emulated, str(c)], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert model_of(right) == "model A" and right.stderr == ""
    assert model_of(wrong) == "model B" and MISMATCH in wrong.stderr
    records = [path for path in extraction_cache(env).iterdir() if path.name.startswith("verified_")]
    assert [path.read_text() for path in records] == [squashfs_sha256(a)]
