"""Password hashes as hosting panels store them, checked with real hashes of every
supported format, and the pasted password taken out of the raw copy."""

from __future__ import annotations

from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage

import pytest

from mailgate.verify import passwords
from mailgate.verify.credentials import Credential
from mailgate.verify.redact import MARKER, redact_raw, secrets

# Made by the tools that make them in the wild: `openssl passwd -6`, `doveadm pw -s
# BLF-CRYPT` ($2y$, PHP's spelling), `doveadm pw -s ARGON2ID`, Django's PBKDF2 computed
# with hashlib, passlib's PBKDF2 form, and OpenBSD's published bcrypt test vector ($2a$).
REAL_HASHES = [
    (
        "sha512-crypt",
        "$6$8xJ4Qm2pLs$xIoaLuwXqC3MRsXzTHSpS5RRPPnOKlWmR02mGnPFFssOSETbIWHS64qm2lUGMmR3fMpT8KT"
        "/R/uepN9.27u8H0",
        "Heslo-2026!",
    ),
    ("bcrypt", "$2y$05$JzEPnFGKq9bZtwtj6dC3Au3jxobhmRS1Iuwzbol6lL9L52TrPysRa", "Hasło-2026!"),
    ("bcrypt", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U"),
    (
        "argon2id",
        "$argon2id$v=19$m=65536,t=3,p=1$fXnN9dvEErRNAZHG0ggvdw$YCZ8CMnoygD8uq/bCIdUaTMUzd0nq"
        "/qEGaCpYlbco6c",
        "Пароль-2026!",
    ),
    (
        "pbkdf2-sha256",
        "pbkdf2_sha256$260000$Yx3kQ0aZbT9w$Mf/dPPoOrpg3fZrhSkicTom7/w8j5ymB7mL6I+M3WYo=",
        "Secret-2026!",
    ),
    (
        "pbkdf2-sha256",
        "$pbkdf2-sha256$29000$mlMKIcS4t3auFcK413qv9Q$ENxB9h5fAHG41HJ6qJxNAWki7Rpx4LnjZaKCTbbXyy4",
        "Secret-2026!",
    ),
]


@pytest.mark.parametrize(("kind", "stored", "password"), REAL_HASHES)
def test_every_supported_format_verifies_the_right_password_only(
    kind: str, stored: str, password: str
) -> None:
    assert passwords.scheme(stored) == kind
    assert passwords.verify(stored, password)
    assert not passwords.verify(stored, password + "x")
    assert not passwords.verify(stored, password.swapcase())


def test_bcrypt_b_made_here_verifies_too() -> None:
    import bcrypt

    stored = bcrypt.hashpw(b"zaq1@WSX", bcrypt.gensalt(4)).decode()
    assert stored.startswith("$2b$04$")
    assert passwords.verify(stored, "zaq1@WSX")


@pytest.mark.parametrize(
    "value",
    ["hunter22", "", None, "$1$abc$def", "{PLAIN}secret", "$2y$05$short", "5f4dcc3b5aa765d61d83"],
)
def test_plaintext_and_unknown_values_are_never_hashes(value: str | None) -> None:
    assert passwords.scheme(value) is None
    assert not passwords.verify(value, value or "")


def test_a_damaged_hash_fails_without_raising() -> None:
    broken = "$argon2id$v=19$m=65536,t=3,p=1$fXnN9dvEErRNAZHG0ggvdw$AAAA"
    assert passwords.scheme(broken) == "argon2id"
    assert not passwords.verify(broken, "Пароль-2026!")


def test_the_credential_never_shows_its_password() -> None:
    assert "S3cret" not in repr(Credential("jan", "S3cret"))


def test_secrets_are_the_pasted_passwords_in_order_without_pins() -> None:
    text = "PIN: 1234\nLogin: jan\nHeslo: Tajne123\nпароль: второй-раз\n"
    assert secrets(text) == ["Tajne123", "второй-раз"]
    assert secrets("I forgot my password yesterday.") == []


def _mail(cte: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "jan@customer.example"
    msg["Subject"] = "heslo: Tajne123ščř prosím"
    msg.set_content("Login: jan\nHeslo: Tajne123ščř\nĎakujem\n", charset="utf-8", cte=cte)
    msg.add_alternative("<p>Heslo: Tajne123ščř</p>", subtype="html", cte=cte)
    msg.add_attachment(b"\x89PNG\r\n\x1a\n", maintype="image", subtype="png", filename="a.png")
    return msg.as_bytes()


@pytest.mark.parametrize("cte", ["base64", "quoted-printable", "8bit"])
def test_raw_copy_loses_the_password_in_every_encoding(cte: str) -> None:
    out = redact_raw(_mail(cte))
    assert out is not None
    assert b"Tajne123" not in out
    message = message_from_bytes(out, policy=email_policy.default)
    assert isinstance(message, EmailMessage)
    assert MARKER in str(message["Subject"])
    texts = [p.get_content() for p in message.walk() if p.get_content_maintype() == "text"]
    assert len(texts) == 2 and all(MARKER in t for t in texts)
    assert "Ďakujem" in texts[0]
    [image] = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert image.get_content() == b"\x89PNG\r\n\x1a\n"


def test_raw_copy_without_a_password_is_left_alone() -> None:
    msg = EmailMessage()
    msg["Subject"] = "password reset does not work"
    msg.set_content("I forgot my password.\n")
    assert redact_raw(msg.as_bytes()) is None
