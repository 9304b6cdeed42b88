"""Raw bytes → ``ParsedMessage``: the first step of ``pipeline.process``.

Pure: no I/O, no database, no clock.  Everything the later stages need (identity,
threading ids, text for the article, attachments, classification headers) is decoded
here once, and hostile input is refused here with a ``PermanentError`` reason code so
the pipeline can quarantine it.

Parser choice.  ``mailparser.parse_from_bytes`` (mail-parser, over the stdlib ``email``
package in its compat32 mode) builds the MIME tree once; we keep its stdlib and
mail-parser defect categories and then read everything else from the tree it exposes as
``.message`` rather than from its dictionaries, because for this product mail-parser is
weak in these places:

* identity: on Python < 3.11.10 it falls back to ``email.utils.getaddresses`` without
  ``strict`` (CVE-2023-27043), so From is parsed here by a small strict parser;
* bodies: it descends into embedded ``message/rfc822`` parts and mixes the forwarded or
  returned message's text into the body; we stop at them and attach them as
  ``message.eml``;
* attachments: unnamed parts get random file names (not pure) and payloads come back
  re-encoded as base64 text; we take the decoded bytes straight from the part;
* charsets: its fallback for an undeclared or unknown charset is UTF-8 with
  replacement; ours is UTF-8, then cp1252, then latin-1, always with a defect;
* robustness: its extra analysis raises on some hostile headers, so when it fails we
  rebuild the same compat32 tree with ``email.message_from_bytes`` (``_parse_tree``).

Cheap checks run on the raw bytes *before* any parser sees them: the header section
size (the stdlib is quadratic on huge address headers) and the MIME nesting/part count
from a boundary scan (deep nesting costs O(lines x depth) and ends in RecursionError).
"""

from __future__ import annotations

import binascii
import codecs
import email
import hashlib
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.errors import MessageError
from email.message import Message
from email.utils import collapse_rfc2231_value, parsedate_to_datetime
from typing import Any

import inscriptis
import mailparser
import nh3
from mailparser.exceptions import MailParserRecursionError

