"""Real-world mail, read right (issue 17): sample messages by class, with expected fields.

Each ``tests/data/realworld/<class>/<name>.eml`` was written for mailgate after the RFCs
and after how each client, MTA and vendor formats its mail; ``<name>.json`` beside it
holds the fields it must yield.  Keys (all optional):

* ``error``: the ``PermanentError`` reason ``parse`` must raise;
* ``subject``, ``text`` (the visible reply), ``from`` ([name, address] or null);
* ``body_contains`` / ``body_excludes`` / ``text_contains``: substrings of the body text;
* ``attachments``: the attachment file names in order, ``attachment_sizes`` their sizes;
* ``defects``: defects that must be recorded;
* ``kind``, ``bounce`` ({recipients, status, action}): the classification, with
  ``envelope`` the SMTP MAIL FROM (null: unknown, as from IMAP).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mailgate.errors import PermanentError
from mailgate.parse import parse
from mailgate.parse.autoreply import classify

DATA = Path(__file__).resolve().parent.parent / "data" / "realworld"
SAMPLES = sorted(DATA.glob("*/*.eml"))
OWN = frozenset({"support@helpdesk.example"})
OWN_DOMAINS = frozenset({"helpdesk.example"})


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_every_class_has_samples() -> None:
    classes = {path.parent.name for path in SAMPLES}
    assert {"replies", "charsets", "mime", "from", "bounces", "autoreplies"} <= classes
    for path in SAMPLES:
        assert path.with_suffix(".json").is_file(), path


@pytest.mark.parametrize("path", SAMPLES, ids=_id)
def test_sample(path: Path) -> None:
    expected: dict[str, Any] = json.loads(path.with_suffix(".json").read_text("utf-8"))
    raw = path.read_bytes()
    if "error" in expected:
        with pytest.raises(PermanentError) as caught:
            parse(raw)
        assert caught.value.reason == expected["error"]
        return
    msg = parse(raw)
    if "subject" in expected:
        assert msg.subject == expected["subject"]
    if "text" in expected:
        assert msg.text == expected["text"]
    for part in expected.get("text_contains", ()):
        assert part in msg.text
    if "from" in expected:
        got = [msg.from_.name, msg.from_.address] if msg.from_ else None
        assert got == expected["from"]
    for part in expected.get("body_contains", ()):
        assert part in msg.body_text
    for part in expected.get("body_excludes", ()):
        assert part not in msg.body_text
    if "attachments" in expected:
        assert [a.filename for a in msg.attachments] == expected["attachments"]
    if "attachment_sizes" in expected:
        assert [a.size for a in msg.attachments] == expected["attachment_sizes"]
    for defect in expected.get("defects", ()):
        assert defect in msg.defects
    if "kind" in expected or "bounce" in expected:
        result = classify(msg, expected.get("envelope"), OWN, OWN_DOMAINS, raw=raw)
        if "kind" in expected:
            assert result.kind == expected["kind"], result.reasons
        if "bounce" in expected:
            assert result.bounce is not None, result.reasons
            want = expected["bounce"]
            got = {
                "recipients": list(result.bounce.recipients),
                "status": result.bounce.status,
                "action": result.bounce.action,
            }
            assert {key: got[key] for key in want} == want
