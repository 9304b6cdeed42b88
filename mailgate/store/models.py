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
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from mailgate.store.states import TicketStatus

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
    purged_at: Mapped[datetime | None]  # retention emptied ``raw``; the ticket text stays
    # rspamd's answer ({"action", "score"}), or {"unscanned": why} when it was away;
    # None when nobody asked (see ``ingest.scan``).
    scan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # ``quarantine release``: processed as not spam (spam, flood and rule holds skipped).
    released_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_inbound_message_due", "status", "next_attempt_at"),)


class Ticket(Base):
    __tablename__ = "ticket"
    # The number PostgreSQL gives (a sequence, alembic 0012) comes back in the INSERT's
    # RETURNING rather than by a SELECT of its own.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 -- SQLAlchemy reads it once

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # On PostgreSQL the column's default; SQLite has none (``tickets.opening`` numbers).
    number: Mapped[int] = mapped_column(BigInteger, unique=True, server_default=FetchedValue())
    subject: Mapped[str] = mapped_column(Text)
    queue: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    # new | open | pending | resolved | closed
    status: Mapped[str] = mapped_column(String(16), default=TicketStatus.NEW)
    requester: Mapped[str] = mapped_column(String(512), index=True)
    requester_name: Mapped[str] = mapped_column(String(512), default="")
    language: Mapped[str] = mapped_column(String(8))
    helpdesk_address: Mapped[str] = mapped_column(String(512))
    # authorized | awaiting_confirmation | consultative | refused — whether the request
    # may act on the account (see verify/ and policy).
    authorization: Mapped[str] = mapped_column(String(24), default="consultative")
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Why the priority is what it is ("keyword:awaria", "header:x-priority=1").
    priority_reason: Mapped[str | None] = mapped_column(String(255))
    assignee: Mapped[str | None] = mapped_column(String(512))  # an operator's address
    # The first-response clock: due at creation, stopped by the first operator reply;
    # escalated_at marks the one escalation mail sent when it ran out.
    first_response_due: Mapped[datetime | None] = mapped_column(index=True)
    first_response_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    # Set by an operator's "#eta 2h reason": the customer was told when to expect more.
    eta_at: Mapped[datetime | None]
    eta_reason: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    # A reply to a ticket resolved too long ago opens a new ticket linking the old one.
    linked_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))

    articles: Mapped[list[Article]] = relationship(
        back_populates="ticket",
        order_by="Article.id",
        cascade="all, delete-orphan",
        foreign_keys="Article.ticket_id",
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
    # The sender-authentication verdict of an inbound article: {"result", "reasons"}.
    auth: Mapped[dict[str, Any] | None] = mapped_column(JSON)
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
    purged_at: Mapped[datetime | None]  # retention emptied ``data``


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
    resend after a crash is recognisably the same message.

    status: pending → sent | failed | suppressed | dropped; sent → bounced when a
    permanent DSN comes back.  ``reason`` is the machine-readable code of every
    non-delivery (``recipient-limit``, ``circuit-breaker``, ``relay-rejected`` …).
    """

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # ack | bounce-notice | …
    # Automatic mail (not written by a person) is rate-limited and stopped by the
    # circuit breaker; operator replies will be stored with False.
    automatic: Mapped[bool] = mapped_column(Boolean, default=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    # The message this mail answers: its id is the trace id in the logs, and its
    # receipt time starts the receipt-to-acknowledgement histogram.
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_message.id"))
    mail_from: Mapped[str] = mapped_column(String(512))  # envelope sender; "" is <>
    rcpt_to: Mapped[list[str]] = mapped_column(JSON)
    recipient: Mapped[str] = mapped_column(String(512))  # rcpt_to[0], lower-cased
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)  # unsigned: DKIM is added at send time
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    # An operator released this row (``outbox retry``): the automatic-mail gates no
    # longer hold it back.
    released: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    # What the last delivery status notification about this mail said.
    delivery_status: Mapped[str | None] = mapped_column(String(16))  # "5.1.1"
    delivery_action: Mapped[str | None] = mapped_column(String(16))  # failed | delayed
    delivery_detail: Mapped[str | None] = mapped_column(Text)
    delivery_reported_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_outbox_message_due", "status", "next_attempt_at"),
        Index("ix_outbox_message_recent", "recipient", "created_at"),
        Index("ix_outbox_message_created_at", "created_at"),
    )


class Suppression(Base):
    """An address that bounced permanently: no automatic mail to it until ``until``."""

    __tablename__ = "suppression"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    address: Mapped[str] = mapped_column(String(512), unique=True)  # lower-cased
    reason: Mapped[str] = mapped_column(String(64))  # "dsn:5.1.1"
    detail: Mapped[str] = mapped_column(Text, default="")
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox_message.id"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))
    created_at: Mapped[datetime]
    until: Mapped[datetime]
    notified_at: Mapped[datetime | None]  # the admin mailbox was told (once)


class Event(Base):
    """Something outgoing mail did or did not do, with its reason, for operators.

    kinds: bounce, delay, suppressed, send-failed, breaker-open, admin-notice.
    Events of a ticket appear in ``mailgate ticket show``; those without one (the
    circuit breaker) in ``mailgate outbox list``'s log.
    """

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"), index=True)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox_message.id"))
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_message.id"))
    address: Mapped[str | None] = mapped_column(String(512))
    reason: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_event_kind_created_at", "kind", "created_at"),)


class Operator(Base):
    """A helpdesk operator who works from a mail client, in one or more queues."""

    __tablename__ = "operator"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    address: Mapped[str] = mapped_column(String(512), unique=True)  # lower-cased
    name: Mapped[str] = mapped_column(String(255), default="")
    queues: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime]


class InstallKey(Base):
    """Random keys made once per install (the threading key when none is configured)."""

    __tablename__ = "install_key"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class Counter(Base):
    """Named counters allocated under a row lock (ticket numbers)."""

    __tablename__ = "counter"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class Account(Base):
    """A customer account of the hosting company: who may make official requests."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    login: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    language: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime]
    # The customer panel's password hash (bcrypt, argon2id, $6$ crypt, PBKDF2-SHA256),
    # for ``[verify] password_authorization``; never a plaintext password.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Password authorization is suspended until then (too many wrong passwords).
    password_locked_until: Mapped[datetime | None]

    addresses: Mapped[list[AccountAddress]] = relationship(
        back_populates="account", order_by="AccountAddress.id", cascade="all, delete-orphan"
    )
    identifiers: Mapped[list[AccountIdentifier]] = relationship(
        back_populates="account", order_by="AccountIdentifier.id", cascade="all, delete-orphan"
    )


class AccountAddress(Base):
    """A registered address of an account, with its role (admin, technical, billing, abuse)."""

    __tablename__ = "account_address"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    address: Mapped[str] = mapped_column(String(512), index=True)  # lower-cased
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]

    account: Mapped[Account] = relationship(back_populates="addresses")

    __table_args__ = (UniqueConstraint("account_id", "address", "role"),)


