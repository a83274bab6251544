"""A wheel built from the repository carries the hardware profiles of the top-level
`profiles/` folder and the launch templates of `templates/`, and the installed package finds
them there (as pre-commit installs it)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
from pathlib import Path
from reconciler.apply.render import render
from reconciler.config.desired import ModelSpec
from reconciler.launch import Launch

def render_one():
    launch = Launch(model="m", variant="m", backend="llama.cpp", program="llama-server",
                    gguf="/m.gguf", ctx=4096, parallel=1, cache_type_k="f16",
                    cache_type_v="f16", flash_attn="auto", gpu_layers=0, port=8080)
    spec = ModelSpec(name="m", gguf="/m.gguf", port=8080)
    r = render(launch, spec, program="/bin/llama-server", executor="systemd",
               state_dir=Path("/state"))
    return r.argv[0]
"""


@pytest.mark.slow
def test_wheel_contains_profiles_and_templates_and_the_installed_package_finds_them(
    tmp_path: Path,
) -> None:
    out = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    # setuptools' own warnings (a license table, data folders that are not packages) are gone
    assert "BuildBackendWarning" not in built.stdout + built.stderr
    (wheel,) = out.glob("gpu_reconciler-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.split("/")[-1] for n in names if n.startswith("reconciler/profiles/"))
    assert shipped == sorted(p.name for p in (ROOT / "profiles").glob("*.yaml"))
    templates = ROOT / "templates"
    prefix = "reconciler/templates/"
    assert sorted(n[len(prefix) :] for n in names if n.startswith(prefix)) == sorted(
        p.relative_to(templates).as_posix() for p in templates.rglob("*") if p.is_file()
    )
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import reconciler, reconciler.config.loader as l;"
        "print(reconciler.__file__); print(l.bundled_profiles());"
        "print(l.load_profile('rtx4090').spec.gpus[0].name);"
        "import reconciler.apply.render as r; print(r.bundled_templates());"
        "from tests_probe import render_one; print(render_one())"
    )
    # -S: no .pth files, so the editable install of the checkout is not on the path; the
    # dependencies come from this environment's site-packages.
    deps = sysconfig.get_paths()["purelib"]
    (tmp_path / "tests_probe.py").write_text(PROBE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), deps, str(tmp_path)])}
    env.pop("RECONCILER_PROFILES", None)
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    package, profiles, gpu, templates_dir, argv0 = done.stdout.splitlines()
    assert package.startswith(str(site))
    assert profiles == str(site / "reconciler" / "profiles")
    assert "4090" in gpu
    assert templates_dir == str(site / "reconciler" / "templates")
    assert argv0 == "/bin/llama-server"
