"""The confirmation flow through the real daemon: SMTP in, mails at the relay sink
(exactly which mail went to whom), the confirm page over HTTP (GET never acts), and the
accounts command line."""

from __future__ import annotations

import json
import re
import smtplib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from click.testing import CliRunner

from mailgate import cli
from mailgate.daemon.runtime import Runtime
from tests.conftest import make_runtime, make_settings
from tests.support import DaemonThread, RelaySink, make_mail


def run(config: Path, *args: str) -> str:
    result = CliRunner().invoke(
        cli.main, ["--config", str(config), *args], env={"MAILGATE_CONFIG": None}
    )
    assert result.exit_code == 0, result.output
    return result.output


def write_config(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "mailgate.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n[verify]\ndns_lookups = false\n')
    return path


def test_accounts_cli_add_import_list(db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, db_url)
    assert "1 account(s)" in run(
        config,
        "accounts",
        "add",
        "jkowalski",
        "--admin",
        "admin@customer.example",
        "--address",
        "jan@customer.example:technical",
        "--address",
        "faktury@customer.example:billing",
        "--domain",
        "www.sklep-jana.pl",
        "--contract",
        "UM/2024/7",
        "--order",
        "40033",
        "--ip",
        "192.0.2.10",
        "--service",
        "VPS Pro",
        "--lang",
        "pl",
    )
    (tmp_path / "a.csv").write_text(
        "login,admin,lang,addresses,domains,orders\n"
        "fero,fero@firma.sk,sk,ucto@firma.sk:billing,firma.sk,70001 70002\n"
    )
    (tmp_path / "a.json").write_text(
        json.dumps(
            [
                {
                    "login": "ivanov",
                    "admin": "ivan@ooo.example",
                    "lang": "ru",
                    "ips": ["2001:db8::5"],
                },
            ]
        )
    )
    assert "1 account(s)" in run(config, "accounts", "import", str(tmp_path / "a.csv"))
    assert "1 account(s)" in run(config, "accounts", "import", str(tmp_path / "a.json"))
    accounts = {a["login"]: a for a in json.loads(run(config, "accounts", "list", "--json"))}
    assert set(accounts) == {"jkowalski", "fero", "ivanov"}
    j = accounts["jkowalski"]
    assert {"address": "faktury@customer.example", "role": "billing"} in j["addresses"]
    assert {"kind": "domain", "value": "sklep-jana.pl"} in j["identifiers"]
    assert {"kind": "contract", "value": "um/2024/7"} in j["identifiers"]
    assert {"kind": "order", "value": "70002"} in accounts["fero"]["identifiers"]
    assert accounts["ivanov"]["language"] == "ru"
    shown = json.loads(run(config, "accounts", "show", "FERO", "--json"))
    assert shown["login"] == "fero"
    bad = CliRunner().invoke(
        cli.main,
        [
            "--config",
            str(config),
            "accounts",
            "add",
            "x",
            "--admin",
            "not-an-address",
            "--address",
            "a@b.example:boss",
        ],
    )
    assert bad.exit_code == 65
    assert "not an e-mail address" in bad.output and "role 'boss'" in bad.output


def http(url: str, data: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(url, data=body, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def test_confirm_page_get_shows_post_confirms(db_url: str, tmp_path: Path, sink: RelaySink) -> None:
    config = write_config(tmp_path, db_url)
    run(
        config,
        "accounts",
        "add",
        "jkowalski",
        "--admin",
        "admin@customer.example",
        "--address",
        "jan@customer.example:technical",
        "--lang",
        "en",
    )
    settings = make_settings(
        db_url,
        tmp_path,
        http={"listen": "127.0.0.1:0"},
        outbound={"relay": f"127.0.0.1:{sink.port}"},
    )
    rt: Runtime = make_runtime(settings)
    try:
        with DaemonThread(rt) as d:
            with smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as c:
                c.sendmail(
                    "jan@customer.example",
                    ["support@helpdesk.example"],
                    make_mail(subject="Please delete my domain", body="Do it now.\n"),
                )
            mails = sink.wait_for(2)
            assert sorted(m.rcpt_tos[0] for m in mails) == [
                "admin@customer.example",
                "jan@customer.example",
            ]
            request = next(m for m in mails if m.rcpt_tos == ["admin@customer.example"])
            token = (
                re.search(rb"/confirm/([0-9a-f]{32})", request.data.replace(b"=\r\n", b""))
                .group(1)
                .decode()
            )  # type: ignore[union-attr]
            base = f"http://127.0.0.1:{d.port('http')}/confirm/"
            # GET, twice, as a mail scanner would: shows the request, changes nothing.
            for _ in range(2):
                status, page, headers = http(base + token)
                assert status == 200, page
                assert "Please delete my domain" in page and "jkowalski" in page
                assert 'name="action" value="confirm"' in page
                assert headers["Cache-Control"] == "no-store"
                assert headers["Referrer-Policy"] == "no-referrer"
            shown = json.loads(run(config, "ticket", "show", "1", "--json"))
            assert shown["authorization"] == "awaiting_confirmation"
            assert shown["account"] == "jkowalski"
            assert shown["articles"][0]["auth"]["result"] == "none"
            status, page, _ = http(base + token, {"action": "confirm"})
            assert status == 200 and 'id="result"' in page and "confirmed" in page
            status, page, _ = http(base + token, {"action": "refuse"})
            assert status == 409 and "already been answered" in page
            assert http(base + "f" * 32)[0] == 404
            assert http(base + token, {"action": "delete-everything"})[0] == 400
            mails = sink.wait_for(3)
            assert mails[2].rcpt_tos == ["jan@customer.example"]
            assert b"confirmed" in mails[2].data
        [listed] = json.loads(run(config, "tickets", "list", "--json"))
        assert (listed["authorization"], listed["account"]) == ("authorized", "jkowalski")
    finally:
        rt.close()


def test_each_decision_path_over_smtp_shows_who_gets_mail(
    db_url: str, tmp_path: Path, sink: RelaySink
) -> None:
    from tests.dkimkeys import make_key, sign
    from tests.support import FakeDns

    key = make_key()
    dns = FakeDns(
        {"s1._domainkey.customer.example": key.txt, "_dmarc.bank.example": "v=DMARC1; p=reject"}
    )
    config = write_config(tmp_path, db_url)
    run(config, "accounts", "add", "jkowalski", "--admin", "admin@customer.example",
        "--address", "jan@customer.example:technical", "--order", "40033")  # fmt: skip
    settings = make_settings(db_url, tmp_path, outbound={"relay": f"127.0.0.1:{sink.port}"})
    rt = make_runtime(settings, dns=dns)
    cases = [
        (
            "authorized",
            "jan@customer.example",
            sign(make_mail(subject="a"), key, "customer.example"),
        ),
        ("challenge", "jan@customer.example", make_mail(subject="b")),
        (
            "names-account",
            "who@else.example",
            make_mail(sender="who@else.example", subject="#40033"),
        ),
        (
            "consultative",
            "who@else.example",
            make_mail(sender="who@else.example", subject="price?"),
        ),
        ("dmarc-fail", "ceo@bank.example", make_mail(sender="ceo@bank.example", subject="pay")),
    ]
    expected = {
        "authorized": ["jan@customer.example"],
        "challenge": ["admin@customer.example", "jan@customer.example"],
        "names-account": ["admin@customer.example", "who@else.example"],
        "consultative": ["who@else.example"],
        "dmarc-fail": [],
    }
    try:
        with DaemonThread(rt) as d, smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=10) as c:
            total = 0
            for name, sender, raw in cases:
                c.sendmail(sender, ["support@helpdesk.example"], raw)
                total += len(expected[name])
                got = sink.wait_for(total)[total - len(expected[name]) :]
                assert sorted(m.rcpt_tos[0] for m in got) == expected[name], name
                assert all(m.mail_from in ("", "<>") for m in got)
        tickets = {
            t["subject"]: t["authorization"]
            for t in json.loads(run(config, "tickets", "list", "--json"))
        }
        assert tickets == {
            "a": "authorized",
            "b": "awaiting_confirmation",
            "#40033": "awaiting_confirmation",
            "price?": "consultative",
        }
        [held] = json.loads(run(config, "quarantine", "list", "--json"))
        assert held["reason"] == "dmarc-fail"
        assert len(sink.messages) == 6  # and nothing went out for the quarantined one
    finally:
        rt.close()
