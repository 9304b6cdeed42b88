"""pyproject.toml lists the packages by hand (two of them are the top-level templates/
and alembic/ folders mapped into the wheel): the list must name every package of the
tree, and the mapped folders must be where ``config.shipped`` looks in a checkout."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

from mailgate.config import shipped

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_in_the_wheel() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = tool["package-dir"]
    assert set(tool["packages"]) - set(mapped) == set(find_packages(ROOT, include=["mailgate*"]))
    assert mapped == {"mailgate.templates": "templates", "mailgate.migrations": "alembic"}


def test_a_checkout_uses_its_top_level_folders() -> None:
    assert shipped.template_dir() == ROOT / "templates"
    assert shipped.migrations_dir() == ROOT / "alembic"
    assert (shipped.migrations_dir() / "env.py").is_file()
