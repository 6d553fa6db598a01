"""The package version, read from the installed metadata (pyproject.toml is its only source)."""

from __future__ import annotations

DISTRIBUTION = "the_edge_agent"
UNKNOWN = "0+unknown"


def package_version() -> str:
    """Installed version; a frozen app without copied metadata still answers instead of crashing."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return UNKNOWN
