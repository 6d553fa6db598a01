"""The runtime against hostile images and hostile neighbours (issue 13), each crafted for real.

Images are real mksquashfs output with uncompressed metadata, patched byte-wise (squashfs_craft).
Extraction runs in a directory of its own inside tmp_path, so "nothing outside the target" is
checked by listing that directory's parent. Runs that parse a hostile image use the runtime built
with AddressSanitizer, so an out-of-bounds read in squashfuse fails the test even when it would
not crash the static build. A second, unprivileged uid plays the other local user.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import struct
import subprocess
import time
from pathlib import Path

import pytest

from release.appimage import write_runtime_over
from release.runtime_build import build_runtime
from squashfs_craft import (entry_inode_offset, entry_name_at, field, mksquashfs, point_entry, rename_entry, root_entries,
                            root_inode_position, set_fields)
from test_appimage_format import runtime  # noqa: F401
from test_runtime import (TIMEOUT, eventually, extracted_trees, extraction_cache, mounts_under,  # noqa: F401
                          squashfs_sha256, tmpdir_env, world_readable_dir)

FUZZ_CRASHES = Path(__file__).with_name("fuzz_crashes")
VICTIM, ATTACKER = 65534, 65533
APPRUN = '#!/bin/sh\necho "APPDIR=$APPDIR"\necho "PID=$$"\ncat "$APPDIR/usr/share/model" 2>/dev/null\n' \
         'if [ -n "$APP_SLEEP" ]; then exec sleep "$APP_SLEEP"; fi\n'


@pytest.fixture(scope="session")
def sanitized_runtime(tmp_path_factory) -> Path:
    return build_runtime(tmp_path_factory.mktemp("asan"), arch="x86_64", sanitize=True)


def tiny_tree(root: Path, model: bytes = b"model A\n") -> Path:
    (root / "usr/share").mkdir(parents=True)
    (root / "usr/bin").mkdir()
    (root / "AppRun").write_text(APPRUN)
    (root / "AppRun").chmod(0o755)
    (root / "usr/share/model").write_bytes(model)
    return root


def appimage_of(runtime_path: Path, image: bytes | Path, out: Path) -> Path:
    """The crafted squashfs behind a runtime-sized gap, finished the packager's way."""
    building = out.with_suffix(".building")
    with building.open("wb") as handle:
        handle.truncate(runtime_path.stat().st_size)
        handle.seek(0, os.SEEK_END)
        handle.write(image.read_bytes() if isinstance(image, Path) else image)
    return write_runtime_over(runtime_path, building, out)


def crafted(tree: Path, tmp_path: Path, *options: str) -> bytearray:
    return bytearray(mksquashfs(tree, tmp_path / "plain.sqfs", *options).read_bytes())


def extract(appimage: Path, where: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(appimage), "--appimage-extract", *args], cwd=where, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


def one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    """The run failed (exit 1, no signal, no sanitizer report) with one line holding each word."""
    lines = result.stderr.splitlines()
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("appimage: "), result.stderr[-3000:]
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


def entries(directory: Path) -> list[str]:
    return sorted(str(path.relative_to(directory)) for path in directory.rglob("*"))


# ------------------------------------------------------------------------------------------------
# 2, 13: names, symlinks, modes


@pytest.mark.parametrize("old, new", [
    (b"escape-me-now-please", b"../../../../escaped!"),  # the traversal
    (b"Q", b"."), (b"QQ", b".."), (b"QQQ", b"a/b"), (b"QQQ", b".\0."),
])
def test_unsafe_entry_names_stop_the_extraction(sanitized_runtime, tmp_path, tmpdir_env, old, new):
    tree = tiny_tree(tmp_path / "tree")
    (tree / "usr" / old.decode()).mkdir()
    image = appimage_of(sanitized_runtime, rename_entry(crafted(tree, tmp_path), old, new),
                        tmp_path / "T.AppImage")
    work = tmp_path / "a" / "b" / "c" / "work"
    one_line(extract(image, work, tmpdir_env), "unsafe entry name")
    chain = [os.listdir(directory) for directory in (tmp_path / "a", tmp_path / "a/b", tmp_path / "a/b/c")]
    assert chain == [["b"], ["c"], ["work"]] and os.listdir(work) == ["squashfs-root"]
    assert sorted(os.listdir(work / "squashfs-root")) == ["AppRun", "usr"]


