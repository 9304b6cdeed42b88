"""DKIM signing of outgoing mail (dkimpy), done by the outbox just before it sends.

Signing at send time rather than at render time keeps the stored ``raw`` unsigned:
a message retried for days, or queued before a key rotation, goes out with a fresh
signature made with the key configured now, and an operator reading the outbox sees
the message as rendered.  The cost is one RSA signature per delivery attempt.

The key is chosen by the domain of the From header (``[[dkim.sign]]`` ``domain``);
mail from a domain without a key goes out unsigned.  Canonicalization is
relaxed/relaxed, which survives the header refolding relays do.  The headers that
identify and thread the message are signed, and From, To and Subject are signed
once more than they occur, so nobody en route can add a second copy of them
(RFC 6376 §8.15).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default
from email.utils import parseaddr

import dkim

from mailgate.config import DkimSettings
from mailgate.errors import ConfigError

log = logging.getLogger(__name__)

SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "auto-submitted",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)
OVERSIGNED = ("from", "to", "subject")


@dataclass(frozen=True, slots=True)
class _Key:
    selector: bytes
    domain: bytes
    pem: bytes


class Signer:
    """Signs with the configured key of the From domain; the keys are read once."""

    def __init__(self, settings: DkimSettings) -> None:
        self.keys: dict[str, _Key] = {}
        problems = []
        for i, entry in enumerate(settings.sign):
            try:
                with open(entry.key_file, "rb") as fh:
                    pem = fh.read()
                # Parse now: a broken key must stop start-up, not every delivery.
                dkim.crypto.parse_pem_private_key(pem)
            except (OSError, dkim.crypto.UnparsableKeyError) as exc:
                problems.append(f"dkim.sign[{i}].key_file: {entry.key_file}: {exc}")
                continue
            domain = entry.domain.lower().rstrip(".")
            self.keys[domain] = _Key(entry.selector.encode(), domain.encode(), pem)
        if problems:
            raise ConfigError(problems)

    def sign(self, raw: bytes) -> bytes:
        """``raw`` with a DKIM-Signature header prepended, or unchanged without a key."""
        if not self.keys:
            return raw
        domain = _from_domain(raw)
        key = self.keys.get(domain)
        if key is None:
            return raw
        signature = dkim.sign(
            raw,
            key.selector,
            key.domain,
            key.pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[h.encode() for h in (*SIGNED_HEADERS, *OVERSIGNED)],
        )
        return bytes(signature) + raw


def _from_domain(raw: bytes) -> str:
    headers = BytesHeaderParser(policy=default).parsebytes(raw)
    address = parseaddr(str(headers.get("From", "")))[1]
    return address.rpartition("@")[2].lower().rstrip(".")
