"""The one thing pyproject.toml cannot say: the runbook notebooks ship inside the package
(irlib/notebooks/ in the wheel) while the top-level notebooks/ stays their one source.
A package found by `packages.find` must exist under irlib/, so the list is made here.
Everything else about the build is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["irlib", "irlib.*"]), "irlib.notebooks"],
    package_dir={"irlib.notebooks": "notebooks"},
)
