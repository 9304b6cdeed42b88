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

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from email.errors import MessageError
from email.message import Message
from email.utils import collapse_rfc2231_value

from mailgate.errors import PermanentError
from mailgate.parse.armor import unwrap_clearsigned
from mailgate.parse.bounds import ParseLimits
from mailgate.parse.charsets import decode_bytes
from mailgate.parse.enriched import enriched_to_text, richtext_to_text
from mailgate.parse.flowed import unflow
from mailgate.parse.headers import header_text, raw_text
from mailgate.parse.markup import MAX_HTML_DEPTH, html_depth_exceeds, html_to_text, sanitize_html
from mailgate.parse.message import Attachment
from mailgate.parse.payload import decoded_payload
from mailgate.parse.uuencode import split_uuencoded

# Re-exported: these lived here before the HTML helpers got their own module.
__all__ = [
    "MAX_HTML_DEPTH",
    "Body",
    "children",
    "declared_charsets",
    "decoded_payload",
    "display_filename",
    "html_depth_exceeds",
    "html_to_text",
    "sanitize_html",
    "walk",
]

_MAX_FILENAME = 200
# Older clients' formatted text: body text like text/plain once its commands are gone.
# The names clients give these parts when a sender left them unnamed.  Outlook's TNEF
# (winmail.dat) is kept whole: no well-kept library unpacks it (tnefparse's last
# release is from January 2021), so the operator gets the file as Outlook sent it.
_DEFAULT_NAMES = {"application/ms-tnef": "winmail.dat", "text/calendar": "invite.ics"}
_FORMATTED_TEXT = {"text/enriched": enriched_to_text, "text/richtext": richtext_to_text}


@dataclass(slots=True)
class Body:
    """What ``walk`` picked: the body text and HTML (None when absent) and every other leaf.

    ``text`` is every inline text part in order (an empty text/plain beside HTML does
    not count); ``from_html`` says it is the HTML's text because the mail had no plain
    text, so the reply can be cut from the HTML's quote containers instead.
    """

    text: str | None = None
    html: str | None = None
    delivery_status: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    from_html: bool = False


@dataclass(slots=True)
class _Segment:
    """One inline text part: "plain", "formatted" (text/enriched) or "html", inside
    which multipart/alternative."""

    kind: str
    group: int | None
    text: str


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


_MAX_HINTS = 4


def declared_charsets(msg: Message) -> tuple[str, ...]:
    """The charsets the message's text parts declare, in order (hints for guesses:
    raw 8-bit headers and unlabelled parts are nearly always in the same charset)."""
    found: list[str] = []
    stack = [msg]
    seen = 0
    while stack and seen < 100:
        part = stack.pop()
        seen += 1
        nested = children(part)
        if nested:
            stack.extend(reversed(nested))
            continue
        try:
            charset = part.get_content_charset(None)
        except (LookupError, ValueError, UnicodeError):
            charset = None
        if charset and charset not in ("us-ascii", "ascii", "utf-8") and charset not in found:
            found.append(charset)
            if len(found) >= _MAX_HINTS:
                break
    return tuple(found)


def walk(
    msg: Message, limits: ParseLimits, defects: list[str], hints: tuple[str, ...] = ()
) -> Body:
    """Pick body parts and attachments from the tree, iteratively (no recursion).

    Every inline text/plain part is body text, in message order (Apple Mail and phones
    put text, an inline image and more text side by side); of a multipart/alternative
    the plain text counts unless it is empty, then the HTML.  The first inline
    text/html is the HTML; every other leaf is an attachment (inline images included),
    so nothing is lost.  Embedded messages are attached whole, named by their declared
    file name or their Subject, and never searched for text or attachments.
    """
    check_tree(msg, limits)
    body = Body()
    segments: list[_Segment] = []
    is_dsn = msg.get_content_type() == "multipart/report" and collapse_rfc2231_value(
        msg.get_param("report-type", "delivery-status")
    ).lower() in ("delivery-status", "global-delivery-status")
    stack: list[tuple[Message, int | None]] = [(msg, None)]
    while stack:
        part, group = stack.pop()
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            name = _embedded_name(part, defects, hints)
            body.attachments.append(_attachment(part, ctype, name, embedded=True))
        elif ctype in ("message/delivery-status", "message/global-delivery-status"):
            report = _delivery_status_text(part, defects)
            if is_dsn and body.delivery_status is None:
                body.delivery_status = report
            else:  # outside a DSN it is just data: keep it
                body.attachments.append(_text_attachment(report, ctype, "delivery-status.txt"))
        elif part.is_multipart():
            inner = id(part) if ctype == "multipart/alternative" else group
            stack.extend((child, inner) for child in reversed(children(part)))
        else:
            _leaf(part, part is msg, group, body, segments, defects, hints)
    body.text, body.from_html = _compose(segments)
    return body


