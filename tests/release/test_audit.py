"""The AppDir dependency audit, against real ELFs compiled here and the system's own binaries."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from release.audit import audit_appdir, elf_machine, excludelist, read_elf, scan_appdir
from release.floor import Floor, highest
from release.errors import VerifyError

GREET_C = 'const char *greet(void) { return "hello from libgreet"; }\n'
MAIN_C = ('#include <stdio.h>\nconst char *greet(void);\n'
          'int main(void) { puts(greet()); return 0; }\n')


def _compile(cc: str, args: list[str], source: str, tmp: Path) -> None:
    src = tmp / f"src{abs(hash(source))}.c"
    src.write_text(source)
    subprocess.run([cc, str(src), *args], check=True, capture_output=True)


def _build_appdir(root: Path, cc: str = "gcc") -> Path:
    """usr/bin/hello needs libgreet.so.1 (a soname symlink) through RUNPATH $ORIGIN/../lib."""
    lib, bin_ = root / "usr/lib", root / "usr/bin"
    lib.mkdir(parents=True)
    bin_.mkdir(parents=True)
    _compile(cc, ["-shared", "-fPIC", "-Wl,-soname,libgreet.so.1", "-o", str(lib / "libgreet.so.1.0")],
             GREET_C, root)
    (lib / "libgreet.so.1").symlink_to("libgreet.so.1.0")
    _compile(cc, ["-o", str(bin_ / "hello"), f"-L{lib}", "-l:libgreet.so.1",
                  "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib"], MAIN_C, root)
    (root / "AppRun").write_text("#!/bin/sh\nexec \"$(dirname \"$0\")/usr/bin/hello\"\n")
    return root


@pytest.fixture
def appdir(tmp_path) -> Path:
    return _build_appdir(tmp_path / "AppDir")


def _readelf_glibc(paths: list[Path]) -> str:
    """Independent floor: parse `readelf -V` text, not pyelftools."""
    found = set()
    for path in paths:
        text = subprocess.run(["readelf", "-V", "-W", str(path)], check=True, capture_output=True,
                              text=True).stdout
        found.update(re.findall(r"Name: GLIBC_([0-9.]+)\s", text))
    return max(found, key=lambda v: [int(x) for x in v.split(".")])


def test_appdir_with_runpath_lib_passes_and_runs(appdir):
    done = subprocess.run([str(appdir / "usr/bin/hello")], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "hello from libgreet"
    report = audit_appdir(appdir, arch="x86_64")
    assert report.unresolved == {}
    assert report.elf_count == 2  # the soname symlink is not a second ELF
    assert report.machine == "x86_64"
    assert report.min_glibc == _readelf_glibc([appdir / "usr/bin/hello", appdir / "usr/lib/libgreet.so.1.0"])


def test_missing_lib_is_reported_with_count(appdir):
    for name in ("libgreet.so.1", "libgreet.so.1.0"):
        (appdir / "usr/lib" / name).unlink()
    report, foreign = scan_appdir(appdir, arch="x86_64")
    assert report.unresolved == {"usr/bin/hello": ["libgreet.so.1"]}
    assert foreign == []
    with pytest.raises(VerifyError, match=r"1 unresolved library: usr/bin/hello needs libgreet.so.1") as err:
        audit_appdir(appdir, arch="x86_64")
    assert "\n" not in str(err.value)


def test_file_named_like_the_lib_but_not_elf_does_not_count(appdir):
    (appdir / "usr/lib/libgreet.so.1").unlink()
    (appdir / "usr/lib/libgreet.so.1").write_text("not a library\n")
    with pytest.raises(VerifyError, match="libgreet.so.1"):
        audit_appdir(appdir, arch="x86_64")


def test_symlink_leaving_the_appdir_does_not_count(appdir, tmp_path):
    outside = tmp_path / "outside.so"
    shutil.move(appdir / "usr/lib/libgreet.so.1.0", outside)
    (appdir / "usr/lib/libgreet.so.1").unlink()
    (appdir / "usr/lib/libgreet.so.1").symlink_to(outside)
    with pytest.raises(VerifyError, match="libgreet.so.1"):
        audit_appdir(appdir, arch="x86_64")


def test_runpath_decides_when_the_library_path_is_given(appdir):
    """Exact mode is ld.so's rule: a lib outside RUNPATH and the library path is not found."""
    assert audit_appdir(appdir, arch="x86_64", library_path=[]).unresolved == {}
    other = appdir / "opt/other"
    other.mkdir(parents=True)
    for name in ("libgreet.so.1", "libgreet.so.1.0"):
        os.replace(appdir / "usr/lib" / name, other / name)
    assert audit_appdir(appdir, arch="x86_64").unresolved == {}  # lenient: any lib dir
    assert audit_appdir(appdir, arch="x86_64", library_path=["opt/other"]).unresolved == {}
    with pytest.raises(VerifyError, match="usr/bin/hello needs libgreet.so.1"):
        audit_appdir(appdir, arch="x86_64", library_path=[])


