"""Logging set-up: key=value text or one JSON object per line, chosen in ``[log]``."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from mailgate.config import LogSettings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())
    # aiosmtpd logs every command at INFO; keep its chatter out of operators' logs.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # APScheduler reports every run of the sweep job at INFO.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    # mail-parser logs undecodable parts at ERROR; parse records them as defects.
    logging.getLogger("mailparser").setLevel(logging.CRITICAL)
