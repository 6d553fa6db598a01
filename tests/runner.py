"""`invoke test`: one command that prepares everything the suite needs and runs it.

First a real offline release with the 270M model (both flavors, into build/ and dist/), which is
the end-to-end test of the pipeline itself and leaves the artifacts later tests inspect; then the
app is installed into this environment with the same portable llama-cpp-python wheel; then pytest.
Tests receive read-only inputs through TEA_TEST_* variables and never touch the real home.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from release import config, hosts, llama, log, plan, proc, swipl
from release.artifacts import Kind
from release.commands import run_pipeline
from release.config import REPO

TEST_MODEL = "gemma-3-270m"


def install_app_for_tests(settings: config.Settings, prolog: Path) -> dict[str, str]:
    """Install the app (editable, with the portable llama wheel, and janus-swi compiled against the
    release's SWI-Prolog) here, and build the offline wheelhouse from which tests make a second
    environment without llama-cpp-python and janus-swi."""
    wheel, _variants = llama.ensure_wheel(settings, hosts.select(settings))
    pip = [sys.executable, "-m", "pip"]
    with proc.logging_to(settings.arch_dir / "logs" / "test-setup.log"):
        proc.run([*pip, "install", "-q", wheel, "-e", f"{REPO / 'python'}[dev]",
                  "-r", REPO / "requirements-dev.txt"], what="installing the app for the tests")
        swipl.install_janus(hosts.Host(settings), prolog, [*pip, "install", "-q", "--no-deps"],
                            scratch=settings.build_dir)
        wheelhouse = settings.build_dir / "test-wheelhouse"
        proc.run([*pip, "wheel", "-q", "-w", wheelhouse, REPO / "python"], what="building the test wheelhouse")
    # The relocated build's compiled-in home does not exist: say where it is, as its users would.
    return {"TEA_TEST_WHEELHOUSE": str(wheelhouse), "SWI_HOME_DIR": swipl.environment(prolog)["SWI_HOME_DIR"]}


def run_test_suite(*, fast: bool, pytest_args: str) -> int:
    settings = config.resolve(flavor="all", model=TEST_MODEL, packager="builtin")
    env = dict(os.environ)
    if not fast:
        ctx = run_pipeline(settings, plan.STAGES[-1])
        env.update(TEA_TEST_MODEL=str(ctx.artifacts.get(Kind.MODEL).path), TEA_TEST_DIST=str(settings.dist_dir),
                   TEA_TEST_BUILD=str(settings.build_dir), TEA_TEST_CACHE=str(settings.cache_dir))
    else:
        ctx = run_pipeline(settings, "deps")
    env.update(install_app_for_tests(settings, ctx.artifacts.get(Kind.SWIPL).path))
    chosen = "not slow" if fast else "not big_disk"
    phases = [["-n", "2", "--dist", "loadgroup", "-m", chosen]]
    if not fast:  # alone, so that their free-disk checks still hold while they run
        phases.append(["-m", "big_disk"])
    failed = 0
    for phase in phases:
        command = [sys.executable, "-m", "pytest", *phase, *pytest_args.split()]
        log.info("running: " + " ".join(command))
        returncode = subprocess.run(command, cwd=REPO, env=env).returncode
        failed = failed or (0 if returncode == pytest.ExitCode.NO_TESTS_COLLECTED else returncode)
    return failed
