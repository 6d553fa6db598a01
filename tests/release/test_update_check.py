"""`invoke test-appimage --update-from OLD`'s check, with stand-ins for OLD whose "self-update"
does something known (the real one runs in tests/e2e on real AppImages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from release import update_check
from release.download import sha256_file
from release.errors import VerifyError


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
