"""A 30 MB message over SMTP (ingest.dataread reads DATA into one buffer): stored byte
for byte as sent, dot-stuffed lines restored, and its attachment intact on the ticket."""

from __future__ import annotations

import os
import smtplib
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select

from mailgate.store.models import Attachment, Blob, InboundMessage
from tests.conftest import make_runtime, make_settings
from tests.support import DaemonThread, RelaySink, wait_until


def big_mail(payload: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jan Kowalski <jan@customer.example>"
    msg["To"] = "support@helpdesk.example"
    msg["Subject"] = "Zrzut bazy"
    # A line starting with a dot: smtplib stuffs it, the reader must unstuff it.
    msg.set_content("W załączniku zrzut.\n.the dot stays\n..and two\n")
    msg.add_attachment(payload, maintype="application", subtype="gzip", filename="dump.gz")
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_a_30_mb_message_is_stored_as_sent_and_its_attachment_kept(
    db_url: str, tmp_path: Path, sink: RelaySink
) -> None:
    settings = make_settings(
        db_url,
        tmp_path,
        outbound={"relay": f"127.0.0.1:{sink.port}"},
        smtp={"max_message_size": 40 * 1024 * 1024},
    )
    rt = make_runtime(settings)
    payload = os.urandom(22_000_000)
    raw = big_mail(payload)
    assert len(raw) > 30_000_000
    try:
        with DaemonThread(rt) as d, smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=120) as c:
            assert c.sendmail("jan@customer.example", ["support@helpdesk.example"], raw) == {}

            def processed() -> bool:
                with rt.sessions() as s:
                    return s.scalar(select(InboundMessage.status)) == "done"

            wait_until(processed, timeout=120, what="the big message processed")
        with rt.sessions() as s:
            stored = s.scalars(select(InboundMessage.raw)).one()
            assert stored == raw  # it already ends in CRLF: nothing added, nothing lost
            data = s.scalars(
                select(Blob.data).join(Attachment, Attachment.sha256 == Blob.sha256)
            ).one()
            assert data == payload
    finally:
        rt.close()
