"""Release signatures with GnuPG: `SHA256SUMS.asc`, and the signature embedded in each AppImage.

The embedded signature follows what `appimagetool --sign` writes and AppImageUpdate's validator
checks: the SHA-256 of the whole file, read with the `.sha256_sig` and `.sig_key` sections as
zeros, as 64 lower-case hex digits, signed as text (detached, ASCII-armored) into `.sha256_sig`;
the signer's armored public key goes into `.sig_key`. Zeroing those sections makes the digest
independent of the signature, so the signed file digests like the unsigned one (the
reproducible image) and re-signing is idempotent.

Keys come from the environment (CI secrets): an armored secret key in TEA_RELEASE_SIGNING_KEY (or
the path of a file holding one), its passphrase, if any, in TEA_RELEASE_SIGNING_PASSPHRASE. They
are imported into a private, temporary GNUPGHOME that is destroyed afterwards, go to gpg through
stdin only, and are never logged. Verification uses only the keys the user gives (`--keyring`),
never the key embedded in the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from . import proc
from .appimage import elf_end_offset
from .cache import BLOCK
from .errors import BuildError, ConfigError, VerifyError

KEY_ENV = "TEA_RELEASE_SIGNING_KEY"
PASSPHRASE_ENV = "TEA_RELEASE_SIGNING_PASSPHRASE"
SIGNATURE_SECTION, KEY_SECTION = ".sha256_sig", ".sig_key"
SUMS_SIGNATURE_SUFFIX = ".asc"
_SECRET_KEY_HEADER = "-----BEGIN PGP PRIVATE KEY BLOCK-----"


@dataclass(frozen=True)
class SigningKey:
    """The secret key material of a run; `repr` never shows it."""

    armored: str = field(repr=False)
    passphrase: str = field(default="", repr=False)


def key_from_environment(env: Mapping[str, str] = os.environ) -> SigningKey | None:
    """TEA_RELEASE_SIGNING_KEY as the armored key itself or a file holding it; None when unset."""
    value = env.get(KEY_ENV, "").strip()
    if not value:
        return None
    if not value.startswith(_SECRET_KEY_HEADER):
        try:
            value = Path(value).expanduser().read_text()
        except (OSError, UnicodeDecodeError, ValueError):
            raise ConfigError(f"{KEY_ENV} holds neither an armored secret key nor the path of a "
                              f"readable key file") from None
    return SigningKey(value, env.get(PASSPHRASE_ENV, ""))


# --- the temporary GnuPG home ----------------------------------------------------------------

class GnuPG:
    """gpg with its own throwaway home: nothing of the user's keyrings is read or changed."""

    def __init__(self, home: Path, error: type[Exception]) -> None:
        self.home, self.error = home, error

    def run(self, *args: str | os.PathLike, input: str | None = None, check: bool = True):
        if shutil.which("gpg") is None:
            raise self.error("gpg not found: apt-get install gnupg")
        return proc.run(["gpg", "--homedir", self.home, "--batch", "--no-tty", *args], what="gpg",
                        input=input, check=check, error=self.error)

    def secret_fingerprint(self) -> str:
        """The first secret key's fingerprint (the key that signs)."""
        listing = self.run("--with-colons", "--list-secret-keys").stdout
        fingerprints = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
        if not fingerprints:
            raise ConfigError(f"{KEY_ENV} holds no secret key")
        return fingerprints[0]


@contextlib.contextmanager
def gnupg(error: type[Exception] = BuildError) -> Iterator[GnuPG]:
    """A GnuPG home under the system temp dir (short: the agent's socket lives in it)."""
    home = Path(tempfile.mkdtemp(prefix="tea-gpg-"))
    try:
        yield GnuPG(home, error)
    finally:
        proc.run(["gpgconf", "--homedir", home, "--kill", "all"], check=False)
        shutil.rmtree(home, ignore_errors=True)


class Signer:
    """Signs with the imported secret key; `public_key` is its armored public part."""

    def __init__(self, gpg: GnuPG, key: SigningKey) -> None:
        gpg.run("--import", input=key.armored)
        self.gpg, self.key = gpg, key
        self.fingerprint = gpg.secret_fingerprint()
        self.public_key = gpg.run("--armor", "--export", self.fingerprint).stdout

    def detached(self, data: Path, out: Path, *, text: bool = False) -> Path:
        """An armored detached signature of `data` at `out` (written to a temp name, then renamed)."""
        partial = out.with_name(f".{out.name}.partial")
        partial.unlink(missing_ok=True)
        self.gpg.run("--pinentry-mode", "loopback", "--passphrase-fd", "0", "--local-user", self.fingerprint,
                     "--armor", *(["--textmode"] if text else []), "--detach-sign", "--output", partial, data,
                     input=self.key.passphrase + "\n")
        os.replace(partial, out)
        return out


@contextlib.contextmanager
def signer(key: SigningKey) -> Iterator[Signer]:
    with gnupg() as gpg:
        yield Signer(gpg, key)


def fingerprint_of(key: SigningKey) -> str:
    """The key's fingerprint (what a step's fingerprint records instead of the secret)."""
    with signer(key) as signing:
        return signing.fingerprint


def verify_detached(data: Path, signature: Path, keyring: Path, what: str) -> str:
    """The signer's fingerprint if `signature` is a good signature of `data` by a key in `keyring`."""
    if not Path(keyring).is_file():
        raise ConfigError(f"keyring {keyring}: no such file (give the publisher's exported public key)")
    with gnupg(VerifyError) as gpg:
        gpg.run("--import", keyring)
        done = gpg.run("--status-fd", "1", "--verify", signature, data, check=False)
    status = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("[GNUPG:] ")]
    valid = [words[1] for words in status if words[:1] == ["VALIDSIG"]]
    if done.returncode != 0 or not valid:
        reason = next((words[0] for words in status if words[:1] in (["BADSIG"], ["NO_PUBKEY"], ["ERRSIG"])),
                      "no valid signature")
        raise VerifyError(f"{what}: signature check failed ({reason}): refusing it (is --keyring the "
                          f"publisher's public key?)")
    return valid[0]


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


def sign_sums(sums: Path, key: SigningKey) -> Path:
    with signer(key) as signing:
        return signing.detached(sums, sums_signature_path(sums))
