"""Options resolve once, with one-line errors for bad values; arch aliases; the task list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from release import arch, config, plan
from release.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
INVOKE = [sys.executable, "-m", "invoke"]


@pytest.mark.parametrize("alias, canonical", [("x86_64", "x86_64"), ("amd64", "x86_64"), ("AMD64", "x86_64"),
                                              ("aarch64", "aarch64"), ("arm64", "aarch64")])
def test_arch_aliases(alias, canonical):
    assert arch.normalize(alias) == canonical


def test_unknown_arch_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown arch 'sparc'"):
        arch.normalize("sparc")


def test_foreign_arch_without_emulation_says_what_to_do(tmp_path):
    foreign = "aarch64" if arch.host_arch() == "x86_64" else "x86_64"
    with pytest.raises(ConfigError, match=f"cannot run {foreign} binaries.*qemu-user-static"):
        arch.require_runnable(foreign, binfmt_dir=tmp_path)
    (tmp_path / arch.QEMU_BINFMT[foreign]).write_text("enabled\ninterpreter /usr/bin/qemu\n")
    assert arch.require_runnable(foreign, binfmt_dir=tmp_path) == "emulated"
    assert arch.require_runnable(arch.host_arch(), binfmt_dir=tmp_path) == "native"


def test_resolve_reads_version_and_pins(tmp_path):
    settings = config.resolve(arch="amd64", flavor="all", model="gemma-3-270m", cache_dir=tmp_path)
    assert settings.arch == "x86_64"
    assert settings.version == config.project_version()
    assert [f.name for f in settings.flavors] == ["python-llm", "python"]
    assert settings.model.sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert settings.appimage_path(settings.flavors[0]).name == f"tea-python-llm-{settings.version}-x86_64.AppImage"


def test_default_model_is_gemma_3n_with_substituted_revision():
    settings = config.resolve()
    assert settings.model.name == "gemma-3n-e4b"
    assert all("{revision}" not in url for url in settings.model.urls)
    assert settings.model.token_env == "HF_TOKEN"


def test_cache_dir_follows_xdg_and_override(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.default_cache_dir() == tmp_path / "xdg" / "tea-release"
    monkeypatch.setenv("TEA_RELEASE_CACHE", str(tmp_path / "explicit"))
    assert config.default_cache_dir() == tmp_path / "explicit"


@pytest.mark.parametrize("value, offline", [("1", True), ("true", True), ("YES", True), ("on", True),
                                             ("0", False), ("false", False), ("no", False), ("", False)])
def test_offline_from_environment(monkeypatch, value, offline):
    monkeypatch.setenv("TEA_RELEASE_OFFLINE", value)
    assert config.resolve().offline is offline
    assert config.resolve(offline=True).offline


@pytest.mark.parametrize("kwargs, message", [({"flavor": "rust"}, "unknown flavor 'rust'"),
                                             ({"model": "llama-70b"}, "unknown model 'llama-70b'"),
                                             ({"packager": "snap"}, "unknown packager 'snap'")])
def test_bad_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        config.resolve(**kwargs)


def test_plan_lists_every_stage_per_flavor():
    settings = config.resolve(flavor="all", model="gemma-3-270m")
    names = [step.name for stage, step in plan.release_plan(settings)]
    assert names[:4] == ["system-packages", "packager", "swipl", "model"]
    assert "freeze-python" in names and "systems-python-llm" in names and names[-1] == "checksums"
    until_freeze = [step.name for step in plan.steps_until(settings, "freeze")]
    assert "appdir-python" not in until_freeze and "freeze-python-llm" in until_freeze


def test_plan_skip_and_unknown_stage():
    settings = config.resolve(model="gemma-3-270m")
    names = [s.name for s in plan.steps_until(settings, "checksums", skip=frozenset({"systems"}))]
    assert not any(n.startswith("systems") for n in names)
    with pytest.raises(ConfigError, match="unknown stage"):
        plan.steps_until(settings, "deploy")


def run_invoke(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*INVOKE, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_invoke_list_from_a_fresh_clone(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    done = run_invoke("--list", cwd=clone)
    assert done.returncode == 0, done.stderr
    for name in ("deps", "model", "freeze", "release", "smoke", "functional", "test-appimage", "checksums",
                 "publish", "clean", "test"):
        assert f"\n  {name} " in done.stdout or f"\n  {name}\n" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["release", "--arch", "sparc"], "error: unknown arch 'sparc'"),
    (["release", "--flavor", "rust"], "error: unknown flavor 'rust'"),
    (["release", "--model", "nope"], "error: unknown model 'nope'"),
    (["release", "--force", "freez-python"], "error: --force names no step of this run: freez-python"),
    (["release", "--asset-size-cap", "2GB"], "error: not a number of bytes: '2GB'"),
    (["test-appimage", "/nonexistent"], "error: no such file or directory: /nonexistent"),
])
def test_user_mistakes_are_one_line_without_traceback(args, message):
    done = run_invoke(*args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_every_task_has_help():
    done = run_invoke("--help", "release")
    assert done.returncode == 0 and "--arch" in done.stdout and "x86_64|amd64" in done.stdout


def test_checks_without_a_path_need_a_release_in_out(tmp_path):
    done = run_invoke("smoke", "--out", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"error: no {arch.host_arch()} AppImage in {tmp_path}/: "
                                   "run `invoke release` first, or pass --path")


PINS = config.PINS_FILE.read_text()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('sha256 = "a5fd3b62', 'sha256 = "A5FD3B62'),
     r"\[models.gemma-3-270m\] sha256 must be empty \(not pinned yet\) or 64 lower-case hex digits"),
    (lambda t: t.replace("size = 253113024", 'size = "big"'), r"\[models.gemma-3-270m\] size must be a non-negative"),
    (lambda t: t.replace('filename = "gemma-3-270m-q4_k_m.gguf"', 'filenme = "x.gguf"'),
     r"\[models.gemma-3-270m\] has unknown key\(s\) filenme"),
    (lambda t: t.replace("llm = false", 'llm = "no"'), r"\[flavors.python\] llm must be true or false"),
    (lambda t: t.replace('url = "https://github.com/AppImage/appimagetool/releases/download/1.9.0/appimagetool-x86_64',
                         'url = "ftp://example/appimagetool-x86_64'),
     r"\[tools.appimagetool.x86_64\] url must be an http\(s\) URL"),
    (lambda t: t.replace('default_model = "gemma-3n-e4b"', 'default_model = "nope"'), r"unknown model 'nope'"),
    (lambda t: t.replace("[python]", "[pythons]"), r"missing table \[python\]"),
])
def test_a_bad_pin_is_one_line_naming_its_key(tmp_path, edit, message):
    pins = tmp_path / "release.toml"
    pins.write_text(edit(PINS))
    assert pins.read_text() != PINS
    with pytest.raises(ConfigError, match=message) as error:
        config.resolve(pins_file=pins)
    assert "\n" not in str(error.value)


def test_pins_are_typed_for_every_consumer():
    pins = config.load_pins()
    assert pins.python.llama_cpp_python and all(arg.startswith("-D") for arg in pins.python.llama_cmake_args)
    assert pins.tools["appimagetool"].for_arch("x86_64").sha256
    assert pins.cross_for("aarch64").toolchain
    with pytest.raises(ConfigError, match=r"no pin for appimagetool on riscv64"):
        pins.tools["appimagetool"].for_arch("riscv64")
