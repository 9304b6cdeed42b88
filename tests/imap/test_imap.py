"""IMAP ingest against a real Dovecot: nothing lost, nothing doubled, nothing flagged
before it is stored — through cuts, UIDVALIDITY changes, poison and big mailboxes."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest
from imapclient import SEEN
from sqlalchemy import func, select

from mailgate.config import Settings
from mailgate.daemon.runtime import Runtime
from mailgate.ingest import imap
from mailgate.store.models import ImapCursor, InboundMessage, Ticket
from tests.conftest import PG_URL, make_runtime
from tests.dovecot import Dovecot
from tests.imap.conftest import ImapSettings
from tests.support import DaemonThread, TcpProxy, make_mail, wait_until


def mails(n: int, tag: str, body_bytes: int = 0) -> list[bytes]:
    filler = ("Log excerpt: connection reset by peer on vps-17.\n" * (body_bytes // 50 + 1))[
        :body_bytes
    ]
    return [
        make_mail(
            subject=f"{tag} {i}",
            message_id=f"<{tag}-{i}@customer.example>",
            body=f"Message {i} of {tag}.\n{filler}",
        )
        for i in range(n)
    ]


@contextlib.contextmanager
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = make_runtime(settings)
    try:
        yield rt
    finally:
        rt.close()


def rows(rt: Runtime) -> list[tuple[str, str | None, bool]]:
    """(source_ref, Message-ID, acknowledge) of every message stored from IMAP."""
    with rt.sessions() as s:
        result = s.execute(
            select(InboundMessage.source_ref, InboundMessage.message_id, InboundMessage.acknowledge)
            .where(InboundMessage.source == "imap")
            .order_by(InboundMessage.id)
        )
        return [(ref or "", mid, ack) for ref, mid, ack in result]


def message_ids(rt: Runtime) -> list[str | None]:
    return [mid for _, mid, _ in rows(rt)]


def flags_by_uid(dovecot: Dovecot, user: str, folder: str) -> dict[int, set[bytes]]:
    """UID → flags, without touching message contents (which may be unreadable)."""
    client = dovecot.client(user)
    try:
        client.select_folder(folder, readonly=True)
        data = client.fetch(client.search("ALL"), [b"FLAGS"])
    finally:
        client.logout()
    return {uid: set(item[b"FLAGS"]) for uid, item in data.items()}


def poll(rt: Runtime, **kwargs: int) -> imap.PollResult:
    [result] = imap.poll_once(rt, **kwargs)  # type: ignore[arg-type]
    return result


def test_first_import_stores_once_flags_and_leaves_old_mail_unacknowledged(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str
) -> None:
    dovecot.append(user, "INBOX", mails(4, "old"))
    with runtime(imap_settings()) as rt:
        result = poll(rt)
        assert result.completed
        assert (result.stats.stored, result.stats.duplicates) == (4, 0)
        stored = rows(rt)
        assert [mid for _, mid, _ in stored] == [f"old-{i}@customer.example" for i in range(4)]
        # Historical mail: tickets yes, acknowledgements no (acknowledge_existing=false).
        assert all(ack is False for _, _, ack in stored)
        with rt.sessions() as s:
            cursor = s.get_one(ImapCursor, ("support", "INBOX"))
        assert [ref for ref, _, _ in stored] == [
            f"imap:support:INBOX:{cursor.uidvalidity}:{uid}" for uid in (1, 2, 3, 4)
        ]
        assert (cursor.last_uid, cursor.baseline_uid) == (4, 4)
        assert all(SEEN in flags for flags in dovecot.folder_state(user, "INBOX").values())

        dovecot.append(user, "INBOX", mails(1, "new"))
        assert poll(rt).stats.stored == 1
        assert poll(rt).stats.stored == 0  # nothing new: a re-poll is a no-op
        assert rows(rt)[-1][1:] == ("new-0@customer.example", True)
        assert len(rows(rt)) == 5


def test_acknowledge_existing_true_acknowledges_the_first_import(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str
) -> None:
    dovecot.append(user, "INBOX", mails(2, "hist"))
    with runtime(imap_settings(acknowledge_existing=True)) as rt:
        poll(rt)
        assert [ack for _, _, ack in rows(rt)] == [True, True]


def test_mail_a_person_already_read_is_still_imported(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str
) -> None:
    with runtime(imap_settings()) as rt:
        assert poll(rt).completed  # the folder is known and empty
        # Someone reads the new mail in their own client before mailgate looks.
        dovecot.append(user, "INBOX", mails(3, "read"), flags=(SEEN,))
        assert poll(rt).stats.stored == 3
        assert message_ids(rt) == [f"read-{i}@customer.example" for i in range(3)]
        assert all(ack for _, _, ack in rows(rt))  # new mail, so acknowledged


@pytest.mark.parametrize("after", ["move:Processed", "delete"])
def test_after_move_or_delete_acts_only_on_stored_messages(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str, after: str
) -> None:
    dovecot.append(user, "INBOX", mails(3, "act"))
    with runtime(imap_settings(after=after)) as rt:
        assert poll(rt).stats.stored == 3
        assert dovecot.folder_state(user, "INBOX") == {}
        processed = dovecot.folder_state(user, "Processed")
        if after == "delete":
            assert processed == {}
        else:
            assert set(processed) == {f"act-{i}@customer.example" for i in range(3)}
        assert len(rows(rt)) == 3


def test_idle_delivers_a_new_message_within_two_seconds(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str
) -> None:
    # Long poll and reconcile intervals: only an IDLE push can be this quick.
    settings = imap_settings(poll_interval=3600, reconcile_interval=3600)
    rt = make_runtime(settings)
    try:
        with DaemonThread(rt) as d:
            assert d.daemon is not None and d.daemon.imap is not None
            [stats] = d.daemon.imap.stats
            wait_until(lambda: stats.state == "idle", timeout=10, what="the poller in IDLE")
            dovecot.append(user, "INBOX", [make_mail(message_id="<pushed@customer.example>")])
            wait_until(
                lambda: message_ids(rt) == ["pushed@customer.example"],
                timeout=2,
                what="the pushed message stored",
            )

            # The poller woke the pipeline (the sweep is an hour away): a ticket follows.
            def ticketed() -> int:
                with rt.sessions() as s:
                    return int(s.scalar(select(func.count()).select_from(Ticket)) or 0)

            wait_until(ticketed, timeout=10, what="a ticket from the pushed message")
        assert SEEN in dovecot.folder_state(user, "INBOX")["pushed@customer.example"]
    finally:
        rt.close()


def test_polling_fallback_without_idle(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str
) -> None:
    settings = imap_settings(idle=False, poll_interval=1, reconcile_interval=3600)
    rt = make_runtime(settings)
    try:
        service = imap.ImapService(rt, wake=lambda: None)
        service.start()
        try:
            [stats] = service.stats
            wait_until(lambda: stats.state == "polling", timeout=10, what="the poller polling")
            dovecot.append(user, "INBOX", mails(2, "polled"))
            wait_until(lambda: len(rows(rt)) == 2, timeout=10, what="both polled messages")
        finally:
            service.stop(10)
        assert stats.passes >= 2
    finally:
        rt.close()


def test_connection_cut_mid_fetch_loses_doubles_and_misflags_nothing(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str
) -> None:
    count = 40
    messages = mails(count, "cut", body_bytes=20_000)
    dovecot.append(user, "INBOX", messages)
    # Cut once, after about 40 % of the mailbox has come back from the server.
    proxy = TcpProxy("127.0.0.1", dovecot.port, cut_after=sum(map(len, messages)) * 2 // 5)
    proxy.start()
    try:
        with runtime(imap_settings(port=proxy.port, batch_size=8)) as rt:
            first = poll(rt, max_failures=1)
            assert proxy.was_cut.is_set()
            assert not first.completed
            stored = set(message_ids(rt))
            assert 0 < len(stored) < count
            flagged = {
                mid for mid, flags in dovecot.folder_state(user, "INBOX").items() if SEEN in flags
            }
            assert flagged <= stored  # nothing flagged that was not stored

            second = poll(rt)  # reconnects through the proxy, which now lets all pass
            assert second.completed
            ids = message_ids(rt)
            assert sorted(ids) == sorted(f"cut-{i}@customer.example" for i in range(count))
            assert len(set(ids)) == count
            state = dovecot.folder_state(user, "INBOX")
            assert all(SEEN in flags for flags in state.values())
    finally:
        proxy.stop()


def test_poller_thread_reconnects_by_itself_after_a_cut(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    messages = mails(30, "again", body_bytes=20_000)
    dovecot.append(user, "INBOX", messages)
    proxy = TcpProxy("127.0.0.1", dovecot.port, cut_after=sum(map(len, messages)) // 2)
    proxy.start()
    caplog.set_level(logging.WARNING, logger="mailgate.ingest.imap")
    try:
        with runtime(imap_settings(port=proxy.port, batch_size=5)) as rt:
            service = imap.ImapService(rt, wake=lambda: None)
            service.start()
            try:
                wait_until(lambda: len(rows(rt)) == 30, timeout=30, what="all 30 stored")
            finally:
                service.stop(10)
            assert len(set(message_ids(rt))) == 30
            [stats] = service.stats
            assert stats.reconnects >= 1
            assert "reconnecting in" in caplog.text
    finally:
        proxy.stop()


def poll_in_thread(rt: Runtime, deadline: float) -> imap.PollResult:
    """``poll_once`` with a watchdog: a client with no timeout would hang here forever."""
    found: list[imap.PollResult] = []
    worker = threading.Thread(target=lambda: found.append(poll(rt, max_failures=1)), daemon=True)
    worker.start()
    worker.join(deadline)
    assert not worker.is_alive(), f"poll_once still blocked after {deadline} s"
    [result] = found
    return result


# Every step of a pass, stalled: the server (or the link) goes silent right after the
# greeting starts or right after the client sends the command.
STALL_POINTS = [None, b"LOGIN", b"SELECT", b"UID SEARCH", b"RFC822.SIZE", b"BODY.PEEK[]"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the link is the point
@pytest.mark.parametrize(
    "on", [*STALL_POINTS, b"UID STORE"], ids=lambda on: (on or b"greeting").decode()
)
def test_a_stall_at_any_step_times_out_and_the_link_is_dropped(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str, on: bytes | None
) -> None:
    dovecot.append(user, "INBOX", mails(6, "stall"))
    proxy = TcpProxy("127.0.0.1", dovecot.port)
    proxy.start()
    try:
        with runtime(imap_settings(port=proxy.port, timeout=1)) as rt:
            if on is None:
                proxy.arm("stall", after=0)
            else:
                proxy.arm("stall", on=on)
            stalled = poll_in_thread(rt, deadline=20)
            assert not stalled.completed
            assert [f.kind for f in proxy.faults] == ["stall"]
            assert "timed out" in stalled.stats.last_error
            # Hung up at once: a LOGOUT into the silence would wait out a second timeout.
            [link] = proxy.stalled
            assert not any(b"LOGOUT" in line for line in link.after_stall), link.after_stall
            # Stalled on the flag: stored already, the flag follows with the next pass.
            assert len(rows(rt)) == (6 if on == b"UID STORE" else 0)

            again = poll_in_thread(rt, deadline=20)
            assert again.completed
            assert sorted(message_ids(rt)) == [f"stall-{i}@customer.example" for i in range(6)]
            state = dovecot.folder_state(user, "INBOX")
            assert len(state) == 6 and all(SEEN in flags for flags in state.values())
    finally:
        proxy.stop()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_link_that_falls_silent_in_idle_is_replaced_at_the_next_reconcile(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str
) -> None:
    proxy = TcpProxy("127.0.0.1", dovecot.port)
    proxy.start()
    settings = imap_settings(port=proxy.port, timeout=1, reconcile_interval=2)
    try:
        with runtime(settings) as rt:
            service = imap.ImapService(rt, wake=lambda: None)
            service.start()
            try:
                [stats] = service.stats
                wait_until(lambda: stats.state == "idle", timeout=10, what="the poller in IDLE")
                proxy.stall()  # no EXISTS can reach the client any more
                dovecot.append(user, "INBOX", mails(1, "silent"))
                wait_until(
                    lambda: message_ids(rt) == ["silent-0@customer.example"],
                    timeout=20,
                    what="the message stored over a new connection",
                )
            finally:
                service.stop(10)
            assert stats.reconnects >= 1
            assert "timed out" in stats.last_error
            [link] = proxy.stalled
            # It ends IDLE (DONE), hears nothing back and hangs up: no LOGOUT into silence.
            assert not any(b"LOGOUT" in line for line in link.after_stall), link.after_stall
    finally:
        proxy.stop()


def test_uidvalidity_change_recognises_stored_mail_instead_of_reimporting(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str
) -> None:
    originals = mails(3, "uv")
    dovecot.append(user, "Tickets", originals)
    with runtime(imap_settings(folders=["Tickets"])) as rt:
        assert poll(rt).stats.stored == 3
        with rt.sessions() as s:
            before = s.get_one(ImapCursor, ("support", "Tickets")).uidvalidity
        # The folder is deleted and rebuilt (a restore, a migration): new UIDVALIDITY.
        client = dovecot.client(user)
        client.delete_folder("Tickets")
        client.logout()
        dovecot.append(user, "Tickets", [*originals, *mails(1, "uv-new")])
        result = poll(rt)
        assert result.completed
        assert (result.stats.stored, result.stats.duplicates) == (1, 3)
        assert sorted(message_ids(rt)) == sorted(
            [*(f"uv-{i}@customer.example" for i in range(3)), "uv-new-0@customer.example"]
        )
        with rt.sessions() as s:
            assert s.get_one(ImapCursor, ("support", "Tickets")).uidvalidity != before
        assert all(SEEN in f for f in dovecot.folder_state(user, "Tickets").values())


def test_poison_messages_are_skipped_without_blocking_the_folder(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str
) -> None:
    good = mails(4, "good")
    too_big = make_mail(message_id="<big@customer.example>", body="x" * 30_000)
    unreadable = make_mail(message_id="<broken@customer.example>", subject="broken file")
    dovecot.append(user, "INBOX", [good[0], too_big, good[1], unreadable, good[2], good[3]])
    # Dovecot cannot read this file and drops the connection on every FETCH of it.
    [path] = [p for p in dovecot.maildir(user).glob("*/*") if b"broken@customer" in p.read_bytes()]
    path.chmod(0)
    base = path.name.partition(":")[0]  # Dovecot moves it from new/ to cur/ when it syncs
    with runtime(imap_settings(max_message_size=20_000, batch_size=10)) as rt:
        result = poll(rt)
        assert result.completed
        assert result.stats.skipped == 2
        assert sorted(message_ids(rt)) == [f"good-{i}@customer.example" for i in range(4)]
        # UIDs follow the order of the APPENDs: the poison is 2 and 4.  It stays in the
        # folder, unflagged, where a person can see it.
        state = flags_by_uid(dovecot, user, "INBOX")
        assert {uid for uid, flags in state.items() if SEEN not in flags} == {2, 4}
        assert len(state) == 6

        # Once the cause is fixed, a full pass brings the skipped message in.
        [path] = dovecot.maildir(user).glob(f"*/{base}*")
        path.chmod(0o600)
        again = poll(rt)
        assert (again.stats.stored, again.stats.skipped) == (1, 1)
        assert "broken@customer.example" in message_ids(rt)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the database is not the point
def test_both_tls_modes_verify_the_server_certificate(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.append(user, "INBOX", mails(2, "tls"))
    modes = [("starttls", dovecot.port), ("implicit", dovecot.tls_port)]
    for tls, port in modes:  # a self-signed certificate nobody said to trust
        with runtime(imap_settings(tls=tls, port=port)) as rt:
            refused = poll(rt, max_failures=1)
            assert not refused.completed
            assert "CERTIFICATE_VERIFY_FAILED" in refused.stats.last_error
            assert rows(rt) == []
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cert))  # now the system trusts it
    for tls, port in modes:
        with runtime(imap_settings(tls=tls, port=port, name=f"desk-{tls}")) as rt:
            assert poll(rt).completed
    assert len(message_ids(rt)) == 2  # the second account found both already stored


# One backend is enough to measure memory; SQLite keeps it quick.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_two_thousand_messages_import_in_bounded_memory(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    count, size = 2000, 10_000
    batch = mails(count, "bulk", body_bytes=size)
    dovecot.append(user, "INBOX", batch)
    total = sum(map(len, batch))
    del batch
    caplog.set_level(logging.INFO, logger="mailgate.ingest.imap")
    with runtime(imap_settings(batch_size=100)) as rt:
        tracemalloc.start()
        try:
            started = time.monotonic()
            result = poll(rt)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result.completed
        assert result.stats.stored == count
        with rt.sessions() as s:
            assert s.scalar(select(func.count(func.distinct(InboundMessage.message_id)))) == count
    # The mailbox is 20 batches of about 1 MB.  Memory that grew with the mailbox would
    # pass 20 MB; a reader that holds one batch (plus the parsed response and the ORM
    # rows made from it) stays within a few batches.
    one_batch = total / count * 100
    assert total > 19_000_000
    assert peak < 6 * one_batch, f"peak {peak} bytes; one batch is {one_batch:.0f} bytes"
    assert "2000 of 2000 read" in caplog.text  # progress is reported as it goes
    print(f"2000 messages in {time.monotonic() - started:.1f} s, peak {peak / 1e6:.1f} MB")


# CI always has PostgreSQL (.ci/run fails without it), so this never skips there.
@pytest.mark.skipif(not PG_URL, reason="leases exist on PostgreSQL only")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_one_process_reads_a_folder_and_another_takes_over(
    imap_settings: ImapSettings, dovecot: Dovecot, user: str
) -> None:
    dovecot.append(user, "INBOX", mails(2, "lease"))
    with runtime(imap_settings()) as rt:
        other = imap.FolderLease(rt, "support", "INBOX")  # another mailgate process
        assert other.acquire()
        try:
            busy = poll(rt)
            assert busy.busy and not busy.completed
            assert rows(rt) == []
        finally:
            other.release()  # that process dies; its session and lock go with it
        assert poll(rt).stats.stored == 2
