"""A sending MTA in miniature: keeps each message until it hears 250, and retries.

It reuses its connection as Postfix does, and on a 4xx, a dropped connection or a
timeout it reconnects after a short pause and sends the same bytes again.  That is how
a message whose 250 was lost (daemon killed after the commit) reaches mailgate twice,
which dedup must fold into one article.  A 5xx is final and recorded as a rejection.
"""

from __future__ import annotations

import contextlib
import random
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.support import make_mail

SENDER = "jan@customer.example"
RECIPIENT = "support@helpdesk.example"


@dataclass
class Outcome:
    """What the sending side saw for one message."""

    attempts: int = 0
    tempfails: int = 0  # 4xx replies
    dropped: int = 0  # connection lost or timed out
    rejected: int | None = None  # a 5xx code, final
    accepted: bool = False
    acked_at: float = 0.0
    first_try: float = 0.0
    # (monotonic time the attempt began, seconds until the reply, code)
    replies: list[tuple[float, float, int]] = field(default_factory=list)


class RetryingSender:
    """Sends ``messages`` from ``workers`` threads until each is accepted or rejected."""

    def __init__(
        self,
        port: int,
        messages: list[bytes],
        workers: int = 8,
        pause: tuple[float, float] = (0.05, 0.3),
        timeout: float = 30,
        give_up_after: float = 600,
        on_reply: Callable[[int, int, float], None] | None = None,
        gap: float = 0.0,
        lmtp: bool = False,
    ) -> None:
        self.port = port
        self.client = smtplib.LMTP if lmtp else smtplib.SMTP
        self.messages = messages
        self.workers = workers
        self.pause = pause
        self.timeout = timeout  # every socket operation is bounded
        self.give_up_after = give_up_after
        self.on_reply = on_reply
        self.gap = gap  # pause after each accepted message, to spread load over time
        self.outcomes = [Outcome() for _ in messages]
        self._next = 0
        self._lock = threading.Lock()
        self.elapsed = 0.0

    def run(self) -> list[Outcome]:
        started = time.monotonic()
        threads = [threading.Thread(target=self._work, args=(n,)) for n in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.elapsed = time.monotonic() - started
        return self.outcomes

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= len(self.messages):
                return None
            self._next += 1
            return self._next - 1

    def _work(self, seed: int) -> None:
        rnd = random.Random(seed)
        conn: smtplib.SMTP | None = None
        try:
            while (index := self._take()) is not None:
                conn = self._deliver(index, conn, rnd)
                if self.gap:
                    time.sleep(self.gap)
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.quit()

    def _deliver(
        self, index: int, conn: smtplib.SMTP | None, rnd: random.Random
    ) -> smtplib.SMTP | None:
        out = self.outcomes[index]
        out.first_try = time.monotonic()
        deadline = out.first_try + self.give_up_after
        while time.monotonic() < deadline:
            out.attempts += 1
            sent_at = time.monotonic()
            try:
                if conn is None:
                    conn = self.client("127.0.0.1", self.port, timeout=self.timeout)
                conn.sendmail(SENDER, [RECIPIENT], self.messages[index])
            except smtplib.SMTPResponseException as exc:
                code = exc.smtp_code
                self._reply(index, out, code, sent_at)
                if 500 <= code < 600:
                    out.rejected = code
                    return conn
                out.tempfails += 1
                if code == 421 or code < 400:
                    conn = _close(conn)
            except smtplib.SMTPRecipientsRefused as exc:
                code = next(iter(exc.recipients.values()))[0]
                self._reply(index, out, code, sent_at)
                if 500 <= code < 600:
                    out.rejected = code
                    return conn
                out.tempfails += 1
            except (OSError, smtplib.SMTPException):
                out.dropped += 1
                conn = _close(conn)
            else:
                self._reply(index, out, 250, sent_at)
                out.accepted = True
                out.acked_at = time.monotonic()
                return conn
            time.sleep(rnd.uniform(*self.pause))
        return conn

    def _reply(self, index: int, out: Outcome, code: int, sent_at: float) -> None:
        seconds = time.monotonic() - sent_at
        out.replies.append((sent_at, seconds, code))
        if self.on_reply is not None:
            self.on_reply(index, code, seconds)


def _close(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
    return None


def numbered_mails(tag: str, count: int, padding: int = 0) -> list[bytes]:
    """``count`` distinct messages, each from its own customer, with Message-ID
    ``<tag-N@customer.example>`` so rows and articles can be matched back; ``padding``
    adds about that many bytes of text to each body."""
    filler = "The server log is attached below; the site has been down since 8.\n" * (padding // 66)
    return [
        make_mail(
            sender=f"c{i}@customer.example",
            subject=f"{tag} {i}",
            body=f"{tag} body {i}\n{filler}",
            message_id=f"<{tag}-{i}@customer.example>",
        )
        for i in range(count)
    ]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
