"""Scale proof: an LLM AppImage with a 4.4 GiB bundled model, through build, FUSE, extraction,
publishing in parts and test-appimage, all on one built image.

The model is the real 270M GGUF followed by 4.1 GiB of filler (llama.cpp ignores what follows the
tensors), so the AppImage also answers for real. The filler is not zeros (each MiB is numbered,
so a misplaced block changes the hash); only a 16 MiB hole across the 4 GiB mark is sparse, and
stored sparse, the rest of the bytes are in the image. Sizes and offsets past 4 GiB go through
both read paths: the FUSE server (fs.c) and the extractor (extract.c; a 32-bit size there
truncates the file, which this test was written to catch). The pipeline runs in-process with the
model step swapped for this file: freeze, AppDir, AppImage and the split into parts are the real
steps; smoke and functional checks then run once, through `invoke test-appimage` on the
published parts. Time, disk and memory are printed at the end (-s): ~3 min, ~18 GiB (extract-and-run's
copy included), ~4.6 GB.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import resource
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from release import config, hosts, plan
from release.artifacts import Kind
from release.pipeline import BaseStep, Context, run

pytestmark = [pytest.mark.slow, pytest.mark.big_disk]
GiB, MiB = 1 << 30, 1 << 20
MODEL_SIZE = 4 * GiB + 410 * MiB           # 4.40 GiB
HOLE = range(4 * GiB - 8 * MiB, 4 * GiB + 8 * MiB)  # sparse in the source and in the image
FREE_DISK_NEEDED = 18 * GiB
PAST_4_GIB = 4 * GiB + 8 * MiB + 12345      # a raw block, past the hole


FILLER = random.Random(15).randbytes(MiB)


def filler_at(position: int, size: int) -> bytes:
    """Filler bytes at position (within one MiB): each MiB starts with its number."""
    block = (position // MiB).to_bytes(8, "little") + FILLER[8:]
    return block[position % MiB:][:size]


def write_model(real: Path, target: Path) -> str:
    """The real GGUF, then numbered filler up to MODEL_SIZE with a hole across 4 GiB; its sha256."""
    digest = hashlib.sha256()
    with real.open("rb") as source, target.open("wb") as out:
        head = source.read()
        out.write(head)
        digest.update(head)
        position = len(head)
        while position < MODEL_SIZE:
            size = min(MiB - position % MiB, MODEL_SIZE - position)
            chunk = bytes(size) if position in HOLE else filler_at(position, size)
            if position in HOLE:
                out.seek(size, os.SEEK_CUR)
            else:
                out.write(chunk)
            digest.update(chunk)
            position += size
        out.truncate(MODEL_SIZE)
    return digest.hexdigest()


class SyntheticModelStep(BaseStep):
    """The model step, handing on a file made by the test instead of the pinned download."""

    name = "model"

    def __init__(self, path: Path, sha256: str) -> None:
        self.path, self.sha256 = path, sha256

    def run(self, ctx: Context) -> dict:
        ctx.register(Kind.MODEL, self.path, digest=self.sha256)
        return {"path": str(self.path)}


def build_release(model: Path, sha256: str, root: Path, cache: Path) -> Path:
    """The real pipeline (no checks: test-appimage runs them on the published parts) into root/dist."""
    settings = config.resolve(arch="x86_64", flavor="python-llm", model="gemma-3-270m", packager="builtin",
                              build_dir=root / "build", out=root / "dist", cache_dir=cache)
    steps = plan.steps_until(settings, "checksums", skip=frozenset({"smoke", "functional", "variants", "systems"}))
    steps = [SyntheticModelStep(model, sha256) if step.name == "model" else step for step in steps]
    run(steps, Context(settings, host=hosts.select(settings)))
    return settings.appimage_path(settings.flavors[0])


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def disk_used(root: Path) -> int:
    total = 0
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if not os.path.ismount(os.path.join(directory, d))]
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                pass  # removed while we looked
    return total


class Record:
    """Seconds per phase, and the most disk the test's files took (sampled every second, TMPDIR
    included: extractions and test-appimage's reassembly land there), printed at the end."""

    def __init__(self, root: Path) -> None:
        self.root, self.started, self.phases, self.peak_disk = root, time.monotonic(), {}, 0
        self.stop = threading.Event()
        self.sampler = threading.Thread(target=self.sample, daemon=True)
        self.sampler.start()

    def sample(self) -> None:
        while not self.stop.wait(1):
            self.peak_disk = max(self.peak_disk, disk_used(self.root))

    def done(self, phase: str) -> None:
        self.phases[phase] = round(time.monotonic() - self.started - sum(self.phases.values()), 1)

    def summary(self) -> str:
        self.stop.set()
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss >> 10
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
        return (f"scale test: {self.phases} s; peak disk {self.peak_disk / GiB:.1f} GiB; peak RSS {own} MiB (test "
                f"process), {children} MiB (largest child: tea, whose llama.cpp maps in the whole model)")


