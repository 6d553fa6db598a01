"""The CLI contract: fast flags, subcommands, exit codes."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tea_helpers import EXAMPLES, REPO, final_state, run_tea

VERSION = tomllib.loads((REPO / "python" / "pyproject.toml").read_text())["project"]["version"]


def test_version_comes_from_pyproject():
    assert run_tea("--version").stdout == f"tea {VERSION}\n"


def test_impl_alone_and_combined_with_version():
    assert run_tea("--impl").stdout == "python\n"
    assert run_tea("--version", "--impl").stdout == f"tea {VERSION} (python)\n"
    assert run_tea("--impl", "--version").stdout == f"tea {VERSION} (python)\n"


def test_version_path_imports_nothing_heavy():
    probe = ("import sys; from the_edge_agent.cli import main; main(['--version']); "
             "print(sorted(m for m in ('yaml', 'jinja2', 'llama_cpp', 'argparse') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1] == "[]"


def test_no_command_prints_usage_and_fails():
    result = run_tea()
    assert result.returncode == 2
    assert "usage: tea" in result.stderr


def test_validate_accepts_the_examples():
    for agent in (EXAMPLES / "hello.yaml", EXAMPLES / "llm" / "local-chat.yaml"):
        result = run_tea("validate", agent)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"OK: {agent} (")


def test_run_prints_progress_on_stderr_and_state_on_stdout():
    result = run_tea("run", EXAMPLES / "hello.yaml", "--input", '{"name": "edge", "times": 2}')
    assert final_state(result)["message"] == "Hello, edge! Hello, edge!"
    assert "tea: [1] greet (state.set)" in result.stderr


def test_quiet_silences_stderr():
    result = run_tea("run", "--quiet", EXAMPLES / "hello.yaml")
    assert final_state(result)["message"] == "Hello, world!"
    assert result.stderr == ""


def test_input_from_file(tmp_path):
    inputs = tmp_path / "in.json"
    inputs.write_text('{"name": "file", "times": 0}')
    state = final_state(run_tea("run", "--quiet", EXAMPLES / "hello.yaml", "--input", f"@{inputs}"))
    assert state["message"] == "Hello, file!"
    assert state["count"] == 0


def test_cli_module_runs_as_a_script_like_the_frozen_app():
    """PyInstaller runs cli.py as __main__, outside its package: no relative imports allowed."""
    script = REPO / "python" / "src" / "the_edge_agent" / "cli.py"
    for args, expected in ((["--version", "--impl"], f"tea {VERSION} (python)"),
                           (["validate", str(EXAMPLES / "hello.yaml")], f"OK: {EXAMPLES / 'hello.yaml'}")):
        result = subprocess.run([sys.executable, script, *args], capture_output=True, text=True)
        assert result.stdout.startswith(expected), result.stderr
