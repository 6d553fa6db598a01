"""Turn what a user gives `invoke test-appimage` into one verified, local AppImage.

Accepted: a local AppImage path, the URL of one, or a release directory / base URL (then the
manifest's single AppImage, or the one named). SHA256SUMS is the trust root: a file without a line
in it, or whose bytes differ, is refused before anything runs it. A split artifact is rebuilt from
its parts, each verified as it arrives, and the joined file is checked against the manifest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from . import log
from .checksums import (MANIFEST_NAME, SUMS_NAME, expected_sha256, missing_line, read_manifest, read_sums,
                        verify_file)
from .download import RemoteFile, download, fetch, sha256_file
from .errors import ChecksumError, ConfigError, DownloadError, VerifyError

APPIMAGE_SUFFIX = ".AppImage"
SBOM_SUFFIX = ".cdx.json"  # release/sbom.py


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


@dataclass(frozen=True)
class ReleaseSource:
    """Where a release's files live (a directory or a base URL ending in '/'), and where to put copies."""

    base: str
    cache_dir: Path
    workdir: Path

    @property
    def remote(self) -> bool:
        return is_url(self.base)

    def locate(self, name: str) -> str:
        return self.base + name if self.remote else str(Path(self.base) / name)

    def metadata(self, name: str) -> Path:
        """A small file of the release (SHA256SUMS, manifest.json), downloaded fresh when remote."""
        return fetch_metadata(self.locate(name), self.workdir)

    def verified(self, name: str, sha256: str, size: int | None = None) -> Path:
        """The file's bytes, checked against sha256: in place when local, via the cache when remote."""
        if not self.remote:
            path = Path(self.locate(name))
            if not path.is_file():
                raise ConfigError(f"{path} does not exist: give an AppImage, a release directory or a URL")
            return verify_file(path, sha256)
        return fetch(RemoteFile(name, (self.locate(name),), sha256, size), self.cache_dir)


def fetch_metadata(spec: str, workdir: Path) -> Path:
    if not is_url(spec):
        return Path(spec)
    name = Path(urlsplit(spec).path).name or SUMS_NAME
    download(RemoteFile(name, (spec,)), workdir / name)
    return workdir / name


def split_spec(spec: str, name: str | None) -> tuple[str, str | None]:
    """(release base, artifact name or None): a spec naming an AppImage also names its release."""
    if is_url(spec):
        path = urlsplit(spec).path
        if path.endswith(APPIMAGE_SUFFIX):
            return spec[: spec.rindex("/") + 1], name or Path(path).name
        return spec.rstrip("/") + "/", name
    local = Path(spec)
    if local.is_dir():
        return str(local), name
    return str(local.parent), name or local.name


def load_manifest(source: ReleaseSource) -> dict | None:
    """The release's manifest, or None when it has none (a lone AppImage and its SHA256SUMS)."""
    try:
        path = source.metadata(MANIFEST_NAME)
    except DownloadError:
        return None
    return read_manifest(path) if path.is_file() else None


def pick_appimage(names: list[str], origin: str) -> str:
    names = [name for name in names if name.endswith(APPIMAGE_SUFFIX)]
    if len(names) != 1:
        raise ConfigError(f"{origin} holds {len(names)} AppImages: name one of {', '.join(names) or '(none)'}")
    return names[0]


def split_artifact(manifest: dict | None, name: str) -> dict | None:
    for artifact in (manifest or {}).get("artifacts", []):
        if artifact["name"] == name and artifact.get("parts"):
            return artifact
    return None


def install(path: Path, target: Path) -> Path:
    """Put a verified file at target (hard link when possible), executable."""
    if not (target.exists() and os.path.samefile(path, target)):
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
        os.replace(tmp, target)
    target.chmod(0o755)
    return target


def join_parts(parts: list[Path], artifact: dict, target: Path) -> Path:
    """Concatenate verified parts into target; the whole must match the manifest's sha256."""
    digest = hashlib.sha256()
    tmp = target.with_name(f".{target.name}.partial")
    with tmp.open("wb") as sink, log.Progress(f"joining {target.name}", artifact.get("size")) as progress:
        for part in parts:
            with part.open("rb") as source:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
                    sink.write(block)
                    progress.update(len(block))
    if digest.hexdigest() != artifact["sha256"]:
        tmp.unlink()
        raise ChecksumError(f"{target.name}: the joined parts do not match the manifest's sha256"
                            " (the release is inconsistent: rebuild or republish it)")
    os.replace(tmp, target)
    target.chmod(0o755)
    return target


