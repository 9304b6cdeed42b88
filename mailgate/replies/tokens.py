"""Signed threading tokens: the reply addresses and Message-IDs of the mail we send.

Every mail about a ticket carries two things only its recipient can know:

* a reply address ``<local>+<number>.<role>.<tag>@<domain>`` (plus-addressing on the
  helpdesk address it came from), where ``role`` is ``c`` for the customer, ``o`` for an
  operator's reply (relayed to the customer) and ``n`` for an operator's internal note;
* a Message-ID ``t<number>.<nonce>.<tag>@<domain>``, which mail clients quote back in
  In-Reply-To/References even when the reply goes to the plain helpdesk address.

Each tag is an HMAC-SHA256 over the purpose, the ticket number and the recipient's
address, under the install's threading key (``threading.secret_env``, else a random
key kept in the database: ``store.secrets``).  A token therefore proves two things at
once: that the writer saw a mail we sent about that ticket, and that it was sent to the
address now in From.  A ticket number alone proves nothing (THREATS.md).

Pure functions over strings and a key; ``correlate`` decides what a valid token means.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal

Role = Literal["c", "o", "n"]  # customer reply, operator reply, operator note
TAG_CHARS = 20  # 80 bits: far beyond online guessing, short enough for a local part

_ADDRESS = re.compile(r"^([^@+\s]+)\+(\d{1,12})\.([con])\.([0-9a-f]+)@(.+)$", re.IGNORECASE)
_MESSAGE_ID = re.compile(r"^t(\d{1,12})\.([0-9a-f]{8,32})\.([0-9a-f]+)@", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class AddressToken:
    number: int
    role: Role
    base: str  # the helpdesk address without the plus part


def _tag(key: bytes, purpose: str, number: int, recipient: str, extra: str = "") -> str:
    material = f"mailgate-thread:{purpose}:{number}:{recipient.strip().lower()}:{extra}"
    return hmac.new(key, material.encode(), hashlib.sha256).hexdigest()[:TAG_CHARS]


def reply_address(key: bytes, helpdesk_address: str, number: int, role: Role, to: str) -> str:
    """The address ``to`` should reply to; valid only when the reply comes from ``to``."""
    local, _, domain = helpdesk_address.lower().rpartition("@")
    base = local.split("+", 1)[0]
    return f"{base}+{number}.{role}.{_tag(key, 'addr-' + role, number, to)}@{domain}"


def read_address(key: bytes, address: str, sender: str) -> AddressToken | None:
    """The token in ``address`` when its tag verifies for ``sender``, else None."""
    match = _ADDRESS.match(address.strip().strip("<>"))
    if match is None:
        return None
    base, number_text, role_text, tag, domain = match.groups()
    number = int(number_text)
    role: Role = role_text.lower()  # type: ignore[assignment]
    if not hmac.compare_digest(tag.lower(), _tag(key, "addr-" + role, number, sender)):
        return None
    return AddressToken(number, role, f"{base.lower()}@{domain.lower()}")


def message_id(key: bytes, number: int, to: str, domain: str) -> str:
    """A fresh Message-ID (without brackets) naming the ticket, bound to ``to``."""
    nonce = secrets.token_hex(8)
    return f"t{number}.{nonce}.{_tag(key, 'msgid', number, to, nonce)}@{domain.lower()}"


def read_message_id(key: bytes, value: str, sender: str) -> int | None:
    """The ticket number a Message-ID of ours names, when it was sent to ``sender``."""
    match = _MESSAGE_ID.match(value.strip().strip("<>"))
    if match is None:
        return None
    number_text, nonce, tag = match.groups()
    number = int(number_text)
    expected = _tag(key, "msgid", number, sender, nonce.lower())
    return number if hmac.compare_digest(tag.lower(), expected) else None


def looks_signed(value: str) -> bool:
    """Shaped like one of our signed Message-IDs (whatever its tag)."""
    return _MESSAGE_ID.match(value.strip().strip("<>")) is not None