from mailgate.errors import PermanentError
from mailgate.message import Address, Attachment, ParsedMessage


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Resource caps applied before and during parsing (THREATS.md, "Hostile input")."""

    max_header_bytes: int = 102400
    max_mime_depth: int = 20
    max_parts: int = 500
    max_addresses: int = 1000  # per address header


DEFAULT_LIMITS = ParseLimits()

_MAX_HEADERS = 200  # headers kept in ParsedMessage.headers
_MAX_REFERENCES = 100
_MAX_FILENAME = 200
_LANGUAGE_SAMPLE = 2000  # characters of subject + text fed to the language heuristic


def parse(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> ParsedMessage:
    """Decode one message; raise ``PermanentError`` for input we refuse to handle."""
    _check_header_section(raw, limits)
    _check_mime_shape(raw, limits)
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
    try:
        parsed = mailparser.parse_from_bytes(raw)
    except MailParserRecursionError as exc:
        raise PermanentError("mime-too-deep", "parser recursion limit") from exc
    except Exception as exc:  # noqa: BLE001 - a mail-parser bug must not cost the message
        msg = email.message_from_bytes(raw)
        return msg, [f"mailparser:{type(exc).__name__}", *_stdlib_defects(msg)]
    return parsed.message, sorted(parsed.defects_categories)


def _stdlib_defects(msg: Message) -> list[str]:
    names: set[str] = set()
    stack = [msg]
    while stack:
        part = stack.pop()
        names.update(type(defect).__name__ for defect in part.defects)
        stack.extend(_children(part))
    return sorted(names)


# --------------------------------------------------------------------------- raw checks

_HEADER_END = re.compile(rb"\r?\n\r?\n")


def _check_header_section(raw: bytes, limits: ParseLimits) -> None:
    if raw.startswith((b"\n", b"\r\n")):
        return  # no header section at all
    # Search only as far as the limit: a 50 MB header-only message costs nothing.
    end = _HEADER_END.search(raw, 0, limits.max_header_bytes + 4)
    size = end.start() if end else len(raw)
    if size > limits.max_header_bytes:
        raise PermanentError(
            "header-too-large", f"header section exceeds {limits.max_header_bytes} bytes"
        )


_BOUNDARY_PARAM = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))', re.I)
_DELIMITER_LINE = re.compile(rb"^--([^\r\n]{1,204})", re.M)


def _check_mime_shape(raw: bytes, limits: ParseLimits) -> None:
    """Estimate nesting depth and part count from delimiter lines, in C-speed scans.

    A delimiter of a boundary not yet open starts a nested container; a delimiter of an
    open one closes everything opened inside it (RFC 2046 5.1.1).  This can only
    undercount (e.g. boundaries containing spaces); ``_walk`` checks the real tree.
    """
    boundaries = {m.group(1) or m.group(2) for m in _BOUNDARY_PARAM.finditer(raw)}
    if not boundaries:
        return
    stack: list[bytes] = []
    parts = 0
    for match in _DELIMITER_LINE.finditer(raw):
        token = match.group(1).rstrip(b" \t")
        if token.endswith(b"--") and token[:-2] in stack:
            del stack[stack.index(token[:-2]) :]
            continue
        if token not in boundaries:
            continue
        if token in stack:
            del stack[stack.index(token) + 1 :]
        else:
            stack.append(token)
            if len(stack) > limits.max_mime_depth:
                raise PermanentError("mime-too-deep", f"more than {limits.max_mime_depth} levels")
        parts += 1
        if parts > limits.max_parts:
            raise PermanentError("too-many-parts", f"more than {limits.max_parts} parts")


# --------------------------------------------------------------------------- assembly


def _build(msg: Message, library_defects: list[str], limits: ParseLimits) -> ParsedMessage:
    defects: list[str] = []
    raw_headers = list(msg.raw_items())

    headers: list[tuple[str, str]] = []
    first: dict[str, str] = {}  # first raw value per lower-cased name
    counts: dict[str, int] = {}
    for index, (name, value) in enumerate(raw_headers):
        key = name.lower().strip()
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, value)
        if index < _MAX_HEADERS:
            headers.append((key, _single_line(header_text(value, defects))))
    if len(raw_headers) > _MAX_HEADERS:
        defects.append("headers:truncated")

    from_ = _identity(first.get("from"), counts.get("from", 0), defects)
    subject = _single_line(header_text(first.get("subject", ""), defects))
    to = _address_list(first.get("to"), "to", limits, defects)
    cc = _address_list(first.get("cc"), "cc", limits, defects)
    reply_to = _address_list(first.get("reply-to"), "reply-to", limits, defects)

    message_ids = _msg_ids(first.get("message-id"))
    message_id = message_ids[0] if message_ids else None
    if message_id is None:
        defects.append("message-id:missing")
    elif counts.get("message-id", 0) > 1:
        defects.append("message-id:multiple")
    in_reply_to = tuple(_msg_ids(first.get("in-reply-to")))
    references = _cap_references(_msg_ids(first.get("references")))
    date = _date(first.get("date"), defects)

    body = _walk(msg, limits, defects)
    body_text = body.text
    if body_text is None:
        body_text = html_to_text(body.html) if body.html is not None else ""
    html = nh3.clean(body.html) if body.html is not None else None
    text = strip_quotes(body_text)
    language = detect_language(f"{subject}\n{text}"[:_LANGUAGE_SAMPLE])

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


# --------------------------------------------------------------------------- charsets

# Names seen in the wild that Python does not know, or knows as a narrower charset.
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "x-mac-roman": "mac-roman",
    "unicode-1-1-utf-7": "utf-7",
}
# Text codecs that would reinterpret sender bytes as escapes or always raise.
_REFUSED_CODECS = {"undefined", "unicode-escape", "raw-unicode-escape", "idna", "punycode"}


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    name = charset.strip().strip('"').lower()
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # bytes-to-bytes codecs (base64, zlib …) are not charsets.
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None
    return info.name


def _guess_decode(data: bytes) -> tuple[str, bool]:
    """Decode bytes of unknown charset: UTF-8, then cp1252, then latin-1 (total)."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), True
    except UnicodeDecodeError:
        return data.decode("latin-1"), True


