"""Every template renders in every language, with exactly the variables the code passes."""

from __future__ import annotations

import pytest

from mailgate import config
from mailgate.clock import utcnow
from mailgate.replies.render import (
    LANGUAGES,
    PAGE_SAMPLE_CONTEXT,
    SAMPLE_CONTEXT,
    Quoted,
    Renderer,
)

RENDERER = Renderer(config.Settings())


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("kind", sorted(SAMPLE_CONTEXT))
def test_every_mail_template_renders_in_every_language(kind: str, lang: str) -> None:
    assert (RENDERER.settings.template_dir / kind / lang).is_dir()
    rendered = RENDERER.render(
        kind, lang, from_address="support@helpdesk.example", to="jan@customer.example",
        in_reply_to=None, references=(), clock=utcnow, number=42, tag="[#42]",
        **SAMPLE_CONTEXT[kind],
    )  # fmt: skip
    assert "[#42]" in rendered.subject
    assert "42" in rendered.body
    assert "{{" not in rendered.body and "{%" not in rendered.body
    assert b"Content-Language: " + lang.encode() in rendered.raw


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("kind", sorted(PAGE_SAMPLE_CONTEXT))
def test_every_page_renders_in_every_language(kind: str, lang: str) -> None:
    html = RENDERER.page(kind, lang, **PAGE_SAMPLE_CONTEXT[kind])
    assert f'<html lang="{lang}">' in html
    assert 'value="confirm"' in html


def test_a_missing_variable_is_an_error_not_a_blank() -> None:
    import jinja2

    with pytest.raises(jinja2.UndefinedError):
        RENDERER.render(
            "challenge", "en", from_address="support@helpdesk.example", to="a@b.example",
            in_reply_to=None, references=(), clock=utcnow, number=1, tag="[#1]",
        )  # fmt: skip


def _render(kind: str, lang: str, quoted: Quoted | None = None, **context: object) -> str:
    variables = {**SAMPLE_CONTEXT[kind], **context}
    return RENDERER.render(
        kind, lang, from_address="support@helpdesk.example", to="jan@customer.example",
        in_reply_to=None, references=(), clock=utcnow, number=42, tag="[#42]",
        quoted=quoted, **variables,
    ).body  # fmt: skip


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("kind", sorted(SAMPLE_CONTEXT))
def test_every_mail_ends_with_the_signature_under_its_delimiter(kind: str, lang: str) -> None:
    # Text people wrote (the customer's mail in a notice, an #eta reason, command
    # errors) goes above the signature, never below it.
    body = _render(kind, lang, Quoted(after="what the customer wrote\n"))
    text, delimiter, signature = body.rpartition("\n-- \n")
    assert delimiter, f"{kind}/{lang}: no '-- ' signature delimiter"
    assert "Helpdesk" in signature and "customer wrote" not in signature
    assert "what the customer wrote" in text
    assert "\n--\n" not in body  # the delimiter keeps its space (RFC 3676 §4.3)


# Forms that assume the reader's (or the administrator's) gender, found in earlier
# wording; the templates now use neutral phrasing.
GENDERED = {
    "pl": ("pisałeś", "potwierdził", "odpowiedział", "pracownik", "napisał", "klient"),
    "cs": ("nepsali", "potvrdil ", "neodpověděl", "pracovník", "napsal", "zákazník "),
    "sk": ("nepísali", "potvrdil ", "neodpovedal", "pracovník", "napísal", "zákazník "),
    "ru": ("подтвердил ", "не ответил", "сотрудник", "написал", "клиент "),
}
VARIANTS: dict[str, list[dict[str, object]]] = {
    "challenge_result": [{"outcome": o} for o in ("confirmed", "refused", "expired")],
    "ack": [{"authorization": a} for a in ("awaiting_confirmation", "consultative")],
    "operator_notice": [{"event": e} for e in ("new", "reopened", "reply")],
}


@pytest.mark.parametrize("lang", sorted(GENDERED))
@pytest.mark.parametrize("kind", sorted(SAMPLE_CONTEXT))
def test_slavic_wording_is_gender_neutral(kind: str, lang: str) -> None:
    for variant in VARIANTS.get(kind, [{}]):
        rendered = RENDERER.render(
            kind, lang, from_address="support@helpdesk.example", to="jan@customer.example",
            in_reply_to=None, references=(), clock=utcnow, number=42, tag="[#42]",
            **{**SAMPLE_CONTEXT[kind], **variant},
        )  # fmt: skip
        text = f"{rendered.subject}\n{rendered.body}".lower()
        found = [form for form in GENDERED[lang] if form in text]
        assert not found, f"{kind}/{lang} {variant}: {found}"
    page = RENDERER.page("confirm", lang, **PAGE_SAMPLE_CONTEXT["confirm"]).lower()
    assert not [form for form in GENDERED[lang] if form in page]


ADMINISTRATOR = {"en": "administrator", "pl": "administr", "cs": "administr",
                 "sk": "administr", "ru": "администр"}  # fmt: skip
YOURS = {"en": "is yours", "pl": "pochodzi od ciebie", "cs": "je váš", "sk": "je vaša",
         "ru": "обращение ваше"}  # fmt: skip


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_confirm_page_speaks_to_the_administrator(lang: str) -> None:
    # The one who confirms is the account's administrator, not the person who wrote.
    page = RENDERER.page("confirm", lang, **PAGE_SAMPLE_CONTEXT["confirm"]).lower()
    assert ADMINISTRATOR[lang] in page
    assert YOURS[lang] not in page


# What the acknowledgement used to claim about a pasted password: "removed before
# storing".  The helpdesk's copy is cleaned after processing, and the mail has
# travelled anyway, so the text says just that.
UNTRUE = {"en": "before storing", "pl": "przed zapisaniem", "cs": "před uložením",
          "sk": "pred uložením", "ru": "перед сохранением"}  # fmt: skip


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_acknowledgement_says_only_what_is_true(lang: str) -> None:
    body = _render("ack", lang, password_redacted=True)
    assert UNTRUE[lang] not in body
    # A new mail with [#42] opens a new ticket for a sender who is not authenticated;
    # what always works is a reply, so that is the advice, not "keep [#42]".
    assert body.count("[#42]") == 1  # named once, as the request's number
    assert KEEP_THE_TAG[lang] not in body


KEEP_THE_TAG = {"en": "keep [#42]", "pl": "zachować", "cs": "ponechte", "sk": "ponechajte",
                "ru": "сохраняйте"}  # fmt: skip
