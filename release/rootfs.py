"""A clean Debian system with no Python, for proving an AppImage runs anywhere.

`ensure_rootfs` makes a `debootstrap --variant=minbase` root once and caches it as a tarball;
`run_in_rootfs` unpacks it and runs a command inside, in private mount and PID namespaces with
only a few device nodes (and /dev/fuse only when asked), so the FUSE and the extract-and-run
paths of an AppImage are both tested on a system that has nothing of the build host.
No mirror is named here: debootstrap's default mirror is used.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from . import chroot, log, proc
from .arch import QEMU_BINFMT, binfmt_registered, host_arch, normalize
from .errors import BuildError, ReleaseError, VerifyError

DEBIAN_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PATH_DIRS = ("usr/local/bin", "usr/local/sbin", "usr/bin", "usr/sbin", "bin", "sbin")
DEVICES = ("null", "zero", "urandom")



@dataclass(frozen=True)
class Recipe:
    """What a build root adds to minbase: packages, and a last step run on the tree before packing."""

    include: tuple[str, ...]
    description: str  # says what `finish` does; part of the cache key, so changing it rebuilds
    finish: Callable[[Path], None] | None = None


def tarball_path(cache_dir: Path, arch: str, suite: str, recipe: Recipe | None = None) -> Path:
    if recipe:  # a build root (release/hosts/root.py): named by what it holds
        material = " ".join(sorted(recipe.include)) + "\n" + recipe.description
        key = hashlib.sha256(material.encode()).hexdigest()[:12]
        return cache_dir / "rootfs" / f"{suite}-{arch}-build-{key}.tar.zst"
    return cache_dir / "rootfs" / f"{suite}-{arch}-minbase.tar.zst"


def ensure_rootfs(cache_dir: Path, *, arch: str = "x86_64", suite: str = "bookworm",
                  recipe: Recipe | None = None) -> Path:
    """Return the cached minbase tarball (or build root, with a `recipe`), building it first if
    missing (once, even if concurrent)."""
    arch = normalize(arch)
    tarball = tarball_path(cache_dir, arch, suite, recipe)
    if tarball.exists():
        return tarball
    if recipe is None:
        require_root()  # a build root's caller said why it needs root (release/hosts/root.py)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with _locked(tarball.with_name(tarball.name + ".lock")):
        if not tarball.exists():
            emulated = "" if arch == host_arch() else ", emulated: ~6-10 min"
            log.info(f"debootstrap {suite} {arch} into the cache (once{emulated}): {tarball.name}")
            _build_tarball(tarball, arch, suite, recipe)
    return tarball


def require_root(what: str = "the minimal-system rootfs", fix: str = "run as root or skip the systems check "
                 "(--skip systems)", error: type[ReleaseError] = VerifyError) -> None:
    if os.geteuid() != 0:
        raise error(f"{what} needs root (debootstrap, chroot, mounts): {fix}")


@contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _build_tarball(tarball: Path, arch: str, suite: str, recipe: Recipe | None) -> None:
    """debootstrap into a temp dir beside the tarball, pack it, and rename into place."""
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix=".build-") as tmp:
        root = Path(tmp) / "root"
        started = time.monotonic()
        _debootstrap(root, arch, suite, recipe.include if recipe else ())
        if recipe and recipe.finish:
            recipe.finish(root)
        log.info(f"debootstrap {suite} {arch} took {time.monotonic() - started:.0f} s")
        partial = Path(tmp) / tarball.name
        proc.run(["tar", "--zstd", "--numeric-owner", "-C", root, "-cf", partial, "."],
                 what="packing the rootfs")
        os.replace(partial, tarball)
    log.info(f"cached rootfs {tarball} ({log.human_bytes(tarball.stat().st_size)})")


def _debootstrap(root: Path, arch: str, suite: str, include: tuple[str, ...] = ()) -> None:
    """In a private mount namespace: /proc or /sys that debootstrap leaves mounted in the target
    after a failure go away with it, instead of staying on the host under a dir we delete."""
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap not found: apt-get install debootstrap (or `invoke deps`)")
    base = ["unshare", "--mount", "debootstrap", "--variant=minbase", f"--arch={DEBIAN_ARCH[arch]}",
            *([f"--include={','.join(include)}"] if include else [])]
    if arch == host_arch():
        proc.run([*base, suite, root], what="debootstrap", stream=True)
        return
    _require_emulation(arch)
    proc.run([*base, "--foreign", suite, root], what="debootstrap (first stage)", stream=True)
    proc.run(["unshare", "--mount", "chroot", root, "/debootstrap/debootstrap", "--second-stage"],
             what="debootstrap (second stage, emulated)", stream=True)


def _require_emulation(arch: str) -> None:
    """A foreign second stage runs the target's binaries: binfmt must hand them to qemu."""
    if not binfmt_registered(arch):
        raise VerifyError(
            f"cannot build an {arch} rootfs: binfmt_misc has no enabled {QEMU_BINFMT[arch]} entry; "
            f"fix: apt-get install qemu-user-static binfmt-support && "
            f"update-binfmts --enable {QEMU_BINFMT[arch]} (mount binfmt_misc first if "
            f"/proc/sys/fs/binfmt_misc is empty)")


def run_in_rootfs(tarball: Path, workdir: Path, command: list[str], *, files: dict[str, Path],
                  fuse: bool, env: dict[str, str] | None = None,
                  timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `command` chrooted in the clean system; `files` maps paths inside to host files.

    The tarball is unpacked into `workdir/root` unless that already exists (pass a fresh
    workdir for a pristine system). The environment is clean: PATH, HOME, LANG plus `env`.
    """
    require_root()
    root = unpack_rootfs(tarball, workdir / "root")
    assert_no_python(root)
    for inside, host in files.items():
        _place(host, root / inside.lstrip("/"))
    clean_env = {"PATH": CLEAN_PATH, "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
    argv = chroot.enter(root, command, devices=DEVICES + (("fuse",) if fuse else ()), pid=True)
    return proc.run(argv, what=f"minimal-system run of {command[0]}", env=clean_env, clean_env=True,
                    timeout=timeout, check=False, error=VerifyError)


def unpack_rootfs(tarball: Path, root: Path) -> Path:
    """Unpack once into `root`, via a temp name: a half-unpacked tree is never used, and of two
    concurrent unpackers the second keeps the first one's tree."""
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.partial-"))
        try:
            proc.run(["tar", "--zstd", "--numeric-owner", "-C", partial, "-xpf", tarball],
                     what="unpacking the rootfs")
            partial.chmod(0o755)
            os.replace(partial, root)
        except OSError:
            if not root.exists():
                raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return root


def assert_no_python(root: Path) -> None:
    """The clean system must not be able to run Python, or the test proves nothing."""
    real_root = root.resolve()
    dirs = {(root / d).resolve() for d in PATH_DIRS}  # a set: bin -> usr/bin is listed once
    found = sorted(f"/{p.relative_to(real_root)}" for d in dirs if d.is_relative_to(real_root)
                   for p in d.glob("python*"))
    if found:
        raise VerifyError(f"the clean rootfs {root} has Python ({', '.join(found)}): "
                          f"delete its cached tarball to rebuild it")


def _place(host: Path, dest: Path) -> None:
    """Hard-link a file into the root (fast for a multi-GB AppImage), copy across filesystems."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        os.link(host, dest)
    except OSError:
        shutil.copy2(host, dest)
