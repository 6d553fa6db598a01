"""The one subprocess path: logged commands, one-line failures naming the command and the log."""

from __future__ import annotations

import pytest

from release import proc
from release.errors import BuildError, VerifyError


def test_commands_and_output_go_to_the_current_log(tmp_path):
    with proc.logging_to(tmp_path / "step.log") as log_path:
        assert proc.output(["sh", "-c", "echo out; echo err >&2"]) == "out\n"
        proc.run(["sh", "-c", "echo streamed"], stream=True)
    text = log_path.read_text()
    assert text.splitlines()[0] == "+ sh -c 'echo out; echo err >&2'"
    assert "out\nerr\n" in text and "streamed\n" in text


@pytest.mark.parametrize("stream", [False, True])
def test_a_failure_is_one_line_with_the_command_and_the_log(tmp_path, stream, capsys):
    with proc.logging_to(tmp_path / "step.log"), pytest.raises(BuildError) as failure:
        proc.run(["sh", "-c", "echo the reason; exit 3"], what="the build", stream=stream)
    message = str(failure.value)
    assert "\n" not in message
    assert message == f"the build failed with exit code 3: sh -c 'echo the reason; exit 3'; log: {tmp_path / 'step.log'}"
    assert "the reason" in capsys.readouterr().err  # the tail is shown too


def test_timeout_and_missing_command_are_one_line_of_the_chosen_class(tmp_path):
    with pytest.raises(VerifyError, match=r"^sleep timed out after 1 s: sleep 5$"):
        proc.run(["sleep", "5"], timeout=1, error=VerifyError)
    with pytest.raises(BuildError, match="command not found: no-such-tool-here"):
        proc.run(["no-such-tool-here"])


def test_multi_line_commands_are_shown_on_one_line():
    with pytest.raises(BuildError) as failure:
        proc.run(["sh", "-c", "true\nexit 1"])
    assert "\n" not in str(failure.value)


def test_check_false_returns_the_exit_code_and_clean_env_is_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAKED", "yes")
    done = proc.run(["/bin/sh", "-c", 'echo "${LEAKED:-none} $ONLY"; exit 4'], env={"ONLY": "this"},
                    clean_env=True, check=False)
    assert done.returncode == 4 and done.stdout == "none this\n"
