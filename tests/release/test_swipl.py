"""SWI-Prolog for the AppImages: the deb-src line it derives, the version it picks, the cache it keeps,
the relocatable prefix it makes and what the freeze bundles of it."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from release import config, debian, hosts, swipl
from release.errors import BuildError, ConfigError

MADISON = """\
swi-prolog | 9.2.9+dfsg-1 | http://mirror.test/debian trixie/main Sources
swi-prolog | 9.10.1-1 | http://mirror.test/debian trixie/main Sources
swi-prolog | 9.2.9+dfsg-1 | http://mirror.test/debian trixie-updates/main Sources
swi-prolog | 9.0.4+dfsg-2 | http://mirror.test/debian trixie/main Sources
swi-prolog-nox | 9.3.0-1 | http://mirror.test/debian trixie/main amd64 Packages
swi-prolog | 9.3.0-1 | http://mirror.test/debian trixie/main amd64 Packages
other | 10.0.0-1 | http://mirror.test/debian trixie/main Sources
"""


def test_apt_keeps_its_state_private(tmp_path):
    options = swipl.apt_options(tmp_path)
    assert f"Dir::State::Lists={tmp_path / 'lists'}" in options
    assert f"Dir::Etc::SourceList={tmp_path / 'sources.list'}" in options
    assert "Dir::Etc::SourceParts=/dev/null" in options and f"Dir::Cache={tmp_path / 'cache'}" in options


def test_madison_lists_source_versions_newest_first():
    assert debian.madison_versions(MADISON, "swi-prolog") == ["9.10.1-1", "9.2.9+dfsg-1", "9.0.4+dfsg-2"]


@pytest.mark.parametrize("version, parsed", [("9.2.9+dfsg-1", (9, 2, 9)), ("1:9.10.0-2", (9, 10, 0)),
                                             ("9.1.12", (9, 1, 12)), ("snapshot", ())])
def test_upstream_version(version, parsed):
    assert swipl.upstream_version(version) == parsed


def test_versions_older_than_janus_needs_are_not_usable():
    assert swipl.usable(["9.10.1-1", "9.2.9+dfsg-1", "9.1.12-1", "9.1.11-1", "9.0.4+dfsg-2"], "9.1.12") == [
        "9.10.1-1", "9.2.9+dfsg-1", "9.1.12-1"]


def test_swipl_version_from_its_banner():
    assert swipl.swipl_version("SWI-Prolog version 9.2.9 for x86_64-linux\n") == "9.2.9"
    with pytest.raises(BuildError, match="does not say its version"):
        swipl.swipl_version("swipl: command not found")


@pytest.fixture
def settings(tmp_path):
    return config.resolve(flavor="all", model="gemma-3-270m", cache_dir=tmp_path / "cache",
                          build_dir=tmp_path / "build")


def test_the_cached_build_is_the_newest_of_these_pins(settings):
    builder = hosts.BuildRoot(settings)
    for version in ("9.1.12-1", "9.10.1-1", "9.2.9+dfsg-1"):
        path = swipl.tarball_path(settings, builder, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    other_options = dataclasses.replace(settings.pins.swipl, cmake_args=("-DUSE_GMP=ON",))
    other = dataclasses.replace(settings, pins=dataclasses.replace(settings.pins, swipl=other_options))
    swipl.tarball_path(other, builder, "9.99.0-1").write_bytes(b"")
    assert swipl.newest_cached(settings, builder) == swipl.tarball_path(settings, builder, "9.10.1-1")
    assert swipl.ensure_tarball(settings, builder) == swipl.tarball_path(settings, builder, "9.10.1-1")


def test_the_cache_key_changes_with_what_changes_the_build(settings):
    builder = hosts.BuildRoot(settings)
    key = swipl.recipe_key(settings, builder)
    for change in ({"cmake_args": ()}, {"suite": "forky"}, {"minimum": "9.3.0"}, {"source": "swi-prolog-nox"},
                   {"build_tools": ("cmake==3.30.0",)}):
        pins = dataclasses.replace(settings.pins, swipl=dataclasses.replace(settings.pins.swipl, **change))
        assert swipl.recipe_key(dataclasses.replace(settings, pins=pins), builder) != key, change
    assert swipl.recipe_key(dataclasses.replace(settings, arch="aarch64"), builder) != key
    # another build host (this machine, another base) builds another SWI-Prolog: another glibc floor
    assert swipl.recipe_key(settings, hosts.Host(settings)) != key
    assert swipl.recipe_key(settings, hosts.BuildRoot(dataclasses.replace(settings, base="trixie"))) != key


def test_offline_without_a_cached_build_says_what_to_do(settings):
    offline = dataclasses.replace(settings, offline=True)
    with pytest.raises(ConfigError, match=r"^offline and no SWI-Prolog build for x86_64 in .*: run `invoke deps` "
                                          r"online once$"):
        swipl.ensure_tarball(offline, hosts.BuildRoot(offline))


def test_build_script_installs_into_the_prefix_with_the_pinned_options(settings, tmp_path):
    script = swipl.build_script(settings.pins.swipl, tmp_path / "install", 2, tmp_path / "tools/bin")
    assert f"-DCMAKE_INSTALL_PREFIX={tmp_path / 'install'}" in script
    assert script.splitlines()[1] == f'export PATH="{tmp_path / "tools/bin"}:$PATH"'  # the pinned CMake
    assert "-DSWIPL_PACKAGE_LIST=clib" in script and "-DUSE_GMP=OFF" in script
    assert script.splitlines()[0] == "set -e" and script.splitlines()[-1] == "cmake --install build"


def compile_c(source: str, out: Path, *args: str) -> None:
    c_file = out.with_suffix(".c")
    c_file.write_text(source)
    subprocess.run(["cc", "-o", out, c_file, *args], check=True)
    c_file.unlink()


@pytest.mark.skipif(not shutil.which("cc") or not shutil.which("patchelf"), reason="needs cc and patchelf")
def test_the_prefix_keeps_working_where_it_is_moved(tmp_path):
    prefix = tmp_path / "prefix"
    lib, exe = prefix / "lib" / "swipl" / "lib" / "x86_64-linux", prefix / "lib" / "swipl" / "bin" / "x86_64-linux"
    lib.mkdir(parents=True)
    exe.mkdir(parents=True)
    compile_c("int answer(void) { return 42; }\n", lib / "libanswer.so", "-shared", "-fPIC")
    compile_c("int answer(void);\nint main(void) { return answer() == 42 ? 0 : 1; }\n", exe / "prog",
              f"-L{lib}", "-lanswer", f"-Wl,-rpath,{lib}:/opt/elsewhere", "-Wl,--enable-new-dtags")
    swipl.make_relocatable(prefix)
    runpath = subprocess.run(["patchelf", "--print-rpath", exe / "prog"], capture_output=True, text=True).stdout
    assert runpath.strip() == "$ORIGIN/../../lib/x86_64-linux:/opt/elsewhere"
    moved = prefix.rename(tmp_path / "moved")
    assert subprocess.run([moved / "lib/swipl/bin/x86_64-linux/prog"]).returncode == 0


def test_the_bundle_gets_the_home_and_licence_but_not_a_second_libswipl(tmp_path):
    home = tmp_path / "lib" / "swipl"
    for name in ("boot.prc", "LICENSE", "library/lists.pl", "library/clp/clpfd.pl", "lib/x86_64-linux/libswipl.so.9",
                 "lib/x86_64-linux/libswipl.so", "lib/x86_64-linux/time.so", "lib/x86_64-linux/sgml2pl.so",
                 "include/SWI-Prolog.h", "bin/x86_64-linux/swipl"):
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text("")
    assert swipl.runtime_data(tmp_path, "swipl") == [
        (home / "boot.prc", "swipl"), (home / "LICENSE", "swipl"), (home / "library", "swipl/library"),
        (home / "lib/x86_64-linux/sgml2pl.so", "swipl/lib/x86_64-linux"),
        (home / "lib/x86_64-linux/time.so", "swipl/lib/x86_64-linux")]


def test_prolog_is_bundled_only_by_prolog_flavors_built_for_this_machine(settings):
    with_prolog, without = config.Flavor("a", "a", False, True), config.Flavor("b", "b", False, False)
    assert swipl.bundled(settings, with_prolog) and not swipl.bundled(settings, without)
    foreign = "aarch64" if settings.arch == "x86_64" else "x86_64"
    assert not swipl.bundled(dataclasses.replace(settings, arch=foreign), with_prolog)


def test_the_step_is_skipped_when_no_flavor_bundles_prolog(settings):
    from release.pipeline import Context

    plain = dataclasses.replace(settings, flavors=(config.Flavor("b", "b", False, False),))
    assert swipl.SwiplStep().skip_reason(Context(plain)) == "no flavor bundles Prolog"
    assert swipl.SwiplStep().skip_reason(Context(settings)) is None


def test_janus_is_built_once_per_swi_prolog_build_and_python(settings):
    one = swipl.janus_wheel_dir(settings, "swi-prolog-9.2.9+dfsg-1-x86_64-abc.tar.zst", "3.11.7 (main)")
    assert one == swipl.janus_wheel_dir(settings, "swi-prolog-9.2.9+dfsg-1-x86_64-abc.tar.zst", "3.11.7 (main)")
    assert one != swipl.janus_wheel_dir(settings, "swi-prolog-9.2.9+dfsg-1-x86_64-abd.tar.zst", "3.11.7 (main)")
    assert one != swipl.janus_wheel_dir(settings, "swi-prolog-9.2.9+dfsg-1-x86_64-abc.tar.zst", "3.12.1 (main)")


def test_a_python_finds_the_prefix_through_its_environment(tmp_path):
    (tmp_path / "lib/swipl/lib/x86_64-linux").mkdir(parents=True)
    assert swipl.environment(tmp_path) == {"LD_LIBRARY_PATH": str(tmp_path / "lib/swipl/lib/x86_64-linux"),
                                           "SWI_HOME_DIR": str(tmp_path / "lib/swipl")}
