"""GnuPG for the release: the signing key from the environment, a throwaway GNUPGHOME, signing and
verifying detached signatures.

Keys come from the environment (CI secrets): an armored secret key in TEA_RELEASE_SIGNING_KEY (or
the path of a file holding one), its passphrase, if any, in TEA_RELEASE_SIGNING_PASSPHRASE. They
are imported into a private, temporary GNUPGHOME that is destroyed afterwards, go to gpg through
stdin only, and are never logged. Verification uses only the keys the user gives (`--keyring`),
never a key that comes with the signed file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from . import proc
from .errors import BuildError, ConfigError, VerifyError

# gpg --status-fd keywords of a failed check, most telling first
FAILURES = {"BADSIG": "BAD signature: the data changed after it was signed",
            "NO_PUBKEY": "signed by a key that is not in the keyring",
            "ERRSIG": "the signature cannot be checked"}
KEY_ENV = "TEA_RELEASE_SIGNING_KEY"
PASSPHRASE_ENV = "TEA_RELEASE_SIGNING_PASSPHRASE"
_SECRET_KEY_HEADER = "-----BEGIN PGP PRIVATE KEY BLOCK-----"


@dataclass(frozen=True)
class SigningKey:
    """The secret key material of a run; `repr` never shows it. `fingerprint` is public: steps
    record it (instead of the secret) so that another key re-signs."""

    armored: str = field(repr=False)
    passphrase: str = field(default="", repr=False)
    fingerprint: str = ""


def key_from_environment(env: Mapping[str, str] = os.environ) -> SigningKey | None:
    """TEA_RELEASE_SIGNING_KEY (the armored key itself or a file holding it), checked by signing a
    probe, so a bad key or passphrase stops the run before anything is built; None when unset."""
    value = env.get(KEY_ENV, "").strip()
    if not value:
        return None
    if not value.startswith(_SECRET_KEY_HEADER):
        try:
            value = Path(value).expanduser().read_text()
        except (OSError, UnicodeDecodeError, ValueError):
            raise ConfigError(f"{KEY_ENV} holds neither an armored secret key nor the path of a "
                              f"readable key file") from None
    return checked(SigningKey(value, env.get(PASSPHRASE_ENV, "")))


def checked(key: SigningKey) -> SigningKey:
    """The key with its fingerprint, once it has signed a probe; ConfigError naming the variable if not."""
    with gnupg(ConfigError) as gpg, tempfile.TemporaryDirectory(prefix="tea-probe-") as work:
        try:
            signing = Signer(gpg, key)
            probe = Path(work) / "probe"
            probe.write_text("probe")
            signing.detached(probe, Path(work) / "probe.asc")
        except ConfigError:
            raise ConfigError(f"cannot sign with the key in {KEY_ENV} (not a secret key, or a wrong "
                              f"{PASSPHRASE_ENV}?)") from None
        return SigningKey(key.armored, key.passphrase, signing.fingerprint)


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


# sun_path holds 108 bytes; gpg-agent's longest socket name is "S.gpg-agent.browser".
_SOCKET_PATH_MAX = 107 - len("/tea-gpg-12345678/S.gpg-agent.browser")


def _socket_safe_temp_dir() -> str:
    """The temp dir, unless its path is too long for the agent's sockets (then /tmp; mkdtemp is 0700)."""
    temp = tempfile.gettempdir()
    return temp if len(os.fsencode(temp)) <= _SOCKET_PATH_MAX else "/tmp"


@contextlib.contextmanager
def gnupg(error: type[Exception] = BuildError) -> Iterator[GnuPG]:
    """A throwaway GnuPG home; the agent's sockets live in it, so its path must stay short."""
    home = Path(tempfile.mkdtemp(prefix="tea-gpg-", dir=_socket_safe_temp_dir()))
    try:
        yield GnuPG(home, error)
    finally:
        try:
            if shutil.which("gpgconf"):  # without it the agent leaves by itself once its home is gone
                proc.run(["gpgconf", "--homedir", home, "--kill", "all"], check=False)
        finally:  # the home may hold the secret key: it goes whatever happened above
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
        seen = {words[0] for words in status if words}
        reason = next((text for keyword, text in FAILURES.items() if keyword in seen), "no valid signature")
        raise VerifyError(f"{what}: signature check failed ({reason}): refusing it")
    return valid[0]
