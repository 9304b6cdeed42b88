"""Which charset were these bytes in?  The guess behind every undeclared or lying charset.

``charsets.decode_bytes`` asks here when bytes are not UTF-8 and their declared charset
is missing, unknown or wrong; ``headers`` asks for raw 8-bit header text.  Real mail
without a (correct) label comes in a handful of charsets: the Western and Central
European code pages (cp1252, ISO-8859-2, cp1250), the Cyrillic ones (KOI8-R, cp1251)
and the East Asian ones (GB18030/GBK, Big5, Shift_JIS, EUC-JP, EUC-KR).  Guessing
Latin-1 blindly turns Polish into "Za¿ó³æ", so each candidate that decodes is scored on
what its text looks like, and the best one wins:

* hints first: a charset the same message declares elsewhere (its body's charset for
  its raw 8-bit Subject) wins whenever it decodes into plausible text;
* for long enough East Asian text, charset-normalizer's verdict (it knows their byte
  statistics); for short text and the European code pages, a letter score of our own
  (charset-normalizer cannot tell cp1252 from cp1250 or ISO-8859-2 on a sentence, and
  nothing on a name): letters of one language family score, symbols and control
  characters cost, Cyrillic case must look like prose (KOI8-R and cp1251 swap case);
* cp1252 when nothing scores (it decodes nearly everything), latin-1 as the total end.

Linear in a bounded sample; the chosen codec then decodes all the bytes.
"""

from __future__ import annotations

import re
import unicodedata

_SAMPLE = 4096  # bytes scored; the whole input is decoded with the winner
_NORMALIZER_SAMPLE = 2048
# Candidates in order of preference on a tie.
_EUROPEAN = ("cp1252", "iso8859-2", "cp1250", "koi8-r", "cp1251")
_ASIAN = ("gb18030", "big5", "shift_jis", "euc_jp", "cp949")
# East Asian bytes come in pairs; charset-normalizer needs a few dozen to be sure.
_ASIAN_MIN_HIGH_BYTES = 24

# Letters of one language family: text in the right charset keeps to one family.
_FAMILIES = (
    set("ąćęłńśźżóĄĆĘŁŃŚŹŻÓ"),  # Polish
    set("áčďéěíňóřšťúůýžľĺŕôäÁČĎÉĚÍŇÓŘŠŤÚŮÝŽĽĹŔÔÄ"),  # Czech, Slovak
    set("áéíóöőúüűÁÉÍÓÖŐÚÜŰ"),  # Hungarian
    set("čćđšžČĆĐŠŽ"),  # Croatian, Slovenian
    set("ăâîșşțţĂÂÎȘŞȚŢ"),  # Romanian
    set("àâçéèêëîïôûùüÿœæÀÂÇÉÈÊËÎÏÔÛÙÜŸŒÆ"),  # French
    set("äöüßÄÖÜ"),  # German
    set("áéíóúñüàèìòùãõçâêôÁÉÍÓÚÑÜÀÈÌÒÙÃÕÇÂÊÔ"),  # Spanish, Portuguese, Italian
    set("åæøäöÅÆØÄÖ"),  # Nordic
)
_FAMILY_OF: dict[str, tuple[int, ...]] = {}
for _index, _family in enumerate(_FAMILIES):
    for _char in _family:
        _FAMILY_OF[_char] = (*_FAMILY_OF.get(_char, ()), _index)
# Letters that exist but are rare: a Latin-1 "à" must beat a cp1250 "ŕ".
_RARE = set("ŕĺŔĹţŢşŞ")
# Punctuation common in prose in every family.
_PUNCTUATION = set("€„“”‘’‚–—«»…°§·©®×•\u00a0")
_QUOTES = set("„“”«»")


_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")


def european_score(text: str) -> float:
    """How much ``text`` reads like European prose: letters of one language family and
    prose punctuation score, symbols, control characters and case or script mixed
    inside a word cost.  Only the non-ASCII characters are looked at."""
    family_hits = [0] * len(_FAMILIES)
    neutral = 0.0
    penalty = 0.0
    cyrillic_lower = cyrillic_upper = 0
    last = len(text) - 1
    for match in _NON_ASCII.finditer(text):
        char = match.group()
        i = match.start()
        previous = text[i - 1] if i else " "
        following = text[i + 1] if i < last else " "
        if char.isupper() and (previous.islower() or (previous.isupper() and following.islower())):
            # Case changing inside a word: "оЕ ТБВПФБЕФ" (KOI8-R read as cp1251),
            # "ľČłçÇĎĽĽżä" (Korean read as cp1250); prose is "Word" or "WORD".
            penalty += 1.5
        if "\u0400" <= char <= "\u04ff":
            if char.islower():
                cyrillic_lower += 1
            else:
                cyrillic_upper += 1
            # A Cyrillic letter glued to a Latin one: "cafй".
            if previous < "\x80" and previous.isalpha():
                penalty += 1.5
            if following < "\x80" and following.isalpha():
                penalty += 1.5
            continue
        if char in _PUNCTUATION:
            # Quotation marks glued between two letters are a mis-decode ("Đ»Đ»").
            glued = char in _QUOTES and previous.isalpha() and following.isalpha()
            if glued:
                penalty += 2.0
            else:
                neutral += 0.5
            continue
        families = _FAMILY_OF.get(char)
        if families is not None:
            for index in families:
                family_hits[index] += 1
            if char in _RARE:
                penalty += 0.7
            continue
        if char.isalpha():
            penalty += 2.0  # a letter of no family we know: "ŕ" beside "ą" is a mis-decode
            continue
        # Symbols (¹ ¾ ¿ ³ …) and C1 controls: not prose.
        penalty += 5.0 if unicodedata.category(char) == "Cc" else 2.0
    # Prose is mostly lower case; KOI8-R and cp1251 read as each other swap the case.
    if cyrillic_lower >= cyrillic_upper:
        cyrillic = cyrillic_lower + 0.6 * cyrillic_upper
    else:
        cyrillic = cyrillic_lower - 0.5 * cyrillic_upper
    return max(max(family_hits), cyrillic) + neutral - penalty


