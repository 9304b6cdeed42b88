"""Credential redaction: passwords customers paste into mail never reach an article.

Some providers still ask customers to "authorize" a mail by including their password;
mailgate never does, and protects those who do it anyway.  The value after a password
label in any of our five languages is replaced by a marker before the text is stored,
shown or relayed.  ``redact_raw`` makes the same change to the raw copy, which the
pipeline keeps instead of the received bytes once the message has been processed.
``secrets`` hands the values themselves to the one caller that may use them once
(password authorization, ``pipeline.passwords``).
"""

from __future__ import annotations

import re
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage

MARKER = "[password removed by mailgate]"

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


# A PIN is not the account's password: never tried against its hash.
_NOT_PASSWORDS = frozenset({"pin"})


def secrets(text: str) -> list[str]:
    """The pasted passwords in ``text``, in order (PINs left out)."""
    return [
        m.group("secret")
        for m in _PATTERN.finditer(text)
        if m.group("label").casefold() not in _NOT_PASSWORDS
    ]


def redact_raw(raw: bytes) -> bytes | None:
    """The raw message with pasted passwords replaced in its subject and text parts;
    None when there were none.

    The message is re-serialized (a DKIM signature over it no longer verifies: the copy
    is for reading, not for proving).  Attachments that are not text stay as they were.
    """
    message = message_from_bytes(raw, policy=email_policy.default)
    assert isinstance(message, EmailMessage)
    found = False
    subject = message.get("Subject")
    if subject is not None:
        cleaned, hit = redact(str(subject))
        if hit:
            message.replace_header("Subject", cleaned)
            found = True
    for part in message.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        try:
            text = part.get_content()
        except (LookupError, ValueError):
            continue  # an unknown charset: the parser kept nothing readable of it either
        cleaned, hit = redact(text)
        if hit:
            assert isinstance(part, EmailMessage)
            disposition = part.get("Content-Disposition")
            part.set_content(cleaned, subtype=part.get_content_subtype(), cte="8bit")
            if disposition is not None:
                part["Content-Disposition"] = disposition
            found = True
    if not found:
        return None
    return message.as_bytes(policy=email_policy.SMTP.clone(cte_type="8bit"))
