"""The glibc floor: what a system provides (read from its libraries, checked against glibc's and
readelf's own answers), and the runtime's one-line refusal below an AppImage's floor."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from release import appdir, appimage, floor
from squashfs_craft import corrupt_index, entry_name_at, mksquashfs, set_fields
from test_appimage_format import build_appimage, make_appdir, runtime  # noqa: F401
from test_runtime_hostile import appimage_of, sanitized_runtime, tiny_tree  # noqa: F401

HOST_LIBSTDCXX = Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")


def test_this_machines_glibc_is_what_glibc_says():
    expected = subprocess.run(["getconf", "GNU_LIBC_VERSION"], capture_output=True, text=True,
                              check=True).stdout.split()[1]
    assert floor.system_floor(Path("/"), "x86_64").glibc == expected


def test_this_machines_libstdcxx_is_readelfs_newest_glibcxx():
    text = subprocess.run(["readelf", "-V", "-W", str(HOST_LIBSTDCXX.resolve())], capture_output=True,
                          text=True, check=True).stdout
    defined = re.findall(r"Rev: 1\s+Flags: none\s+Index: \d+\s+Cnt: \d+\s+Name: GLIBCXX_([0-9.]+)", text)
    assert floor.system_floor(Path("/"), "x86_64").glibcxx == floor.highest(defined)


def fake_root(root: Path, banner: bytes) -> Path:
    """A Debian-like tree: libc.so.6 behind the usrmerge symlink and an absolute soname symlink."""
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    (root / "usr/lib/x86_64-linux-gnu/libc-2.99.so").write_bytes(b"\x7fELF junk " + banner + b"\n more")
    (root / "usr/lib/x86_64-linux-gnu/libc.so.6").symlink_to("/usr/lib/x86_64-linux-gnu/libc-2.99.so")
    return root


def test_a_roots_glibc_is_read_inside_the_root(tmp_path):
    """Absolute symlinks resolve inside the root, never to this machine's own files."""
    root = fake_root(tmp_path, b"GNU C Library (Debian GLIBC 2.28-10) stable release version 2.28.")
    assert floor.system_floor(root, "x86_64") == floor.Floor(glibc="2.28", glibcxx="")


def test_a_libc_without_banner_gives_no_version(tmp_path):
    root = fake_root(tmp_path, b"no banner here")
    assert floor.system_floor(root, "x86_64").glibc == ""


@pytest.mark.parametrize("needed, provided, too_new", [
    ("2.34", "2.31", True), ("2.31", "2.31", False), ("2.30", "2.31", False), ("3.4.29", "3.4.28", True),
    ("2.4", "2.31", False), ("2.10", "2.9", True), ("", "2.31", False), ("2.34", "", False)])
def test_newer_compares_versions_numerically(needed, provided, too_new):
    assert floor.newer(needed, provided) is too_new


# --- the runtime's check (release/runtime/floor.c) ----------------------------------------------------

def glibc_here() -> str:
    return subprocess.run(["getconf", "GNU_LIBC_VERSION"], capture_output=True, text=True).stdout.split()[1]


def image_with_floor(runtime: Path, tmp_path: Path, floor_line: str | None) -> Path:  # noqa: F811
    tree = make_appdir(tmp_path / "AppDir", b"model")
    if floor_line is not None:
        appdir.write_floor(tree, *floor_line.split())
    return build_appimage(runtime, tree, tmp_path / "Floor-x86_64.AppImage")


