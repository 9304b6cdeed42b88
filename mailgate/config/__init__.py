"""Configuration: the settings types (``settings``) and how they are loaded (``load``).

Everything the rest of mailgate uses is re-exported here, so callers write
``from mailgate.config import Settings`` or ``config.load(path)`` without knowing which
module defines it.  This package sits below the store: it imports only ``errors`` and
``durations``.
"""

from __future__ import annotations

from mailgate.config.checks import is_address, is_loopback, parse_hostport
from mailgate.config.load import ENV_PREFIX, TABLE_LISTS, build, load
from mailgate.config.settings import (
    IMAP_AUTH_MODES,
    IMAP_TLS_MODES,
    LISTS,
    PRIORITY_KEYWORDS,
    QUEUES_DEFAULT,
    WEBHOOK_EVENTS,
    ApiSettings,
    DaemonSettings,
    DatabaseSettings,
    DirectorySettings,
    DkimKey,
    DkimSettings,
    HelpdeskSettings,
    HttpSettings,
    ImapAccountSettings,
    KbArticle,
    LimitSettings,
    ListenerSettings,
    LmtpSettings,
    LogSettings,
    OutboundSettings,
    PrioritySettings,
    ProcessingSettings,
    RetentionSettings,
    Rule,
    Settings,
    SlaSettings,
    SpamSettings,
    TemplateSettings,
    ThreadingSettings,
    VerifySettings,
    WebhookSettings,
    section_types,
)
from mailgate.config.tokens import parse_tokens

__all__ = [
    "ENV_PREFIX",
    "IMAP_AUTH_MODES",
    "IMAP_TLS_MODES",
    "LISTS",
    "PRIORITY_KEYWORDS",
    "QUEUES_DEFAULT",
    "TABLE_LISTS",
    "WEBHOOK_EVENTS",
    "ApiSettings",
    "DaemonSettings",
    "DatabaseSettings",
    "DirectorySettings",
    "DkimKey",
    "DkimSettings",
    "HelpdeskSettings",
    "HttpSettings",
    "ImapAccountSettings",
    "KbArticle",
    "LimitSettings",
    "ListenerSettings",
    "LmtpSettings",
    "LogSettings",
    "OutboundSettings",
    "PrioritySettings",
    "ProcessingSettings",
    "RetentionSettings",
    "Rule",
    "Settings",
    "SlaSettings",
    "SpamSettings",
    "TemplateSettings",
    "ThreadingSettings",
    "VerifySettings",
    "WebhookSettings",
    "build",
    "is_address",
    "is_loopback",
    "load",
    "parse_hostport",
    "parse_tokens",
    "section_types",
]
