"""The FUSE server (release/runtime/fs.c) against hostile and unusual images, each operation for real
through a mount (issue 24's N1): lookups and listings of extended directories whose index lies,
xattrs (squashfuse 0.1.105's getxattr overflows the heap on a well-formed image), stat of an inode
whose uid/gid index lies outside the table, a symlink claiming 2 GiB. The runtime is the
AddressSanitizer build: squashfuse's out-of-bounds reads abort the server, and the mount then
answers ENOTCONN instead of the right answer.
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from squashfs_craft import corrupt_index, field, mksquashfs, root_entries
from test_runtime import TIMEOUT, mounts_under, tmpdir_env  # noqa: F401
from test_runtime_hostile import appimage_of, sanitized_runtime, tiny_tree  # noqa: F401

BIG = [f"file-{number:05d}-with-a-name-long-enough-to-fill-blocks" for number in range(1500)]
PREFIX = "file-"  # an entry whose name begins every other one: a lookup must walk past it


@contextmanager
def mounted(appimage: Path, env: dict):
    """--appimage-mount of appimage; yields the mount point; the server must still answer at the end."""
    process = subprocess.Popen([str(appimage), "--appimage-mount"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    point = process.stdout.readline().strip()
    try:
        assert point, process.stderr.read()
        yield Path(point)
        assert process.poll() is None and os.stat(point).st_ino == 1, "the FUSE server died"
    finally:
        process.terminate()
        stderr = process.communicate(timeout=TIMEOUT)[1]
    assert "Sanitizer" not in stderr, stderr[-3000:]
    assert mounts_under(env["TMPDIR"]) == []


def big_directory_image(tmp_path: Path, *options: str) -> bytearray:
    """A root with `big`, a directory whose listing spans metadata blocks: an extended inode with
    an index (mksquashfs indexes each metadata block the listing enters)."""
    tree = tiny_tree(tmp_path / "tree")
    (tree / "big").mkdir()
    for name in (PREFIX, *BIG):
        (tree / "big" / name).write_text(name)
    return bytearray(mksquashfs(tree, tmp_path / "big.sqfs", *options).read_bytes())


def id_table_block(image: bytes | bytearray) -> int:
    """Where the uid/gid table's only metadata block is: 4 bytes of data, a short block to point into."""
    return struct.unpack_from("<Q", image, field(image, "id_table"))[0]


def test_lookups_in_an_extended_directory_never_copy_its_index_names(sanitized_runtime, tmp_path, tmpdir_env):
    """N1 (a): index names claiming 64 KiB + 1 bytes overflowed the server's static name buffer
    (and the file table after it). A lookup walks the entries and finds present and absent names."""
    image = corrupt_index(big_directory_image(tmp_path), b"big", size=65537)
    appimage = appimage_of(sanitized_runtime, image, tmp_path / "T.AppImage")
    with mounted(appimage, tmpdir_env) as point:
        for name in (PREFIX, BIG[0], BIG[700], BIG[-1]):
            assert (point / "big" / name).read_text() == name
        for absent in ("file-00700", BIG[700] + "x", "zzz", "a"):
            with pytest.raises(FileNotFoundError):
                os.stat(point / "big" / absent)


def test_a_listing_resumed_in_an_extended_directory_never_follows_its_index(sanitized_runtime, tmp_path,
                                                                           tmpdir_env):
    """N1 (b): every index entry points into a 4-byte metadata block (the uid/gid table), at an
    offset past its end. `ls -f` resumes the listing at offsets past the first index entry."""
    image = big_directory_image(tmp_path)
    image = corrupt_index(image, b"big", start_block=id_table_block(image) - field(image, "directory_table"))
    appimage = appimage_of(sanitized_runtime, image, tmp_path / "T.AppImage")
    with mounted(appimage, tmpdir_env) as point:
        assert sorted(os.listdir(point / "big")) == [PREFIX, *BIG]
        listed = subprocess.run(["ls", "-f", str(point / "big")], capture_output=True, text=True, timeout=TIMEOUT)
        assert sorted(listed.stdout.split()) == [PREFIX, *BIG]


XATTRS = {"user.tea.longer-name": b"value", "user.z": b"z" * 300, "security.tea": b"sec"}


@pytest.fixture
def xattr_image(sanitized_runtime, tmp_path) -> Path:  # noqa: F811
    tree = tiny_tree(tmp_path / "tree")
    target = tree / "usr/share/model"
    for name, value in XATTRS.items():
        os.setxattr(target, name, value)
    if os.geteuid() == 0:
        os.setxattr(target, "trusted.tea", b"trusted")
    return appimage_of(sanitized_runtime, mksquashfs(tree, tmp_path / "x.sqfs", "-xattrs"), tmp_path / "X.AppImage")


@pytest.mark.parametrize("absent", ["user.b", "user.tea", "user.tea.longer-nam", "user.tea.longer-namex",
                                    "user.y", "security.te", "trusted.x", "system.posix_acl_access"])
