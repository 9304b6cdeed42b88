"""Raw bytes → ``ParsedMessage``: the first step of ``pipeline.process``.

Pure: no I/O, no database, no clock.  Everything the later stages need (identity,
threading ids, text for the article, attachments, classification headers) is decoded
here once, and hostile input is refused here with a ``PermanentError`` reason code so
the pipeline can quarantine it.  This module runs the steps in order; each lives in its
own module:

* ``limits``: the caps, and cheap checks on the raw bytes *before* any parser sees them
  (header section size, MIME nesting and part count from a boundary scan);
* ``headers`` and ``charsets``: raw header values and bytes of any declared charset →
  text, msg-ids, dates;
* ``addresses``: the strict From parser (the only identity) and best-effort To/Cc;
* ``mime``: the tree → body text, HTML, delivery status and attachments;
* ``quotes``: what the author wrote, without quoted replies and signature;
* ``language``: a cheap guess of the customer's language.

Parser choice.  ``mailparser.parse_from_bytes`` (mail-parser, over the stdlib ``email``
package in its compat32 mode) builds the MIME tree once; we keep its stdlib and
mail-parser defect categories and then read everything else from the tree it exposes as
``.message`` rather than from its dictionaries, because for this product mail-parser is
weak in these places:

* identity: on Python < 3.11.10 it falls back to ``email.utils.getaddresses`` without
  ``strict`` (CVE-2023-27043), so From is parsed by ``addresses.from_identity``;
* bodies: it descends into embedded ``message/rfc822`` parts and mixes the forwarded or
  returned message's text into the body; ``mime.walk`` stops at them and attaches them
  as ``message.eml``;
* attachments: unnamed parts get random file names (not pure) and payloads come back
  re-encoded as base64 text; we take the decoded bytes straight from the part;
* charsets: its fallback for an undeclared or unknown charset is UTF-8 with
  replacement; ours (``charsets.decode_bytes``) is UTF-8, then cp1252, then latin-1,
  always with a defect;
* robustness: its extra analysis raises on some hostile headers, so when it fails we
  rebuild the same compat32 tree with ``email.message_from_bytes`` (``_parse_tree``).
"""

from __future__ import annotations

from email.feedparser import BytesFeedParser
from email.message import Message

import mailparser
from mailparser.exceptions import MailParserRecursionError

from mailgate.errors import PermanentError
from mailgate.parse.addresses import address_list, from_identity
from mailgate.parse.bounds import (
    DEFAULT_LIMITS,
    ParseLimits,
    check_header_section,
    check_is_mail,
    check_mime_shape,
)
from mailgate.parse.headers import header_date, header_text, msg_ids, single_line
from mailgate.parse.language import detect_language
from mailgate.parse.markup import html_to_text, sanitize_html, strip_html_quotes
from mailgate.parse.message import ParsedMessage
from mailgate.parse.mime import children, declared_charsets, walk
from mailgate.parse.quotes import strip_quotes

_MAX_HEADERS = 200  # headers kept in ParsedMessage.headers
_MAX_REFERENCES = 100
_LANGUAGE_SAMPLE = 2000  # characters of subject + text fed to the language heuristic


