"""The clean-system runner: a real debootstrap minbase rootfs, real namespaces and chroot.

The rootfs tarball is built once per test session (in a dir shared by the xdist workers, whose
concurrent ensure_rootfs calls also exercise the lock); TEA_TEST_CACHE_DIR reuses one across runs.
Builder tests that only check caching, locking and atomic writes use a stand-in debootstrap.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from release.arch import binfmt_registered
from release.audit import excludelist
from release.errors import BuildError, ConfigError, VerifyError
from release.rootfs import assert_no_python, ensure_rootfs, run_in_rootfs, tarball_path
from release import appdir, systems
from test_appimage_format import build_appimage, runtime  # noqa: F401

pytestmark = [
    pytest.mark.rootfs,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: debootstrap, unshare and chroot"),
]

FUSE_PROBE_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
/* Mounts a FUSE filesystem (no daemon needed for the mount itself) and shows it in the mount table. */
int main(void) {
    char opts[128], line[512];
    int fd = open("/dev/fuse", O_RDWR);
    if (fd < 0) { perror("open /dev/fuse"); return 2; }
    mkdir("/tmp/fusemnt", 0755);
    snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0", fd);
    if (mount("probe", "/tmp/fusemnt", "fuse.probe", 0, opts) != 0) { perror("mount"); return 3; }
    FILE *mounts = fopen("/proc/self/mounts", "r");
    while (mounts && fgets(line, sizeof line, mounts))
        if (strstr(line, "fusemnt")) fputs(line, stdout);
    return umount2("/tmp/fusemnt", MNT_DETACH) == 0 ? 0 : 4;
}
"""
NEEDS_FUSE3_C = "int fuse_version(void);\nint main(void) { return fuse_version() > 0 ? 0 : 1; }\n"
# Excluded libs a minbase system lacks: GPU-driver libraries and the other arch's loader.
NOT_IN_MINBASE = {"libGL.so.1", "libGLX.so.0", "libGLdispatch.so.0", "libOpenGL.so.0",
                  "libEGL.so.1", "libgbm.so.1", "libglapi.so.0", "libdrm.so.2",
                  "ld-linux-aarch64.so.1"}


@pytest.fixture(scope="session")
def rootfs_cache(tmp_path_factory) -> Path:
    given = os.environ.get("TEA_TEST_CACHE_DIR")
    return Path(given) if given else tmp_path_factory.getbasetemp().parent / "shared-cache"


@pytest.fixture(scope="session")
def tarball(rootfs_cache) -> Path:
    return ensure_rootfs(rootfs_cache)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tarball) -> Path:
    """One unpacked rootfs per module: unpacking takes seconds, and these tests do not clash."""
    return tmp_path_factory.mktemp("rootfs-run")


def _cc(tmp_path: Path, source: str, name: str, *args: str) -> Path:
    (tmp_path / f"{name}.c").write_text(source)
    subprocess.run(["gcc", str(tmp_path / f"{name}.c"), "-o", str(tmp_path / name), *args],
                   check=True, capture_output=True)
    return tmp_path / name


def _stand_in(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / "debootstrap"
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)


@pytest.mark.slow
def test_rootfs_is_minbase_without_python(tarball, workdir):
    assert tarball.name == "bookworm-x86_64-minbase.tar.zst"
    done = run_in_rootfs(tarball, workdir, ["sh", "-c", "command -v python3 || echo no-python; "
                                            "dpkg-query -W -f '${Package}\\n' | wc -l"],
                         files={}, fuse=False)
    lines = done.stdout.split()
    assert (done.returncode, lines[0]) == (0, "no-python")
    assert 50 < int(lines[1]) < 200  # minbase: ~90 packages, not a full system
    assert_no_python(workdir / "root")


@pytest.mark.slow
def test_excluded_libraries_are_on_a_minimal_system(tarball, workdir):
    """The excludelist promises these libs on every target; minbase is the smallest target."""
    root = workdir / "root"
    run_in_rootfs(tarball, workdir, ["true"], files={}, fuse=False)
    present = {p.name for d in ("usr/lib/x86_64-linux-gnu", "usr/lib64") for p in (root / d).glob("*")}
    assert excludelist() - present == NOT_IN_MINBASE


@pytest.mark.slow
def test_static_binary_runs_inside_with_a_clean_environment(tarball, workdir, tmp_path):
    hello = _cc(tmp_path, '#include <stdio.h>\nint main(void){puts("static hello");return 0;}\n',
                "hello", "-static")
    done = run_in_rootfs(tarball, workdir, ["sh", "-c", "/opt/t/hello && env | sort && ls /proc"],
                         files={"/opt/t/hello": hello}, fuse=False, env={"TEA_X": "1"})
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr
    assert lines[0] == "static hello"
    assert {"HOME=/root", "LANG=C.UTF-8", "TEA_X=1"} <= set(lines)
    assert not [line for line in lines if line.startswith(("PYTEST", "VIRTUAL_ENV"))]
    assert len([p for p in lines if p.isdigit()]) < 6  # a new PID namespace: only our processes