def run(image: Path, *args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    scrubbed = {k: v for k, v in os.environ.items() if not k.startswith("APPIMAGE")}
    return subprocess.run([str(image), *args], capture_output=True, text=True, timeout=30, cwd=tmp_path,
                          env={**scrubbed, "TMPDIR": str(tmp_path), **env})


@pytest.mark.parametrize("how", [(), ("--appimage-extract-and-run",), ("APPIMAGE_EXTRACT_AND_RUN",)])
@pytest.mark.parametrize("needed", ["9.99", "3.0"])
def test_below_the_floor_one_line_and_exit_1_before_mounting_or_extracting(runtime, tmp_path, how, needed):  # noqa: F811
    image = image_with_floor(runtime, tmp_path, f"tea-demo {needed}")
    env = {"APPIMAGE_EXTRACT_AND_RUN": "1"} if how == ("APPIMAGE_EXTRACT_AND_RUN",) else {}
    args = () if env else how
    done = run(image, *args, "--version", tmp_path=tmp_path, **env)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"tea-demo needs glibc >= {needed}; this system has {glibc_here()}\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".mount_", "appimage"))]


def image_with_floor_text(runtime: Path, tmp_path: Path, text: str) -> Path:  # noqa: F811
    tree = make_appdir(tmp_path / "AppDir", b"model")
    (tree / appimage.FLOOR_FILE).parent.mkdir()
    (tree / appimage.FLOOR_FILE).write_text(text)
    return build_appimage(runtime, tree, tmp_path / "Floor-x86_64.AppImage")


@pytest.mark.parametrize("version", [glibc_here(), "2.4"])
def test_at_or_above_the_floor_the_app_runs(runtime, tmp_path, version):  # noqa: F811
    done = run(image_with_floor(runtime, tmp_path, f"tea-demo {version}"), tmp_path=tmp_path)
    assert done.returncode == 0 and "APPDIR=" in done.stdout, done.stderr


@pytest.mark.parametrize("text", ["only-one-field\n", "tea-demo x.y\n", "tea-demo 2\n", ""])
def test_an_unreadable_floor_is_not_a_refusal(runtime, tmp_path, text):  # noqa: F811
    done = run(image_with_floor_text(runtime, tmp_path, text), tmp_path=tmp_path)
    assert done.returncode == 0 and "APPDIR=" in done.stdout, done.stderr


def test_without_a_floor_file_the_app_runs(runtime, tmp_path):  # noqa: F811
    done = run(image_with_floor(runtime, tmp_path, None), tmp_path=tmp_path)
    assert done.returncode == 0 and "APPDIR=" in done.stdout, done.stderr


def test_a_minor_version_is_compared_as_a_number(runtime, tmp_path):  # noqa: F811
    major, minor = glibc_here().split(".")
    done = run(image_with_floor(runtime, tmp_path, f"tea-demo {major}.{int(minor) + 1}"), tmp_path=tmp_path)
    assert done.returncode == 1 and f"needs glibc >= {major}.{int(minor) + 1};" in done.stderr


@pytest.mark.parametrize("option", ["--appimage-version", "--appimage-offset", "--appimage-help"])
def test_information_options_work_below_the_floor(runtime, tmp_path, option):  # noqa: F811
    done = run(image_with_floor(runtime, tmp_path, "tea-demo 9.99"), option, tmp_path=tmp_path)
    assert done.returncode == 0 and done.stdout and not done.stderr


def test_extract_works_below_the_floor_and_gives_the_floor_file(runtime, tmp_path):  # noqa: F811
    image = image_with_floor(runtime, tmp_path, "tea-demo 9.99")
    done = run(image, "--appimage-extract", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "squashfs-root" / appimage.FLOOR_FILE).read_text() == "tea-demo 9.99\n"
    assert appimage.glibc_floor(image) == ("tea-demo", "9.99")


def test_glibc_floor_of_an_image_without_one_is_empty(runtime, tmp_path):  # noqa: F811
    assert appimage.glibc_floor(image_with_floor(runtime, tmp_path, None)) == ("", "")


def test_our_runtime_is_known_to_check_the_floor_and_a_bare_elf_is_not(runtime, tmp_path):  # noqa: F811
    assert appimage.runtime_checks_floor(image_with_floor(runtime, tmp_path, None))
    other = tmp_path / "other.AppImage"
    other.write_bytes(Path("/bin/true").read_bytes() + b"\0" * 64 + appimage.FLOOR_FILE.encode())
    assert not appimage.runtime_checks_floor(other)  # the name after the ELF part is not the runtime's


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chroot")
def test_a_system_without_glibc_is_not_refused(runtime, tmp_path):  # noqa: F811
    """No libc.so.6 to read (a musl system, say): the runtime does not guess, it runs AppRun."""
    image = image_with_floor(runtime, tmp_path, "tea-demo 9.99")
    jail = tmp_path / "jail"
    (jail / "bin").mkdir(parents=True)
    (jail / "proc").mkdir()
    shutil.copy2(image, jail / "app")
    done = subprocess.run(["unshare", "--mount", "--fork", "sh", "-c",
                           f"mount -t proc proc {jail}/proc && chroot {jail} /app --appimage-extract-and-run"],
                          capture_output=True, text=True, timeout=30, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR": "/"})
    assert "needs glibc" not in done.stderr
    assert "AppRun" in done.stderr  # got as far as starting AppRun (which needs a /bin/sh this jail lacks)


# --- the floor check against hostile images (issue 24's N2) ------------------------------------------
# The floor is read on every plain run and extract-and-run, so it must come after image_check and
# read the image with the same guards as everything else. The runtime here is the AddressSanitizer
# build (test_runtime_hostile.sanitized_runtime), and each image carries a floor file.

FLOOR_PATHS = {"run": ((), {}), "extract-and-run": (("--appimage-extract-and-run",), {}),
               "APPIMAGE_EXTRACT_AND_RUN": ((), {"APPIMAGE_EXTRACT_AND_RUN": "1"}), "TARGET_APPIMAGE": ((), {})}


def hostile_floor_image(tmp_path: Path, case: str) -> bytearray:
    tree = tiny_tree(tmp_path / "tree")
    (tree / ".tea").mkdir()
    (tree / ".tea/glibc-floor").write_text("tea-demo 9.99\n")
    if case == "extended directory, lying index":
        for number in range(1500):
            (tree / f".tea/file-{number:05d}-with-a-name-long-enough-to-fill-blocks").write_text("")
        image = bytearray(mksquashfs(tree, tmp_path / "t.sqfs").read_bytes())
        return corrupt_index(image, b".tea", size=65537)  # names of 64 KiB + 1 bytes, as squashfuse reads them
    if case == "long name before the floor file":
        (tree / ".tea/aaa-longname").mkdir()
        for number in range(100):
            (tree / f".tea/f{number:03d}").write_text("")
        image = bytearray(mksquashfs(tree, tmp_path / "t.sqfs").read_bytes())
        at = entry_name_at(image, b"aaa-longname")
        image[at - 2:at] = (300).to_bytes(2, "little")  # a 301-byte name, no NUL or '/' in it
        image[at + 12:at + 301] = b"x" * 289
        return image
    return set_fields(bytearray(mksquashfs(tree, tmp_path / "t.sqfs").read_bytes()), block_size=0)


def run_floor_path(appimage: Path, bare_runtime: Path, path: str, tmp_path: Path) -> subprocess.CompletedProcess:
    args, extra = FLOOR_PATHS[path]
    if path == "TARGET_APPIMAGE":
        extra, appimage = {"TARGET_APPIMAGE": str(appimage)}, bare_runtime
    return run(appimage, *args, tmp_path=tmp_path, XDG_CACHE_HOME=str(tmp_path / "cache"), **extra)


@pytest.mark.parametrize("path", FLOOR_PATHS)
@pytest.mark.parametrize("case, expected", [
    ("block size 0", "appimage: bad squashfs image"),  # was SIGFPE, exit 136
    ("extended directory, lying index", "tea-demo needs glibc >= 9.99"),  # was SIGSEGV, exit 139
    ("long name before the floor file", None),  # was "*** stack smashing detected ***", exit 134
])
def test_a_hostile_image_fails_cleanly_on_every_path_that_reads_the_floor(sanitized_runtime, tmp_path, case,
                                                                          expected, path):
    """Refused in one line (a bad superblock), or the floor read right past a lying index, or an
    unreadable floor that is no refusal (or the extraction's refusal of the name): never a signal
    or a sanitizer report."""
    appimage = appimage_of(sanitized_runtime, hostile_floor_image(tmp_path, case), tmp_path / "T.AppImage")
    done = run_floor_path(appimage, sanitized_runtime, path, tmp_path)
    assert done.returncode >= 0 and "Sanitizer" not in done.stderr and "smashing" not in done.stderr, \
        done.stderr[-3000:]
    if expected:
        assert done.returncode == 1 and done.stderr.startswith(expected) and len(done.stderr.splitlines()) == 1, \
            done.stderr
    else:  # the app runs from the mount; extraction refuses the name in one line
        refused = done.stderr.startswith("appimage: squashfs image is corrupt: an unsafe entry name")
        assert (done.returncode, "APPDIR=" in done.stdout) == (0, True) or \
            (done.returncode == 1 and refused and len(done.stderr.splitlines()) == 1), done.stderr
