"""The settings types: one frozen, typed object built once at start-up and passed explicitly.

Each ``[section]`` of the TOML file is one dataclass below, and its defaults are the
built-in defaults; ``Settings`` holds one of each.  ``[[imap]]`` is the exception: an
array of tables, one ``ImapAccountSettings`` per IMAP account, and ``[[kb]]``, one
``KbArticle`` per knowledge-base article (``LISTS``).
``config/mailgate.example.toml`` documents every key; a test proves it names exactly the
keys defined here.  How a file and the environment become a ``Settings`` is
``mailgate.config.load``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import get_type_hints

from mailgate.config.shipped import template_dir as shipped_templates
from mailgate.durations import parse_duration

QUEUES_DEFAULT = {
    "support@helpdesk.example": "technical",
    "billing@helpdesk.example": "billing",
    "abuse@helpdesk.example": "abuse",
}


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///var/mailgate.db"
    busy_timeout_ms: int = 5000
    connect_timeout: int = 5


@dataclass(frozen=True)
class ListenerSettings:
    listen: str = ""  # "host:port"; empty disables the listener
    hostname: str = "mailgate.localhost"
    max_message_size: int = 26_214_400
    max_recipients: int = 50
    timeout: int = 300


@dataclass(frozen=True)
class LmtpSettings(ListenerSettings):
    """``[lmtp]``: the TCP listener's keys, plus the Unix socket ``mailgate ingest`` (the
    MTA's pipe command) hands messages to (``ingest.deliver``, ``ingest.lmtpsocket``)."""

    socket: str = ""  # a path; empty: no Unix socket listener
    socket_mode: str = "0660"  # octal permissions of the socket file


@dataclass(frozen=True)
class HttpSettings:
    listen: str = "127.0.0.1:2580"
    # Where customers' browsers reach the confirm page; empty: http://<listen>.
    public_url: str = ""


@dataclass(frozen=True)
class ApiSettings:
    """The JSON API for the hosting panel (``mailgate.daemon.api``), on the http listener."""

    # Names the environment variable holding the API tokens, "name:secret[,name:secret]";
    # empty (or no tokens): the API is off and every /api/ path answers 404.
    tokens_env: str = ""
    # Bytes; a larger request body is refused with 413.
    max_body: int = 1_048_576


@dataclass(frozen=True)
class VerifySettings:
    # authserv-ids of our own MTA; only its Authentication-Results headers are trusted.
    trusted_authserv_ids: tuple[str, ...] = ()
    # Look up DKIM keys and DMARC policies in DNS.  Off: rely on the trusted
    # Authentication-Results alone (and never wait on a resolver).
    dns_lookups: bool = True
    challenge_hours: int = 72
    reminder_hours: int = 24
    # A mail naming a login and carrying that account's password (checked against the
    # directory's hash) is authorized without a challenge.  Off: passwords are only
    # removed, and the customer is told to change them.
    password_authorization: bool = False


@dataclass(frozen=True)
class DaemonSettings:
    shutdown_seconds: int = 30  # SIGTERM: how long open transactions may finish
    outbox_stuck_seconds: int = 900  # /readyz fails when due mail waits longer


@dataclass(frozen=True)
class OutboundSettings:
    relay: str = ""  # "host:port"; empty: deliver into the Maildir below
    maildir: str = "var/sent"
    # auto: plain SMTP to a loopback relay, verified STARTTLS to any other host |
    # starttls | implicit (both verified) | insecure (loopback only)
    tls: str = "auto"
    username: str = ""
    password_env: str = ""
    timeout: int = 30
    retry_base_seconds: int = 30
    retry_max_seconds: int = 3600
    lifetime_hours: int = 120
    # Names the environment variable with the VERP HMAC key; empty: null envelope sender.
    verp_secret_env: str = ""
    verp_local_part: str = "bounces"


@dataclass(frozen=True)
class LimitSettings:
    acks_per_recipient_per_day: int = 5
    suppress_days: int = 30
    breaker_threshold: int = 300
    breaker_window_seconds: int = 600
    breaker_cooldown_seconds: int = 3600


@dataclass(frozen=True)
class DkimKey:
    """One ``[[dkim.sign]]`` table: the key that signs mail whose From is in ``domain``."""

    domain: str
    selector: str
    key_file: str


@dataclass(frozen=True)
class DkimSettings:
    sign: tuple[DkimKey, ...] = ()


@dataclass(frozen=True)
class ProcessingSettings:
    max_attempts: int = 5
    retry_base_seconds: int = 30
    lease_seconds: int = 300
    max_header_bytes: int = 102_400
    max_mime_depth: int = 20
    # The facts stage (parse, classify, authenticate) runs in this many worker
    # processes, each message under a time and memory budget; 0 runs it in-process.
    parse_workers: int = 2
    parse_seconds: int = 10
    parse_memory_mb: int = 2048
    sweep_seconds: int = 30


