"""The shipped pre-commit hook, run the way a user's repository runs it: pre-commit installs
this project from a git repository into its own environment (a real wheel, no editable
install) and runs `reconcile check` on the desired files a commit touches."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
HOOKS = YAML(typ="safe").load(ROOT / ".pre-commit-hooks.yaml")

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def test_the_hook_runs_our_console_script_on_desired_files() -> None:
    (hook,) = HOOKS
    assert hook["id"] == "reconcile-check"
    assert hook["entry"] == "reconcile check"
    pattern, exclude = re.compile(hook["files"]), re.compile(hook["exclude"])

    def picked(path: str) -> bool:
        return bool(pattern.search(path)) and not exclude.search(path)

    assert picked("desired.yaml")
    assert picked("infra/desired-gpu.yml")
    assert not picked("desired.lock.yaml")
    assert not picked("other.yaml")
    assert not picked("desired/notes.md")


def _git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this checkout as a hook repository (as a user's `repo:` URL would give), and a
    user's repository whose .pre-commit-config.yaml uses it with `--profile rtx3060-12g`."""
    base = tmp_path_factory.mktemp("hooks")
    hook_repo = base / "gpu-reconciler"
    listed = _git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = hook_repo / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    _git(hook_repo, "init", "-q")
    _git(hook_repo, "add", "-A")
    _git(hook_repo, "commit", "-q", "-m", "snapshot for the hook test")
    rev = _git(hook_repo, "rev-parse", "HEAD")
    user = base / "user"
    user.mkdir()
    _git(user, "init", "-q")
    (user / ".pre-commit-config.yaml").write_text(
        "repos:\n"
        f"  - repo: {hook_repo.as_uri()}\n"
        f"    rev: {rev}\n"
        "    hooks:\n"
        "      - id: reconcile-check\n"
        "        args: [--profile, rtx3060-12g]\n"
    )
    return user


def _run_hook(user: Path, *files: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(user.parent / "pre-commit-home")}
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--files", *files],
        cwd=user,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


@pytest.mark.slow
def test_the_hook_passes_a_fitting_file_and_fails_a_required_model_too_large(
    user_repo: Path,
) -> None:
    model = "  - {name: chat, backend: command, argv: [/bin/chat], vram_mib: %d, required: true}\n"
    (user_repo / "desired.yaml").write_text("version: 1\nmodels:\n" + model % 6000)
    ok = _run_hook(user_repo, "desired.yaml")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "reconcile check" in ok.stdout
    assert "Passed" in ok.stdout

    (user_repo / "desired.yaml").write_text("version: 1\nmodels:\n" + model % 11000)
    (user_repo / "desired-typo.yaml").write_text("version: 1\nmodles: []\n")
    bad = _run_hook(user_repo, "desired.yaml", "desired-typo.yaml", "notes.txt")
    assert bad.returncode == 1
    assert "Failed" in bad.stdout
    assert (
        "desired.yaml:3:5: models[0]: required model chat does not fit on profile rtx3060-12g: "
        "needs 11000 MiB; the most GPU 0 can give is 9680 MiB"
    ) in bad.stdout
    assert 'desired-typo.yaml:2:1: modles: unknown key; did you mean "models"?' in bad.stdout