def parse(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedMessage:
    """Decode one message; raise ``PermanentError`` for input we refuse to handle."""
    check_is_mail(raw)
    check_header_section(raw, limits)
    check_mime_shape(raw, limits)
    try:
        msg, library_defects = _parse_tree(raw)
        return _build(msg, library_defects, limits)
    except PermanentError:
        raise
    except RecursionError as exc:
        raise PermanentError("mime-too-deep", "parser recursion limit") from exc
    except Exception as exc:  # the boundary: never let a raw exception escape
        raise PermanentError("unparseable", f"{type(exc).__name__}: {exc}") from exc


def _parse_tree(raw: bytes) -> tuple[Message, list[str]]:
    """The compat32 MIME tree and the defect categories found while building it.

    mail-parser's own analysis crashes on some hostile inputs (a broken base64
    encoded-word in an address header raises HeaderParseError; a NUL in a charset
    name raises ValueError).  Its tree is exactly ``email.message_from_bytes``, so we
    rebuild that and lose only mail-parser's extra defect categories.
    """
    msg = message_from_bytes(raw)
    try:
        parsed = mailparser.MailParser(msg)
    except (MailParserRecursionError, RecursionError) as exc:
        raise PermanentError("mime-too-deep", "parser recursion limit") from exc
    except Exception as exc:  # noqa: BLE001 - a mail-parser bug must not cost the message
        msg = message_from_bytes(raw)  # mail-parser may have changed the tree it was given
        return msg, [f"mailparser:{type(exc).__name__}", *_stdlib_defects(msg)]
    return parsed.message, sorted(parsed.defects_categories)


_FEED_CHUNK = 1 << 20


def message_from_bytes(raw: bytes) -> Message:
    """``email.message_from_bytes`` without its peak memory.

    The stdlib decodes the whole message into one str and wraps it in a StringIO (four
    bytes a character): about nine times the message at peak, 300 MB for a 34 MB
    mail.  Fed in 1 MB chunks, the same parser builds the same tree (the ASCII
    surrogateescape decoding is byte by byte, and the feed parser joins lines across
    chunks) for the lines of the largest part plus its joined payload.
    """
    parser = BytesFeedParser()
    view = memoryview(raw)
    for start in range(0, len(raw), _FEED_CHUNK):
        parser.feed(view[start : start + _FEED_CHUNK].tobytes())
    return parser.close()


def _stdlib_defects(msg: Message) -> list[str]:
    names: set[str] = set()
    stack = [msg]
    while stack:
        part = stack.pop()
        names.update(type(defect).__name__ for defect in part.defects)
        stack.extend(children(part))
    return sorted(names)


def _build(msg: Message, library_defects: list[str], limits: ParseLimits) -> ParsedMessage:
    defects: list[str] = []
    raw_headers = list(msg.raw_items())

    hints = declared_charsets(msg)
    headers: list[tuple[str, str]] = []
    first: dict[str, str] = {}  # first raw value per lower-cased name
    counts: dict[str, int] = {}
    froms: list[str] = []
    for index, (name, value) in enumerate(raw_headers):
        key = name.lower().strip()
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, value)
        if key == "from":
            froms.append(value)
        if index < _MAX_HEADERS:
            headers.append((key, single_line(header_text(value, defects, hints))))
    if len(raw_headers) > _MAX_HEADERS:
        defects.append("headers:truncated")

    from_ = from_identity(froms, defects, hints)
    subject = single_line(header_text(first.get("subject", ""), defects, hints))
    to = address_list(first.get("to"), "to", limits, defects, hints)
    cc = address_list(first.get("cc"), "cc", limits, defects, hints)
    reply_to = address_list(first.get("reply-to"), "reply-to", limits, defects, hints)

    message_ids = msg_ids(first.get("message-id"))
    message_id = message_ids[0] if message_ids else None
    if message_id is None:
        defects.append("message-id:missing")
    elif counts.get("message-id", 0) > 1:
        defects.append("message-id:multiple")
    in_reply_to = tuple(msg_ids(first.get("in-reply-to")))
    references = _cap_references(msg_ids(first.get("references")))
    date = header_date(first.get("date"), defects)

    body = walk(msg, limits, defects, hints)
    body_text = body.text
    if body_text is None:
        body_text = html_to_text(body.html) if body.html is not None else ""
    html = sanitize_html(body.html, defects) if body.html is not None else None
    text = _visible_text(body_text, body.html if body.from_html else None)
    language = detect_language(f"{subject}\n{text}"[:_LANGUAGE_SAMPLE])

    # NUL has no place in text (PostgreSQL refuses it in a text column, terminals and
    # C tools stop at it): it stands for an undecodable character like any other.
    if "\x00" in f"{subject}{text}{body_text}{html or ''}":
        defects.append("text:nul")
        subject, text, body_text = (_no_nul(s) for s in (subject, text, body_text))
        html = _no_nul(html) if html is not None else None
    return ParsedMessage(
        message_id=message_id,
        from_=from_,
        reply_to=reply_to,
        to=to,
        cc=cc,
        subject=subject,
        date=date,
        in_reply_to=in_reply_to,
        references=references,
        text=text,
        body_text=body_text,
        html=html,
        attachments=tuple(body.attachments),
        language=language,
        defects=tuple(dict.fromkeys([*defects, *library_defects])),
        headers=tuple(headers),
        content_type=msg.get_content_type(),
        delivery_status=body.delivery_status,
    )


def _no_nul(value: str) -> str:
    return value.replace("\x00", "\ufffd")


def _visible_text(body_text: str, html: str | None) -> str:
    """What the author wrote: from the HTML without its quote containers when the body
    is the HTML's text, else (or when that leaves nothing) from the plain text."""
    if html is not None:
        text = strip_quotes(html_to_text(strip_html_quotes(html))).strip()
        if not text:  # answers between the quotes, all inside the quote container
            text = strip_quotes(html_to_text(strip_html_quotes(html, inner=True))).strip()
        if text:
            return text
    return strip_quotes(body_text)


def _cap_references(ids: list[str]) -> tuple[str, ...]:
    # Keep the root and the most recent parents: what threading needs.
    if len(ids) > _MAX_REFERENCES:
        ids = [ids[0], *ids[-(_MAX_REFERENCES - 1) :]]
    return tuple(ids)
