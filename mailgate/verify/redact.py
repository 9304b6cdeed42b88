"""Credential redaction: passwords customers paste into mail never reach an article.

Some providers still ask customers to "authorize" a mail by including their password;
mailgate never does, and protects those who do it anyway.  The value after a password
label in any of our five languages is replaced by a marker before the text is stored,
shown or relayed; after processing, ``redact_raw`` gives the stored raw copy the same
treatment, so no copy mailgate keeps or exports holds the password.  ``secrets`` hands
the values themselves to the one caller that may use them once (password authorization,
``pipeline.passwords``).
"""

from __future__ import annotations

import email
import re
from email.charset import QP, Charset
from email.header import Header, decode_header, make_header
from email.policy import compat32

MARKER = "[password removed by mailgate]"
# The rule hit that records, with the message, that its stored raw copy was rewritten.
RAW_REDACTED = "raw-redacted"

_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP

_LABELS = (
    "password", "passwd", "pass", "pwd", "passphrase", "hasło", "haslo", "hasła",
    "heslo", "hesla", "пароль", "пароля", "pin",
)  # fmt: skip
# A label, a separator (":", "=", "-", "is", "to", "je", "—"), then the secret up to the
# end of the line or the next whitespace-separated word boundary.
_PATTERN = re.compile(
    r"(?P<label>(?<![\w])(?:" + "|".join(sorted(map(re.escape, _LABELS), key=len, reverse=True))
    + r"))(?P<sep>\s*(?:[:=]|\s-\s|\sis\s|\sto\s|\sje\s|—|\s–\s)\s*)(?P<secret>[^\s<>\"']{3,128})",
    re.IGNORECASE,
)  # fmt: skip


def redact(text: str) -> tuple[str, bool]:
    """``text`` with pasted passwords replaced, and whether anything was replaced."""
    found = False

    def replace(match: re.Match[str]) -> str:
        nonlocal found
        found = True
        return f"{match.group('label')}{match.group('sep')}{MARKER}"

    return _PATTERN.sub(replace, text), found


def redact_raw(raw: bytes) -> bytes | None:
    """``raw`` with the same redaction applied to its Subject and its text parts, or
    None when nothing in it needed redacting.

    The stored copy of a message must not keep what its articles hide (``mailgate
    export`` hands it over).  Only the Subject and the inline ``text/*`` parts change —
    the same texts the articles are made of; a changed part is re-encoded as UTF-8
    quoted-printable, everything else keeps its bytes.  Attached files are not texts of
    the conversation and stay as they are, as in the attachment store.
    """
    msg = email.message_from_bytes(raw, policy=compat32)
    changed = False
    subject = msg.get("Subject")
    if subject is not None:
        text, found = redact(_decoded_header(subject))
        if found:
            msg.replace_header("Subject", Header(text, "utf-8").encode())
            changed = True
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if part.get_content_disposition() == "attachment":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        charset = part.get_content_charset() or "us-ascii"
        try:
            text = payload.decode(charset, errors="replace")
        except LookupError:  # an unknown charset name: read it as the parser does
            text = payload.decode("utf-8", errors="replace")
        cleaned, found = redact(text)
        if not found:
            continue
        del part["Content-Transfer-Encoding"]
        part.set_payload(cleaned, _UTF8_QP)
        changed = True
    if not changed:
        return None
    # Keep the line endings the message came with (CRLF from SMTP, LF from a pipe).
    linesep = "\r\n" if b"\r\n" in raw[:4096] else "\n"
    return msg.as_bytes(policy=compat32.clone(linesep=linesep))


def _decoded_header(value: object) -> str:
    try:
        return str(make_header(decode_header(str(value))))
    except (LookupError, UnicodeError, ValueError):
        return str(value)


# A PIN is not the account's password: never tried against its hash.
_NOT_PASSWORDS = frozenset({"pin"})


def secrets(text: str) -> list[str]:
    """The pasted passwords in ``text``, in order (PINs left out)."""
    return [
        m.group("secret")
        for m in _PATTERN.finditer(text)
        if m.group("label").casefold() not in _NOT_PASSWORDS
    ]
