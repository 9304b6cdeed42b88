"""Ticket lookup time as the ticket count grows: 10 000 tickets, then 1 000 000.

A fresh database (migrated by Alembic, so with the real indexes) is filled with bulk
``INSERT … SELECT`` over a number series — straight SQL, not the pipeline, which would
take hours for a million tickets.  Every ticket gets one inbound article with its own
Message-ID; requesters repeat every 5 000 tickets.  After each fill the database is
ANALYZEd (as autovacuum / a maintained SQLite would be), warmed with a few lookups,
then timed over ``lookups`` random tickets of the whole range, each in a session of
its own (as one ``mailgate ticket show`` or one API request has):

  number   — ``cli.ticket_doc``: what ``mailgate ticket show NUMBER`` reads (the ticket
             by number, account, participants, articles, events);
  msgid    — ``correlate.find_ticket`` for a reply whose In-Reply-To names the
             ticket's article, from its authenticated requester (the article join and
             the participant check);
  token    — ``correlate.find_ticket`` for a reply to the ticket's signed reply
             address (HMAC check, then the ticket by number).

The figure is the median; the target compares the median at 1 M with the one at 10 k.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from mailgate.cli import ticket_doc
from mailgate.config import DatabaseSettings
from mailgate.parse.message import Address, ParsedMessage
from mailgate.replies import tokens
from mailgate.store import migrate
from mailgate.store.db import make_engine, make_sessions
from mailgate.store.models import Article, Ticket
from mailgate.tickets import correlate

KEY = b"bench-threading-key"
HELPDESK = "support@helpdesk.example"
SENDERS = 5000
TAGS = correlate.tag_pattern("[#{number}]")


@dataclass
class Lookup:
    tickets: int
    fill_seconds: float
    number_ms: float  # medians
    number_p99_ms: float
    msgid_ms: float
    token_ms: float


def requester(number: int) -> str:
    return f"customer{number % SENDERS}@customer.example"


def article_mid(number: int) -> str:
    return f"bench-{number}@customer.example"


def _template(sessions: sessionmaker[Session]) -> None:
    """Ticket 1 and its article through the ORM: the rows every copy is made from, so
    the copies have exactly the column formats mailgate itself writes."""
    now = datetime.now(UTC)
    with sessions.begin() as session:
        ticket = Ticket(
            number=1,
            subject="Server nie odpowiada",
            queue="technical",
            priority="normal",
            status="open",
            requester=requester(1),
            requester_name="Jan Kowalski",
            language="pl",
            helpdesk_address=HELPDESK,
            authorization="consultative",
            created_at=now,
            updated_at=now,
        )
        session.add(ticket)
        session.flush()
        session.add(
            Article(
                ticket_id=ticket.id,
                direction="in",
                author=requester(1),
                subject=ticket.subject,
                text="Od rana serwer nie działa.",
                body_text="Od rana serwer nie działa.",
                internal=False,
                message_id=article_mid(1),
                auth={"result": "pass", "reasons": []},
                created_at=now,
            )
        )


_TICKET_COLUMNS = (
    "subject, queue, priority, status, requester_name, language, helpdesk_address, "
    '"authorization", created_at, updated_at'  # a reserved word on PostgreSQL
)
_ARTICLE_COLUMNS = "direction, subject, text, body_text, internal, auth, created_at"


def _series(dialect: str, first: int, last: int) -> str:
    if dialect == "sqlite":
        return (
            f"WITH RECURSIVE s(n) AS (SELECT {first} UNION ALL SELECT n + 1 FROM s "
            f"WHERE n < {last}) "
        )
    return ""


def _fill(engine: Engine, first: int, last: int) -> None:
    """Tickets ``first``..``last`` (and one article each), copied from ticket 1."""
    dialect = engine.dialect.name
    source = "s" if dialect == "sqlite" else f"generate_series({first}, {last}) AS s(n)"
    concat = "||"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"{_series(dialect, first, last)}"
                f"INSERT INTO ticket (number, requester, {_TICKET_COLUMNS}) "
                f"SELECT s.n, 'customer' {concat} (s.n % {SENDERS}) {concat} "
                f"'@customer.example', {_TICKET_COLUMNS} "
                f"FROM {source}, (SELECT * FROM ticket WHERE number = 1) t"
            )
        )
        conn.execute(
            text(
                f"INSERT INTO article (ticket_id, author, message_id, {_ARTICLE_COLUMNS}) "
                f"SELECT t.id, t.requester, 'bench-' {concat} t.number {concat} "
                f"'@customer.example', {', '.join('a.' + c for c in _ARTICLE_COLUMNS.split(', '))} "
                f"FROM ticket t, (SELECT * FROM article WHERE message_id = '{article_mid(1)}') a "
                f"WHERE t.number BETWEEN {first} AND {last}"
            )
        )
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def _parsed(number: int, in_reply_to: tuple[str, ...]) -> ParsedMessage:
    sender = requester(number)
    return ParsedMessage(
        message_id=f"reply-{number}@customer.example",
        from_=Address("", sender),
        reply_to=(),
        to=(Address("", HELPDESK),),
        cc=(),
        subject="Re: Server nie odpowiada",
        date=None,
        in_reply_to=in_reply_to,
        references=in_reply_to,
        text="Nadal nie działa.",
        body_text="Nadal nie działa.",
        html=None,
        attachments=(),
        language="pl",
        defects=(),
        headers=(),
        content_type="text/plain",
        delivery_status=None,
    )


def _by_msgid(session: Session, number: int) -> int:
    clues = correlate.Clues(requester(number), True, (HELPDESK,), KEY)
    found = correlate.find_ticket(session, _parsed(number, (article_mid(number),)), clues, TAGS)
    assert found.match is not None and found.match.number == number, (number, found)
    return found.match.number


def _by_token(session: Session, number: int) -> int:
    address = tokens.reply_address(KEY, HELPDESK, number, "c", requester(number))
    clues = correlate.Clues(requester(number), False, (address,), KEY)
    found = correlate.find_ticket(session, _parsed(number, ()), clues, TAGS)
    assert found.match is not None and found.match.number == number, (number, found)
    return found.match.number


def _by_number(session: Session, number: int) -> int:
    doc = ticket_doc(session, number)
    assert doc is not None and len(doc["articles"]) == 1, number
    return int(doc["number"])


def _time(sessions: sessionmaker[Session], how: object, numbers: list[int]) -> list[float]:
    timings = []
    for number in numbers:
        t0 = time.perf_counter()
        with sessions() as session:
            how(session, number)  # type: ignore[operator]
        timings.append(time.perf_counter() - t0)
    return timings


def run(url: str, sizes: tuple[int, ...], lookups: int, seed: int = 8) -> list[Lookup]:
    """Fill ``url`` (an empty database) up to each size in turn and time lookups."""
    engine = make_engine(DatabaseSettings(url=url))
    try:
        migrate.upgrade(engine)
        sessions = make_sessions(engine)
        _template(sessions)
        rng = random.Random(seed)
        results = []
        filled = 1
        for size in sizes:
            t0 = time.perf_counter()
            _fill(engine, filled + 1, size)
            fill_seconds = time.perf_counter() - t0
            filled = size
            warm = [rng.randint(1, size) for _ in range(min(100, lookups))]
            for how in (_by_number, _by_msgid, _by_token):
                _time(sessions, how, warm)
            numbers = [rng.randint(1, size) for _ in range(lookups)]
            by_number = _time(sessions, _by_number, numbers)
            by_msgid = _time(sessions, _by_msgid, numbers)
            by_token = _time(sessions, _by_token, numbers)
            ordered = sorted(by_number)
            results.append(
                Lookup(
                    tickets=size,
                    fill_seconds=fill_seconds,
                    number_ms=statistics.median(by_number) * 1000,
                    number_p99_ms=ordered[int(0.99 * (len(ordered) - 1))] * 1000,
                    msgid_ms=statistics.median(by_msgid) * 1000,
                    token_ms=statistics.median(by_token) * 1000,
                )
            )
        return results
    finally:
        engine.dispose()
