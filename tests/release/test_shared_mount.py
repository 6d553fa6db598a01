"""The shared mount: runs of one AppImage share a mount that lingers after the last one.

What must hold: runs (back to back or at once) use one mount; it stays while any run is alive
and goes once none came back for the linger time; nothing is left when everything is killed; a
per-user directory that is not private is never used; APPIMAGE_SHARED_MOUNT=0 turns it off.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_appimage_format import appdir, appimage, build_appimage, make_appdir, runtime  # noqa: F401
from test_runtime import (NOBODY, TIMEOUT, assert_mounted_in, desktop, eventually, mounts_gone,  # noqa: F401
                          mounts_under, only_lock_files, reported, run, suffix, tmpdir_env, user_dir, wait_for_pid,
                          world_readable_dir)


def appdir_of(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return reported(result.stdout)["APPDIR"][0]


def start(appimage: Path, env: dict[str, str], prefix: tuple[str, ...] = ()) -> tuple[subprocess.Popen, int]:
    """A run whose app sleeps: the runtime's process and the app's pid."""
    process = subprocess.Popen([*prefix, str(appimage)], env={**env, "APP_SLEEP": "120"},
                               stdout=subprocess.PIPE, text=True)
    return process, wait_for_pid(process)


def processes_of(image: Path) -> list[int]:
    """Every process running the image's runtime: the runs and the mount's server."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "exe") == str(image):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def test_back_to_back_runs_share_one_mount_that_lingers_then_goes(appimage, runtime, tmp_path, tmpdir_env):
    tmpdir = tmpdir_env["TMPDIR"]
    first = appdir_of(run(appimage, env=tmpdir_env))
    assert_mounted_in(first, tmpdir, "shared")
    assert len(mounts_under(tmpdir)) == 1  # it outlives the run
    assert appdir_of(run(appimage, env=tmpdir_env)) == first
    other = build_appimage(runtime, make_appdir(tmp_path / "Other", b"other"), tmp_path / "Other-x86_64.AppImage")
    assert appdir_of(run(other, env=tmpdir_env)) != first  # another image, another mount
    assert len(mounts_under(tmpdir)) == 2
    assert mounts_gone(tmpdir) and eventually(lambda: only_lock_files(user_dir(tmpdir)))
    assert sorted(suffix(name) for name in os.listdir(user_dir(tmpdir))) == ["lock", "lock"]


def test_runs_started_at_once_share_one_server(appimage, tmpdir_env):
    runs = [subprocess.Popen([str(appimage)], env={**tmpdir_env, "APP_SLEEP": "1"}, stdout=subprocess.PIPE, text=True)
            for _ in range(4)]
    outputs = [process.communicate(timeout=TIMEOUT)[0] for process in runs]
    assert [process.returncode for process in runs] == [0] * 4
    assert len({reported(output)["APPDIR"][0] for output in outputs}) == 1
    assert mounts_gone(tmpdir_env["TMPDIR"]) and eventually(lambda: only_lock_files(user_dir(tmpdir_env["TMPDIR"])))


def test_a_running_app_keeps_the_mount_past_the_linger_time(appimage, tmpdir_env):
    tmpdir = tmpdir_env["TMPDIR"]
    first, app = start(appimage, tmpdir_env)
    joined = appdir_of(run(appimage, env=tmpdir_env))  # a second run, while the first is alive
    time.sleep(2.5)  # well past the 1 s linger
    assert mounts_under(tmpdir) and Path(joined, "usr/bin/tool").is_file()
    os.kill(app, signal.SIGTERM)
    assert first.wait(timeout=TIMEOUT) == -signal.SIGTERM and mounts_gone(tmpdir, timeout=5)


