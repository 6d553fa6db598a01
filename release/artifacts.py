"""The typed artifact registry of one run (after goreleaser's internal/artifact).

Steps register what they produce — a venv, a frozen onedir, an AppDir, an AppImage, the
checksums — with its content digest, and later steps look artifacts up by kind and flavor instead
of by string keys into each other's results. The runner stamps each step's artifacts; the
fingerprints of dependants and the manifest are computed from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .errors import BuildError


class Kind(str, Enum):
    MODEL = "model"          # the verified GGUF in the download cache
    PACKAGER = "packager"    # the builtin packager's static runtime, or the external tool (extra: name)
    BUILD_HOST = "build-host"  # what the build host is (extra: description, a release.hosts.Description)
    WHEEL = "wheel"          # the portable llama-cpp-python wheel (extra: cpu_variants shipped/dropped)
    VENV = "venv"            # a build virtualenv (one per flavor)
    SWIPL = "swipl"          # SWI-Prolog's prefix in the build dir (extra: version, debian_version, suite)
    SOURCE_APP = "source-app"  # the_edge_agent installed for one build: the unfrozen reference
    ONEDIR = "onedir"        # PyInstaller's frozen tea
    APPDIR = "appdir"        # the tree that becomes the AppImage's filesystem
    APPIMAGE = "appimage"    # dist/<name>.AppImage
    PART = "part"            # a published slice of an AppImage over the asset size cap
    SCRIPT = "script"        # dist/reassemble.sh
    SBOM = "sbom"            # dist/<name>.AppImage.cdx.json, the CycloneDX SBOM of one AppImage
    ZSYNC = "zsync"          # dist/<name>.AppImage.zsync, for zsync clients (AppImageUpdate)
    BLOCKMAP = "blockmap"    # dist/<name>.AppImage.blockmap, for `tea self-update`
    REPORT = "report"        # what a check found, as JSON (extra: check), e.g. the functional answer
    CHECKSUMS = "checksums"  # dist/SHA256SUMS
    SIGNATURE = "signature"  # dist/SHA256SUMS.asc, when the run has a signing key
    MANIFEST = "manifest"    # dist/manifest.json


@dataclass(frozen=True)
class Artifact:
    kind: Kind
    path: Path
    digest: str  # sha256 of the file, or of the tree (release.digest)
    flavor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "path": str(self.path), "digest": self.digest,
                "flavor": self.flavor, "extra": self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Artifact:
        return cls(Kind(data["kind"]), Path(data["path"]), data["digest"], data.get("flavor"),
                   dict(data.get("extra") or {}))


class Registry:
    """Every artifact of the run, in registration order."""

    def __init__(self) -> None:
        self._items: list[Artifact] = []

    def add(self, artifact: Artifact) -> Artifact:
        """A re-registered path (a step that ran again) replaces the older record."""
        self._items = [a for a in self._items if a.path != artifact.path]
        self._items.append(artifact)
        return artifact

    def all(self, kind: Kind | None = None, flavor: str | None = None, **extra: object) -> list[Artifact]:
        """Artifacts of this kind and flavor whose `extra` holds the given values."""
        return [a for a in self._items
                if (kind is None or a.kind == kind) and (flavor is None or a.flavor == flavor)
                and all(a.extra.get(key) == value for key, value in extra.items())]

    def get(self, kind: Kind, flavor: str | None = None, **extra: object) -> Artifact:
        """The one artifact of this kind (and flavor); a missing one names the stage that makes it."""
        found = self.all(kind, flavor, **extra)
        if len(found) != 1:
            which = f"{kind.value}" + (f" of flavor {flavor}" if flavor else "")
            raise BuildError(f"expected one {which} artifact in this run, found {len(found)}: "
                             f"run the stage that builds it (invoke --list)")
        return found[0]
