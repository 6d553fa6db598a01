"""Turn what a user gives `invoke test-appimage` into one verified, local AppImage.

Accepted: a local AppImage path, the URL of one, or a release directory / base URL (then the
release's single AppImage, or the one named). SHA256SUMS is the trust root and the only source of
names and hashes: the artifact must be a plain file name listed there, directly or as its parts,
which are exactly `<name>.part01`, `.part02`, ... (all of them, in that order). Each file is checked
against its line before anything runs it; a cached download is re-hashed, not trusted by size.
manifest.json, which SHA256SUMS does not cover, never names a file or vouches for bytes: when it
describes the artifact it must agree with SHA256SUMS and with the joined parts, or nothing runs.
No download is open-ended: a file is cut off at the size the manifest gives it, else at the
release's asset size cap (release.toml: anything bigger is published in parts), an SBOM at
SBOM_LIMIT.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from . import log
from .checksums import MANIFEST_NAME, PLAIN_NAME, SUMS_NAME, missing_line, read_manifest, read_sums, verify_file
from .config import load_pins
from .download import RemoteFile, download, fetch, sha256_file
from .errors import ChecksumError, ConfigError, DownloadError, VerifyError
from .split import part_names

APPIMAGE_SUFFIX = ".AppImage"
SBOM_SUFFIX = ".cdx.json"  # release/sbom.py
METADATA_LIMIT = 1 << 20  # SHA256SUMS and manifest.json are a few KiB; a server may not send more
SBOM_LIMIT = 64 << 20  # a CycloneDX SBOM of thousands of components is a few MiB


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


@dataclass(frozen=True)
class ReleaseSource:
    """Where a release's files live (a directory or a base URL ending in '/'), where to put copies,
    and the most bytes a file of it may have (`sizes` by name, else `size_cap`)."""

    base: str
    cache_dir: Path
    workdir: Path
    size_cap: int
    sizes: dict[str, int] = field(default_factory=dict)

    def limit(self, name: str) -> int:
        return self.sizes.get(name) or (SBOM_LIMIT if name.endswith(SBOM_SUFFIX) else self.size_cap)

    @property
    def remote(self) -> bool:
        return is_url(self.base)

    def locate(self, name: str) -> str:
        return self.base + name if self.remote else str(Path(self.base) / name)

    def metadata(self, name: str) -> Path:
        """A small file of the release (SHA256SUMS, manifest.json), downloaded fresh when remote."""
        return fetch_metadata(self.locate(name), self.workdir / name)

    def verified(self, name: str, sha256: str) -> Path:
        """The file's bytes, checked against sha256: in place when local, via the cache when remote
        (re-hashed on a cache hit: a same-size corrupted copy is fetched again)."""
        if not self.remote:
            path = Path(self.locate(name))
            if not path.is_file():
                raise ConfigError(f"{path} does not exist: give an AppImage, a release directory or a URL")
            return verify_file(path, sha256)
        return fetch(RemoteFile(name, (self.locate(name),), sha256, limit=self.limit(name)), self.cache_dir,
                     verify=True)


def fetch_metadata(spec: str, local: Path) -> Path:
    """spec itself when local; else downloaded to `local` (at most METADATA_LIMIT bytes)."""
    if not is_url(spec):
        return Path(spec)
    download(RemoteFile(local.name, (spec,), limit=METADATA_LIMIT), local)
    return local


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


def plain_name(name: str, origin: str) -> str:
    """A file name that stays inside the directory it is joined to."""
    if not PLAIN_NAME.fullmatch(name):
        raise ConfigError(f"{origin} names {name!r}: only plain file names are accepted")
    return name


def pick_appimage(sums: dict[str, str], origin: str) -> str:
    """The one AppImage SHA256SUMS lists, whole or as parts."""
    wholes = {re.sub(r"\.part\d+$", "", name) for name in sums}
    names = sorted(name for name in wholes if name.endswith(APPIMAGE_SUFFIX))
    if len(names) != 1:
        raise ConfigError(f"{origin} lists {len(names)} AppImages: name one of {', '.join(names) or '(none)'}")
    return names[0]


def listed_parts(sums: dict[str, str], name: str, origin: str) -> list[str]:
    """The parts of name that SHA256SUMS lists: exactly `<name>.part01`.. `.partNN`, in order."""
    found = sorted(entry for entry in sums if re.fullmatch(re.escape(name) + r"\.part\d+", entry))
    expected = part_names(name, len(found))
    if found != sorted(expected):
        raise ChecksumError(f"{origin} lists the parts of {name} out of sequence ({', '.join(found)}):"
                            " refusing to join them")
    return expected


def described_sizes(manifest: dict | None) -> dict[str, int]:
    """The sizes the manifest gives its artifacts and their parts."""
    sizes = {}
    for artifact in (manifest or {}).get("artifacts", []):
        for record in (artifact, *(artifact.get("parts") or [])):
            if isinstance(record.get("size"), int) and record["size"] > 0:
                sizes[record["name"]] = record["size"]
    return sizes


def manifest_hash(manifest: dict | None, name: str, parts: list[str], sums: dict[str, str], origin: str) -> str | None:
    """The manifest's sha256 of the whole file, after checking its parts agree with SHA256SUMS."""
    record = next((a for a in (manifest or {}).get("artifacts", []) if a.get("name") == name), None)
    if record is None:
        return None
    described = [(part.get("name"), part.get("sha256")) for part in record.get("parts") or []]
    if described and described != [(part, sums[part]) for part in parts]:
        raise ChecksumError(f"{origin} and {MANIFEST_NAME} disagree about the parts of {name}: republish the release")
    return record.get("sha256")


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


