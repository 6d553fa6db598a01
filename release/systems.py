"""The systems check: the AppImage runs in a minimal Debian with no Python at all.

With /dev/fuse the runtime mounts its image; without it, it must fall back to extracting
(and say so in one line). Both are checked, so "works on my machine" never ships.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from . import rootfs, verify
from .errors import VerifyError

INSIDE = "/opt/tea.AppImage"
AGENT_INSIDE = "/opt/local-chat.yaml"


def check_in_rootfs(tarball: Path, appimage: Path, version: str, *, model_filename: str | None,
                    prolog: bool = True) -> list[str]:
    """--version with and without FUSE; for the LLM flavor also a real local-chat run, and with
    Prolog the Prolog examples (on the bundled SWI-Prolog: the system has none). Returns what ran."""
    examples = verify.PROLOG_EXAMPLES if prolog else ()
    files = {INSIDE: appimage, AGENT_INSIDE: verify.LOCAL_CHAT,
             **{f"/opt/{example.path.name}": example.path for example in examples}}
    checked = []
    with tempfile.TemporaryDirectory(prefix="tea-rootfs-") as work:

        def run_inside(args: list[str], *, fuse: bool) -> str:
            done = rootfs.run_in_rootfs(tarball, Path(work), [INSIDE, *args], files=files, fuse=fuse)
            mode, what = "FUSE" if fuse else "no FUSE", " ".join(Path(arg).name for arg in args[:2])
            checked.append(f"{what} ({mode})")
            return verify.expect(done, f"minimal system ({mode}): {appimage.name} {what}")

        for fuse in (True, False):
            output = run_inside(["--version"], fuse=fuse)
            if output != f"tea {version}":
                raise VerifyError(f"minimal system: {appimage.name} --version printed {output!r}")
        if model_filename:
            state = json.loads(run_inside(["run", AGENT_INSIDE, "--quiet", "--input", json.dumps(verify.QUESTION)],
                                          fuse=True))
            verify.check_llm_state(state, model_filename, f"minimal system: {appimage.name}")
        for example in examples:
            output = run_inside(["run", f"/opt/{example.path.name}", "--quiet", "--input", json.dumps(example.inputs)],
                                fuse=True)
            verify.check_state(verify.parse_state(output, example.path.name), example, f"minimal system: {appimage.name}")
    return checked
