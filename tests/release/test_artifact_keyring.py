"""`test-appimage --keyring`: SHA256SUMS must carry a good signature by the publisher's key before
anything in it is believed, for a local release and for one served over loopback HTTP. And names
inside SHA256SUMS never lead a download or a file outside the release it came with.

Fast: real gpg with the session's throwaway key (tests/keys.py), no built release needed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from release import commands, gpg, signing
from release.artifact_source import resolve_artifact
from release.checksums import write_sums
from release.errors import ChecksumError, ConfigError, DownloadError, VerifyError
from release.signing import sign_sums
from test_appimage_format import appdir, appimage, runtime  # noqa: F401
from tests.keys import generate_key

NAME = "tea-python-0.1.0-x86_64.AppImage"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve():
    """Serve a directory on a free loopback port; returns its base URL (no trailing slash)."""
    servers = []

    def start(root: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def other_key():
    return gpg.checked(gpg.SigningKey(generate_key("someone else <other@example.invalid>")[0]))


@pytest.fixture
def release(tmp_path, signing_key) -> Path:
    """A release directory: one AppImage, SHA256SUMS and its signature by the session's key."""
    root = tmp_path / "release"
    root.mkdir()
    (root / NAME).write_bytes(os.urandom(200_000))
    sign_sums(write_sums(root, [NAME]), signing_key)
    return root


def resolve(spec: str, tmp_path: Path, keyring: Path | None, sums: str | None = None, **extra) -> Path:
    return resolve_artifact(spec, sums=sums, cache_dir=tmp_path / "cache", workdir=tmp_path / "work",
                            keyring=keyring, **extra)


def substitute(release: Path) -> bytes:
    """Swap the AppImage for other bytes and make SHA256SUMS say so (what someone who controls the
    release location can do): only the signature can tell."""
    evil = os.urandom(200_000)
    (release / NAME).write_bytes(evil)
    (release / "SHA256SUMS").write_text(f"{hashlib.sha256(evil).hexdigest()}  {NAME}\n")
    return evil


def test_a_release_signed_by_the_keyring_is_accepted_locally_and_over_http(release, serve, tmp_path, public_keyring):
    assert resolve(str(release / NAME), tmp_path, public_keyring) == release / NAME
    fetched = resolve(f"{serve(release)}/{NAME}", tmp_path, public_keyring)
    assert fetched == tmp_path / "work" / NAME and fetched.read_bytes() == (release / NAME).read_bytes()


@pytest.mark.parametrize("remote", [False, True], ids=["local", "http"])
def test_sums_changed_after_signing_are_refused_before_the_file_is_used(release, serve, tmp_path, public_keyring,
                                                                        remote):
    substitute(release)
    spec = f"{serve(release)}/{NAME}" if remote else str(release / NAME)
    with pytest.raises(VerifyError, match=r"^SHA256SUMS: signature check failed \(BAD signature"):
        resolve(spec, tmp_path, public_keyring)
    assert not (tmp_path / "work" / NAME).exists()


def test_sums_signed_by_another_key_are_refused(release, tmp_path, public_keyring, other_key):
    evil = substitute(release)
    sign_sums(release / "SHA256SUMS", other_key)
    with pytest.raises(VerifyError, match="not in the keyring"):
        resolve(str(release / NAME), tmp_path, public_keyring)
    assert resolve(str(release / NAME), tmp_path, None).read_bytes() == evil  # what no keyring believes


@pytest.mark.parametrize("remote", [False, True], ids=["local", "http"])
def test_unsigned_sums_are_refused_with_a_keyring(release, serve, tmp_path, public_keyring, remote):
    (release / "SHA256SUMS.asc").unlink()
    spec = f"{serve(release)}/{NAME}" if remote else str(release / NAME)
    with pytest.raises(VerifyError, match="has no signature SHA256SUMS.asc beside it"):
        resolve(spec, tmp_path, public_keyring)


def test_sums_given_with_sums_are_checked_against_the_signature_beside_them(release, tmp_path, public_keyring):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / NAME).write_bytes((release / NAME).read_bytes())
    assert resolve(str(elsewhere / NAME), tmp_path, public_keyring, sums=str(release / "SHA256SUMS")) == \
        elsewhere / NAME
    substitute(release)
    with pytest.raises(VerifyError, match="BAD signature"):
        resolve(str(release / NAME), tmp_path, public_keyring, sums=str(release / "SHA256SUMS"))


