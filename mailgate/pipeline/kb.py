"""Knowledge-base links: which of the configured ``[[kb]]`` articles a request points to.

Providers answer common questions with a link to their knowledge base.  ``suggest``
searches each article's ``match`` expression in the subject and the customer's own
text (quoted replies already removed) and returns up to ``MAX_LINKS`` articles, in the
order the configuration gives them, as (title, url) pairs — never any of the text that
matched.  It runs in the facts stage, so an expression that backtracks badly on some
mail costs that message its time budget, not the daemon.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mailgate.config import KbArticle

MAX_LINKS = 3
_SAMPLE = 20_000  # characters of text searched


def suggest(articles: Iterable[KbArticle], subject: str, text: str) -> tuple[tuple[str, str], ...]:
    body = f"{subject}\n{text[:_SAMPLE]}"
    found: list[tuple[str, str]] = []
    for article in articles:
        if len(found) == MAX_LINKS:
            break
        if re.search(article.match, body):
            found.append((article.title, article.url))
    return tuple(found)
