"""Abusive mail: the word lists in five languages with their inflections, and what
must not count — quoted replies, quoted error messages, innocent words."""

from __future__ import annotations

import pytest

from mailgate.pipeline.abusive import abusive_words, is_abusive


@pytest.mark.parametrize(
    "text",
    [
        # English
        "You fucking idiots, my site is down again!",
        "This is bullshit, fix it now.",
        "Your support staff are morons.",
        "What a bunch of f*cking clowns.",
        # Polish
        "Kurwa, znowu nie działa!",
        "Wy debile, ile można czekać?",
        "Spierdalajcie z takim hostingiem.",
        "Jesteście bandą kretynów.",
        "Zajebiście wam to wyszło, idioci.",
        # Slovak
        "Ste úplní idioti, kokoti jedni.",
        "Do riti, to je zasraná služba, debili.",
        # Czech
        "Vy jste ale kreténi, do prdele.",
        "Zase to nejde, zmrdi.",
        "Tohle je posraný hosting, hajzlové.",
        # Russian
        "Вы там совсем охуели? Сайт не работает!",
        "Идиоты, почините уже.",
        "Заебали, третий день ничего не работает, мудаки.",
        "Ваша поддержка — говно.",
        "Вы дебилы что ли?",
    ],
)
def test_insults_and_profanity_in_every_language_are_abusive(text: str) -> None:
    assert is_abusive("Problem", text), text


def test_the_subject_counts_too() -> None:
    assert is_abusive("You useless idiots", "Please look at ticket 5.")


@pytest.mark.parametrize(
    "text",
    [
        # quoted reply lines
        "Thanks, that helped.\n> you idiots never answer\n",
        # text in quotation marks: somebody else's words
        'My visitor wrote "this shop is shit" in the guestbook, can you delete it?',
        "Klient napisał „wy idioci” w formularzu, proszę usunąć wpis.",
        "Посетитель оставил комментарий «сайт говно», удалите его.",
        # a pasted error message
        "The installer stops with Fatal error: fuck this, aborting at line 3.",
        "Dostaję błąd: kurwa mać w logu aplikacji, co to jest?",
        "Skript vypíše chyba: debil not found",
        "2026-11-23 10:15:02 worker idiot-check failed\nCan you look at it?",
        "    at com.example.Idiot.run(Idiot.java:12)\nThe app crashes.",
    ],
)
def test_quoted_words_and_error_messages_do_not_count(text: str) -> None:
    assert not is_abusive("Question", text), abusive_words("Question", text)


@pytest.mark.parametrize(
    "text",
    [
        "Scunthorpe office needs a new assignment of the class C network.",
        "Please pass the password reset to my assistant; the shitake shop is mine.",
        "Potrzebuję pomocy z pocztą, z mojej strony wszystko działa.",
        "Na strane 3 je chyba v texte. Je to sranda, ale opravte to prosím.",
        "Na straně klienta se stránka načítá pomalu, prosím o kontrolu.",
        "Мне нужно, чтобы вы помогли себе и тебе. Требуется хлеб и небо.",
        "Это уродливый дизайн, но он мой. Тупик в настройках DNS.",
        "Flame retardant products shop is down.",
        "Sukces! Wszystko działa, dziękuję.",
    ],
)
def test_innocent_words_are_not_abusive(text: str) -> None:
    assert not is_abusive("Hello", text), abusive_words("Hello", text)


def test_the_quick_search_answers_as_the_word_list_does() -> None:
    """``is_abusive`` searches bare stems in lower-cased text; ``abusive_words`` runs the
    word list itself.  Both must agree, word in the middle of text or alone, in any case."""
    stems = ["fuck", "f*ck", "F**K", "Kurwa", "nahuj", "hujowy", "jebać", "ЗАЕБАЛИ", "sranej"]
    stems += ["shit", "idioti", "мудаки", "xfuckx", "a*fuck", "hujem", "Hujx", "ebal", "huja"]
    for stem in stems:
        for text in (stem, f"so {stem}.", f"x{stem}", f"{stem}y", f"({stem})", stem.upper()):
            assert is_abusive("", text) == bool(abusive_words("", text)), text