def test_hard_links_are_audited_once(appdir):
    os.link(appdir / "usr/bin/hello", appdir / "usr/bin/hello-again")
    assert audit_appdir(appdir, arch="x86_64").elf_count == 2


def test_excluded_system_libs_need_no_bundling(appdir):
    assert {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libGL.so.1",
            "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"} <= excludelist()
    assert not any(name.startswith("#") or " " in name for name in excludelist())
    (appdir / "usr/bin/cpp-hello.cc").write_text("#include <iostream>\nint main(){std::cout<<1;}\n")
    subprocess.run(["g++", str(appdir / "usr/bin/cpp-hello.cc"), "-lm", "-o",
                    str(appdir / "usr/bin/cpp-hello")], check=True)
    assert audit_appdir(appdir, arch="x86_64").elf_count == 3


BULLSEYE = Floor(glibc="2.31", glibcxx="3.4.28")  # what bullseye's libc.so.6 / libstdc++.so.6 provide


def test_an_elf_needing_a_newer_glibc_than_the_base_is_refused(appdir):
    """Linked on this glibc 2.36 host, usr/bin/hello needs __libc_start_main@GLIBC_2.34."""
    assert "2.34" in read_elf(appdir / "usr/bin/hello").glibc_versions
    with pytest.raises(VerifyError) as error:
        audit_appdir(appdir, arch="x86_64", floor=BULLSEYE)
    message = str(error.value)
    assert "\n" not in message
    assert "1 ELF(s) need a newer glibc/libstdc++ than the build base provides (glibc 2.31, GLIBCXX 3.4.28)" in message
    assert "usr/bin/hello needs GLIBC 2.34" in message and "libgreet" not in message


def test_the_floor_of_the_build_host_itself_passes(appdir):
    """What this host built needs no more than this host has (the `--base host` case)."""
    report = audit_appdir(appdir, arch="x86_64", floor=Floor(glibc="2.36", glibcxx="3.4.30"))
    assert report.min_glibc == "2.34"


def test_an_elf_needing_a_newer_libstdcxx_than_the_base_is_refused(appdir):
    """std::string's C++11 ABI is GLIBCXX_3.4.21: too new for a base whose libstdc++ stops at 3.4.20."""
    source = appdir / "usr/bin/strings.cc"
    source.write_text('#include <string>\n#include <cstdio>\n'
                      'int main(int c, char **v) { std::string s(v[0]); s += "x"; std::puts(s.c_str()); }\n')
    subprocess.run(["g++", str(source), "-o", str(appdir / "usr/bin/strings")], check=True)
    assert audit_appdir(appdir, arch="x86_64", floor=Floor(glibc="2.36", glibcxx="3.4.21")).min_glibcxx == "3.4.21"
    with pytest.raises(VerifyError, match=r"usr/bin/strings needs GLIBCXX 3.4.21") as error:
        audit_appdir(appdir, arch="x86_64", floor=Floor(glibc="2.36", glibcxx="3.4.20"))
    assert "usr/bin/hello" not in str(error.value)


def glibc_floor(paths) -> str:
    return highest(v for path in paths for v in read_elf(path).glibc_versions)


def test_glibc_floor_matches_readelf_for_system_binaries():
    binaries = [Path(shutil.which(name)) for name in ("ls", "tar", "bash", "gzip")]
    assert glibc_floor(binaries) == _readelf_glibc(binaries)
    for binary in binaries:
        assert glibc_floor([binary]) == _readelf_glibc([binary])
    assert elf_machine(binaries[0]) == "x86_64"


