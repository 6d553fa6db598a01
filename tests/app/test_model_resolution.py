"""Model path resolution: each rule in order, first hit wins, `tea models` shows every place."""

from __future__ import annotations

from pathlib import Path

import pytest

from the_edge_agent.errors import LlmError
from the_edge_agent.models import DEFAULT_MODEL_FILENAME, check_gguf, model_places, resolve_model
from tea_helpers import run_tea


def gguf(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + bytes(12))
    return path


@pytest.fixture
def everywhere(tmp_path):
    """A model at every place, plus the environment that points at them."""
    models = {
        "env": gguf(tmp_path / "env" / "env.gguf"),
        "node": gguf(tmp_path / "agent" / "node.gguf"),
        "settings": gguf(tmp_path / "agent" / "models" / "settings.gguf"),
        "appdir": gguf(tmp_path / "AppDir" / "usr/share/models" / "other.gguf"),
        "cache": gguf(tmp_path / "cache" / "tea" / "models" / "cached.gguf"),
    }
    env = {"TEA_MODEL_PATH": str(models["env"]), "APPDIR": str(tmp_path / "AppDir"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return models, env, tmp_path / "agent"


def resolve(env, base_dir, node="node.gguf", settings="models/settings.gguf") -> Path:
    return resolve_model(model_places(node, settings, base_dir, env))


def test_each_rule_wins_over_the_ones_after_it(everywhere):
    models, env, base = everywhere
    assert resolve(env, base) == models["env"]
    del env["TEA_MODEL_PATH"]
    assert resolve(env, base) == base / "node.gguf"
    assert resolve(env, base, node=None) == base / "models" / "settings.gguf"
    assert resolve(env, base, node=None, settings=None) == models["appdir"]
    del env["APPDIR"]
    assert resolve(env, base, node=None, settings=None) == models["cache"]


def test_a_missing_path_falls_through_to_the_next_place(everywhere):
    models, env, base = everywhere
    env["TEA_MODEL_PATH"] = str(base / "absent.gguf")
    assert resolve(env, base) == base / "node.gguf"


def test_cache_defaults_to_home_when_xdg_is_unset(tmp_path):
    model = gguf(tmp_path / "home" / ".cache" / "tea" / "models" / "m.gguf")
    assert resolve({"HOME": str(tmp_path / "home")}, tmp_path, None, None) == model


def test_directory_prefers_the_default_filename(tmp_path):
    directory = tmp_path / "AppDir" / "usr/share/models"
    gguf(directory / "a.gguf")
    default = gguf(directory / DEFAULT_MODEL_FILENAME)
    assert resolve({"APPDIR": str(tmp_path / "AppDir")}, tmp_path, None, None) == default


def test_directory_with_several_models_and_no_default_is_ambiguous(tmp_path):
    directory = tmp_path / "AppDir" / "usr/share/models"
    gguf(directory / "a.gguf")
    gguf(directory / "b.gguf")
    with pytest.raises(LlmError, match="2 \\*.gguf files and none named"):
        resolve({"APPDIR": str(tmp_path / "AppDir"), "HOME": str(tmp_path)}, tmp_path, None, None)


def test_env_may_name_a_directory(tmp_path):
    model = gguf(tmp_path / "dir" / "only.gguf")
    assert resolve({"TEA_MODEL_PATH": str(tmp_path / "dir")}, tmp_path, None, None) == model


def test_nothing_found_lists_every_place(tmp_path):
    with pytest.raises(LlmError) as raised:
        resolve({"HOME": str(tmp_path)}, tmp_path, None, None)
    message = str(raised.value)
    assert "\n" not in message
    for place in ("TEA_MODEL_PATH (not set)", "params.model_path (not set)", "settings.llm.model_path (not set)",
                  "$APPDIR/usr/share/models (APPDIR not set)", f"cache={tmp_path}/.cache/tea/models (missing)"):
        assert place in message


def test_gguf_magic_is_checked(tmp_path):
    check_gguf(gguf(tmp_path / "good.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04zip")
    with pytest.raises(LlmError, match="not a GGUF model"):
        check_gguf(bad)


def test_tea_models_reports_every_place(everywhere, write_agent):
    models, env, base = everywhere
    agent = write_agent("settings:\n  llm:\n    model_path: agent/models/settings.gguf\n"
                        "nodes:\n  - name: a\n    uses: state.set\n", name="agent.yaml")
    lines = run_tea("models", agent, env=env).stdout.splitlines()
    assert lines[0] == f"1. TEA_MODEL_PATH={models['env']} -> {models['env']}"
    assert lines[2].startswith("3. settings.llm.model_path=") and lines[2].endswith("settings.gguf")
    assert lines[3].endswith(f"-> {models['appdir']}")
    assert lines[4].endswith(f"-> {models['cache']}")
    assert lines[5] == f"model: {models['env']}"
    assert lines[6].startswith("llama-cpp-python: ")
