"""Web fault reports: which of OS, browser and version, URL and screenshot a report in
each of the five languages gives, and that other mail is not taken for one."""

from __future__ import annotations

import pytest

from mailgate.pipeline.webfault import ITEMS, is_web_fault, missing


@pytest.mark.parametrize(
    ("subject", "text"),
    [
        ("Site down", "Our website shows an error 500 since this morning."),
        ("Błąd", "Strona internetowa nie działa, wyświetla się błąd 502."),
        ("Chyba", "Webová stránka nefunguje, zobrazí sa chyba."),
        ("Chyba na webu", "Stránka se nenačítá, prohlížeč hlásí chybu 404."),
        ("Ошибка", "Сайт не открывается, в браузере ошибка 503."),
        ("Panel", "The control panel page is blank and does not load."),
    ],
)
def test_a_web_fault_in_any_language_without_details_lacks_all_four(
    subject: str, text: str
) -> None:
    assert is_web_fault(subject, text)
    assert missing(subject, text, ()) == ITEMS


@pytest.mark.parametrize(
    ("text", "lacks"),
    [
        (
            "Site https://shop.example/cart fails with error 500 in Firefox 128 on Windows 11.",
            ("screenshot",),
        ),
        ("Strona www.sklep.example nie działa w przeglądarce Chrome wersja 126, Ubuntu.", ()),
        ("Stránka nefunguje, používam macOS a Safari.", ("browser", "url")),
        ("Chyba na stránce, prohlížeč Edge verze 125, Android.", ("url",)),
        ("Сайт http://site.example не открывается, Яндекс Браузер 24.4, Windows 10.", ()),
    ],
)
def test_only_what_is_missing_is_asked_for(text: str, lacks: tuple[str, ...]) -> None:
    # The first report comes without an image; the others with a screenshot attached.
    attached = () if "screenshot" in lacks else ("image/png",)
    assert missing("", text, attached) == lacks


def test_an_image_attachment_is_the_screenshot_and_other_files_are_not() -> None:
    text = "Our website shows error 500."
    assert "screenshot" not in missing("", text, ("text/plain", "image/jpeg"))
    assert "screenshot" in missing("", text, ("application/pdf",))


@pytest.mark.parametrize(
    "text",
    [
        "Please send me the invoice for October.",
        "Z mojej strony wszystko w porządku, dziękuję za pomoc.",  # "strona" = side
        "The VPS does not respond to ping since 10:15 UTC.",
        "Prosím o zmenu fakturačnej adresy.",
        "Какой тариф выбрать для сайта?",  # about a site, nothing broken
    ],
)
def test_other_mail_is_not_a_web_fault(text: str) -> None:
    assert missing("", text, ()) == ()