def long_name_image(tmp_path: Path) -> bytearray:
    """A directory whose entry name is 301 bytes long (test_a_name_longer_than_squashfs_allows_is_refused)."""
    tree = tiny_tree(tmp_path / "tree")
    (tree / "usr/aaa-longname").mkdir()
    for number in range(100):
        (tree / f"usr/f{number:03d}").write_text("")
    image = crafted(tree, tmp_path)
    at = entry_name_at(image, b"aaa-longname")
    image[at - 2:at] = (300).to_bytes(2, "little")  # the entry's name size field holds size - 1
    image[at + 12:at + 301] = b"x" * 289
    return image


def test_a_name_longer_than_squashfs_allows_is_refused(sanitized_runtime, tmp_path, tmpdir_env):
    """The size field allows 64 KiB names and squashfuse reads them whole: a 301-byte name, with no
    NUL or '/' in it (the entries after it overwritten), must neither overflow a buffer nor pass."""
    appimage = appimage_of(sanitized_runtime, long_name_image(tmp_path), tmp_path / "T.AppImage")
    one_line(extract(appimage, tmp_path / "work", tmpdir_env), "unsafe entry name")


def test_symlink_and_directory_of_one_name_cannot_redirect_writes(sanitized_runtime, tmp_path, tmpdir_env):
    """The issue's second finding: a symlink `aa` to a directory outside, then a directory `aa`
    with a file in it. The file must not land behind the symlink, nor may any mode change there."""
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    tree = tiny_tree(tmp_path / "tree")
    (tree / "aa").symlink_to(outside)
    (tree / "ab").mkdir(mode=0o777)
    (tree / "ab/planted").write_text("planted\n")
    image = appimage_of(sanitized_runtime, rename_entry(crafted(tree, tmp_path), b"ab", b"aa"),
                        tmp_path / "T.AppImage")
    work = tmp_path / "work"
    result = extract(image, work, tmpdir_env)
    one_line(result, "cannot open directory", "/aa")
    assert os.listdir(outside) == [] and stat.S_IMODE(outside.stat().st_mode) == 0o755
    assert stat.S_IMODE(work.stat().st_mode) == 0o755


def test_a_planted_squashfs_root_symlink_is_not_followed(runtime, tmp_path, tmpdir_env):
    image = appimage_of(runtime, mksquashfs(tiny_tree(tmp_path / "tree"), tmp_path / "t.sqfs"), tmp_path / "T.AppImage")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "work/squashfs-root").symlink_to(tmp_path / "elsewhere")
    one_line(extract(image, tmp_path / "work", tmpdir_env), "cannot open squashfs-root")
    assert os.listdir(tmp_path / "elsewhere") == []


