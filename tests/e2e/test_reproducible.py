"""Byte-reproducible releases across checkouts (issue 24): `invoke reproduce` builds the commit of
the release `invoke test` made again, in a clone at another path with the same caches, and every
AppImage of it must come out with the same unsigned sha256; the manifest records it."""

from __future__ import annotations

import json
import shutil

import pytest

from release import reproduce
from release.artifacts import Kind

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("reproduce")]


def test_every_appimage_is_byte_identical_from_a_second_checkout(dist, invoke, tmp_path):
    manifest = json.loads((dist / "manifest.json").read_text())
    changes = reproduce.unbuilt_changes(manifest["commit"])
    if changes:
        pytest.skip(f"this checkout has uncommitted changes ({changes.splitlines()[0].strip()}): "
                    f"the release is not its commit's")
    first = tmp_path / "dist"
    first.mkdir()
    shutil.copyfile(dist / "manifest.json", first / "manifest.json")  # the shared dist/ stays as it is
    done = invoke("reproduce", "--dist", str(first), timeout=3600)
    assert done.returncode == 0, done.stderr
    recorded = {a["name"]: a for a in json.loads((first / "manifest.json").read_text())["artifacts"]}
    appimages = [a["name"] for a in manifest["artifacts"] if a.get("kind") == Kind.APPIMAGE.value]
    assert len(appimages) == 2  # both flavors
    for name in appimages:
        assert recorded[name]["reproduced"]["identical"] is True
        assert recorded[name]["reproduced"]["second_unsigned_sha256"] == recorded[name]["unsigned_sha256"]
    print("\n" + "\n".join(f"{name}: {recorded[name]['unsigned_sha256']} from both checkouts "
                           f"({recorded[name]['reproduced']['seconds']} s)" for name in appimages))
