"""Throwaway OpenPGP keys for the signing tests: generated on the spot, never a key from a file."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path


def generate_key(uid: str, passphrase: str = "") -> tuple[str, bytes]:
    """A new ed25519 signing key: (armored secret key, armored public key)."""
    home = Path(tempfile.mkdtemp(prefix="tea-testkey-"))  # short: gpg-agent's socket lives in it
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase]
    try:
        subprocess.run([*gpg, "--quick-gen-key", uid, "ed25519", "sign", "never"], check=True, capture_output=True)
        secret = subprocess.run([*gpg, "--armor", "--export-secret-keys"], check=True, capture_output=True,
                                text=True).stdout
        public = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    return secret, public
