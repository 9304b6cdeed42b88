"""Fixtures for the IMAP tests: one real Dovecot for the session, a fresh mailbox user
per test, and settings with an ``[[imap]]`` account pointing at it.

A missing Dovecot fails these tests: ``.ci/run`` installs it, and a green run that
never spoke to an IMAP server would prove nothing.  Outside CI a developer without
Dovecot may set MAILGATE_TEST_SKIP_IMAP=1 to skip them knowingly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailgate.config import Settings
from tests.conftest import make_settings
from tests.dovecot import PASSWORD, Dovecot, binary

INSTALL = (
    "apt-get install --no-install-recommends dovecot-imapd (as .ci/run does); "
    "the tests also need to run as root, as Dovecot starts its mail processes as uid 5000"
)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    executable = binary()
    if executable is None or os.geteuid() != 0:
        if os.environ.get("MAILGATE_TEST_SKIP_IMAP") and not os.environ.get("CI"):
            pytest.skip("IMAP tests skipped on request (MAILGATE_TEST_SKIP_IMAP)")
        pytest.fail(f"the IMAP tests need a real Dovecot: {INSTALL}")
    server = Dovecot(executable)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def user(dovecot: Dovecot) -> str:
    return dovecot.new_user()


ImapSettings = Callable[..., Settings]


@pytest.fixture
def imap_settings(db_url: str, tmp_path: Path, dovecot: Dovecot, user: str) -> ImapSettings:
    """Build settings with one account on the test Dovecot; keywords override its keys."""
    secret = tmp_path / "imap-password"
    secret.write_text(PASSWORD + "\n")  # the trailing newline an editor leaves

    def build(db: str = db_url, port: int | None = None, **account: Any) -> Settings:
        table: dict[str, Any] = {
            "name": "support",
            "host": "127.0.0.1",
            "port": port or dovecot.port,
            "tls": "none",
            "username": user,
            "password_file": str(secret),
            "timeout": 10,
            **account,
        }
        return make_settings(db, tmp_path, imap=[table])

    return build
