"""A tiny stand-in for ../shared/corpus/gen_corpus.py, for the bench smoke test.

Same command line (``--n``, ``--out``, ``--support-addr``; other options ignored) and
the same output layout (``eml/NNNNNN.eml`` with LF line endings and ``corpus.mbox``):
new requests from a few senders and every third message a reply to an earlier one.
CI has only this repository, not the shared corpus; the smoke test checks that the
bench runs, not how fast.
"""

from __future__ import annotations

import argparse
import mailbox
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import make_mail


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--out", required=True)
    ap.add_argument("--support-addr", default="support@helpdesk.example")
    ap.add_argument("--thread-by", default="headers")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "eml").mkdir(parents=True)
    box = mailbox.mbox(str(out / "corpus.mbox"))
    for i in range(1, args.n + 1):
        sender = f"customer{i % 5}@customer.example"
        headers = {}
        if i % 3 == 0:
            headers = {"In-Reply-To": f"<bench{i - 1}@customer.example>"}
        raw = make_mail(
            sender=sender,
            to=args.support_addr,
            subject=f"Serwer {i} nie odpowiada",
            message_id=f"<bench{i}@customer.example>",
            headers=headers,
        ).replace(b"\r\n", b"\n")
        (out / "eml" / f"{i:06d}.eml").write_bytes(raw)
        box.add(raw)
    box.close()


if __name__ == "__main__":
    main()
