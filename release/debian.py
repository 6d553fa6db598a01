"""apt sources of a build root, derived from the one line debootstrap wrote.

No mirror is named in this project: debootstrap picks its default and writes it into the root's
/etc/apt/sources.list (`deb http://deb.debian.org/debian bullseye main`). Every other source is
derived from that line: the suite's -updates on the same mirror, its -security on the mirror's
`-security` sibling (`.../debian` -> `.../debian-security`, as deb.debian.org serves both), and
the deb-src lines of the newer suite CPython's source package comes from.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError

DEB_LINE = re.compile(r"^deb\s+(?:\[[^\]]*\]\s+)?(?P<url>\S+)\s+(?P<suite>\S+)\s+(?P<components>.+?)\s*$")


@dataclass(frozen=True)
class Mirror:
    url: str         # http://deb.debian.org/debian
    components: str  # main

    @property
    def security_url(self) -> str:
        return self.url.rstrip("/") + "-security"


def mirror_of(sources_list: str) -> Mirror:
    """The mirror of the first `deb` line; BuildError when there is none."""
    mirror = _one_line_mirror(sources_list)
    if mirror is None:
        raise BuildError("the build root's /etc/apt/sources.list has no `deb` line to derive its sources from")
    return mirror


def system_mirror(system_root: Path) -> Mirror:
    """The mirror the system at `system_root` installs from, in one-line or deb822 sources (a
    build host may be a newer Debian, whose debootstrap or installer writes deb822)."""
    apt = system_root / "etc/apt"
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list")),
             *sorted((apt / "sources.list.d").glob("*.sources"))]
    for path in files:
        text = path.read_text() if path.is_file() else ""
        mirror = _one_line_mirror(text) if path.suffix == ".list" else _deb822_mirror(text)
        if mirror:
            return mirror
    raise BuildError(f"no Debian `deb` source in {apt} to derive a deb-src line from")


def _one_line_mirror(text: str) -> Mirror | None:
    """The first `deb` line's mirror; -security lines name the sibling, not the mirror."""
    for line in text.splitlines():
        match = DEB_LINE.match(line.strip())
        if match and not match["suite"].endswith("-security"):
            return Mirror(match["url"], match["components"])
    return None


def _deb822_mirror(text: str) -> Mirror | None:
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(line.split(":", 1) for line in stanza.splitlines() if ":" in line and not line.startswith("#"))
        fields = {key.strip(): value.split() for key, value in fields.items()}
        suites = fields.get("Suites", [])
        if "deb" in fields.get("Types", []) and fields.get("URIs") and not all(s.endswith("-security") for s in suites):
            return Mirror(fields["URIs"][0], " ".join(fields.get("Components", ["main"])))
    return None


def suite_lines(kind: str, mirror: Mirror, suite: str, *, updates: bool) -> list[str]:
    """`kind` (deb or deb-src) lines for `suite`, its -updates (if asked) and its -security."""
    lines = [f"{kind} {mirror.url} {suite} {mirror.components}"]
    if updates:
        lines.append(f"{kind} {mirror.url} {suite}-updates {mirror.components}")
    lines.append(f"{kind} {mirror.security_url} {suite}-security {mirror.components}")
    return lines


def root_sources(sources_list: str, suite: str) -> str:
    """The root's own packages with their point-release and security updates."""
    return "\n".join(suite_lines("deb", mirror_of(sources_list), suite, updates=True)) + "\n"


def source_sources(sources_list: str, suite: str) -> str:
    """deb-src lines for the newer `suite` a source package is built from, and its security fixes."""
    return "\n".join(suite_lines("deb-src", mirror_of(sources_list), suite, updates=False)) + "\n"


def upgradable(output: str) -> list[str]:
    """Package names in `apt list --upgradable` output ("libssl1.1/bullseye-security 1.1.1w... arm64 [...]")."""
    return sorted({line.split("/", 1)[0] for line in output.splitlines() if "/" in line and "[upgradable" in line})


def madison_versions(output: str, package: str) -> list[str]:
    """Source versions of `package` in `apt-cache madison` output, newest first, once each."""
    versions = {fields[1] for line in output.splitlines()
                if len(fields := [field.strip() for field in line.split("|")]) == 3
                and fields[0] == package and fields[2].endswith("Sources")}
    return sorted(versions, key=functools.cmp_to_key(compare_versions), reverse=True)


def compare_versions(a: str, b: str) -> int:
    """dpkg's version order (Debian Policy 5.6.12): epoch, upstream, revision; `~` sorts first."""
    for part_a, part_b in zip(_split_version(a), _split_version(b)):
        if (result := _compare_part(part_a, part_b)) != 0:
            return result
    return 0


def _split_version(version: str) -> tuple[str, str, str]:
    epoch, _, rest = version.rpartition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "0")
    return epoch or "0", upstream, revision


def _compare_part(a: str, b: str) -> int:
    """Alternate non-digit runs (compared by dpkg's character order) and digit runs (numerically)."""
    while a or b:
        text_a, a = _leading(a, digits=False)
        text_b, b = _leading(b, digits=False)
        for char_a, char_b in zip(text_a + "\0" * len(text_b), text_b + "\0" * len(text_a)):
            if char_a != char_b:
                return -1 if _order(char_a) < _order(char_b) else 1
        number_a, a = _leading(a, digits=True)
        number_b, b = _leading(b, digits=True)
        if int(number_a or 0) != int(number_b or 0):
            return -1 if int(number_a or 0) < int(number_b or 0) else 1
    return 0


def _leading(text: str, *, digits: bool) -> tuple[str, str]:
    end = 0
    while end < len(text) and text[end].isdigit() == digits:
        end += 1
    return text[:end], text[end:]


def _order(char: str) -> int:
    """`~` before the end of a string, the end before letters, letters before other characters."""
    if char == "~":
        return -1
    if char == "\0":
        return 0
    return ord(char) if char.isalpha() else ord(char) + 256
