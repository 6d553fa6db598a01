"""Release signatures: `SHA256SUMS.asc`, and the signature embedded in each AppImage.

The embedded signature follows what `appimagetool --sign` writes and AppImageUpdate's validator
checks: the SHA-256 of the whole file, read with the `.sha256_sig` and `.sig_key` sections as
zeros, as 64 lower-case hex digits, signed as text (detached, ASCII-armored) into `.sha256_sig`;
the signer's armored public key goes into `.sig_key`. Zeroing those sections makes the digest
independent of the signature, so the signed file digests like the unsigned one (the
reproducible image) and re-signing is idempotent. GnuPG itself is driven by release/gpg.py.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .appimage import elf_end_offset
from .cache import BLOCK
from .errors import BuildError, VerifyError
from .gpg import Signer, SigningKey, signer, verify_detached

SIGNATURE_SECTION, KEY_SECTION = ".sha256_sig", ".sig_key"
SUMS_SIGNATURE_SUFFIX = ".asc"


# --- the AppImage's embedded signature --------------------------------------------------------

@dataclass(frozen=True)
class Section:
    offset: int
    size: int


def sections(path: Path) -> dict[str, Section]:
    """The ELF sections of an AppImage's runtime by name, with their file offsets and sizes."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with Path(path).open("rb") as handle:
            return {s.name: Section(s["sh_offset"], s["sh_size"]) for s in ELFFile(handle).iter_sections()}
    except ELFError as exc:
        raise VerifyError(f"{path}: not an ELF file ({exc})") from None


def signature_sections(path: Path) -> tuple[Section, Section]:
    table = sections(path)
    missing = [name for name in (SIGNATURE_SECTION, KEY_SECTION) if name not in table]
    if missing:
        raise VerifyError(f"{path.name}: its runtime has no {', '.join(missing)} section: it cannot carry "
                          f"a signature")
    found = table[SIGNATURE_SECTION], table[KEY_SECTION]
    if any(s.offset + s.size > elf_end_offset(path) for s in found):
        raise VerifyError(f"{path.name}: the signature sections lie outside its ELF part")
    return found


def appimage_digest(path: Path) -> str:
    """SHA-256 of the file with the signature sections read as zeros (AppImageUpdate's digest)."""
    path = Path(path)
    head_size = elf_end_offset(path)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        head = bytearray(handle.read(head_size))
        for section in signature_sections(path):
            head[section.offset:section.offset + section.size] = bytes(section.size)
        digest.update(head)
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def read_section(path: Path, section: Section) -> bytes:
    """A section's content up to its first NUL (how the runtime and AppImage tools read it)."""
    with Path(path).open("rb") as handle:
        handle.seek(section.offset)
        return handle.read(section.size).split(b"\0", 1)[0]


def write_section(path: Path, section: Section, data: bytes, name: str) -> None:
    if len(data) > section.size:
        raise BuildError(f"{path.name}: {len(data)} bytes do not fit the {section.size}-byte {name} section")
    with Path(path).open("r+b") as handle:
        handle.seek(section.offset)
        handle.write(data.ljust(section.size, b"\0"))


def embedded_signature(path: Path) -> bytes:
    return read_section(path, signature_sections(path)[0])


def sign_appimage(path: Path, signing: Signer) -> str:
    """Embed a signature of the file's digest and the public key; returns the digest.

    Writes the sections in place: called by the step that produces the file, before anything
    records its bytes, so signing covers exactly what ships.
    """
    path = Path(path)
    signature_section, key_section = signature_sections(path)
    digest = appimage_digest(path)
    if signed_by(path, signing):
        return digest
    key = signing.public_key.encode()
    with tempfile.TemporaryDirectory(prefix="tea-sign-") as work:
        text = Path(work) / "digest"
        text.write_text(digest)
        signature = signing.detached(text, Path(work) / "digest.asc", text=True).read_bytes()
    write_section(path, key_section, key, KEY_SECTION)
    write_section(path, signature_section, signature, SIGNATURE_SECTION)
    return digest


def signed_by(path: Path, signing: Signer) -> bool:
    """Whether the file already carries a good signature by this signer (re-signing is a no-op)."""
    if not embedded_signature(path).strip():
        return False
    with tempfile.TemporaryDirectory(prefix="tea-key-") as work:
        keyring = Path(work) / "key.asc"
        keyring.write_text(signing.public_key)
        try:
            return verify_appimage(path, keyring) == signing.fingerprint
        except VerifyError:
            return False


def verify_appimage(path: Path, keyring: Path) -> str:
    """The signer's fingerprint if the embedded signature is good for a key in `keyring`."""
    path = Path(path)
    signature = embedded_signature(path)
    if not signature.strip():
        raise VerifyError(f"{path.name} carries no embedded signature ({SIGNATURE_SECTION} is empty): refusing it")
    with tempfile.TemporaryDirectory(prefix="tea-verify-") as work:
        digest, asc = Path(work) / "digest", Path(work) / "digest.asc"
        digest.write_text(appimage_digest(path))
        asc.write_bytes(signature)
        return verify_detached(digest, asc, keyring, f"{path.name}'s embedded signature")


# --- SHA256SUMS.asc ---------------------------------------------------------------------------

def sums_signature_path(sums: Path) -> Path:
    return sums.with_name(sums.name + SUMS_SIGNATURE_SUFFIX)


def sign_sums(sums: Path, key: SigningKey | None) -> Path | None:
    """SHA256SUMS.asc beside `sums`; without a key, none (and a stale one is removed: it would
    no longer match the sums just written)."""
    target = sums_signature_path(sums)
    if key is None:
        target.unlink(missing_ok=True)
        return None
    with signer(key) as signing:
        return signing.detached(sums, target)


def verify_sums(sums: Path, signature: Path, keyring: Path) -> str:
    if not signature.is_file():
        raise VerifyError(f"{sums.name} has no signature {signature.name} beside it: refusing the release "
                          f"(it was published unsigned, or the signature is missing)")
    return verify_detached(sums, signature, keyring, sums.name)


def finish_appimage(path: Path, key: SigningKey | None) -> dict[str, str | None]:
    """Sign the AppImage when there is a key; in any case, what the manifest records about it:
    the sha256 of its unsigned form (identical across builds) and who signed it."""
    if key is None:
        return {"unsigned_sha256": appimage_digest(path), "signed_by": None}
    with signer(key) as signing:
        return {"unsigned_sha256": sign_appimage(path, signing), "signed_by": signing.fingerprint}
