"""One raw header value → text, msg-ids or a date.

compat32 hands header values over raw: folded, RFC 2047 encoded-words undecoded, and
8-bit bytes smuggled as surrogates.  Every header ``parse`` reads goes through here
(address headers through ``addresses``, which builds on these helpers).  Decoding is
lenient and linear in the header length; whatever had to be guessed becomes a defect.
"""

from __future__ import annotations

import binascii
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from mailgate.parse.charsets import decode_bytes, guess_decode

# The payload may hold spaces: older clients write "=?utf-8?Q?Hello World?=" (invalid,
# but the stdlib decodes it and so do we).  "?" ends it, so the scan stays linear.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")


def _encoded_word_bytes(encoding: str, payload: str) -> bytes | None:
    try:
        data = payload.encode("ascii")
    except UnicodeEncodeError:
        return None
    try:
        if encoding in "bB":
            return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
        return binascii.a2b_qp(data, header=True)
    except (binascii.Error, ValueError):
        return None


def decode_rfc2047(value: str, defects: list[str], hints: tuple[str, ...] = ()) -> str:
    """Decode RFC 2047 encoded-words leniently, in one linear pass.

    Adjacent words in the same charset are joined *before* decoding, because senders
    split multi-byte UTF-8 characters across words; whitespace between encoded-words
    is dropped (RFC 2047 6.2).  Undecodable words are kept literally with a defect.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    position = 0
    after_word = False

    def flush() -> None:
        nonlocal pending_charset
        if pending_charset is not None:
            data = bytes(pending)
            out.append(decode_bytes(data, pending_charset, defects, "header", hints))
            pending.clear()
            pending_charset = None

    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        position = match.end()
        if between and not (after_word and between.isspace()):
            flush()
            out.append(between)
        charset = match.group(1).split("*", 1)[0].lower()  # drop RFC 2231 language
        payload = match.group(3)
        if " " in payload and match.group(2) in "bB":
            payload = payload.replace(" ", "")
        data = _encoded_word_bytes(match.group(2), payload)
        if data is None:
            flush()
            out.append(match.group(0))
            defects.append("header:bad-encoded-word")
            after_word = False
            continue
        if charset != pending_charset:
            flush()
            pending_charset = charset
        pending += data
        after_word = True
    flush()
    out.append(value[position:])
    return "".join(out)


_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")


def raw_text(value: Any, defects: list[str], hints: tuple[str, ...] = ()) -> str:
    """A compat32 raw header value (8-bit bytes as surrogates) → text, unfolded.

    ``hints`` are the charsets the message declares: raw 8-bit header text is almost
    always in the charset of its own body.
    """
    if not isinstance(value, str):
        value = str(value)
    data = value.encode("utf-8", "surrogateescape")
    if data.isascii() and "\x1b" not in value:
        text = value
    else:
        # RFC 6532 allows UTF-8 in headers; anything else is undeclared 8-bit junk.
        text, guessed = guess_decode(data, hints)
        if guessed:
            defects.append("header:undeclared-8bit")
    return unfold(text)


def header_text(value: Any, defects: list[str], hints: tuple[str, ...] = ()) -> str:
    """Decoded, unfolded text of one raw header value."""
    return decode_rfc2047(raw_text(value, defects, hints), defects, hints)


def single_line(text: str) -> str:
    """CR, LF, tabs and other controls become single spaces; ends stripped."""
    return " ".join(_CONTROLS.sub(" ", text).split())


def unfold(text: str) -> str:
    """Undo header folding (RFC 5322 2.2.3): CRLF before whitespace is removed."""
    return _FOLD.sub("", text)


_MSG_ID = re.compile(r"<([^<>\s]{1,250})>")


def msg_ids(raw: str | None) -> list[str]:
    """msg-ids without brackets; junk between them is skipped (RFC 5322 3.6.4)."""
    if raw is None:
        return []
    value = raw_text(raw, [])
    ids = [m for m in _MSG_ID.findall(value) if "@" in m or "." in m]
    if not ids:
        # Bare ids without brackets still occur (old clients, some bounces).
        ids = [t for t in value.split() if "@" in t and "<" not in t and ">" not in t]
    return [i for i in ids if len(i) <= 250]


def header_date(raw: str | None, defects: list[str]) -> datetime | None:
    """The Date header as an aware datetime; None if absent or invalid (with a defect)."""
    if raw is None:
        return None
    try:
        value = parsedate_to_datetime(single_line(raw_text(raw, [])))
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append("date:invalid")
        return None
    if value.tzinfo is None:  # "-0000": UTC, origin's zone unknown (RFC 5322 3.3)
        value = value.replace(tzinfo=UTC)
    return value
