"""Building a foreign arch (aarch64 on an x86_64 host): emulation for Python, cross compilers for C.

- binfmt_misc hands the target's ELF files to qemu-user; the pipeline registers it when root.
- llama.cpp is cross-compiled on the host (emulated C++ compilation takes hours) with a CMake
  toolchain file, and the wheel is retagged for the target (it holds no Python extension, only
  ctypes-loaded libraries, so the host Python's build is valid for the target's).
- An arm64 Debian build root (debootstrap, cached as a tarball, unpacked once in the cache) holds
  Python and the -dev libraries. pip and PyInstaller run inside it under emulation, chrooted,
  with the project, build and cache dirs bind-mounted at their host paths (no path translation).
- The builtin runtime is cross-compiled against the build root's static libraries (`--sysroot`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from . import arch as arches
from . import config, deps, freeze, log, proc, rootfs
from .config import REPO, Flavor, Settings
from .errors import ConfigError

SUITE = "bookworm"
BUILD_ROOT_PYTHON = "/usr/bin/python3"
VENVS_INSIDE = "/opt/venvs"

# Runs as PID 1 of a private mount namespace; unlike rootfs._ENTER the network stays (pip).
_ENTER = r"""
set -e
root=$1; shift
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777 tmp "$root/tmp"
while [ "$1" != "--" ]; do
    mkdir -p "$root$1"; mount --bind "$1" "$root$1"; shift
done
shift
chroot "$root" "$@"
"""


def is_cross(settings: Settings) -> bool:
    return settings.arch != arches.host_arch()


# --- emulation -----------------------------------------------------------------------------------

def binfmt_fix(arch: str) -> str:
    entry = arches.QEMU_BINFMT[arch]
    return (f"apt-get install qemu-user-static binfmt-support && "
            f"mount -t binfmt_misc binfmt_misc {arches.BINFMT_DIR} (if empty) && update-binfmts --enable {entry}")


def ensure_binfmt(arch: str, binfmt_dir: Path = arches.BINFMT_DIR, *, register: bool | None = None) -> None:
    """Register qemu-user for `arch` when root (a fresh CI machine has nothing); else one line with the fix."""
    if register is None:
        register = os.geteuid() == 0
    if not arches.binfmt_registered(arch, binfmt_dir) and register and shutil.which("update-binfmts"):
        if not (binfmt_dir / "register").exists():
            proc.run(["mount", "-t", "binfmt_misc", "binfmt_misc", binfmt_dir], check=False)
        proc.run(["update-binfmts", "--enable", arches.QEMU_BINFMT[arch]], check=False)
        if arches.binfmt_registered(arch, binfmt_dir):
            log.info(f"registered {arches.QEMU_BINFMT[arch]} with binfmt_misc (emulated {arch})")
    if not arches.binfmt_registered(arch, binfmt_dir):
        raise ConfigError(f"this {arches.host_arch()} host cannot run {arch} binaries (no enabled "
                          f"{arches.QEMU_BINFMT[arch]} binfmt entry); as root run: {binfmt_fix(arch)}")
    ensure_appimage_binfmt(arch, binfmt_dir, register=register)


# qemu's binfmt entries require zeros in ELF ident bytes 8..15, where a type-2 AppImage has `AI\x02`:
# without an entry of their own, foreign AppImages fail with "Exec format error".
E_MACHINE = {"aarch64": b"\xb7\x00", "x86_64": b"\x3e\x00"}


def appimage_binfmt_rule(arch: str, interpreter: str, flags: str) -> str:
    """The binfmt_misc `register` line: qemu's ELF match, but with `AI\x02` at offset 8."""
    magic = b"\x7fELF\x02\x01\x01\x00AI\x02\x00\x00\x00\x00\x00\x02\x00" + E_MACHINE[arch]
    mask = b"\xff" * 7 + b"\x00" + b"\xff" * 8 + b"\xfe\xff\xff\xff"
    return f":appimage-{arch}:M::{_escape(magic)}:{_escape(mask)}:{interpreter}:{flags}"


def _escape(data: bytes) -> str:
    return "".join(f"\\x{byte:02x}" for byte in data)


