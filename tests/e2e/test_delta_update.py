"""Delta updates between real releases: N is the release `invoke test` built, N+1 is built from a
copy of this repository with one changed line of tea's code (the "fresh clone"), published in parts.

The issue's bar: a code-only update of the LLM AppImage transfers at most 5% of its size over
loopback, through Debian's zsync client (whole file) and through N's own `tea self-update` (parts),
and `invoke test-appimage --update-from N` agrees. The server counts the bytes it sends.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_incremental import copy_repo
from tests.release_server import ReleaseServer, self_signed
from the_edge_agent.update.blockmap import BLOCK_SIZE, block_digest, read_blocks

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("delta")]
EDITED = "python/src/the_edge_agent/commands.py"
EDIT = ('"The Edge Agent: run YAML agents."', '"The Edge Agent: run YAML agents (release N+1)."')
GOAL = 0.05


def sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@pytest.fixture(scope="module")
def releases(tmp_path_factory, invoke, llm_appimage):
    """(N, N+1's dist, N+1 published) — N+1 split at a third of N's size (4 parts)."""
    copy = copy_repo(tmp_path_factory.mktemp("delta") / "repo")
    edited = copy / EDITED
    assert EDIT[0] in edited.read_text()
    edited.write_text(edited.read_text().replace(*EDIT))
    cap = str(llm_appimage.stat().st_size // 3 + 1)
    done = invoke("release", "--arch", "x86_64", "--flavor", "python-llm", "--model", "gemma-3-270m",
                  "--packager", "builtin", "--skip", "smoke,functional,variants,systems", "--asset-size-cap", cap, cwd=copy)
    assert done.returncode == 0, done.stderr
    published = copy / "published"
    done = invoke("publish", "--to", f"dir:{published}", cwd=copy)
    assert done.returncode == 0, done.stderr
    new = copy / "dist" / llm_appimage.name
    assert not (published / new.name).exists() and list(published.glob(new.name + ".part*"))
    return llm_appimage, new, published


def test_the_layout_keeps_the_unchanged_bytes_on_the_grid(releases):
    old, new, _ = releases
    with old.open("rb") as handle:
        have = {block_digest(block) for block in read_blocks(handle)}
    with new.open("rb") as handle:
        found = [block_digest(block) in have for block in read_blocks(handle)]
    print(f"\n{sum(found)} of {len(found)} blocks of {BLOCK_SIZE} bytes of N+1 are on N's grid")
    assert sum(found) / len(found) >= 1 - GOAL


@pytest.mark.skipif(shutil.which("zsync") is None, reason="Debian's zsync client is not installed")
def test_debians_zsync_client_transfers_at_most_5_percent(releases, tmp_path):
    old, new, _ = releases
    with ReleaseServer(new.parent) as server:
        done = subprocess.run(["zsync", "-q", "-i", str(old), "-o", str(tmp_path / new.name),
                               server.url + new.name + ".zsync"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
    assert done.returncode == 0, done.stderr
    assert sha256(tmp_path / new.name) == sha256(new)
    print(f"\nzsync: {server.bytes_sent} bytes of {new.stat().st_size} ({server.bytes_sent / new.stat().st_size:.2%})")
    assert server.bytes_sent <= GOAL * new.stat().st_size


def test_self_update_from_the_parts_transfers_at_most_5_percent(releases, tmp_path):
    old, new, published = releases
    installed = tmp_path / "Applications" / old.name
    installed.parent.mkdir()
    shutil.copy2(old, installed)
    tls = self_signed(tmp_path)
    env = {**os.environ, "SSL_CERT_FILE": str(tls)}  # unsigned releases: over HTTPS, when asked
    with ReleaseServer(published, tls=tls) as server:
        done = subprocess.run([str(installed), "self-update", "--release", server.url, "--allow-unsigned"],
                              capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr
        sent = dict(server.sent)
        again = subprocess.run([str(installed), "self-update", "--check", "--release", server.url,
                                "--allow-unsigned"], capture_output=True, text=True, timeout=600, env=env)
    assert sha256(installed) == sha256(new) and os.access(installed, os.X_OK)
    assert all(name.startswith((new.name + ".part", new.name + ".blockmap", "SHA256SUMS")) for name in sent)
    print(f"\nself-update: {sum(sent.values())} bytes of {new.stat().st_size} "
          f"({sum(sent.values()) / new.stat().st_size:.2%}); {done.stderr.strip().splitlines()[-1]}")
    assert sum(sent.values()) <= GOAL * new.stat().st_size
    assert sorted(os.listdir(installed.parent)) == [old.name]
    assert again.returncode == 0 and "is up to date" in again.stderr


def test_test_appimage_checks_an_update_from_an_older_release(releases, invoke):
    """From the published directory (a URL would fill the shared download cache with the parts)."""
    old, new, published = releases
    done = invoke("test-appimage", str(published), "--update-from", str(old), "--no-systems")
    assert done.returncode == 0, done.stderr
    assert f"update from {old.name}: updated" in done.stderr
    assert old.is_file() and sha256(old) != sha256(new)  # the older AppImage itself is left as it was
