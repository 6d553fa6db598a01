"""Incremental builds you can trust, on the real pipeline in a copy of this repository.

One real release (both flavors, 270M model) is built in the copy; then each case edits one file —
an input of a step, or a module a step imports — and asks `invoke release --dry-run` which steps
would run. The expectations below are written by hand from what each step does (not derived from
the code under test): exactly those steps and everything after them must rerun, nothing else.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from release import config, plan
from release.appdir import COMPONENT_ID

# One copy and one build serve every test here: keep them on one xdist worker (--dist loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("incremental")]
REPO = Path(__file__).resolve().parents[2]
RELEASE_ARGS = ("--arch", "x86_64", "--flavor", "all", "--model", "gemma-3-270m", "--packager", "builtin",
                "--skip", "variants,systems", "--build-dir", "build", "--out", "dist")
LLM, PLAIN = "python-llm", "python"
BOTH = (LLM, PLAIN)
DESKTOP = f"{COMPONENT_ID}.desktop"  # the AppDir's desktop entry (AppRun is a symlink now)

# file edited → the steps that must rerun because of it (their dependants are added by `after`)
CASES = {
    "python/src/the_edge_agent/cli.py": [f"freeze-{f}" for f in BOTH],          # the app's source
    "python/pyproject.toml": [f"freeze-{f}" for f in BOTH],
    "release/assets/tea-python.desktop": [f"appdir-{f}" for f in BOTH],          # an AppDir input
    "release/runtime/main.c": ["packager"],                                      # the C runtime
    "release/runtime/floor.c": ["packager"],                                     # its glibc floor check
    "release/hosts/root.py": ["system-packages", "build-root", "packager", "swipl", "llama-wheel", "checksums"]
    + [f"{kind}-{f}" for kind in ("venv", "freeze", "appimage", "sbom", "smoke", "functional") for f in BOTH],
    # all that runs in or reads the root (the variant proof too, but this build skips it)
    "release/llama.py": ["llama-wheel"] + [f"venv-{f}" for f in BOTH],           # the wheel, and the venvs named by it
    "release/swipl.py": ["swipl", "checksums"]
    + [f"{step}-{f}" for f in BOTH for step in ("freeze", "sbom", "smoke", "functional")],  # freeze and the checks
    "release/audit.py": [f"appdir-{f}" for f in BOTH],
    "release/squashfs.py": [f"appimage-{f}" for f in BOTH],
    "release/packagers.py": ["packager"] + [f"appimage-{f}" for f in BOTH],
    "release/verify.py": [f"smoke-{f}" for f in BOTH] + [f"functional-{f}" for f in BOTH],
    "release/checksums.py": ["checksums"] + [f"sbom-{f}" for f in BOTH]
    + [f"delta-{f}" for f in BOTH],                                              # SBOM's and block map's atomic write
    "release/reassemble.py": ["checksums"],
    "release/model.py": ["model"],
    "examples/hello.yaml": [f"functional-{f}" for f in BOTH],                   # an agent the checks run
    "examples/prolog/neurosymbolic.yaml": [f"functional-{f}" for f in BOTH],
}


def copy_repo(target: Path) -> Path:
    """The working tree as git sees it (tracked and new files), without build outputs or venvs."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def step_lines(stderr: str) -> dict[str, str]:
    """step name → what the runner said about it (up to date / running (...) / would run (...))."""
    found = {}
    for line in stderr.splitlines():
        match = re.match(r"\[tea-release\] ([\w.-]+): (up to date|running \(.*\)|would run \(.*\))$", line)
        if match:
            found[match[1]] = match[2]
    return found


def stale(report: dict[str, str]) -> set[str]:
    return {name for name, state in report.items() if state != "up to date"}


def with_dependants(names: list[str]) -> set[str]:
    steps = [step for _stage, step in plan.release_plan(config.resolve(flavor="all", model="gemma-3-270m"),
                                                          skip=frozenset({"variants", "systems"}))]
    result = set(names)
    for step in steps:  # in order, so one pass reaches every transitive dependant
        if result & set(step.after):
            result.add(step.name)
    return result


@pytest.fixture(scope="module")
def built_copy(tmp_path_factory, invoke):
    copy = copy_repo(tmp_path_factory.mktemp("incremental") / "repo")
    done = invoke("release", *RELEASE_ARGS, cwd=copy)
    assert done.returncode == 0, done.stderr
    return copy


def release_in(copy: Path, invoke, *extra: str) -> dict[str, str]:
    done = invoke("release", *RELEASE_ARGS, *extra, cwd=copy)
    assert done.returncode == 0, done.stderr
    return step_lines(done.stderr)


def test_no_change_rerun_runs_nothing(built_copy, invoke):
    report = release_in(built_copy, invoke)
    assert report and stale(report) == set(), report


@pytest.mark.parametrize("edited", sorted(CASES))
def test_an_edit_reruns_exactly_its_steps_and_their_dependants(built_copy, invoke, edited):
    path = built_copy / edited
    original = path.read_bytes()
    comment = b"\n/* edited */\n" if path.suffix in (".c", ".h") else b"\n# edited\n"
    path.write_bytes(original + comment)
    try:
        report = release_in(built_copy, invoke, "--dry-run")
    finally:
        path.write_bytes(original)
    assert stale(report) == with_dependants(CASES[edited]), report


@pytest.mark.parametrize("relative, step", [
    ("build/x86_64/python-llm/freeze/dist/tea/_internal/libpython3.11.so.1.0", "freeze-python-llm"),
    (f"build/x86_64/python/AppDir/{DESKTOP}", "appdir-python"),
    ("dist/SHA256SUMS", "checksums")])
def test_a_removed_output_reruns_its_step(built_copy, invoke, tmp_path, relative, step):
    victim = built_copy / relative
    kept = shutil.copy2(victim, tmp_path / victim.name)
    victim.unlink()
    try:
        report = release_in(built_copy, invoke, "--dry-run")
    finally:
        shutil.copy2(kept, victim)
    assert "was modified or removed" in report[step]
    assert stale(report) == with_dependants([step])


def test_a_changed_appdir_is_repackaged_and_checked_again(built_copy, invoke, tmp_path):
    """The reproduction of a stale dist/: the AppDir changes, so the AppImage and its checks rerun."""
    desktop = built_copy / "release/assets/tea-python.desktop"
    desktop.write_text(desktop.read_text() + "# a changed desktop entry\n")
    report = release_in(built_copy, invoke)
    assert stale(report) == with_dependants([f"appdir-{f}" for f in BOTH]), report
    assert all(report[f"appimage-{f}"].startswith("running (after changed") for f in BOTH)
    appimage = next((built_copy / "dist").glob("tea-python-llm-*.AppImage"))
    subprocess.run([str(appimage), "--appimage-extract", DESKTOP], cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "squashfs-root" / DESKTOP).read_text().endswith("# a changed desktop entry\n")
