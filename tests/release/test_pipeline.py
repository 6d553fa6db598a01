"""The step runner: derived fingerprints skip unchanged steps, rerun changed ones and their dependants."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from release import config, plan
from release.artifacts import Kind
from release.digest import Digests
from release.pipeline import BaseStep, Context, code_files, dry_run, run

RELEASE = Path(__file__).resolve().parents[2] / "release"


class FileStep(BaseStep):
    """Upper-cases `source` into `out` and registers it; counts its real runs."""

    def __init__(self, name: str, source: Path, out: Path, after: tuple[str, ...] = ()) -> None:
        self.name, self.source, self.out, self.after = name, source, out, after
        self.runs = 0

    def inputs(self, ctx: Context) -> dict:
        return {"source": self.source}

    def run(self, ctx: Context) -> dict:
        self.runs += 1
        self.out.write_text(self.source.read_text().upper())
        ctx.register(Kind.APPDIR, self.out)
        return {"written": str(self.out)}


@pytest.fixture
def settings(tmp_path) -> config.Settings:
    return config.resolve(arch="x86_64", model="gemma-3-270m", build_dir=tmp_path / "build",
                          out=tmp_path / "dist", cache_dir=tmp_path / "cache")


def make_steps(tmp_path: Path) -> list[FileStep]:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    first = FileStep("first", tmp_path / "a.txt", tmp_path / "A")
    second = FileStep("second", tmp_path / "b.txt", tmp_path / "B", after=("first",))
    return [first, second]


def runs(settings, steps, **context) -> list[int]:
    run(steps, Context(settings, **context))
    return [s.runs for s in steps]


def test_second_run_skips_every_step_and_restores_artifacts(settings, tmp_path):
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    ctx = run(steps, Context(settings))
    assert [s.runs for s in steps] == [1, 1]
    assert ctx.results["second"] == {"written": str(tmp_path / "B")}
    assert [a.path for a in ctx.artifacts.all(Kind.APPDIR)] == [tmp_path / "A", tmp_path / "B"]


def test_changed_input_reruns_the_step_and_its_dependants(settings, tmp_path):
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    (tmp_path / "a.txt").write_text("changed")
    assert runs(settings, steps) == [2, 2]
    assert (tmp_path / "A").read_text() == "CHANGED"


def test_change_late_in_the_pipeline_leaves_earlier_steps_alone(settings, tmp_path):
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    (tmp_path / "b.txt").write_text("other")
    assert runs(settings, steps) == [1, 2]


@pytest.mark.parametrize("damage", [Path.unlink, lambda path: path.write_text("tampered")])
def test_modified_or_missing_output_reruns_the_step(settings, tmp_path, damage):
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    damage(tmp_path / "B")
    assert runs(settings, steps) == [1, 2]
    assert (tmp_path / "B").read_text() == "B"


def test_tampered_output_with_same_size_and_mtime_is_caught_by_inode(settings, tmp_path):
    """The stat cache keys on inode too: a file replaced by another of the same size and mtime reruns."""
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    out = tmp_path / "B"
    stamp = out.stat()
    replacement = tmp_path / "B.new"
    replacement.write_text("X")
    os.utime(replacement, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    os.replace(replacement, out)
    assert runs(settings, steps) == [1, 2]


def test_force_reruns_a_named_step_but_not_dependants_of_an_identical_result(settings, tmp_path):
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    assert runs(settings, steps, force=frozenset({"first"})) == [2, 1]


def test_dependants_rerun_when_a_rebuilt_step_produces_other_content(settings, tmp_path):
    """The reproduction of a stale AppImage: the first step reruns and its output differs."""
    steps = make_steps(tmp_path)
    run(steps, Context(settings))

    def produce_other(ctx: Context) -> dict:
        (tmp_path / "A").write_text("other content")
        ctx.register(Kind.APPDIR, tmp_path / "A")
        return {"written": str(tmp_path / "A")}  # the same result dict as before

    steps[0].run = produce_other
    run(steps, Context(settings, force=frozenset({"first"})))
    assert steps[1].runs == 2


def test_a_failed_step_is_not_stamped(settings, tmp_path):
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    (tmp_path / "a.txt").write_text("new")
    steps[0].run = lambda ctx: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        run(steps, Context(settings))
    del steps[0].run
    assert runs(settings, steps)[0] == 2


def test_skip_reason_is_reported_not_run(settings, tmp_path, capsys):
    step = make_steps(tmp_path)[0]
    step.skip_reason = lambda ctx: "not needed"
    ctx = run([step], Context(settings))
    assert step.runs == 0 and ctx.results["first"] == {"skipped": "not needed"}
    assert "first: skipped (not needed)" in capsys.readouterr().err


def test_dry_run_names_the_reason_and_runs_nothing(settings, tmp_path):
    steps = make_steps(tmp_path)
    assert dry_run(steps, Context(settings)) == [("first", "never built here"), ("second", "after first")]
    run(steps, Context(settings))
    assert dry_run(steps, Context(settings)) == [("first", None), ("second", None)]
    (tmp_path / "b.txt").write_text("x")
    assert dry_run(steps, Context(settings)) == [("first", None), ("second", "inputs changed: source")]
    assert [s.runs for s in steps] == [1, 1]


def test_running_step_logs_commands_to_its_own_log(settings, tmp_path):
    from release import proc

    class Echo(BaseStep):
        name = "echo"

        def run(self, ctx: Context) -> None:
            proc.run(["echo", "hello from the step"])

    run([Echo()], Context(settings))
    text = (settings.arch_dir / "logs" / "echo.log").read_text()
    assert "+ echo 'hello from the step'" in text and "hello from the step\n" in text


# --- digests ---------------------------------------------------------------------------------------

def test_tree_digest_covers_content_mode_symlinks_and_names(tmp_path):
    root = tmp_path / "tree"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "lib.so").write_bytes(b"\x7fELF")
    (root / "link").symlink_to("sub/lib.so")
    digests = Digests()
    changes = [lambda: (root / "sub" / "lib.so").write_bytes(b"\x7fELX"),
               lambda: (root / "sub" / "lib.so").chmod(0o700),
               lambda: ((root / "link").unlink(), (root / "link").symlink_to("sub")),
               lambda: (root / "sub" / "lib.so").rename(root / "sub" / "lib2.so"),
               lambda: (root / "empty").mkdir()]
    seen = {digests.tree(root)}
    for change in changes:
        change()
        seen.add(Digests().tree(root))
    assert len(seen) == len(changes) + 1


def test_tree_digest_ignores_interpreter_caches(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("x = 1")
    before = Digests().tree(tmp_path)
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "x.egg-info").mkdir()
    assert Digests().tree(tmp_path) == before


def test_stat_cache_is_persisted_and_rereads_changed_files(tmp_path):
    store, data = tmp_path / "digests.json", tmp_path / "data"
    data.write_bytes(b"one")
    first = Digests(store)
    digest = first.file(data)
    first.save()
    assert Digests(store).file(data) == digest
    data.write_bytes(b"two")
    assert Digests(store).file(data) != digest


# --- code: derived from imports ---------------------------------------------------------------------

def names(module: str) -> set[str]:
    return {path.name for path in code_files(module)}


def test_code_closure_follows_imports_transitively():
    assert {"deps.py", "apt.py", "__init__.py", "root.py", "emulated.py", "cpython.py", "proc.py"} <= names("release.deps")
    assert {"venv.py", "llama.py", "root.py"} <= names("release.venv")
    assert {"freeze.py", "proc.py", "pipeline.py"} <= names("release.freeze")
    assert {"finalize.py", "checksums.py", "reassemble.py", "split.py"} <= names("release.finalize")
    assert {"package.py", "squashfs.py", "appimage.py", "packagers.py", "runtime_build.py"} <= names("release.package")


def test_code_closure_stays_inside_the_package():
    assert all(path.is_relative_to(RELEASE) for path in code_files("release.finalize"))


def test_every_step_module_is_in_its_own_closure():
    settings = config.resolve(flavor="all", model="gemma-3-270m")
    for _stage, step in plan.release_plan(settings):
        module = type(step).__module__
        assert f"{module.rpartition('.')[2]}.py" in names(module)
