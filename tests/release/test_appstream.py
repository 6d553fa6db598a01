"""The AppDir's desktop and AppStream metadata, validated by the real appstreamcli (what
appimagetool and linuxdeploy run on an AppDir before they pack it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from release import appdir
from release.errors import BuildError


@pytest.fixture
def metadata(tmp_path) -> Path:
    root = tmp_path / "AppDir"
    root.mkdir()
    appdir.write_metadata(root, "1.2.3", "2026-05-04")
    return root


def metainfo(root: Path) -> Path:
    return root / "usr/share/metainfo" / f"{appdir.COMPONENT_ID}.appdata.xml"


def test_metadata_passes_appstreamcli_validate_tree(metadata):
    appdir.validate_appstream(metadata)
    done = subprocess.run(["appstreamcli", "validate-tree", "--no-net", str(metadata)], capture_output=True,
                          text=True)
    assert done.returncode == 0 and not re.search(r"^\s*[EW]:", done.stdout, re.M), done.stdout


def test_release_carries_version_and_date(metadata):
    assert '<release version="1.2.3" date="2026-05-04"/>' in metainfo(metadata).read_text()


def test_component_id_is_reverse_dns_and_names_the_files_appimagetool_looks_for(metadata):
    text = metainfo(metadata).read_text()
    assert f"<id>{appdir.COMPONENT_ID}</id>" in text and appdir.COMPONENT_ID.count(".") >= 2
    desktop = metadata / f"{appdir.COMPONENT_ID}.desktop"  # appimagetool: <desktop name>.appdata.xml
    assert desktop.is_file() and (metadata / "usr/share/applications" / desktop.name).is_file()
    assert sorted(p.name for p in metadata.glob("*.desktop")) == [desktop.name]
    assert f"<launchable type=\"desktop-id\">{desktop.name}</launchable>" in text


@pytest.mark.parametrize("edit, issue", [
    (lambda t: t.replace(f"<id>{appdir.COMPONENT_ID}</id>", "<id>tea-python</id>"), "cid-is-not-rdns"),
    (lambda t: t.replace(' date="2026-05-04"', ""), "release-time-missing"),
])
def test_invalid_metadata_stops_the_build_with_one_line(metadata, edit, issue):
    path = metainfo(metadata)
    path.write_text(edit(path.read_text()))
    with pytest.raises(BuildError, match=issue) as failure:
        appdir.validate_appstream(metadata)
    assert "\n" not in str(failure.value)


def test_a_warning_stops_the_build_too(metadata):
    """appimagetool and linuxdeploy fail on warnings, so the build must."""
    path = metainfo(metadata)
    path.rename(path.with_name("other-name.appdata.xml"))  # metainfo-filename-cid-mismatch
    with pytest.raises(BuildError, match="metainfo-filename-cid-mismatch"):
        appdir.validate_appstream(metadata)


def test_the_appdir_step_refuses_invalid_metadata_and_keeps_no_appdir(tmp_path):
    onedir = tmp_path / "onedir"
    onedir.mkdir()
    (onedir / "tea").write_text("#!/bin/sh\n")
    target = tmp_path / "AppDir"
    with pytest.raises(BuildError, match="AppStream"):
        appdir.build_appdir(target, onedir, "1.2.3", None, "not-a-date")
    assert not target.exists()
    appdir.build_appdir(target, onedir, "1.2.3", None, "2026-05-04")
    assert metainfo(target).is_file()