@dataclass(frozen=True)
class HelpdeskSettings:
    name: str = "Helpdesk"
    default_language: str = "en"
    subject_tag: str = "[#{number}]"
    # Where notices about dead customer addresses go until accounts know their admins.
    postmaster: str = ""
    queues: Mapping[str, str] = field(default_factory=lambda: dict(QUEUES_DEFAULT))
    # Language of a queue's mail when the customer's cannot be told ("abuse" = "en");
    # queues not named here use default_language.
    queue_languages: Mapping[str, str] = field(default_factory=dict)
    # Told once per ticket (number and subject, never the text) when a customer's mail
    # is flagged as abusive.  Empty: only the operators see the flag.
    management: str = ""


@dataclass(frozen=True)
class ThreadingSettings:
    """Signed reply addresses and Message-IDs (``mailgate.replies.tokens``), reopening."""

    # Names the environment variable holding the threading key (at least 16
    # characters).  Empty: a random key made once and kept in the database.
    secret_env: str = ""
    # A customer reply within this many days of "resolved" reopens the ticket; a later
    # one opens a new ticket that links the old one.
    reopen_days: int = 30


# Words that make a new ticket high priority, in the five languages we answer in.
PRIORITY_KEYWORDS = (
    "server down", "site down", "is down", "outage", "not working", "urgent", "emergency",
    "awaria", "nie działa", "pilne", "serwer leży",
    "nefunguje", "výpadok", "havária", "súrne", "urgentné",
    "nefunguje", "výpadek", "havárie", "naléhavé", "urgentní",
    "не работает", "авария", "сервер упал", "срочно", "недоступен",
)  # fmt: skip


@dataclass(frozen=True)
class PrioritySettings:
    # Case-insensitive phrases in the subject or visible text that make a new ticket
    # high priority (the phrase found is recorded as the reason).
    keywords: tuple[str, ...] = tuple(dict.fromkeys(PRIORITY_KEYWORDS))
    # Believe the sender's Importance: high / X-Priority: 1-2 / Priority: urgent.
    headers: bool = True


@dataclass(frozen=True)
class SlaSettings:
    # First-response targets by priority ("10m", "1h", "1d"), overridable per queue
    # as "<queue>.<priority>" = "<duration>".
    high: str = "10m"
    normal: str = "60m"
    per_queue: Mapping[str, str] = field(default_factory=dict)
    # Also gets every escalation mail; empty: only the queue's operators.
    on_call: str = ""
    # Resolved tickets close on their own after this many days.
    close_resolved_days: int = 7
    # How often (seconds) the SLA and closing jobs run.
    check_seconds: int = 60


@dataclass(frozen=True)
class DirectorySettings:
    """An existing customer database, read through the admin's own SELECTs."""

    url: str = ""  # SQLAlchemy URL; empty: only mailgate's own account tables
    # Each query gets named parameters and returns rows (login, address, role):
    # :address (the sender), :kind and :value (an identifier), :login.  The
    # account_query may add a fourth column: the account's password hash.
    address_query: str = ""
    identifier_query: str = ""
    account_query: str = ""
    cache_seconds: int = 300
    timeout: int = 5


@dataclass(frozen=True)
class RetentionSettings:
    # Raw messages and attachment bytes older than this are deleted (tickets, their
    # text and attachment names stay); 0 keeps everything.
    days: int = 365
    check_seconds: int = 3600


@dataclass(frozen=True)
class SpamSettings:
    """Spam and floods at the door (``pipeline.spam``, ``ingest.scan``)."""

    # Hold mail that our MTA's filter marked as spam (X-Spam-Flag: YES, X-Spam: Yes,
    # X-Rspamd-Action: add header …); only positive verdicts act.
    headers: bool = True
    # rspamd's controller-less scan port ("http://127.0.0.1:11333"); empty: not asked.
    rspamd_url: str = ""
    # How long one scan may take before the message is accepted unscanned.
    rspamd_timeout_ms: int = 2000
    # Held spam is purged by the retention job after this many days.
    keep_days: int = 30
    # New tickets one sender may open in any hour; more are held as a flood.  0: off.
    new_tickets_per_sender_per_hour: int = 0


@dataclass(frozen=True)
class Rule:
    """One ``[[rules]]`` table: regexes that must all match, and what then happens."""

    name: str
    # (key, pattern): from | sender | to | subject | body | header.<name>
    match: tuple[tuple[str, str], ...]
    queue: str | None = None
    priority: str | None = None  # high | normal
    acknowledge: bool | None = None
    quarantine: str | None = None  # a reason: the message is held


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    format: str = "text"  # text | json


@dataclass(frozen=True)
class TemplateSettings:
    directory: str = ""  # empty: the templates shipped with mailgate (mailgate.config.shipped)


