"""SHA256SUMS and manifest bookkeeping: write, read, merge, and look a file up.

SHA256SUMS is the trust root a user checks with `sha256sum -c`: sorted `<hex>  <basename>` lines
for exactly the files that are published (the parts of a split artifact, not the whole). A CI's
release job collects one SHA256SUMS and one manifest per arch and merges them; a name with two
different hashes means two builds claim one file name, which must stop the release.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

from .download import sha256_file
from .errors import ChecksumError, ConfigError

SUMS_NAME = "SHA256SUMS"
MANIFEST_NAME = "manifest.json"
SCRIPT_NAME = "reassemble.sh"  # release/reassemble.py: one per release, published (and listed) when any file is split
_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *](.+)$")
COMPANIONS = ("sbom", "zsync", "blockmap")  # manifest keys of the files published beside an artifact
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")  # a file name that cannot leave its directory


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> Path:
    """Write via a temp name in the same dir, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        tmp.chmod(mode)
        os.replace(tmp, path)
    except OSError as exc:  # a directory at path, a read-only or full disk: the user's to fix
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def format_sums(sums: dict[str, str]) -> str:
    return "".join(f"{sha}  {name}\n" for name, sha in sorted(sums.items()))


def companions(artifact: dict) -> list[dict]:
    """The records of the files published beside an artifact: its SBOM, .zsync and block map."""
    return [artifact[key] for key in COMPANIONS if artifact.get(key)]


def published_names(manifest: dict) -> list[str]:
    """The files a release publishes and SHA256SUMS lists: each artifact (or its parts when it was
    split) and its companions, then reassemble.sh when anything was split (listed, so the
    signature of SHA256SUMS covers the script users run too)."""
    names: list[str] = []
    for artifact in manifest.get("artifacts", []):
        names += [part["name"] for part in artifact.get("parts") or []] or [artifact["name"]]
        names += [companion["name"] for companion in companions(artifact)]
    if any(artifact.get("parts") for artifact in manifest.get("artifacts", [])):
        names.append(SCRIPT_NAME)
    return names


def write_sums(dist_dir: Path, names: Iterable[str], known: dict[str, str] | None = None) -> Path:
    """Hash the named files of dist_dir (reusing `known` hashes) into dist_dir/SHA256SUMS."""
    known = known or {}
    sums = {}
    for name in names:
        if Path(name).name != name:
            raise ChecksumError(f"SHA256SUMS takes basenames only, got '{name}'")
        sums[name] = known.get(name) or sha256_file(Path(dist_dir) / name)
    return write_text_atomic(Path(dist_dir) / SUMS_NAME, format_sums(sums))


def parse_sums(text: str, origin: str) -> dict[str, str]:
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if not match:
            raise ChecksumError(f"{origin}:{number}: not a sha256sum line: {line[:80]!r}")
        _add(sums, Path(match.group(2)).name, match.group(1).lower(), origin)
    return sums


def read_sums(path: Path) -> dict[str, str]:
    try:
        return parse_sums(Path(path).read_text(), str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise ChecksumError(f"cannot read checksums {path}: {exc}") from None


def _add(sums: dict[str, str], name: str, sha: str, origin: str) -> None:
    if sums.get(name, sha) != sha:
        raise ChecksumError(f"two different sha256 for {name} ({sums[name][:12]}… and {sha[:12]}… in {origin})")
    sums[name] = sha


def merge_sums(inputs: list[Path], out: Path) -> Path:
    """Combine per-arch SHA256SUMS files; the same name with two hashes is an error. Each build's
    reassemble.sh covers only its own parts: the merged sums list the release's, the one beside
    `out` (`invoke manifest --merge` writes it), if any."""
    merged: dict[str, str] = {}
    for path in inputs:
        for name, sha in read_sums(path).items():
            if name != SCRIPT_NAME:
                _add(merged, name, sha, str(path))
    if (Path(out).parent / SCRIPT_NAME).is_file():
        merged[SCRIPT_NAME] = sha256_file(Path(out).parent / SCRIPT_NAME)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(Path(out), format_sums(merged))


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ChecksumError(f"cannot read manifest {path}: {str(exc)[:200]}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), list):
        raise ChecksumError(f"{path} is not a tea-release manifest (no 'artifacts' list)")
    problem = next(filter(None, map(artifact_problem, manifest["artifacts"])), None)
    if problem:
        raise ChecksumError(f"{path} is not a tea-release manifest: {problem}")
    return manifest


def artifact_problem(artifact: object) -> str | None:
    """Why an artifact record is unusable (every reader takes these fields for what they say), or None."""
    def named(record: object) -> bool:
        return isinstance(record, dict) and isinstance(record.get("name"), str)

    if not (named(artifact) and isinstance(artifact.get("sha256"), str)):
        return f"an artifact record without a name and sha256: {json.dumps(artifact)[:80]}"
    parts = artifact.get("parts") or []
    if not isinstance(parts, list) or not all(named(part) and isinstance(part.get("sha256"), str) for part in parts):
        return f"the parts of {artifact['name']} are not records with a name and sha256"
    wrong = [key for key in (*COMPANIONS, "model") if artifact.get(key) is not None
             and not (named(artifact[key]) or (key == "model" and isinstance(artifact[key], dict)))]
    return f"{artifact['name']}: its {wrong[0]} is not a record" if wrong else None


def merge_manifests(inputs: list[Path], out: Path) -> Path:
    """Union of the artifacts of per-arch manifests of one version and commit; other top-level
    fields (tools, build_seconds) come from the first one."""
    manifests = [read_manifest(path) for path in inputs]
    if not manifests:
        raise ChecksumError("merge_manifests needs at least one manifest")
    by_name: dict[str, dict] = {}
    for path, manifest in zip(inputs, manifests):
        for key in ("version", "commit"):
            if manifest.get(key) != manifests[0].get(key):
                raise ChecksumError(f"{path} is from {key} {manifest.get(key)}, {inputs[0]} from"
                                    f" {manifests[0].get(key)}: merge manifests of one release only")
        for artifact in manifest["artifacts"]:
            seen = by_name.setdefault(artifact["name"], artifact)
            if seen["sha256"] != artifact["sha256"]:
                raise ChecksumError(f"two different sha256 for {artifact['name']} (second one in {path})")
    merged = {**manifests[0], "artifacts": [by_name[name] for name in sorted(by_name)]}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(Path(out), json.dumps(merged, indent=2) + "\n")


def missing_line(origin: str, name: str) -> ChecksumError:
    return ChecksumError(f"{origin} has no line for {name}: refusing to use an unverified file")


def expected_sha256(sums: dict[str, str], name: str, origin: str) -> str:
    """The pinned hash of name; a file the sums do not list is refused, never run unverified."""
    if name not in sums:
        raise missing_line(origin, name)
    return sums[name]


def verify_file(path: Path, sha256: str) -> Path:
    actual = sha256_file(path)
    if actual != sha256:
        raise ChecksumError(f"{path.name}: sha256 {actual[:16]}… does not match the expected {sha256[:16]}…"
                            " (corrupted or tampered: delete it and download again)")
    return path
