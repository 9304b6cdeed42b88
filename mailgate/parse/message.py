"""Frozen values that describe one inbound message after parsing and classification.

These are the currency of the sans-I/O core: ``parse.parse`` turns raw bytes into a
``ParsedMessage``; ``autoreply.classify`` adds a ``Classification``; ``correlate`` and
``policy`` read both.  Nothing here touches the network, the clock or the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

# "report": a delivery status notification that is not a failure (delayed, delivered,
# relayed, expanded) — never a bounce, never a reason to suppress an address.
Kind = Literal["human", "autoreply", "bounce", "report", "list", "other"]


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: display name (decoded, may be empty) and lower-cased-domain address."""

    name: str
    address: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """An attachment, identified by the SHA-256 of its decoded bytes.

    ``filename`` is display text only: it is sanitized and never used as a path.
    """

    filename: str
    content_type: str
    size: int
    sha256: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Bounce:
    """What a delivery status notification says failed (RFC 3464, or a best guess)."""

    recipients: tuple[str, ...]
    status: str | None  # enhanced status code such as "5.1.1"
    action: str | None  # "failed", "delayed", "delivered", "relayed", "expanded"
    diagnostic: str | None = None  # the remote server's words, for operators


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """Everything the pipeline needs to know about one message, decoded.

    Message-IDs are stored without angle brackets.  ``from_`` is ``None`` unless the
    message has exactly one From header holding exactly one well-formed address; the
    reason is then in ``defects``.
    """

    message_id: str | None
    from_: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    subject: str
    date: datetime | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str  # what the author wrote: quoted reply and signature removed
    body_text: str  # the full plain text (HTML converted when there is no text part)
    html: str | None  # sanitized HTML, or None
    attachments: tuple[Attachment, ...]
    language: str | None  # "en", "pl", "sk", "cs", "ru" or None when unsure
    defects: tuple[str, ...]
    # Lower-cased header names with decoded values, in message order; what
    # ``autoreply.classify`` reads (Auto-Submitted, List-Id, Precedence …).
    headers: tuple[tuple[str, str], ...]
    # Content type of the top-level part and, for multipart/report, the text of the
    # message/delivery-status part (raw, undecoded fields), for bounce analysis.
    content_type: str
    delivery_status: str | None


@dataclass(frozen=True, slots=True)
class Classification:
    """What kind of mail this is, why, and (for bounces) what failed."""

    kind: Kind
    reasons: tuple[str, ...]
    bounce: Bounce | None = None