def test_a_lingering_mount_holds_none_of_the_callers_files(appimage, tmpdir_env):
    """Whoever reads the run's output (or any pipe it handed down) sees the end when the run ends,
    not when the mount's server does."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen([str(appimage)], env={**tmpdir_env, "APPIMAGE_MOUNT_LINGER": "60"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(write_end,))
    os.close(write_end)
    output, _ = process.communicate(timeout=TIMEOUT)  # returns at EOF of stdout and stderr
    assert process.returncode == 0 and mounts_under(tmpdir_env["TMPDIR"])  # the server lingers...
    assert os.read(read_end, 1) == b""  # ...holding neither those nor the extra pipe
    os.close(read_end)
    stop_servers(appimage)
    assert mounts_gone(tmpdir_env["TMPDIR"], timeout=5)


def test_a_directory_renamed_above_a_lingering_mount_does_not_strand_it(appimage, tmpdir_env, tmp_path):
    """The server unmounts where its mount point is now, not where it was made."""
    first = Path(tmpdir_env["TMPDIR"])
    appdir_of(run(appimage, env={**tmpdir_env, "APPIMAGE_MOUNT_LINGER": "1"}))
    moved = first.rename(tmp_path / "moved")
    assert mounts_under(str(moved))
    assert mounts_gone(str(moved), timeout=10) and eventually(lambda: only_lock_files(user_dir(moved)))


def test_the_default_linger_is_a_few_seconds(appimage, tmpdir_env):
    env = {k: v for k, v in tmpdir_env.items() if k != "APPIMAGE_MOUNT_LINGER"}
    appdir_of(run(appimage, env=env))
    time.sleep(3)
    assert mounts_under(tmpdir_env["TMPDIR"])
    assert mounts_gone(tmpdir_env["TMPDIR"], timeout=6)


def test_no_linger_unmounts_when_the_last_run_ends(appimage, tmpdir_env):
    mounted_at = appdir_of(run(appimage, env={**tmpdir_env, "APPIMAGE_MOUNT_LINGER": "0"}))
    assert_mounted_in(mounted_at, tmpdir_env["TMPDIR"], "shared")
    assert mounts_gone(tmpdir_env["TMPDIR"], timeout=2)


def test_switched_off_each_run_mounts_privately(appimage, tmpdir_env):
    env = {**tmpdir_env, "APPIMAGE_SHARED_MOUNT": "0"}
    first, second = (appdir_of(run(appimage, env=env)) for _ in range(2))
    assert first != second and mounts_under(tmpdir_env["TMPDIR"]) == []
    assert os.listdir(tmpdir_env["TMPDIR"]) == []


def test_a_tmpdir_where_others_could_swap_our_directory_is_not_used(appimage, tmpdir_env):
    tmpdir = Path(tmpdir_env["TMPDIR"])
    tmpdir.chmod(0o777)  # world-writable, not sticky: unlike /tmp
    result = run(appimage, env=tmpdir_env)
    assert_mounted_in(appdir_of(result), str(tmpdir), "private")
    assert result.stderr.splitlines() == [f"appimage: not sharing the mount: {tmpdir} is writable by others and "
                                          "not sticky"]
    tmpdir.chmod(0o1777)
    assert_mounted_in(appdir_of(run(appimage, env=tmpdir_env)), str(tmpdir), "shared")


@pytest.mark.parametrize("flaw", ["group-readable", "symlink", "other owner"])
def test_a_user_dir_that_is_not_private_is_not_used(appimage, tmpdir_env, tmp_path, flaw):
    shared = user_dir(tmpdir_env["TMPDIR"])
    if flaw == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        shared.symlink_to(tmp_path / "elsewhere")
    else:
        shared.mkdir(mode=0o750 if flaw == "group-readable" else 0o700)
    if flaw == "other owner":
        if os.geteuid() != 0:
            pytest.skip("needs root to give the directory away")
        os.chown(shared, NOBODY, NOBODY)
    result = run(appimage, env=tmpdir_env)
    assert_mounted_in(appdir_of(result), tmpdir_env["TMPDIR"], "private")
    notice = result.stderr.splitlines()
    assert len(notice) == 1 and notice[0].startswith(f"appimage: not sharing the mount: {shared}"), result.stderr
    assert mounts_under(tmpdir_env["TMPDIR"]) == []
    assert os.listdir(tmp_path / "elsewhere" if flaw == "symlink" else shared) == []


def test_a_user_dir_it_cannot_open_says_why(appimage, tmpdir_env, world_readable_dir, desktop):
    """Issue 24's N16: EACCES on the directory was reported as "is not a directory"."""
    image = Path(shutil.copy2(appimage, world_readable_dir / appimage.name))
    shared = user_dir(world_readable_dir, NOBODY)
    shared.mkdir(mode=0)
    os.chown(shared, NOBODY, NOBODY)
    result = run(image, env={**tmpdir_env, "TMPDIR": str(world_readable_dir)}, prefix=desktop.prefix)
    assert Path(appdir_of(result)).parent == world_readable_dir  # a private mount instead
    assert result.stderr.splitlines() == [f"appimage: not sharing the mount: {shared}: Permission denied"]


