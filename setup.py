"""Only what pyproject.toml cannot say: the top-level `profiles/` and `templates/` folders are
installed inside the package as `reconciler/profiles` and `reconciler/templates` (each
template folder a package of its own, as setuptools wants for data files), so a wheel
(and pre-commit's install) carries the hardware profiles and the launch templates. Everything
else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["reconciler", "reconciler.*"]),
        "reconciler.profiles",
        "reconciler.templates",
        "reconciler.templates.backends",
        "reconciler.templates.systemd",
    ],
    package_dir={"reconciler.profiles": "profiles", "reconciler.templates": "templates"},
)