def test_setuid_and_setgid_bits_are_dropped(runtime, tmp_path, tmpdir_env):
    tree = tiny_tree(tmp_path / "tree")
    (tree / "usr/bin/suid").write_text("#!/bin/sh\n")
    (tree / "usr/bin/suid").chmod(0o6755)
    (tree / "usr/shared").mkdir()
    (tree / "usr/shared").chmod(0o3775)
    image = appimage_of(runtime, mksquashfs(tree, tmp_path / "t.sqfs"), tmp_path / "T.AppImage")
    assert extract(image, tmp_path / "work", tmpdir_env).returncode == 0
    root = tmp_path / "work/squashfs-root"
    assert stat.S_IMODE((root / "usr/bin/suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "usr/shared").stat().st_mode) == 0o1775  # sticky stays


def test_re_extraction_replaces_files_instead_of_writing_through_them(runtime, tmp_path, tmpdir_env):
    """An existing tree: a longer file must not keep a stale tail, a hard link to a file elsewhere
    must not be written through, a symlink where a directory goes must not be followed."""
    tree = tiny_tree(tmp_path / "tree")
    (tree / "usr/zz").mkdir()
    (tree / "usr/zz/file").write_text("zz\n")
    image = appimage_of(runtime, mksquashfs(tree, tmp_path / "t.sqfs"), tmp_path / "T.AppImage")
    root = tmp_path / "work/squashfs-root"
    (root / "usr/share").mkdir(parents=True)
    (root / "usr/share/model").write_text("a much longer stale model file\n" * 10)
    victim, elsewhere = tmp_path / "victim", tmp_path / "elsewhere"
    victim.write_text("precious\n")
    os.link(victim, root / "AppRun")
    elsewhere.mkdir()
    (root / "usr/zz").symlink_to(elsewhere)
    one_line(extract(image, tmp_path / "work", tmpdir_env), "cannot open directory /usr/zz")
    assert (root / "usr/share/model").read_bytes() == b"model A\n"
    assert (root / "AppRun").read_text() == APPRUN and victim.read_text() == "precious\n"
    assert os.listdir(elsewhere) == []


def hard_linked_tree(root: Path, links: int) -> Path:
    """One 1 MiB file under many names, across directories: one inode in the image."""
    tree = tiny_tree(root)
    (tree / "usr/share/big").write_bytes(os.urandom(1 << 20))
    for number in range(links):
        os.link(tree / "usr/share/big", tree / ("usr/bin" if number % 2 else "usr/share") / f"link{number:03d}")
    return tree


def test_hard_links_are_extracted_as_links(runtime, tmp_path, tmpdir_env):
    """Issue 24's N11: a small image of one file with many names extracted to a copy per name
    (12 KiB image, 1.6 GB on disk); unsquashfs makes links. So does the runtime now."""
    appimage = appimage_of(runtime, mksquashfs(hard_linked_tree(tmp_path / "tree", 100), tmp_path / "t.sqfs"),
                           tmp_path / "T.AppImage")
    assert extract(appimage, tmp_path / "work", tmpdir_env).returncode == 0
    root = tmp_path / "work/squashfs-root"
    names = [root / "usr/share/big", *root.glob("usr/*/link*")]
    assert len(names) == 101 and {path.stat().st_ino for path in names} == {names[0].stat().st_ino}
    assert names[0].stat().st_nlink == 101 and names[-1].read_bytes() == (tmp_path / "tree/usr/share/big").read_bytes()
    used = subprocess.run(["du", "-sk", str(root)], capture_output=True, text=True).stdout.split()[0]
    assert int(used) < 2048  # KiB: one copy of the 1 MiB file


def test_a_hard_link_whose_first_name_is_not_extracted_is_a_file(runtime, tmp_path, tmpdir_env):
    """With a pattern, the first name extracted is the first copy; links follow it."""
    appimage = appimage_of(runtime, mksquashfs(hard_linked_tree(tmp_path / "tree", 4), tmp_path / "t.sqfs"),
                           tmp_path / "T.AppImage")
    assert extract(appimage, tmp_path / "work", tmpdir_env, "usr/bin").returncode == 0
    root = tmp_path / "work/squashfs-root"
    assert sorted(os.listdir(root / "usr/bin")) == ["link001", "link003"] and not (root / "usr/share").exists()
    assert (root / "usr/bin/link001").stat().st_ino == (root / "usr/bin/link003").stat().st_ino
    assert (root / "usr/bin/link001").stat().st_size == 1 << 20


def test_hard_links_in_the_extract_and_run_cache_are_links(runtime, tmp_path, tmpdir_env):
    appimage = appimage_of(runtime, mksquashfs(hard_linked_tree(tmp_path / "tree", 40), tmp_path / "t.sqfs"),
                           tmp_path / "T.AppImage")
    env = {**tmpdir_env, "APPIMAGE_EXTRACT_AND_RUN": "1", "NO_CLEANUP": "1"}
    assert subprocess.run([str(appimage)], env=env, capture_output=True, timeout=TIMEOUT).returncode == 0
    tree_dir = extraction_cache(env) / f"extracted_{squashfs_sha256(appimage)}"
    assert (tree_dir / "usr/share/big").stat().st_nlink == 41


# ------------------------------------------------------------------------------------------------
# 3: loops, shared directories, depth


def test_directory_loop_is_corruption_not_a_disk_filler(sanitized_runtime, tmp_path, tmpdir_env):
    """A directory entry that points back at the root (one flipped reference)."""
    tree = tiny_tree(tmp_path / "tree")
    (tree / "usr/loopme").mkdir()
    image = crafted(tree, tmp_path)
    root_offset = field(image, "root_inode") & 0xFFFF
    appimage = appimage_of(sanitized_runtime, point_entry(image, b"loopme", root_offset), tmp_path / "T.AppImage")
    one_line(extract(appimage, tmp_path / "work", tmpdir_env), "appears twice", "/usr/loopme")
    assert len(entries(tmp_path / "work")) < 10


def test_one_directory_reached_twice_is_corruption(sanitized_runtime, tmp_path, tmpdir_env):
    """Two entries sharing one directory inode: a DAG doubles the tree at every level."""
    tree = tiny_tree(tmp_path / "tree")
    (tree / "usr/one").mkdir()
    (tree / "usr/two").mkdir()
    image = crafted(tree, tmp_path)
    appimage = appimage_of(sanitized_runtime, point_entry(image, b"two", entry_inode_offset(image, b"one")),
                           tmp_path / "T.AppImage")
    one_line(extract(appimage, tmp_path / "work", tmpdir_env), "appears twice", "/usr/two")


MAX_DEPTH = 128  # release/runtime/extract.c


@pytest.mark.parametrize("levels", [MAX_DEPTH, MAX_DEPTH + 1])
def test_nesting_is_capped_at_exactly_max_depth(runtime, tmp_path, tmpdir_env, levels):
    """Issue 30's R8: the cap itself extracts, one level more is refused (a test of 130 levels
    let the cap be off by one either way)."""
    tree = tiny_tree(tmp_path / "tree")
    deep = tree.joinpath(*["d"] * levels)
    deep.mkdir(parents=True)
    (deep / "bottom").write_text("deep\n")
    appimage = appimage_of(runtime, mksquashfs(tree, tmp_path / "t.sqfs"), tmp_path / "T.AppImage")
    result = extract(appimage, tmp_path / "work", tmpdir_env)
    if levels == MAX_DEPTH:
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "work/squashfs-root").joinpath(*["d"] * levels, "bottom").read_text() == "deep\n"
    else:
        one_line(result, "nest too deep")


# ------------------------------------------------------------------------------------------------
# 4, 12: superblocks and tables


SUPERBLOCKS = {
    "block size 0": {"block_size": 0},
    "block size not a power of two": {"block_size": 3 << 12},
    "block size past 1 MiB": {"block_size": 1 << 21, "block_log": 21},
    "block size below 4 KiB": {"block_size": 1 << 11, "block_log": 11},
    "block_log disagrees": {"block_log": 16},
    "no ids": {"no_ids": 0},
    "no inodes": {"inodes": 0},
    "tables out of order": {"directory_table": 100},
    "id table past the end": {"id_table": 1 << 40},
    "fragment table past the end": {"fragment_table": 1 << 40},
    "export table past the end": {"lookup_table": 1 << 40},
    "root inode outside the inode table": {"root_inode": 1 << 32},
}


@pytest.mark.parametrize("mode", [(), ("--appimage-extract",), ("--appimage-extract-and-run",)])
@pytest.mark.parametrize("case", sorted(SUPERBLOCKS))
def test_crafted_superblocks_fail_with_one_line(sanitized_runtime, tmp_path, tmpdir_env, case, mode):
    image = set_fields(crafted(tiny_tree(tmp_path / "tree"), tmp_path), **SUPERBLOCKS[case])
    appimage = appimage_of(sanitized_runtime, image, tmp_path / "T.AppImage")
    result = subprocess.run([str(appimage), *mode], cwd=tmp_path, env=tmpdir_env, capture_output=True,
                            text=True, timeout=TIMEOUT)
    one_line(result, "bad squashfs image")
    assert not (tmp_path / "squashfs-root").exists()
    assert mounts_under(tmpdir_env["TMPDIR"]) == [] and os.listdir(tmpdir_env["TMPDIR"]) == []


TABLES = {"id_table": "uid/gid", "fragment_table": "fragment", "lookup_table": "export", "xattr_table": "xattr"}


@pytest.mark.parametrize("where", ["at the inode table", "inside the inode table", "at the directory table"])
@pytest.mark.parametrize("table", sorted(TABLES))
def test_a_table_placed_before_the_directory_tables_end_is_refused(sanitized_runtime, tmp_path, tmpdir_env,
                                                                   table, where):
    """Issue 30's R7: every other table lies after the directory table; one at or before its start
    overlaps the inode or directory metadata that squashfuse would then read as that table."""
    image = crafted(tiny_tree(tmp_path / "tree"), tmp_path)
    position = {"at the inode table": field(image, "inode_table"), "inside the inode table":
                field(image, "inode_table") + 8, "at the directory table": field(image, "directory_table")}[where]
    appimage = appimage_of(sanitized_runtime, set_fields(image, **{table: position}), tmp_path / "T.AppImage")
    one_line(extract(appimage, tmp_path / "work", tmpdir_env),
             f"bad squashfs image at offset {sanitized_runtime.stat().st_size}",
             f"its {TABLES[table]} table lies outside the image")


def fragment_index_image(tmp_path: Path, past: int) -> bytearray:
    """AppRun's fragment index set `past` entries beyond the last one of the fragment table."""
    image = crafted(tiny_tree(tmp_path / "tree"), tmp_path)
    inode = root_entries(image)[b"AppRun"]
    assert struct.unpack_from("<H", image, inode)[0] == 2  # a basic file inode: fragment index at +20
    struct.pack_into("<I", image, inode + 20, field(image, "fragments") - 1 + past)
    return image


@pytest.mark.parametrize("past", [1, 1000])
def test_a_fragment_index_past_the_fragment_table_is_corrupt(sanitized_runtime, tmp_path, tmpdir_env, past):
    """Issue 30: guard.c's fragment-index bound. Index == fragments reads the 16 bytes after the
    table's last entry, inside or past its metadata block (AddressSanitizer sees either)."""
    appimage = appimage_of(sanitized_runtime, fragment_index_image(tmp_path, past), tmp_path / "T.AppImage")
    one_line(extract(appimage, tmp_path / "work", tmpdir_env), "corrupt", "fragment", "/AppRun")
    process = subprocess.Popen([str(appimage), "--appimage-mount"], env=tmpdir_env, stdout=subprocess.PIPE, text=True)
    point = Path(process.stdout.readline().strip())
    try:
        with pytest.raises(OSError) as raised:
            (point / "AppRun").read_bytes()
        assert raised.value.errno == errno.EIO and (point / "usr/share/model").read_bytes() == b"model A\n"
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT)


