"""``format=flowed`` text (RFC 3676) → the paragraphs its author typed.

Thunderbird, Apple Mail and many webmails wrap long lines at about 72 columns and mark
each soft break with a trailing space; ``mime`` calls ``unflow`` on a text/plain part
that declares ``format=flowed``, so the body and the visible reply hold whole
paragraphs instead of the client's wrapping.  The rules, line by line:

* a line's quote depth is its leading ``>`` count; a space after them (or at the start
  of an unquoted line) is space-stuffing and goes;
* a line ending in a space is flowed: it joins the next line of the same quote depth
  (with ``DelSp=yes`` its trailing space goes too, for languages written without
  spaces); a change of depth or an empty line ends the paragraph;
* the signature separator ``-- `` is never flowed, nor joined to the line above.

Quoted paragraphs come out as ``> text`` (one ``>`` per level), which is what the quote
stripper reads.  Linear in the text.
"""

from __future__ import annotations

_SIGNATURE = "-- "


def unflow(text: str, delsp: bool) -> str:
    """Join the soft-broken lines of flowed ``text`` (already with ``\\n`` line ends)."""
    out: list[str] = []
    pending: list[str] = []
    pending_depth = -1
    for raw in text.split("\n"):
        depth = len(raw) - len(raw.lstrip(">"))
        line = raw[depth:]
        if line.startswith(" "):
            line = line[1:]  # space-stuffing
        if pending and (depth != pending_depth or not line or line == _SIGNATURE):
            # A depth change ends the paragraph; so do an empty line and the signature
            # separator, which a trailing space on the line above must not swallow.
            out.append(_joined(pending, pending_depth))
            pending = []
        flowed = line.endswith(" ") and line != _SIGNATURE
        if flowed and delsp:
            line = line[:-1]
        pending.append(line)
        pending_depth = depth
        if not flowed:
            out.append(_joined(pending, depth))
            pending = []
    if pending:
        out.append(_joined(pending, pending_depth))
    return "\n".join(out)


def _joined(pieces: list[str], depth: int) -> str:
    text = "".join(pieces)
    if depth <= 0:
        return text
    return f"{'>' * depth} {text}" if text else ">" * depth