# Lead (and, for the EUC-style ones, trail) bytes of the characters everyday text uses:
# punctuation, kana, Hangul and the first-level ideographs of each standard.  The same
# bytes read in the wrong East Asian charset land in rarely used characters.
_COMMON_LEAD = {
    "gb18030": ((0xA1, 0xA3), (0xB0, 0xF7)),
    "big5": ((0xA1, 0xA3), (0xA4, 0xC6)),
    "shift_jis": ((0x81, 0x84), (0x88, 0x98)),
    "euc_jp": ((0xA1, 0xA5), (0xB0, 0xCF)),
    "cp949": ((0xA1, 0xA3), (0xB0, 0xC8)),
}
_HIGH_TRAIL = frozenset({"gb18030", "euc_jp", "cp949"})
# EUC-KR Hangul and GB2312 hanzi share their byte ranges, so the ranges above cannot
# tell Korean from Chinese; the characters everyday text is made of can.  Korean read
# as GBK gives rare hanzi ("感谢" is never "皑荤"), Chinese read as EUC-KR rare Hanja.
_FREQUENT = frozenset(
    "이다는의에하고가을를지서사기로요니습도한들으수시자어아해나인대리세게있것주적부정전"
    "안보일상제드여우오라면만내거와과경없성저감합녕확문메버접속되않탁린립님께씨용비번호계"
    "회원결개발청필했었였겠좋월년분새진행받할및"
    "的一是不了在人有我他这這个個们們中来來上大为為和国國地到以说說时時要就出会會可也你对對"
    "生能而子那得于於着著下自之年过過发發后後作里裡用道行所然家种種事成方多经經么麼去法学學"
    "如都同现現当當没沒动動面起看定天分还還进進好小部其些主样樣理心本前开開但因只从從想实實"
    "请請谢謝您问問题題服务務器件邮郵无無访訪帮幫助查检檢系统統号號码碼网網站收登录錄客户戶"
)


def _frequent(char: str) -> bool:
    return char in _FREQUENT or "\u3041" <= char <= "\u30fa"  # or kana


def _common(char: str, codec: str) -> bool:
    encoded = char.encode(codec, "ignore")
    if len(encoded) != 2:
        return False
    lead, trail = encoded
    if codec in _HIGH_TRAIL and trail < 0xA1:
        return False
    return any(low <= lead <= high for low, high in _COMMON_LEAD[codec])


_WIDE_RUN = re.compile(r"[\u3000-\uff60\uffa0-\U0010ffff]+")


def _asian_score(text: str, codec: str) -> float:
    """Common ideographs, kana and Hangul in runs; one alone between Latin letters, a
    rare character, a half-width katakana or another non-ASCII character is a
    mis-decode."""
    score = 0.0
    wide = 0
    for run in _WIDE_RUN.finditer(text):
        chars = run.group()
        wide += len(chars)
        value = sum(
            (1.5 if _common(char, codec) else -1.0) + (1.0 if _frequent(char) else 0.0)
            for char in chars
        )
        score += value if len(chars) > 1 else min(value, 0.0) - 3.0
    other = len(_NON_ASCII.findall(text)) - wide
    return score - 1.5 * other


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def text_score(text: str, codec: str) -> float:
    """How plausible ``text`` is as the decoding of its bytes in ``codec``."""
    return _asian_score(text, codec) if codec in _ASIAN else european_score(text)


def _normalizer_guess(sample: bytes) -> str | None:
    """charset-normalizer's pick among the East Asian charsets, for enough bytes."""
    from charset_normalizer import from_bytes  # imported when first needed: rare path

    best = from_bytes(sample[:_NORMALIZER_SAMPLE], cp_isolation=list(_ASIAN)).best()
    return best.encoding if best is not None else None


def guess_charset(data: bytes, hints: tuple[str, ...] = ()) -> str:
    """The codec name most likely to have produced ``data`` (which is not UTF-8)."""
    sample = data[:_SAMPLE]
    # A multi-byte character cut by the sample's end must not fail the strict decodes.
    cut = len(sample) < len(data)
    for hint in hints:
        text = _strict(sample, hint) if not cut else sample.decode(hint, "ignore")
        if text is not None and text_score(text, hint) > 0:
            return hint
    high = len(_HIGH_BYTE.findall(sample))
    scored: list[tuple[float, int, str]] = []
    for order, codec in enumerate(_EUROPEAN):
        text = _strict(sample, codec) if not cut else sample.decode(codec, "ignore")
        if text is not None:
            scored.append((european_score(text), -order, codec))
    best = max(scored, default=None)
    if best is not None and best[0] >= high / 2:
        return best[2]  # every other high byte a letter of one family: European prose
    if high >= _ASIAN_MIN_HIGH_BYTES:
        asian = _normalizer_guess(sample)
        if asian is not None:
            text = sample.decode(asian, "ignore")
            if _asian_score(text, asian) > high / 4:
                return asian
    for order, codec in enumerate(_ASIAN, start=len(_EUROPEAN)):
        text = _strict(sample, codec) if not cut else sample.decode(codec, "ignore")
        if text is not None:
            scored.append((_asian_score(text, codec), -order, codec))
    if not scored:
        return "cp1252"
    score, _, codec = max(scored)
    return codec if score > 0 else "cp1252"
