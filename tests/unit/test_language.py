"""language.detect_language on short texts in our five languages."""

from __future__ import annotations

import pytest

from mailgate.parse.language import detect_language


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Hello, the website is down, please help.", "en"),
        ("Dzień dobry, strona nie działa, proszę o pomoc.", "pl"),
        ("Dobrý den, nefunguje mi web, prosím o pomoc. Děkuji.", "cs"),
        ("Dobrý deň, nefunguje mi web, prosím o pomoc. Ďakujem.", "sk"),
        ("Здравствуйте, сайт не работает.", "ru"),
        ("12345 !!!", None),
        ("OK", None),
    ],
)
def test_language_detection(text: str, language: str | None) -> None:
    assert detect_language(text) == language
