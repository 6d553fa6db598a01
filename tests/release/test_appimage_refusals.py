"""The task layer: what `invoke test-appimage` refuses before running anything."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from release import arch, commands
from release.errors import ConfigError, VerifyError

ELF_AARCH64 = 0xB7


@pytest.fixture
def plain_appimage(tmp_path) -> Path:
    dist = os.environ.get("TEA_TEST_DIST")
    found = sorted(Path(dist).glob(f"tea-python-[0-9]*-{arch.host_arch()}.AppImage")) if dist else []
    if not found:
        pytest.skip("TEA_TEST_DIST has no plain AppImage: run through `invoke test`")
    copy = tmp_path / found[0].name
    shutil.copy2(found[0], copy)
    return copy


def test_a_text_file_is_not_an_appimage(tmp_path):
    fake = tmp_path / "tea.AppImage"
    fake.write_text("#!/bin/sh\necho hi\n")
    fake.chmod(0o755)
    with pytest.raises(VerifyError, match="not a type-2 AppImage"):
        commands.check_runnable_appimage(fake)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        commands.check_runnable_appimage(tmp_path / "nope.AppImage")


def test_not_executable_says_chmod(plain_appimage):
    plain_appimage.chmod(0o644)
    with pytest.raises(ConfigError, match=r"not executable; run: chmod \+x"):
        commands.check_runnable_appimage(plain_appimage)


def test_another_arch_without_emulation_is_refused(plain_appimage, monkeypatch):
    with plain_appimage.open("r+b") as handle:  # e_machine of the runtime's ELF header
        handle.seek(18)
        handle.write(ELF_AARCH64.to_bytes(2, "little"))
    monkeypatch.setattr(arch, "binfmt_registered", lambda *args, **kwargs: False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # a user who cannot register emulation
    if arch.host_arch() == "aarch64":
        pytest.skip("aarch64 is this host's own arch")
    with pytest.raises(ConfigError, match="cannot run aarch64 binaries.*as root run"):
        commands.check_runnable_appimage(plain_appimage)


def test_a_good_appimage_passes(plain_appimage):
    assert commands.check_runnable_appimage(plain_appimage) == plain_appimage