def test_fragment_outside_the_image_says_corrupt_not_a_stale_errno(sanitized_runtime, tmp_path, tmpdir_env):
    """The issue's finding 12: this used to print "No such file or directory"."""
    image = crafted(tiny_tree(tmp_path / "tree"), tmp_path)
    block = int.from_bytes(image[field(image, "fragment_table"):][:8], "little")
    assert image[block + 1] & 0x80  # an uncompressed metadata block: fragment entry 0 follows its header
    image[block + 2:block + 10] = (1 << 40).to_bytes(8, "little")
    appimage = appimage_of(sanitized_runtime, image, tmp_path / "T.AppImage")
    line = one_line(extract(appimage, tmp_path / "work", tmpdir_env), "corrupt", "fragment")
    assert "No such file" not in line


def listing_past_its_block_image(tmp_path: Path) -> bytearray:
    """The root directory's listing starts past its metadata block."""
    image = crafted(tiny_tree(tmp_path / "tree"), tmp_path)
    listing_offset = root_inode_position(image) + 26  # a basic directory inode's offset field
    image[listing_offset:listing_offset + 2] = (0xFFF0).to_bytes(2, "little")
    return image


def test_directory_listing_past_its_metadata_block_is_corrupt(sanitized_runtime, tmp_path, tmpdir_env):
    appimage = appimage_of(sanitized_runtime, listing_past_its_block_image(tmp_path), tmp_path / "T.AppImage")
    one_line(extract(appimage, tmp_path / "work", tmpdir_env), "corrupt", "directory cannot be read")