def decode_bytes(data: bytes, charset: str | None, defects: list[str], where: str) -> str:
    """Decode ``data`` declared as ``charset``; record a defect whenever we had to guess."""
    if data.isascii():
        return data.decode("ascii")
    codec = _codec(charset)
    if codec is None or codec == "ascii":
        # Undeclared (or declared us-ascii, the MIME default) yet 8-bit, or unknown name.
        known = codec is not None or not charset
        defects.append(f"{where}:undeclared-8bit" if known else f"{where}:unknown-charset")
        return _guess_decode(data)[0]
    try:
        return _scalars(data.decode(codec))
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("utf-8")  # mislabelled UTF-8 is the most common lie
    except UnicodeDecodeError:
        text = _scalars(data.decode(codec, errors="replace"))
    defects.append(f"{where}:charset-mismatch")
    return text


def _scalars(text: str) -> str:
    """Some codecs (utf-7 …) can yield lone surrogates, which no UTF-8 sink accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


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


def decode_rfc2047(value: str, defects: list[str]) -> str:
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
            out.append(decode_bytes(bytes(pending), pending_charset, defects, "header"))
            pending.clear()
            pending_charset = None

    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        position = match.end()
        if between and not (after_word and between.isspace()):
            flush()
            out.append(between)
        charset = match.group(1).split("*", 1)[0].lower()  # drop RFC 2231 language
        data = _encoded_word_bytes(match.group(2), match.group(3))
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


def _raw_text(value: Any, defects: list[str]) -> str:
    """A compat32 raw header value (8-bit bytes as surrogates) → text, unfolded."""
    if not isinstance(value, str):
        value = str(value)
    data = value.encode("utf-8", "surrogateescape")
    if data.isascii():
        text = value
    else:
        # RFC 6532 allows UTF-8 in headers; anything else is undeclared 8-bit junk.
        text, guessed = _guess_decode(data)
        if guessed:
            defects.append("header:undeclared-8bit")
    return _FOLD.sub("", text)


def header_text(value: Any, defects: list[str]) -> str:
    """Decoded, unfolded text of one raw header value."""
    return decode_rfc2047(_raw_text(value, defects), defects)


def _single_line(text: str) -> str:
    """CR, LF, tabs and other controls become single spaces; ends stripped."""
    return " ".join(_CONTROLS.sub(" ", text).split())


# --------------------------------------------------------------------------- addresses

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED_LOCAL = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'
_LABEL_CHAR = r"[A-Za-z0-9\u0080-\U0010ffff]"
_LABEL = rf"{_LABEL_CHAR}(?:(?:{_LABEL_CHAR}|-)*{_LABEL_CHAR})?"
_ADDR_SPEC = re.compile(rf"({_DOT_ATOM}|{_QUOTED_LOCAL})@({_LABEL}(?:\.{_LABEL})*)")
# A display-name word: atext plus "." (obs-phrase, "Jan K. Kowalski"); never "@".
_PHRASE_ATOM = re.compile(rf"(?:{_ATEXT}|\.)+")
# Bounded and "@"-free on both sides: linear even on a 100 KB junk header.
_SALVAGE = re.compile(r"[^\s<>()\[\],;:\"@]{1,64}@[^\s<>()\[\],;:\"@]{1,253}")


def _addr_spec(text: str) -> str | None:
    """``local@domain`` with the domain lower-cased, or None if not a plain addr-spec."""
    if len(text) > 254:
        return None
    match = _ADDR_SPEC.fullmatch(text)
    if match is None:
        return None
    return f"{match.group(1)}@{match.group(2).lower()}"


def _strip_comments(text: str) -> str | None:
    """Remove simple ``(comments)`` outside quoted strings; None if any is not simple."""
    if "(" not in text and ")" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == '"':
            end = _quoted_end(text, i)
            if end < 0:
                return None
            out.append(text[i : end + 1])
            i = end + 1
        elif char == "(":
            end = text.find(")", i + 1)
            # Nested or escaped comments are where parsers disagree: refuse them.
            if end < 0 or "(" in text[i + 1 : end] or "\\" in text[i + 1 : end]:
                return None
            out.append(" ")
            i = end + 1
        elif char == ")":
            return None
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _quoted_end(text: str, start: int) -> int:
    """Index of the quote closing the quoted-string opened at ``start``, or -1."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i
        else:
            i += 1
    return -1


