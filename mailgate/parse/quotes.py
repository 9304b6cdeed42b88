"""Reply text → what the author wrote: reply headers, quotes and signature cut off.

``parse`` stores the result as ``ParsedMessage.text`` (the article and the language
guess use it); ``body_text`` always keeps the whole body, so a wrong cut loses nothing.
"""

from __future__ import annotations

import re

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