@pytest.mark.slow
def test_host_binary_needing_a_missing_lib_fails_inside(tarball, workdir, tmp_path):
    probe = _cc(tmp_path, NEEDS_FUSE3_C, "needs-fuse3", "-lfuse3")
    assert subprocess.run([str(probe)]).returncode == 0  # fine on the build host
    done = run_in_rootfs(tarball, workdir, ["/opt/t/needs-fuse3"],
                         files={"/opt/t/needs-fuse3": probe}, fuse=True)
    assert done.returncode == 127
    assert "libfuse3.so.3: cannot open shared object file" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("fuse", [False, True])
def test_dev_fuse_only_when_asked(tarball, workdir, fuse):
    done = run_in_rootfs(tarball, workdir, ["sh", "-c", "test -e /dev/fuse; echo $?; ls /dev"],
                         files={}, fuse=fuse)
    lines = done.stdout.split()
    assert lines[0] == ("0" if fuse else "1")
    assert set(lines[1:]) == {"null", "zero", "urandom"} | ({"fuse"} if fuse else set())


@pytest.mark.slow
def test_fuse_mount_works_inside(tarball, workdir, tmp_path):
    probe = _cc(tmp_path, FUSE_PROBE_C, "fuse-probe", "-static")
    done = run_in_rootfs(tarball, workdir, ["/opt/t/fuse-probe"], files={"/opt/t/fuse-probe": probe},
                         fuse=True)
    assert done.returncode == 0, done.stderr
    assert "/tmp/fusemnt fuse.probe" in done.stdout
    without = run_in_rootfs(tarball, workdir, ["/opt/t/fuse-probe"],
                            files={"/opt/t/fuse-probe": probe}, fuse=False)
    assert without.returncode == 2 and "open /dev/fuse" in without.stderr


@pytest.mark.slow
def test_mounts_do_not_leak_to_the_host(tarball, workdir):
    run_in_rootfs(tarball, workdir, ["true"], files={}, fuse=True)
    assert str(workdir) not in Path("/proc/self/mounts").read_text()


@pytest.mark.slow
def test_rootfs_with_python_is_refused(tarball, tmp_path):
    run_in_rootfs(tarball, tmp_path, ["true"], files={}, fuse=False)
    (tmp_path / "root/usr/bin/python3").write_text("#!/bin/sh\n")
    with pytest.raises(VerifyError, match=r"has Python \(/usr/bin/python3\)"):
        run_in_rootfs(tarball, tmp_path, ["true"], files={}, fuse=False)


@pytest.mark.slow
def test_timeout_is_one_line(tarball, workdir):
    with pytest.raises(VerifyError, match="timed out after 1 s"):
        run_in_rootfs(tarball, workdir, ["sleep", "30"], files={}, fuse=False, timeout=1)