def test_a_keyring_without_any_sha256sums_refuses_the_file(tmp_path, public_keyring, capfd):
    """Without a keyring a lone local build runs with a warning; with one, nothing vouches for it."""
    lone = tmp_path / "built" / NAME
    lone.parent.mkdir()
    lone.write_bytes(b"a file nobody signed")
    with pytest.raises(VerifyError, match="no SHA256SUMS at .*with --keyring the release must come with signed"):
        resolve(str(lone), tmp_path, public_keyring)
    assert "NOT verified" not in capfd.readouterr().err


# --- names inside SHA256SUMS ------------------------------------------------------------------------------


def escaping_release(tmp_path: Path, signing_key) -> tuple[Path, Path]:
    """www/rel/ holds SHA256SUMS (signed) naming `../evil.AppImage`; www/evil.AppImage exists beside rel/."""
    www = tmp_path / "www"
    (www / "rel").mkdir(parents=True)
    evil = www / "evil.AppImage"
    evil.write_bytes(os.urandom(50_000))
    sums = www / "rel" / "SHA256SUMS"
    sums.write_text(f"{hashlib.sha256(evil.read_bytes()).hexdigest()}  ../evil.AppImage\n")
    sign_sums(sums, signing_key)
    return www, evil


def outside(root: Path, *allowed: Path) -> list[Path]:
    """Files under root that are not under any of the allowed directories."""
    return [path for path in root.rglob("*") if path.is_file()
            and not any(path.is_relative_to(where) for where in allowed)]


@pytest.mark.parametrize("keyed", [False, True], ids=["sums", "signed sums"])
def test_a_sums_name_with_a_directory_never_writes_outside_the_work_folder(tmp_path, serve, signing_key,
                                                                           public_keyring, keyed):
    """However such a line is handled (refused, or reduced to its base name), the release's server
    is never asked for a file outside its folder and nothing lands outside the work folder."""
    www, _ = escaping_release(tmp_path, signing_key)
    before = set(outside(tmp_path, www))
    try:
        found = resolve(f"{serve(www)}/rel/", tmp_path, public_keyring if keyed else None)
    except (ChecksumError, ConfigError, DownloadError):
        found = None
    assert found is None or found.parent == tmp_path / "work"
    assert set(outside(tmp_path, www, tmp_path / "work", tmp_path / "cache")) == before


def test_a_sums_name_with_a_directory_never_picks_a_local_file_outside_the_release(tmp_path, signing_key):
    www, evil = escaping_release(tmp_path, signing_key)
    try:
        found = resolve(str(www / "rel"), tmp_path, None)
    except (ChecksumError, ConfigError):
        found = None
    assert found is None or found.resolve().parent == (www / "rel").resolve()


# --- the AppImage's embedded signature, after the sums (commands.test_downloaded) ---------------------


@pytest.fixture
def appimage_release(tmp_path, appimage, signing_key) -> Path:
    """A release directory holding a real (tiny), unsigned AppImage."""
    root = tmp_path / "signed-release"
    root.mkdir()
    shutil.copyfile(appimage, root / NAME)
    (root / NAME).chmod(0o755)
    return root


def sign_release(root: Path, key) -> None:
    sign_sums(write_sums(root, [NAME]), key)


def test_with_a_keyring_an_appimage_without_its_embedded_signature_is_refused(appimage_release, signing_key,
                                                                             public_keyring, monkeypatch):
    """Signed sums vouch for the bytes; the embedded signature must be the publisher's too."""
    checked = []
    monkeypatch.setattr(commands, "check_appimage", lambda path, **options: checked.append(path))
    sign_release(appimage_release, signing_key)
    with pytest.raises(VerifyError, match="carries no embedded signature"):
        commands.test_downloaded(str(appimage_release / NAME), sums=None, systems=(), keyring=public_keyring)
    signing.finish_appimage(appimage_release / NAME, signing_key)
    sign_release(appimage_release, signing_key)
    commands.test_downloaded(str(appimage_release / NAME), sums=None, systems=(), keyring=public_keyring)
    assert checked == [appimage_release / NAME]
