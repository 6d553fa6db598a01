"""`language: prolog` nodes, run by SWI-Prolog through janus-swi (its Python binding).

janus_swi is imported only when a Prolog node runs, so every other command works without it, and a
missing binding is one line with the install hint. The node's code is handed to `tea_prolog.pl`,
which reads it with Prolog's own reader, runs it in a throw-away module under a time limit and
answers with the node's updates or a failure (kind, line, message).

The frozen app carries SWI-Prolog's home (boot file, libraries) next to its modules: it points
SWI_HOME_DIR there before the import, so the bundled libswipl never meets another installation's
home. janus takes one call at a time, so parallel branches take turns through one lock.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import PrologError, PrologNotInstalled

INSTALL_HINT = ("Prolog support is not installed (janus-swi and SWI-Prolog 9.1 or newer). "
                "Install with: pip install the_edge_agent[prolog]")
DEFAULT_TIMEOUT = 30.0
#: The libraries the guide says every node can use without importing them.
PRELOADED = ("lists", "clpfd", "apply", "aggregate")
#: Where the frozen app keeps SWI-Prolog's home, relative to its own modules (sys._MEIPASS).
BUNDLED_HOME = "swipl"
PROGRAM = Path(__file__).with_name("tea_prolog.pl")

_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tea-prolog")
_janus: list[ModuleType] = []  # the initialised janus_swi, once (touched by the worker only)


def bundled_home() -> Path | None:
    """SWI-Prolog's home inside the frozen app (None when running from source)."""
    base = getattr(sys, "_MEIPASS", None)
    home = Path(base) / BUNDLED_HOME if base else None
    return home if home is not None and (home / "boot.prc").is_file() else None


def import_janus() -> ModuleType:
    """janus_swi, imported and initialised once; one-line errors if it is absent or cannot start."""
    home = bundled_home()
    if home is not None:
        os.environ["SWI_HOME_DIR"] = str(home)
    chosen = os.environ.get("SWI_HOME_DIR")
    if chosen and not (Path(chosen) / "boot.prc").is_file():  # SWI-Prolog would abort the whole process
        raise PrologError(f"SWI_HOME_DIR={chosen} is not a SWI-Prolog home (it has no boot.prc)")
    try:
        import janus_swi
    except ImportError as error:
        if error.name == "janus_swi":
            raise PrologNotInstalled(INSTALL_HINT) from None
        raise PrologError(f"janus-swi is installed but SWI-Prolog failed to load: {error}") from None
    except Exception as error:  # noqa: BLE001 - janus raises its own error type when Prolog cannot start
        raise PrologError(f"SWI-Prolog failed to start: {str(error).splitlines()[0]}") from None
    janus_swi.consult(str(PROGRAM))
    janus_swi.query_once(", ".join(f"user:use_module(library({name}))" for name in PRELOADED))
    return janus_swi


def janus() -> ModuleType:
    if not _janus:
        _janus.append(import_janus())
    return _janus[0]


def terminated(source: str) -> str:
    """The code as clauses: a last clause without its full stop gets one (as the guide's
    one-line examples are written)."""
    significant = [line.strip() for line in source.splitlines() if line.strip() and not line.strip().startswith("%")]
    if significant and not significant[-1].endswith("."):
        return source.rstrip() + "\n.\n"
    return source


def json_state(state: dict[str, Any]) -> dict[str, Any]:
    """Only JSON values reach Prolog; anything else as its text."""
    return json.loads(json.dumps(state, default=str))


def _tea_run(source: str, state: dict[str, Any], timeout: float) -> dict[str, Any]:
    return janus().apply_once("tea_prolog", "tea_run", terminated(source), json_state(state), float(timeout))


def run_prolog(source: str, state: dict[str, Any], first_line: int, timeout: float) -> dict[str, Any]:
    """The node's updates (what its return/2 calls recorded); PrologError on any failure."""
    answer = _worker.submit(_tea_run, source, state, timeout).result()
    if answer["status"] == "ok":
        return dict(answer["returns"])
    raise PrologError(describe_failure(answer, first_line, timeout))


def describe_failure(answer: dict[str, Any], first_line: int, timeout: float) -> str:
    """One line: what failed, at which line of the agent file."""
    kind, message = answer["kind"], " ".join(str(answer["message"]).split())
    where = f" at line {first_line + answer['line'] - 1}" if answer["line"] else ""
    if kind == "timeout":
        return f"Prolog timeout: the node ran longer than {timeout:g} s (settings.prolog.timeout)"
    if kind == "syntax":
        return f"Prolog syntax error{where}: {message}"
    if kind == "failed":
        return f"Prolog {message}{where}"
    return f"Prolog error{where}: {message}"