def _leaf(
    part: Message,
    top: bool,
    group: int | None,
    body: Body,
    segments: list[_Segment],
    defects: list[str],
    hints: tuple[str, ...],
) -> None:
    ctype = part.get_content_type()
    filename = _filename(part, defects, hints)
    # A single-part message is its own body even if its type names a file.
    named = bool(filename) and not top
    inline = part.get_content_disposition() != "attachment" and not named
    # A multipart the parser could not split (no boundary) is shown as text.
    as_text = ctype == "text/plain" or ctype.startswith("multipart/")
    if inline and ctype in _FORMATTED_TEXT:
        text = _FORMATTED_TEXT[ctype](_part_text(part, defects, hints))
        segments.append(_Segment("formatted", group, text))
    elif inline and as_text:
        text, encoded = split_uuencoded(unwrap_clearsigned(_part_text(part, defects, hints)))
        for name, data in encoded:
            body.attachments.append(_bytes_attachment(data, display_filename(name)))
        segments.append(_Segment("plain", group, text))
    elif inline and ctype == "text/html":
        html = _part_text(part, defects, hints)
        if body.html is None:
            body.html = html
        segments.append(_Segment("html", group, html))
    else:
        name = display_filename(filename or _DEFAULT_NAMES.get(ctype, ""))
        body.attachments.append(_attachment(part, ctype, name, embedded=False))


def _compose(segments: list[_Segment]) -> tuple[str | None, bool]:
    """The body text from the inline text parts, and whether it is the HTML's text."""
    if not segments:
        return None, False
    plain_anywhere = any(s.kind != "html" and s.text.strip() for s in segments)
    chosen: list[str] = []
    done: set[int] = set()
    from_html = False
    for segment in segments:
        if segment.group is None:
            if segment.kind != "html":
                chosen.append(segment.text)
            elif not plain_anywhere:
                chosen.append(html_to_text(segment.text))
                from_html = True
            continue
        if segment.group in done:
            continue
        done.add(segment.group)
        members = [s for s in segments if s.group == segment.group]
        plain = [s.text for s in members if s.kind == "plain"]
        formatted = [s.text for s in members if s.kind == "formatted"]
        has_html = any(s.kind == "html" for s in members)
        if any(text.strip() for text in plain) and not (has_html and _placeholder(plain)):
            chosen.extend(plain)
        elif any(text.strip() for text in formatted):
            chosen.extend(formatted)
        else:
            chosen.extend(html_to_text(s.text) for s in members if s.kind == "html")
            from_html = True
    texts = [text.strip("\n") for text in chosen if text.strip()]
    if not texts:
        # Only empty parts: an empty body, as a single empty part has always been.
        return ("" if any(s.kind == "plain" for s in segments) else None), False
    return "\n\n".join(texts), from_html and len(texts) == 1


# "This is an HTML message; please use an HTML capable mail client": a plain text
# alternative that only points at the HTML one (CRMs, newsletters, some web forms).
_PLACEHOLDER = re.compile(
    r"\bHTML\b.{0,80}\b(?:client|viewer|reader|program|browser|capable|compatible|format)",
    re.IGNORECASE | re.DOTALL,
)


def _placeholder(plain: list[str]) -> bool:
    text = "".join(plain).strip()
    return len(text) < 200 and _PLACEHOLDER.search(text) is not None


def _part_text(part: Message, defects: list[str], hints: tuple[str, ...] = ()) -> str:
    data = decoded_payload(part)
    if not isinstance(data, bytes):
        return ""
    text = decode_bytes(data, part.get_content_charset(None), defects, "body", hints)
    # A byte order mark (Windows editors, some webmails) is no part of the text.
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if part.get_content_type() == "text/plain" and _param(part, "format") == "flowed":
        text = unflow(text, delsp=_param(part, "delsp") == "yes")
    return text


def _param(part: Message, name: str) -> str:
    value = part.get_param(name)
    return collapse_rfc2231_value(value).strip().lower() if value else ""


