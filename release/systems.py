"""The systems check: the AppImage on real, minimal Debian systems with no Python at all.

Each suite of the check (bullseye, bookworm, trixie: Debian 11-13) is a debootstrap minbase
rootfs; the AppImage runs there with /dev/fuse (the runtime mounts its image) and without it (it
must fall back to extracting, and say so in one line). Where the system's glibc is at least the
AppImage's floor, smoke and the functional check run in both modes, and every LLM answer must be
the same; on an older system it must refuse with its one-line message, and nothing else (an
external packager's runtime has no such check: there the older system is skipped, and said so).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from . import appimage as appimages
from . import rootfs, verify
from .floor import newer, system_floor

INSIDE = "/opt/tea.AppImage"
LOCAL_CHAT = "/opt/local-chat.yaml"
HELLO = "/opt/hello.yaml"
FILES = {INSIDE: None, LOCAL_CHAT: verify.LOCAL_CHAT, HELLO: verify.PLAIN_EXAMPLES[0].path}


def check_on_systems(cache_dir: Path, arch: str, suites: tuple[str, ...], appimage: Path, version: str, *,
                     product: str, min_glibc: str, model_filename: str | None, llm: bool,
                     prolog: bool) -> dict[str, list[str]]:
    """Every suite, in order; returns what ran on each. Rootfs tarballs are cached once each."""
    answers: dict[str, str] = {}
    checked = {}
    refuses = appimages.runtime_checks_floor(appimage)
    for suite in suites:
        tarball = rootfs.ensure_rootfs(cache_dir, arch=arch, suite=suite)
        checked[suite] = check_in_rootfs(tarball, arch, appimage, version, product=product, min_glibc=min_glibc,
                                         model_filename=model_filename, llm=llm, prolog=prolog, answers=answers,
                                         refuses=refuses)
    if answers:
        verify.same_answers(answers, f"{appimage.name} on {', '.join(suites)}")
    return checked


def check_in_rootfs(tarball: Path, arch: str, appimage: Path, version: str, *, product: str, min_glibc: str,
                    model_filename: str | None, llm: bool, prolog: bool,
                    answers: dict[str, str] | None = None, refuses: bool = True) -> list[str]:
    """One system, with and without FUSE. Returns what ran; LLM answers go into `answers`. With
    Prolog, its examples run too (through FUSE: on the bundled SWI-Prolog, the system has none)."""
    examples = verify.PROLOG_EXAMPLES if prolog else ()
    files = {**{inside: host or appimage for inside, host in FILES.items()},
             **{inside_path(example): example.path for example in examples}}
    checked: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tea-rootfs-") as work:
        root = rootfs.unpack_rootfs(tarball, Path(work) / "root")
        glibc = system_floor(root, arch).glibc
        for fuse in (True, False):
            mode = "FUSE" if fuse else "no FUSE"
            where = f"{tarball.name.split('-')[0]} (glibc {glibc}, {mode}): {appimage.name}"

            def run(args: list[str], fuse: bool = fuse) -> subprocess.CompletedProcess:
                return rootfs.run_in_rootfs(tarball, Path(work), [INSIDE, *args], files=files, fuse=fuse)

            if newer(min_glibc, glibc) and not refuses:
                checked.append(f"skipped: glibc {glibc} < {min_glibc}, a runtime without the floor check ({mode})")
                continue
            if newer(min_glibc, glibc):
                verify.refused_with(run, where, f"{product} needs glibc >= {min_glibc}; this system has {glibc}")
                checked.append(f"refused ({mode})")
                continue
            verify.smoke_with(run, where, version)
            if llm:
                state = agent_state(run, where, LOCAL_CHAT, verify.QUESTION)
                verify.check_llm_state(state, model_filename, where)
                if answers is not None:
                    answers[where] = state["answer"]
            else:
                hello = verify.PLAIN_EXAMPLES[0]
                verify.check_state(agent_state(run, where, HELLO, hello.inputs), hello, where)
                verify.refuses_llm(run, where, LOCAL_CHAT, verify.QUESTION)
            for example in examples if fuse else ():
                verify.check_state(agent_state(run, where, inside_path(example), example.inputs), example, where)
            checked.append(f"smoke+functional{'+prolog' if examples and fuse else ''} ({mode})")
    return checked


def inside_path(example: verify.Example) -> str:
    return f"/opt/{example.path.name}"


def agent_state(run: verify.Runner, where: str, agent: str, inputs: dict) -> dict:
    """The final state `tea run <agent> --quiet` prints, inside the system."""
    what = f"{where} run {Path(agent).name}"
    return verify.parse_state(verify.expect(run(["run", agent, "--input", json.dumps(inputs), "--quiet"]), what), what)