def stop_servers(image: Path) -> None:
    """SIGTERM to the image's lingering servers (their watchdogs ignore it): they unmount and go."""
    for pid in processes_of(image):
        os.kill(pid, signal.SIGTERM)


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def server_and_watchdog(image: Path, runtime: int) -> tuple[int, int]:
    """The mount's server and its watchdog (the server's child) among the image's processes."""
    others = [pid for pid in processes_of(image) if pid != runtime]
    watchdog = next(pid for pid in others if parent_of(pid) in others)
    return parent_of(watchdog), watchdog


def fusermount3_before_3_15() -> bool:
    version = subprocess.run(["fusermount3", "-V"], capture_output=True, text=True).stdout.split()[-1]
    return tuple(map(int, version.split(".")[:2])) < (3, 15)


def assert_next_run_recovers(image: Path, env: dict[str, str], desktop, prefix, uid: int, directory: Path) -> None:
    """The next run clears what the dead server left (socket, mount point) and mounts afresh."""
    again = run(image, env={**env, "APPIMAGE_MOUNT_LINGER": "1"}, prefix=prefix)
    assert Path(appdir_of(again)).parent == user_dir(directory, uid)
    assert mounts_gone(str(directory), table=desktop.table)
    assert eventually(lambda: only_lock_files(user_dir(directory, uid)))
    assert [suffix(name) for name in os.listdir(user_dir(directory, uid))] == ["lock"]


@pytest.mark.parametrize("killed", ["server", "everything"])
@pytest.mark.parametrize("user", ["root", "nobody"])
def test_killed_processes_leave_no_mount_and_the_next_run_recovers(appimage, tmpdir_env, world_readable_dir,
                                                                  desktop, user, killed):
    """SIGKILL to the server (its watchdog unmounts), or to every process of the AppImage and the app
    (then fusermount's auto_unmount does)."""
    if shutil.which("fusermount3") is None:
        pytest.skip("needs fusermount3")
    if killed == "everything" and user == "nobody" and fusermount3_before_3_15():
        pytest.skip("fusermount3 < 3.15 cannot auto-unmount an ordinary user's dead server (fixed in 3.15)")
    image = Path(shutil.copy2(appimage, world_readable_dir / appimage.name))
    env = {**tmpdir_env, "TMPDIR": str(world_readable_dir), "APPIMAGE_MOUNT_LINGER": "60"}
    prefix, uid = (desktop.prefix, NOBODY) if user == "nobody" else (desktop.prefix[:2], 0)
    process, app = start(image, env, prefix)
    assert len(desktop.mounts_under(world_readable_dir)) == 1
    server, watchdog = server_and_watchdog(image, process.pid)
    for pid in [server] if killed == "server" else [server, watchdog, process.pid, app]:
        os.kill(pid, signal.SIGKILL)
    assert mounts_gone(str(world_readable_dir), timeout=10, table=desktop.table)
    if killed == "server":
        os.kill(app, signal.SIGTERM)
    process.wait(timeout=TIMEOUT)
    assert_next_run_recovers(image, env, desktop, prefix, uid, world_readable_dir)
