"""Password authorization through the real daemon: hashes set by the command line
(`accounts set-password` from standard input, `accounts import` with a password_hash
column), mail over SMTP, and exactly which mail went to whom at the relay sink."""

from __future__ import annotations

import json
import smtplib
from pathlib import Path

import bcrypt
from click.testing import CliRunner

from mailgate import cli
from mailgate.daemon.runtime import Runtime
from tests.conftest import make_runtime, make_settings
from tests.support import DaemonThread, RelaySink, make_mail

SHA512 = (
    "$6$8xJ4Qm2pLs$xIoaLuwXqC3MRsXzTHSpS5RRPPnOKlWmR02mGnPFFssOSETbIWHS64qm2lUGMmR3fMpT8KT"
    "/R/uepN9.27u8H0"
)  # `openssl passwd -6` of "Heslo-2026!"


def run(config: Path, *args: str, stdin: str | None = None, code: int = 0) -> str:
    result = CliRunner().invoke(
        cli.main, ["--config", str(config), *args], input=stdin, env={"MAILGATE_CONFIG": None}
    )
    assert result.exit_code == code, result.output
    return result.output


def test_password_authorization_over_smtp(db_url: str, tmp_path: Path, sink: RelaySink) -> None:
    config = tmp_path / "mailgate.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n[verify]\ndns_lookups = false\n'
        "password_authorization = true\n"
    )
    run(config, "accounts", "add", "fero", "--admin", "fero@firma.sk", "--lang", "sk")
    assert "sha512-crypt" in run(config, "accounts", "set-password", "fero", stdin=SHA512 + "\n")
    refused = run(config, "accounts", "set-password", "fero", stdin="Heslo-2026!\n", code=65)
    assert "plaintext" in refused
    hashed = bcrypt.hashpw(b"Haslo-2026!", bcrypt.gensalt(4)).decode()
    (tmp_path / "a.csv").write_text(
        f"login,admin,lang,password_hash\njan,jan@firma.pl,pl,{hashed}\n"
    )
    run(config, "accounts", "import", str(tmp_path / "a.csv"))
    (tmp_path / "bad.csv").write_text("login,admin,password_hash\nx,x@firma.pl,secret123\n")
    assert "plaintext" in run(config, "accounts", "import", str(tmp_path / "bad.csv"), code=65)
    shown = json.loads(run(config, "accounts", "show", "jan", "--json"))
    assert shown["password"] == "bcrypt" and hashed not in json.dumps(shown)

    settings = make_settings(
        db_url,
        tmp_path,
        verify={"password_authorization": True},
        outbound={"relay": f"127.0.0.1:{sink.port}"},
    )
    rt: Runtime = make_runtime(settings)
    right = make_mail(
        sender="someone@elsewhere.example",
        subject="Zmena DNS",
        body="Prosím o zmenu.\nUžívateľské meno: fero\nHeslo: Heslo-2026!\n",
    )
    wrong = make_mail(
        sender="someone@elsewhere.example",
        subject="Zmiana DNS",
        body="Proszę o zmianę.\nLogin: jan\nHasło: zgaduje-1\n",
    )
    try:
        with DaemonThread(rt) as d, smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as c:
            c.sendmail("someone@elsewhere.example", ["support@helpdesk.example"], right)
            [ack] = sink.wait_for(1)
            assert ack.rcpt_tos == ["someone@elsewhere.example"]  # and no challenge
            assert b"Heslo-2026!" not in ack.data
            c.sendmail("someone@elsewhere.example", ["support@helpdesk.example"], wrong)
            got = sink.wait_for(3)[1:]
            assert sorted(m.rcpt_tos[0] for m in got) == [
                "jan@firma.pl",
                "someone@elsewhere.example",
            ]
            assert all(b"zgaduje-1" not in m.data for m in got)
        tickets = {t["subject"]: t for t in json.loads(run(config, "tickets", "list", "--json"))}
        assert tickets["Zmena DNS"]["authorization"] == "authorized"
        assert tickets["Zmiana DNS"]["authorization"] == "awaiting_confirmation"
        shown = json.loads(run(config, "ticket", "show", "1", "--json"))
        [decided] = shown["rule_hits"]
        assert "authorized:password" in decided["hits"]
        assert "Heslo-2026!" not in json.dumps(shown, ensure_ascii=False)
    finally:
        rt.close()
    assert len(sink.messages) == 3
