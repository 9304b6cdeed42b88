"""VERP return paths: the envelope sender of automatic mail names its outbox row.

``bounces+<outbox id>.<tag>@<helpdesk domain>``, where the tag is an HMAC-SHA256 of
the id under a secret key from the environment (``outbound.verp_secret_env``).  A
bounce or out-of-office reply sent to that address is tied to the exact message that
caused it, whatever the remote server quotes or leaves out; the tag keeps strangers
from making up addresses that would pin forged bounces on our mail.  The SMTP
listener accepts RCPT to an address only when its tag verifies.
"""

from __future__ import annotations

import hashlib
import hmac
import re

TAG_CHARS = 16  # 64 bits: plenty against guessing, short enough for a local part


def address(outbox_id: int, domain: str, local_part: str, key: bytes) -> str:
    return f"{local_part}+{outbox_id}.{_tag(outbox_id, key)}@{domain.lower()}"


def parse(value: str, local_part: str, key: bytes | None) -> int | None:
    """The outbox id a VERP address names, or None (not ours, or a forged tag)."""
    if key is None:
        return None
    local = value.strip().strip("<>").rpartition("@")[0]
    match = re.fullmatch(rf"{re.escape(local_part)}\+(\d{{1,18}})\.([0-9a-f]+)", local, re.I)
    if match is None:
        return None
    outbox_id = int(match.group(1))
    if not hmac.compare_digest(match.group(2).lower(), _tag(outbox_id, key)):
        return None
    return outbox_id


def _tag(outbox_id: int, key: bytes) -> str:
    digest = hmac.new(key, f"mailgate-verp:{outbox_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:TAG_CHARS]