class AccountIdentifier(Base):
    """Something a customer names to say which account a mail is about."""

    __tablename__ = "account_identifier"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # domain | contract | order | ip | service
    value: Mapped[str] = mapped_column(String(255))  # normalized (see verify.identity)

    account: Mapped[Account] = relationship(back_populates="identifiers")

    __table_args__ = (UniqueConstraint("kind", "value"),)


class PasswordFailure(Base):
    """A wrong password for a login, counted per account and per sender (the oracle
    defence); never the password tried."""

    __tablename__ = "password_failure"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    login: Mapped[str] = mapped_column(String(128), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"), index=True)
    sender: Mapped[str] = mapped_column(String(512), index=True)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_message.id"))
    at: Mapped[datetime] = mapped_column(index=True)


class Challenge(Base):
    """A confirmation request sent to an account's admin mailbox.

    Only the SHA-256 of the token is stored; the token itself exists only in the mail.
    """

    __tablename__ = "challenge"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("ticket.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"))
    admin_address: Mapped[str] = mapped_column(String(512))
    requester: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    reminded_at: Mapped[datetime | None]
    used_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(16))  # confirmed | refused | expired


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


class ApiRequest(Base):
    """A POST the panel API carried out, by its ``Idempotency-Key``: a retry of it gets
    the stored answer instead of a second ticket or reply.

    Written in the transaction of the change itself, so a key is recorded exactly when
    its change is; ``fingerprint`` (SHA-256 of method, path and body) tells a retry from
    a different request reusing the key.
    """

    __tablename__ = "api_request"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token: Mapped[str] = mapped_column(String(64))  # the API token's name
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int]
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(index=True)

    __table_args__ = (UniqueConstraint("token", "key"),)


class WebhookEvent(Base):
    """A change to tell one webhook URL about, written in the change's own transaction.

    status: pending → sent | failed (given up after the webhook's lifetime; resendable).
    ``event_id`` is what a receiver de-duplicates by: one per change, the same for every
    URL and every retry.  The payload is the snapshot taken when the change committed.
    """

    __tablename__ = "webhook_event"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36))
    url: Mapped[str] = mapped_column(String(2048))
    type: Mapped[str] = mapped_column(String(32))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("ticket.id"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_webhook_event_due", "status", "next_attempt_at"),
        Index("ix_webhook_event_order", "url", "ticket_id", "status"),
        UniqueConstraint("event_id", "url"),
    )
