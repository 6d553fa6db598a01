"""Which way the runtime mounts, on clean Debian systems: with FUSE 2's fusermount only, with no
fusermount at all, as an ordinary user (/dev/fuse open to all, as on a desktop) and as root.

A FUSE-2-only system (package `fuse`: /bin/fusermount, no fusermount3) must mount, not fall back
to extracting: libfuse3 itself only knows fusermount3, the runtime speaks fusermount's protocol.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from release.rootfs import Recipe, ensure_rootfs, run_in_rootfs
from test_appimage_format import appdir, appimage, runtime  # noqa: F401
from test_rootfs import rootfs_cache, tarball  # noqa: F401
from test_runtime import reported

pytestmark = [pytest.mark.slow, pytest.mark.rootfs,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: debootstrap, unshare and chroot")]
INSIDE = "/opt/Test-x86_64.AppImage"
# As on a booted desktop: /dev/fuse open to all, and /etc/mtab (fusermount 2 unmounts through it;
# a debootstrap chroot has none).
DESKTOP_FUSE = ("umount /dev/fuse && rm /dev/fuse && mknod -m 666 /dev/fuse c 10 229 && "
                "ln -sf ../proc/self/mounts /etc/mtab")
AS_NOBODY = "setpriv --reuid=65534 --regid=65534 --clear-groups"


@pytest.fixture(scope="session")
def fuse2_tarball(rootfs_cache) -> Path:  # noqa: F811
    """A minbase system plus Debian's `fuse` package (FUSE 2)."""
    return ensure_rootfs(rootfs_cache, recipe=Recipe(("fuse",), "FUSE 2 only: fusermount, no fusermount3"))


def run_inside(tarball: Path, workdir: Path, appimage: Path, script: str, **env: str):
    """script runs as root in the clean system, the AppImage at INSIDE; its app exits with 3."""
    return run_in_rootfs(tarball, workdir, ["sh", "-c", f"{script}; echo MOUNTS=$(grep -c fuse.appimage /proc/mounts)"],
                         files={INSIDE: appimage}, fuse=True, env={"APP_EXIT": "3", **env})


@pytest.mark.parametrize("mode, mounted_in", [("0", "/tmp/.mount_Test-x86_64"),
                                              ("1", "/tmp/appimage-mounts-65534/")])
def test_fuse2_only_system_mounts_for_an_ordinary_user(fuse2_tarball, appimage, tmp_path, mode, mounted_in):
    script = (f"{DESKTOP_FUSE} && test ! -e /usr/bin/fusermount3 && test -u /bin/fusermount && "
              f"{AS_NOBODY} {INSIDE} arg; echo EXIT=$?")
    done = run_inside(fuse2_tarball, tmp_path, appimage, script, APPIMAGE_SHARED_MOUNT=mode)
    seen = reported(done.stdout)
    assert seen["EXIT"] == ["3"], done.stdout + done.stderr
    assert seen["APPDIR"][0].startswith(mounted_in) and seen["TOOL"] == ["ok"]
    assert done.stderr == ""
    if mode == "0":
        assert seen["MOUNTS"] == ["0"]


def test_without_any_fusermount_an_ordinary_user_extracts_with_one_notice(tarball, appimage, tmp_path):  # noqa: F811
    # no HOME (root's is not nobody's to write): the extraction goes to $TMPDIR without a word
    done = run_inside(tarball, tmp_path, appimage, f"{DESKTOP_FUSE} && env -u HOME {AS_NOBODY} {INSIDE}; echo EXIT=$?")
    seen = reported(done.stdout)
    assert seen["EXIT"] == ["3"] and seen["APPDIR"][0].startswith("/tmp/appimage_extracted_")
    assert done.stderr.splitlines() == ["appimage: FUSE is not available (neither fusermount3 nor fusermount is "
                                        "installed); extracting and running instead"]


def test_without_any_fusermount_root_mounts_directly(tarball, appimage, tmp_path):  # noqa: F811
    done = run_inside(tarball, tmp_path, appimage, f"{INSIDE}; echo EXIT=$?", APPIMAGE_SHARED_MOUNT="0")
    seen = reported(done.stdout)
    assert seen["EXIT"] == ["3"] and seen["APPDIR"][0].startswith("/tmp/.mount_Test-x86_64")
    assert done.stderr == "" and seen["MOUNTS"] == ["0"]