def test_getxattr_of_an_absent_name_is_enodata(xattr_image, tmpdir_env, absent):
    """N1 (c): squashfuse's sqfs_xattr_find compared `&&` for `||`: an absent name with a stored
    name's prefix made it copy the stored name into a buffer of the asked name's size (heap overflow
    write, with this well-formed `mksquashfs -xattrs` image)."""
    with mounted(xattr_image, tmpdir_env) as point:
        with pytest.raises(OSError) as raised:
            os.getxattr(point / "usr/share/model", absent)
        assert raised.value.errno == errno.ENODATA


def test_xattrs_read_back_as_stored(xattr_image, tmpdir_env):
    """Every name listed under its own prefix (squashfuse listed trusted.* as security.*), each value."""
    expected = {**XATTRS, **({"trusted.tea": b"trusted"} if os.geteuid() == 0 else {})}
    with mounted(xattr_image, tmpdir_env) as point:
        model = point / "usr/share/model"
        assert sorted(os.listxattr(model)) == sorted(expected)
        assert {name: os.getxattr(model, name) for name in expected} == expected
        assert os.listxattr(point / "usr") == []
        with pytest.raises(OSError) as raised:  # another file's name
            os.getxattr(point / "AppRun", "user.tea.longer-name")
        assert raised.value.errno == errno.ENODATA


def patch_root_inode_field(image: bytearray, name: bytes, offset: int, fmt: str, value: int) -> bytearray:
    struct.pack_into(fmt, image, root_entries(image)[name] + offset, value)
    return image


def test_an_inode_whose_uid_index_lies_outside_the_table_is_eio(sanitized_runtime, tmp_path, tmpdir_env):
    """getattr and lookup stat the inode: squashfuse's sqfs_id_get has no bound (the table holds
    one id, 4 bytes; index 5 reads 20 bytes in)."""
    image = patch_root_inode_field(bytearray(mksquashfs(tiny_tree(tmp_path / "tree"), tmp_path / "t.sqfs").read_bytes()),
                                   b"AppRun", 4, "<H", 5)
    appimage = appimage_of(sanitized_runtime, image, tmp_path / "T.AppImage")
    with mounted(appimage, tmpdir_env) as point:
        with pytest.raises(OSError) as raised:
            os.stat(point / "AppRun")
        assert raised.value.errno == errno.EIO
        assert (point / "usr/share/model").read_bytes() == b"model A\n"


def test_a_symlink_claiming_2_gib_is_eio(sanitized_runtime, tmp_path, tmpdir_env):
    """readlink: squashfuse allocates the claimed size + 1 and reads it all. Metadata enough follows
    the link's inode (a long listing) for a read of PATH_MAX bytes to succeed: only the size check
    makes this EIO."""
    tree = tiny_tree(tmp_path / "tree")
    (tree / "link").symlink_to("usr/share/model")
    for name in BIG[:300]:
        (tree / "usr/bin" / name).write_text("")
    image = patch_root_inode_field(bytearray(mksquashfs(tree, tmp_path / "t.sqfs").read_bytes()), b"link", 20, "<I", 0x7FFFFFFF)
    appimage = appimage_of(sanitized_runtime, image, tmp_path / "T.AppImage")
    with mounted(appimage, tmpdir_env) as point:
        with pytest.raises(OSError) as raised:
            os.readlink(point / "link")
        assert raised.value.errno == errno.EIO


def attrs_image(tmp_path: Path) -> bytearray:
    """A root file `attrs` with one xattr: an extended file inode, its xattr index the first (0)."""
    tree = tiny_tree(tmp_path / "tree")
    (tree / "attrs").write_text("attrs\n")
    os.setxattr(tree / "attrs", "user.tea", b"value")
    image = bytearray(mksquashfs(tree, tmp_path / "a.sqfs", "-xattrs").read_bytes())
    assert struct.unpack_from("<H", image, root_entries(image)[b"attrs"])[0] == 9  # extended file inode
    return image


def xattr_id_entry(image: bytes | bytearray) -> int:
    """Where the first xattr id (`ref u64, count u32, size u32`) is: its table's first metadata block."""
    block = struct.unpack_from("<Q", image, field(image, "xattr_table") + 16)[0]
    assert struct.unpack_from("<H", image, block)[0] & 0x8000  # stored uncompressed (-noX)
    return block + 2


@pytest.mark.parametrize("corruption", ["index past the xattr ids", "first entry past its block"])
def test_xattr_references_that_lie_are_eio(sanitized_runtime, tmp_path, tmpdir_env, corruption):
    """squashfuse trusted the inode's xattr index (sqfs_table_get has no bound) and the offset of
    the first entry in its metadata block."""
    image = attrs_image(tmp_path)
    if corruption == "index past the xattr ids":
        struct.pack_into("<I", image, root_entries(image)[b"attrs"] + 52, 1000)
    else:
        struct.pack_into("<H", image, xattr_id_entry(image), 0xFFF0)
    appimage = appimage_of(sanitized_runtime, image, tmp_path / "T.AppImage")
    with mounted(appimage, tmpdir_env) as point:
        for call in (lambda: os.getxattr(point / "attrs", "user.tea"), lambda: os.listxattr(point / "attrs")):
            with pytest.raises(OSError) as raised:
                call()
            assert raised.value.errno == errno.EIO
        assert (point / "attrs").read_text() == "attrs\n"
