"""Hostile manifests, ELF headers and SHA256SUMS end every reader with one line, never a traceback
(issue 24, N14): `invoke test-appimage`, `invoke checksums --merge` and `invoke manifest --merge`,
run as a user runs them. (`tea self-update`'s readers: tests/app/test_self_update.py.)
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NAME = "tea-python-0.1.0-x86_64.AppImage"
SHA = "a" * 64


def run_invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def one_line_refusal(done: subprocess.CompletedProcess, *needles: str) -> str:
    """The task failed with exactly one line on stderr, the `error: ...` one, naming each needle."""
    assert done.returncode != 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == done.stderr.strip().splitlines()[-1], done.stderr
    assert all(needle in errors[0] for needle in needles), errors[0]
    return errors[0]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def elf_header(*, shoff: int = 64, shentsize: int = 64, shnum: int = 3, shstrndx: int = 1, machine: int = 62,
               big_endian: bool = False) -> bytes:
    """An ELF64 header with the AppImage magic and the section table fields given."""
    order = ">" if big_endian else "<"
    header = bytearray(64)
    header[:4], header[4], header[5], header[6], header[8:11] = b"\x7fELF", 2, 2 if big_endian else 1, 1, b"AI\x02"
    struct.pack_into(order + "HHI", header, 16, 2, machine, 1)
    struct.pack_into(order + "Q", header, 0x28, shoff)
    struct.pack_into(order + "HHHHHH", header, 0x34, 64, 56, 0, shentsize, shnum, shstrndx)
    return bytes(header)


PAYLOAD = os.urandom(4096)
HOSTILE_ELF = {  # whole files
    "section table far past the end": elf_header(shoff=1 << 60) + PAYLOAD,
    "zero-sized section entries": elf_header(shentsize=0, shnum=5) + PAYLOAD,
    "name table index past the table": elf_header(shnum=1, shstrndx=7) + PAYLOAD,
    "an unknown machine": elf_header(machine=0x3E00) + PAYLOAD,
    "big-endian garbage": elf_header(big_endian=True, shentsize=7, shnum=9) + PAYLOAD,
    "cut off after the magic": elf_header()[:11],
    "cut off in the header": elf_header()[:40],
}


@pytest.mark.parametrize("what", HOSTILE_ELF)
def test_test_appimage_refuses_a_hostile_elf_in_one_line(tmp_path, what):
    appimage = tmp_path / NAME
    appimage.write_bytes(HOSTILE_ELF[what])
    appimage.chmod(0o755)
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{hashlib.sha256(appimage.read_bytes()).hexdigest()}  {NAME}\n")
    one_line_refusal(run_invoke("test-appimage", str(appimage), "--sums", str(sums), "--no-systems"))


HOSTILE_MANIFESTS = {
    "an artifact that is a string": {"artifacts": ["x"]},
    "a name that is a number": {"artifacts": [{"name": 5, "sha256": SHA}]},
    "a name that is a list": {"artifacts": [{"name": [NAME], "sha256": SHA}]},
    "parts that are a string": {"artifacts": [{"name": NAME, "sha256": SHA, "parts": "abc"}]},
    "a part that is a number": {"artifacts": [{"name": NAME, "sha256": SHA, "parts": [1]}]},
    "a sha256 that is an object": {"artifacts": [{"name": NAME, "sha256": {"x": 1}}]},
    "no sha256": {"artifacts": [{"name": NAME}]},
    "a model that is a string": {"artifacts": [{"name": NAME, "sha256": SHA, "model": "gemma"}]},
    "an sbom that is a list": {"artifacts": [{"name": NAME, "sha256": SHA, "sbom": ["x"]}]},
}


MANIFEST_BYTES = {**{what: json.dumps(manifest).encode() for what, manifest in HOSTILE_MANIFESTS.items()},
                  "nesting 100000 deep": b'{"artifacts": ' + nested(100_000).encode() + b"}",
                  "not UTF-8": b'{"artifacts": [], "version": "\xff"}'}


def hostile_release(tmp_path: Path, manifest: bytes) -> Path:
    release = tmp_path / "release"
    release.mkdir()
    (release / NAME).write_bytes(os.urandom(4096))
    (release / NAME).chmod(0o755)
    (release / "SHA256SUMS").write_text(f"{hashlib.sha256((release / NAME).read_bytes()).hexdigest()}  {NAME}\n")
    (release / "manifest.json").write_bytes(manifest)
    return release


@pytest.mark.parametrize("what", MANIFEST_BYTES)
def test_test_appimage_refuses_a_hostile_manifest_in_one_line(tmp_path, what):
    release = hostile_release(tmp_path, MANIFEST_BYTES[what])
    one_line_refusal(run_invoke("test-appimage", str(release), "--no-systems"), "manifest.json")


@pytest.mark.parametrize("what", MANIFEST_BYTES)
def test_manifest_merge_refuses_a_hostile_manifest_in_one_line(tmp_path, what):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"version": "0.1.0", "artifacts": [{"name": NAME, "sha256": SHA}]}))
    bad = tmp_path / "bad.json"
    bad.write_bytes(MANIFEST_BYTES[what])
    one_line_refusal(run_invoke("manifest", "--merge", str(good), "--merge", str(bad), "--out",
                                str(tmp_path / "out.json")), "bad.json")
    assert not (tmp_path / "out.json").exists()


HOSTILE_SUMS = {
    "binary junk": os.urandom(2000),
    "a line without a name": f"{SHA}  \n".encode(),
    "a sha256 too short": f"{'a' * 63}  {NAME}\n".encode(),
    "one 1 MiB line": b"a" * (1 << 20),
}


@pytest.mark.parametrize("what", HOSTILE_SUMS)
def test_checksums_merge_refuses_hostile_sums_in_one_line(tmp_path, what):
    good = tmp_path / "x86"
    good.write_text(f"{SHA}  {NAME}\n")
    bad = tmp_path / "arm"
    bad.write_bytes(HOSTILE_SUMS[what])
    one_line_refusal(run_invoke("checksums", "--merge", str(good), "--merge", str(bad), "--out",
                                str(tmp_path / "SHA256SUMS")), "arm")
    assert not (tmp_path / "SHA256SUMS").exists()


def test_checksums_merge_to_a_directory_is_one_line(tmp_path):
    good = tmp_path / "x86"
    good.write_text(f"{SHA}  {NAME}\n")
    (tmp_path / "out").mkdir()
    one_line_refusal(run_invoke("checksums", "--merge", str(good), "--out", str(tmp_path / "out")), "out")