def mounted_model(appimage: Path, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    process = subprocess.Popen([str(appimage), "--appimage-mount"], env=env, stdout=subprocess.PIPE, text=True)
    return process, Path(process.stdout.readline().strip()) / "usr/share/models/gemma-3-270m-q4_k_m.gguf"


def extracted_model(appimage: Path, env: dict[str, str]) -> Path:
    """Extract-and-run, keeping the extraction (NO_CLEANUP): where the extracted model is, per `tea models`."""
    done = subprocess.run([str(appimage), "models"], env={**env, "APPIMAGE_EXTRACT_AND_RUN": "1", "NO_CLEANUP": "1"},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return Path(re.search(r"^model: (\S+)$", done.stdout, re.M).group(1))


def test_a_4_gib_model_builds_reads_back_publishes_in_parts_and_passes_test_appimage(
        gguf_model, release_cache, invoke, tmp_path, monkeypatch):
    if shutil.disk_usage(tmp_path).free < FREE_DISK_NEEDED:
        pytest.skip(f"needs {FREE_DISK_NEEDED // GiB} GiB free disk")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # for invoke's subprocesses too
    record = Record(tmp_path)
    env = {**{k: v for k, v in os.environ.items() if k not in ("APPDIR", "TEA_MODEL_PATH")}, "TMPDIR": str(tmp_path),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}  # extract-and-run's copy, counted in the disk used
    (tmp_path / "model").mkdir()
    model = tmp_path / "model" / gguf_model.name
    sha256 = write_model(gguf_model, model)
    record.done("write model")

    appimage = build_release(model, sha256, tmp_path / "release", release_cache)
    shutil.rmtree(tmp_path / "model")
    shutil.rmtree(tmp_path / "release/build/x86_64/python-llm/AppDir")  # the model's last other link
    assert appimage.stat().st_size > MODEL_SIZE - len(HOLE)  # the bytes are in the image
    record.done("build")

    server, through_fuse = mounted_model(appimage, env)
    try:
        assert through_fuse.stat().st_size == MODEL_SIZE
        with through_fuse.open("rb") as handle:
            assert os.pread(handle.fileno(), 4096, PAST_4_GIB) == filler_at(PAST_4_GIB, 4096)
        assert sha256_of(through_fuse) == sha256
    finally:
        server.terminate()
        server.wait(timeout=60)
    record.done("sha256 through FUSE")

    extracted = extracted_model(appimage, env)
    try:
        assert extracted.stat().st_size == MODEL_SIZE and sha256_of(extracted) == sha256
    finally:
        shutil.rmtree(extracted.parents[3])
    record.done("sha256 through extract-and-run")

    dist, published = appimage.parent, tmp_path / "published"
    done = invoke("publish", "--to", f"dir:{published}", "--dist", str(dist))
    assert done.returncode == 0, done.stderr
    parts = sorted(published.glob(f"{appimage.name}.part*"))
    assert len(parts) == 3 and all(part.stat().st_size < 2 * GiB for part in parts)
    assert not (published / appimage.name).exists()
    shutil.rmtree(dist)
    record.done("publish in parts")

    done = invoke("test-appimage", str(published), "--no-systems")
    assert done.returncode == 0, done.stderr
    assert f"test-appimage: {appimage.name} passed" in done.stderr
    record.done("test-appimage")
    print(record.summary())
