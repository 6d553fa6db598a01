"""`invoke test-appimage --update-from OLD`'s check, with stand-ins for OLD whose "self-update"
does something known (the real one runs in tests/e2e on real AppImages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from release import signing, update_check
from release.download import sha256_file
from release.errors import VerifyError
from test_appimage_format import appdir, appimage, runtime  # noqa: F401


def stand_in(path: Path, script: str) -> Path:
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)
    return path


@pytest.fixture
def new(tmp_path) -> Path:
    path = tmp_path / "release" / "new.AppImage"
    path.parent.mkdir()
    path.write_bytes(b"the new release\n" * 100)
    return path


def test_an_update_that_reproduces_the_new_file_passes_and_old_is_untouched(tmp_path, new):
    # like tea self-update: the real file behind the path is replaced by rename
    old = stand_in(tmp_path / "old.AppImage", f'target=$(readlink -f "$0")\ncp {new} "$target.tmp" && mv "$target.tmp" '
                                              f'"$target"\necho "tea: updated" >&2\n')
    before = old.read_bytes()
    update_check.check_update(old, new, str(new.parent), whole_published=False, work=tmp_path / "work")
    assert old.read_bytes() == before
    assert sha256_file(tmp_path / "work/self-update/old.AppImage") == sha256_file(new)


def test_an_update_that_gives_other_bytes_fails(tmp_path, new):
    old = stand_in(tmp_path / "old.AppImage", 'echo "tea: updated" >&2\n')
    with pytest.raises(VerifyError, match="did not reproduce the new AppImage"):
        update_check.check_update(old, new, str(new.parent), whole_published=False, work=tmp_path / "work")


@pytest.mark.parametrize("script, message", [
    ("echo \"usage: tea ... invalid choice: 'self-update' (choose from ...)\" >&2; exit 2", "predates delta updates"),
    ('echo "tea: the release has no asset x" >&2; exit 3', "self-update failed (exit 3): tea: the release has no asset x"),
])
def test_a_failing_update_is_one_line(tmp_path, new, script, message):
    with pytest.raises(VerifyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        update_check.check_update(stand_in(tmp_path / "old.AppImage", script + "\n"), new, str(new.parent),
                                  whole_published=False, work=tmp_path / "work")


def test_an_unsigned_old_updates_as_its_user_would_with_allow_unsigned(tmp_path, new):
    """Issue 24 N7: an unsigned tea self-updates only when asked; a signed one is never asked."""
    old = stand_in(tmp_path / "old.AppImage", f'echo "$@" > {tmp_path / "args"}\ntarget=$(readlink -f "$0")\n'
                                              f'cp {new} "$target.tmp" && mv "$target.tmp" "$target"\n')
    update_check.check_update(old, new, str(new.parent), whole_published=False, work=tmp_path / "work")
    assert (tmp_path / "args").read_text().split() == ["self-update", "--release", str(new.parent), "--allow-unsigned"]


def test_a_signed_appimage_carries_a_key_and_an_unsigned_one_none(appimage, signing_key):
    assert not update_check.carries_a_key(appimage)
    signing.finish_appimage(appimage, signing_key)
    assert update_check.carries_a_key(appimage)