@pytest.mark.slow
def test_second_call_uses_the_cache(tarball, rootfs_cache, tmp_path, monkeypatch):
    _stand_in(tmp_path / "bin", "echo must not run >&2; exit 1\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    mtime = tarball.stat().st_mtime_ns
    assert ensure_rootfs(rootfs_cache) == tarball
    assert tarball.stat().st_mtime_ns == mtime


def test_builder_passes_minbase_and_packs_the_tree(tmp_path, monkeypatch):
    """Stand-in debootstrap: records its arguments, builds a tiny tree, takes a moment."""
    _stand_in(tmp_path / "bin", 'echo "$@" >> "$CALLS"; sleep 1; root=$(eval echo \\${$#})\n'
              'mkdir -p "$root/etc" && echo minbase > "$root/etc/marker"\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("CALLS", str(tmp_path / "calls"))
    results: list[Path] = []
    builders = [threading.Thread(target=lambda: results.append(ensure_rootfs(tmp_path / "cache")))
                for _ in range(2)]
    for builder in builders:
        builder.start()
    for builder in builders:
        builder.join()
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 1  # the second builder waited for the lock, then used the tarball
    args = calls[0].split()
    assert args[:3] == ["--variant=minbase", "--arch=amd64", "bookworm"] and len(args) == 4
    assert Path(args[3]).parent.parent == tmp_path / "cache/rootfs"  # built beside, then renamed
    assert results == [tarball_path(tmp_path / "cache", "x86_64", "bookworm")] * 2
    listing = subprocess.run(["tar", "--zstd", "-tf", str(results[0])], capture_output=True,
                             text=True, check=True).stdout.split()
    assert "./etc/marker" in listing
    assert sorted(p.name for p in (tmp_path / "cache/rootfs").iterdir()) == [
        results[0].name, results[0].name + ".lock"]


def test_failed_build_leaves_no_tarball(tmp_path, monkeypatch):
    _stand_in(tmp_path / "bin", 'root=$(eval echo \\${$#}); mkdir -p "$root/etc"; exit 3\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    with pytest.raises(BuildError, match="debootstrap failed with exit code 3"):
        ensure_rootfs(tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache/rootfs").iterdir()] == ["bookworm-x86_64-minbase.tar.zst.lock"]


def test_foreign_arch_without_binfmt_says_how_to_fix(tmp_path):
    if binfmt_registered("aarch64"):
        pytest.skip("aarch64 binfmt is registered here: a real foreign build would start")
    with pytest.raises(VerifyError, match="update-binfmts --enable qemu-aarch64"):
        ensure_rootfs(tmp_path / "cache", arch="arm64")


def test_unknown_arch_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown arch 'riscv64'"):
        ensure_rootfs(tmp_path / "cache", arch="riscv64")


def test_non_root_is_refused_with_one_line(as_nobody):
    run, shared = as_nobody
    done = run("import sys; from pathlib import Path; from release.rootfs import ensure_rootfs\n"
               "from release.errors import VerifyError\n"
               "try: ensure_rootfs(Path(sys.argv[1]))\n"
               "except VerifyError as e: print(e); sys.exit(6)\n", f"{shared}/cache")
    assert done.returncode == 6, done.stderr
    assert done.stdout.startswith("the minimal-system rootfs needs root")


def test_missing_debootstrap_says_how_to_install(tmp_path, monkeypatch):
    tools = tmp_path / "bin"
    tools.mkdir()
    monkeypatch.setenv("PATH", str(tools))
    with pytest.raises(BuildError, match="apt-get install debootstrap"):
        ensure_rootfs(tmp_path / "cache")


# --- the systems check's decision, with the real runtime in the real minimal system -------------------

# A stand-in for tea (the real AppImages go through this check in every `invoke test` release): it
# answers what the check asks, so this test is about the check's own decisions.
STAND_IN = """#!/bin/sh
case "$1" in
  --version) echo "tea 9.9.9" ;;
  --impl) echo python ;;
  run) case "$2" in
         *hello.yaml) echo '{"message": "Hello, release!"}' ;;
         *) echo "llama-cpp-python not installed. Install with: pip install the_edge_agent[llm-local]" >&2; exit 1 ;;
       esac ;;
esac
"""


def stand_in_appimage(runtime: Path, tmp_path: Path, floor: str) -> Path:  # noqa: F811
    tree = tmp_path / "AppDir"
    tree.mkdir()
    (tree / "AppRun").write_text(STAND_IN)
    (tree / "AppRun").chmod(0o755)
    appdir.write_floor(tree, "tea-demo", floor)
    return build_appimage(runtime, tree, tmp_path / "Demo-x86_64.AppImage")


@pytest.mark.slow
@pytest.mark.parametrize("floor, expected", [
    ("9.99", ["refused (FUSE)", "refused (no FUSE)"]),
    ("2.4", ["smoke+functional (FUSE)", "smoke+functional (no FUSE)"])])
def test_systems_check_expects_the_refusal_exactly_below_the_floor(tarball, runtime, tmp_path, floor,  # noqa: F811
                                                                   expected):
    image = stand_in_appimage(runtime, tmp_path, floor)
    assert systems.check_in_rootfs(tarball, "x86_64", image, "9.9.9", product="tea-demo", min_glibc=floor,
                                   model_filename=None, llm=False, prolog=False) == expected


@pytest.mark.slow
def test_systems_check_fails_when_an_old_system_is_not_refused(tarball, runtime, tmp_path):  # noqa: F811
    """The image says it needs 2.4, the check believes 9.99: the app starting is a failure."""
    image = stand_in_appimage(runtime, tmp_path, "2.4")
    with pytest.raises(VerifyError, match=r"expected exit != 0 and only 'tea-demo needs glibc >= 9.99; this system "
                                          r"has 2\.\d+' on stderr, got exit 0"):
        systems.check_in_rootfs(tarball, "x86_64", image, "9.9.9", product="tea-demo", min_glibc="9.99",
                                model_filename=None, llm=False, prolog=False)


@pytest.mark.slow
def test_systems_check_wants_the_exact_refusal_line(tarball, runtime, tmp_path):  # noqa: F811
    image = stand_in_appimage(runtime, tmp_path, "9.99")
    with pytest.raises(VerifyError, match=r"only 'tea-other needs glibc >= 9.99; [^']*' on stderr, got exit 1, "
                                          r"stderr 'tea-demo needs glibc >= 9.99"):
        systems.check_in_rootfs(tarball, "x86_64", image, "9.9.9", product="tea-other", min_glibc="9.99",
                                model_filename=None, llm=False, prolog=False)
