"""`tea self-update [--check] [--release URL|DIR] [--keyring FILE] [--appimage PATH] [--allow-unsigned]
[--allow-downgrade]`.

The AppImage to update is the one tea runs from ($APPIMAGE, set by the AppImage runtime). Its
update information says where the next release is; the release's SHA256SUMS is the trust root
(its signature is checked with the publisher's key when the AppImage is signed, or with
--keyring): the block map, and through it every byte of the new file, must match it. An unsigned
AppImage without --keyring has only TLS to vouch for SHA256SUMS: it updates only when asked with
--allow-unsigned, and only over HTTPS (or from a local directory). A release older than the
running tea is refused unless asked with --allow-downgrade (an old release signed by the same key
may carry fixed holes).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from pathlib import Path

from ..errors import UpdateError
from ..version import package_version, version_key
from . import elf, signature, source
from .apply import Outcome, SourceFile, megabytes, update
from .blockmap import SUFFIX, BlockMap, BlockMapError
from .transport import Transport

SUMS, SIGNATURE = "SHA256SUMS", "SHA256SUMS.asc"
LIMITS = {"api": 4 << 20, "sums": 1 << 20, "blockmap": 64 << 20}
_SUMS_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")


def say(text: str) -> None:
    print(f"tea: {text}", file=sys.stderr, flush=True)


def target_of(given: Path | None) -> Path:
    """The real file to update (a symlink to it is left alone and keeps pointing at it)."""
    path = given or (Path(os.environ["APPIMAGE"]) if os.environ.get("APPIMAGE") else None)
    if path is None:
        raise UpdateError("tea is not running from an AppImage: nothing to update (or pass --appimage PATH)")
    real = Path(os.path.realpath(path))
    if not real.is_file():
        raise UpdateError(f"{path}: no such AppImage")
    return real


def parse_sums(text: bytes) -> dict[str, str]:
    sums = {}
    for line in text.decode(errors="replace").splitlines():
        match = _SUMS_LINE.fullmatch(line.strip())
        if line.strip() and not match:
            raise UpdateError(f"the release's {SUMS} has a malformed line: {line[:80]!r}")
        if match:
            sums[match[2]] = match[1].lower()
    return sums


def listed(sums: dict[str, str], name: str, data: bytes) -> bytes:
    """data, if SHA256SUMS lists `name` with its sha256."""
    if name not in sums:
        raise UpdateError(f"the release's {SUMS} does not list {name}: refusing an unverified file")
    if hashlib.sha256(data).hexdigest() != sums[name]:
        raise UpdateError(f"{name} does not match the release's {SUMS}: refusing it")
    return data


def optional(transport: Transport, location: str, limit: int) -> bytes | None:
    try:
        return transport.whole(location, limit)
    except UpdateError:
        return None


def publisher_key(target: Path, keyring: Path | None, allow_unsigned: bool) -> str:
    """The key SHA256SUMS.asc must be signed with; "" only for an unsigned AppImage whose user said so."""
    key = read_keyring(keyring) if keyring else elf.section_text(target, elf.SIGNING_KEY)
    if not key and not allow_unsigned:
        raise UpdateError("this AppImage is not signed and no --keyring was given: nothing would prove the update "
                          "is the publisher's. Pass --keyring FILE, or --allow-unsigned to trust SHA256SUMS as "
                          "fetched over HTTPS")
    return key


def checked_sums(target: Path, release: source.Release, transport: Transport, key: str) -> dict[str, str]:
    """The release's SHA256SUMS, its signature checked when there is a key to check it with."""
    text = transport.whole(release.locate(SUMS), LIMITS["sums"])
    if key:
        fingerprint = signature.verify(text, optional(transport, release.locate(SIGNATURE), LIMITS["sums"]), key,
                                       target.parent)
        say(f"{SUMS}: signed by {fingerprint}")
    else:
        say(f"this AppImage is not signed: the update is checked against {SUMS} only, as fetched over HTTPS "
            f"(--allow-unsigned)")
    return parse_sums(text)


def refuse_downgrade(name: str, allow_downgrade: bool) -> None:
    """A release older than the running tea is no update (an old one may carry fixed holes)."""
    if allow_downgrade:
        return
    offered, running = source.version_in_name(name), package_version()
    if offered is None or version_key(offered) is None:
        raise UpdateError(f"cannot tell the version of {name}: refusing it (--allow-downgrade takes it anyway)")
    if version_key(offered) < (version_key(running) or version_key("0")):
        raise UpdateError(f"the release offers {name}, older than this tea {running}: refusing to downgrade "
                          f"(--allow-downgrade installs it anyway)")


def read_keyring(keyring: Path) -> str:
    try:
        return keyring.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UpdateError(f"--keyring {keyring}: cannot read it ({error})") from None


def source_files(release: source.Release, sums: dict[str, str], blockmap: BlockMap) -> list[SourceFile]:
    """Where the new file's bytes are: the whole AppImage when the release lists it, else its parts."""
    if blockmap.name in sums:
        if sums[blockmap.name] != blockmap.sha256:
            raise UpdateError(f"the release's {SUMS} and {blockmap.name}{SUFFIX} disagree about its sha256")
        return [SourceFile(release.locate(blockmap.name), 0, blockmap.size)]
    unlisted = [part.name for part in blockmap.parts if part.name not in sums]
    if not blockmap.parts or unlisted:
        raise UpdateError(f"the release's {SUMS} lists neither {blockmap.name} nor all of its parts")
    files, start = [], 0
    for part in blockmap.parts:
        files.append(SourceFile(release.locate(part.name), start, part.size))
        start += part.size
    return files


def self_update(args: argparse.Namespace) -> int:
    started = time.monotonic()
    target = target_of(args.appimage)
    key = publisher_key(target, args.keyring, args.allow_unsigned)
    transport = Transport(https_only=not key)
    release = source.resolve(elf.section_text(target, elf.UPDATE_INFORMATION), args.release,
                             lambda url: source.decode_json(transport.whole(url, LIMITS["api"]), url))
    sums = checked_sums(target, release, transport, key)
    name = release.appimage_name(list(sums))
    try:
        blockmap = BlockMap.from_json(listed(sums, name + SUFFIX,
                                             transport.whole(release.locate(name + SUFFIX), LIMITS["blockmap"])))
    except BlockMapError as error:
        raise UpdateError(f"{name}{SUFFIX}: {error}") from None
    if blockmap.name != name:
        raise UpdateError(f"{name}{SUFFIX} describes {blockmap.name}: refusing it")
    refuse_downgrade(name, args.allow_downgrade)
    outcome = update(target, blockmap, source_files(release, sums, blockmap), transport, check=args.check)
    report(target, blockmap, outcome, transport, args.check, time.monotonic() - started)
    return 1 if args.check and outcome.updated else 0


def report(target: Path, blockmap: BlockMap, outcome: Outcome, transport: Transport, check: bool,
           seconds: float) -> None:
    if not outcome.updated:
        say(f"{target.name} is up to date ({blockmap.name})")
    elif check:
        say(f"update available: {blockmap.name}, {megabytes(outcome.fetched)} to download "
            f"({megabytes(blockmap.size)} in all)")
    else:
        say(f"updated {target} to {blockmap.name}: {megabytes(blockmap.size - outcome.fetched)} reused, "
            f"{megabytes(transport.received)} downloaded in {transport.requests} requests, {seconds:.1f} s")
