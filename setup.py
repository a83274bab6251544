"""Only what pyproject.toml cannot say: the top-level `profiles/` folder is installed inside
the package as `reconciler/profiles`, so a wheel (and pre-commit's install) carries the
hardware profiles. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["reconciler", "reconciler.*"]), "reconciler.profiles"],
    package_dir={"reconciler.profiles": "profiles"},
)
