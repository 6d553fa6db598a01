"""`tea self-update` against real loopback release servers with real byte ranges.

Releases are made by the release code itself (release.delta writes the .zsync and block map,
release.split the parts, release.checksums SHA256SUMS, release.signing the signatures) from
AppImage-shaped files: the real static runtime, its update information embedded, followed by
bytes of the test's choosing, so "what changed" is known to the byte. The server counts what it
sends: every assertion on traffic is an equation, not a bound. It speaks HTTPS with a certificate
tea trusts through SSL_CERT_FILE (an unsigned AppImage updates over nothing else), unless a test
says plain HTTP.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from release import checksums, delta, layout, signing, split
from tea_helpers import TEA, run_tea
from tests.keys import generate_key
from tests.release.test_appimage_format import runtime  # noqa: F401
from tests.release_server import ReleaseServer, self_signed
from the_edge_agent.update.blockmap import BLOCK_SIZE, BlockMap, block_digest

NAME = "tea-python-llm-{}-x86_64.AppImage"
OLD, NEW = NAME.format("0.1.0"), NAME.format("0.2.0")
PATTERN = NAME.format("[0-9]*") + ".zsync"
INFO = f"gh-releases-zsync|owner|tea|latest|{PATTERN}"
PAYLOAD = 48 * BLOCK_SIZE + 12345  # "model" and "code" after the runtime; not a whole number of blocks
NO_CAP = 1 << 40


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def changed(data: bytes, *spans: tuple[int, int]) -> bytes:
    """data with every byte of the [start, end) spans flipped."""
    out = bytearray(data)
    for start, end in spans:
        out[start:end] = bytes(byte ^ 0x55 for byte in out[start:end])
    return bytes(out)


def make_appimage(runtime: Path, payload: bytes, path: Path, info: str = INFO, key=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(runtime.read_bytes() + payload)
    path.chmod(0o755)
    if info:
        layout.embed_update_information(path, info)
    signing.finish_appimage(path, key)
    return path


def publish(new: Path, served: Path, *, cap: int = NO_CAP, key=None) -> Path:
    """What `invoke release` + `invoke publish` put online for `new`: the AppImage (or its parts),
    its .zsync and block map, SHA256SUMS (and its signature when there is a key)."""
    parts = [part.name for part in split.split_if_needed(new, cap)]
    names = (parts or [new.name]) + [delta.write_zsync(new).name, delta.write_blockmap(new, cap).name]
    sums = checksums.write_sums(new.parent, names)
    signature = signing.sign_sums(sums, key)
    served.mkdir(parents=True, exist_ok=True)
    for name in [*names, sums.name, *([signature.name] if signature else [])]:
        shutil.copyfile(new.parent / name, served / name)
    return served


def to_fetch(old: Path, new: Path, done: set[int] = frozenset()) -> int:
    """Bytes of `new` in blocks that are neither among old's aligned blocks nor already done."""
    have = set()
    with old.open("rb") as handle:
        while block := handle.read(BLOCK_SIZE):
            have.add(block_digest(block))
    data = new.read_bytes()
    blocks = [data[start:start + BLOCK_SIZE] for start in range(0, len(data), BLOCK_SIZE)]
    return sum(len(block) for index, block in enumerate(blocks) if index not in done and block_digest(block) not in have)


@pytest.fixture(scope="session")
def tls_pem(tmp_path_factory) -> Path:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(autouse=True)
def trusted_loopback_tls(tls_pem, monkeypatch) -> None:
    """tea (run as a subprocess, with this environment) trusts the loopback servers' certificate."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_pem))


def https(root: Path) -> ReleaseServer:
    return ReleaseServer(root, tls=Path(os.environ["SSL_CERT_FILE"]))


def update(old: Path, server_or_dir, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`tea self-update` of old from a server or a directory; an unsigned old with --allow-unsigned."""
    place = server_or_dir.url if isinstance(server_or_dir, ReleaseServer) else str(server_or_dir)
    return run_tea("self-update", "--appimage", old, "--release", place, "--allow-unsigned", *args, env=env)


def make_pair(runtime: Path, tmp_path: Path, *spans: tuple[int, int]) -> tuple[Path, Path]:
    """(installed old AppImage, new one built elsewhere) whose payloads differ in `spans`."""
    payload = os.urandom(PAYLOAD)
    old = make_appimage(runtime, payload, tmp_path / "installed" / OLD)
    new = make_appimage(runtime, changed(payload, *spans), tmp_path / "build" / NEW)
    return old, new


@pytest.fixture
def pair(runtime, tmp_path):
    """A code-only change: two blocks of the payload, across a block border (the runtime ends on
    one: the payload's blocks are the file's)."""
    assert runtime.stat().st_size % BLOCK_SIZE == 0
    return make_pair(runtime, tmp_path, (30 * BLOCK_SIZE + 5, 31 * BLOCK_SIZE + 7))


