"""Bytes in a declared (or undeclared, or lying) charset → text, recording every guess.

Used by ``headers`` for encoded-words and 8-bit header bytes and by ``mime`` for body
parts.  Decoding never fails: for an undeclared or unknown charset we try UTF-8, then
cp1252, then latin-1 (mail-parser would use UTF-8 with replacement), and
``decode_bytes`` records a defect whenever it had to guess, so the guess stays visible.
"""

from __future__ import annotations

import codecs

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


def guess_decode(data: bytes) -> tuple[str, bool]:
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
        return guess_decode(data)[0]
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
