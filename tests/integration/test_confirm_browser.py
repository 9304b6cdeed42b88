"""The confirm page in a real headless browser (Debian's chromium driven by Playwright):
what an account administrator actually sees and clicks, without JavaScript."""

from __future__ import annotations

import os
import re
import shutil
import smtplib
from pathlib import Path

import pytest
from sqlalchemy import select

from mailgate.store.models import AccountAddress, Ticket
from mailgate.verify import directory
from tests.conftest import make_runtime, make_settings
from tests.support import DaemonThread, RelaySink, make_mail

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    if not os.path.exists(CHROMIUM):
        # .ci/run installs chromium; a missing browser there is a CI failure, not a skip.
        pytest.fail(f"chromium not found at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_admin_confirms_in_the_browser_and_trusts_the_address(
    browser,
    db_url: str,
    tmp_path: Path,
    sink: RelaySink,  # type: ignore[no-untyped-def]
) -> None:
    settings = make_settings(
        db_url, tmp_path, http={"listen": "127.0.0.1:0"},
        outbound={"relay": f"127.0.0.1:{sink.port}"},
    )  # fmt: skip
    rt = make_runtime(settings)
    with rt.sessions.begin() as s:
        directory.upsert(
            s,
            directory.AccountSpec("fero", "admin@firma.sk", language="sk",
                                  identifiers=(("domain", "firma.sk"),)),
            rt.clock(),
        )  # fmt: skip
    try:
        with DaemonThread(rt) as d:
            with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as c:
                c.sendmail(
                    "kolega@agentura.example",
                    ["support@helpdesk.example"],
                    make_mail(
                        sender="Kolega <kolega@agentura.example>",
                        subject="Zmena DNS pre firma.sk <b>urgent</b>",
                        body="Prosím zmeňte MX záznam pre firma.sk.\n",
                    ),
                )
            mails = sink.wait_for(2)
            request = next(m for m in mails if m.rcpt_tos == ["admin@firma.sk"])
            found = re.search(rb"/confirm/([0-9a-f]{32})", request.data.replace(b"=\r\n", b""))
            assert found is not None
            url = f"http://127.0.0.1:{d.port('http')}/confirm/{found.group(1).decode()}"
            page = browser.new_page(java_script_enabled=False)
            page.goto(url)
            assert page.title().startswith("Potvrdenie požiadavky")
            text = page.inner_text("body")
            assert "kolega@agentura.example" in text and "fero" in text
            # The subject is shown as text: the markup in it is escaped, not rendered.
            assert "Zmena DNS pre firma.sk <b>urgent</b>" in text
            assert page.locator("b").count() == 0
            page.check("input[name=trust]")
            page.click("button[value=confirm]")
            assert "Požiadavka je potvrdená" in page.inner_text("#result")
            page.goto(url)  # a second visit finds it answered
            assert "už bolo odpovedané" in page.inner_text("#result")
            page.close()
            assert sink.wait_for(3)[2].rcpt_tos == ["kolega@agentura.example"]
        with rt.sessions() as s:
            assert s.scalars(select(Ticket.authorization)).one() == "authorized"
            trusted = s.scalars(select(AccountAddress.address)).all()
            assert "kolega@agentura.example" in trusted
    finally:
        rt.close()