def served_by(tmp_path, new: Path, **options) -> ReleaseServer:
    return https(publish(new, tmp_path / "served", **options))


def forge_blockmap(served: Path, new: Path, **changes) -> None:
    """Rewrite the served block map of `new` with `changes` and SHA256SUMS to match (as someone
    holding an unsigned release could): only the updater's own checks can refuse it."""
    path = served / delta.blockmap_path(new).name
    path.write_text(dataclasses.replace(BlockMap.from_json(path.read_text()), **changes).to_json())
    checksums.write_sums(served, [line.split()[1] for line in (served / "SHA256SUMS").read_text().splitlines()])


def test_a_code_only_update_fetches_only_the_changed_blocks(pair, tmp_path):
    old, new = pair
    old.chmod(0o750)
    expected = to_fetch(old, new)
    with served_by(tmp_path, new) as server:
        done = update(old, server)
    assert done.returncode == 0, done.stderr
    assert sha256(old) == sha256(new)
    assert old.stat().st_mode & 0o777 == 0o750  # the installed file's mode, not the new one's
    assert server.sent[NEW] == expected == 2 * BLOCK_SIZE
    assert sorted(os.listdir(old.parent)) == [OLD]  # no partial or gpg home left behind
    assert f"updated {old} to {NEW}" in done.stderr


def test_a_full_update_fetches_everything_but_the_shared_runtime(runtime, tmp_path):
    old = make_appimage(runtime, os.urandom(PAYLOAD), tmp_path / "installed" / OLD)
    new = make_appimage(runtime, os.urandom(PAYLOAD), tmp_path / "build" / NEW)
    with served_by(tmp_path, new) as server:
        done = update(old, server)
    assert done.returncode == 0, done.stderr
    assert sha256(old) == sha256(new)
    assert server.sent[NEW] == PAYLOAD


def test_up_to_date_writes_nothing_and_check_says_so(pair, tmp_path):
    old, new = pair
    with served_by(tmp_path, new) as server:
        shutil.copyfile(new, old)
        before = old.stat().st_mtime_ns
        current = update(old, server, "--check")
        again = update(old, server)
    assert current.returncode == 0 and again.returncode == 0, current.stderr + again.stderr
    assert "is up to date" in current.stderr and "is up to date" in again.stderr
    assert old.stat().st_mtime_ns == before and server.sent[NEW] == 0


def test_check_reports_an_update_and_changes_nothing(pair, tmp_path):
    old, new = pair
    before = sha256(old)
    with served_by(tmp_path, new) as server:
        done = update(old, server, "--check")
    assert done.returncode == 1, done.stderr
    assert f"update available: {NEW}, 0.1 MB to download" in done.stderr
    assert sha256(old) == before and sorted(os.listdir(old.parent)) == [OLD] and server.sent[NEW] == 0


def test_split_parts_whole_file_ranges_go_to_the_right_parts(runtime, tmp_path):
    payload = os.urandom(PAYLOAD)
    old = make_appimage(runtime, payload, tmp_path / "installed" / OLD)
    size = len(payload) + runtime.stat().st_size
    cap = size // 3 + 1000
    border = sum(split.part_sizes(size, cap)[:2]) - runtime.stat().st_size  # where part 2 ends, in the payload
    new = make_appimage(runtime, changed(payload, (border - 70000, border + 70000)), tmp_path / "build" / NEW)
    expected = to_fetch(old, new)
    with served_by(tmp_path, new, cap=cap) as server:
        assert not (server.root / NEW).exists()
        done = update(old, server)
    assert done.returncode == 0, done.stderr
    assert sha256(old) == sha256(new)
    parts = split.part_names(NEW, 3)
    assert server.sent[parts[1]] + server.sent[parts[2]] == expected >= 3 * BLOCK_SIZE
    assert server.sent[parts[0]] == 0 and server.sent[parts[1]] > 0 and server.sent[parts[2]] > 0


def blocks_matching(path: Path, new: Path) -> set[int]:
    """The blocks of a partial file that already hold the new file's bytes."""
    blockmap = BlockMap.from_json(delta.blockmap_path(new).read_text())
    data = path.read_bytes()
    return {index for index in range(blockmap.blocks)
            if block_digest(data[index * BLOCK_SIZE:(index + 1) * BLOCK_SIZE]) == blockmap.digest(index)}


