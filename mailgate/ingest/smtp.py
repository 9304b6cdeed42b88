"""SMTP and LMTP listeners (aiosmtpd): translate the protocol to ``accept`` and back.

Nothing but envelope checks happens in the session: unknown recipients are refused at
RCPT (550 5.1.1) — except the VERP return paths of our own automatic mail, whose
HMAC tag is checked by a test the daemon hands in (ingest knows nothing of replies), so
bounces reach ``tickets.bounces`` — oversized data by aiosmtpd's SIZE limit (552), and
the message is answered 250 only after ``accept`` has committed it.  Every failure to
store maps to a 4xx in one place — 452 4.3.1 when the storage is full, 451 4.3.0
otherwise — so a sending MTA keeps the message and retries.

A full disk is reported at DATA only, never remembered to refuse later MAIL or RCPT
commands early: writing the message is the one reliable test of whether it fits (a
smaller message, pages SQLite freed, or space an admin just made may let it through),
and a remembered refusal would need a timer to forget it, delaying recovery.  The
price is that a sender transmits the body before hearing 452, bounded by the SIZE
limit.

RFC 2033 wants one reply per accepted recipient after DATA in LMTP; aiosmtpd sends one
(aiosmtpd issue 517).  ``PerRecipientLMTP`` repeats the reply for each recipient: the
message is stored once for all of them, so they share one outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from mailgate.config import ListenerSettings, Settings
from mailgate.errors import PermanentError, StorageFull, TemporaryError
from mailgate.ingest.accept import Envelope, Incoming, accept
from mailgate.ingest.committer import GroupCommitter
from mailgate.ingest.context import ListenerContext

log = logging.getLogger(__name__)

# Status replies, in one place (RFC 5321 §4.2, RFC 3463 enhanced codes).
OK_RCPT = "250 2.1.5 OK"
OK_QUEUED = "250 2.0.0 OK queued as {id}"
TEMPFAIL = "451 4.3.0 Temporary failure storing the message, please retry"
STORAGE_FULL = "452 4.3.1 Insufficient system storage, please retry"
TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"
NO_SUCH_USER = "550 5.1.1 <{address}>: no such helpdesk address"
EMPTY_MESSAGE = "554 5.6.0 Empty message"
SHUTTING_DOWN = "421 4.3.2 mailgate is shutting down, try again later"


class IngestHandler:
    """aiosmtpd handler shared by the SMTP and LMTP listeners."""

    def __init__(
        self,
        rt: ListenerContext,
        source: str,
        listener: ListenerSettings,
        on_accepted: Callable[[], None] = lambda: None,
        committer: GroupCommitter | None = None,
        *,
        bounce_address_ok: Callable[[str], bool],
    ) -> None:
        self.rt = rt
        # Whether an unknown recipient is the VERP return path of our own mail: the
        # daemon builds the check (``replies.verp``), so bounces get past RCPT.
        self.bounce_address_ok = bounce_address_ok
        self.source = source
        self.listener = listener
        self.on_accepted = on_accepted
        # Sessions share commits through it; without one, each message commits alone.
        self.committer = committer
        self.in_flight = 0
        # Set by the daemon on SIGTERM: a cached connection (Postfix keeps LMTP sessions
        # open) must not start a new transaction while we wait for open ones to end.
        self.draining = False

    async def handle_MAIL(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: SmtpEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.draining:
            return SHUTTING_DOWN
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: SmtpEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.rt.settings.queue_for(address) is None and not self.bounce_address_ok(address):
            self._count("rejected")
            return NO_SUCH_USER.format(address=address)
        if len(envelope.rcpt_tos) >= self.listener.max_recipients:
            self._count("rejected")
            return TOO_MANY_RCPTS
        envelope.rcpt_tos.append(address)
        return OK_RCPT

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope) -> str:
        raw = envelope.original_content or b""
        peer = session.peer
        smtp_envelope = Envelope(
            mail_from=envelope.mail_from or "",
            rcpt_to=tuple(envelope.rcpt_tos),
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
        )
        self.in_flight += 1
        try:
            if self.committer is not None:
                incoming = Incoming(raw, smtp_envelope, self.source)
                result = await asyncio.wrap_future(self.committer.submit(incoming))
            else:
                result = await asyncio.to_thread(
                    accept, self.rt.sessions, raw, smtp_envelope, self.source, clock=self.rt.clock
                )
        except PermanentError:
            self._count("rejected")
            return EMPTY_MESSAGE
        except StorageFull as exc:
            log.warning("%s: 452 for message from %s: %s", self.source, envelope.mail_from, exc)
            self._count("tempfailed")
            return STORAGE_FULL
        except TemporaryError as exc:
            log.warning("%s: 451 for message from %s: %s", self.source, envelope.mail_from, exc)
            self._count("tempfailed")
            return TEMPFAIL
        except Exception:  # the per-message boundary: never 250, never 5xx on our bugs
            log.exception("%s: storing a message failed", self.source)
            self._count("tempfailed")
            return TEMPFAIL
        finally:
            self.in_flight -= 1
        self._count("accepted")
        # The trace id is the inbound id: the MTA logs it too ("queued as N").
        log.info(
            "%s: stored %d bytes from <%s> for %s",
            self.source,
            len(raw),
            smtp_envelope.mail_from,
            ",".join(smtp_envelope.rcpt_to),
            extra={"trace": result.inbound_id},
        )
        self.on_accepted()
        return OK_QUEUED.format(id=result.inbound_id)

    def _count(self, result: str) -> None:
        self.rt.metrics.ingest.labels(self.source, result).inc()


class PerRecipientLMTP(LMTP):
    """LMTP that answers the end of DATA once per accepted recipient (RFC 2033 §4.2)."""

    _replies_owed = 0

    async def smtp_DATA(self, arg: str) -> None:
        self._replies_owed = -1  # armed: counts once "354" has been sent
        try:
            await super().smtp_DATA(arg)
        finally:
            self._replies_owed = 0

    async def push(self, status: Any) -> None:
        text = status.decode() if isinstance(status, bytes) else str(status)
        if self._replies_owed == -1 and text.startswith("354"):
            assert self.envelope is not None
            self._replies_owed = len(self.envelope.rcpt_tos)
            await super().push(status)
            return
        if self._replies_owed > 0:
            count, self._replies_owed = self._replies_owed, 0
            await super().push("\r\n".join([text] * count))
            return
        await super().push(status)


def protocol_factory(
    rt: ListenerContext,
    lmtp: bool,
    on_accepted: Callable[[], None],
    committer: GroupCommitter | None = None,
    *,
    bounce_address_ok: Callable[[str], bool],
) -> tuple[Callable[[], SMTP], IngestHandler]:
    """A factory for ``loop.create_server`` and the handler it shares."""
    settings: Settings = rt.settings
    listener = settings.lmtp if lmtp else settings.smtp
    handler = IngestHandler(
        rt,
        "lmtp" if lmtp else "smtp",
        listener,
        on_accepted,
        committer,
        bounce_address_ok=bounce_address_ok,
    )
    cls = PerRecipientLMTP if lmtp else SMTP

    def factory() -> SMTP:
        return cls(
            handler,
            data_size_limit=listener.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=listener.hostname,
            ident="mailgate",
            timeout=listener.timeout,
        )

    return factory, handler