def test_static_binary_needs_no_glibc_version(tmp_path):
    _compile("gcc", ["-static", "-o", str(tmp_path / "static")], "int main(void){return 0;}\n", tmp_path)
    assert glibc_floor([tmp_path / "static"]) == ""


def test_empty_appdir_is_refused(tmp_path):
    (tmp_path / "AppRun").write_text("#!/bin/sh\n")
    with pytest.raises(VerifyError, match="no ELF files"):
        audit_appdir(tmp_path, arch="x86_64")


@pytest.fixture
def aarch64_cc() -> str:
    cc = shutil.which("aarch64-linux-gnu-gcc")
    if cc is None:
        pytest.skip("aarch64-linux-gnu-gcc not installed (apt-get install gcc-aarch64-linux-gnu)")
    return cc


def test_foreign_machine_is_refused(appdir, aarch64_cc, tmp_path):
    arm_lib = appdir / "usr/lib/libarm.so"
    _compile(aarch64_cc, ["-shared", "-fPIC", "-o", str(arm_lib)], GREET_C, tmp_path)
    assert elf_machine(arm_lib) == "aarch64"
    with pytest.raises(VerifyError, match=r"is for x86_64 but holds 1 ELF\(s\) of another arch: "
                                          r"usr/lib/libarm.so \(aarch64\)"):
        audit_appdir(appdir, arch="x86_64")


def test_aarch64_appdir_audits_per_arch(aarch64_cc, tmp_path):
    appdir = _build_appdir(tmp_path / "AppDir", cc=aarch64_cc)
    report = audit_appdir(appdir, arch="aarch64")
    assert (report.machine, report.elf_count) == ("aarch64", 2)
    assert report.min_glibc == _readelf_glibc([appdir / "usr/bin/hello"])
    with pytest.raises(VerifyError, match="of another arch"):
        audit_appdir(appdir, arch="x86_64")


def test_real_pyinstaller_onedir_if_built():
    """Optional: the release build's onedir, when a pipeline run left one (TEA_TEST_BUILD_DIR)."""
    build = Path(os.environ.get("TEA_TEST_BUILD_DIR", Path(__file__).parents[2] / "build")) / "x86_64"
    onedirs = sorted(p.parent.parent for p in build.glob("**/_internal/libpython3*.so*"))
    if not onedirs:
        pytest.skip(f"no PyInstaller onedir under {build}")
    report = audit_appdir(onedirs[0], arch="x86_64")
    assert report.elf_count > 10 and report.min_glibc


# --- the appdir step refuses the build ------------------------------------------------------------

def appdir_step_context(tmp_path: Path, glibc: str) -> tuple:
    """A run up to the appdir step of the plain flavor: a onedir whose `tea` was linked here (so it
    needs GLIBC_2.34), and a build host whose floor is `glibc`."""
    from release import appdir, config
    from release.artifacts import Artifact, Kind
    from release.pipeline import Context

    settings = config.resolve(flavor="python", model="gemma-3-270m", build_dir=tmp_path / "build")
    onedir = tmp_path / "onedir"
    onedir.mkdir()
    _compile("gcc", ["-o", str(onedir / "tea")], "int main(void) { return 0; }\n", tmp_path)
    ctx = Context(settings)
    ctx.artifacts.add(Artifact(Kind.ONEDIR, onedir, "digest", "python"))
    ctx.artifacts.add(Artifact(Kind.BUILD_HOST, tmp_path / "build-host.json", "digest", None,
                               {"description": {"base": "bullseye", "floor": {"glibc": glibc, "glibcxx": "3.4.28"}}}))
    return appdir.AppDirStep(settings.flavors[0]), ctx, appdir.appdir_path(settings, settings.flavors[0])


def test_the_appdir_step_refuses_an_elf_newer_than_the_build_base(tmp_path):
    step, ctx, target = appdir_step_context(tmp_path, "2.31")
    with pytest.raises(VerifyError, match=r"usr/bin/tea needs GLIBC 2.34"):
        step.run(ctx)
    assert not target.exists()  # nothing unaudited at the final path


def test_the_appdir_step_records_the_floor_for_the_runtime(tmp_path):
    step, ctx, target = appdir_step_context(tmp_path, "2.36")
    ctx.running = step.name
    assert step.run(ctx)["min_glibc"] == "2.34"
    assert (target / ".tea/glibc-floor").read_text() == "tea-python 2.34\n"