def ensure_appimage_binfmt(arch: str, binfmt_dir: Path, *, register: bool) -> None:
    """Hand `arch` AppImages to the interpreter (and flags) of qemu's own entry."""
    try:
        if (binfmt_dir / f"appimage-{arch}").read_text().startswith("enabled"):
            return
    except OSError:
        pass
    qemu = (binfmt_dir / arches.QEMU_BINFMT[arch]).read_text().splitlines()
    interpreter = next(line.split(None, 1)[1] for line in qemu if line.startswith("interpreter "))
    flags = next((line.split(None, 1)[1] for line in qemu if line.startswith("flags:")), "").strip()
    rule = appimage_binfmt_rule(arch, interpreter, flags)
    if not register:
        raise ConfigError(f"{arch} AppImages cannot run here (qemu's binfmt entry does not match their "
                          f"AI\\x02 header); as root run: echo '{rule}' > {binfmt_dir / 'register'}")
    (binfmt_dir / "register").write_text(rule)
    log.info(f"registered appimage-{arch} with binfmt_misc ({arch} AppImages run through {interpreter})")


def prepare_emulation(arch: str, settings: Settings | None = None) -> str:
    """arch.require_runnable, after registering emulation, and with the target's loader for qemu.

    Dynamic target programs (the frozen tea) need the target's ld.so, libc and zlib: qemu-user
    looks for them under QEMU_LD_PREFIX, here the build root (a Debian of the target arch).
    """
    if arch != arches.host_arch() and arch in arches.QEMU_BINFMT:
        ensure_binfmt(arch)
        root = build_root(settings or config.resolve(arch=arch))
        os.environ.setdefault("QEMU_LD_PREFIX", str(root))
    return arches.require_runnable(arch)


# --- llama-cpp-python, cross-compiled ------------------------------------------------------------

def toolchain_file(arch: str) -> str:
    """CMake toolchain for Debian's `<arch>-linux-gnu-gcc/g++`; host programs, target everything else."""
    return "\n".join([
        "set(CMAKE_SYSTEM_NAME Linux)",
        f"set(CMAKE_SYSTEM_PROCESSOR {arch})",
        f"set(CMAKE_C_COMPILER {arch}-linux-gnu-gcc)",
        f"set(CMAKE_CXX_COMPILER {arch}-linux-gnu-g++)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)",
        ""])


def drop_cpu_variants(cmake_lists: Path, variants: list[str]) -> None:
    """Remove CPU variants the cross compiler cannot target (gcc 12 knows no -march=armv9.2-a)."""
    lines = cmake_lists.read_text().splitlines(keepends=True)
    kept = [line for line in lines
            if not any(line.strip().startswith(f"ggml_add_cpu_backend_variant({v} ") or
                       line.strip() == f"ggml_add_cpu_backend_variant({v})" for v in variants)]
    if len(lines) - len(kept) != len(variants):
        raise ConfigError(f"{cmake_lists}: expected to drop CPU variants {variants}, dropped "
                          f"{len(lines) - len(kept)}: update [cross] drop_cpu_variants in release.toml")
    cmake_lists.write_text("".join(kept))


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest},{len(data)}"


def retag_wheel(wheel: Path, platform_tag: str) -> Path:
    """Give a py3-none wheel another platform tag: file name, WHEEL `Tag:` and its RECORD line."""
    name, version, python, abi, _ = wheel.name[:-4].split("-")
    target = wheel.with_name(f"{name}-{version}-{python}-{abi}-{platform_tag}.whl")
    partial = target.with_name(f".{target.name}.partial")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as dst:
        members = {info.filename: src.read(info) for info in src.infolist()}
        dist_info = next(n.split("/")[0] for n in members if n.endswith(".dist-info/WHEEL"))
        wheel_meta = "".join(f"Tag: {python}-{abi}-{platform_tag}\n" if line.startswith("Tag:") else line
                             for line in members[f"{dist_info}/WHEEL"].decode().splitlines(keepends=True))
        members[f"{dist_info}/WHEEL"] = wheel_meta.encode()
        record = [f"{dist_info}/WHEEL,{_record_hash(members[f'{dist_info}/WHEEL'])}"
                  if line.startswith(f"{dist_info}/WHEEL,") else line
                  for line in members[f"{dist_info}/RECORD"].decode().splitlines()]
        members[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
        for member, data in members.items():
            dst.writestr(member, data)
    os.replace(partial, target)
    if target != wheel:
        wheel.unlink()
    return target


def ensure_llama_wheel(settings: Settings) -> Path:
    """The cached cross-built wheel (same cache dir scheme as the native one); built when missing."""
    wheel_dir = deps.llama_wheel_dir(settings)
    existing = sorted(wheel_dir.glob("llama_cpp_python-*.whl"))
    if existing:
        return existing[0]
    if settings.offline:
        raise ConfigError(f"offline and no {settings.arch} llama-cpp-python wheel in {wheel_dir}: run online once")
    deps.ensure_apt_packages(settings.pins.cross_for(settings.arch).toolchain)
    wheel_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheel_dir.parent, prefix=".cross-") as tmp:
        built = _cross_build_wheel(settings, Path(tmp))
        retag_wheel(built, f"linux_{settings.arch}")
        os.replace(built.parent, wheel_dir)
    return ensure_llama_wheel(settings)


