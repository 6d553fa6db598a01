"""The one way release code runs external commands.

Every command is written to the current log (the running step's `build/<arch>/logs/<step>.log`,
or a task's own log) as `+ <command>` followed by its output, so a failure can always be read in
full later. A failure is one line naming the command, its exit code and the log's path; the
caller chooses the error class (BuildError for builds, VerifyError for checks). Nothing here
lets a CalledProcessError or a traceback reach the user.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from . import log
from .errors import BuildError, ReleaseError

TAIL_LINES = 15
_current_log: list[Path] = []


@contextlib.contextmanager
def logging_to(path: Path) -> Iterator[Path]:
    """Send the commands run inside this block (and their output) to `path`, started afresh."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    _current_log.append(path)
    try:
        yield path
    finally:
        _current_log.pop()


def current_log() -> Path | None:
    return _current_log[-1] if _current_log else None


def quote(cmd: Sequence[str | os.PathLike]) -> str:
    return shlex.join(str(part) for part in cmd)


def _append(text: str) -> None:
    path = current_log()
    if path is not None:
        with path.open("a", errors="replace") as sink:
            sink.write(text if text.endswith("\n") or not text else text + "\n")


def run(cmd: Sequence[str | os.PathLike], *, what: str | None = None, env: Mapping[str, str] | None = None,
        clean_env: bool = False, cwd: Path | None = None, timeout: float | None = None, check: bool = True,
        stream: bool = False, input: str | None = None,
        error: type[ReleaseError] = BuildError) -> subprocess.CompletedProcess:
    """Run `cmd` and return the finished process (text stdout/stderr unless `stream`).

    `env` is added to this process's environment, or is the whole environment with `clean_env`.
    `stream` writes the output straight into the log (long builds: `tail -f` shows progress)
    instead of holding it in memory. With `check`, a non-zero exit raises `error`.
    """
    argv = [str(part) for part in cmd]
    what = what or Path(argv[0]).name
    full_env = dict(env or {}) if clean_env else {**os.environ, **(env or {})}
    _append(f"+ {quote(argv)}")
    log_path = current_log()
    try:
        if stream and log_path is not None:
            with log_path.open("a") as sink:
                done = subprocess.run(argv, env=full_env, cwd=cwd, timeout=timeout, text=True,
                                      stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
        else:
            done = subprocess.run(argv, env=full_env, cwd=cwd, timeout=timeout, text=True, errors="replace",
                                  input=input, capture_output=True,
                                  stdin=None if input is not None else subprocess.DEVNULL)
            _append(done.stdout + done.stderr)
    except FileNotFoundError:
        raise error(f"{what}: command not found: {argv[0]} (run `invoke deps`)") from None
    except OSError as exc:  # not a program this machine runs (ENOEXEC), not executable, ...
        raise error(f"{what}: cannot run {argv[0]}: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise error(f"{what} timed out after {timeout:.0f} s: {_short(argv)}{_where(log_path)}") from None
    if check and done.returncode != 0:
        _show_tail(what, done, log_path)
        raise error(f"{what} failed with exit code {done.returncode}: {_short(argv)}{_where(log_path)}")
    return done


def output(cmd: Sequence[str | os.PathLike], **options) -> str:
    """stdout of a command that must succeed."""
    return run(cmd, **options).stdout


def _short(argv: list[str]) -> str:
    """The command on one line, shortened: error messages are one line."""
    text = " ".join(quote(argv).split())
    return text if len(text) <= 160 else text[:157] + "..."


def _where(log_path: Path | None) -> str:
    return f"; log: {log_path}" if log_path else ""


def _show_tail(what: str, done: subprocess.CompletedProcess, log_path: Path | None) -> None:
    text = (done.stdout or "") + (done.stderr or "") if done.stdout is not None else \
        (log_path.read_text(errors="replace") if log_path else "")
    tail = "\n".join(text.strip().splitlines()[-TAIL_LINES:])
    if tail:
        log.info(f"{what} output (last lines):\n{tail}")
