"""Only what pyproject.toml cannot say: the top-level `profiles/` and `templates/` folders are
installed inside the package as `reconciler/profiles` and `reconciler/templates`, so a wheel
(and pre-commit's install) carries the hardware profiles and the launch templates. Everything
else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["reconciler", "reconciler.*"]),
        "reconciler.profiles",
        "reconciler.templates",
    ],
    package_dir={"reconciler.profiles": "profiles", "reconciler.templates": "templates"},
)