def test_two_files_with_one_inode_number_are_corrupt(sanitized_runtime, tmp_path, tmpdir_env):
    """squashfuse caches a big file's block index by inode number: B would be read through A's."""
    tree = tiny_tree(tmp_path / "tree")
    (tree / "aaaa").write_bytes(b"\x01" * (9 << 20))
    (tree / "bbbb").write_bytes(b"\x02" * (20 << 20))
    image = crafted(tree, tmp_path, "-b", "4096")
    inodes = root_entries(image)
    a, b = inodes[b"aaaa"] + 12, inodes[b"bbbb"] + 12  # the inode number field
    image[b:b + 4] = image[a:a + 4]
    appimage = appimage_of(sanitized_runtime, image, tmp_path / "T.AppImage")
    one_line(extract(appimage, tmp_path / "work", tmpdir_env), "two files share an inode number", "/bbbb")


ENTRY_PATHS = {  # every way a run reads its image but the mount's walk (the next test): args, environment
    "extract": (("--appimage-extract",), {}), "extract-pattern": (("--appimage-extract", "*/*"), {}),
    "run": ((), {}), "private-mount-run": ((), {"APPIMAGE_SHARED_MOUNT": "0"}),
    "extract-and-run": (("--appimage-extract-and-run",), {"NO_CLEANUP": "1"}),
    "APPIMAGE_EXTRACT_AND_RUN": ((), {"APPIMAGE_EXTRACT_AND_RUN": "1"}),
    "TARGET_APPIMAGE": ((), {}), "offset": (("--appimage-offset",), {}),
    "signature": (("--appimage-signature",), {}), "updateinfo": (("--appimage-updateinfo",), {}),
}


