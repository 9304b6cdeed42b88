"""Credential redaction: passwords customers paste into mail never reach an article.

Some providers still ask customers to "authorize" a mail by including their password;
mailgate never does, and protects those who do it anyway.  The value after a password
label in any of our five languages is replaced by a marker before the text is stored,
shown or relayed.  The raw message stays only in the restricted inbound store.
"""

from __future__ import annotations

import re

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
