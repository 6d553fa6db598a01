"""Running external tools: output to a log file, one actionable line when they fail."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from . import log
from .errors import BuildError

TAIL_LINES = 15


def run(cmd: Sequence[str | os.PathLike], *, what: str, log_file: Path | None = None,
        env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
    """Run cmd; return its stdout. On failure raise BuildError naming `what` and the log's tail.

    With `log_file`, all output goes there (long builds would flood a CI log); without it,
    output is captured and only shown when the command fails.
    """
    full_env = {**os.environ, **(env or {})}
    try:
        if log_file is None:
            done = subprocess.run([str(c) for c in cmd], env=full_env, cwd=cwd, text=True,
                                  capture_output=True)
            output = done.stdout + done.stderr
        else:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with log_file.open("w") as sink:
                done = subprocess.run([str(c) for c in cmd], env=full_env, cwd=cwd, text=True,
                                      stdout=sink, stderr=subprocess.STDOUT)
            output = log_file.read_text(errors="replace")
    except FileNotFoundError:
        raise BuildError(f"{what}: command not found: {cmd[0]} (run `invoke deps`)") from None
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-TAIL_LINES:])
        if tail:
            log.info(f"{what} output (last lines):\n{tail}")
        where = f"; full log: {log_file}" if log_file else ""
        raise BuildError(f"{what} failed with exit code {done.returncode}{where}")
    return done.stdout if log_file is None else output