def _delivery_status_text(part: Message, defects: list[str]) -> str:
    """message/delivery-status comes back from compat32 as one Message per field block."""
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload
    blocks = []
    for block in children(part):
        lines = [f"{name}: {raw_text(value, defects)}" for name, value in block.raw_items()]
        blocks.append("\n".join(lines))
        rest = block.get_payload(decode=True) if not block.is_multipart() else None
        if isinstance(rest, bytes) and rest.strip():
            # message/global-delivery-status is parsed as one message: the per-message
            # block as its header, the per-recipient blocks (UTF-8, RFC 6533) as its body.
            text = decode_bytes(rest, "utf-8", defects, "delivery-status")
            blocks.append(text.replace("\r\n", "\n").strip("\n"))
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


def _bytes_attachment(data: bytes, filename: str) -> Attachment:
    digest = hashlib.sha256(data).hexdigest()
    return Attachment(filename, "application/octet-stream", len(data), digest, data)


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


def _filename(part: Message, defects: list[str], hints: tuple[str, ...] = ()) -> str:
    """The sender's file name in any form: RFC 2231 (with or without a charset, or
    continuations), RFC 2047 encoded-words (invalid there, universal in practice) or
    raw 8-bit bytes in the message's charset."""
    raw = _raw_filename(part, hints)
    if raw is not None:
        return header_text(raw, defects, hints)
    try:
        name = part.get_filename()  # RFC 2231 continuations and charsets
    except (LookupError, UnicodeError, ValueError):
        defects.append("attachment:bad-filename")
        return ""
    text = header_text(name, defects, hints) if name else ""
    # filename='x.pdf': some clients quote with apostrophes, which MIME does not know.
    if len(text) > 2 and text[0] == text[-1] == "'" and "'" not in text[1:-1]:
        return text[1:-1]
    return text


_PARAM = re.compile(
    r"""(?:^|;)\s*(filename|name)(\*\d+)?(\*)?\s*=\s*("(?:[^"\\]|\\.){0,1000}"|[^;\s]{0,1000})""",
    re.IGNORECASE,
)


def _raw_filename(part: Message, hints: tuple[str, ...]) -> str | None:
    """The file name read from the raw header, where the stdlib gets it wrong: raw
    8-bit bytes (it replaces them with U+FFFD) and RFC 2231 values without a charset
    (it reads them as ASCII), and an RFC 2231 name beside a plain ASCII fallback (the
    extended one wins, RFC 2231 section 4).  None: leave it to the stdlib."""
    for header in ("content-disposition", "content-type"):
        value = next((str(v) for k, v in part.raw_items() if k.lower() == header), None)
        if value is None or (value.isascii() and "*=" not in value):
            continue
        want = "filename" if header == "content-disposition" else "name"
        extended: dict[int, tuple[bool, str]] = {}
        plain: dict[int, tuple[bool, str]] = {}
        for match in _PARAM.finditer(value.replace("\r\n", "").replace("\n", "")):
            if match.group(1).lower() != want:
                continue
            index = int(match.group(2)[1:]) if match.group(2) else 0
            text = match.group(4)
            if text.startswith('"'):
                text = re.sub(r"\\(.)", r"\1", text[1:-1])
            pieces = extended if match.group(2) or match.group(3) else plain
            pieces.setdefault(index, (bool(match.group(3)), text))
        pieces = extended or plain
        if pieces:
            return _join_rfc2231([pieces[i] for i in sorted(pieces)], hints)
    return None


def _join_rfc2231(pieces: list[tuple[bool, str]], hints: tuple[str, ...]) -> str:
    """Join RFC 2231 continuations; percent-encoded pieces are bytes in the charset the
    first piece names (guessed when it names none or an unknown one)."""
    charset = ""
    data = bytearray()
    for position, (encoded, text) in enumerate(pieces):
        if encoded and position == 0 and text.count("'") >= 2:
            charset, _, text = text.split("'", 2)
        raw = text.encode("utf-8", "surrogateescape")
        data += _percent_bytes(raw) if encoded else raw
    return decode_bytes(bytes(data), charset or None, [], "attachment", hints)


def _percent_bytes(raw: bytes) -> bytes:
    return re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)


def _embedded_name(part: Message, defects: list[str], hints: tuple[str, ...]) -> str:
    """A forwarded message's name: its declared file name, else its Subject + ".eml"."""
    declared = _filename(part, defects, hints)
    if declared:
        return display_filename(declared)
    inner = children(part)
    subject = inner[0].get("subject") if inner else None
    if subject:
        text = " ".join(header_text(str(subject), [], hints).split())[:150]
        if text:
            return display_filename(f"{text}.eml")
    return "message.eml"


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
