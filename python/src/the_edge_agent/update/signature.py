"""SHA256SUMS.asc checked against the publisher's key: the one the installed AppImage carries in
its `.sig_key` section (it was trusted when it was installed, as AppImageUpdate trusts it), or
the one the user names with --keyring.

gpg runs with a throwaway home made inside the AppImage's own directory (the updater writes
nowhere else) and removed afterwards; only that key is in it, so a good signature is that key's.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import UpdateError

FAILURES = {"BADSIG": "a BAD signature: SHA256SUMS changed after it was signed",
            "NO_PUBKEY": "signed by another key than the publisher's",
            "ERRSIG": "a signature that cannot be checked"}


def verify(sums: bytes, signature: bytes | None, key: str, workdir: Path) -> str:
    """The signer's fingerprint if `signature` is a good signature of `sums` by `key`."""
    if signature is None:
        raise UpdateError("the release has no SHA256SUMS.asc, but this AppImage is signed: refusing an "
                          "unsigned update")
    if shutil.which("gpg") is None:
        raise UpdateError("checking the release's signature needs gpg: install gnupg, then run "
                          "`tea self-update` again")
    home = Path(tempfile.mkdtemp(prefix=".tea-update-gnupg-", dir=workdir))
    try:
        for name, data in (("key.asc", key.encode()), ("SHA256SUMS", sums), ("SHA256SUMS.asc", signature)):
            (home / name).write_bytes(data)
        gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--no-autostart"]
        subprocess.run([*gpg, "--import", str(home / "key.asc")], capture_output=True, timeout=60)
        done = subprocess.run([*gpg, "--status-fd", "1", "--verify", str(home / "SHA256SUMS.asc"),
                               str(home / "SHA256SUMS")], capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    status = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("[GNUPG:] ")]
    valid = [words[1] for words in status if words[:1] == ["VALIDSIG"] and len(words) > 1]
    if done.returncode != 0 or not valid:
        seen = {words[0] for words in status if words}
        reason = next((text for keyword, text in FAILURES.items() if keyword in seen), "no valid signature")
        raise UpdateError(f"SHA256SUMS.asc: {reason}: refusing the update")
    return valid[0]
