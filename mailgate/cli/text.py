"""How the text views print what came in by mail: escaped, so a message cannot drive
the operator's terminal.

A subject, a sender or a body may carry ESC sequences (retitle the terminal, rewrite
what is on screen), BEL, NUL or bidirectional overrides that reorder a line.  Every
text view passes stored values through ``line`` (one-line fields: line breaks and tabs
are escaped too) or ``block`` (bodies: line breaks and tabs kept).  Each character is
shown as a visible escape (``\\x1b``, ``\\u202e``) rather than dropped, so the operator
sees that something was there.  The JSON views need none of this: JSON escapes every
control character itself.
"""

from __future__ import annotations

_CONTROLS = (
    *range(0x00, 0x20),
    0x7F,
    *range(0x80, 0xA0),  # C1: 0x9b is a one-byte CSI on some terminals
    *range(0x202A, 0x202F),  # bidirectional embeddings and overrides
    *range(0x2066, 0x206A),  # bidirectional isolates
)
_LINE = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _CONTROLS}
_BLOCK = {c: v for c, v in _LINE.items() if c not in (0x09, 0x0A)}


def line(value: object) -> str:
    """A one-line field as printed: every control character escaped."""
    return "" if value is None else str(value).translate(_LINE)


def block(value: object) -> str:
    """A body as printed: line breaks and tabs kept, every other control escaped."""
    return "" if value is None else str(value).replace("\r\n", "\n").translate(_BLOCK)
