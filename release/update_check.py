"""`invoke test-appimage SOURCE --update-from OLD`: does an update from OLD give exactly the new
artifact?

OLD's own `tea self-update` runs on a copy of it (a hard link where possible: the update renames
over the copy, so OLD itself is never touched) against the release SOURCE names — a directory or a
base URL, given with --release, so the signature check is what OLD's user gets too. The result
must be byte for byte the verified new AppImage. When SOURCE is a URL and the artifact is
published whole, Debian's zsync client updates from OLD as well (the release's .zsync, OLD as the
seed): what AppImageUpdate does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import log, proc, signing
from .appdir import link_or_copy
from .artifact_source import is_url
from .delta import zsync_path
from .download import sha256_file
from .errors import VerifyError


def same_bytes(path: Path, expected: str, how: str) -> None:
    got = sha256_file(path)
    if got != expected:
        raise VerifyError(f"{how} did not reproduce the new AppImage (sha256 {got[:16]}…, expected {expected[:16]}…)")


def last_line(stderr: str) -> str:
    return (stderr.strip().splitlines() or ["(no output)"])[-1]


def carries_a_key(appimage: Path) -> bool:
    """Whether the AppImage is signed: its `.sig_key` holds the publisher's key."""
    try:
        section = signing.sections(appimage).get(signing.KEY_SECTION)
    except VerifyError:  # no ELF section table: nothing to hold a key
        return False
    return section is not None and bool(signing.read_section(appimage, section).strip())


def self_update(old: Path, release: str, expected: str, work: Path) -> str:
    """Run OLD's `tea self-update` on a copy, as its user would (an unsigned OLD only updates with
    --allow-unsigned, and then only over HTTPS or from a directory); its summary line."""
    copy = work / "self-update" / old.name
    link_or_copy(old, copy)
    unsigned = [] if carries_a_key(old) else ["--allow-unsigned"]
    done = proc.run([copy, "self-update", "--release", release, *unsigned], what=f"{old.name} self-update",
                    timeout=3600, check=False, error=VerifyError)
    if done.returncode != 0:
        if "invalid choice: 'self-update'" in done.stderr:
            raise VerifyError(f"{old.name} has no `tea self-update` (it predates delta updates): give a newer OLD")
        raise VerifyError(f"{old.name} self-update failed (exit {done.returncode}): {last_line(done.stderr)}")
    same_bytes(copy, expected, f"{old.name} self-update")
    return last_line(done.stderr).removeprefix("tea: ")


def zsync_client(old: Path, release: str, name: str, expected: str, work: Path) -> str:
    """Debian's zsync client with OLD as the seed; what it says it used and fetched."""
    out = work / "zsync" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    done = proc.run(["zsync", "-q", "-i", old, "-o", out, release + zsync_path(Path(name)).name],
                    what="zsync", timeout=3600, cwd=out.parent, check=False, error=VerifyError)
    if done.returncode != 0:
        raise VerifyError(f"zsync from {old.name} failed (exit {done.returncode}): {last_line(done.stderr)}")
    same_bytes(out, expected, "zsync")
    return f"zsync from {old.name}: reproduced {name}"


def check_update(old: Path, new: Path, release: str, *, whole_published: bool, work: Path) -> None:
    """Raise VerifyError unless updating OLD from `release` gives `new`, byte for byte."""
    expected = sha256_file(new)
    log.info(f"update from {old.name}: {self_update(old, release, expected, work)}")
    if is_url(release) and whole_published and shutil.which("zsync"):
        log.info(zsync_client(old, release, new.name, expected, work))
