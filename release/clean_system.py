"""The clean-system check: the AppImage runs in a minimal Debian with no Python at all.

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
ROOTFS_ENV = {"HOME": "/root", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def run_inside(tarball: Path, appimage: Path, args: list[str], *, fuse: bool) -> str:
    files = {appimage: INSIDE, verify.LOCAL_CHAT: AGENT_INSIDE}
    with tempfile.TemporaryDirectory(prefix="tea-rootfs-") as work:
        done = rootfs.run_in_rootfs(tarball, Path(work), [INSIDE, *args], files=files, fuse=fuse, env=ROOTFS_ENV)
    return verify.expect(done, f"clean system ({'FUSE' if fuse else 'no FUSE'}): {appimage.name} {args[0]}")


def check_in_rootfs(tarball: Path, appimage: Path, version: str, *, model_filename: str | None) -> list[str]:
    """--version with and without FUSE; for the LLM flavor also a real local-chat run. Returns what ran."""
    checked = []
    for fuse in (True, False):
        output = run_inside(tarball, appimage, ["--version"], fuse=fuse)
        if output != f"tea {version}":
            raise VerifyError(f"clean system: {appimage.name} --version printed {output!r}")
        checked.append(f"--version ({'FUSE' if fuse else 'no FUSE'})")
    if model_filename:
        args = ["run", AGENT_INSIDE, "--quiet", "--input", json.dumps(verify.QUESTION)]
        state = json.loads(run_inside(tarball, appimage, args, fuse=True))
        verify.check_llm_state(state, model_filename, f"clean system: {appimage.name}")
        checked.append("run local-chat.yaml (FUSE)")
    return checked
