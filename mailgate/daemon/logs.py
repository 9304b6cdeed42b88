"""Logging set-up: key=value text or one JSON object per line, chosen in ``[log]``.

A record about one message carries its trace id (the inbound id) and, once known, its
ticket number: given as ``extra={"trace": inbound_id}`` or taken from
``mailgate.tracing`` by the handler's filter.  Both formats put them in fields of their
own (``trace=42 ticket=7`` / ``"trace": 42, "ticket": 7``), so one grep follows a
message from the listener through processing to the acknowledgement leaving the outbox.
Every record is one line — a traceback or a message with line breaks included — and
its timestamp is ISO 8601 with the UTC offset.  The facts workers' records reach this
handler through a queue (``pipeline.facts``), so they are formatted the same way.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from mailgate import tracing
from mailgate.config import LogSettings


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The traceback of ``record``: formatted here, or already by a worker process."""
    if record.exc_info:
        return formatter.formatException(record.exc_info)
    return record.exc_text or ""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for field in ("trace", "ticket"):
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        exc = _exception_text(self, record)
        if exc:
            entry["exc"] = exc
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``ts=… level=… logger=… [trace=…] [ticket=…] message [exc="…"]`` on one line."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created).astimezone()
        return moment.isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={self.formatTime(record)}",
            f"level={record.levelname}",
            f"logger={record.name}",
        ]
        for field in ("trace", "ticket"):
            value = getattr(record, field, None)
            if value is not None:
                parts.append(f"{field}={value}")
        parts.append(_one_line(record.getMessage()))
        exc = _exception_text(self, record)
        if exc:
            # Quoted and escaped: a traceback stays one record for journald and grep.
            parts.append(f"exc={json.dumps(exc, ensure_ascii=False)}")
        return " ".join(parts)


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def configure(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    handler.addFilter(tracing.Fields())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
    # aiosmtpd logs every command at INFO; keep its chatter out of operators' logs.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # APScheduler reports every run of the sweep job at INFO.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # mail-parser warns about parts it cannot decode (parse records them as defects
    # too); its warnings carry the message's trace id, so they are kept.
    logging.getLogger("mailparser").setLevel(logging.WARNING)