def join_parts(parts: list[Path], target: Path, expected: list[tuple[str, str]]) -> Path:
    """Concatenate verified parts into target; the whole must match every (source, sha256) given."""
    digest = hashlib.sha256()
    tmp = target.with_name(f".{target.name}.partial")
    with tmp.open("wb") as sink, log.Progress(f"joining {target.name}", sum(p.stat().st_size for p in parts)) as bar:
        for part in parts:
            with part.open("rb") as source:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
                    sink.write(block)
                    bar.update(len(block))
    wrong = [source for source, sha in expected if digest.hexdigest() != sha]
    if wrong:
        tmp.unlink()
        raise ChecksumError(f"{target.name}: the joined parts do not match the sha256 in {' and '.join(wrong)}"
                            " (the release is inconsistent: rebuild or republish it)")
    os.replace(tmp, target)
    target.chmod(0o755)
    return target


def reassemble(source: ReleaseSource, sums: dict[str, str], name: str, parts: list[str],
               expected: list[tuple[str, str]]) -> Path:
    target = source.workdir / name
    if expected and target.is_file() and all(sha256_file(target) == sha for _, sha in expected):
        return target
    verified = []
    for part in parts:
        verified.append(source.verified(part, sums[part]))
        log.info(f"{part}: verified")
    return join_parts(verified, target, expected)


def resolve_artifact(spec: str, *, sums: str | None, cache_dir: Path, workdir: Path,
                     name: str | None = None, keyring: Path | None = None, size_cap: int | None = None) -> Path:
    """The local, verified AppImage that spec (path, URL, release dir or base URL) stands for;
    with a keyring, SHA256SUMS must carry a good signature by one of its keys first. A file the
    manifest does not size is cut off at `size_cap` (default: the pinned asset size cap)."""
    base, name = split_spec(str(spec), name)
    source = ReleaseSource(base, Path(cache_dir), Path(workdir), size_cap or load_pins().asset_size_cap)
    source.workdir.mkdir(parents=True, exist_ok=True)
    sums_path = fetch_metadata(sums, source.workdir / SUMS_NAME) if sums else source_sums(source, name)
    if sums_path is None and keyring is None:
        log.warn(f"no {SUMS_NAME} next to {name} and no --sums given: it is NOT verified")
        return Path(source.locate(name))
    origin = sums or source.locate(SUMS_NAME)
    if keyring is not None:
        authenticate_sums(sums_path, origin, source.workdir, keyring)
    checksums = read_sums(sums_path)
    name = plain_name(name, spec) if name else pick_appimage(checksums, origin)
    parts = listed_parts(checksums, name, origin)
    if not parts and name not in checksums:
        raise missing_line(origin, name)
    manifest = load_manifest(source)
    source = replace(source, sizes=described_sizes(manifest))
    described = manifest_hash(manifest, name, parts, checksums, origin)
    expected = [(origin, checksums[name])] if name in checksums else []
    expected += [(MANIFEST_NAME, described)] if described else []
    if name in checksums and (not parts or (not source.remote and Path(source.locate(name)).is_file())):
        if described and described != checksums[name]:
            raise ChecksumError(f"{origin} and {MANIFEST_NAME} disagree about {name}: republish the release")
        found = source.verified(name, checksums[name])
        appimage = install(found, source.workdir / name) if source.remote else found
    else:
        appimage = reassemble(source, checksums, name, parts, expected)
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
    signature = workdir / (SUMS_NAME + SUMS_SIGNATURE_SUFFIX)
    signature.unlink(missing_ok=True)  # only this run's download counts
    try:
        signature = fetch_metadata(origin + SUMS_SIGNATURE_SUFFIX, signature)
    except DownloadError:
        pass  # verify_sums says that it is missing
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