@dataclass(frozen=True)
class KbArticle:
    """One ``[[kb]]`` table: a knowledge-base article the acknowledgement may point to."""

    title: str = ""
    url: str = ""  # http(s)://
    # A Python regular expression searched in the subject and the customer's own text.
    match: str = ""


IMAP_TLS_MODES = ("implicit", "starttls", "none")
IMAP_AUTH_MODES = ("login", "xoauth2")


@dataclass(frozen=True)
class ImapAccountSettings:
    """One ``[[imap]]`` table: a mailbox mailgate polls (see ``ingest.imap``)."""

    name: str = ""  # part of every source_ref: imap:<name>:<folder>:<uidvalidity>:<uid>
    host: str = ""
    port: int = 0  # 0: 993 for implicit TLS, 143 otherwise
    tls: str = "implicit"  # implicit | starttls | none (loopback only)
    auth: str = "login"  # login | xoauth2 (the secret is then an access token)
    username: str = ""
    password_env: str = ""
    password_file: str = ""
    folders: tuple[str, ...] = ("INBOX",)
    after: str = "seen"  # seen | move:FOLDER | delete
    acknowledge_existing: bool = False
    address: str = ""  # helpdesk address the mailbox receives for; "" → To/Cc decide
    idle: bool = True
    poll_interval: int = 60
    reconcile_interval: int = 300
    timeout: int = 30
    batch_size: int = 100
    max_message_size: int = 26_214_400

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls == "implicit" else 143)

    @property
    def move_to(self) -> str | None:
        return self.after[len("move:") :] if self.after.startswith("move:") else None


WEBHOOK_EVENTS = ("ticket.created", "article.created", "ticket.updated", "message.quarantined")


@dataclass(frozen=True)
class WebhookSettings:
    """One ``[[webhooks]]`` table: a URL told about changes (see ``mailgate.webhooks``)."""

    url: str = ""  # http(s)://…; plain http only to a loopback host
    secret_env: str = ""  # names the environment variable with the HMAC key
    events: tuple[str, ...] = WEBHOOK_EVENTS
    timeout: int = 10  # seconds for one delivery
    retry_base_seconds: int = 30
    retry_max_seconds: int = 3600
    lifetime_hours: int = 72  # then the event is given up (``mailgate webhooks list``)


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    smtp: ListenerSettings = field(
        default_factory=lambda: ListenerSettings(listen="127.0.0.1:2525")
    )
    lmtp: LmtpSettings = field(default_factory=LmtpSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    dkim: DkimSettings = field(default_factory=DkimSettings)
    processing: ProcessingSettings = field(default_factory=ProcessingSettings)
    helpdesk: HelpdeskSettings = field(default_factory=HelpdeskSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)
    directory: DirectorySettings = field(default_factory=DirectorySettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    threading: ThreadingSettings = field(default_factory=ThreadingSettings)
    priority: PrioritySettings = field(default_factory=PrioritySettings)
    sla: SlaSettings = field(default_factory=SlaSettings)
    log: LogSettings = field(default_factory=LogSettings)
    templates: TemplateSettings = field(default_factory=TemplateSettings)
    spam: SpamSettings = field(default_factory=SpamSettings)
    imap: tuple[ImapAccountSettings, ...] = ()
    kb: tuple[KbArticle, ...] = ()
    rules: tuple[Rule, ...] = ()
    webhooks: tuple[WebhookSettings, ...] = ()

    def queue_for(self, address: str) -> str | None:
        """The queue a recipient address feeds, accepting ``local+tag@domain`` forms."""
        local, _, domain = address.lower().rpartition("@")
        base = local.split("+", 1)[0]
        queues = {a.lower(): q for a, q in self.helpdesk.queues.items()}
        return queues.get(f"{base}@{domain}")

    def first_response_target(self, queue: str, priority: str) -> timedelta:
        """How long a new ticket of this queue and priority may wait for an operator."""
        text = self.sla.per_queue.get(f"{queue}.{priority}") or (
            self.sla.high if priority == "high" else self.sla.normal
        )
        return parse_duration(text) or timedelta(hours=1)  # validated at start-up

    @property
    def queue_names(self) -> frozenset[str]:
        return frozenset(self.helpdesk.queues.values())

    @property
    def public_url(self) -> str:
        if self.http.public_url:
            return self.http.public_url.rstrip("/")
        return f"http://{self.http.listen}"

    @property
    def template_dir(self) -> Path:
        if self.templates.directory:
            return Path(self.templates.directory)
        return shipped_templates()


def section_types() -> dict[str, type]:
    """Section name → dataclass type of the fixed ``[section]`` tables."""
    hints = get_type_hints(Settings)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(Settings)
        if f.name not in LISTS and f.name != "rules"
    }


# Array-of-tables sections ([[name]]) and the dataclass each table becomes.
LISTS: dict[str, type] = {
    "imap": ImapAccountSettings,
    "kb": KbArticle,
    "webhooks": WebhookSettings,
}
