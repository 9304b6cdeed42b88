"""Identification of the account a mail is about, in five languages, and redaction of
pasted passwords."""

from __future__ import annotations

import pytest

from mailgate.verify.identity import extract, normalize
from mailgate.verify.redact import MARKER, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Login: jkowalski", "login=jkowalski"),
        ("Użytkownik: jan.k", "login=jan.k"),
        ("Užívateľské meno: fero_m", "login=fero_m"),
        ("Uživatelské jméno - petr99", "login=petr99"),
        ("Логин: ivanov", "login=ivanov"),
        ("Contract no. C-2024-17", "contract=c-2024-17"),
        ("Umowa nr 2024/11/7", "contract=2024/11/7"),
        ("Číslo zmluvy: ZM-555", "contract=zm-555"),
        ("Smlouva č. 8812", "contract=8812"),
        ("Договор № AB-1234", "contract=ab-1234"),
        ("Order 40033 did not arrive", "order=40033"),
        ("Zamówienie #40033 nie dotarło", "order=40033"),
        ("Objednávka 123456 ešte neprišla", "order=123456"),
        ("Заказ №998877 не оплачен", "order=998877"),
        ("regarding #445566", "order=445566"),
        ("Usługa: VPS Pro", "service=vps pro"),
        ("server 192.0.2.10 is down", "ip=192.0.2.10"),
        ("IPv6 2001:db8::25 nefunguje", "ip=2001:db8::25"),
        ("domena www.Sklep-Jana.pl nie działa", "domain=sklep-jana.pl"),
        ("сайт shop.example.co.uk не работает", "domain=example.co.uk"),
    ],
)
def test_identifiers_in_five_languages(text: str, expected: str) -> None:
    assert expected in extract("", text).found


def test_free_text_words_without_a_separator_are_not_identifiers() -> None:
    ids = extract("My account is broken", "the service is slow, my login fails")
    assert ids.logins == () and ids.services == ()


def test_own_domains_ignored_and_ips_validated() -> None:
    ids = extract(
        "", "write to helpdesk.example, not 999.1.1.1 or 127.0.0.1", frozenset({"helpdesk.example"})
    )
    assert ids.domains == () and ids.ips == ()


def test_normalize() -> None:
    assert normalize("domain", "Mail.Example.COM.") == "example.com"
    assert normalize("domain", "co.uk") == ""
    assert normalize("ip", "2001:0db8:0000::0001") == "2001:db8::1"
    assert normalize("order", "#0042") == "0042"


@pytest.mark.parametrize(
    "text",
    [
        "Password: S3cr3t!x",
        "hasło: zaq12wsx",
        "Heslo je Tajne123",
        "heslo: Tajne123",
        "пароль: qwerty123",
        "pass=abc123",
        "my password is hunter22",
    ],
)
def test_pasted_passwords_are_redacted(text: str) -> None:
    cleaned, found = redact(f"Login: jan\n{text}\nthanks")
    assert found
    assert MARKER in cleaned
    secret = text.split()[-1].split("=")[-1].split(":")[-1].strip()
    assert secret not in cleaned
    assert cleaned.startswith("Login: jan\n") and cleaned.endswith("\nthanks")


def test_talking_about_passwords_is_not_redacted() -> None:
    text = "I forgot my password yesterday. Password reset does not work."
    assert redact(text) == (text, False)


def test_the_raw_copy_gets_the_same_redaction() -> None:
    from email import message_from_bytes, policy
    from email.message import EmailMessage

    from mailgate.verify.redact import redact_raw

    msg = EmailMessage()
    msg["From"] = "jan@customer.example"
    msg["Subject"] = "hasło: Zaq1@wsx"
    msg.set_content("Login: jan\nHasło: Zaq1@wsx\nthanks\n")
    msg.add_alternative("<p>password: hunter22</p>", subtype="html")
    msg.add_attachment(b"password: kept-as-sent", maintype="text", subtype="plain",
                       filename="notes.txt")  # fmt: skip
    raw = msg.as_bytes(policy=policy.SMTP)
    cleaned = redact_raw(raw)
    assert cleaned is not None
    for secret in (b"Zaq1@wsx", b"hunter22"):
        assert secret not in cleaned
    assert b"\r\n" in cleaned and b"\r\r" not in cleaned  # line endings kept
    back = message_from_bytes(cleaned, policy=policy.default)
    assert MARKER in str(back["Subject"])
    [attachment] = list(back.iter_attachments())  # type: ignore[attr-defined]
    assert attachment.get_content() == "password: kept-as-sent"  # files stay as sent
    assert redact_raw(b"Subject: hello\r\n\r\nno secrets here\r\n") is None
