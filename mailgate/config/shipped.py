"""Where the files mailgate ships beside its code are: the mail and page templates and
the migration scripts.

The top-level ``templates/`` and ``alembic/`` folders of the source tree are the source
of truth.  A built wheel carries them inside the package as ``mailgate/templates`` and
``mailgate/migrations`` (``[tool.setuptools.package-dir]`` in pyproject.toml), so an
installed mailgate finds them from any working directory; a checkout (or an editable
install) has them beside the package.  A leaf module: it imports nothing of mailgate.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# Folder in the source tree → its name inside the installed package.
_PACKAGED = {"templates": "templates", "alembic": "migrations"}


def shipped(folder: str) -> Path:
    """The directory holding ``folder`` (``templates`` or ``alembic``) for this install."""
    package = Path(str(files("mailgate")))
    inside = package / _PACKAGED[folder]
    if inside.is_dir():
        return inside
    return package.parent / folder


def template_dir() -> Path:
    return shipped("templates")


def migrations_dir() -> Path:
    return shipped("alembic")
