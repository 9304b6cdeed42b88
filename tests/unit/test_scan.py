"""The rspamd client fails open: a filter that is away, slow or talking nonsense gives
an unscanned result (with the reason), never an exception and never a long wait."""

from __future__ import annotations

import socket
import threading
import time

from mailgate.ingest.scan import RspamdClient


def test_a_silent_rspamd_is_given_up_after_the_timeout() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # the kernel accepts the connection; nobody ever answers
        client = RspamdClient(f"http://127.0.0.1:{server.getsockname()[1]}", 0.3)
        start = time.monotonic()
        result = client.check(b"Subject: x\r\n\r\nhi\r\n", "a@b.example", ["c@d.example"])
        took = time.monotonic() - start
    assert result.unscanned and result.action is None
    assert "timed out" in (result.error or "")
    assert took < 2
    assert result.record() == {"unscanned": result.error}


def test_an_answer_that_is_not_rspamds_is_unscanned() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{"a":1}')

        thread = threading.Thread(target=answer)
        thread.start()
        client = RspamdClient(f"http://127.0.0.1:{server.getsockname()[1]}", 2)
        result = client.check(b"Subject: x\r\n\r\nhi\r\n", None, [])
        thread.join(5)
    assert result.unscanned and "no action" in (result.error or "")
