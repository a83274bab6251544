"""The example GitHub Actions workflow: well formed, and its check step passes on the README
example (with its lock file, as a user's repository would commit it)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = YAML(typ="safe").load(ROOT / "examples" / "github-workflow.yml")


def _steps() -> list[dict[str, str]]:
    (job,) = WORKFLOW["jobs"].values()
    steps: list[dict[str, str]] = job["steps"]
    return steps


def test_the_workflow_runs_on_pushes_and_pull_requests_that_touch_desired_files() -> None:
    triggers = WORKFLOW[True] if True in WORKFLOW else WORKFLOW["on"]  # YAML 1.1 reads `on` as true
    assert set(triggers) == {"push", "pull_request"}
    assert all("**desired*.yaml" in t["paths"] for t in triggers.values())
    uses = [s["uses"].split("@")[0] for s in _steps() if "uses" in s]
    assert uses == ["actions/checkout", "actions/setup-python"]


def test_its_check_step_passes_on_the_readme_example(tmp_path: Path) -> None:
    (command,) = [s["run"] for s in _steps() if s.get("run", "").startswith("reconcile check")]
    argv = shlex.split(command)
    assert argv[argv.index("--format") + 1] == "github"
    shutil.copy(ROOT / "desired" / "workstation.yaml", tmp_path / "desired.yaml")
    shutil.copy(ROOT / "desired" / "workstation.lock.yaml", tmp_path / "desired.lock.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *argv[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