def test_an_interrupted_update_resumes_without_fetching_again(runtime, tmp_path):
    old, new = make_pair(runtime, tmp_path, (0, 20 * BLOCK_SIZE))
    before = sha256(old)
    with served_by(tmp_path, new) as server:
        server.stall_after = 5 * BLOCK_SIZE + 100
        killed = subprocess.Popen([str(TEA), "self-update", "--appimage", str(old), "--release", server.url,
                                   "--allow-unsigned"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert server.stalled.wait(60)
        partial = old.parent / f".{OLD}.update" / sha256(new)[:16]
        deadline = time.monotonic() + 30
        while to_fetch(old, new, blocks_matching(partial, new)) > 16 * BLOCK_SIZE and time.monotonic() < deadline:
            time.sleep(0.05)  # the 4 blocks the server sent before it stalled are being written
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        server.release()
        assert sha256(old) == before
        expected = to_fetch(old, new, blocks_matching(partial, new))
        server.stall_after = None
        server.sent.clear()
        resumed = update(old, server)
    assert resumed.returncode == 0, resumed.stderr
    assert sha256(old) == sha256(new)
    # the server stalled after 4 blocks (and the small files): those 4 are not fetched again
    assert server.sent[NEW] == expected == 16 * BLOCK_SIZE


@pytest.mark.parametrize("fault, message", [
    ("ignore-range", "does not serve byte ranges correctly"),   # 200 and the whole file
    ("ignore-range-announced", "does not serve byte ranges correctly"),  # the same, with the Content-Range asked
    ("wrong-range", "does not serve byte ranges correctly"),    # 206 for another range
    ("shift", "do not match its block map"),                    # the right Content-Range, bytes one off
    ("tamper", "do not match its block map"),                   # one flipped byte
])
def test_a_server_with_wrong_bytes_changes_nothing(pair, tmp_path, fault, message):
    old, new = pair
    before = sha256(old)
    with served_by(tmp_path, new) as server:
        server.faults.append(fault)
        done = update(old, server)
    assert done.returncode == 3
    assert len(done.stderr.splitlines()) == 2 and message in done.stderr.splitlines()[-1], done.stderr
    assert sha256(old) == before
    partial, = old.parent.glob(f".{OLD}.update/*")
    data, wanted = partial.read_bytes(), new.read_bytes()
    for start in range(0, len(data), BLOCK_SIZE):  # a block is a hole (zeros) or the new bytes, never theirs
        assert data[start:start + BLOCK_SIZE] in (wanted[start:start + BLOCK_SIZE], bytes(len(data[start:start + BLOCK_SIZE])))


def test_a_dropped_connection_is_resumed_within_the_run(pair, tmp_path):
    old, new = pair
    with served_by(tmp_path, new) as server:
        server.faults.append("drop")
        done = update(old, server)
    assert done.returncode == 0, done.stderr
    assert sha256(old) == sha256(new)
    first, second = [r for r in server.ranges() if r][-2:]
    assert first == f"bytes={old.stat().st_size - PAYLOAD + 30 * BLOCK_SIZE}-{old.stat().st_size - PAYLOAD + 32 * BLOCK_SIZE - 1}"
    assert second == f"bytes={old.stat().st_size - PAYLOAD + 31 * BLOCK_SIZE}-{old.stat().st_size - PAYLOAD + 32 * BLOCK_SIZE - 1}"
    assert server.sent[NEW] == 2 * BLOCK_SIZE  # half of the first answer, then only the rest


def test_the_whole_file_hash_is_the_last_gate(pair, tmp_path):
    """A block map whose blocks are right but whose sha256 is not (an unsigned release someone
    rewrote consistently): the assembled file is discarded, the installed one kept."""
    old, new = pair
    cap = new.stat().st_size // 2 + 1
    served = publish(new, tmp_path / "served", cap=cap)
    forge_blockmap(served, new, sha256="0" * 64)
    before = sha256(old)
    with https(served) as server:
        done = update(old, server)
    assert done.returncode == 3 and "has sha256" in done.stderr and "discarded it" in done.stderr, done.stderr
    assert sha256(old) == before and sorted(os.listdir(old.parent)) == [OLD]


def test_a_block_map_that_disagrees_with_sha256sums_is_refused(pair, tmp_path):
    old, new = pair
    served = publish(new, tmp_path / "served")
    (served / delta.blockmap_path(new).name).write_text(
        BlockMap.from_json(delta.blockmap_path(new).read_text()).to_json().replace('"block_size"', '"block_size" '))
    with https(served) as server:
        done = update(old, server)
    assert done.returncode == 3 and "does not match the release's SHA256SUMS" in done.stderr, done.stderr


def test_a_local_release_directory_works_too(pair, tmp_path):
    old, new = pair
    done = update(old, publish(new, tmp_path / "served"))
    assert done.returncode == 0, done.stderr
    assert sha256(old) == sha256(new)


# --- trust ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_key():
    from release.gpg import SigningKey, checked

    return checked(SigningKey(generate_key("someone else <else@example.invalid>")[0]))


def signed_pair(runtime, tmp_path, key) -> tuple[Path, Path]:
    payload = os.urandom(PAYLOAD)
    old = make_appimage(runtime, payload, tmp_path / "installed" / OLD, key=key)
    new = make_appimage(runtime, changed(payload, (BLOCK_SIZE, 2 * BLOCK_SIZE)), tmp_path / "build" / NEW, key=key)
    return old, new


def test_a_signed_appimage_takes_a_release_signed_by_its_key_even_over_plain_http(runtime, tmp_path, signing_key):
    old, new = signed_pair(runtime, tmp_path, signing_key)
    with ReleaseServer(publish(new, tmp_path / "served", key=signing_key)) as server:
        done = run_tea("self-update", "--appimage", old, "--release", server.url)
    assert done.returncode == 0, done.stderr
    assert f"SHA256SUMS: signed by {signing_key.fingerprint}" in done.stderr
    assert sha256(old) == sha256(new)


@pytest.mark.parametrize("release", ["unsigned", "other key", "changed after signing"])
def test_a_signed_appimage_refuses_any_other_release(runtime, tmp_path, signing_key, other_key, release):
    old, new = signed_pair(runtime, tmp_path, signing_key)
    served = publish(new, tmp_path / "served", key={"unsigned": None, "other key": other_key}.get(release, signing_key))
    if release == "changed after signing":
        (served / "SHA256SUMS").write_text((served / "SHA256SUMS").read_text() + "\n")
    before = sha256(old)
    with https(served) as server:
        done = update(old, server)
    assert done.returncode == 3, done.stderr
    assert {"unsigned": "no SHA256SUMS.asc", "other key": "another key than the publisher's",
            "changed after signing": "BAD signature"}[release] in done.stderr
    assert sha256(old) == before and sorted(os.listdir(old.parent)) == [OLD] and server.sent[NEW] == 0


def test_keyring_checks_the_release_of_an_unsigned_appimage(pair, tmp_path, signing_key, public_keyring, other_key):
    """The key vouches for the release: no --allow-unsigned needed, and plain HTTP will do."""
    old, new = pair
    with ReleaseServer(publish(new, tmp_path / "served", key=other_key)) as server:
        refused = run_tea("self-update", "--appimage", old, "--release", server.url, "--keyring", public_keyring)
        assert refused.returncode == 3 and "another key" in refused.stderr, refused.stderr
    with ReleaseServer(publish(new, tmp_path / "served-signed", key=signing_key)) as server:
        done = run_tea("self-update", "--appimage", old, "--release", server.url, "--keyring", public_keyring)
    assert done.returncode == 0 and f"signed by {signing_key.fingerprint}" in done.stderr, done.stderr


def test_an_unsigned_appimage_says_what_it_checked(pair, tmp_path):
    old, new = pair
    with served_by(tmp_path, new) as server:
        done = update(old, server)
    assert done.returncode == 0, done.stderr
    assert "not signed: the update is checked against SHA256SUMS only, as fetched over HTTPS" in done.stderr


def test_an_unsigned_appimage_updates_only_when_asked(pair, tmp_path):
    """Issue 24 N7: the default build is unsigned; its update must not trust a release silently."""
    old, new = pair
    before = sha256(old)
    with served_by(tmp_path, new) as server:
        done = run_tea("self-update", "--appimage", old, "--release", server.url)
        checked = run_tea("self-update", "--check", "--appimage", old, "--release", server.url)
    for refused in (done, checked):
        assert refused.returncode == 3 and len(refused.stderr.splitlines()) == 1, refused.stderr
        assert "not signed and no --keyring was given" in refused.stderr and "--allow-unsigned" in refused.stderr
    assert server.requests == [] and sha256(old) == before


def test_an_unsigned_appimage_never_updates_over_plain_http(pair, tmp_path):
    old, new = pair
    before = sha256(old)
    with ReleaseServer(publish(new, tmp_path / "served")) as server:
        done = update(old, server)
    assert done.returncode == 3 and "refusing plain HTTP for an unsigned AppImage" in done.stderr, done.stderr
    assert server.requests == [] and sha256(old) == before


def test_an_unsigned_appimage_never_follows_a_redirect_to_plain_http(pair, tmp_path):
    old, new = pair
    served = publish(new, tmp_path / "served")
    with ReleaseServer(served) as plain, https(tmp_path / "empty") as front:
        front.redirect_to = plain.url
        done = update(old, front)
    assert done.returncode == 3 and "refusing plain HTTP for an unsigned AppImage" in done.stderr, done.stderr
    assert front.requests and plain.requests == [] and sha256(old) != sha256(new)


def test_a_release_older_than_the_running_tea_is_refused_unless_asked(runtime, tmp_path):
    """Issue 24 N5: an older release signed by the same key is no update (0.2.0 became 0.1.0)."""
    running = subprocess.run([str(TEA), "--version"], capture_output=True, text=True).stdout.split()[-1]
    older = NAME.format("0.0.9")
    payload = os.urandom(PAYLOAD)
    installed = make_appimage(runtime, payload, tmp_path / "installed" / NAME.format(running))
    old_release = make_appimage(runtime, changed(payload, (0, 10)), tmp_path / "build" / older)
    served = publish(old_release, tmp_path / "served")
    before = sha256(installed)
    for args in ([], ["--check"]):
        refused = update(installed, served, *args)
        assert refused.returncode == 3 and f"offers {older}, older than this tea {running}" in refused.stderr, \
            refused.stderr
    assert sha256(installed) == before
    done = update(installed, served, "--allow-downgrade")
    assert done.returncode == 0 and sha256(installed) == sha256(old_release), done.stderr


def test_versions_compare_as_pep_440_orders_them():
    from the_edge_agent.version import version_key

    ordered = ["0+unknown", "0.1.0.dev1", "0.1.0a1", "0.1.0b2", "0.1.0rc1", "0.1.0", "0.1.0.post1", "0.1.1",
               "0.2.0", "0.10.0", "1.0"]
    assert sorted(ordered[::-1], key=version_key) == ordered
    assert version_key("0.1") == version_key("0.1.0") and version_key("latest") is None


def test_a_release_of_the_running_version_or_without_one_in_its_name(runtime, tmp_path):
    """The same version (a re-published build) updates; a name without a version is refused."""
    running = subprocess.run([str(TEA), "--version"], capture_output=True, text=True).stdout.split()[-1]
    payload = os.urandom(PAYLOAD)
    installed = make_appimage(runtime, payload, tmp_path / "installed" / NAME.format(running))
    same = make_appimage(runtime, changed(payload, (0, 10)), tmp_path / "build" / NAME.format(running))
    assert update(installed, publish(same, tmp_path / "served")).returncode == 0
    assert sha256(installed) == sha256(same)
    info = "zsync|https://127.0.0.1/tea-python-llm-x86_64.AppImage.zsync"
    odd = make_appimage(runtime, payload, tmp_path / "odd" / "tea-python-llm-x86_64.AppImage", info=info)
    other = make_appimage(runtime, changed(payload, (0, 10)), tmp_path / "odd-build" / odd.name, info=info)
    refused = update(odd, publish(other, tmp_path / "odd-served"))
    assert refused.returncode == 3 and "cannot tell the version of tea-python-llm-x86_64.AppImage" in refused.stderr


# --- where it writes ---------------------------------------------------------------------------

WRITES = "openat,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat,rmdir,link,linkat,symlink," \
         "symlinkat,truncate,chmod,fchmodat,chown,fchownat,utimensat"
_CALL = re.compile(r"(?:\[pid +\d+\] |\d+ +)?(\w+)\((.*)\) += (-?\d+)")
_PATH_ARG = re.compile(r'(?:(?:AT_FDCWD|\d+)<([^>]*)>, )?"([^"]*)"')  # strace -y: a dirfd with its path


def written_paths(trace: Path, cwd: Path) -> set[Path]:
    """Every path a traced process created, changed or removed (openat only when opened for writing)."""
    found = set()
    for line in trace.read_text().splitlines():
        match = _CALL.match(line)
        if not match or match[3].startswith("-"):
            continue
        call, args = match[1], match[2]
        if call in ("openat", "creat") and not re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", args):
            continue
        found.update(Path(os.path.normpath(Path(directory or cwd) / name)) for directory, name in _PATH_ARG.findall(args))
    return found


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_no_write_outside_the_appimages_directory(runtime, tmp_path, signing_key):
    """The whole signed update (gpg included), traced: every path written is in the AppImage's dir."""
    old, new = signed_pair(runtime, tmp_path, signing_key)
    elsewhere = tmp_path / "elsewhere"
    for name in ("home", "tmp", "cwd"):
        (elsewhere / name).mkdir(parents=True)
    env = {**os.environ, "HOME": str(elsewhere / "home"), "TMPDIR": str(elsewhere / "tmp"),
           "XDG_CACHE_HOME": str(elsewhere / "home/.cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    with served_by(tmp_path, new, key=signing_key) as server:
        done = subprocess.run(["strace", "-f", "-qq", "-y", "-o", str(tmp_path / "trace"), "-e", f"trace={WRITES}",
                               str(TEA), "self-update", "--appimage", str(old), "--release", server.url],
                              cwd=elsewhere / "cwd", env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sha256(old) == sha256(new)
    written = written_paths(tmp_path / "trace", elsewhere / "cwd")
    outside = {path for path in written if old.parent not in (path, *path.parents)
               and not str(path).startswith(("/dev/", "/proc/self/"))}
    assert written and not outside, sorted(outside)
    assert not any(elsewhere.rglob("*.*")) and sorted(os.listdir(old.parent)) == [OLD]


# --- where the release is ----------------------------------------------------------------------


def test_gh_releases_zsync_finds_the_latest_release_through_the_github_api(runtime, tmp_path, signing_key):
    """Signed: the loopback fake of GitHub speaks plain HTTP, which only a signature makes safe."""
    from tests.release.fake_github import FakeGitHub, FakeAsset, FakeRelease

    old, new = signed_pair(runtime, tmp_path, signing_key)
    served = publish(new, tmp_path / "served", key=signing_key)
    with FakeGitHub("token", repo="owner/tea") as fake:
        for tag, files in (("v0.0.1", []), ("v0.2.0", sorted(served.iterdir()))):
            release = FakeRelease(fake.next_id(), tag, draft=False)
            release.assets = {(asset_id := fake.next_id()): FakeAsset(asset_id, path.name, "", path.read_bytes())
                              for path in files}
            fake.releases[release.id] = release
        expected = to_fetch(old, new)
        done = run_tea("self-update", "--appimage", old, env={"GITHUB_API_URL": fake.url})
    assert done.returncode == 0, done.stderr
    assert sha256(old) == sha256(new)
    assert ("GET", "/repos/owner/tea/releases/latest") in fake.requests
    assert fake.downloaded[NEW] == expected > 0


def test_zsync_update_information_names_the_release_directly(runtime, tmp_path):
    with https(tmp_path / "served") as server:
        payload = os.urandom(PAYLOAD)
        info = f"zsync|{server.url}{NEW}.zsync"
        old = make_appimage(runtime, payload, tmp_path / "installed" / OLD, info=info)
        new = make_appimage(runtime, changed(payload, (0, 10)), tmp_path / "build" / NEW, info=info)
        publish(new, server.root)
        done = run_tea("self-update", "--appimage", old, "--allow-unsigned")
    assert done.returncode == 0, done.stderr
    assert sha256(old) == sha256(new) and server.sent[NEW] == BLOCK_SIZE


# --- what is not an update ---------------------------------------------------------------------


def test_without_update_information_it_says_what_to_do(runtime, tmp_path):
    old = make_appimage(runtime, b"x" * 100, tmp_path / OLD, info="")
    done = run_tea("self-update", "--appimage", old, "--allow-unsigned")
    assert done.returncode == 3 and done.stderr.strip().endswith("or give its place with --release URL"), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("info", ["bintray-zsync|a|b|c|d", "zsync|file:///etc/passwd", "gh-releases-zsync|a|b"])
def test_unsupported_update_information_is_one_line(runtime, tmp_path, info):
    done = run_tea("self-update", "--appimage", make_appimage(runtime, b"x", tmp_path / OLD, info=info),
                   "--allow-unsigned")
    assert done.returncode == 3 and "unsupported update information" in done.stderr, done.stderr


def test_not_an_appimage_or_not_in_one(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"\x7fELF\x02\x01" + bytes(100))  # a valid ELF class and order, no AppImage magic
    done = run_tea("self-update", "--appimage", plain)
    assert done.returncode == 3 and "is not a type-2 AppImage" in done.stderr
    outside = run_tea("self-update", env={"APPIMAGE": ""})
    assert outside.returncode == 3 and "not running from an AppImage" in outside.stderr


def test_names_from_the_release_cannot_leave_its_directory(pair, tmp_path):
    old, new = pair
    served = publish(new, tmp_path / "served", cap=new.stat().st_size // 2 + 1)
    true = BlockMap.from_json(delta.blockmap_path(new).read_text())
    forge_blockmap(served, new, parts=(dataclasses.replace(true.parts[0], name="../../evil"), *true.parts[1:]))
    with https(served) as server:
        done = update(old, server)
    assert done.returncode == 3 and "bad part name" in done.stderr, done.stderr
    assert not (tmp_path / "evil").exists()


def test_sha256sums_and_block_map_must_agree_about_the_whole_file(pair, tmp_path):
    old, new = pair
    served = publish(new, tmp_path / "served")
    forge_blockmap(served, new, sha256="0" * 64)
    assert f"{sha256(new)}  {NEW}\n" in (served / "SHA256SUMS").read_text()
    with https(served) as server:
        done = update(old, server)
    assert done.returncode == 3 and "disagree about its sha256" in done.stderr, done.stderr
    assert server.sent[NEW] == 0


def test_every_part_must_be_listed_in_sha256sums(pair, tmp_path):
    old, new = pair
    served = publish(new, tmp_path / "served", cap=new.stat().st_size // 2 + 1)
    kept = [line for line in (served / "SHA256SUMS").read_text().splitlines() if not line.endswith(".part02")]
    (served / "SHA256SUMS").write_text("\n".join(kept) + "\n")
    with https(served) as server:
        done = update(old, server)
    assert done.returncode == 3 and "lists neither" in done.stderr, done.stderr


def test_a_name_in_sha256sums_cannot_lead_out_of_the_release(pair, tmp_path):
    """A pattern's `*` matches `/`: the name it picks is still refused unless it is a plain name."""
    old, new = pair
    served = publish(new, tmp_path / "served")
    sums = (served / "SHA256SUMS").read_text().replace(f"  {NEW}.zsync", "  tea-python-llm-0/../../x-x86_64.AppImage.zsync")
    (served / "SHA256SUMS").write_text(sums)
    done = update(old, served)
    assert done.returncode == 3 and "only plain file names" in done.stderr, done.stderr


def test_a_second_updater_waits_for_the_first(pair, tmp_path):
    import fcntl

    old, new = pair
    served = publish(new, tmp_path / "served")
    work = old.parent / f".{OLD}.update"
    work.mkdir(mode=0o700)
    held = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = update(old, served)
    finally:
        os.close(held)
    assert done.returncode == 3 and "another `tea self-update` is updating" in done.stderr, done.stderr
    assert sha256(old) != sha256(new)


def test_partials_of_another_release_are_removed_and_nothing_else(pair, tmp_path):
    old, new = pair
    work = old.parent / f".{OLD}.update"
    work.mkdir(mode=0o700)
    stale = work / ("ab" * 8)
    stale.write_bytes(b"an older attempt")
    unrelated = [old.parent / ".notes.update", old.parent / f".{OLD}.backup"]
    for path in unrelated:
        path.write_text("mine")
    done = update(old, publish(new, tmp_path / "served"))
    assert done.returncode == 0, done.stderr
    assert not work.exists() and all(path.read_text() == "mine" for path in unrelated)


# --- a directory others can write (issue 24, N13) ------------------------------------------------


@pytest.fixture
def bashrc(isolated_home) -> Path:
    victim = isolated_home / ".bashrc"
    victim.write_text("# the victim's shell setup\n")
    victim.chmod(0o644)
    return victim


def untouched(victim: Path) -> bool:
    return victim.read_text() == "# the victim's shell setup\n" and victim.stat().st_mode & 0o777 == 0o644


def test_a_symlink_planted_where_the_partial_used_to_be_changes_nothing_of_the_victims(pair, tmp_path, bashrc):
    """The attack that worked: `.<name>.<sha>.update` -> ~/.bashrc made the update overwrite it with
    the AppImage, mode 0755."""
    old, new = pair
    (old.parent / f".{OLD}.{sha256(new)[:16]}.update").symlink_to(bashrc)
    done = update(old, publish(new, tmp_path / "served"))
    assert done.returncode == 0, done.stderr
    assert sha256(old) == sha256(new) and not old.is_symlink() and untouched(bashrc)


def test_a_symlink_planted_as_the_work_directory_is_refused(pair, tmp_path, bashrc):
    old, new = pair
    bashrc.parent.chmod(0o700)  # a private home: the symlink would pass for the update's own directory
    (old.parent / f".{OLD}.update").symlink_to(bashrc.parent)
    before = sorted(os.listdir(bashrc.parent))
    done = update(old, publish(new, tmp_path / "served"))
    assert done.returncode == 3 and "is not a directory the update made" in done.stderr, done.stderr
    assert sorted(os.listdir(bashrc.parent)) == before and untouched(bashrc) and sha256(old) != sha256(new)


def test_a_symlink_inside_the_work_directory_is_never_followed(pair, tmp_path, bashrc):
    old, new = pair
    work = old.parent / f".{OLD}.update"
    work.mkdir(mode=0o700)
    (work / sha256(new)[:16]).symlink_to(bashrc)
    done = update(old, publish(new, tmp_path / "served"))
    assert done.returncode == 3 and "remove" in done.stderr and str(work) in done.stderr, done.stderr
    assert untouched(bashrc) and sha256(old) != sha256(new)


@pytest.mark.parametrize("owner", ["another user", "anyone may write"])
def test_a_work_directory_that_is_not_private_is_refused(pair, tmp_path, owner):
    old, new = pair
    work = old.parent / f".{OLD}.update"
    work.mkdir(mode=0o700)
    if owner == "another user":
        if os.geteuid() != 0:
            pytest.skip("needs root to give a directory to another user")
        os.chown(work, 65534, 65534)
    else:
        work.chmod(0o777)
    done = update(old, publish(new, tmp_path / "served"))
    assert done.returncode == 3 and "is not private to you" in done.stderr, done.stderr
    assert sha256(old) != sha256(new) and work.is_dir() and not any(work.iterdir())


def test_oversized_release_files_are_refused(pair, tmp_path):
    old, new = pair
    served = publish(new, tmp_path / "served")
    with (served / "SHA256SUMS").open("a") as sums:
        sums.write(("0" * 64 + "  padding\n") * 20000)
    with https(served) as server:
        done = update(old, server)
    assert done.returncode == 3 and "larger than the 1048576 bytes expected" in done.stderr, done.stderr


def test_one_good_signature_does_not_excuse_a_bad_one_beside_it(runtime, tmp_path, signing_key):
    old, new = signed_pair(runtime, tmp_path, signing_key)
    served = publish(new, tmp_path / "served", key=signing_key)
    other = tmp_path / "other"
    other.write_text("other data\n")
    binary = [subprocess.run(["gpg", "--dearmor"], input=path.read_bytes(), capture_output=True, check=True).stdout
              for path in (served / "SHA256SUMS.asc", signing.sign_sums(other, signing_key))]
    (served / "SHA256SUMS.asc").write_bytes(binary[0] + binary[1])
    done = update(old, served)
    assert done.returncode == 3 and "BAD signature" in done.stderr, done.stderr


def test_parts_that_do_not_add_up_to_the_file_are_refused(pair, tmp_path):
    old, new = pair
    served = publish(new, tmp_path / "served", cap=new.stat().st_size // 2 + 1)
    true = BlockMap.from_json(delta.blockmap_path(new).read_text())
    forge_blockmap(served, new, parts=(dataclasses.replace(true.parts[0], size=true.parts[0].size - 1),
                                       *true.parts[1:]))
    done = update(old, served)
    assert done.returncode == 3 and "parts do not add up" in done.stderr, done.stderr


def test_a_block_map_of_another_appimage_is_refused(pair, tmp_path):
    """The block map listed for this AppImage's release file must describe that file, not another
    flavor's (which SHA256SUMS lists too)."""
    old, new = pair
    other = shutil.copyfile(new, new.with_name(NAME.replace("-llm", "").format("0.2.0")))
    served = publish(new, tmp_path / "served")
    shutil.copyfile(other, served / other.name)
    with (served / "SHA256SUMS").open("a") as sums:
        sums.write(f"{sha256(other)}  {other.name}\n")
    forge_blockmap(served, new, name=other.name)
    with https(served) as server:
        done = update(old, server)
    assert done.returncode == 3 and f"describes {other.name}: refusing it" in done.stderr, done.stderr
    assert server.sent.get(other.name, 0) == 0


# --- hostile block maps, API answers and ELF headers: one line, never a traceback (issue 24, N14) ----


def one_line_error(done: subprocess.CompletedProcess, needle: str) -> None:
    """Refused (exit 3) in one line that names `needle`: after the line saying what is checked, if any."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 3 and "Traceback" not in done.stderr and len(lines) <= 2, done.stderr
    assert needle in lines[-1] and not lines[-1].startswith("tea: this AppImage"), done.stderr


def blockmap_json(new: Path, **changes) -> str:
    data = json.loads(BlockMap.from_json(delta.blockmap_path(new).read_text()).to_json())
    return json.dumps({**data, **changes})


HOSTILE_BLOCKMAPS = {
    "nesting 100000 deep": lambda new: "[" * 100_000 + "]" * 100_000,
    "a number": lambda new: "5",
    "block size 0": lambda new: blockmap_json(new, block_size=0),
    "a negative size": lambda new: blockmap_json(new, size=-5),
    "blocks that are not base64": lambda new: blockmap_json(new, blocks="*" * 12),
    "parts that are a string": lambda new: blockmap_json(new, parts="abc"),
    "a size of 10**5000": lambda new: blockmap_json(new).replace('"size": ', '"size": 1' + "0" * 5000 + ", \"x\": ", 1),
}


@pytest.mark.parametrize("what", HOSTILE_BLOCKMAPS)
def test_a_hostile_block_map_is_one_line(pair, tmp_path, what):
    old, new = pair
    served = publish(new, tmp_path / "served")
    (served / delta.blockmap_path(new).name).write_text(HOSTILE_BLOCKMAPS[what](new))
    checksums.write_sums(served, [line.split()[1] for line in (served / "SHA256SUMS").read_text().splitlines()])
    one_line_error(update(old, served), f"{NEW}.blockmap")


class _Answer(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"assets": [1, 2]}', b'{"assets": "x"}',
                                  b'{"assets": [{"name": ["x"], "browser_download_url": 5}]}', b"\xff\xfe"],
                         ids=["nesting 100000 deep", "assets that are numbers", "assets that are a string",
                              "a name that is a list", "not UTF-8"])
def test_a_hostile_github_answer_is_one_line(runtime, tmp_path, signing_key, body):
    """Signed, so that plain HTTP is allowed and the answer is what gets read."""
    old = make_appimage(runtime, b"x" * 100, tmp_path / OLD, key=signing_key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Answer,), {"body": body}))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        done = run_tea("self-update", "--appimage", old, env={"GITHUB_API_URL": f"http://127.0.0.1:{server.server_address[1]}"})
    finally:
        server.shutdown()
        server.server_close()
    one_line_error(done, "owner/tea")


def elf_field(path: Path, offset: int, fmt: str, value: int) -> Path:
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data))
    return path


HOSTILE_ELF = {  # ELF64 little-endian header fields: e_shoff 0x28, e_shentsize 0x3A, e_shnum 0x3C, e_shstrndx 0x3E
    "section table past the end": (0x28, "<Q", 1 << 60),
    "zero-sized section entries": (0x3A, "<H", 0),
    "one-byte section entries": (0x3A, "<H", 1),
    "65535 sections": (0x3C, "<H", 0xFFFF),
    "name table past the table": (0x3E, "<H", 0xFFFE),
}


@pytest.mark.parametrize("what", HOSTILE_ELF)
def test_a_hostile_elf_header_of_the_installed_appimage_is_one_line(runtime, tmp_path, what):
    old = elf_field(make_appimage(runtime, b"x" * 100, tmp_path / OLD), *HOSTILE_ELF[what])
    one_line_error(run_tea("self-update", "--appimage", old, "--allow-unsigned"), str(old))
