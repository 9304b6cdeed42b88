"""The MIME tree → body text, body HTML, delivery status and attachments.

mail-parser descends into embedded ``message/rfc822`` parts and mixes the forwarded or
returned message's text into the body, names unnamed parts randomly and re-encodes
payloads as base64 text.  So ``walk`` reads the compat32 tree itself, iteratively: it
stops at embedded messages and attaches them whole as ``message.eml``, and takes each
attachment's decoded bytes straight from its part.  ``html_to_text`` gives the text of
an HTML-only body, ``sanitize_html`` the HTML we keep (or none, for a nesting bomb);
``display_filename`` the only form of a sender's file name we show.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from email.errors import (
    InvalidBase64CharactersDefect,
    InvalidBase64LengthDefect,
    InvalidBase64PaddingDefect,
    MessageDefect,
    MessageError,
)
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any

import inscriptis
import nh3

from mailgate.errors import PermanentError
from mailgate.parse.bounds import ParseLimits
from mailgate.parse.charsets import decode_bytes
from mailgate.parse.headers import header_text, raw_text
from mailgate.parse.message import Attachment

_MAX_FILENAME = 200


@dataclass(slots=True)
class Body:
    """What ``walk`` picked: the body parts (None when absent) and every other leaf."""

    text: str | None = None
    html: str | None = None
    delivery_status: str | None = None
    attachments: list[Attachment] = field(default_factory=list)


def children(part: Message) -> list[Message]:
    """Sub-parts of a multipart or message/* part (compat32 keeps them in a list)."""
    payload = part.get_payload() if part.is_multipart() else None
    if not isinstance(payload, list):
        return []
    return [child for child in payload if isinstance(child, Message)]


def check_tree(msg: Message, limits: ParseLimits) -> None:
    """Exact depth and part count of the parsed tree (the raw scan can undercount)."""
    stack = [(msg, 0)]
    count = 0
    while stack:
        part, depth = stack.pop()
        count += 1
        if count > limits.max_parts:
            raise PermanentError("too-many-parts", f"more than {limits.max_parts} parts")
        nested = children(part)
        if nested:
            if depth + 1 > limits.max_mime_depth:
                raise PermanentError("mime-too-deep", f"more than {limits.max_mime_depth} levels")
            stack.extend((child, depth + 1) for child in nested)


def walk(msg: Message, limits: ParseLimits, defects: list[str]) -> Body:
    """Pick body parts and attachments from the tree, iteratively (no recursion).

    The first inline text/plain is the body and the first inline text/html its HTML;
    every other leaf is an attachment (inline images included), so nothing is lost.
    Embedded messages are attached whole as ``message.eml`` and not searched for text.
    """
    check_tree(msg, limits)
    body = Body()
    is_dsn = msg.get_content_type() == "multipart/report" and collapse_rfc2231_value(
        msg.get_param("report-type", "delivery-status")
    ).lower() in ("delivery-status", "global-delivery-status")
    stack: list[Message] = [msg]
    while stack:
        part = stack.pop()
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            body.attachments.append(_attachment(part, ctype, "message.eml", embedded=True))
        elif ctype in ("message/delivery-status", "message/global-delivery-status"):
            report = _delivery_status_text(part, defects)
            if is_dsn and body.delivery_status is None:
                body.delivery_status = report
            else:  # outside a DSN it is just data: keep it
                body.attachments.append(_text_attachment(report, ctype, "delivery-status.txt"))
        elif part.is_multipart():
            stack.extend(reversed(children(part)))  # popped in message order
        else:
            filename = _filename(part, defects)
            # A single-part message is its own body even if its type names a file.
            named = bool(filename) and part is not msg
            inline = part.get_content_disposition() != "attachment" and not named
            # A multipart the parser could not split (no boundary) is shown as text.
            as_text = ctype == "text/plain" or ctype.startswith("multipart/")
            if inline and as_text and body.text is None:
                body.text = _part_text(part, defects)
            elif inline and ctype == "text/html" and body.html is None:
                body.html = _part_text(part, defects)
            else:
                name = display_filename(filename)
                body.attachments.append(_attachment(part, ctype, name, embedded=False))
    return body


def _part_text(part: Message, defects: list[str]) -> str:
    data = decoded_payload(part)
    if not isinstance(data, bytes):
        return ""
    text = decode_bytes(data, part.get_content_charset(None), defects, "body")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _delivery_status_text(part: Message, defects: list[str]) -> str:
    """message/delivery-status comes back from compat32 as one Message per field block."""
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload
    blocks = []
    for block in children(part):
        lines = [f"{name}: {raw_text(value, defects)}" for name, value in block.raw_items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _attachment(part: Message, ctype: str, filename: str, *, embedded: bool) -> Attachment:
    if embedded:
        data = _embedded_bytes(part)
    else:
        payload = decoded_payload(part)
        data = payload if isinstance(payload, bytes) else b""
    return Attachment(
        filename=filename,
        content_type=ctype,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
    )


def decoded_payload(part: Message) -> Any:
    """``part.get_payload(decode=True)``, for base64 with a third of its peak memory.

    compat32 removes the line breaks of a base64 payload by splitting it into a list of
    lines and joining them again: for a 25 MB attachment, half a million small objects
    and two more copies.  ``translate`` removes the same bytes (``bytes.splitlines``
    breaks at CR and LF only) in one pass, and the decoding below is the stdlib's
    ``_encoded_words.decode_b``: the same result and the same defects.  Anything but an
    ASCII base64 payload goes to the stdlib.
    """
    cte = str(part.get("content-transfer-encoding", "")).lower()
    if cte != "base64" or part.is_multipart():
        return part.get_payload(decode=True)
    try:
        # An ASCII payload comes back as stored; one with raw 8-bit bytes is decoded
        # with the declared charset, which may fail (a NUL in its name) and goes to
        # the stdlib below either way.
        payload = part.get_payload()
    except (ValueError, LookupError):
        payload = None
    if not isinstance(payload, str) or not payload.isascii():
        return part.get_payload(decode=True)
    encoded = payload.encode("ascii").translate(None, b"\r\n")
    value, found = _decode_b(encoded)
    for defect in found:
        part.policy.handle_defect(part, defect)
    return value


def _decode_b(encoded: bytes) -> tuple[bytes, list[MessageDefect]]:
    # As email._encoded_words.decode_b (Python 3.11), which has no public name.
    pad_err = len(encoded) % 4
    try:
        padding = b"==="[: 4 - pad_err] if pad_err else b""
        found: list[MessageDefect] = [InvalidBase64PaddingDefect()] if pad_err else []
        return base64.b64decode(encoded + padding, validate=True), found
    except binascii.Error:
        pass
    try:
        return base64.b64decode(encoded, validate=False), [InvalidBase64CharactersDefect()]
    except binascii.Error:
        pass
    try:
        return base64.b64decode(encoded + b"==", validate=False), [
            InvalidBase64CharactersDefect(),
            InvalidBase64PaddingDefect(),
        ]
    except binascii.Error:
        return encoded, [InvalidBase64LengthDefect()]


def _text_attachment(text: str, ctype: str, filename: str) -> Attachment:
    data = text.encode("utf-8", "surrogateescape")
    digest = hashlib.sha256(data).hexdigest()
    return Attachment(filename, ctype, len(data), digest, data)


def _embedded_bytes(part: Message) -> bytes:
    inner = children(part)
    if not inner:
        return b""
    try:
        return inner[0].as_bytes()
    except (MessageError, UnicodeError, LookupError, ValueError, TypeError):
        # The generator refuses some headers it parsed (U+001C-1E, which splitlines()
        # breaks at, look like an embedded header): write the parts back as parsed.
        return _flatten(inner[0])


def _flatten(msg: Message) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in msg.raw_items())
    payload = msg.get_payload()
    if isinstance(payload, list):
        parts = [_flatten(child) for child in payload if isinstance(child, Message)]
        boundary = msg.get_boundary()
        if boundary is None:
            body = b"\r\n".join(parts)
        else:
            marker = f"--{boundary}\r\n".encode("utf-8", "surrogateescape")
            end = f"--{boundary}--\r\n".encode("utf-8", "surrogateescape")
            body = b"".join(marker + child + b"\r\n" for child in parts) + end
    else:
        body = str(payload).encode("utf-8", "surrogateescape")
    return head.encode("utf-8", "surrogateescape") + b"\r\n" + body


def _filename(part: Message, defects: list[str]) -> str:
    try:
        name = part.get_filename()  # RFC 2231 continuations and charsets
    except (LookupError, UnicodeError, ValueError):
        defects.append("attachment:bad-filename")
        return ""
    return header_text(name, defects) if name else ""


_UNSAFE_FILENAME_CHARS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


def display_filename(name: str) -> str:
    """A file name safe to *show*: no path, no controls or bidi overrides, ≤200 chars.

    It is never used as a path; attachments are stored by content hash.
    """
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_FILENAME_CHARS.sub("", name).strip(" .")
    if len(name) > _MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = f"{stem[: _MAX_FILENAME - len(ext) - 1]}.{ext}"
        else:
            name = name[:_MAX_FILENAME]
    return name or "attachment"


# --------------------------------------------------------------------------- HTML


# How deep HTML elements may nest before the sanitizer is not run at all.  nh3's tree
# builder costs time quadratic in the depth (30 000 unclosed <div>s: 1.8 s of CPU that
# no signal can interrupt, 60 000: 7 s); real mail stays far below 100.
MAX_HTML_DEPTH = 1_000
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)[^<>]*?(/?)>")
# Elements that never hold others (void) or that the parser closes by itself when the
# next one opens: neither makes the tree deeper however many of them there are.
_FLAT = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "p",
        "li",
        "dt",
        "dd",
        "tr",
        "td",
        "th",
        "option",
    ]
)


def html_depth_exceeds(html: str, limit: int = MAX_HTML_DEPTH) -> bool:
    """Whether the elements of ``html`` nest deeper than ``limit`` (a linear scan that
    counts open and close tags, stopping as soon as the limit is passed)."""
    depth = 0
    for match in _TAG.finditer(html):
        closing, name, self_closing = match.groups()
        if self_closing or name.lower() in _FLAT:
            continue
        if closing:
            depth = max(depth - 1, 0)
        else:
            depth += 1
            if depth > limit:
                return True
    return False


def sanitize_html(html: str, defects: list[str]) -> str | None:
    """The HTML body made safe to show (nh3), or None, with a defect, when it nests
    too deeply to be worth the sanitizer's time; the text comes from ``html_to_text``."""
    if html_depth_exceeds(html):
        defects.append("html:too-deep")
        return None
    return nh3.clean(html)


def html_to_text(html: str) -> str:
    """Layout-aware text of an HTML-only body (inscriptis), blank-line runs collapsed."""
    try:
        text = inscriptis.get_text(html)
    except (RecursionError, ValueError):
        text = re.sub(r"<[^<>]*>", " ", html)
    lines = [line.rstrip() for line in str(text).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")
