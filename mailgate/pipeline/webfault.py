"""Web faults: does a report about a site or panel page say what finding the fault needs?

Providers ask anyone reporting a broken site, an error page or a control-panel page to
give the operating system, the browser with its version, the URL and, where it helps,
a screenshot.  ``missing`` reads the subject and the visible text (five languages) and
the attachments: it returns () when the mail is not about a web fault, else the items
it lacks, in the order ``ITEMS`` asks for them, so the acknowledgement asks for exactly
those.  Pure; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ITEMS = ("os", "browser", "url", "screenshot")
_SAMPLE = 20_000  # characters of text searched

# What a web fault is about: a site, a page, a URL, a panel, a browser, an HTTP error.
_WEB = re.compile(
    r"(?:\b(?:web\s?site|site|web\s?page|page|url|link|browser|control panel|"
    r"customer (?:panel|cent(?:er|re))|cpanel|plesk|webmail|"
    r"stron\w* (?:www|internetow\w*)|witryn\w*|przeglądar\w*|panel\w* klienta|"
    r"stránk\w*|webov\w*|prehliadač\w*|prohlížeč\w*|zákazníck\w* centr\w*|"
    r"zákaznick\w* centr\w*|"
    r"сайт\w*|страниц\w*|ссылк\w*|браузер\w*|панел\w* управлени\w*|личн\w* кабинет\w*)\b|"
    r"https?://|\bwww\.|\bhttp\s?[45]\d\d\b|\b(?:403|404|500|502|503|504)\b)"
)
# That something is wrong with it.
_FAULT = re.compile(
    r"\b(?:error\w*|not (?:work\w*|load\w*|open\w*)|doesn'?t (?:work|load|open)|"
    r"does not (?:work|load|open)|broken|fail\w*|blank|down|cannot|can'?t|"
    r"nie działa\w*|nie (?:otwiera|ładuje|wyświetla) się|błąd\w*|błęd\w*|awari\w*|"
    r"nefunguj\w*|nejde|nenačít\w*|nenačí\w*|nezobraz\w*|chyb\w*|výpad\w*|"
    r"не работает|не открывается|не загружается|не отображается|ошибк\w*|недоступ\w*|"
    r"сбой\w*|\d{3} (?:error|bad gateway|forbidden|not found|service unavailable))"
)
_OS = re.compile(
    r"\b(?:windows(?:\s?(?:xp|vista|7|8(?:\.1)?|10|11))?|win ?(?:7|8|10|11)|mac ?os\w*|"
    r"os ?x|linux|ubuntu|debian|fedora|android|ios|ipados|chrome ?os|"
    r"виндовс\w*|линукс\w*|макос|андроид\w*)\b"
)
# A browser named with its version ("Firefox 128", "Chrome v.126", "Edge, verze 125").
_BROWSER = re.compile(
    r"\b(?:chrome|chromium|firefox|safari|edge|opera|brave|vivaldi|yandex(?: browser)?|"
    r"internet explorer|ie|яндекс(?:\.| )?браузер\w*|хром\w*|файрфокс|сафари|опер[аые])"
    r"[\s,:]*(?:(?:version|wersj\w*|verzi\w*|verze|верси\w*|v)\.?\s*)?\d+(?:\.\d+)*"
)
_URL = re.compile(r"\bhttps?://\S+|\bwww\.[a-z0-9-]+\.\S+")


def _body(subject: str, text: str) -> str:
    # The patterns are written in lower case and matched against lower-cased text:
    # matching with IGNORECASE folded every character tried, five patterns over the
    # whole text, in the batch transaction (2 ms a message on the bench corpus; 0.6
    # this way, the same answer for every message of it).
    return f"{subject}\n{text[:_SAMPLE]}".lower()


def is_web_fault(subject: str, text: str) -> bool:
    body = _body(subject, text)
    return bool(_WEB.search(body) and _FAULT.search(body))


def missing(subject: str, text: str, attachment_types: Iterable[str]) -> tuple[str, ...]:
    """What a web fault report lacks; () when the mail is not about a web fault."""
    body = _body(subject, text)
    if not (_WEB.search(body) and _FAULT.search(body)):
        return ()
    have = {
        "os": bool(_OS.search(body)),
        "browser": bool(_BROWSER.search(body)),
        "url": bool(_URL.search(body)),
        "screenshot": any(t.lower().startswith("image/") for t in attachment_types),
    }
    return tuple(item for item in ITEMS if not have[item])
