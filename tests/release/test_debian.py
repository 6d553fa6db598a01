"""apt sources derived from debootstrap's line, `apt-cache madison` parsing, and dpkg's version order
(checked against dpkg itself)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from release import debian
from release.errors import BuildError

DEBOOTSTRAP_LINE = "deb http://deb.debian.org/debian bullseye main\n"


def test_root_sources_add_updates_and_security_from_the_same_mirror():
    assert debian.root_sources(DEBOOTSTRAP_LINE, "bullseye").splitlines() == [
        "deb http://deb.debian.org/debian bullseye main",
        "deb http://deb.debian.org/debian bullseye-updates main",
        "deb http://deb.debian.org/debian-security bullseye-security main"]


def test_source_lines_are_for_the_newer_suite_and_its_security_fixes():
    assert debian.source_sources(DEBOOTSTRAP_LINE, "bookworm").splitlines() == [
        "deb-src http://deb.debian.org/debian bookworm main",
        "deb-src http://deb.debian.org/debian-security bookworm-security main"]


def test_mirror_is_taken_from_the_first_deb_line_whatever_it_is():
    sources = ("# written by debootstrap\n\ndeb-src http://src.example/debian sid main\n"
               "deb [arch=arm64] https://mirror.example/debian/ trixie main contrib\n")
    assert debian.root_sources(sources, "trixie").splitlines() == [
        "deb https://mirror.example/debian/ trixie main contrib",
        "deb https://mirror.example/debian/ trixie-updates main contrib",
        "deb https://mirror.example/debian-security trixie-security main contrib"]


def test_a_security_line_first_does_not_become_the_mirror():
    sources = "deb http://deb.debian.org/debian-security bullseye-security main\n" + DEBOOTSTRAP_LINE
    assert debian.root_sources(sources, "bullseye").splitlines()[0] == "deb http://deb.debian.org/debian bullseye main"


@pytest.mark.parametrize("sources", ["", "# nothing\n", "deb-src http://x/debian bullseye main\n"])
def test_no_deb_line_is_one_line_build_error(sources):
    with pytest.raises(BuildError, match=r"no `deb` line") as error:
        debian.root_sources(sources, "bullseye")
    assert "\n" not in str(error.value)


def test_upgradable_names_the_packages_apt_holds_back():
    listing = ("Listing...\n"
               "libssl1.1/bullseye-security 1.1.1w-0+deb11u8 arm64 [upgradable from: 1.1.1w-0+deb11u1]\n"
               "libexpat1/bullseye-security 2.2.10-2+deb11u7 arm64 [upgradable from: 2.2.10-2+deb11u5]\n")
    assert debian.upgradable(listing) == ["libexpat1", "libssl1.1"]
    assert debian.upgradable("Listing...\n") == []


MADISON = """python3.11 | 3.11.2-6+deb12u8 | http://deb.debian.org/debian bookworm/main Sources
python3.11 | 3.11.2-6+deb12u10 | http://deb.debian.org/debian-security bookworm-security/main Sources
python3.11 | 3.11.2-6+deb12u10 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
python3.11-venv | 3.11.9-1 | http://deb.debian.org/debian trixie/main Sources
"""


def test_madison_versions_are_the_packages_sources_newest_first():
    assert debian.madison_versions(MADISON, "python3.11") == ["3.11.2-6+deb12u10", "3.11.2-6+deb12u8"]
    assert debian.madison_versions("", "python3.11") == []


VERSION_PAIRS = [
    ("1.0", "1.0"), ("1.0~rc1", "1.0"), ("1.0", "1.0+deb11u1"), ("3.11.2-6+deb12u8", "3.11.2-6+deb12u9"),
    ("3.11.2-6+deb12u10", "3.11.2-6+deb12u9"), ("1:1.0", "2.0"), ("1.0-1", "1.0-1~bpo11+1"), ("1.0a", "1.0"),
    ("1.0", "1.0.1"), ("2.36-9+deb12u4", "2.36-9+deb12u10"), ("1.0~~", "1.0~"), ("1.0-0", "1.0"),
    ("2.31-13+deb11u14", "2.31-13"), ("0:1.2", "1.2"), ("1.2-3a", "1.2-3+"), ("10", "9"), ("1.0.0", "1.0"),
]


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is the reference")
@pytest.mark.parametrize("a, b", VERSION_PAIRS)
def test_version_order_is_dpkgs(a, b):
    def dpkg_says(op: str) -> bool:
        return subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0

    expected = -1 if dpkg_says("lt") else 1 if dpkg_says("gt") else 0
    assert debian.compare_versions(a, b) == expected
    assert debian.compare_versions(b, a) == -expected


def system(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / "etc/apt" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "etc/apt" / name).write_text(text)
    return tmp_path


def test_mirror_from_one_line_sources_skips_security(tmp_path):
    root = system(tmp_path, {"sources.list": "# comment\ndeb http://mirror.test/debian-security bookworm-security main\n"
                                             "deb-src http://src.test/debian bookworm main\n"
                                             "deb [arch=amd64] http://mirror.test/debian bookworm main\n"})
    assert debian.system_mirror(root) == debian.Mirror("http://mirror.test/debian", "main")


def test_mirror_from_deb822_sources(tmp_path):
    root = system(tmp_path, {"sources.list.d/debian.sources":
                             "Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\n"
                             "Components: main\n\n"
                             "Types: deb deb-src\n# a note: with a colon\nURIs: http://mirror.test/debian\n"
                             "Suites: bookworm bookworm-updates\nComponents: main\n"})
    assert debian.system_mirror(root) == debian.Mirror("http://mirror.test/debian", "main")


def test_one_line_sources_come_before_deb822_ones(tmp_path):
    root = system(tmp_path, {"sources.list": "deb http://first.test/debian bookworm main\n",
                             "sources.list.d/debian.sources": "Types: deb\nURIs: http://second.test/debian\n"
                                                              "Suites: bookworm\n"})
    assert debian.system_mirror(root).url == "http://first.test/debian"


def test_no_deb_source_is_one_line_error(tmp_path):
    root = system(tmp_path, {"sources.list": "deb-src http://src.test/debian bookworm main\n"})
    with pytest.raises(BuildError, match=r"^no Debian `deb` source in .*etc/apt to derive a deb-src line from$"):
        debian.system_mirror(root)
