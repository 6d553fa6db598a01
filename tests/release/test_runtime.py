"""The runtime's behaviour, run for real: FUSE mounts, extraction, signals, corruption, no FUSE.

Every run gets its own TMPDIR, so "no stale mount" means no line of /proc/mounts mentions it,
even while other tests mount their own images in parallel. Runs through FUSE are checked with a
private mount (APPIMAGE_SHARED_MOUNT=0: unmounted when the run ends) and with the default shared
mount, which outlives the run by its linger time (1 s here, see tmpdir_env).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from release.appimage import elf_end_offset, validate_appimage
from test_appimage_format import appdir, appimage, build_appimage, make_appdir, runtime  # noqa: F401

TIMEOUT = 30
MODES = {"private": {"APPIMAGE_SHARED_MOUNT": "0"}, "shared": {}}
SHARED_MOUNT_NAME = re.compile(r"[0-9a-f]{64}\.mnt-\w{6}")  # <squashfs sha256>.mnt-XXXXXX


@pytest.fixture
def tmpdir_env(tmp_path) -> dict[str, str]:
    """Environment of a run whose mount points and extractions land in a private TMPDIR; a shared
    mount lingers 1 s after its last run."""
    private = tmp_path / "tmp"
    private.mkdir()
    env = {**os.environ, "TMPDIR": str(private), "APPIMAGE_MOUNT_LINGER": "1"}
    for name in ("APPIMAGE_EXTRACT_AND_RUN", "APPIMAGE_SHARED_MOUNT", "NO_CLEANUP", "APP_EXIT", "APP_SLEEP"):
        env.pop(name, None)
    return env


def extraction_cache(env: dict[str, str]) -> Path:
    """Where extract-and-run keeps its trees: per user, under the (test's own) cache home."""
    return Path(env["XDG_CACHE_HOME"]) / "appimage"


def extracted_trees(env: dict[str, str]) -> list[str]:
    """The trees in the extraction cache (besides them: its lock file and the records of checked
    digests, verified_*)."""
    return sorted(name for name in os.listdir(extraction_cache(env)) if name.startswith("extracted_"))


def squashfs_sha256(appimage: Path) -> str:
    return hashlib.sha256(appimage.read_bytes()[elf_end_offset(appimage):]).hexdigest()


def run(appimage: Path | str, *args: str, env: dict[str, str], cwd: Path | None = None,
        prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, str(appimage), *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT)


def reported(stdout: str) -> dict[str, list[str]]:
    """AppRun's KEY=value lines, grouped by key (ARG repeats)."""
    values: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        key, _, value = line.partition("=")
        values.setdefault(key, []).append(value)
    return values


def mounts_under(directory: str, table: str = "/proc/mounts") -> list[str]:
    return [line for line in Path(table).read_text().splitlines() if directory in line]


def eventually(condition, timeout: float = 15) -> bool:
    """Polls condition() until it holds or timeout seconds pass (a shared mount lingers after its
    last run, and its server removes the mount point just after unmounting)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def mounts_gone(directory: str, timeout: float = 15, table: str = "/proc/mounts") -> bool:
    return eventually(lambda: not mounts_under(directory, table), timeout)


def suffix(name: str) -> str:
    """What follows the image key in a name in the shared mounts' directory."""
    return name.partition(".")[2]


def only_lock_files(directory: Path) -> bool:
    return all(name.endswith(".lock") for name in os.listdir(directory))


def user_dir(tmpdir: str | Path, uid: int | None = None) -> Path:
    return Path(tmpdir) / f"appimage-mounts-{os.getuid() if uid is None else uid}"


def assert_mounted_in(appdir: str, tmpdir: str, mode: str, name: str = "Test-x86_64") -> None:
    if mode == "private":
        assert Path(appdir).parent == Path(tmpdir) and Path(appdir).name.startswith(f".mount_{name}")
    else:
        assert Path(appdir).parent == user_dir(tmpdir) and SHARED_MOUNT_NAME.fullmatch(Path(appdir).name)


def assert_cleaned_up(tmpdir: str, mode: str) -> None:
    """No mount left, and nothing in TMPDIR but, for a shared mount, its lock file."""
    assert mounts_gone(tmpdir)
    if mode == "private":
        assert os.listdir(tmpdir) == []
    else:
        assert os.listdir(tmpdir) == [user_dir(tmpdir).name]
        assert eventually(lambda: only_lock_files(user_dir(tmpdir)))
        assert [suffix(name) for name in os.listdir(user_dir(tmpdir))] == ["lock"]


def tree(root: Path) -> dict[str, tuple]:
    """Relative path → (kind, mode bits, sha256 or symlink target) for every entry."""
    entries = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            entries[str(path.relative_to(root))] = ("link", os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            entries[str(path.relative_to(root))] = ("dir", stat.S_IMODE(info.st_mode))
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            entries[str(path.relative_to(root))] = ("file", stat.S_IMODE(info.st_mode), digest)
    return entries


# ------------------------------------------------------------------------------------------------
# Running through FUSE and through extraction


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("code", [0, 3, 42])
def test_fuse_run_passes_args_env_and_exit_code(appimage, tmpdir_env, tmp_path, code, mode):
    env = {**tmpdir_env, **MODES[mode], "APP_EXIT": str(code)}
    result = run(appimage, "two words", "", "--flag=x y", env=env, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    seen = reported(result.stdout)
    appdir_path = seen["APPDIR"][0]
    assert_mounted_in(appdir_path, tmpdir_env["TMPDIR"], mode)
    assert seen["APPIMAGE"] == [str(appimage)]
    assert seen["ARGV0"] == [str(appimage)]
    assert seen["OWD"] == [str(tmp_path)]
    assert seen["ZERO"] == [f"{appdir_path}/AppRun"]
    assert seen["ARG"] == ["two words", "", "--flag=x y"]
    assert seen["TOOL"] == ["ok"]  # an executable reached through a symlink inside the image
    assert result.stderr == ""
    if mode == "private":
        assert mounts_under(tmpdir_env["TMPDIR"]) == []  # at once, not after a while
    assert_cleaned_up(tmpdir_env["TMPDIR"], mode)


def test_argv0_is_the_name_the_appimage_was_called_by(appimage, tmpdir_env):
    result = run("./" + appimage.name, env=tmpdir_env, cwd=appimage.parent)
    assert reported(result.stdout)["ARGV0"] == ["./Test-x86_64.AppImage"]
    assert reported(result.stdout)["APPIMAGE"] == [str(appimage)]


@pytest.mark.parametrize("how", ["flag", "env"])
@pytest.mark.parametrize("code", [0, 42])
def test_extract_and_run_passes_args_and_cleans_up(appimage, tmpdir_env, tmp_path, how, code):
    env = {**tmpdir_env, "APP_EXIT": str(code)}
    args = ["a b", "c"]
    if how == "flag":
        args.insert(0, "--appimage-extract-and-run")
    else:
        env["APPIMAGE_EXTRACT_AND_RUN"] = "1"
    result = run(appimage, *args, env=env, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    seen = reported(result.stdout)
    assert Path(seen["APPDIR"][0]).parent == extraction_cache(env)
    assert Path(seen["APPDIR"][0]).name.startswith(f"extracted_{squashfs_sha256(appimage)}.")
    assert seen["ARG"] == ["a b", "c"]
    assert seen["TOOL"] == ["ok"]
    assert seen["OWD"] == [str(tmp_path)]
    assert os.listdir(tmpdir_env["TMPDIR"]) == [] and extracted_trees(env) == []


def test_no_cleanup_keeps_the_extraction_for_the_next_run(appimage, tmpdir_env):
    env = {**tmpdir_env, "APPIMAGE_EXTRACT_AND_RUN": "1", "NO_CLEANUP": "1"}
    first = reported(run(appimage, env=env).stdout)["APPDIR"]
    marker = Path(first[0]) / "marker-of-first-run"
    marker.write_text("kept")
    second = reported(run(appimage, env=env).stdout)["APPDIR"]
    assert first == second and marker.exists()
    assert extracted_trees(env) == [f"extracted_{squashfs_sha256(appimage)}"]
    assert os.listdir(tmpdir_env["TMPDIR"]) == []


def test_extract_yields_exactly_the_appdir(appimage, appdir, tmpdir_env, tmp_path):
    result = run(appimage, "--appimage-extract", env=tmpdir_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "squashfs-root") == tree(appdir)


def test_extract_with_pattern_yields_only_matches(appimage, appdir, tmpdir_env, tmp_path):
    result = run(appimage, "--appimage-extract", "usr/bin/*", env=tmpdir_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    extracted = tree(tmp_path / "squashfs-root")
    assert sorted(extracted) == ["usr", "usr/bin", "usr/bin/link", "usr/bin/tool"]
    assert extracted["usr/bin/tool"] == tree(appdir)["usr/bin/tool"]


def test_informational_options(appimage, tmpdir_env):
    assert "type 2" in run(appimage, "--appimage-version", env=tmpdir_env).stdout
    assert "--appimage-extract-and-run" in run(appimage, "--appimage-help", env=tmpdir_env).stdout
    unknown = run(appimage, "--appimage-bogus", env=tmpdir_env)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "appimage: unknown option --appimage-bogus (see --appimage-help)"


def test_appimage_mount_serves_until_terminated(appimage, tmpdir_env):
    process = subprocess.Popen([str(appimage), "--appimage-mount"], env=tmpdir_env,
                               stdout=subprocess.PIPE, text=True)
    try:
        mountpoint = Path(process.stdout.readline().strip())
        assert (mountpoint / "usr/bin/tool").read_text() == "#!/bin/sh\necho TOOL=ok\n"
        assert len(mounts_under(str(mountpoint))) == 1
    finally:
        process.terminate()
        assert process.wait(timeout=TIMEOUT) == 0
    assert mounts_under(tmpdir_env["TMPDIR"]) == [] and not mountpoint.exists()


# ------------------------------------------------------------------------------------------------
# Signals, corruption, no FUSE


def wait_for_pid(process: subprocess.Popen) -> int:
    for line in process.stdout:
        if line.startswith("PID="):
            return int(line[4:])
    raise AssertionError("AppRun never started")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_run_kills_the_app_and_unmounts(appimage, tmpdir_env, sig, mode):
    env = {**tmpdir_env, **MODES[mode], "APP_SLEEP": "120"}
    process = subprocess.Popen([str(appimage)], env=env, stdout=subprocess.PIPE, text=True)
    app_pid = wait_for_pid(process)
    assert len(mounts_under(tmpdir_env["TMPDIR"])) == 1
    process.send_signal(sig)
    assert process.wait(timeout=TIMEOUT) == -sig  # the runtime dies the way its app did
    with pytest.raises(ProcessLookupError):
        os.kill(app_pid, 0)
    assert_cleaned_up(tmpdir_env["TMPDIR"], mode)


def corrupt(appimage: Path, how: str) -> None:
    offset = elf_end_offset(appimage)
    if how == "truncated":
        os.truncate(appimage, offset + (appimage.stat().st_size - offset) // 2)
        return
    at = {"magic": offset, "tables": offset + 40}[how]
    with appimage.open("r+b") as handle:
        handle.seek(at)
        handle.write(b"\xa5" * 56)


@pytest.mark.parametrize("how, message", [
    ("magic", "no squashfs magic"),
    ("tables", "squashfs"),
    ("truncated", "is truncated"),
])
@pytest.mark.parametrize("mode", [(), ("--appimage-extract",), ("--appimage-extract-and-run",)])
def test_corrupt_image_fails_fast_with_one_line(appimage, tmpdir_env, tmp_path, how, message, mode):
    corrupt(appimage, how)
    result = run(appimage, *mode, env=tmpdir_env, cwd=tmp_path)  # a hang raises TimeoutExpired
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("appimage: ") and message in lines[0]
    assert mounts_under(tmpdir_env["TMPDIR"]) == []


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare for a private mount namespace")


@needs_root
def test_without_fuse_it_extracts_and_runs_with_one_notice(appimage, tmpdir_env, tmp_path):
    hide_fuse = "mount --bind /dev/null /dev/fuse && exec \"$0\" \"$@\""
    env = {**tmpdir_env, "APP_EXIT": "7"}
    result = run(appimage, "x y", env=env, cwd=tmp_path,
                 prefix=("unshare", "--mount", "sh", "-c", hide_fuse))
    assert result.returncode == 7
    seen = reported(result.stdout)
    assert Path(seen["APPDIR"][0]).parent == extraction_cache(env)
    assert seen["ARG"] == ["x y"]
    notice = result.stderr.splitlines()
    assert len(notice) == 1 and "FUSE is not available" in notice[0], result.stderr
    assert os.listdir(tmpdir_env["TMPDIR"]) == []


@pytest.fixture
def world_readable_dir():
    """pytest's tmp dirs are root-only; an unprivileged user needs a directory it can use."""
    directory = Path(tempfile.mkdtemp(prefix="appimage-user-"))
    directory.chmod(0o1777)
    yield directory
    shutil.rmtree(directory)


NOBODY = 65534


@dataclass(frozen=True)
class Desktop:
    """Where runs happen as an ordinary user with /dev/fuse open to all, as on a desktop: a mount
    namespace of its own (a 0666 node bound over /dev/fuse), held open by a sleeping process."""

    holder: int
    prefix: tuple[str, ...]

    @property
    def table(self) -> str:
        return f"/proc/{self.holder}/mounts"

    def mounts_under(self, directory: str | Path) -> list[str]:
        return mounts_under(str(directory), self.table)


@pytest.fixture
def desktop(tmp_path) -> Desktop:
    if os.geteuid() != 0 or not all(map(shutil.which, ("unshare", "nsenter", "setpriv"))):
        pytest.skip("needs root, unshare, nsenter and setpriv")
    node = tmp_path / "fuse"
    setup = f"mknod -m 666 {node} c 10 229 && mount --bind {node} /dev/fuse && echo ready && exec sleep 600"
    holder = subprocess.Popen(["unshare", "--mount", "sh", "-c", setup], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    yield Desktop(holder.pid, ("nsenter", f"--mount=/proc/{holder.pid}/ns/mnt", "setpriv", f"--reuid={NOBODY}",
                               f"--regid={NOBODY}", "--clear-groups"))
    holder.kill()
    holder.wait()


@pytest.mark.parametrize("mode", MODES)
def test_unprivileged_user_mounts_through_fusermount3(appimage, tmpdir_env, world_readable_dir, desktop, mode):
    """fusermount3 (setuid) mounts for an ordinary user, and unmounts."""
    image = Path(shutil.copy2(appimage, world_readable_dir / appimage.name))
    env = {**tmpdir_env, **MODES[mode], "TMPDIR": str(world_readable_dir), "APP_EXIT": "5"}
    result = run(image, "arg", env=env, cwd=world_readable_dir, prefix=desktop.prefix)
    assert result.returncode == 5, result.stderr
    appdir = reported(result.stdout)["APPDIR"][0]
    assert result.stderr == ""
    if mode == "private":
        assert Path(appdir).name.startswith(".mount_") and desktop.mounts_under(world_readable_dir) == []
        assert os.listdir(world_readable_dir) == [image.name]
    else:
        assert Path(appdir).parent == user_dir(world_readable_dir, NOBODY)
        assert desktop.mounts_under(world_readable_dir)  # lingering
        assert sorted(os.listdir(world_readable_dir)) == sorted([image.name, user_dir(world_readable_dir, NOBODY).name])
    assert mounts_gone(str(world_readable_dir), table=desktop.table)


# ------------------------------------------------------------------------------------------------
# Big files


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@pytest.mark.slow
def test_real_model_round_trips_through_mount_and_extraction(runtime, gguf_model, tmp_path,
                                                             tmpdir_env):
    appdir = make_appdir(tmp_path / "AppDir", b"")
    try:  # a hard link, as the AppDir step does, when on the same filesystem
        os.link(gguf_model, appdir / "usr/share/models/x.gguf")
    except OSError:
        shutil.copy(gguf_model, appdir / "usr/share/models/x.gguf")
    image = build_appimage(runtime, appdir, tmp_path / "Model-x86_64.AppImage")
    validate_appimage(image)
    assert image.stat().st_size > gguf_model.stat().st_size  # stored, not compressed
    process = subprocess.Popen([str(image), "--appimage-mount"], env=tmpdir_env,
                               stdout=subprocess.PIPE, text=True)
    try:
        mounted = Path(process.stdout.readline().strip()) / "usr/share/models/x.gguf"
        assert sha256_of(mounted) == sha256_of(gguf_model)
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT)
    run(image, "--appimage-extract", env=tmpdir_env, cwd=tmp_path)
    assert sha256_of(tmp_path / "squashfs-root/usr/share/models/x.gguf") == sha256_of(gguf_model)


@pytest.mark.slow
@pytest.mark.big_disk
def test_files_beyond_2_gib_are_extracted_intact(runtime, tmp_path, tmpdir_env):
    if shutil.disk_usage(tmp_path).free < 8 << 30:
        pytest.skip("needs 8 GiB free for a 2.5 GiB file and its extraction")
    appdir = make_appdir(tmp_path / "AppDir", b"")
    big = appdir / "usr/share/models/x.gguf"
    markers = {0: b"GGUF-start", (2 << 30) + 12345: b"past-2-GiB", (5 << 29) - 8: b"the-end!"}
    with big.open("r+b") as handle:  # sparse, with data on both sides of 2 GiB
        for offset, data in markers.items():
            handle.seek(offset)
            handle.write(data)
    image = build_appimage(runtime, appdir, tmp_path / "Big-x86_64.AppImage")
    big.unlink()
    result = run(image, "--appimage-extract", "usr/share/models/*", env=tmpdir_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    extracted = tmp_path / "squashfs-root/usr/share/models/x.gguf"
    assert extracted.stat().st_size == 5 << 29
    with extracted.open("rb") as handle:
        for offset, data in markers.items():
            handle.seek(offset)
            assert handle.read(len(data)) == data
