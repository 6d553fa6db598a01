"""Dependency audit of an AppDir: will every ELF in it load on a clean target system?

Each `DT_NEEDED` must be found inside the AppDir — by soname in a directory holding libraries
(PyInstaller puts its lib dir on LD_LIBRARY_PATH at run time) or through the ELF's own
RUNPATH/RPATH with `$ORIGIN` expanded — or be on the excludelist of libraries every target has
(release/excludelist.txt). Libraries that are only dlopen()ed are out of scope. The highest
`GLIBC_x.y` symbol version any ELF needs is the AppImage's minimum glibc; with a floor (the build
base's glibc and libstdc++, release.floor) an ELF needing a newer `GLIBC_`/`GLIBCXX_` version
fails the audit: it would not load on the oldest system the release promises to run on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Iterable

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

from .errors import VerifyError
from .floor import GLIBC, GLIBCXX, Floor, highest, newer

ELF_MAGIC = b"\x7fELF"
MACHINES = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64"}
EXCLUDELIST = Path(__file__).with_name("excludelist.txt")
SHOWN_IN_ERRORS = 5
_ORIGIN = re.compile(r"\$(ORIGIN\b|\{ORIGIN\})")


@dataclass(frozen=True)
class ElfInfo:
    """What the audit needs from one ELF, read once."""

    path: Path
    machine: str
    needed: tuple[str, ...]
    search_dirs: tuple[Path, ...]  # RUNPATH/RPATH entries, $ORIGIN expanded, resolved
    glibc_versions: frozenset[str]
    glibcxx_versions: frozenset[str]


@dataclass(frozen=True)
class AuditReport:
    min_glibc: str  # "" when no ELF needs a versioned glibc symbol
    min_glibcxx: str  # the same for libstdc++
    unresolved: dict[str, list[str]]  # ELF path relative to the AppDir -> missing sonames
    elf_count: int
    machine: str
    elfs: tuple[ElfInfo, ...] = ()


def audit_appdir(appdir: Path, *, arch: str, library_path: list[str] | None = None,
                 floor: Floor | None = None) -> AuditReport:
    """Scan the AppDir; raise VerifyError (one line) on a foreign ELF, an unresolved library, or
    (given a `floor`) an ELF that needs a newer glibc or libstdc++ than the floor provides.

    `library_path` (AppDir-relative dirs that the launcher puts on LD_LIBRARY_PATH) makes the
    audit exact, like ld.so: RUNPATH/RPATH plus those dirs. Without it every AppDir directory
    holding libraries counts, which suits PyInstaller (its bootloader sets the path itself).
    """
    report, foreign = scan_appdir(appdir, arch=arch, library_path=library_path)
    if report.elf_count == 0:
        raise VerifyError(f"AppDir {appdir} holds no ELF files: nothing to run")
    if foreign:
        raise VerifyError(f"AppDir {appdir} is for {arch} but holds {len(foreign)} ELF(s) of "
                          f"another arch: {_listing(foreign)}")
    if report.unresolved:
        count = sum(len(libs) for libs in report.unresolved.values())
        needs = [f"{elf} needs {', '.join(libs)}" for elf, libs in report.unresolved.items()]
        raise VerifyError(f"AppDir audit: {count} unresolved librar{'y' if count == 1 else 'ies'}: "
                          f"{_listing(needs)} (bundle them, or extend {EXCLUDELIST.name} if every "
                          f"target system has them)")
    if floor is not None:
        check_floor(appdir, report, floor)
    return report


def check_floor(appdir: Path, report: AuditReport, floor: Floor) -> None:
    """One line naming the ELFs that need more than the build base provides."""
    too_new = [f"{_rel(elf.path, appdir)} needs {library} {needed}"
               for elf in report.elfs
               for library, needed, provided in (("GLIBC", highest(elf.glibc_versions), floor.glibc),
                                                 ("GLIBCXX", highest(elf.glibcxx_versions), floor.glibcxx))
               if newer(needed, provided)]
    if too_new:
        raise VerifyError(f"AppDir audit: {len(too_new)} ELF(s) need a newer glibc/libstdc++ than the build base "
                          f"provides (glibc {floor.glibc}, GLIBCXX {floor.glibcxx or 'none'}): {_listing(too_new)} "
                          f"(build them in the build root, or raise [build] base)")


def scan_appdir(appdir: Path, *, arch: str,
                 library_path: list[str] | None = None) -> tuple[AuditReport, list[str]]:
    """The audit without judgement: the report and the ELFs whose machine is not `arch`."""
    appdir = appdir.resolve()
    paths, libraries = _walk(appdir)
    elfs = [read_elf(path) for path in paths]
    excluded = excludelist()
    shared = (list(libraries) if library_path is None
              else [Path(os.path.realpath(appdir / d)) for d in library_path])
    unresolved = {}
    for elf in elfs:
        dirs = [*elf.search_dirs, *shared]
        missing = [name for name in elf.needed
                   if name not in excluded and not any(name in libraries.get(d, ()) for d in dirs)]
        if missing:
            unresolved[_rel(elf.path, appdir)] = missing
    foreign = [f"{_rel(elf.path, appdir)} ({elf.machine})" for elf in elfs if elf.machine != arch]
    report = AuditReport(min_glibc=highest(v for elf in elfs for v in elf.glibc_versions),
                         min_glibcxx=highest(v for elf in elfs for v in elf.glibcxx_versions),
                         unresolved=unresolved, elf_count=len(elfs), machine=arch, elfs=tuple(elfs))
    return report, foreign


def elf_machine(path: Path) -> str:
    """"x86_64" / "aarch64" (other machines by their lower-cased ELF name, e.g. "em_386")."""
    with path.open("rb") as handle:
        try:
            return _machine(ELFFile(handle))
        except ELFError as exc:  # a damaged or hostile header: one line, not a traceback
            raise VerifyError(f"{path}: not a readable ELF file ({exc})") from None


def read_elf(path: Path) -> ElfInfo:
    with path.open("rb") as handle:
        elf = ELFFile(handle)
        needed, search = _dynamic(elf, path.parent)
        versions = _needed_versions(elf)
        return ElfInfo(path=path, machine=_machine(elf), needed=needed, search_dirs=search,
                       glibc_versions=_matching(GLIBC, versions), glibcxx_versions=_matching(GLIBCXX, versions))


@cache
def excludelist() -> frozenset[str]:
    lines = (line.split("#", 1)[0].strip() for line in EXCLUDELIST.read_text().splitlines())
    return frozenset(line for line in lines if line)


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(4) == ELF_MAGIC
    except OSError:
        return False


def _machine(elf: ELFFile) -> str:
    raw = elf["e_machine"]
    return MACHINES.get(raw, str(raw).lower())


def _dynamic(elf: ELFFile, origin: Path) -> tuple[tuple[str, ...], tuple[Path, ...]]:
    """DT_NEEDED names and the expanded RUNPATH/RPATH dirs (static ELFs have neither)."""
    needed: list[str] = []
    search: list[Path] = []
    for section in elf.iter_sections():
        if not isinstance(section, DynamicSection):
            continue
        for tag in section.iter_tags():
            if tag.entry.d_tag == "DT_NEEDED":
                needed.append(tag.needed)
            elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                value = tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath
                search += _expand(value, origin)
    return tuple(needed), tuple(search)


def _expand(value: str, origin: Path) -> list[Path]:
    """RUNPATH entries as ld.so reads them; entries with $LIB/$PLATFORM are left out."""
    entries = (_ORIGIN.sub(str(origin).replace("\\", "\\\\"), entry) for entry in value.split(":"))
    return [Path(os.path.realpath(entry)) for entry in entries if entry and "$" not in entry]


def _needed_versions(elf: ELFFile) -> set[str]:
    """Names of the symbol versions the ELF needs (`readelf -V`'s .gnu.version_r)."""
    return {aux.name for section in elf.iter_sections() if isinstance(section, GNUVerNeedSection)
            for _needed, auxiliaries in section.iter_versions() for aux in auxiliaries}


def _matching(pattern: re.Pattern[str], names: Iterable[str]) -> frozenset[str]:
    return frozenset(m.group(1) for name in names if (m := pattern.fullmatch(name)))



def _walk(appdir: Path) -> tuple[list[Path], dict[Path, set[str]]]:
    """Every ELF once (no symlinks, no second hard link), and the ELF names per directory.

    The names include symlinks to ELFs: a library is usually found by its soname symlink.
    """
    elfs: list[Path] = []
    libraries: dict[Path, set[str]] = {}
    seen: set[tuple[int, int]] = set()
    for dirpath, _dirs, names in os.walk(appdir):
        for name in names:
            path = Path(dirpath, name)
            if not is_elf(path) or not Path(os.path.realpath(path)).is_relative_to(appdir):
                continue
            libraries.setdefault(Path(dirpath), set()).add(name)
            stat = path.lstat()
            if not path.is_symlink() and (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                elfs.append(path)
    return elfs, libraries


def _rel(path: Path, appdir: Path) -> str:
    return path.relative_to(appdir).as_posix()


def _listing(items: list[str]) -> str:
    shown = "; ".join(items[:SHOWN_IN_ERRORS])
    more = len(items) - SHOWN_IN_ERRORS
    return shown + (f"; and {more} more" if more > 0 else "")
