"""The DATA reader (ingest.dataread) on a real asyncio stream: dot-unstuffing, the end
of data only at CRLF . CRLF, the size limit and over-long lines answered after the dot."""

from __future__ import annotations

import asyncio

from mailgate.ingest.dataread import TOO_LONG, TOO_MUCH, read_data


def read(wire: bytes, limit: int | None = None, line_limit: int = 1001) -> tuple:
    """``read_data`` over ``wire``; also what is left on the stream after it returned."""

    async def go() -> tuple:
        reader = asyncio.StreamReader(limit=line_limit)
        reader.feed_data(wire)
        reader.feed_eof()
        raw, refusal = await read_data(reader, limit)
        return raw, refusal, await reader.read()

    return asyncio.run(go())


def test_lines_are_kept_as_sent_and_leading_dots_removed() -> None:
    wire = b"Subject: x\r\n\r\n..hidden dot\r\n.\r\n"
    raw, refusal, rest = read(wire + b"QUIT\r\n")
    assert raw == b"Subject: x\r\n\r\n.hidden dot\r\n"
    assert refusal is None and rest == b"QUIT\r\n"


def test_only_crlf_dot_crlf_ends_the_data() -> None:
    # Bare LF around the dot (the SMTP smuggling forms) is message content.
    wire = b"a\r\n\n.\r\nb\r\n.\nc\r\n.\r\n"
    raw, refusal, _ = read(wire)
    assert raw == b"a\r\n\n.\r\nb\r\n\nc\r\n"  # ".\nc" is a stuffed line: its dot goes
    assert refusal is None


def test_over_the_size_limit_is_read_to_the_dot_then_refused() -> None:
    wire = b"".join(b"%04d" % i + b"x" * 70 + b"\r\n" for i in range(100)) + b".\r\nRSET\r\n"
    raw, refusal, rest = read(wire, limit=1000)
    assert raw is None and refusal == TOO_MUCH
    assert rest == b"RSET\r\n"  # the next command is read as a command, not as data
    assert TOO_MUCH.startswith("552")


def test_the_limit_counts_bytes_on_the_wire() -> None:
    wire = b"12345678\r\n.\r\n"
    assert read(wire, limit=10)[0] == b"12345678\r\n"
    assert read(wire, limit=9)[1] == TOO_MUCH


def test_an_over_long_line_is_refused_after_the_dot() -> None:
    wire = b"short\r\n" + b"y" * 5000 + b"\r\nafter\r\n.\r\nNOOP\r\n"
    raw, refusal, rest = read(wire, line_limit=1001)
    assert raw is None and refusal == TOO_LONG
    assert rest == b"NOOP\r\n"


def test_a_stream_that_ends_before_the_dot_gives_nothing() -> None:
    assert read(b"Subject: x\r\n\r\nbody\r\n")[:2] == (None, None)


def test_a_large_message_comes_back_whole() -> None:
    body = b"".join(b"line %07d " % i + b"z" * 60 + b"\r\n" for i in range(60_000))
    wire = body.replace(b"\r\n", b"\r\n.", 10) + b".\r\n"  # some stuffed dots
    raw, refusal, _ = read(wire)
    assert refusal is None
    assert raw == body
