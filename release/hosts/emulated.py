"""A build root of another arch (aarch64 on an x86_64 host): emulated Python, cross-compiled C.

- The root is the same pinned Debian as a native one, of the target arch; its programs (apt,
  CPython's build, pip, PyInstaller) run chrooted through qemu-user (binfmt_misc, set up by
  release.emulation).
- C and C++ (llama.cpp, the AppImage runtime) are cross-compiled on this host, because emulated
  C++ compilation takes hours: Debian's `<arch>-linux-gnu-gcc` with `--sysroot=<root>`, and for
  C++ the root's own libstdc++ headers and library, so what is built needs no newer glibc or
  libstdc++ than the root has. The llama.cpp wheel holds no Python extension (ctypes only), so
  it is built by this host's Python and retagged for the target.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

from .. import emulation, proc, rootfs
from .base import Description, compiler_rejects, compiler_version, pip_wheel
from .native import Host
from .root import BuildRoot


class EmulatedRoot(BuildRoot):
    kind = "emulated build root"

    @property
    def strip(self) -> str:  # type: ignore[override]
        return f"{self.settings.arch}-linux-gnu-strip"

    @property
    def cc(self) -> str:
        return f"{self.settings.arch}-linux-gnu-gcc"

    def packages(self) -> tuple[str, ...]:
        return self.settings.pins.cross_for(self.settings.arch).toolchain

    def identity(self) -> list[str]:
        return [*super().identity(), self.compiler_version()]

    def prepare(self) -> Description:
        emulation.prepare(self.settings.arch, self.settings.cache_dir, self.settings.pins.systems.suites[0])
        return super().prepare()

    def compiler_rejects(self, options: Sequence[str]) -> str | None:
        return compiler_rejects(proc.run, self.cc, options)

    def compiler_version(self) -> str:
        return compiler_version(proc.run, self.cc)

    def build_wheel(self, source: Path, out: Path, env: Mapping[str, str]) -> None:
        """pip wheel on this host with a CMake toolchain for the cross compilers; retagged."""
        toolchain = out.with_name(f"{out.name}-toolchain.cmake")
        gcc_include = proc.run([self.cc, "-print-file-name=include"], what="gcc include dir").stdout.strip()
        toolchain.write_text(toolchain_file(self.settings.arch, self.root, self.gcc_version(), gcc_include))
        cmake_args = f"{env.get('CMAKE_ARGS', '')} -DCMAKE_TOOLCHAIN_FILE={toolchain}".strip()
        pip_wheel(Host(self.settings), source, out, {**env, "CMAKE_ARGS": cmake_args})
        for wheel in out.glob("*.whl"):
            retag_wheel(wheel, f"linux_{self.settings.arch}")

    def gcc_version(self) -> str:
        """The major version of the root's own gcc (its libstdc++ headers are used)."""
        found = sorted((self.root / "usr/include/c++").iterdir(), key=lambda p: int(p.name.split(".")[0]))
        return found[-1].name

    def runtime_compiler(self, out_dir: Path) -> str:
        """A `cc` for runtime_build: the cross gcc with the runtime sysroot ([cross.<arch>] runtime_*)."""
        pins = self.settings.pins.cross_for(self.settings.arch)
        recipe = rootfs.Recipe(pins.runtime_packages, "the AppImage runtime's static libraries")
        tarball = rootfs.ensure_rootfs(self.settings.cache_dir, arch=self.settings.arch, suite=pins.runtime_suite,
                                       recipe=recipe)
        sysroot = rootfs.unpack_rootfs(tarball, self.settings.cache_dir / "buildroot" / tarball.name.removesuffix(".tar.zst"))
        out_dir.mkdir(parents=True, exist_ok=True)
        wrapper = out_dir / f"{self.settings.arch}-cc"
        partial = wrapper.with_name(f".{wrapper.name}.partial")
        partial.write_text(f'#!/bin/sh\nexec {self.cc} --sysroot="{sysroot}" "$@"\n')
        partial.chmod(0o755)
        os.replace(partial, wrapper)
        return str(wrapper)


def toolchain_file(arch: str, sysroot: Path, gcc_version: str, gcc_include: str) -> str:
    """CMake toolchain: Debian's cross gcc, compiling and linking against the root, not itself.

    Debian's cross gcc searches its own target headers and libraries (/usr/<triplet>: this
    machine's newer glibc) before any --sysroot, so they are taken out (-nostdinc, -nostdinc++)
    and the root's put in their place: its libc headers, its g++'s libstdc++ headers (the library
    PyInstaller bundles from the root then has every GLIBCXX symbol they use), and its crt files
    and libraries ahead of the compiler's (-B, -L). Only gcc's own intrinsics stay (`gcc_include`).
    """
    triplet = f"{arch}-linux-gnu"
    c_include = [gcc_include, f"{sysroot}/usr/include/{triplet}", f"{sysroot}/usr/include"]
    cxx_include = [f"{sysroot}/usr/include/c++/{gcc_version}", f"{sysroot}/usr/include/{triplet}/c++/{gcc_version}",
                   f"{sysroot}/usr/include/c++/{gcc_version}/backward", *c_include]
    c_flags = " ".join(["-nostdinc", *(f"-isystem {path}" for path in c_include)])
    cxx_flags = " ".join(["-nostdinc", "-nostdinc++", *(f"-isystem {path}" for path in cxx_include)])
    link = " ".join([f"-B{sysroot}/usr/lib/{triplet}/", f"-L{sysroot}/usr/lib/gcc/{triplet}/{gcc_version}",
                     f"-L{sysroot}/usr/lib/{triplet}", f"-L{sysroot}/lib/{triplet}"])
    return "\n".join([
        "set(CMAKE_SYSTEM_NAME Linux)",
        f"set(CMAKE_SYSTEM_PROCESSOR {arch})",
        f"set(CMAKE_SYSROOT {sysroot})",
        f"set(CMAKE_C_COMPILER {triplet}-gcc)",
        f"set(CMAKE_CXX_COMPILER {triplet}-g++)",
        f'set(CMAKE_C_FLAGS_INIT "{c_flags}")',
        f'set(CMAKE_CXX_FLAGS_INIT "{cxx_flags}")',
        *(f'set(CMAKE_{kind}_LINKER_FLAGS_INIT "{link}")' for kind in ("SHARED", "MODULE", "EXE")),
        "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)",
        ""])


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
