"""A wheel built from the repository carries the hardware profiles of the top-level
`profiles/` folder, and the installed package finds them there (as pre-commit installs it)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_the_profiles_and_the_installed_package_finds_them(
    tmp_path: Path,
) -> None:
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("gpu_reconciler-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.split("/")[-1] for n in names if n.startswith("reconciler/profiles/"))
    assert shipped == sorted(p.name for p in (ROOT / "profiles").glob("*.yaml"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import reconciler, reconciler.config.loader as l;"
        "print(reconciler.__file__); print(l.bundled_profiles());"
        "print(l.load_profile('rtx4090').spec.gpus[0].name)"
    )
    # -S: no .pth files, so the editable install of the checkout is not on the path; the
    # dependencies come from this environment's site-packages.
    deps = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), deps])}
    env.pop("RECONCILER_PROFILES", None)
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    package, profiles, gpu = done.stdout.splitlines()
    assert package.startswith(str(site))
    assert profiles == str(site / "reconciler" / "profiles")
    assert "4090" in gpu
