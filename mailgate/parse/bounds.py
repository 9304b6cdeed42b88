"""Resource caps against hostile input, and the checks that run on the raw bytes.

``parse`` calls ``check_header_section`` and ``check_mime_shape`` *before* any parser
sees the message: the stdlib is quadratic on huge address headers, and deep MIME nesting
costs O(lines x depth) and ends in RecursionError.  Both are cheap regex scans.  The
same ``ParseLimits`` are enforced again on the parsed tree (``mime.check_tree``) and on
address lists (``addresses.address_list``), where the raw scan can undercount.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailgate.errors import PermanentError


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Resource caps applied before and during parsing (THREATS.md, "Hostile input")."""

    max_header_bytes: int = 102400
    max_mime_depth: int = 20
    max_parts: int = 500
    max_addresses: int = 1000  # per address header


DEFAULT_LIMITS = ParseLimits()

_HEADER_END = re.compile(rb"\r?\n\r?\n")
# A header field name (RFC 5322 2.2: printable ASCII but ":"), or an mbox "From " line.
_FIRST_LINE = re.compile(rb"(?:[!-9;-~]{1,200}[ \t]*:|From )")
# Bytes no text ever holds: NUL and the C0 controls but TAB, LF, FF, CR and ESC.
_BINARY = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
_SNIFF = 4096


def check_is_mail(raw: bytes) -> None:
    """Refuse input that is not a mail message at all: no header field where the
    message begins, and binary bytes (an image, an archive, random junk) in its start.

    Text without headers is still read leniently: a pasted body is a message with
    defects, a ZIP file is not a message.
    """
    if _FIRST_LINE.match(raw.lstrip(b"\r\n")[:256]) and not raw[:1].isspace():
        return
    start = raw[:_SNIFF]
    if not start.strip():
        raise PermanentError("not-mail", "empty input")
    if len(_BINARY.findall(start)) * 50 > len(start) or b"\x00" in start:
        raise PermanentError("not-mail", "no header fields and binary content")


def check_header_section(raw: bytes, limits: ParseLimits) -> None:
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


def check_mime_shape(raw: bytes, limits: ParseLimits) -> None:
    """Estimate nesting depth and part count from delimiter lines, in C-speed scans.

    A delimiter of a boundary not yet open starts a nested container; a delimiter of an
    open one closes everything opened inside it (RFC 2046 5.1.1).  This can only
    undercount (e.g. boundaries containing spaces); ``mime.check_tree`` checks the real
    tree.
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
