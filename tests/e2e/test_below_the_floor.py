"""Below the floor, for real: the plain flavor built in a Debian 13 (trixie) build root needs a newer
glibc than Debian 12 (bookworm) has. On bookworm — this machine, and a minimal bookworm system —
the AppImage must say so in one line and exit 1; on trixie it must run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from release import floor, systems

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="needs root: build root, chroot")]
ARGS = ("--arch", "x86_64", "--flavor", "python", "--model", "gemma-3-270m", "--packager", "builtin")


@pytest.fixture(scope="module")
def trixie_build(invoke, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trixie")
    done = invoke("release", *ARGS, "--base", "trixie", "--skip", "smoke,functional,systems",
                  "--build-dir", str(out / "build"), "--out", str(out / "dist"), timeout=3600)
    assert done.returncode == 0, done.stderr
    return out / "dist"


def test_the_manifest_records_the_trixie_floor(trixie_build):
    record = json.loads((trixie_build / "manifest.json").read_text())["artifacts"][0]
    assert (record["base"], record["distribution"]) == ("trixie", "Debian GNU/Linux 13 (trixie)")
    assert floor.newer(record["min_glibc"], floor.system_floor(Path("/"), "x86_64").glibc), record
    assert record["python"].startswith("3.11.") and "built on trixie" in record["python"]


def test_on_this_older_system_it_refuses_in_one_line(trixie_build):
    appimage = next(trixie_build.glob("tea-python-*.AppImage"))
    needed = json.loads((trixie_build / "manifest.json").read_text())["artifacts"][0]["min_glibc"]
    here = floor.system_floor(Path("/"), "x86_64").glibc
    for mode in ([], ["--appimage-extract-and-run"]):
        done = subprocess.run([str(appimage), *mode, "--version"], capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == f"tea-python needs glibc >= {needed}; this system has {here}\n"


def test_minimal_bookworm_refuses_and_minimal_trixie_runs(trixie_build, release_cache):
    appimage = next(trixie_build.glob("tea-python-*.AppImage"))
    record = json.loads((trixie_build / "manifest.json").read_text())["artifacts"][0]
    checked = systems.check_on_systems(release_cache, "x86_64", ("bookworm", "trixie"), appimage,
                                       json.loads((trixie_build / "manifest.json").read_text())["version"],
                                       product="tea-python", min_glibc=record["min_glibc"], model_filename=None,
                                       llm=False, prolog=True)
    assert checked == {"bookworm": ["refused (FUSE)", "refused (no FUSE)"],
                       "trixie": ["smoke+functional+prolog (FUSE)", "smoke+functional (no FUSE)"]}

