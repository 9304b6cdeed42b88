"""Typed SQLAlchemy 2.0 models: the schema mailgate keeps.

Alembic migrations in ``alembic/versions`` are the only way this schema reaches a
database; ``tests/db/test_migrations.py`` proves the two agree.  Times are stored as
timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BigInteger primary keys that still autoincrement on SQLite (which only does so for
# INTEGER PRIMARY KEY).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}  # noqa: RUF012


class InboundMessage(Base):
    """One received message, stored raw before anything answers the sender.

    status: received → processing → done | retry → … | quarantined.
    """

    __tablename__ = "inbound_message"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16))  # smtp | lmtp | pipe | mbox | maildir
    source_ref: Mapped[str | None] = mapped_column(String(512), unique=True)
    peer: Mapped[str | None] = mapped_column(String(255))
    mail_from: Mapped[str | None] = mapped_column(String(512))
    rcpt_to: Mapped[list[str]] = mapped_column(JSON)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(String(64))  # quarantine reason code
    verdict: Mapped[str | None] = mapped_column(String(32))
    rule_hits: Mapped[list[str]] = mapped_column(JSON, default=list)
    acknowledge: Mapped[bool] = mapped_column(Boolean, default=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))
    processed_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_inbound_message_due", "status", "next_attempt_at"),)


class Ticket(Base):
    __tablename__ = "ticket"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, unique=True)
    subject: Mapped[str] = mapped_column(Text)
    queue: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    status: Mapped[str] = mapped_column(String(16), default="new")  # new | open | resolved
    requester: Mapped[str] = mapped_column(String(512), index=True)
    requester_name: Mapped[str] = mapped_column(String(512), default="")
    language: Mapped[str] = mapped_column(String(8))
    helpdesk_address: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    articles: Mapped[list[Article]] = relationship(
        back_populates="ticket", order_by="Article.id", cascade="all, delete-orphan"
    )


class Article(Base):
    """One message of a conversation, inbound or outbound."""

    __tablename__ = "article"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_message.id"))
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    author: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)  # what the author wrote, quotes removed
    body_text: Mapped[str] = mapped_column(Text)  # the full plain text
    html: Mapped[str | None] = mapped_column(Text)  # sanitized
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    # Message-ID + body digest of an inbound article: the same mail delivered twice
    # (two MX paths, an MTA retry after a lost 250) collides here and stays one article.
    dedup_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]

    ticket: Mapped[Ticket] = relationship(back_populates="articles")
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="article", order_by="Attachment.id", cascade="all, delete-orphan"
    )


class Blob(Base):
    """Attachment bytes, stored once per content hash."""

    __tablename__ = "blob"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Attachment(Base):
    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("article.id"), index=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("blob.sha256"))
    filename: Mapped[str] = mapped_column(String(255))  # display only, never a path
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int]

    article: Mapped[Article] = relationship(back_populates="attachments")


class OutboxMessage(Base):
    """A rendered outgoing mail.  Its Message-ID is fixed when it is rendered, so a
    resend after a crash is recognisably the same message."""

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # ack | …
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    mail_from: Mapped[str] = mapped_column(String(512))  # envelope sender; "" is <>
    rcpt_to: Mapped[list[str]] = mapped_column(JSON)
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_outbox_message_due", "status", "next_attempt_at"),)


class Counter(Base):
    """Named counters allocated under a row lock (ticket numbers)."""

    __tablename__ = "counter"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class ImapCursor(Base):
    """How far mailgate has read one IMAP folder (see ``ingest.imap``).

    ``last_uid`` is the highest UID examined under ``uidvalidity``; it only saves work —
    whether a message is stored is always decided by its ``source_ref`` in
    ``inbound_message``.  ``baseline_uid`` is the highest UID present when the folder
    was first read (or re-read after a UIDVALIDITY change): mail at or below it is
    historical and is acknowledged only when the account says so.
    """

    __tablename__ = "imap_cursor"

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    folder: Mapped[str] = mapped_column(String(300), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    baseline_uid: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]
