"""IMAP link cut or stalled 20 times during a big import: every message stored once,
none lost, none flagged (or moved) on the server before it was stored.

A real Dovecot mailbox is filled with messages of assorted sizes (full form 3 000,
short form 300), and mailgate's IMAP service reads it through a ``TcpProxy``.  While it
imports, the proxy injects 20 faults: hard *cuts* (both sides closed) and *stalls* (the
link goes silent; only the client's own timeout can notice, and a client without one
would hang here until the deadline fails the test).  Most strike a random number of
bytes into the server's answers, which is mostly inside a FETCH of message bodies; a
few strike the greeting or LOGIN of the reconnect that follows another fault, and a few
strike right after the client sends the flag (or MOVE), so the server acts and the
client never hears.

Each fault waits for its share of the mailbox and for one more commit since the last
fault, so the faults are spread over the whole import and each strikes a connection
that got something done.  (A message whose own FETCH fails twice in a row is taken for
poison and left for a later pass: tests/imap covers that.)

A watcher compares the server with the database throughout: it reads what the server
has flagged or moved first and what the database holds second, so anything acted on
but not stored shows up.  At the end every appended message must be in the database
exactly once with exactly the appended bytes (Message-ID and sha256).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from imapclient import SEEN
from sqlalchemy import func, select

from mailgate.daemon.runtime import Runtime
from mailgate.ingest import imap
from mailgate.store.models import InboundMessage
from tests.conftest import BACKENDS, make_runtime
from tests.dovecot import Dovecot
from tests.faults.conftest import FULL, Figures
from tests.imap.conftest import ImapSettings
from tests.support import TcpProxy, make_mail, wait_until

MESSAGES = 3_000 if FULL else 300
CUTS, STALLS = 12, 8
CUTS_STALLS = (("cut", CUTS), ("stall", STALLS))
# Most faults strike the byte stream, mostly inside a FETCH.  Four strike the reconnect
# right after another fault (the greeting, LOGIN or SELECT, where a client with no
# timeout on connecting would hang), and two the after-action itself: the server sets
# the flag (or moves the message) but the answer never reaches the client.
AT_RECONNECT = ("cut", "stall", "cut", "stall")
AT_SETTLE = ("stall", "cut")
HANDSHAKE_BYTES = 700  # less than the server says before its first FETCH answer
BATCH = 100 if FULL else 25  # the short form needs enough commits to spread 20 faults over
# The account's IMAP timeout: every stall lasts until the client gives up, so it sets
# the pace of the short form.  Loopback Dovecot answers in milliseconds.
TIMEOUT = 2 if FULL else 1
# A message whose FETCH failed twice in a row waits for a full pass this much later;
# short, so a spurious timeout on a busy machine cannot outlast the deadline.
RECONCILE = 30
DEADLINE = 900.0 if FULL else 240.0  # generous: shared machine, 20 reconnects with backoff
MOVED_TO = "Processed"


def mailbox(count: int) -> list[bytes]:
    """Messages from 1 to 60 KB, so a FETCH batch is several hundred KB to cut into."""
    rnd = random.Random(5)
    line = "Ping to 192.0.2.10 fails since the kernel update; traceroute attached.\n"
    return [
        make_mail(
            sender=f"c{i}@customer.example",
            subject=f"cuts {i}",
            message_id=f"<cuts-{i}@customer.example>",
            body=f"Message {i}.\n" + line * rnd.randint(10, 800),
        )
        for i in range(count)
    ]


def fault_plan(rnd: random.Random) -> list[tuple[str, str]]:
    """(kind, where) of each fault, where is stream, reconnect or settle; a fault at a
    reconnect always follows one of the others."""
    counts = {kind: n - (AT_RECONNECT + AT_SETTLE).count(kind) for kind, n in CUTS_STALLS}
    others = [(kind, "stream") for kind, n in counts.items() for _ in range(n)]
    others += [(kind, "settle") for kind in AT_SETTLE]
    rnd.shuffle(others)
    follow = set(rnd.sample(range(len(others)), len(AT_RECONNECT)))
    extra = iter(AT_RECONNECT)
    plan = []
    for i, fault in enumerate(others):
        plan.append(fault)
        if i in follow:
            plan.append((next(extra), "reconnect"))
    return plan


def verb(command: bytes) -> str:
    """What the client had last asked when a fault struck: ``FETCH-body``, ``LOGIN``…"""
    words = command.split()
    if not words:
        return "greeting"
    name = words[2] if len(words) > 2 and words[1].upper() == b"UID" else words[1:2][0]
    if name.upper() == b"FETCH":
        return "FETCH-body" if b"BODY.PEEK[]" in command else "FETCH-meta"
    return name.decode("ascii", "replace").upper()


def imported(rt: Runtime) -> list[tuple[str | None, bytes]]:
    with rt.sessions() as s:
        rows = s.execute(
            select(InboundMessage.message_id, InboundMessage.raw).where(
                InboundMessage.source == "imap"
            )
        )
        return [(mid, bytes(raw)) for mid, raw in rows]


def stored_count(rt: Runtime) -> int:
    with rt.sessions() as s:
        query = select(func.count()).where(InboundMessage.source == "imap")
        return int(s.scalar(query) or 0)


def stored_ids(rt: Runtime) -> set[str | None]:
    with rt.sessions() as s:
        query = select(InboundMessage.message_id).where(InboundMessage.source == "imap")
        return set(s.scalars(query))


class Watcher(threading.Thread):
    """Samples, again and again, what the server shows as done against what is stored."""

    def __init__(self, acted_on: Callable[[], set[str]], stored: Callable[[], set[str | None]]):
        super().__init__(daemon=True)
        self.acted_on = acted_on
        self.stored = stored
        self.stop = threading.Event()
        self.samples = 0
        self.partial = 0  # samples taken while the import was under way
        self.flagged_not_stored: set[str] = set()
        self.error: BaseException | None = None

    def check(self) -> None:
        acted = self.acted_on()  # the server first: whatever it shows must be stored by now
        stored = self.stored()
        self.flagged_not_stored |= acted - stored
        self.partial += 0 < len(acted) < len(stored) or 0 < len(stored) < MESSAGES
        self.samples += 1

    def run(self) -> None:
        try:
            while not self.stop.wait(0.2):
                self.check()
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc


@pytest.mark.parametrize(
    ("db_url", "after"),
    [(db, after) for db in BACKENDS for after in ("seen", f"move:{MOVED_TO}")]
    if FULL
    else [("sqlite", "seen")],
    indirect=["db_url"],
)
def test_imap_cuts_and_stalls_lose_double_and_misflag_nothing(
    imap_settings: ImapSettings,
    dovecot: Dovecot,
    user: str,
    after: str,
    figures: Figures,
) -> None:
    messages = mailbox(MESSAGES)
    appended = {
        f"cuts-{i}@customer.example": hashlib.sha256(raw).hexdigest()
        for i, raw in enumerate(messages)
    }
    dovecot.append(user, "INBOX", messages)
    mean_size = sum(map(len, messages)) // len(messages)
    del messages

    def acted_on() -> set[str]:
        if after == "seen":
            return {m for m, flags in dovecot.folder_state(user, "INBOX").items() if SEEN in flags}
        return set(dovecot.folder_state(user, MOVED_TO))

    proxy = TcpProxy("127.0.0.1", dovecot.port)
    proxy.start()
    rt = make_runtime(
        imap_settings(
            port=proxy.port,
            batch_size=BATCH,
            timeout=TIMEOUT,
            after=after,
            reconcile_interval=RECONCILE,
        )
    )
    service = imap.ImapService(rt, wake=lambda: None)
    watcher = Watcher(acted_on, lambda: stored_ids(rt))
    settle_command = b"UID STORE" if after == "seen" else b"UID MOVE"
    rnd = random.Random(20)
    plan = fault_plan(rnd)
    # Somewhere inside the next half batch of bytes (the first fault may hit the login).
    window = BATCH * mean_size // 2
    [stats] = service.stats
    started = time.monotonic()
    try:
        service.start()
        watcher.start()
        stored_at_fault = -1
        for k, (kind, where) in enumerate(plan):
            if where == "reconnect":
                # The client is backing off after the fault before: this one meets its
                # next connection before any message is fetched.
                proxy.arm(kind, after=rnd.randrange(HANDSHAKE_BYTES))
            else:
                share = k * MESSAGES * 4 // (5 * len(plan))  # spread over the first 80 %
                least = max(share, stored_at_fault + 1)

                def enough(least: int = least) -> bool:
                    return stored_count(rt) >= least

                wait_until(
                    enough,
                    timeout=DEADLINE,
                    what=f"progress before fault {k + 1} ({stats})",
                )
                if where == "settle":
                    proxy.arm(kind, on=settle_command)
                else:
                    proxy.arm(kind, after=rnd.randrange(window))
            assert proxy.wait_fired(k + 1, timeout=DEADLINE), (
                f"fault {k + 1} ({kind}) never struck; the import ran out first? {stats}"
            )
            stored_at_fault = stored_count(rt)

        def finished() -> bool:
            return stored_count(rt) >= MESSAGES and len(acted_on()) >= MESSAGES

        wait_until(finished, timeout=DEADLINE, what=f"the whole mailbox imported ({stats})")
        elapsed = time.monotonic() - started
        watcher.stop.set()
        watcher.join(30)
        watcher.check()  # once more, at rest
    finally:
        watcher.stop.set()
        service.stop(30)
        proxy.stop()
        rows = imported(rt)
        rt.close()

    ids = Counter(mid for mid, _ in rows)
    duplicates = sum(n - 1 for n in ids.values())
    lost = sorted(set(appended) - set(ids))
    unexpected = sorted(str(m) for m in set(ids) - set(appended))
    altered = sorted(
        str(mid) for mid, raw in rows if appended.get(str(mid)) != hashlib.sha256(raw).hexdigest()
    )
    faults = proxy.faults
    figures["messages"] = MESSAGES
    figures["after"] = after
    figures["cuts"] = sum(f.kind == "cut" for f in faults)
    figures["stalls"] = sum(f.kind == "stall" for f in faults)
    struck = [verb(f.command) for f in faults]
    figures["struck"] = dict(Counter(struck))
    figures["logouts_into_stalls"] = sum(
        b" LOGOUT" in line for link in proxy.stalled for line in link.after_stall
    )
    figures["stored"] = len(rows)
    figures["duplicates"] = duplicates
    figures["lost"] = len(lost)
    figures["flagged_not_stored"] = len(watcher.flagged_not_stored)
    figures["reconnects"] = stats.reconnects
    figures["skipped"] = stats.skipped
    figures["watcher_samples"] = watcher.samples
    figures["elapsed_s"] = elapsed

    assert watcher.error is None, watcher.error
    assert (figures["cuts"], figures["stalls"]) == (CUTS, STALLS)
    struck_at: dict[str, list[str]] = {where: [] for _, where in plan}
    for what, (_, where) in zip(struck, plan, strict=True):
        struck_at[where].append(what)
    assert struck_at["stream"].count("FETCH-body") > len(struck_at["stream"]) // 2, struck_at
    assert {"FETCH-body", "STORE", "MOVE"}.isdisjoint(struck_at["reconnect"]), struck_at
    assert set(struck_at["settle"]) == {settle_command.split()[1].decode()}, struck_at
    # A stalled link is dropped, not logged out of: that would wait out a second timeout.
    assert figures["logouts_into_stalls"] == 0, [link.after_stall for link in proxy.stalled]
    # Every fault broke a connection, and the service noticed each break by itself.
    assert stats.reconnects >= CUTS + STALLS
    assert lost == [], f"{len(lost)} lost, e.g. {lost[:5]}"
    assert duplicates == 0, [m for m, n in ids.items() if n > 1][:5]
    assert unexpected == [] and altered == [], (unexpected[:5], altered[:5])
    assert watcher.flagged_not_stored == set(), sorted(watcher.flagged_not_stored)[:5]
    # The watcher looked while the import was under way, not only before and after.
    assert watcher.partial >= 3, watcher.partial
