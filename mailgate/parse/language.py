"""A cheap guess of the language a customer wrote in: en, pl, sk, cs or ru.

``parse`` feeds it the start of the subject and the stripped text.  The pipeline makes
the result the new ticket's language (and so the language of our replies); None means
unsure, and the configured default is used instead.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W\d_]+")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_MARKS = {
    "pl": set("ąęłńśźżć"),
    "cs": set("řěů"),
    "sk": set("ľĺŕôä"),
}
_STOPWORDS = {
    "pl": {
        "się", "jest", "nie", "proszę", "że", "czy", "dzień", "dobry", "mam", "jak",
        "dziękuję", "pozdrawiam", "witam", "mój", "moja", "mnie", "oraz", "działa",
    },
    "cs": {
        "prosím", "není", "děkuji", "je", "jsem", "jsou", "nebo", "také", "když", "který",
        "nefunguje", "dobrý", "den", "mám", "se", "pro", "mi",
    },
    "sk": {
        "prosím", "nefunguje", "ďakujem", "je", "som", "sú", "alebo", "ktorý", "deň",
        "aj", "už", "môj", "pretože", "dobrý", "mám", "sa", "pre", "mi",
    },
    "en": {
        "the", "please", "is", "and", "to", "my", "you", "not", "have", "with", "thanks",
        "hello", "i", "it", "for", "of", "this", "does", "can", "we", "our", "are",
    },
}  # fmt: skip


# word → languages it votes for, built once
_VOTES: dict[str, tuple[str, ...]] = {}
for _language, _words in _STOPWORDS.items():
    for _word in _words:
        _VOTES[_word] = (*_VOTES.get(_word, ()), _language)


def detect_language(text: str) -> str | None:
    """Guess en/pl/sk/cs/ru from script, diacritics and stop-words; None when unsure.

    A heuristic on purpose: it costs microseconds.  ``lingua-language-detector``
    restricted to these five languages can replace it if it proves too coarse.
    """
    lowered = text.lower()
    words = _WORD.findall(lowered)
    letters = sum(len(word) for word in words)
    if not letters:
        return None
    if len(_CYRILLIC.findall(lowered)) * 3 >= letters:
        return "ru"
    scores = dict.fromkeys(("en", "pl", "cs", "sk"), 0)
    for language, marks in _MARKS.items():
        scores[language] += 2 * sum(lowered.count(mark) for mark in marks)
    for word in words:
        for language in _VOTES.get(word, ()):
            scores[language] += 1
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < 2 or top == second:
        return None
    return best


SUPPORTED = ("en", "pl", "sk", "cs", "ru")


def content_language(headers: tuple[tuple[str, str], ...]) -> str | None:
    """The first supported language a Content-Language header declares ("pl-PL, en")."""
    for name, value in headers:
        if name.lower() != "content-language":
            continue
        for tag in value.split(","):
            primary = tag.strip().split("-", 1)[0].lower()
            if primary in SUPPORTED:
                return primary
    return None


def choose_language(*candidates: str | None) -> str:
    """The first supported candidate, in the caller's order of preference; else "en".

    The pipeline passes the account's preference, Content-Language, the detected
    language of the text, the queue's default and the helpdesk default.
    """
    for candidate in candidates:
        if candidate and candidate.lower() in SUPPORTED:
            return candidate.lower()
    return "en"
