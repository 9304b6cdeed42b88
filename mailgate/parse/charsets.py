"""Bytes in a declared (or undeclared, or lying) charset → text, recording every guess.

Used by ``headers`` for encoded-words and 8-bit header bytes and by ``mime`` for body
parts.  Decoding never fails: for an undeclared, unknown or wrong charset we try UTF-8,
then ask ``detect`` (which prefers a charset the same message declares elsewhere, and
never guesses Latin-1 blindly), and ``decode_bytes`` records a defect whenever it had to
guess, so the guess stays visible.  The 7-bit charsets (ISO-2022-JP, UTF-7, HZ) are
pure ASCII on the wire and are decoded like any other, never passed through as ASCII.
"""

from __future__ import annotations

import codecs
import re

from mailgate.parse.detect import european_score, guess_charset, text_score

# Names seen in the wild that Python does not know, or knows as a narrower charset.
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "x-mac-roman": "mac-roman",
    "unicode-1-1-utf-7": "utf-7",
    "x-unknown": "",
    "x-user-defined": "",
    "iso-2022-jp-ms": "cp932",
    "x-sjis": "shift_jis",
    "sjis": "shift_jis",
    "x-euc-jp": "euc_jp",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "ms936": "gb18030",
    "big5-hkscs": "big5hkscs",
    "x-koi8-r": "koi8_r",
    "win-1251": "cp1251",
    "win-1250": "cp1250",
    "windows-31j": "cp932",
    "x-mac-cyrillic": "mac-cyrillic",
    "iso-10646-ucs-2": "utf-16-be",
    "ucs-2": "utf-16-be",
    "unicode": "utf-16",
    "gb_2312-80": "gb18030",
    "ks_c_5601": "cp949",
}
# Stateful 7-bit charsets: their text is ASCII bytes with escape sequences.
_SEVEN_BIT = frozenset(
    {"iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_3", "iso2022_jp_ext"}
    | {"iso2022_jp_2004", "iso2022_kr", "utf-7", "hz"}
)
# Single-byte charsets that decode any bytes at all, so a wrong label never fails:
# their text is checked for plausibility and a better-looking guess may win.
_ANY_BYTES = frozenset(
    {"iso8859-1", "iso8859-15", "cp1252", "iso8859-2", "cp1250", "koi8-r", "cp1251", "ascii"}
)
# Text codecs that would reinterpret sender bytes as escapes or always raise.
_REFUSED_CODECS = {"undefined", "unicode-escape", "raw-unicode-escape", "idna", "punycode"}


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    name = charset.strip().strip('"').lower()
    name = _CHARSET_ALIASES.get(name, name)
    # "x-cp1250", "cp-1251", "win1250": the same code pages under a prefix or a dash.
    name = re.sub(r"^(?:x-)?(?:cp|win|windows)-?(12\d\d|8[5-7]\d)$", r"cp\1", name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # bytes-to-bytes codecs (base64, zlib …) are not charsets.
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None
    return info.name


def guess_decode(data: bytes, hints: tuple[str, ...] = ()) -> tuple[str, bool]:
    """Decode bytes of unknown charset: UTF-8, else the best guess (total).

    ``hints`` are charsets the same message declares elsewhere.  Returns the text and
    whether it was a guess.
    """
    if data.isascii():  # ISO-2022-JP or HZ without a label, or plain ASCII
        seven = _seven_bit_guess(data)
        return (data.decode(seven, "replace"), True) if seven else (data.decode("ascii"), False)
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        pass
    codec = guess_charset(data, tuple(h for h in map(_codec, hints) if h))
    return _scalars(data.decode(codec, "replace")), True


def _seven_bit_guess(data: bytes) -> str | None:
    if b"\x1b$B" in data or b"\x1b$@" in data or b"\x1b(J" in data:
        return "iso2022_jp"
    if b"\x1b$)C" in data:
        return "iso2022_kr"
    if b"~{" in data and b"~}" in data:
        return "hz"
    return None


def decode_bytes(
    data: bytes, charset: str | None, defects: list[str], where: str, hints: tuple[str, ...] = ()
) -> str:
    """Decode ``data`` declared as ``charset``; record a defect whenever we had to guess."""
    codec = _codec(charset)
    if data.isascii():
        if codec in _SEVEN_BIT:
            return _scalars(data.decode(codec, "replace"))
        seven = _seven_bit_guess(data) if b"\x1b" in data or b"~{" in data else None
        if seven is None:
            return data.decode("ascii")
        defects.append(f"{where}:undeclared-7bit")
        return data.decode(seven, "replace")
    if codec is None or codec == "ascii":
        # Undeclared (or declared us-ascii, the MIME default) yet 8-bit, or unknown name.
        known = codec is not None or not charset
        defects.append(f"{where}:undeclared-8bit" if known else f"{where}:unknown-charset")
        return guess_decode(data, hints)[0]
    try:
        text = _scalars(data.decode(codec))
    except UnicodeDecodeError:
        text = None
    if text is not None and not _mislabelled(data, text, codec):
        return text
    try:
        text = data.decode("utf-8")  # mislabelled UTF-8 is the most common lie
    except UnicodeDecodeError:
        guessed = guess_charset(data, tuple(h for h in map(_codec, hints) if h and h != codec))
        text = _scalars(data.decode(guessed, "replace"))
    defects.append(f"{where}:charset-mismatch")
    return text


_SUSPECT = re.compile(r"[\x80-\x9f\xa1-\xa6\xa8-\xaa\xac\xaf-\xbf]|[а-яё][А-ЯЁ]")
_ACCENTED_WORD = re.compile(r"(?<![^\W\d_])[\xc0-\xff]{5,}(?![^\W\d_])")


def _mislabelled(data: bytes, text: str, codec: str) -> bool:
    """Whether a single-byte label that decoded without error still looks wrong.

    Latin-1 decodes every byte, so a Polish cp1250 body labelled iso-8859-1 "works" and
    reads "Za¿ó³æ"; only such labels are second-guessed, and only when their text scores
    as implausible while UTF-8 or another charset reads as prose.
    """
    if codec not in _ANY_BYTES:
        return False
    try:
        # Prose in a legacy charset is practically never valid UTF-8: this bears out.
        data[:8192].decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        if exc.start >= 8188:  # cut inside a character by the sample's end
            return True
    sample = text[:2048]
    # Symbols and C1 controls where letters belong, Cyrillic case swapped inside a
    # word, or a word of accented letters only ("Ïðèâåò": cp1251 read as Latin-1):
    # only then is the (costlier) letter score worth computing.
    symbols = _SUSPECT.search(sample) is not None
    if not symbols and _ACCENTED_WORD.search(sample) is None:
        return False
    own = european_score(sample)
    if symbols and own > 0:
        return False
    other = guess_charset(data)
    return other != codec and text_score(data[:8192].decode(other, "replace"), other) > max(own, 0)


def _scalars(text: str) -> str:
    """Some codecs (utf-7 …) can yield lone surrogates, which no UTF-8 sink accepts."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text
