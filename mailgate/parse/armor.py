"""Inline OpenPGP clear-signed text (RFC 4880, 7.) → the text that was signed.

Enigmail, Mailvelope and command-line users sign plain text inline: the words sit
between a ``-----BEGIN PGP SIGNED MESSAGE-----`` line with its ``Hash:`` headers and
an ASCII-armoured signature, and every line starting with "-" is escaped as "- -".
``mime`` unwraps such a block in a text/plain part so the body and the reply read as
written; the signature, which no operator reads, is dropped (a PGP/MIME signature part
stays an attachment, as every other leaf).  Text outside the block is kept.  Linear.
"""

from __future__ import annotations

_BEGIN = "-----BEGIN PGP SIGNED MESSAGE-----"
_SIGNATURE = "-----BEGIN PGP SIGNATURE-----"
_END = "-----END PGP SIGNATURE-----"


def unwrap_clearsigned(text: str) -> str:
    """``text`` with each clear-signed block replaced by its signed, unescaped text."""
    if _BEGIN not in text:
        return text
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].rstrip() != _BEGIN:
            out.append(lines[i])
            i += 1
            continue
        block = _block(lines, i)
        if block is None:  # not a complete block: leave it as it came
            out.extend(lines[i:])
            break
        signed, i = block
        out.extend(signed)
    return "\n".join(out)


def _block(lines: list[str], start: int) -> tuple[list[str], int] | None:
    """The signed lines of the block opened at ``start``, and the index after it."""
    i = start + 1
    while i < len(lines) and lines[i].strip():  # armour headers ("Hash: SHA256")
        i += 1
    i += 1  # the blank line after them
    signed: list[str] = []
    while i < len(lines) and lines[i].rstrip() != _SIGNATURE:
        line = lines[i]
        signed.append(line[2:] if line.startswith("- ") else line)
        i += 1
    while i < len(lines) and lines[i].rstrip() != _END:
        i += 1
    if i >= len(lines):
        return None
    return signed, i + 1