def _mailbox(text: str) -> Address | str:
    """Strictly parse one mailbox; return an Address or a defect suffix.

    Accepted: ``a@d``, ``<a@d>``, ``Name <a@d>``, ``"Quoted, Name" <a@d>``, RFC 2047
    display names, simple comments.  Refused: anything else, in particular an ``@``
    in an unquoted display name (``victim@a.example<attacker@b.example>``), route
    (``<@r:a@d>``) and group (``g: a@d;``) syntax, domain literals, two angle-addrs.
    """
    cleaned = _strip_comments(text)
    if cleaned is None:
        return "malformed"
    words: list[str] = []  # display-name words, quoted strings already unquoted
    atoms: list[str] = []  # the unquoted ones, which must be plain atext
    angle: str | None = None
    i = 0
    while i < len(cleaned):
        char = cleaned[i]
        if char in " \t":
            i += 1
        elif char in ",;":
            return "multiple-addresses" if cleaned[i + 1 :].strip() else "malformed"
        elif char in ":>" or angle is not None:
            return "malformed"  # group syntax, stray ">", or text after the angle-addr
        elif char == '"':
            end = _quoted_end(cleaned, i)
            if end < 0:
                return "malformed"
            words.append(re.sub(r"\\(.)", r"\1", cleaned[i + 1 : end]))
            i = end + 1
        elif char == "<":
            end = cleaned.find(">", i + 1)
            if end < 0:
                return "malformed"
            angle = cleaned[i + 1 : end].strip()
            i = end + 1
        else:
            end = i
            while end < len(cleaned) and cleaned[end] not in ' \t"<>,;:':
                end += 1
            words.append(cleaned[i:end])
            atoms.append(cleaned[i:end])
            i = end
    if angle is None:
        # Without angle brackets the whole value must be one addr-spec.
        address = _addr_spec(cleaned.strip())
        return Address("", address) if address else "malformed"
    address = _addr_spec(angle)
    if address is None or not all(_PHRASE_ATOM.fullmatch(atom) for atom in atoms):
        return "malformed"
    return Address(_single_line(decode_rfc2047(" ".join(words), [])), address)


def _identity(raw: str | None, count: int, defects: list[str]) -> Address | None:
    """The RFC 5322 From, strictly: the only identity source (THREATS.md, "Identity")."""
    if count == 0:
        defects.append("from:missing")
        return None
    if count > 1:
        defects.append("from:multiple-headers")
        return None
    data = str(raw).encode("utf-8", "surrogateescape")
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        defects.append("from:malformed")  # 8-bit junk in the identity header
        return None
    value = _FOLD.sub("", value)
    if not value.strip():
        defects.append("from:missing")
        return None
    if any(ch in value for ch in "\r\n\x00"):
        defects.append("from:malformed")
        return None
    result = _mailbox(value)
    if isinstance(result, str):
        defects.append(f"from:{result}")
        return None
    if "@" in result.name or "<" in result.name:
        # Unambiguous per RFC 5322 (the address is the angle-addr), but the display
        # name impersonates an address: keep it, flag it, show the address in the UI.
        defects.append("from:name-looks-like-address")
    return result


def _split_addresses(value: str) -> Iterator[str]:
    """Split an address header at top-level ``,``, ``;`` and group ``:``, linearly."""
    if not any(ch in value for ch in '"(<'):
        yield from re.split(r"[,;:]", value)
        return
    start = 0
    depth = 0  # comment nesting
    i = 0
    while i < len(value):
        char = value[i]
        if char == "\\":
            i += 2
            continue
        if char == '"' and depth == 0:
            end = _quoted_end(value, i)
            i = len(value) if end < 0 else end + 1
            continue
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif char == "<" and depth == 0:
            end = value.find(">", i)
            i = len(value) if end < 0 else end + 1
            continue
        elif char in ",;:" and depth == 0:
            yield value[start:i]
            start = i + 1
        i += 1
    yield value[start:]


