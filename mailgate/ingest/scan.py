"""Asking rspamd about one message: its ``/checkv2`` answer, or "unscanned".

The SMTP/LMTP listeners ask during DATA, before storing (a ``reject`` is refused in the
session, anything else is stored with the answer in ``InboundMessage.scan``); the
pipeline asks after storing for mail that came another way (pipe, IMAP, batch import).
Both are handed the same ``RspamdClient`` by the daemon.

The message goes in the request body; the envelope goes in rspamd's request headers
(``From``, one ``Rcpt`` per recipient, ``IP`` and ``Helo`` where the session knew them).
A loopback client address is left out: it is our own MTA handing the mail on, and rspamd
would treat a loopback client as trusted and skip checks.

rspamd away, slow or answering nonsense never costs a message: ``check`` returns an
*unscanned* result with the reason (the caller logs a WARNING and counts it) and the
message goes on as if no filter were configured.  Only the standard library is used:
a blocking call, which the listener runs in a thread.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class ScanResult:
    action: str | None  # "no action", "greylist", "add header", "rewrite subject", "reject" …
    score: float | None = None
    required: float | None = None
    error: str | None = None  # why the message is unscanned; None when rspamd answered
    seconds: float = 0.0

    @property
    def unscanned(self) -> bool:
        return self.error is not None

    def record(self) -> dict[str, Any]:
        """What is stored with the message (``InboundMessage.scan``)."""
        if self.error is not None:
            return {"unscanned": self.error[:200]}
        return {"action": self.action, "score": self.score, "required": self.required}


class RspamdClient:
    """One rspamd normal worker at ``url`` (``http://host:port``), asked with a deadline."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{url!r} is not http://host:port")
        self.host = parts.hostname
        self.port = parts.port or 11333
        self.timeout = timeout

    def check(
        self,
        raw: bytes,
        mail_from: str | None,
        rcpt_to: Sequence[str],
        *,
        ip: str | None = None,
        helo: str | None = None,
    ) -> ScanResult:
        """rspamd's verdict on ``raw``; an unscanned result when it cannot be had."""
        start = time.monotonic()
        try:
            answer = self._post(raw, _headers(mail_from, rcpt_to, ip, helo))
            return _result(answer, time.monotonic() - start)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # OSError covers refused connections and socket timeouts.
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return ScanResult(None, error=why, seconds=time.monotonic() - start)

    def _post(self, raw: bytes, headers: list[tuple[str, str]]) -> Any:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.putrequest("POST", "/checkv2", skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(raw)))
            conn.endheaders(raw)
            response = conn.getresponse()
            body = response.read(1 << 20)
            if response.status != 200:
                raise ValueError(f"rspamd answered HTTP {response.status}")
            return json.loads(body)
        finally:
            conn.close()


def _headers(
    mail_from: str | None, rcpt_to: Sequence[str], ip: str | None, helo: str | None
) -> list[tuple[str, str]]:
    def clean(value: str) -> str:
        return "".join(ch for ch in value if ch.isprintable())[:512]

    headers = [("From", clean(mail_from or "<>"))]
    headers.extend(("Rcpt", clean(r)) for r in rcpt_to)
    if ip and not _loopback(ip):
        headers.append(("IP", clean(ip)))
    if helo:
        headers.append(("Helo", clean(helo)))
    return headers


def _loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return True  # not an address at all: do not send it


def _result(answer: Any, seconds: float) -> ScanResult:
    if not isinstance(answer, dict) or not isinstance(answer.get("action"), str):
        raise ValueError("rspamd's answer has no action")
    score = answer.get("score")
    required = answer.get("required_score")
    return ScanResult(
        action=answer["action"],
        score=float(score) if isinstance(score, int | float) else None,
        required=float(required) if isinstance(required, int | float) else None,
        seconds=seconds,
    )
