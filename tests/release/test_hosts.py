"""The build host of a run: which one is chosen, what it reports, and (as root, with the build root of
the last `invoke test` release) that commands really run inside the pinned Debian."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from release import arch, chroot, config, hosts
from release.errors import ConfigError
from release.floor import Floor

FOREIGN = "aarch64" if arch.host_arch() == "x86_64" else "x86_64"


def test_the_build_host_is_chosen_from_base_and_arch(tmp_path):
    assert type(hosts.select(config.resolve(cache_dir=tmp_path))) is hosts.BuildRoot
    assert type(hosts.select(config.resolve(base="host", cache_dir=tmp_path))) is hosts.Host
    assert type(hosts.select(config.resolve(arch=FOREIGN, cache_dir=tmp_path))) is hosts.EmulatedRoot


def test_host_base_cannot_build_another_arch(tmp_path):
    with pytest.raises(ConfigError, match=r"--base host builds only for this machine's arch.*--base bullseye"):
        hosts.select(config.resolve(arch=FOREIGN, base="host", cache_dir=tmp_path))


@pytest.mark.parametrize("bad", ["Bullseye", "../etc", "bull seye", "-x"])
def test_a_bad_base_is_one_line(bad):
    with pytest.raises(ConfigError, match="--base must be 'host' or a Debian suite") as error:
        config.resolve(base=bad)
    assert "\n" not in str(error.value)


def test_build_root_paths_are_the_same_inside_except_its_own(tmp_path):
    root = hosts.select(config.resolve(cache_dir=tmp_path))
    assert root.root.parent == tmp_path / "buildroot" and root.root.name.startswith("bullseye-x86_64-build-")
    assert root.inside(root.root / "opt/venvs/x") == "/opt/venvs/x"
    assert root.inside(tmp_path / "wheels/w.whl") == str(tmp_path / "wheels/w.whl")
    assert root.python() == "/opt/python3.11/bin/python3"


def test_description_round_trips_through_json(tmp_path):
    description = hosts.Description("build root", "bullseye", "Debian GNU/Linux 11 (bullseye)",
                                    "3.11.2 (Debian python3.11 3.11.2-6+deb12u8, built on bullseye)",
                                    Floor("2.31", "3.4.28"))
    path = description.write(tmp_path / "out" / "build-host.json")
    assert hosts.Description.from_json(json.loads(path.read_text())) == description
    assert [p.name for p in path.parent.iterdir()] == ["build-host.json"]  # no partial file left


def test_chroot_entry_binds_at_the_same_path_and_keeps_the_host_dev_for_build_roots():
    argv = chroot.enter(Path("/r"), ["true"], binds=[Path("/a"), Path("/b")])
    assert argv[:3] == ["unshare", "--mount", "--fork"]
    assert argv[-6:] == ["/r", "host", "/a", "/b", "--", "true"]
    clean = chroot.enter(Path("/r"), ["true"], devices=("null", "fuse"), pid=True)
    assert "--pid" in clean and "--kill-child" in clean and clean[-4:] == ["/r", "null fuse", "--", "true"]


def test_without_root_the_build_root_names_both_ways_out(as_nobody):
    run, shared = as_nobody
    done = run("import sys; from release import config, hosts; from release.errors import ReleaseError\n"
               "try: hosts.select(config.resolve(cache_dir=sys.argv[1])).prepare()\n"
               "except ReleaseError as e: print(e); sys.exit(e.exit_code)\n", f"{shared}/cache")
    assert done.returncode == 2, done.stderr
    assert done.stdout.strip() == ("the build root needs root (debootstrap, chroot, mounts): run as root (in a "
                                   "container: --privileged), or build with this machine's own Python and compilers: "
                                   "--base host (this machine's glibc becomes the floor)")
    assert not (shared / "cache" / "buildroot").exists()  # refused before touching anything


# --- the real build root (left in the cache by the release `invoke test` ran) -----------------------

@pytest.fixture(scope="module")
def build_root() -> hosts.BuildRoot:
    cache = os.environ.get("TEA_TEST_CACHE")
    if os.geteuid() != 0 or not cache:
        pytest.skip("needs root and TEA_TEST_CACHE (run through `invoke test`)")
    root = hosts.select(config.resolve(cache_dir=cache, build_dir=Path(cache).parent / "unused-build"))
    if not (root.root / "opt/python3.11").is_dir():
        pytest.skip(f"no prepared build root at {root.root}")
    return root


@pytest.mark.slow
def test_commands_run_in_bullseye_with_a_clean_environment(build_root, monkeypatch):
    monkeypatch.setenv("TEA_SECRET_OF_THE_HOST", "leak")
    done = build_root.run(["sh", "-c", "cat /etc/debian_version; env | sort; ls /proc/self/exe"],
                          what="probe", stream=False)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("11.")
    assert not any("TEA_SECRET" in line for line in lines)
    assert "HOME=/root" in lines and "LANG=C.UTF-8" in lines


@pytest.mark.slow
def test_the_build_roots_compiler_is_bullseyes_and_says_what_it_cannot_do(build_root):
    assert build_root.compiler_version().startswith("gcc 10.")
    assert build_root.compiler_rejects(("-mavx512bf16",)) is None
    assert "-mavxvnni" in build_root.compiler_rejects(("-mavxvnni",))
    assert "-mamx-tile" in build_root.compiler_rejects(("-mamx-tile",))


@pytest.mark.slow
def test_the_build_roots_python_is_debians_311_against_bullseyes_glibc(build_root):
    code = "import ssl, sqlite3, lzma, bz2, ctypes, uuid, xml.etree.ElementTree, pyexpat, platform; " \
           "print(platform.python_version(), platform.libc_ver()[1])"
    done = build_root.run([build_root.python(), "-c", code], what="python", stream=False)
    version, libc = done.stdout.split()
    assert version.startswith("3.11.") and libc == "2.31"
