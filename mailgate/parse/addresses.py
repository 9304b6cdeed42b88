"""Address headers: the strict From that is our only identity, and best-effort lists.

From decides who a ticket belongs to, so it is parsed by a small strict parser of our
own: mail-parser on Python < 3.11.10 falls back to ``email.utils.getaddresses`` without
``strict`` (CVE-2023-27043), and anything parsers disagree on is refused with a defect
rather than guessed (THREATS.md, "Identity").  To, Cc and Reply-To are never
identities: there we keep what we can, salvaging bare addresses from junk.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from mailgate.errors import PermanentError
from mailgate.parse.bounds import ParseLimits
from mailgate.parse.charsets import guess_decode
from mailgate.parse.headers import decode_rfc2047, raw_text, single_line, unfold
from mailgate.parse.message import Address

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


def _strip_comments(text: str, comments: list[str] | None = None) -> str | None:
    """Remove simple ``(comments)`` outside quoted strings; None if any is not simple.

    The comments' texts are appended to ``comments`` when given.
    """
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
            if comments is not None:
                comments.append(text[i + 1 : end])
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
    comments: list[str] = []
    cleaned = _strip_comments(text, comments)
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
        # "jan@firma.example (Jan Kowalski)": the old comment form of a display name.
        address = _addr_spec(cleaned.strip())
        name = single_line(decode_rfc2047(" ".join(comments), [])) if address else ""
        return Address(name, address) if address else "malformed"
    address = _addr_spec(angle)
    if address is None or not all(_PHRASE_ATOM.fullmatch(atom) for atom in atoms):
        return "malformed"
    return Address(single_line(decode_rfc2047(" ".join(words), [])), address)


# "jan@firma.example." and "<jan@firma.example.>": a root dot some clients leave.
_TRAILING_DOT = re.compile(r"(@[^\s<>()@,;:\"]+)\.(?=\s*(?:>|\(|$))")
_DAEMON_NAME = re.compile(r"^\s*(?:[^<>@]*<)?\s*(?:mailer[-_]daemon|postmaster)\s*>?\s*$", re.I)


def _name_is_address(value: str) -> str:
    """``a@b <a@b>``: an unquoted display name that *is* the address (common, and
    unambiguous: both readings give the same mailbox)."""
    match = _SAME_TWICE.fullmatch(value)
    return (
        f"<{match.group(2)}>"
        if match and match.group(1).lower() == match.group(2).lower()
        else value
    )


_SAME_TWICE = re.compile(r"\s*([^\s<>\"(),;:]{1,254})\s*<\s*([^\s<>\"(),;:]{1,254})\s*>\s*")
# Cosmetic defects that leave exactly one possible mailbox: each repair is tried alone.
_REPAIRS = (
    (lambda v: _TRAILING_DOT.sub(r"\1", v), "from:domain-trailing-dot"),
    (lambda v: v.rstrip().rstrip(",;").rstrip(), "from:trailing-separator"),
    (_name_is_address, "from:name-is-address"),
    (
        lambda v: f"{v.rstrip()}>" if v.count("<") == 1 and ">" not in v else v,
        "from:unclosed-angle",
    ),
)


def _cosmetic_repair(value: str) -> tuple[Address, str] | None:
    for repair, defect in _REPAIRS:
        repaired = repair(value)
        if repaired != value:
            result = _mailbox(repaired)
            if isinstance(result, Address):
                return result, defect
    return None


def from_identity(
    values: list[str], defects: list[str], hints: tuple[str, ...] = ()
) -> Address | None:
    """The RFC 5322 From, strictly: the only identity source (THREATS.md, "Identity").

    Strict against ambiguity, not against cosmetics: two From headers naming different
    mailboxes are refused, the same mailbox twice is one identity (with a defect); a
    trailing root dot and a raw 8-bit display name beside an ASCII address are defects
    that keep the identity.  ``values`` are the raw From headers in message order.
    """
    if not values:
        defects.append("from:missing")
        return None
    if len(values) == 1:
        return _one_from(values[0], defects, hints)
    found = [_one_from(value, [], hints) for value in values]
    first = found[0]
    if first is None or any(other is None or other.address != first.address for other in found):
        defects.append("from:multiple-headers")
        return None
    defects.append("from:duplicate-header")
    return first


def _one_from(raw: str, defects: list[str], hints: tuple[str, ...]) -> Address | None:
    data = str(raw).encode("utf-8", "surrogateescape")
    eight_bit = False
    try:
        value = data.decode("utf-8")
    except UnicodeDecodeError:
        # 8-bit bytes of a legacy charset: an identity only if they are all in the
        # display name and the address itself is plain ASCII (checked below).
        value = guess_decode(data, hints)[0]
        eight_bit = True
    value = unfold(value)
    if not value.strip():
        defects.append("from:missing")
        return None
    if any(ch in value for ch in "\r\n\x00"):
        defects.append("from:malformed")
        return None
    if _DAEMON_NAME.match(value):
        # "MAILER-DAEMON" without a domain: a bounce signal (autoreply reads the
        # header), never an identity.
        defects.append("from:mailer-daemon")
        return None
    result = _mailbox(value)
    if isinstance(result, str):
        repaired = _cosmetic_repair(value)
        if repaired is None:
            defects.append(f"from:{result}")
            return None
        result, defect = repaired
        defects.append(defect)
    if eight_bit:
        local = data.rpartition(b"<")[2] if b"<" in data else data
        if not result.name or not local.isascii() or not result.address.isascii():
            defects.append("from:malformed")  # 8-bit junk in the address itself
            return None
        defects.append("from:8bit-name")
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


def address_list(
    raw: str | None,
    header: str,
    limits: ParseLimits,
    defects: list[str],
    hints: tuple[str, ...] = (),
) -> tuple[Address, ...]:
    """Best-effort addresses of To/Cc/Reply-To: these are never identities."""
    if raw is None:
        return ()
    value = raw_text(raw, defects, hints)
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
