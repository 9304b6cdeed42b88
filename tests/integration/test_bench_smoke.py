"""The benchmark still runs: ``bench/run.py --small`` end to end, every part.

Sizes are tiny and nothing about speed is asserted (the machine is shared); what is
checked is that each part produces its rows, processed every message it sent and
printed a verdict for every target — so the bench cannot rot between releases.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_small_run_prints_every_figure() -> None:
    env = {**os.environ, "MAILGATE_CORPUS_GEN": str(ROOT / "tests/bench_corpus.py")}
    # Two halves at once: most of a small run is waiting on start-ups and fsyncs.
    runs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "bench/run.py"), "--small", "--pg", "", "--only", *only],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # --dns: the smtp rows again with look-ups on, against the stub DNS server.
        for only in (["ceiling,smtp,pipe", "--dns"], ["batch,rss,lookup"])
    ]
    final = ""
    for run in runs:
        stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stdout[-3000:] + stderr[-3000:]
        final += stdout.rpartition("FINAL")[2]
    for figure in (
        "aiosmtpd no-op ceiling",
        "mailgate SMTP end to end, SQLite",
        "mailgate SMTP end to end, SQLite, DNS stub 20 ms",
        "receipt → ack at",
        "batch import (ingest --mbox + drain), 40 msgs",
        "batch import ÷ stdlib floor",
        "parse-only (mail-parser, 1 process)",
        "facts stage alone",
        "peak RSS, 1 MB attachment",
        "ticket lookup by number, 2,000 tickets, SQLite",
        "lookup 2,000 / 200 tickets, SQLite",
        "pipe: ingest per message via the daemon's socket, 4 msgs",
        "pipe floor (stdlib email + SQLite commit, 1 process/msg)",
        "pipe without the daemon (ingest stores directly)",
    ):
        assert figure in final, figure
    # 40 messages: 27 new requests, 13 replies that thread by In-Reply-To.
    assert "27 tickets, 40 articles, 0 quarantined" in final
    verdicts = [line for line in final.splitlines() if line.endswith(("| met     |", "NOT met |"))]
    # throughput and latency (look-ups off and on), batch (÷ parse-only, ÷ the stdlib
    # floor), RSS, lookup growth, pipe
    assert len(verdicts) == 9, final
