"""parse.parse: charsets, strict From, hostile input, bodies, attachments, quotes, language.

End to end through ``parse``; helpers with tests of their own input are in test_mime,
test_quotes and test_language.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailgate.errors import PermanentError
from mailgate.parse import ParseLimits, parse
from mailgate.parse.message import Address, ParsedMessage

MAIL = Path(__file__).resolve().parent.parent / "data" / "mail"


def load(name: str) -> bytes:
    return (MAIL / name).read_bytes()


def fixture(name: str) -> ParsedMessage:
    return parse(load(name))


def with_from(*from_lines: str, body: str = "hello\r\n") -> bytes:
    head = "".join(f"From: {line}\r\n" for line in from_lines)
    return (
        f"{head}To: support@helpdesk.example\r\nSubject: t\r\n"
        f"Message-ID: <t@customer.example>\r\n\r\n{body}"
    ).encode()


# --------------------------------------------------------------------------- charsets


def test_koi8r_subject_and_body() -> None:
    msg = fixture("koi8r.eml")
    assert msg.subject == "Не работает почта на сервере"
    assert msg.from_ == Address("Иван Петров", "ivan.petrov@customer.example")
    assert msg.body_text.startswith("Здравствуйте!\n\nС утра не работает почта")
    assert msg.text.endswith("Пожалуйста, проверьте.")  # signature after "-- " removed
    assert "ООО Ромашка" in msg.body_text
    assert msg.language == "ru"
    assert msg.defects == ()


def test_windows1250_polish_quoted_printable() -> None:
    msg = fixture("pl_windows1250.eml")
    assert msg.subject == "Błąd 500 na stronie sklepu"
    assert msg.from_ == Address("Zażółć Gęślą", "zazolc@firma.example")
    assert "strona sklepu nie działa od rana, błąd 500." in msg.body_text
    assert msg.language == "pl"
    assert msg.message_id == "000001dc4c9a$7e1f3a40$7a5daec0$@firma.example"


def test_iso88592_polish_8bit() -> None:
    msg = fixture("pl_iso88592.eml")
    assert msg.subject == "Prośba o zmianę hasła do poczty"
    assert msg.from_ is not None and msg.from_.name == "Michał Wójcik"
    assert "Nie mogę się zalogować." in msg.text
    assert msg.language == "pl"


def test_windows1251_russian_base64() -> None:
    msg = fixture("ru_windows1251.eml")
    assert msg.subject == "Продление домена"
    assert msg.from_ == Address("Ольга Смирнова", "olga@customer.example")
    assert "Прошу продлить домен customer.example ещё на год." in msg.body_text
    assert msg.language == "ru"


def test_undeclared_8bit_body_falls_back_to_cp1252_with_defect() -> None:
    msg = fixture("undeclared_8bit.eml")
    assert "the invoice for our café says 120 € – is that correct?" in msg.body_text
    assert "body:undeclared-8bit" in msg.defects


def test_8bit_junk_in_headers_is_decoded_and_recorded() -> None:
    msg = fixture("header_junk.eml")
    # Raw latin-2 bytes are not UTF-8: decoded by a guess, never a crash.
    assert msg.subject.startswith("Zamówienie nr 5")
    assert "header:undeclared-8bit" in msg.defects
    # A raw 8-bit display name beside a plain ASCII address is a cosmetic defect
    # (issue 17): the identity is kept, the name decoded, the defect noted.
    assert msg.from_ == Address("Paweł Nowak", "pawel@firma.example")
    assert "from:8bit-name" in msg.defects
    # 8-bit bytes in the address itself still make it no identity at all.
    junk = parse(with_from("Jan <jan@firma.example>").replace(b"jan@", b"j\xb3n@"))
    assert junk.from_ is None
    assert "from:malformed" in junk.defects
    assert dict(msg.headers)["x-custom"].endswith("binary")
    assert msg.text == "Treść wiadomości jest poprawna."


def test_unknown_charset_name_decodes_as_utf8_with_defects() -> None:
    msg = fixture("unknown_charset.eml")
    assert msg.subject == "Problém s DNS"
    assert "nefunguje mi DNS záznam pre www." in msg.body_text
    assert "header:unknown-charset" in msg.defects
    assert "body:unknown-charset" in msg.defects
    assert msg.language == "sk"


def test_rfc2047_words_split_inside_a_utf8_character_are_joined() -> None:
    # "ł" is C5 82: the sender split it across two encoded-words.
    raw = b"From: a@b.example\r\nSubject: =?utf-8?Q?B=C5?= =?utf-8?Q?=82=C4=85d?=  x\r\n\r\n"
    assert parse(raw).subject == "Błąd x"


def test_subject_folding_tabs_and_newlines_become_single_spaces() -> None:
    raw = b"From: a@b.example\r\nSubject:  Server\r\n\tis\r\n  down\t now \r\n\r\nx\r\n"
    assert parse(raw).subject == "Server is down now"


# --------------------------------------------------------------------------- ids, date


def test_missing_message_id() -> None:
    msg = fixture("no_message_id.eml")
    assert msg.message_id is None
    assert msg.defects == ("message-id:missing",)
    assert msg.from_ == Address("", "cron@server1.customer.example")


def test_threading_ids_without_brackets_and_junk_skipped() -> None:
    raw = (
        b"From: a@b.example\r\nMessage-ID: <m1@x.example>\r\n"
        b"In-Reply-To: junk <p1@helpdesk.example> (comment)\r\n"
        b"References: <r1@x.example>\r\n <>  garbage <r2@helpdesk.example>\r\n\r\nx\r\n"
    )
    msg = parse(raw)
    assert msg.message_id == "m1@x.example"
    assert msg.in_reply_to == ("p1@helpdesk.example",)
    assert msg.references == ("r1@x.example", "r2@helpdesk.example")


def test_date_is_timezone_aware() -> None:
    assert fixture("koi8r.eml").date == datetime(
        2025, 11, 3, 12, 0, tzinfo=timezone(timedelta(hours=3))
    )
    raw = b"From: a@b.example\r\nDate: Mon, 3 Nov 2025 10:00:00 -0000\r\n\r\nx\r\n"
    assert parse(raw).date == datetime(2025, 11, 3, 10, 0, tzinfo=UTC)
    broken = parse(b"From: a@b.example\r\nDate: yesterday-ish\r\n\r\nx\r\n")
    assert broken.date is None
    assert "date:invalid" in broken.defects


# --------------------------------------------------------------------------- bodies


def test_empty_body() -> None:
    msg = fixture("empty_body.eml")
    assert (msg.body_text, msg.text, msg.html, msg.attachments) == ("", "", None, ())
    assert msg.subject == "Faktura 2025/11/0042"
    assert msg.language is None


def test_truncated_mime_keeps_parts_and_records_defect() -> None:
    msg = fixture("truncated_mime.eml")
    assert msg.text == "Please see the attached log, the site returns 502 since 8:00."
    assert [a.filename for a in msg.attachments] == ["error.log"]
    assert msg.attachments[0].data == b"2025-11-08 08:00:01 [error] upstream timed out\n"
    assert "CloseBoundaryNotFoundDefect" in msg.defects
    assert msg.content_type == "multipart/mixed"


def test_multipart_without_boundary_is_read_as_text() -> None:
    raw = b"From: a@b.example\r\nContent-Type: multipart/mixed\r\n\r\nplain words\r\n"
    msg = parse(raw)
    assert msg.text == "plain words"
    assert "NoBoundaryInMultipartDefect" in msg.defects


def test_html_only_is_converted_and_sanitized() -> None:
    msg = fixture("html_only.eml")
    assert msg.body_text.startswith("Hello,\n\nthe contact form on our website does not send")
    assert "Page   /contact" in msg.body_text  # inscriptis keeps the table layout
    assert "alert" not in msg.body_text and "color:red" not in msg.body_text
    assert msg.html is not None
    assert "<b>contact form</b>" in msg.html
    for hostile in ("<script", "alert(", "onclick", "javascript:", "<style"):
        assert hostile not in msg.html
    assert msg.language == "en"


def test_headers_are_lowercased_decoded_unfolded_and_capped() -> None:
    msg = fixture("koi8r.eml")
    names = [name for name, _ in msg.headers]
    assert names[:3] == ["received", "from", "to"]
    headers = dict(msg.headers)
    assert headers["subject"] == "Не работает почта на сервере"
    assert "\n" not in headers["received"] and "\t" not in headers["received"]
    many = b"From: a@b.example\r\n" + b"X-H: v\r\n" * 300 + b"\r\nx\r\n"
    capped = parse(many)
    assert len(capped.headers) == 200
    assert "headers:truncated" in capped.defects


# --------------------------------------------------------------------------- attachments


def test_attachments_hash_names_and_kinds() -> None:
    msg = fixture("attachments.eml")
    assert msg.text == "See the screenshot below and the files attached."
    assert msg.html is not None and "See the screenshot" in msg.html
    by_name = {a.filename: a for a in msg.attachments}
    assert list(by_name) == [
        "attachment",  # the inline image, no file name
        "passwd",  # ../../etc/passwd
        "faktura č. 1.pdf",  # RFC 2231 UTF-8 file name
        "invoicegpj.exe",  # RIGHT-TO-LEFT OVERRIDE removed
        "Original problem report.eml",  # a forwarded message is named by its Subject
    ]
    image = by_name["attachment"]
    assert image.content_type == "image/png" and image.data.startswith(b"\x89PNG")
    passwd = by_name["passwd"]
    assert passwd.data == b"root:x:0:0:root:/root:/bin/bash\r\n"  # bytes as on the wire
    assert passwd.size == len(passwd.data)
    assert passwd.sha256 == hashlib.sha256(passwd.data).hexdigest()
    assert by_name["faktura č. 1.pdf"].data == b"%PDF-1.4\n%fake\n"
    embedded = by_name["Original problem report.eml"]
    assert embedded.content_type == "message/rfc822"
    assert b"Subject: Original problem report" in embedded.data
    # The embedded message's text is an attachment, never part of the body.
    assert "inner text" not in msg.body_text


# --------------------------------------------------------------------------- strict From


def test_from_plain_forms() -> None:
    cases = {
        "jan@Firma.EXAMPLE": Address("", "jan@firma.example"),
        "<Jan.K@firma.example>": Address("", "Jan.K@firma.example"),
        "Jan K. Kowalski <jan@firma.example>": Address("Jan K. Kowalski", "jan@firma.example"),
        '"Kowalski, Jan" <jan@firma.example>': Address("Kowalski, Jan", "jan@firma.example"),
        "=?utf-8?q?Pawe=C5=82?= <p@firma.example>": Address("Paweł", "p@firma.example"),
        # The old comment form names the mailbox (issue 17).
        "jan@firma.example (Jan Kowalski)": Address("Jan Kowalski", "jan@firma.example"),
        '"john doe"@firma.example': Address("", '"john doe"@firma.example'),
        "Jan <jan@żółw.example>": Address("Jan", "jan@żółw.example"),
    }
    for header, expected in cases.items():
        msg = parse(with_from(header))
        assert msg.from_ == expected, header
        assert not [d for d in msg.defects if d.startswith("from:")], header


@pytest.mark.parametrize(
    ("froms", "defect"),
    [
        (("a@b.example", "c@d.example"), "from:multiple-headers"),
        (("a@b.example, c@d.example",), "from:multiple-addresses"),
        (("Alice <a@b.example>, Bob <c@d.example>",), "from:multiple-addresses"),
        (("victim@a.example<attacker@b.example>",), "from:malformed"),
        (("victim@a.example <attacker@b.example>",), "from:malformed"),
        (("Name <a@b.example> <c@d.example>",), "from:malformed"),
        (("Friends: a@b.example, c@d.example;",), "from:malformed"),
        (("Undisclosed recipients:;",), "from:malformed"),
        (("<@relay.example:a@b.example>",), "from:malformed"),
        (("a@b@c.example",), "from:malformed"),
        (("a@[192.0.2.1]",), "from:malformed"),
        (("Jan (nested (comment)) <a@b.example>",), "from:malformed"),
        (('"unterminated <a@b.example>',), "from:malformed"),
        (("a@b.example>",), "from:malformed"),
        (("",), "from:missing"),
        ((), "from:missing"),
    ],
)
def test_from_attacks_yield_no_identity(froms: tuple[str, ...], defect: str) -> None:
    msg = parse(with_from(*froms))
    assert msg.from_ is None
    assert defect in msg.defects


def test_from_quoted_address_lookalike_keeps_real_address_and_flags_it() -> None:
    # RFC 5322 is unambiguous here: the mailbox is the angle-addr.  The display
    # name is kept as text (for the UI to show next to the address) and flagged.
    msg = parse(with_from('"victim@a.example" <attacker@B.example>'))
    assert msg.from_ == Address("victim@a.example", "attacker@b.example")
    assert "from:name-looks-like-address" in msg.defects
    encoded = parse(with_from("=?utf-8?q?victim=40a.example?= <attacker@b.example>"))
    assert encoded.from_ == Address("victim@a.example", "attacker@b.example")
    assert "from:name-looks-like-address" in encoded.defects


def test_encoded_word_cannot_inject_structure() -> None:
    # Decodes to "x <victim@a.example>" but is only ever a display name.
    msg = parse(with_from("=?utf-8?b?eCA8dmljdGltQGEuZXhhbXBsZT4=?= <attacker@b.example>"))
    assert msg.from_ is not None and msg.from_.address == "attacker@b.example"


# --------------------------------------------------------------------------- To/Cc


def test_address_lists_are_best_effort() -> None:
    raw = (
        b"From: a@b.example\r\n"
        b'To: "Support, Team" <support@helpdesk.example>, bob@X.example, junk,\r\n'
        b"  Group: g1@g.example, g2@g.example;, Alice (home) <alice@y.example>\r\n"
        b"Cc: =?utf-8?q?Zo=C3=AB?= <zoe@z.example>\r\nReply-To: <reply@r.example>\r\n\r\nx\r\n"
    )
    msg = parse(raw)
    assert msg.to == (
        Address("Support, Team", "support@helpdesk.example"),
        Address("", "bob@x.example"),
        Address("", "g1@g.example"),
        Address("", "g2@g.example"),
        Address("Alice", "alice@y.example"),
    )
    assert msg.cc == (Address("Zoë", "zoe@z.example"),)
    assert msg.reply_to == (Address("", "reply@r.example"),)


# --------------------------------------------------------------------------- hostile input


def huge_to(count: int) -> bytes:
    to = ", ".join(f"customer{i:05d}@example.com" for i in range(count))
    return f"From: a@b.example\r\nTo: {to}\r\nSubject: x\r\n\r\nhi\r\n".encode()


def test_10000_address_to_is_refused_before_parsing() -> None:
    raw = huge_to(10_000)
    start = time.perf_counter()
    with pytest.raises(PermanentError) as caught:
        parse(raw)
    assert caught.value.reason == "header-too-large"
    assert time.perf_counter() - start < 0.1


def test_too_many_addresses_with_a_raised_header_limit() -> None:
    limits = ParseLimits(max_header_bytes=1_000_000)
    with pytest.raises(PermanentError) as caught:
        parse(huge_to(10_000), limits)
    assert caught.value.reason == "too-many-addresses"
    assert len(parse(huge_to(1_000), limits).to) == 1_000


def deep_multipart(levels: int) -> bytes:
    head = b'From: a@b.example\r\nContent-Type: multipart/mixed; boundary="b0"\r\n\r\n'
    nest = b"".join(
        f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n'.encode()
        for i in range(levels)
    )
    return head + nest + f"--b{levels}\r\nContent-Type: text/plain\r\n\r\nx\r\n".encode()


def test_deep_multipart_nesting_is_refused_quickly() -> None:
    start = time.perf_counter()
    with pytest.raises(PermanentError) as caught:
        parse(deep_multipart(200))
    assert caught.value.reason == "mime-too-deep"
    assert time.perf_counter() - start < 0.1
    assert parse(deep_multipart(10)).text == "x"


def test_deep_message_rfc822_nesting_is_refused() -> None:
    # No boundaries to scan: the post-parse tree check (or RecursionError) catches it.
    raw = b"From: a@b.example\r\nContent-Type: message/rfc822\r\n\r\n" * 300 + b"\r\nx\r\n"
    with pytest.raises(PermanentError) as caught:
        parse(raw)
    assert caught.value.reason == "mime-too-deep"


def test_too_many_parts() -> None:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\np\r\n" for _ in range(600))
    raw = b'From: a@b.example\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts
    with pytest.raises(PermanentError) as caught:
        parse(raw + b"--b--\r\n")
    assert caught.value.reason == "too-many-parts"


def test_garbage_bytes_are_not_mail() -> None:
    # Binary junk is reported as not a mail message (issue 17) ...
    for junk in (bytes(range(256)) * 8, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"", b"\r\n \r\n"):
        with pytest.raises(PermanentError) as caught:
            parse(junk)
        assert caught.value.reason == "not-mail"
    # ... while text without a header section is still read, without an identity.
    msg = parse(b"just some pasted text\r\nwithout headers\r\n")
    assert msg.from_ is None
    assert "from:missing" in msg.defects


def test_mail_parser_crashes_fall_back_to_the_same_stdlib_tree() -> None:
    # mail-parser raises HeaderParseError on a broken base64 encoded-word in To, and
    # ValueError on a NUL in a charset name; neither may cost a customer's message.
    raw = (
        b"From: Jan <jan@firma.example>\r\nTo: =?utf-8?b?Q?= <support@helpdesk.example>\r\n"
        b'Content-Type: text/plain; charset="utf\x00-8"\r\n\r\nDzie\xc5\x84 dobry\r\n'
    )
    msg = parse(raw)
    assert msg.from_ == Address("Jan", "jan@firma.example")
    assert msg.to == (Address("=?utf-8?b?Q?=", "support@helpdesk.example"),)
    assert msg.text == "Dzień dobry"
    assert "mailparser:HeaderParseError" in msg.defects
    assert "body:unknown-charset" in msg.defects


def test_embedded_message_the_generator_refuses_is_still_attached() -> None:
    # str.splitlines() breaks at U+001D, so email's generator sees an "embedded
    # header" and raises HeaderParseError; the part is written back as parsed.
    inner = b"From: x@y.example\r\nDate: Mon, 3 Nov 2025 10:\x1d0:03 +0100\r\n\r\ninner body\r\n"
    raw = (
        b'From: a@b.example\r\nContent-Type: multipart/mixed; boundary="o"\r\n\r\n'
        b"--o\r\nContent-Type: text/plain\r\n\r\nouter\r\n"
        b"--o\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--o--\r\n"
    )
    msg = parse(raw)
    assert msg.text == "outer"
    (embedded,) = msg.attachments
    assert embedded.filename == "message.eml"
    assert embedded.data.startswith(b"From: x@y.example\r\n")
    assert b"inner body" in embedded.data


# --------------------------------------------------------------------------- quotes


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("reply_en.eml", "Thanks, the mail server works again. Please close the ticket."),
        ("reply_pl.eml", "Dziękuję, teraz wszystko działa. Proszę zamknąć zgłoszenie.\n\nJan"),
        ("reply_sk.eml", "Ďakujem, pošta už funguje. Prosím, ticket môžete zavrieť."),
        ("reply_cs.eml", "Děkuji, pošta už zase funguje. Požadavek můžete uzavřít."),
        ("reply_ru.eml", "Спасибо, почта снова работает. Заявку можно закрыть."),
        ("reply_outlook.eml", "Hello,\n\nit works now, thank you!\n\nKlaus Becker\nIT Department"),
    ],
)
def test_quoted_reply_is_stripped(name: str, text: str) -> None:
    msg = fixture(name)
    assert msg.text == text
    assert len(msg.body_text) > len(msg.text)  # the full text is kept


# --------------------------------------------------------------------------- language


def test_language_from_fixtures() -> None:
    expected = {
        "reply_en.eml": "en",
        "reply_pl.eml": "pl",
        "reply_sk.eml": "sk",
        "reply_cs.eml": "cs",
        "reply_ru.eml": "ru",
    }
    assert {name: fixture(name).language for name in expected} == expected


# --------------------------------------------------------------------------- properties


def _parse_or_refuse(raw: bytes) -> None:
    try:
        result = parse(raw)
    except PermanentError as exc:
        # "unparseable" would mean one of *our* steps crashed on this input.
        assert exc.reason != "unparseable", exc.detail
        return
    assert isinstance(result, ParsedMessage)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_arbitrary_bytes_parse_or_refuse(raw: bytes) -> None:
    _parse_or_refuse(raw)


FIXTURES = sorted(p.name for p in MAIL.glob("*.eml"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(FIXTURES),
    edits=st.lists(
        st.tuples(
            st.floats(0, 1),
            st.sampled_from(["flip", "insert", "delete", "truncate"]),
            st.binary(min_size=1, max_size=8)
            | st.sampled_from(
                [b"\r\n", b"\n\n", b"--", b":", b"<", b">", b'"', b"(", b"=?", b"?=", b"\xff"]
            ),
        ),
        max_size=6,
    ),
)
def test_mutated_fixtures_parse_or_refuse(name: str, edits: list[tuple[float, str, bytes]]) -> None:
    data = bytearray(load(name))
    for where, how, chunk in edits:
        at = int(where * len(data))
        if how == "flip" and data:
            data[min(at, len(data) - 1)] ^= chunk[0]
        elif how == "insert":
            data[at:at] = chunk
        elif how == "delete":
            del data[at : at + len(chunk) * 4]
        else:
            del data[at:]
    _parse_or_refuse(bytes(data))


def test_nul_bytes_never_reach_the_stored_text() -> None:
    """Issue 16: a NUL in a body stayed in the article's text (and PostgreSQL refused
    the whole message); it now reads as the replacement character, with a defect."""
    raw = (
        b"From: jan@customer.example\r\nTo: support@helpdesk.example\r\n"
        b"Subject: log\x00file\r\nMessage-ID: <nul@customer.example>\r\n\r\n"
        b"before\x00after\r\n"
    )
    parsed = parse(raw)
    for value in (parsed.subject, parsed.text, parsed.body_text):
        assert "\x00" not in value
    assert "before\ufffdafter" in parsed.body_text
    assert "text:nul" in parsed.defects