@pytest.mark.parametrize("path", ENTRY_PATHS)
@pytest.mark.parametrize("crash", sorted(FUZZ_CRASHES.glob("*.sqfs")), ids=lambda path: path.stem)
def test_images_the_fuzzer_found_fail_cleanly(sanitized_runtime, tmp_path, tmpdir_env, crash, path):
    """Each crash benchmarks/fuzz_runtime.py found, through each entry path: at most one line of
    the runtime's, no signal, no sanitizer report, nothing written outside the target."""
    appimage = appimage_of(sanitized_runtime, crash, tmp_path / "T.AppImage")
    args, extra = ENTRY_PATHS[path]
    env = {**tmpdir_env, **extra, "XDG_CACHE_HOME": str(tmp_path / "cache"), "APP_SLEEP": ""}
    if path == "TARGET_APPIMAGE":
        env["TARGET_APPIMAGE"], appimage = str(appimage), sanitized_runtime
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run([str(appimage), *args], cwd=work, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode >= 0 and "Sanitizer" not in result.stderr, result.stderr[-3000:]
    runtime_lines = [line for line in result.stderr.splitlines() if line.startswith("appimage: ")]
    assert len(runtime_lines) <= 1 and "smashing" not in result.stderr, result.stderr[-3000:]
    assert os.listdir(work) in ([], ["squashfs-root"])
    assert eventually(lambda: mounts_under(tmpdir_env["TMPDIR"]) == [])


def read_everything(point: Path) -> set[int]:
    """Walk the mount and read every file; the errnos met on the way."""
    errors: set[int] = set()
    for directory, _, files in os.walk(point, onerror=lambda error: errors.add(error.errno)):
        for name in files:
            try:
                Path(directory, name).read_bytes()
            except OSError as error:
                errors.add(error.errno)
    return errors


CRAFTED = {"long-name": long_name_image, "listing-past-its-block": listing_past_its_block_image}


@pytest.mark.parametrize("crash", [*sorted(FUZZ_CRASHES.glob("*.sqfs")), *CRAFTED],
                         ids=lambda crash: getattr(crash, "stem", crash))
def test_hostile_images_mounted_answer_eio_and_the_server_lives(sanitized_runtime, tmp_path, tmpdir_env, crash):
    """Through FUSE (fs.c) the same guards as extraction: a bad part of the image is EIO, never a
    crash of the server (the mount would answer ENOTCONN) nor a sanitizer report."""
    image = CRAFTED[crash](tmp_path) if crash in CRAFTED else crash
    appimage = appimage_of(sanitized_runtime, image, tmp_path / "T.AppImage")
    process = subprocess.Popen([str(appimage), "--appimage-mount"], env=tmpdir_env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    point = process.stdout.readline().strip()
    if not point:  # refused before mounting (image_check): one line
        assert process.wait(timeout=TIMEOUT) == 1 and len(process.stderr.read().splitlines()) == 1
        return
    try:
        assert read_everything(Path(point)) <= {errno.EIO}
        assert len(mounts_under(tmpdir_env["TMPDIR"])) == 1 and process.poll() is None
        assert os.stat(point).st_ino == 1  # the server still answers (a dead one: ENOTCONN)
    finally:
        process.terminate()
        process.wait(timeout=TIMEOUT)


needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root and setpriv")


@needs_root
def test_a_dead_fuse_server_leaves_no_mount(runtime, tmp_path, tmpdir_env):
    """As root there is no fusermount auto_unmount: the runtime itself must lazily unmount. A private
    mount, whose server is the runtime's child (a shared one: test_shared_mount.py's killed server)."""
    appimage = appimage_of(runtime, mksquashfs(tiny_tree(tmp_path / "tree"), tmp_path / "t.sqfs"),
                           tmp_path / "T.AppImage")
    process = subprocess.Popen([str(appimage)], env={**tmpdir_env, "APP_SLEEP": "60", "APPIMAGE_SHARED_MOUNT": "0"},
                               stdout=subprocess.PIPE, text=True)
    app = int(next(line for line in process.stdout if line.startswith("PID="))[4:])
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    server = next(int(pid) for pid in children if int(pid) != app)
    assert len(mounts_under(tmpdir_env["TMPDIR"])) == 1
    os.kill(server, signal.SIGKILL)
    # the server's watchdog unmounts at once, while the application still runs
    assert eventually(lambda: mounts_under(tmpdir_env["TMPDIR"]) == [])
    assert process.poll() is None
    os.kill(app, signal.SIGTERM)
    process.wait(timeout=TIMEOUT)
    assert mounts_under(tmpdir_env["TMPDIR"]) == [] and os.listdir(tmpdir_env["TMPDIR"]) == []


# ------------------------------------------------------------------------------------------------
# 1, 10, 11: the extract-and-run cache


def image_with_model(runtime_path: Path, tmp_path: Path, name: str, model: bytes) -> Path:
    tree = tiny_tree(tmp_path / f"tree-{name}", model)
    appimage = appimage_of(runtime_path, mksquashfs(tree, tmp_path / f"{name}-tree.sqfs"), tmp_path / f"{name}.AppImage")
    os.utime(appimage, (1_700_000_000, 1_700_000_000))
    return appimage


def test_same_size_same_mtime_images_do_not_share_a_cache(runtime, tmp_path, tmpdir_env):
    """The issue's finding 11: B must run B's model, not A's cached one."""
    env = {**tmpdir_env, "APPIMAGE_EXTRACT_AND_RUN": "1", "NO_CLEANUP": "1"}
    a = image_with_model(runtime, tmp_path, "A", b"model A\n")
    b = image_with_model(runtime, tmp_path, "B", b"model B\n")
    assert a.stat().st_size == b.stat().st_size
    first = subprocess.run([str(a)], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    second = subprocess.run([str(b)], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert "model A" in first.stdout and "model B" in second.stdout, second.stdout
    assert extracted_trees(env) == sorted(
        f"extracted_{squashfs_sha256(image)}" for image in (a, b))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_the_first_extraction_leaves_nothing(runtime, tmp_path, tmpdir_env, sig):
    tree = tiny_tree(tmp_path / "tree", b"\x01" * (512 << 20))
    appimage = appimage_of(runtime, mksquashfs(tree, tmp_path / "t.sqfs"), tmp_path / "T.AppImage")
    env = {**tmpdir_env, "APPIMAGE_EXTRACT_AND_RUN": "1", "NO_CLEANUP": "1"}
    cache = extraction_cache(env)
    process = subprocess.Popen([str(appimage)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT
    while not list(cache.glob("extracted_*/usr/share/model")) and time.monotonic() < deadline:
        time.sleep(0.001)
    process.send_signal(sig)
    assert process.wait(timeout=TIMEOUT) == -sig
    assert extracted_trees(env) == [] and process.stdout.read() == b""


def partial_trees(cache: Path) -> list[str]:
    return sorted(name for name in os.listdir(cache) if name.startswith("extracted_") and "." in name)


def killed_mid_extraction(appimage: Path, env: dict) -> str:
    """Starts an extraction of appimage and SIGKILLs it half-way: the tree it leaves behind."""
    cache = extraction_cache(env)
    process = subprocess.Popen([str(appimage)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT
    while not list(cache.glob("extracted_*.*/usr/share/model")) and time.monotonic() < deadline:
        time.sleep(0.001)
    process.kill()
    assert process.wait(timeout=TIMEOUT) == -signal.SIGKILL
    left = partial_trees(cache)
    assert len(left) == 1
    return left[0]


@pytest.mark.parametrize("no_cleanup", [{}, {"NO_CLEANUP": "1"}], ids=["private", "no-cleanup"])
def test_an_extraction_killed_outright_is_reclaimed_by_the_next_run(runtime, tmp_path, tmpdir_env, no_cleanup):
    """Issue 24's N12: SIGKILL (or the OOM killer, or a power cut) gives no chance to clean up; the
    partial tree it leaves in the cache is deleted by the next extract-and-run (of any image)."""
    big = appimage_of(runtime, mksquashfs(tiny_tree(tmp_path / "tree", b"\x01" * (256 << 20)), tmp_path / "t.sqfs"),
                      tmp_path / "Big.AppImage")
    env = {**tmpdir_env, "APPIMAGE_EXTRACT_AND_RUN": "1", **no_cleanup}
    killed_mid_extraction(big, env)
    small = image_with_model(runtime, tmp_path, "S", b"model S\n")
    result = subprocess.run([str(small)], env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0 and "model S" in result.stdout, result.stderr
    assert partial_trees(extraction_cache(env)) == []


def test_a_running_extraction_is_never_reclaimed(runtime, tmp_path, tmpdir_env):
    """A run that is still using its private tree holds it: another run leaves it alone."""
    appimage = image_with_model(runtime, tmp_path, "A", b"model A\n")
    env = {**tmpdir_env, "APPIMAGE_EXTRACT_AND_RUN": "1"}
    first = subprocess.Popen([str(appimage)], env={**env, "APP_SLEEP": "60"}, stdout=subprocess.PIPE, text=True)
    appdir = first.stdout.readline().strip().partition("=")[2]
    try:
        assert Path(appdir).name in partial_trees(extraction_cache(env))
        second = subprocess.run([str(appimage)], env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert second.returncode == 0 and "model A" in second.stdout
        assert Path(appdir, "usr/share/model").read_bytes() == b"model A\n"
    finally:
        first.terminate()
        first.wait(timeout=TIMEOUT)
    assert partial_trees(extraction_cache(env)) == []


def as_user(uid: int, command: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *command],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def plant(path: Path, marker: Path, shared: Path, owner: int = ATTACKER, mode: int = 0o777) -> None:
    """A tree where the victim's cache would be, with an AppRun that leaves a mark if run; it and
    the directories above it (up to shared) get owner and mode."""
    path.mkdir(parents=True)
    (path / "AppRun").write_text(f"#!/bin/sh\ntouch {marker}\necho APPDIR=planted\n")
    (path / "AppRun").chmod(0o755)
    for item in (path / "AppRun", path, *path.parents):
        if item == shared:
            break
        os.chown(item, owner, owner)
        item.chmod(mode | (0o111 if item.is_dir() else 0))


@needs_root
@pytest.mark.parametrize("planted", ["old-tmp-layout", "other-owner", "symlinked-base", "group-writable",
                                     "writable-parent"])
def test_another_users_tree_is_never_run(runtime, tmp_path, tmpdir_env, world_readable_dir, planted):
    """The issue's finding 1, with a real second uid: the victim (nobody) runs extract-and-run
    while what sits where its cache would be fails exactly one of the checks."""
    appimage = Path(shutil.copy2(image_with_model(runtime, tmp_path, "A", b"model A\n"), world_readable_dir / "A.AppImage"))
    key = squashfs_sha256(appimage)
    home, marker = world_readable_dir / "home", world_readable_dir / "PWNED"
    home.mkdir()
    os.chown(home, VICTIM, VICTIM)
    cache_home = home / ".cache"
    env = {**tmpdir_env, "HOME": str(home), "XDG_CACHE_HOME": str(cache_home), "TMPDIR": str(world_readable_dir),
           "APPIMAGE_EXTRACT_AND_RUN": "1", "NO_CLEANUP": "1"}
    if planted == "old-tmp-layout":  # where the old runtime looked (any key): in the shared TMPDIR
        plant(world_readable_dir / f"appimage_extracted_{key}", marker, world_readable_dir)
        plant(world_readable_dir / f"appimage_extracted_{key[:16]}", marker, world_readable_dir)
    elif planted == "other-owner":  # a cache home shared with another user, who made appimage/ (0755)
        env["XDG_CACHE_HOME"] = str(world_readable_dir / "cache")
        plant(world_readable_dir / "cache" / "appimage" / f"extracted_{key}", marker, world_readable_dir / "cache", mode=0o755)
    elif planted == "symlinked-base":  # the victim's own private-looking directory, behind a symlink
        plant(world_readable_dir / "elsewhere" / f"extracted_{key}", marker, world_readable_dir, VICTIM, 0o700)
        plant(cache_home / "placeholder", marker, world_readable_dir, VICTIM, 0o700)
        (cache_home / "appimage").symlink_to(world_readable_dir / "elsewhere")
    elif planted == "writable-parent":  # the victim's own directory, in one anybody can swap it out of
        env["XDG_CACHE_HOME"] = str(world_readable_dir / "open")
        plant(world_readable_dir / "open" / "appimage" / f"extracted_{key}", marker, world_readable_dir, VICTIM, 0o700)
        os.chown(world_readable_dir / "open", ATTACKER, ATTACKER)
        (world_readable_dir / "open").chmod(0o777)
    else:  # the victim's own tree from an earlier run, since made writable by its group
        assert as_user(VICTIM, [str(appimage)], env, world_readable_dir).returncode == 0
        tree = cache_home / "appimage" / f"extracted_{key}"
        tree.chmod(0o775)
        (tree / "AppRun").write_text(f"#!/bin/sh\ntouch {marker}\n")
    result = as_user(VICTIM, [str(appimage)], env, world_readable_dir)
    assert result.returncode == 0, result.stderr
    assert "model A" in result.stdout and "planted" not in result.stdout
    assert not marker.exists()
