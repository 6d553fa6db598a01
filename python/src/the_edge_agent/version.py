"""The package version, read from the installed metadata (pyproject.toml is its only source)."""

from __future__ import annotations

import re

DISTRIBUTION = "the_edge_agent"
UNKNOWN = "0+unknown"


def package_version() -> str:
    """Installed version; a frozen app without copied metadata still answers instead of crashing."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNKNOWN


# PEP 440 versions as tea's releases spell them: 1.2.3, 1.2.3rc1, 1.2.3.post1, 1.2.3.dev4 (+local ignored)
_PEP440 = re.compile(r"v?(\d+(?:\.\d+)*)(?:(a|b|rc)(\d+))?(?:\.post(\d+))?(?:\.dev(\d+))?(?:\+[a-z0-9.]+)?",
                     re.IGNORECASE)
_PRE = {"a": 0, "b": 1, "rc": 2}


def version_key(text: str) -> tuple | None:
    """A sort key that orders versions as PEP 440 does (1.0.dev1 < 1.0a1 < 1.0 < 1.0.post1 < 1.0.1);
    None for text that is not a version."""
    match = _PEP440.fullmatch(text.strip())
    if not match:
        return None
    release = tuple(int(number) for number in match[1].split("."))
    release += (0,) * (8 - len(release))  # 1.0 == 1.0.0
    if match[2]:
        pre = (_PRE[match[2].lower()], int(match[3]))
    else:
        pre = (-1, 0) if match[5] and not match[4] else (3, 0)  # a bare dev release comes before any pre-release
    post = int(match[4]) if match[4] else -1
    dev = int(match[5]) if match[5] else float("inf")
    return release, pre, post, dev
