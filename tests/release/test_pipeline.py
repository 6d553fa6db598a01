"""The step runner: fingerprints skip unchanged steps, rerun changed ones and their dependants."""

from __future__ import annotations

from pathlib import Path

import pytest

from release import config
from release.pipeline import BaseStep, Context, run, hash_tree


class FileStep(BaseStep):
    """Writes `value` to a file; counts its real runs."""

    def __init__(self, name: str, source: Path, out: Path, after: tuple[str, ...] = ()) -> None:
        self.name, self.source, self.out, self.after = name, source, out, after
        self.runs = 0

    def inputs(self, ctx: Context) -> dict:
        return {"source": self.source.read_text()}

    def outputs(self, ctx: Context) -> list[Path]:
        return [self.out]

    def run(self, ctx: Context) -> dict:
        self.runs += 1
        self.out.write_text(self.source.read_text().upper())
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


def test_second_run_skips_every_step(settings, tmp_path):
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    ctx = run(steps, Context(settings))
    assert [s.runs for s in steps] == [1, 1]
    assert ctx.results["second"] == {"written": str(tmp_path / "B")}


def test_changed_input_reruns_the_step_and_its_dependants(settings, tmp_path):
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    (tmp_path / "a.txt").write_text("changed")
    run(steps, Context(settings))
    assert [s.runs for s in steps] == [2, 2]
    assert (tmp_path / "A").read_text() == "CHANGED"


def test_change_late_in_the_pipeline_leaves_earlier_steps_alone(settings, tmp_path):
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    (tmp_path / "b.txt").write_text("other")
    run(steps, Context(settings))
    assert [s.runs for s in steps] == [1, 2]


def test_missing_output_reruns_the_step(settings, tmp_path):
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    (tmp_path / "B").unlink()
    run(steps, Context(settings))
    assert [s.runs for s in steps] == [1, 2]


def test_force_reruns_a_named_step(settings, tmp_path):
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    run(steps, Context(settings, force=frozenset({"first"})))
    assert steps[0].runs == 2


def test_a_failed_step_is_not_stamped(settings, tmp_path):
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    (tmp_path / "a.txt").write_text("new")
    steps[0].run = lambda ctx: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        run(steps, Context(settings))
    del steps[0].run
    run(steps, Context(settings))
    assert steps[0].runs == 2


def test_skip_reason_is_reported_not_run(settings, tmp_path, capsys):
    step = make_steps(tmp_path)[0]
    step.skip_reason = lambda ctx: "not needed"
    ctx = run([step], Context(settings))
    assert step.runs == 0 and ctx.results["first"] == {"skipped": "not needed"}
    assert "first: skipped (not needed)" in capsys.readouterr().err


def test_hash_tree_ignores_bytecode_and_egg_info(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("x = 1")
    before = hash_tree(tmp_path)
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"\0")
    (tmp_path / "x.egg-info").mkdir()
    (tmp_path / "x.egg-info" / "PKG-INFO").write_text("meta")
    assert hash_tree(tmp_path) == before
    (tmp_path / "pkg" / "m.py").write_text("x = 2")
    assert hash_tree(tmp_path) != before


def test_dependants_rerun_when_a_rebuilt_step_produces_something_else(settings, tmp_path):
    steps = make_steps(tmp_path)
    run(steps, Context(settings))
    run(steps, Context(settings, force=frozenset({"first"})))
    assert [s.runs for s in steps] == [2, 1]  # same result: the dependant stays up to date
    steps[0].run = lambda ctx: {"written": "elsewhere"}
    run(steps, Context(settings, force=frozenset({"first"})))
    assert steps[1].runs == 2
