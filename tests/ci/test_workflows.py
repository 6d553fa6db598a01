"""The CI wrappers stay valid and thin, checked offline.

Valid: actionlint on every GitHub workflow, JSON-schema validation of the workflows and of the
GitLab file with check-jsonschema's vendored schemas, inside a network namespace without a network
so a schema fetch would fail the test. Thin: every command line in every CI file is an `invoke`
line or a setup line from a short allow-list, and every `invoke` task they name exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yaml"))
GITLAB = REPO / "ci" / "gitlab-ci.yml"
SHELL_ENTRY = REPO / "ci" / "release.sh"
INVOKE = re.compile(r"^invoke\s+(?P<task>[a-z][a-z0-9-]*)(\s|$)")
SETUP = [re.compile(pattern) for pattern in (
    r"^python3? -m venv \S+$",
    r"^pip install -r requirements(-dev)?\.txt$",
    r"^(source|\.) \S*bin/activate$",
    r"^cd \S.*$",
    r"^echo .*$",
    r"^set -[a-z]+( -o pipefail| pipefail)?$",
    r"^bash \.ci/run$",
    r'^if \[ "\$#" -lt \d+ \]; then$', r"^fi$", r"^exit \d+$",   # the usage check of release.sh
)]
SCRIPT_KEYS = ("before_script", "script", "after_script")


def load_yaml(path: Path) -> dict:
    return YAML(typ="safe").load(path.read_text())


def command_lines(text: str) -> list[str]:
    """Logical shell lines: continuations joined, blank lines and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def workflow_lines(path: Path) -> list[tuple[str, str]]:
    lines = []
    for job_name, job in load_yaml(path)["jobs"].items():
        for step in job.get("steps", []):
            lines += [(f"{path.name}:{job_name}", line) for line in command_lines(step.get("run", ""))]
    return lines


def gitlab_lines(path: Path) -> list[tuple[str, str]]:
    lines = []
    for job_name, job in load_yaml(path).items():
        if not isinstance(job, dict):
            continue
        for key in SCRIPT_KEYS:
            for entry in job.get(key, []):
                lines += [(f"{path.name}:{job_name}.{key}", line) for line in command_lines(entry)]
    return lines


def shell_lines(path: Path) -> list[tuple[str, str]]:
    return [(path.name, line) for line in command_lines(path.read_text())]


def all_ci_lines() -> list[tuple[str, str]]:
    lines = [line for path in WORKFLOWS for line in workflow_lines(path)]
    return lines + gitlab_lines(GITLAB) + shell_lines(SHELL_ENTRY)


def is_thin(line: str) -> bool:
    return bool(INVOKE.match(line)) or any(pattern.match(line) for pattern in SETUP)


def run_offline(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run cmd in a new network namespace (loopback only, down): nothing can be fetched."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to prove the check runs without a network")
    user_ns = [] if os.geteuid() == 0 else ["--map-root-user"]
    return subprocess.run(["unshare", "--net", *user_ns, *cmd], cwd=REPO,
                          capture_output=True, text=True)


def test_the_wrappers_exist():
    names = {path.name for path in WORKFLOWS}
    assert {"release.yaml", "test.yaml"} <= names
    assert GITLAB.is_file() and SHELL_ENTRY.is_file()
    assert SHELL_ENTRY.stat().st_mode & 0o111, "ci/release.sh must be executable"


def test_release_workflow_has_the_named_jobs():
    jobs = load_yaml(REPO / ".github/workflows/release.yaml")["jobs"]
    for flavor in ("python-llm", "python"):
        for arch, runner in (("x86_64", "ubuntu-latest"), ("aarch64", "ubuntu-24.04-arm")):
            job = jobs[f"build-{flavor}-appimage-{arch}"]
            assert job["with"] == {"arch": arch, "flavor": flavor, "runs-on": runner}
    assert jobs["release"]["permissions"] == {"contents": "write", "id-token": "write", "attestations": "write"}
    assert len(jobs["release"]["needs"]) == 4


def test_release_job_attests_every_published_file_before_publishing():
    steps = load_yaml(REPO / ".github/workflows/release.yaml")["jobs"]["release"]["steps"]
    uses = [step.get("uses", "") for step in steps]
    attest = next(i for i, name in enumerate(uses) if name.startswith("actions/attest-build-provenance@"))
    assert steps[attest]["with"] == {"subject-path": "dist/*"}
    publish = next(i for i, step in enumerate(steps) if "invoke publish" in step.get("run", ""))
    merge = next(i for i, step in enumerate(steps) if "invoke checksums" in step.get("run", ""))
    manifest = next(i for i, step in enumerate(steps) if "invoke manifest" in step.get("run", ""))
    assert manifest < merge < attest < publish  # the merged sums list the merged manifest's reassemble.sh
    assert "TEA_RELEASE_SIGNING_KEY" in steps[merge]["env"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint(path):
    done = subprocess.run([str(BIN / "actionlint"), "-no-color", "-oneline", str(path)],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_can_fail(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - uses: actions/checkout@v6\n        with:\n          no-such-input: 1\n")
    done = subprocess.run([str(BIN / "actionlint"), "-no-color", "-oneline", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "no-such-input" in done.stdout


@pytest.mark.parametrize("schema, paths", [
    ("vendor.github-workflows", WORKFLOWS),
    ("vendor.gitlab-ci", [GITLAB]),
], ids=["github-workflows", "gitlab-ci"])
def test_schema_offline(schema, paths):
    done = run_offline([str(BIN / "check-jsonschema"), "--builtin-schema", schema, *map(str, paths)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_schema_check_can_fail(tmp_path):
    """The validator really rejects a broken file (guards against a check that always passes)."""
    broken = load_yaml(GITLAB)
    broken["release"]["when"] = "sometimes"
    target = tmp_path / "gitlab-ci.yml"
    target.write_text(json.dumps(broken))
    done = run_offline([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(target)])
    assert done.returncode != 0 and "release" in done.stdout + done.stderr


def test_every_ci_line_is_invoke_or_setup():
    lines = all_ci_lines()
    assert len(lines) > 10
    offending = [f"{where}: {line}" for where, line in lines if not is_thin(line)]
    assert not offending, "build logic in a CI file (only setup and `invoke` lines allowed):\n" + "\n".join(offending)


def test_thin_check_names_the_offender():
    assert not is_thin("mksquashfs AppDir image.squashfs")
    assert not is_thin("curl -L https://example.invalid/x | sh")
    assert is_thin("invoke release --arch x86_64 --flavor python-llm")


def test_invoked_tasks_exist():
    if not (REPO / "tasks.py").is_file():
        pytest.skip("tasks.py does not exist yet")
    listing = subprocess.run([str(BIN / "invoke"), "--list", "--list-format", "json"], cwd=REPO,
                             capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    tasks = {task["name"] for task in json.loads(listing.stdout)["tasks"]}
    used = {(where, INVOKE.match(line)["task"]) for where, line in all_ci_lines() if INVOKE.match(line)}
    assert {"release", "checksums", "manifest", "publish"} <= {task for _, task in used}
    missing = sorted(f"{where}: invoke {task}" for where, task in used if task not in tasks)
    assert not missing, "CI calls tasks that `invoke --list` does not have:\n" + "\n".join(missing)


def test_release_sh_without_arch_prints_usage():
    done = subprocess.run(["bash", str(SHELL_ENTRY)], capture_output=True, text=True)
    assert done.returncode == 2 and "usage: ci/release.sh x86_64|aarch64" in done.stderr
