"""Logging set-up: key=value text or one JSON object per line, chosen in ``[log]``.

A record about one message carries ``extra={"trace": inbound_id}``; both formats put
it in a field of its own (``trace=42`` / ``"trace": 42``), so one grep follows a message
from the listener through processing to the acknowledgement leaving the outbox.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from mailgate.config import LogSettings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        trace = getattr(record, "trace", None)
        if trace is not None:
            entry["trace"] = trace
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(
            "ts=%(asctime)s level=%(levelname)s logger=%(name)s%(trace_field)s %(message)s"
        )

    def format(self, record: logging.LogRecord) -> str:
        trace = getattr(record, "trace", None)
        record.trace_field = "" if trace is None else f" trace={trace}"
        return super().format(record)


def configure(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
    # aiosmtpd logs every command at INFO; keep its chatter out of operators' logs.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # APScheduler reports every run of the sweep job at INFO.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # mail-parser logs undecodable parts at ERROR; parse records them as defects.
    logging.getLogger("mailparser").setLevel(logging.CRITICAL)