def reassemble(source: ReleaseSource, sums: dict[str, str], artifact: dict, origin: str) -> Path:
    target = source.workdir / artifact["name"]
    if target.is_file() and sha256_file(target) == artifact["sha256"]:
        return target
    parts = []
    for part in artifact["parts"]:
        sha = expected_sha256(sums, part["name"], origin)
        if sha != part["sha256"]:
            raise ChecksumError(f"{origin} and {MANIFEST_NAME} disagree about {part['name']}: republish the release")
        parts.append(source.verified(part["name"], sha, part.get("size")))
        log.info(f"{part['name']}: verified")
    return join_parts(parts, artifact, target)


def resolve_artifact(spec: str, *, sums: str | None, cache_dir: Path, workdir: Path,
                     name: str | None = None, keyring: Path | None = None) -> Path:
    """The local, verified AppImage that spec (path, URL, release dir or base URL) stands for;
    with a keyring, SHA256SUMS must carry a good signature by one of its keys first."""
    base, name = split_spec(str(spec), name)
    source = ReleaseSource(base, Path(cache_dir), Path(workdir))
    source.workdir.mkdir(parents=True, exist_ok=True)
    sums_path = fetch_metadata(sums, source.workdir) if sums else source_sums(source, name)
    if sums_path is None and keyring is None:
        log.warn(f"no {SUMS_NAME} next to {name} and no --sums given: it is NOT verified")
        return Path(source.locate(name))
    origin = sums or source.locate(SUMS_NAME)
    if keyring is not None:
        authenticate_sums(sums_path, origin, source.workdir, keyring)
    checksums = read_sums(sums_path)
    manifest = load_manifest(source) if name not in checksums else None
    name = name or pick_appimage([a["name"] for a in manifest["artifacts"]] if manifest else list(checksums), base)
    if name in checksums:
        found = source.verified(name, checksums[name])
        appimage = install(found, source.workdir / name) if source.remote else found
    else:
        artifact = split_artifact(manifest, name)
        if artifact is None:
            raise missing_line(origin, name)
        appimage = reassemble(source, checksums, artifact, origin)
    verified_sbom(source, checksums, appimage)
    return appimage


def verified_sbom(source: ReleaseSource, sums: dict[str, str], appimage: Path) -> Path | None:
    """The AppImage's SBOM (`<name>.cdx.json`), put beside it, when SHA256SUMS lists one and the
    release has it: checked like the AppImage itself, so a tampered SBOM is refused. One that was
    not downloaded is only noted: the AppImage's own checks do not need it."""
    sbom = appimage.name + SBOM_SUFFIX
    if sbom not in sums:
        return None
    try:
        found = source.verified(sbom, sums[sbom])
    except (ConfigError, DownloadError):
        log.info(f"{sbom}: listed in {SUMS_NAME} but not at {source.base}; not checked")
        return None
    if found.parent != appimage.parent:
        shutil.copyfile(found, appimage.parent / sbom)
    return appimage.parent / sbom


def authenticate_sums(sums_path: Path | None, origin: str, workdir: Path, keyring: Path) -> None:
    """SHA256SUMS.asc (beside the sums, local or remote) must be a good signature by the keyring."""
    from .signing import SUMS_SIGNATURE_SUFFIX, verify_sums

    if sums_path is None or not sums_path.is_file():
        raise VerifyError(f"no {SUMS_NAME} at {origin}: with --keyring the release must come with signed "
                          f"checksums (pass --sums)")
    try:
        signature = fetch_metadata(origin + SUMS_SIGNATURE_SUFFIX, workdir)
    except DownloadError:
        signature = workdir / "missing.asc"
    log.info(f"{SUMS_NAME}: signed by {verify_sums(sums_path, signature, keyring)}")


def source_sums(source: ReleaseSource, name: str | None) -> Path | None:
    """The release's own SHA256SUMS; a lone local file built here may have none (None)."""
    if source.remote:
        try:
            return source.metadata(SUMS_NAME)
        except DownloadError as exc:
            raise ChecksumError(f"{exc} — pass --sums PATH_OR_URL to verify {name or 'the artifact'}") from None
    path = Path(source.locate(SUMS_NAME))
    if path.is_file() or name is None or not Path(source.locate(name)).is_file():
        return path
    return None
