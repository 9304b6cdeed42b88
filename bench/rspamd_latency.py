"""What asking rspamd during DATA adds to each SMTP transaction (issue 18).

``python bench/rspamd_latency.py [--n 200]`` starts a real rspamd (the tests' private
instance: tests/rspamd.py) and the daemon on a throw-away SQLite database, then sends
``n`` honest messages over one SMTP connection, one after the other, twice: with
``[spam] rspamd_url`` unset and set.  Each transaction is timed at the client from MAIL
FROM to the 250 after the final dot; the printed p50/p99 of both runs and their
difference are the extra time per message.  The rspamd call's own duration
(``ScanResult.seconds``, measured around the HTTP request) is printed beside them.
rspamd's DNS goes to a stub resolver in this process that answers every query at once
with NXDOMAIN — what a local caching resolver does for RBL look-ups of clean mail — so
the figure is rspamd's work and not the timeouts of a machine without DNS
(``--no-dns-stub`` shows those: rspamd then waits on its 0.2 s DNS timeout).
Messages alternate between three shapes (a short text, a longer text, 20 kB more
body) so the scans are not all of one size.
"""

from __future__ import annotations

import argparse
import logging
import smtplib
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailgate.ingest.scan import RspamdClient
from mailgate.store.migrate import upgrade
from tests.conftest import make_runtime, make_settings
from tests.rspamd import Rspamd, binary
from tests.support import DaemonThread, make_mail

HELPDESK = "support@helpdesk.example"


def messages(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        body = f"Dzień dobry,\nserwer {i} nie odpowiada od rana.\nJan\n"
        if i % 3 == 1:
            body += "Szczegóły:\n" + "Logi pokazują błąd połączenia z bazą.\n" * 200
        raw = make_mail(subject=f"Problem {i}", body=body)
        if i % 3 == 2:
            raw += (b"x" * 76 + b"\r\n") * 260  # 20 kB more body
        out.append(raw)
    return out


def run(url: str | None, corpus: list[bytes]) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        spam = {"rspamd_url": url, "rspamd_timeout_ms": 5000} if url else {}
        settings = make_settings(f"sqlite:///{tmp}/bench.db", Path(tmp), spam=spam)
        rt = make_runtime(settings)
        upgrade(rt.engine)
        times = []
        try:
            with DaemonThread(rt) as d, smtplib.SMTP("127.0.0.1", d.port("smtp"), timeout=60) as c:
                c.ehlo()
                for raw in corpus:
                    start = time.perf_counter()
                    c.sendmail("jan@customer.example", [HELPDESK], raw)
                    times.append(time.perf_counter() - start)
        finally:
            rt.close()
        return times


def dns_stub() -> int:
    """A UDP resolver answering NXDOMAIN to everything; returns its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            query, peer = sock.recvfrom(4096)
            if len(query) < 12:
                continue
            # Same id and question; QR=1, RD copied, RA=1, RCODE=3; no answers.
            flags = bytes([0x80 | (query[2] & 0x01), 0x83])
            reply = query[:2] + flags + query[4:6] + b"\0\0\0\0\0\0" + query[12:]
            sock.sendto(reply, peer)

    threading.Thread(target=serve, daemon=True).start()
    return int(sock.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--no-dns-stub", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the acks to one address hit the rate limit
    executable = binary()
    if executable is None:
        sys.exit("rspamd is not installed (.ci/install-mail-servers.sh)")
    corpus = messages(args.n)
    nameserver = "127.0.0.1:1" if args.no_dns_stub else f"127.0.0.1:{dns_stub()}"
    server = Rspamd(executable, nameserver)
    server.start()
    try:
        client = RspamdClient(server.url, 5)
        scans = [client.check(raw, "jan@customer.example", [HELPDESK]) for raw in corpus]
        run(None, corpus[:20])  # warm-up: imports, SQLite file creation
        without = run(None, corpus)
        with_rspamd = run(server.url, corpus)
    finally:
        server.stop()
    actions = statistics.multimode(s.action for s in scans)
    print(f"{args.n} messages, one SMTP connection, sequential; rspamd actions: {actions}")
    print(f"rspamd's resolver: {'none (timeouts)' if args.no_dns_stub else 'NXDOMAIN stub'}")
    print(f"{'':26} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'without rspamd':26} {pct(without, 50):8.1f} {pct(without, 99):8.1f}")
    print(f"{'with rspamd at DATA':26} {pct(with_rspamd, 50):8.1f} {pct(with_rspamd, 99):8.1f}")
    print(
        f"{'extra (difference)':26} {pct(with_rspamd, 50) - pct(without, 50):8.1f} "
        f"{pct(with_rspamd, 99) - pct(without, 99):8.1f}"
    )
    seconds = [s.seconds for s in scans]
    print(f"{'the /checkv2 call alone':26} {pct(seconds, 50):8.1f} {pct(seconds, 99):8.1f}")


if __name__ == "__main__":
    main()
