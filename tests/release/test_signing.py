"""Signing for real, with a throwaway key this test session generates: the AppImage's embedded
signature (checked the way AppImageUpdate's validator does it, with libappimage locating the
sections), SHA256SUMS.asc, and the signing key from the environment.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from release import gpg, proc, signing
from release.errors import ConfigError, VerifyError
from test_appimage_format import appdir, appimage, runtime  # noqa: F401
from tests.keys import generate_key

SECTION_HELPER = r"""
#include <stdbool.h>
#include <stdio.h>
#include <appimage/appimage_shared.h>
int main(int argc, char **argv) {
    for (int i = 2; i < argc; i++) {
        unsigned long offset = 0, length = 0;
        if (!appimage_get_elf_section_offset_and_length(argv[1], argv[i], &offset, &length)) return 1;
        printf("%lu %lu\n", offset, length);
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def libappimage_sections(tmp_path_factory):
    """libappimage's own section lookup (what appimagetool and AppImageUpdate call), compiled here."""
    library = Path("/usr/lib/x86_64-linux-gnu/libappimage_shared.a")
    if not library.is_file():
        pytest.skip("libappimage-dev is not installed")
    work = tmp_path_factory.mktemp("libappimage")
    (work / "sections.c").write_text(SECTION_HELPER)
    subprocess.run(["cc", "-o", str(work / "sections"), str(work / "sections.c"), str(library)], check=True)

    def lookup(path: Path) -> list[tuple[int, int]]:
        out = subprocess.run([str(work / "sections"), str(path), ".sha256_sig", ".sig_key"], check=True,
                             capture_output=True, text=True).stdout
        return [tuple(map(int, line.split())) for line in out.splitlines()]

    return lookup


def appimageupdate_validate(path: Path, lookup, tmp_path: Path) -> subprocess.CompletedProcess:
    """AppImageUpdate's validate, step by step: zero both sections, hex SHA-256, import the key from
    .sig_key, verify the .sha256_sig text against the digest."""
    data = bytearray(path.read_bytes())
    (sig_at, sig_len), (key_at, key_len) = lookup(path)
    signature, key = (bytes(data[at:at + size]).split(b"\0")[0] for at, size in lookup(path))
    data[sig_at:sig_at + sig_len] = bytes(sig_len)
    data[key_at:key_at + key_len] = bytes(key_len)
    (tmp_path / "digest").write_text(hashlib.sha256(data).hexdigest())
    (tmp_path / "digest.asc").write_bytes(signature)
    (tmp_path / "key.asc").write_bytes(key)
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    try:
        base = ["gpg", "--homedir", str(home), "--batch"]
        subprocess.run([*base, "--import", str(tmp_path / "key.asc")], check=True, capture_output=True)
        return subprocess.run([*base, "--status-fd", "1", "--verify", str(tmp_path / "digest.asc"),
                               str(tmp_path / "digest")], capture_output=True, text=True)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)


@pytest.fixture
def signed(appimage, signing_key) -> Path:
    with gpg.signer(signing_key) as signer:
        signing.sign_appimage(appimage, signer)
    return appimage


# ------------------------------------------------------------------------------------------------
# The embedded signature


def test_embedded_signature_validates_like_appimageupdate(signed, libappimage_sections, tmp_path, public_keyring):
    done = appimageupdate_validate(signed, libappimage_sections, tmp_path)
    assert done.returncode == 0 and "[GNUPG:] VALIDSIG" in done.stdout, done.stdout + done.stderr
    fingerprint = signing.verify_appimage(signed, public_keyring)
    assert f"VALIDSIG {fingerprint}" in done.stdout


def test_our_section_table_matches_libappimage(appimage, libappimage_sections):
    table = signing.sections(appimage)
    assert [(table[n].offset, table[n].size) for n in (".sha256_sig", ".sig_key")] == libappimage_sections(appimage)


def test_signature_is_text_mode_over_the_hex_digest(signed):
    assert signing.embedded_signature(signed).startswith(b"-----BEGIN PGP SIGNATURE-----")
    packets = subprocess.run(["gpg", "--list-packets"], input=signing.embedded_signature(signed),
                             capture_output=True).stdout.decode()
    assert "sigclass 0x01" in packets  # a canonical-text signature, as appimagetool's gpgme textmode


def test_the_key_section_holds_the_signers_public_key(signed, public_keyring):
    key = signing.read_section(signed, signing.sections(signed)[".sig_key"])
    assert key.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert b"PRIVATE KEY BLOCK" not in signed.read_bytes()


def test_signing_changes_only_the_two_sections(appimage, signing_key):
    before = appimage.read_bytes()
    digest = signing.appimage_digest(appimage)
    with gpg.signer(signing_key) as signer:
        assert signing.sign_appimage(appimage, signer) == digest
    after = bytearray(appimage.read_bytes())
    for section in signing.signature_sections(appimage):
        after[section.offset:section.offset + section.size] = bytes(section.size)
    assert bytes(after) == before  # the unsigned image is the signed one with its sections zeroed
    assert signing.appimage_digest(appimage) == digest == hashlib.sha256(before).hexdigest()


def test_re_signing_is_idempotent(signed, signing_key):
    before = signed.read_bytes()
    with gpg.signer(signing_key) as signer:
        signing.sign_appimage(signed, signer)
    assert signed.read_bytes() == before


def test_another_key_is_refused(signed, tmp_path):
    other = tmp_path / "other.asc"
    other.write_bytes(generate_key("someone else <x@example.invalid>")[1])
    with pytest.raises(VerifyError, match="not in the keyring"):
        signing.verify_appimage(signed, other)


def flip(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


def test_a_changed_payload_byte_is_refused(signed, public_keyring):
    flip(signed, signed.stat().st_size - 100)
    with pytest.raises(VerifyError, match="BAD signature"):
        signing.verify_appimage(signed, public_keyring)


def test_a_changed_runtime_byte_outside_the_sections_is_refused(signed, public_keyring):
    flip(signed, signing.sections(signed)[".upd_info"].offset)  # update info is covered by the signature
    with pytest.raises(VerifyError, match="BAD signature"):
        signing.verify_appimage(signed, public_keyring)


def test_a_tampered_signature_is_refused(signed, public_keyring):
    section = signing.sections(signed)[".sha256_sig"]
    text = signing.embedded_signature(signed)
    line = text.index(b"\n\n") + 2  # first line of the base64 body
    flip(signed, section.offset + line + 10)
    with pytest.raises(VerifyError, match="signature check failed"):
        signing.verify_appimage(signed, public_keyring)


def test_an_unsigned_appimage_is_refused_when_a_key_is_expected(appimage, public_keyring):
    with pytest.raises(VerifyError, match="carries no embedded signature"):
        signing.verify_appimage(appimage, public_keyring)


def test_finish_without_a_key_records_the_digest_and_leaves_the_file(appimage):
    before = appimage.read_bytes()
    assert signing.finish_appimage(appimage, None) == {
        "unsigned_sha256": hashlib.sha256(before).hexdigest(), "signed_by": None}
    assert appimage.read_bytes() == before


def test_a_signature_too_big_for_its_section_is_a_build_error(appimage):
    section = signing.sections(appimage)[".sha256_sig"]
    with pytest.raises(Exception, match="do not fit the 1024-byte"):
        signing.write_section(appimage, section, b"x" * 1025, ".sha256_sig")


def move_section(appimage: Path, name: str, offset: int) -> None:
    """Point section `name`'s header at another file offset (sh_offset of an ELF64 section header)."""
    from elftools.elf.elffile import ELFFile

    with appimage.open("r+b") as handle:
        elf = ELFFile(handle)
        index = next(i for i, section in enumerate(elf.iter_sections()) if section.name == name)
        header = elf["e_shoff"] + index * elf["e_shentsize"]
        handle.seek(header + 24)
        handle.write(offset.to_bytes(8, "little"))


@pytest.mark.parametrize("name", [".sha256_sig", ".sig_key"])
@pytest.mark.parametrize("past_the_end", [1, 4096])
def test_signature_sections_outside_the_elf_part_are_refused(appimage, name, past_the_end):
    """Issue 30's S3: a section reaching past the ELF part would have the signature written into
    (and the digest zero) bytes of the squashfs; one byte past is as bad as a page."""
    end, size = signing.elf_end_offset(appimage), signing.sections(appimage)[name].size
    move_section(appimage, name, end - size + past_the_end)
    with pytest.raises(VerifyError, match="the signature sections lie outside its ELF part"):
        signing.signature_sections(appimage)


def test_a_signature_section_ending_at_the_elf_parts_end_is_inside(appimage):
    end, size = signing.elf_end_offset(appimage), signing.sections(appimage)[".sig_key"].size
    move_section(appimage, ".sig_key", end - size)
    assert signing.signature_sections(appimage)[1] == signing.Section(end - size, size)


# ------------------------------------------------------------------------------------------------
# SHA256SUMS.asc


@pytest.fixture
def sums(tmp_path) -> Path:
    path = tmp_path / "SHA256SUMS"
    path.write_text(f"{'0' * 64}  a.AppImage\n")
    return path


def test_sums_signature_round_trip(sums, signing_key, public_keyring):
    signature = signing.sign_sums(sums, signing_key)
    assert signature == sums.with_name("SHA256SUMS.asc")
    assert signature.read_text().startswith("-----BEGIN PGP SIGNATURE-----")
    assert signing.verify_sums(sums, signature, public_keyring) == signing_key.fingerprint
    gpgv = subprocess.run(["gpg", "--dearmor"], input=public_keyring.read_bytes(), capture_output=True).stdout
    (sums.parent / "k.gpg").write_bytes(gpgv)
    done = subprocess.run(["gpgv", "--keyring", str(sums.parent / "k.gpg"), str(signature), str(sums)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # what a user runs: gpgv with the published key


def test_tampered_sums_are_refused(sums, signing_key, public_keyring):
    signature = signing.sign_sums(sums, signing_key)
    sums.write_text(sums.read_text().replace("0", "1"))
    with pytest.raises(VerifyError, match="BAD signature"):
        signing.verify_sums(sums, signature, public_keyring)


def test_missing_sums_signature_is_refused(sums, public_keyring):
    with pytest.raises(VerifyError, match="has no signature SHA256SUMS.asc"):
        signing.verify_sums(sums, sums.with_name("SHA256SUMS.asc"), public_keyring)


def test_unsigned_run_removes_a_stale_sums_signature(sums, signing_key):
    stale = signing.sign_sums(sums, signing_key)
    assert signing.sign_sums(sums, None) is None and not stale.exists()


def test_missing_keyring_file_is_a_config_error(sums, tmp_path):
    (tmp_path / "SHA256SUMS.asc").write_text("x")
    with pytest.raises(ConfigError, match="no such file"):
        signing.verify_sums(sums, tmp_path / "SHA256SUMS.asc", tmp_path / "nope.asc")


# ------------------------------------------------------------------------------------------------
# The key from the environment


def test_no_key_in_the_environment_means_unsigned():
    assert gpg.key_from_environment({}) is None
    assert gpg.key_from_environment({gpg.KEY_ENV: "  "}) is None


def test_key_from_the_environment_as_text_or_file(throwaway_key, tmp_path):
    secret, _ = throwaway_key
    key_file = tmp_path / "secret.asc"
    key_file.write_text(secret)
    from_text = gpg.key_from_environment({gpg.KEY_ENV: secret})
    from_file = gpg.key_from_environment({gpg.KEY_ENV: str(key_file)})
    assert from_text.fingerprint == from_file.fingerprint and len(from_text.fingerprint) == 40
    assert secret not in repr(from_text) and "PRIVATE" not in repr(from_text)


@pytest.mark.parametrize("value", ["/no/such/key.asc", "-----BEGIN PGP PRIVATE KEY BLOCK-----\ngarbage\n"])
def test_an_unusable_key_is_one_config_error(value):
    with pytest.raises(ConfigError, match=gpg.KEY_ENV) as failure:
        gpg.key_from_environment({gpg.KEY_ENV: value})
    assert "\n" not in str(failure.value)


def test_a_wrong_passphrase_is_one_config_error():
    secret, _ = generate_key("p <p@example.invalid>", passphrase="right")
    assert gpg.key_from_environment({gpg.KEY_ENV: secret, gpg.PASSPHRASE_ENV: "right"}).fingerprint
    with pytest.raises(ConfigError, match=f"wrong {gpg.PASSPHRASE_ENV}"):
        gpg.key_from_environment({gpg.KEY_ENV: secret, gpg.PASSPHRASE_ENV: "wrong"})


def test_the_secret_never_reaches_the_log(appimage, throwaway_key, tmp_path):
    secret, _ = throwaway_key
    with proc.logging_to(tmp_path / "sign.log") as log_file:
        key = gpg.key_from_environment({gpg.KEY_ENV: secret})
        signing.finish_appimage(appimage, key)
    logged = log_file.read_text()
    assert "gpg" in logged and "PRIVATE KEY" not in logged
    assert not any(line in logged for line in secret.splitlines()[2:-2] if len(line) > 20)


def test_no_gnupg_home_is_left_behind(appimage, signing_key, monkeypatch):
    # not the shared temp dir: a parallel test may hold a home there right now
    with tempfile.TemporaryDirectory(dir="/tmp") as private:
        monkeypatch.setattr(tempfile, "tempdir", private)
        signing.finish_appimage(appimage, signing_key)
        assert os.listdir(private) == []


def test_no_gnupg_home_is_left_behind_without_gpgconf(sums, signing_key, public_keyring, tmp_path, monkeypatch):
    """Issue 24 N18: a missing gpgconf used to end the cleanup before the home (and the secret key
    imported into it) was removed."""
    only_gpg = tmp_path / "bin"
    only_gpg.mkdir()
    (only_gpg / "gpg").symlink_to(shutil.which("gpg"))
    with tempfile.TemporaryDirectory(dir="/tmp") as private:
        monkeypatch.setattr(tempfile, "tempdir", private)
        monkeypatch.setenv("PATH", str(only_gpg))
        signature = signing.sign_sums(sums, signing_key)
        assert os.listdir(private) == []
    monkeypatch.undo()
    assert signing.verify_sums(sums, signature, public_keyring) == signing_key.fingerprint


def test_a_temp_dir_too_long_for_the_agent_socket_still_signs(appimage, signing_key, tmp_path, monkeypatch,
                                                               public_keyring):
    """A deep TMPDIR (CI work dirs) must not break gpg-agent: its socket path has a 108-byte limit."""
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    signing.finish_appimage(appimage, signing_key)
    assert signing.verify_appimage(appimage, public_keyring)


def test_one_good_signature_does_not_excuse_a_bad_one_beside_it(sums, signing_key, public_keyring, tmp_path):
    """gpg prints VALIDSIG for the good one and still fails: its exit code must count too."""
    good = signing.sign_sums(sums, signing_key)
    other = tmp_path / "other"
    other.write_text("other data\n")
    bad = signing.sign_sums(other, signing_key)
    binary = [subprocess.run(["gpg", "--dearmor"], input=p.read_bytes(), capture_output=True, check=True).stdout
              for p in (good, bad)]
    both = tmp_path / "both.sig"
    both.write_bytes(binary[0] + binary[1])
    with pytest.raises(VerifyError, match="BAD signature"):
        signing.verify_sums(sums, both, public_keyring)


def test_checksums_merge_signs_the_merged_sums_when_the_key_is_set(tmp_path, throwaway_key, public_keyring,
                                                                  monkeypatch):
    """What the CI release job runs: `invoke checksums --merge A --merge B --out dist/SHA256SUMS`."""
    from release import commands

    inputs = []
    for arch in ("x86_64", "aarch64"):
        (tmp_path / arch).mkdir()
        (tmp_path / arch / "SHA256SUMS").write_text(f"{'1' * 64}  tea-{arch}.AppImage\n")
        inputs.append(tmp_path / arch / "SHA256SUMS")
    out = tmp_path / "dist" / "SHA256SUMS"
    monkeypatch.setenv(gpg.KEY_ENV, throwaway_key[0])
    commands.checksums(tmp_path / "dist", inputs, out)
    assert signing.verify_sums(out, out.with_name("SHA256SUMS.asc"), public_keyring)
    monkeypatch.delenv(gpg.KEY_ENV)
    commands.checksums(tmp_path / "dist", inputs, out)
    assert not out.with_name("SHA256SUMS.asc").exists()  # unsigned now: no stale signature left
