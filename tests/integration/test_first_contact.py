"""First contact with the command line: an unmigrated or old database, a port already
taken, ``--config`` after the subcommand, ``--version`` — each one clear line and a
non-zero exit, never a traceback, and nothing created as a side effect."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import text

from mailgate import cli
from mailgate.config import DatabaseSettings
from mailgate.store import migrate
from mailgate.store.db import make_engine

ROOT = Path(__file__).resolve().parents[2]


def mailgate(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed command as an admin runs it: from ``cwd``, no MAILGATE_ variables."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mailgate", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [("tickets", "list"), ("drain",), ("serve",)],
)
def test_no_database_is_one_line_naming_db_upgrade_and_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    done = mailgate(tmp_path, *command)  # built-in defaults: sqlite:///var/mailgate.db
    assert done.returncode == 75, done.stderr
    assert done.stderr.strip().splitlines() == [
        "mailgate: the database var/mailgate.db does not exist: run `mailgate db upgrade` first"
    ]
    assert list(tmp_path.iterdir()) == []


def test_check_reports_a_missing_database_without_creating_it(tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    config.write_text(f'[outbound]\nmaildir = "{tmp_path}/sent"\n')
    done = mailgate(tmp_path, "--config", str(config), "check")
    assert done.returncode == 1
    assert "FAIL database   the database var/mailgate.db does not exist" in done.stdout
    assert not (tmp_path / "var").exists()


def sqlite_config(tmp_path: Path) -> tuple[Path, str]:
    url = f"sqlite:///{tmp_path}/m.db"
    config = tmp_path / "m.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[outbound]\nmaildir = "{tmp_path}/sent"\n')
    return config, url


def test_an_empty_database_and_an_old_schema_are_refused(tmp_path: Path) -> None:
    config, url = sqlite_config(tmp_path)
    engine = make_engine(DatabaseSettings(url=url))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE unrelated (x INTEGER)"))
    empty = mailgate(tmp_path, "--config", str(config), "tickets", "list")
    assert empty.returncode == 75
    assert empty.stderr.strip().splitlines() == [
        f"mailgate: the database {url} has no mailgate schema: run `mailgate db upgrade` first"
    ]
    check = mailgate(tmp_path, "--config", str(config), "check")
    assert check.returncode == 1 and "has no mailgate schema" in check.stdout
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    [head] = scripts.get_heads()
    previous = scripts.get_revision(head).down_revision
    assert isinstance(previous, str)
    migrate.upgrade(engine, previous)
    engine.dispose()
    old = mailgate(tmp_path, "--config", str(config), "tickets", "list")
    assert old.returncode == 75
    assert old.stderr.strip().splitlines() == [
        f"mailgate: the database {url} is at schema revision {previous}, this release "
        f"needs {head}: run `mailgate db upgrade`"
    ]
    assert mailgate(tmp_path, "--config", str(config), "db", "upgrade").returncode == 0
    assert mailgate(tmp_path, "--config", str(config), "tickets", "list").returncode == 0


def test_config_is_accepted_after_the_subcommand(tmp_path: Path, db_url: str) -> None:
    config = tmp_path / "m.toml"
    config.write_text(f'[database]\nurl = "{db_url}"\n')
    runner = CliRunner()
    for args in (
        ["tickets", "list", "--config", str(config)],
        ["tickets", "--config", str(config), "list"],
        ["--config", "/nonexistent.toml", "outbox", "list", "--config", str(config)],
    ):
        result = runner.invoke(cli.main, args, env={"MAILGATE_CONFIG": None})
        assert result.exit_code == 0, (args, result.output)
    assert "--config" in runner.invoke(cli.main, ["db", "upgrade", "--help"]).output


def test_version() -> None:
    result = CliRunner().invoke(cli.main, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("mailgate, version ")


def test_a_port_in_use_is_one_line_naming_the_address(tmp_path: Path, db_url: str) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = tmp_path / "m.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[smtp]\nlisten = "127.0.0.1:{port}"\n'
        '[http]\nlisten = ""\n[log]\nlevel = "WARNING"\n[processing]\nparse_workers = 0\n'
    )
    try:
        done = mailgate(tmp_path, "--config", str(config), "serve")
    finally:
        taken.close()
    assert done.returncode == 69, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"mailgate: cannot listen on 127.0.0.1:{port} (smtp.listen): Address already in use"
    ]