def _cross_build_wheel(settings: Settings, work: Path) -> Path:
    python_pins, pins = settings.pins.python, settings.pins.cross_for(settings.arch)
    version = python_pins.llama_cpp_python
    log.info(f"cross-compiling llama-cpp-python {version} for {settings.arch} (~15 min on 2 cores, once); "
             f"log: {proc.current_log()}")
    pip = [sys.executable, "-m", "pip"]
    proc.run([*pip, "download", "--no-deps", "--no-binary", ":all:", "-d", work, f"llama-cpp-python=={version}"],
             what="downloading the llama-cpp-python sdist")
    with tarfile.open(next(work.glob("llama_cpp_python-*.tar.gz"))) as sdist:
        sdist.extractall(work, filter="data")
    source = next(p for p in work.iterdir() if p.is_dir())
    drop_cpu_variants(source / "vendor/llama.cpp/ggml/src/CMakeLists.txt", list(pins.drop_cpu_variants))
    toolchain = work / "toolchain.cmake"
    toolchain.write_text(toolchain_file(settings.arch))
    cmake_args = [*python_pins.llama_cmake_args, f"-DCMAKE_TOOLCHAIN_FILE={toolchain}"]
    proc.run([*pip, "wheel", "--no-deps", "--no-cache-dir", "-w", work / "wheel", source],
             what="cross-compiling llama-cpp-python", stream=True,
             env={"CMAKE_ARGS": " ".join(cmake_args), "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)})
    return next((work / "wheel").glob("llama_cpp_python-*.whl"))


# --- the build root ------------------------------------------------------------------------------

def build_root(settings: Settings) -> Path:
    """The unpacked build root (in the cache: its venvs are reused by every build dir)."""
    tarball = rootfs.ensure_rootfs(settings.cache_dir, arch=settings.arch, suite=SUITE,
                                   include=settings.pins.cross_for(settings.arch).build_root_packages)
    return rootfs.unpack_rootfs(tarball, settings.cache_dir / "buildroot" / tarball.name.split(".")[0])


def bind_dirs(settings: Settings) -> list[Path]:
    """Host dirs visible at the same path inside the build root."""
    dirs = {REPO, settings.build_dir, settings.cache_dir / "wheels", settings.cache_dir / "downloads"}
    for path in dirs:
        path.mkdir(parents=True, exist_ok=True)
    return sorted(p.resolve() for p in dirs)


def pip_config_env() -> dict[str, str]:
    """pip settings of the host that make sense inside too (the index, its CA), not local wheel dirs."""
    return {k: v for k, v in os.environ.items() if k.startswith("PIP_") and k != "PIP_FIND_LINKS"}


def sync_host_files(root: Path) -> None:
    """The host's name resolution and pip's CA bundle (a proxy's CA, on some networks), copied in."""
    for name in ("/etc/resolv.conf", os.environ.get("PIP_CERT", "")):
        if name and Path(name).is_file():
            target = root / name.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(name, target)


def inside_command(settings: Settings, command: list[str], *, inherit_env: bool = False) -> list[str]:
    """`command` run chrooted in the build root, as a host argv: with a clean environment (plus
    the index settings of pip), or with the caller's (minus qemu's host-side loader prefix)."""
    root = build_root(settings)
    sync_host_files(root)
    if inherit_env:
        env = ["/usr/bin/env", "-u", "QEMU_LD_PREFIX"]
    else:
        env = ["/usr/bin/env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8",
               *(f"{k}={v}" for k, v in pip_config_env().items())]
    return ["unshare", "--mount", "--fork", "sh", "-c", _ENTER, "enter", str(root),
            *map(str, bind_dirs(settings)), "--", *env, *command]


def run_inside(settings: Settings, command: list[str], *, what: str, env: dict[str, str] | None = None) -> None:
    extra = [f"{k}={v}" for k, v in (env or {}).items()]
    return proc.run(inside_command(settings, ["/usr/bin/env", *extra, *command]), what=what,
                    stream=True)


# --- venv and freeze inside the build root -------------------------------------------------------

def venv_inside(settings: Settings, flavor: Flavor) -> str:
    material = [list(settings.pins.cross_for(settings.arch).build_root_packages), deps.venv_packages(settings, flavor)]
    if flavor.llm:
        material.append(str(deps.llama_wheel_dir(settings)))
    key = hashlib.sha256(json.dumps(material).encode()).hexdigest()[:16]
    return f"{VENVS_INSIDE}/{'llm' if flavor.llm else 'plain'}-{key}"


def venv_dir(settings: Settings, flavor: Flavor) -> Path:
    """Host path of the venv inside the build root (its programs run only chrooted)."""
    return build_root(settings) / venv_inside(settings, flavor).lstrip("/")


def ensure_venv(settings: Settings, flavor: Flavor) -> Path:
    target, inside = venv_dir(settings, flavor), venv_inside(settings, flavor)
    if (target / ".complete").exists():
        return target
    if settings.offline:
        raise ConfigError(f"offline and the {settings.arch} build venv {target} does not exist: run online once")
    packages = deps.venv_packages(settings, flavor)
    if flavor.llm:
        packages.append(str(ensure_llama_wheel(settings)))
    shutil.rmtree(target, ignore_errors=True)
    run_inside(settings, [BUILD_ROOT_PYTHON, "-m", "venv", inside], what="creating the emulated build venv")
    run_inside(settings, [f"{inside}/bin/pip", "install", "-q", *packages],
               what=f"installing build deps into the {settings.arch} venv (emulated)")
    (target / ".complete").touch()
    return target


def freeze_in_build_root(settings: Settings, flavor: Flavor) -> dict:
    """freeze.FreezeStep.run for a foreign arch: pip and PyInstaller inside, strip with the cross binutils."""
    inside = venv_inside(settings, flavor)
    work = freeze.onedir(settings, flavor).parent.parent
    app = freeze.app_dir(settings, flavor)
    for stale in (work, app):
        shutil.rmtree(stale, ignore_errors=True)
    work.mkdir(parents=True)
    run_inside(settings, [f"{inside}/bin/pip", "install", "-q", "--no-deps", "--no-compile", "--target",
                          str(app), str(freeze.APP_SOURCE)],
               what="installing the_edge_agent for the build (emulated)")
    entry = freeze.write_entry_scripts(work)
    args = freeze.pyinstaller_args(flavor, work, venv_dir(settings, flavor))
    args = [a.replace(str(build_root(settings)), "") if a.startswith(str(build_root(settings))) else a
            for a in args]
    run_inside(settings, [f"{inside}/bin/pyinstaller", *args, str(entry)], what="PyInstaller (emulated)",
               env={"PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "0", "PYTHONPATH": str(app)})
    onedir = freeze.onedir(settings, flavor)
    deduped = freeze.dedupe_shared_libs(onedir)
    freeze.strip_own_libraries(onedir, strip=f"{settings.arch}-linux-gnu-strip")
    freeze.check_frozen(onedir / "tea", settings.version)
    return {"onedir": str(onedir), "deduplicated_libs": deduped, "built_in": "emulated build root"}


def source_tea(settings: Settings, flavor: Flavor) -> tuple[list[str], dict[str, str]]:
    """The unfrozen tea of this build, run chrooted in the build root (the reference answer)."""
    inside = venv_inside(settings, flavor)
    command = inside_command(settings, [f"{inside}/bin/python", "-c", freeze.ENTRY_SCRIPT], inherit_env=True)
    return command, {"PYTHONPATH": str(freeze.app_dir(settings, flavor))}


# --- the builtin runtime -------------------------------------------------------------------------

def runtime_compiler(settings: Settings, out_dir: Path) -> str:
    """A `cc` for runtime_build: the cross gcc with the build root as sysroot (its static -dev libs)."""
    deps.ensure_apt_packages(settings.pins.cross_for(settings.arch).toolchain)
    root = build_root(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    wrapper = out_dir / f"{settings.arch}-cc"
    partial = wrapper.with_name(f".{wrapper.name}.partial")
    partial.write_text(f'#!/bin/sh\nexec {settings.arch}-linux-gnu-gcc --sysroot="{root}" "$@"\n')
    partial.chmod(0o755)
    os.replace(partial, wrapper)
    return str(wrapper)
