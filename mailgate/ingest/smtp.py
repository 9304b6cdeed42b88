"""SMTP and LMTP listeners (aiosmtpd): translate the protocol to ``accept`` and back.

Nothing but envelope checks (and rspamd, below) happens in the session: unknown
recipients are refused at RCPT (550 5.1.1) — except the VERP return paths of our own
automatic mail, whose HMAC tag is checked by a test the daemon hands in (ingest knows
nothing of replies), so bounces reach ``tickets.bounces`` — oversized data by aiosmtpd's
SIZE limit (552 5.3.4), and the message is answered 250 only after ``accept`` has
committed it.  EHLO advertises ENHANCEDSTATUSCODES (RFC 2034) and every reply carries
one: aiosmtpd's own replies get theirs in ``EnhancedCodes.push``.  Every failure to
store maps to a 4xx in one place — 452 4.3.1 when the storage is full, 451 4.3.0
otherwise — so a sending MTA keeps the message and retries.

With ``[spam] rspamd_url`` set, rspamd is asked during DATA, before storing
(``ingest.scan``): its ``reject`` is answered 550 5.7.1 and nothing is stored; any other
answer is stored with the message, where the pipeline reads it (add header / rewrite
subject: held as spam).  rspamd away or slow: stored unscanned, never refused.

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
from typing import TYPE_CHECKING, Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from mailgate.config import ListenerSettings, Settings
from mailgate.errors import PermanentError, StorageFull, TemporaryError
from mailgate.ingest.envelope import Envelope, Incoming
from mailgate.ingest.scan import ScanResult

if TYPE_CHECKING:
    # Names only: the listener is imported (and greets) before SQLAlchemy is loaded.
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
SPAM_REJECTED = "550 5.7.1 Message rejected as spam"
SHUTTING_DOWN = "421 4.3.2 mailgate is shutting down, try again later"
OK_SENDER = "250 2.1.0 OK"

# The enhanced code (RFC 3463, RFC 5248) for a reply of aiosmtpd's own that carries
# none: by the reply text where the library's wording is known, else by the code.
_ENHANCED_BY_TEXT = (
    ("552 Error: message size exceeds", "5.3.4"),
    ("552 Error: Too much mail data", "5.3.4"),
    ("500 Line too long", "5.5.2"),
    ("500 Command line too long", "5.5.2"),
    ("503 Error: need", "5.5.1"),
    ("503 Error: nested MAIL", "5.5.1"),
    ("503 Error: send", "5.5.1"),
    ("500 Error: command", "5.5.1"),
)
_ENHANCED_BY_CODE = {
    "221": "2.0.0", "250": "2.0.0", "252": "2.5.0",
    "421": "4.3.0", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "550": "5.0.0", "552": "5.3.4", "553": "5.1.3", "554": "5.0.0",
    "555": "5.5.4",
}  # fmt: skip


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
        return OK_SENDER

    async def handle_EHLO(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: SmtpEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Advertise ENHANCEDSTATUSCODES (RFC 2034): every reply below carries one."""
        session.host_name = hostname  # what aiosmtpd does when no hook is set
        return [*responses[:-1], "250-ENHANCEDSTATUSCODES", responses[-1]]

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
            scanned = await self._scan(raw, smtp_envelope, session)
            if scanned is not None and scanned.action == "reject":
                self._refuse(smtp_envelope, scanned)
                return SPAM_REJECTED
            scan = scanned.record() if scanned is not None else None
            if self.committer is not None:
                incoming = Incoming(raw, smtp_envelope, self.source, scan=scan)
                result = await asyncio.wrap_future(self.committer.submit(incoming))
            else:
                from mailgate.ingest.accept import accept  # only without a committer

                result = await asyncio.to_thread(
                    accept,
                    self.rt.sessions,
                    raw,
                    smtp_envelope,
                    self.source,
                    scan=scan,
                    clock=self.rt.clock,
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

    async def _scan(
        self, raw: bytes, envelope: Envelope, session: SmtpSession
    ) -> ScanResult | None:
        """rspamd's verdict before storing, when it is configured (None otherwise).

        Fails open: rspamd away or slow gives an unscanned result, logged and counted,
        and the message is stored as if no filter were configured."""
        scanner = self.rt.scanner
        if scanner is None or not raw:
            return None
        peer = session.peer
        result = await asyncio.to_thread(
            scanner.check,
            raw,
            envelope.mail_from,
            envelope.rcpt_to,
            ip=peer[0] if isinstance(peer, tuple) else None,
            helo=session.host_name or None,
        )
        if result.unscanned:
            log.warning(
                "%s: rspamd not asked, message from <%s> accepted unscanned: %s",
                self.source,
                envelope.mail_from,
                result.error,
            )
            self.rt.metrics.spam_unscanned.labels(self.source).inc()
        return result

    def _refuse(self, envelope: Envelope, scanned: ScanResult) -> None:
        log.info(
            "%s: refused message from <%s> for %s as spam (rspamd: %s, score %s)",
            self.source,
            envelope.mail_from,
            ",".join(envelope.rcpt_to),
            scanned.action,
            scanned.score,
        )
        self._count("rejected")
        self.rt.metrics.spam_refused.labels(self.source).inc()


def with_enhanced_code(line: str) -> str:
    """``line`` with an RFC 3463 enhanced code after its reply code, if it lacks one.

    The greeting, the EHLO/LHLO reply, 354 and AUTH's 334 take none (RFC 2034 §3).
    """
    code, sep, text = line[:3], line[3:4], line[4:]
    if not code.isdigit() or code[0] not in "245" or sep not in (" ", "-", ""):
        return line
    first = text.split(" ", 1)[0]
    if first[:1] in "245" and first.count(".") == 2 and first.replace(".", "").isdigit():
        return line  # it has one
    enhanced = next((e for prefix, e in _ENHANCED_BY_TEXT if line.startswith(prefix)), None)
    enhanced = enhanced or _ENHANCED_BY_CODE.get(code, f"{code[0]}.0.0")
    return f"{code}{sep or ' '}{enhanced} {text}".rstrip()


class EnhancedCodes(SMTP):
    """SMTP whose every reply carries an enhanced status code, as EHLO advertises."""

    _banner_owed = True  # the 220 banner, pushed once on connect, takes no code
    _greeting = False  # inside the EHLO/LHLO/HELO reply, which takes none either

    async def smtp_EHLO(self, arg: str) -> None:
        await self._greet(super().smtp_EHLO, arg)

    async def smtp_HELO(self, arg: str) -> None:
        await self._greet(super().smtp_HELO, arg)

    async def _greet(self, command: Callable[[str], Any], arg: str) -> None:
        self._greeting = True
        try:
            await command(arg)
        finally:
            self._greeting = False

    async def push(self, status: Any) -> None:
        text = status.decode() if isinstance(status, bytes) else str(status)
        banner, self._banner_owed = self._banner_owed and text.startswith("220"), False
        if banner or (self._greeting and text.startswith("250")):
            await super().push(text)
            return
        await super().push("\r\n".join(with_enhanced_code(line) for line in text.split("\r\n")))


class EnhancedLMTP(EnhancedCodes, LMTP):
    async def smtp_LHLO(self, arg: str) -> None:
        await self._greet(super().smtp_LHLO, arg)


class PerRecipientLMTP(EnhancedLMTP):
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
    cls = PerRecipientLMTP if lmtp else EnhancedCodes

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
