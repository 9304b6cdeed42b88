"""The pure parts of conversations: signed threading tokens, operators' command blocks,
priority and the incident checklist, language choice, and the reply markers that
issue 4 names."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mailgate.config import PrioritySettings
from mailgate.durations import format_duration, parse_duration
from mailgate.parse.language import choose_language, content_language
from mailgate.parse.quotes import strip_quotes
from mailgate.pipeline.priority import assess, missing_items
from mailgate.replies import tokens
from mailgate.tickets import commands
from mailgate.tickets.correlate import tag_pattern
from mailgate.verify.identity import extract

KEY = b"k" * 32


def test_reply_address_verifies_only_for_its_recipient_role_and_key() -> None:
    address = tokens.reply_address(KEY, "Support@Helpdesk.example", 12, "c", "Jan@Customer.example")
    assert address.startswith("support+12.c.") and address.endswith("@helpdesk.example")
    token = tokens.read_address(KEY, address.upper(), "jan@customer.example")
    assert token == tokens.AddressToken(12, "c", "support@helpdesk.example")
    assert tokens.read_address(KEY, address, "mallory@evil.example") is None
    assert tokens.read_address(b"x" * 32, address, "jan@customer.example") is None
    # Another ticket number or role with the same tag is a forgery.
    assert tokens.read_address(KEY, address.replace("+12.", "+13."), "jan@customer.example") is None
    assert tokens.read_address(KEY, address.replace(".c.", ".o."), "jan@customer.example") is None
    assert tokens.read_address(KEY, "support@helpdesk.example", "jan@customer.example") is None


def test_message_id_names_the_ticket_only_for_its_recipient() -> None:
    first = tokens.message_id(KEY, 7, "jan@customer.example", "helpdesk.example")
    second = tokens.message_id(KEY, 7, "jan@customer.example", "helpdesk.example")
    assert first != second  # unique per mail
    assert tokens.read_message_id(KEY, f"<{first}>", "JAN@customer.example") == 7
    assert tokens.read_message_id(KEY, first, "bob@customer.example") is None
    assert (
        tokens.read_message_id(KEY, first.replace("t7.", "t8.", 1), "jan@customer.example") is None
    )
    assert tokens.looks_signed(first) and not tokens.looks_signed("abc@customer.example")


@pytest.mark.parametrize(
    "subject",
    ["Re: [#42] VPS", "RE: RE: [#42]", "AW: [#42] x", "Odp: [#42]", "Odp.: [# 42 ] y",
     "Ответ: [#42] сервер", "Fwd: Re: [#42]", "SV: [#42]"],
)  # fmt: skip
def test_subject_tag_is_found_after_any_prefix(subject: str) -> None:
    assert tag_pattern("[#{number}]").findall(subject) == ["42"]


def test_a_custom_subject_tag_format() -> None:
    assert tag_pattern("(Ticket {number})").findall("Re: (Ticket 9) hello [#3]") == ["9"]


OPERATORS = {"anna": "anna@staff.example", "anna@staff.example": "anna@staff.example"}
QUEUES = frozenset({"technical", "billing"})


def test_command_block_is_read_from_the_top_only() -> None:
    block = commands.read(
        "\n#status resolved\n#priority HIGH\n#assign anna\n#queue billing\n"
        "#eta 2h waiting for the datacenter\n\nDone, see below.\n#status closed\n",
        queues=QUEUES,
        operators=OPERATORS,
    )
    assert block.errors == ()
    assert [(c.name, c.value) for c in block.commands] == [
        ("status", "resolved"),
        ("priority", "high"),
        ("assign", "anna@staff.example"),
        ("queue", "billing"),
        ("eta", ""),
    ]
    assert block.commands[-1].duration == timedelta(hours=2)
    assert block.commands[-1].reason == "waiting for the datacenter"
    # Events and notes show the command as written: the #eta keeps its duration.
    assert block.commands[-1].shown == "#eta 2h waiting for the datacenter"
    assert block.commands[0].shown == "#status resolved"
    assert block.text == "Done, see below.\n#status closed"  # later lines are text
    assert not block.note


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("#status done", "status must be one of"),
        ("#priority urgent", "priority must be one of"),
        ("#assign bob", "no operator 'bob'"),
        ("#queue sales", "no queue 'sales'"),
        ("#eta soon", "#eta <duration"),
        ("#eta 2h", "#eta <duration"),
        ("#close", "unknown command"),
        ("#note please", "#note takes no argument"),
    ],
)
def test_invalid_commands_are_reported(text: str, error: str) -> None:
    block = commands.read(f"#status open\n{text}\nHello", queues=QUEUES, operators=OPERATORS)
    [reported] = block.errors
    assert error in reported and text.split()[0] in reported


def test_note_and_text_that_merely_starts_with_a_hash() -> None:
    assert commands.read("#note\nCalled the customer.", queues=QUEUES, operators={}).note
    block = commands.read("#123456 is the order number", queues=QUEUES, operators={})
    assert block.commands == () and block.errors == () and block.text.startswith("#123456")


def test_durations() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("0m") is None and parse_duration("soon") is None
    for written in ("1h30m", "2d", "1d2h5m", "45m"):
        duration = parse_duration(written)
        assert duration is not None and format_duration(duration) == written


@pytest.mark.parametrize(
    ("subject", "text", "reason"),
    [
        ("Server down!", "", "keyword:server down"),
        ("Awaria", "Od rana awaria serwera", "keyword:awaria"),
        ("web", "Stránka nefunguje.", "keyword:nefunguje"),
        ("Сайт", "Сайт не работает с утра", "keyword:не работает"),
    ],
)
def test_high_priority_from_keywords_in_five_languages(
    subject: str, text: str, reason: str
) -> None:
    assert assess(subject, text, (), PrioritySettings()).reason == reason


def test_high_priority_from_headers_only_when_enabled() -> None:
    headers = (("x-priority", "1 (Highest)"),)
    assert assess("hello", "", headers, PrioritySettings()).reason == "header:x-priority=1"
    assert assess("hi", "", (("importance", "High"),), PrioritySettings()).priority == "high"
    assert assess("hi", "", headers, PrioritySettings(headers=False)).priority == "normal"
    assert assess("hi", "", (("x-priority", "3"),), PrioritySettings()).reason is None


def test_incident_checklist_names_exactly_what_is_missing() -> None:
    text = "Serwer nie działa."
    assert missing_items("Awaria", text, extract("Awaria", text)) == (
        "target",
        "service",
        "start_time",
        "diagnostics",
    )
    full = "VPS 192.0.2.10 is down since 10:15 UTC.\nping: Request timed out, 100% packet loss."
    assert missing_items("Outage", full, extract("Outage", full)) == ()
    partial = "Order #123456: the website shows an error since this morning."
    assert missing_items("down", partial, extract("down", partial)) == ("start_time",)


def test_language_preference_order() -> None:
    headers = (("content-language", "sk-SK, en"),)
    assert content_language(headers) == "sk"
    assert content_language((("content-language", "de"),)) is None
    assert choose_language(None, "sk", "pl", "cs", "en") == "sk"
    assert choose_language("ru", "sk", "pl", "cs", "en") == "ru"
    assert choose_language(None, None, None, "cs", "en") == "cs"
    assert choose_language(None, "de", None, None, "xx") == "en"


@pytest.mark.parametrize(
    "header",
    [
        "On Mon, 23 Nov 2026 at 09:00, Helpdesk <support@helpdesk.example> wrote:",
        "W dniu 23.11.2026 o 09:00, Helpdesk pisze:",
        "Dňa 23. 11. 2026 o 9:00 Helpdesk napísal:",
        "23.11.2026 09:00, Helpdesk написал(а):",
        "From: Helpdesk <support@helpdesk.example>\nSent: Monday, November 23, 2026 9:00 AM\n"
        "To: Jan\nSubject: [#1] Serwer",
    ],
)
def test_markers_named_in_issue_4_are_cut(header: str) -> None:
    body = f"Thanks, it works.\n\n{header}\n> We restarted the server.\nold\n"
    assert strip_quotes(body) == "Thanks, it works."
