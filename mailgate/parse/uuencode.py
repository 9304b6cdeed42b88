"""uuencoded files inside a text body (``begin 644 name`` … ``end``) → attachments.

Old clients, some scanners and mailing-list digests still send files this way, inside
a text/plain part.  ``mime`` passes each inline text part through ``split_uuencoded``:
the file becomes an attachment and leaves the body text.
"""

from __future__ import annotations

import binascii
import re

_BEGIN = re.compile(r"^begin(?:-base64)? [0-7]{3,4} ([^\n]{1,255})\n", re.MULTILINE)
_MAX_FILES = 20


def split_uuencoded(text: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The text without its uuencoded blocks, and each block's (file name, bytes).

    A block that does not decode stays in the text: better shown than lost.
    """
    if "begin " not in text:
        return text, []
    files: list[tuple[str, bytes]] = []
    kept: list[str] = []
    position = 0
    while len(files) < _MAX_FILES:
        begin = _BEGIN.search(text, position)
        if begin is None:
            break
        end = re.compile(r"^end[ \t]*$", re.MULTILINE).search(text, begin.end())
        if end is None:
            break
        data = _decode(text[begin.end() : end.start()], begin.group(0).startswith("begin-"))
        if data is None:
            kept.append(text[position : end.end()])
        else:
            kept.append(text[position : begin.start()])
            files.append((begin.group(1).strip(), data))
        position = end.end()
    kept.append(text[position:])
    return "".join(kept), files


def _decode(block: str, base64: bool) -> bytes | None:
    lines = [line.rstrip("\r") for line in block.split("\n")]
    try:
        if base64:
            return binascii.a2b_base64("".join(line for line in lines if line != "===="))
        out = bytearray()
        for line in lines:
            if not line or line in ("`", " "):
                continue
            try:
                out += binascii.a2b_uu(line)
            except binascii.Error:
                # Some encoders pad short lines oddly: decode by the length byte.
                length = (ord(line[0]) - 32) & 63
                out += binascii.a2b_uu(line[: (length + 2) // 3 * 4 + 1])
        return bytes(out)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None
