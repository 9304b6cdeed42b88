"""Session fixtures for the end-to-end suite: one Dovecot, one Postfix and one mailgate
for the whole session, under a directory the unprivileged Postfix and Dovecot processes
can enter (pytest's own tmp dirs are 0700).

These tests need root and Debian's postfix, dovecot and swaks, and Exim unpacked beside
them (``.ci/install-mail-servers.sh``; test_exim.py checks for Exim itself).  Without
them they are skipped on a developer's machine, but under CI (``CI`` set, as ``.ci/run``
does) a missing server is a failure: the suite must never go green by silently not
running.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from mailgate.config import DatabaseSettings
from mailgate.store.db import make_engine
from tests.e2e.infra import Dovecot, Mailgate, Postfix

NEEDED = ("postfix", "postqueue", "dovecot", "swaks")


def _missing() -> str:
    absent = [b for b in NEEDED if shutil.which(b) is None]
    if absent:
        return f"not installed: {', '.join(absent)} (run .ci/install-mail-servers.sh)"
    if os.geteuid() != 0:
        return "Postfix and Dovecot instances need root"
    return ""


@pytest.fixture(scope="session")
def e2e_root() -> Iterator[Path]:
    problem = _missing()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"end-to-end suite cannot run in CI: {problem}", pytrace=False)
        pytest.skip(problem)
    root = Path(tempfile.mkdtemp(prefix="mailgate-e2e-"))
    root.chmod(0o755)
    yield root
    if not os.environ.get("MAILGATE_E2E_KEEP"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot(e2e_root: Path) -> Iterator[Dovecot]:
    server = Dovecot(e2e_root / "dovecot")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mailgate_process(e2e_root: Path) -> Mailgate:
    """Created before Postfix (its transport map names mailgate's LMTP port), started
    after it (mailgate relays its acknowledgements through Postfix)."""
    return Mailgate(e2e_root / "mailgate", relay_port=0)


@pytest.fixture(scope="session")
def postfix(e2e_root: Path, dovecot: Dovecot, mailgate_process: Mailgate) -> Iterator[Postfix]:
    server = Postfix(e2e_root / "postfix", dovecot.lmtp_port, mailgate_process.lmtp_port)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mailgate(postfix: Postfix, mailgate_process: Mailgate) -> Iterator[Mailgate]:
    mailgate_process.relay_port = postfix.smtp_port
    mailgate_process.start()
    yield mailgate_process
    mailgate_process.stop()


@pytest.fixture
def running(mailgate: Mailgate) -> Mailgate:
    """The session's mailgate, restarted first if an earlier test left it stopped."""
    if mailgate.proc is None or mailgate.proc.poll() is not None:
        mailgate.start()
    return mailgate


@pytest.fixture
def db(running: Mailgate) -> Iterator[Engine]:
    """The database of the mailgate a test drives (``running``; test_exim.py has its own)."""
    engine = make_engine(DatabaseSettings(url=running.db_url))
    yield engine
    engine.dispose()