def _address_list(
    raw: str | None, header: str, limits: ParseLimits, defects: list[str]
) -> tuple[Address, ...]:
    """Best-effort addresses of To/Cc/Reply-To: these are never identities."""
    if raw is None:
        return ()
    value = _raw_text(raw, defects)
    found: list[Address] = []
    skipped = False
    for piece in _split_addresses(value):
        if not piece.strip():
            continue
        result = _mailbox(piece)
        if isinstance(result, str):
            salvaged = _SALVAGE.search(piece)
            address = _addr_spec(salvaged.group(0)) if salvaged else None
            if address is None:
                skipped = True  # also the display name of a group
                continue
            result = Address("", address)
        found.append(result)
        if len(found) > limits.max_addresses:
            raise PermanentError(
                "too-many-addresses", f"{header}: more than {limits.max_addresses}"
            )
    if skipped and not found:
        defects.append(f"{header}:unparseable")
    return tuple(found)


# --------------------------------------------------------------------------- ids, date

_MSG_ID = re.compile(r"<([^<>\s]{1,250})>")


def _msg_ids(raw: str | None) -> list[str]:
    """msg-ids without brackets; junk between them is skipped (RFC 5322 3.6.4)."""
    if raw is None:
        return []
    value = _raw_text(raw, [])
    ids = [m for m in _MSG_ID.findall(value) if "@" in m or "." in m]
    if not ids:
        # Bare ids without brackets still occur (old clients, some bounces).
        ids = [t for t in value.split() if "@" in t and "<" not in t and ">" not in t]
    return [i for i in ids if len(i) <= 250]


def _cap_references(ids: list[str]) -> tuple[str, ...]:
    # Keep the root and the most recent parents: what threading needs.
    if len(ids) > _MAX_REFERENCES:
        ids = [ids[0], *ids[-(_MAX_REFERENCES - 1) :]]
    return tuple(ids)


def _date(raw: str | None, defects: list[str]) -> datetime | None:
    if raw is None:
        return None
    try:
        value = parsedate_to_datetime(_single_line(_raw_text(raw, [])))
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append("date:invalid")
        return None
    if value.tzinfo is None:  # "-0000": UTC, origin's zone unknown (RFC 5322 3.3)
        value = value.replace(tzinfo=UTC)
    return value


# --------------------------------------------------------------------------- MIME walk


@dataclass(slots=True)
class _Body:
    text: str | None = None
    html: str | None = None
    delivery_status: str | None = None
    attachments: list[Attachment] = field(default_factory=list)


def _children(part: Message) -> list[Message]:
    """Sub-parts of a multipart or message/* part (compat32 keeps them in a list)."""
    payload = part.get_payload() if part.is_multipart() else None
    if not isinstance(payload, list):
        return []
    return [child for child in payload if isinstance(child, Message)]


def _check_tree(msg: Message, limits: ParseLimits) -> None:
    """Exact depth and part count of the parsed tree (the raw scan can undercount)."""
    stack = [(msg, 0)]
    count = 0
    while stack:
        part, depth = stack.pop()
        count += 1
        if count > limits.max_parts:
            raise PermanentError("too-many-parts", f"more than {limits.max_parts} parts")
        children = _children(part)
        if children:
            if depth + 1 > limits.max_mime_depth:
                raise PermanentError("mime-too-deep", f"more than {limits.max_mime_depth} levels")
            stack.extend((child, depth + 1) for child in children)


def _walk(msg: Message, limits: ParseLimits, defects: list[str]) -> _Body:
    """Pick body parts and attachments from the tree, iteratively (no recursion).

    The first inline text/plain is the body and the first inline text/html its HTML;
    every other leaf is an attachment (inline images included), so nothing is lost.
    Embedded messages are attached whole as ``message.eml`` and not searched for text.
    """
    _check_tree(msg, limits)
    body = _Body()
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
            stack.extend(reversed(_children(part)))  # popped in message order
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
    data = part.get_payload(decode=True)
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
    for block in _children(part):
        lines = [f"{name}: {_raw_text(value, defects)}" for name, value in block.raw_items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _attachment(part: Message, ctype: str, filename: str, *, embedded: bool) -> Attachment:
    if embedded:
        data = _embedded_bytes(part)
    else:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
    return Attachment(
        filename=filename,
        content_type=ctype,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        data=data,
    )


def _text_attachment(text: str, ctype: str, filename: str) -> Attachment:
    data = text.encode("utf-8", "surrogateescape")
    digest = hashlib.sha256(data).hexdigest()
    return Attachment(filename, ctype, len(data), digest, data)


def _embedded_bytes(part: Message) -> bytes:
    inner = _children(part)
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
        children = [_flatten(child) for child in payload if isinstance(child, Message)]
        boundary = msg.get_boundary()
        if boundary is None:
            body = b"\r\n".join(children)
        else:
            marker = f"--{boundary}\r\n".encode("utf-8", "surrogateescape")
            end = f"--{boundary}--\r\n".encode("utf-8", "surrogateescape")
            body = b"".join(marker + child + b"\r\n" for child in children) + end
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


def html_to_text(html: str) -> str:
    """Layout-aware text of an HTML-only body (inscriptis), blank-line runs collapsed."""
    try:
        text = inscriptis.get_text(html)
    except (RecursionError, ValueError):
        text = re.sub(r"<[^<>]*>", " ", html)
    lines = [line.rstrip() for line in str(text).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


# --------------------------------------------------------------------------- quotes

_SIGNATURE = re.compile(r"^-- ?$")
# "On … wrote:" style attribution lines as clients write them in our five languages
# (and German).  A digit or "@" must appear too, so "my colleague writes:" survives.
_ATTRIBUTION = re.compile(
    r"""^\s*(?:
        On\s.+\swrote\s?:
      | W\sdniu\s.+\s(?:pisze|napisał\(a\)|napisał|napisała)\s?:
      | Dnia\s.+\s(?:pisze|napisał\(a\)|napisał|napisała|nadesłał)\s?:
      | Dňa\s.+\snapísal(?:\(a\)|a)?\s?:
      | Dne\s.+\snapsal(?:\(a\)|a)?\s?:
      | Am\s.+\sschrieb.*:
      | .+\s(?:napisał\(a\)|napisał|napisała|napísal\(a\)|napísal|napísala
              |napsal\(a\)|napsal|napsala|написал\(а\)|написал|написала|пишет|wrote)\s?:
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(?:Original\sMessage|Ursprüngliche\sNachricht|Oryginalna\swiadomość"
    r"|Wiadomość\soryginalna|Pôvodná\sspráva|Původní\szpráva|Исходное\sсообщение)\s*-{2,}\s*$",
    re.IGNORECASE,
)
# Outlook's header block: "From:" followed within three lines by "Sent:" (localized).
_OUTLOOK_FROM = re.compile(r"^\s*\*?(?:From|Od|Von|От)\s*:\*?\s*\S", re.IGNORECASE)
_OUTLOOK_SENT = re.compile(
    r"^\s*\*?(?:Sent|Date|Wysłano|Data|Gesendet|Odesláno|Odoslané|Отправлено|Дата)\s*:",
    re.IGNORECASE,
)
# A forwarded message is what the customer wants us to read: never cut there.
_FORWARD = re.compile(
    r"Forwarded\smessage|Weitergeleitete\sNachricht|Przekazana\swiadomość"
    r"|Preposlaná\sspráva|Přeposlaná\szpráva|Пересылаемое\sсообщение|Пересланное\sсообщение"
    r"|^\s*\*?(?:Subject|Temat|Betreff|Předmět|Predmet|Тема)\s*:\*?\s*(?:Fwd?|FW|PD|WG|TR|Пересл)\s*:",
    re.IGNORECASE,
)


def strip_quotes(body: str) -> str:
    """What the author wrote: cut at the first reply header, quotes and signature removed.

    Deliberately simple and line-based; ``body_text`` always keeps everything.
    mail-parser-reply was evaluated and not used: it has no Slovak or Russian rules
    and misses Thunderbird's Polish "W dniu … pisze:".
    """
    lines = body.split("\n")
    for index, line in enumerate(lines):
        if _is_reply_header(lines, index, line):
            lines = lines[:index]
            break
    for index, line in enumerate(lines):
        if _SIGNATURE.match(line):
            lines = lines[:index]
            break
    # The trailing ">"-quoted block and the blank lines around it.
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith(">")):
        lines.pop()
    return "\n".join(line.rstrip() for line in lines).strip("\n")


def _is_reply_header(lines: list[str], index: int, line: str) -> bool:
    following = lines[index + 1] if index + 1 < len(lines) else ""
    # Every header form has ":" or "--" on its first two lines; most body lines have neither.
    if ":" not in line and "--" not in line and ":" not in following:
        return False
    if len(line) > 500 or line.lstrip().startswith(">"):
        return False
    if _ORIGINAL_MESSAGE.match(line):
        return True
    if _OUTLOOK_FROM.match(line):
        block = lines[max(0, index - 2) : index + 6]
        return any(_OUTLOOK_SENT.match(nxt) for nxt in lines[index + 1 : index + 4]) and not any(
            _FORWARD.search(nxt) for nxt in block
        )
    if _is_attribution(line):
        return True
    # Clients wrap a long attribution once; join only a line that opens like one.
    return (
        bool(_ATTRIBUTION_START.match(line))
        and len(following) < 200
        and not _is_attribution(following)
        and _is_attribution(f"{line} {following.strip()}")
    )


_ATTRIBUTION_START = re.compile(r"^\s*(?:On|W\sdniu|Dnia|Dňa|Dne|Am)\s|.*[@<]", re.IGNORECASE)


# Gmail in Russian and Yandex write no verb: "пн, 3 нояб. 2025 г. в 10:00, И <i@x>:".
_ADDRESS_COLON = re.compile(r"<[^<>\s@]{1,64}@[^<>\s@]{1,253}>\s?:$")


def _is_attribution(line: str) -> bool:
    line = line.rstrip()
    # All forms end with ":" and carry a digit or "@"; checking that first keeps the
    # regexes off ordinary lines (the body is sender-controlled).
    if not line.endswith(":") or not re.search(r"[\d@]", line):
        return False
    return bool(_ATTRIBUTION.match(line) or _ADDRESS_COLON.search(line))


# --------------------------------------------------------------------------- language

_WORD = re.compile(r"[^\W\d_]+")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_MARKS = {
    "pl": set("ąęłńśźżć"),
    "cs": set("řěů"),
    "sk": set("ľĺŕôä"),
}
_STOPWORDS = {
    "pl": {
        "się", "jest", "nie", "proszę", "że", "czy", "dzień", "dobry", "mam", "jak",
        "dziękuję", "pozdrawiam", "witam", "mój", "moja", "mnie", "oraz", "działa",
    },
    "cs": {
        "prosím", "není", "děkuji", "je", "jsem", "jsou", "nebo", "také", "když", "který",
        "nefunguje", "dobrý", "den", "mám", "se", "pro", "mi",
    },
    "sk": {
        "prosím", "nefunguje", "ďakujem", "je", "som", "sú", "alebo", "ktorý", "deň",
        "aj", "už", "môj", "pretože", "dobrý", "mám", "sa", "pre", "mi",
    },
    "en": {
        "the", "please", "is", "and", "to", "my", "you", "not", "have", "with", "thanks",
        "hello", "i", "it", "for", "of", "this", "does", "can", "we", "our", "are",
    },
}  # fmt: skip


# word → languages it votes for, built once
_VOTES: dict[str, tuple[str, ...]] = {}
for _language, _words in _STOPWORDS.items():
    for _word in _words:
        _VOTES[_word] = (*_VOTES.get(_word, ()), _language)


def detect_language(text: str) -> str | None:
    """Guess en/pl/sk/cs/ru from script, diacritics and stop-words; None when unsure.

    A heuristic on purpose: it costs microseconds.  ``lingua-language-detector``
    restricted to these five languages can replace it if it proves too coarse.
    """
    lowered = text.lower()
    words = _WORD.findall(lowered)
    letters = sum(len(word) for word in words)
    if not letters:
        return None
    if len(_CYRILLIC.findall(lowered)) * 3 >= letters:
        return "ru"
    scores = dict.fromkeys(("en", "pl", "cs", "sk"), 0)
    for language, marks in _MARKS.items():
        scores[language] += 2 * sum(lowered.count(mark) for mark in marks)
    for word in words:
        for language in _VOTES.get(word, ()):
            scores[language] += 1
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < 2 or top == second:
        return None
    return best
