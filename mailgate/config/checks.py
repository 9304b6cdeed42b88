"""The rules between settings: what each key may hold given the others, checked once the
settings are built, so that ``load`` can report every problem in one ``ConfigError``.

Each section with rules of its own has a function here (``_spam_checks``, ``_imap_problems``
…); ``cross_checks`` runs them all.  The address, host and port helpers the CLI shares
(``is_address``, ``is_loopback``, ``parse_hostport``) live here too.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping

from mailgate.config.settings import (
    IMAP_AUTH_MODES,
    IMAP_TLS_MODES,
    WEBHOOK_EVENTS,
    DkimSettings,
    ImapAccountSettings,
    LimitSettings,
    Settings,
)
from mailgate.config.tokens import parse_tokens
from mailgate.durations import parse_duration

_ADDRESS_RE = re.compile(r"^[^@\s<>\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_SELECTOR_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*$")
_LOCAL_PART_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_ACCOUNT_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def parse_hostport(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:25`` for IPv6); raise ValueError when malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return host.strip("[]"), int(port)


def cross_checks(s: Settings, environ: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for where, value in (
        ("smtp.listen", s.smtp.listen),
        ("lmtp.listen", s.lmtp.listen),
        ("http.listen", s.http.listen),
        ("outbound.relay", s.outbound.relay),
    ):
        if value:
            try:
                parse_hostport(value)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
    if not s.database.url.startswith(("sqlite", "postgresql")):
        problems.append("database.url: only sqlite:/// and postgresql+psycopg:// are supported")
    if s.outbound.tls not in ("auto", "starttls", "implicit", "insecure"):
        problems.append("outbound.tls: must be starttls, implicit or insecure (or auto)")
    elif s.outbound.tls == "insecure" and s.outbound.relay:
        host = s.outbound.relay.rpartition(":")[0].strip("[]")
        if not is_loopback(host):
            problems.append(
                "outbound.tls: insecure (no TLS) is allowed only for a loopback relay, "
                f"not {host!r}"
            )
    problems.extend(_limit_checks(s))
    problems.extend(_socket_checks(s))
    if s.api.max_body <= 0:
        problems.append("api.max_body: must be positive")
    if s.api.tokens_env:
        if s.api.tokens_env not in environ:
            problems.append(f"api.tokens_env: environment variable {s.api.tokens_env} is not set")
        else:
            _, bad = parse_tokens(environ[s.api.tokens_env])
            problems.extend(f"api.tokens_env: {s.api.tokens_env}: {p}" for p in bad)
    problems.extend(_dkim_checks(s.dkim))
    if any(ch in s.helpdesk.name for ch in "\r\n"):
        problems.append("helpdesk.name: must not contain line breaks (it goes into a header)")
    for key in ("postmaster", "management"):
        value = getattr(s.helpdesk, key)
        if value and not _ADDRESS_RE.match(value):
            problems.append(f"helpdesk.{key}: {value!r} is not an e-mail address")
    if not _LOCAL_PART_RE.match(s.outbound.verp_local_part):
        problems.append("outbound.verp_local_part: letters, digits, '.', '_' and '-' only")
    if s.log.format not in ("text", "json"):
        problems.append("log.format: must be text or json")
    if s.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append("log.level: must be DEBUG, INFO, WARNING or ERROR")
    if s.verify.challenge_hours <= 0 or not 0 < s.verify.reminder_hours < s.verify.challenge_hours:
        problems.append("verify: need 0 < reminder_hours < challenge_hours")
    if s.http.public_url and not s.http.public_url.startswith(("http://", "https://")):
        problems.append("http.public_url: must start with http:// or https://")
    if s.directory.url and not s.directory.account_query:
        problems.append("directory.account_query: needed when directory.url is set")
    for name in ("address_query", "identifier_query", "account_query"):
        query = getattr(s.directory, name)
        if query and not query.lstrip().lower().startswith("select"):
            problems.append(f"directory.{name}: must be a SELECT")
    if "{number}" not in s.helpdesk.subject_tag:
        problems.append("helpdesk.subject_tag: must contain {number}")
    if not s.helpdesk.queues:
        problems.append("helpdesk.queues: at least one helpdesk address is needed")
    for address, queue in s.helpdesk.queues.items():
        if not _ADDRESS_RE.match(address):
            problems.append(f"helpdesk.queues: {address!r} is not an e-mail address")
        if not queue.strip():
            problems.append(f"helpdesk.queues: {address!r} has an empty queue name")
    for where, number in (
        ("processing.max_attempts", s.processing.max_attempts),
        ("smtp.max_message_size", s.smtp.max_message_size),
        ("lmtp.max_message_size", s.lmtp.max_message_size),
        ("outbound.timeout", s.outbound.timeout),
        ("database.connect_timeout", s.database.connect_timeout),
        ("daemon.shutdown_seconds", s.daemon.shutdown_seconds),
        ("daemon.outbox_stuck_seconds", s.daemon.outbox_stuck_seconds),
    ):
        if number <= 0:
            problems.append(f"{where}: must be positive")
    for where, name in (
        ("outbound.password_env", s.outbound.password_env),
        ("outbound.verp_secret_env", s.outbound.verp_secret_env),
        ("threading.secret_env", s.threading.secret_env),
    ):
        if name and name not in environ:
            problems.append(f"{where}: environment variable {name} is not set")
    for where, name in (
        ("outbound.verp_secret_env", s.outbound.verp_secret_env),
        ("threading.secret_env", s.threading.secret_env),
    ):
        if name and len(environ.get(name, "")) < 16:
            problems.append(f"{where}: {name} must hold at least 16 characters")
    problems.extend(_conversation_checks(s))
    problems.extend(_spam_checks(s))
    if s.retention.days < 0 or s.retention.check_seconds <= 0:
        problems.append("retention: days must be 0 or more, check_seconds positive")
    problems.extend(_kb_problems(s))
    problems.extend(_webhook_checks(s, environ))
    problems.extend(_imap_checks(s, environ))
    return problems


def _socket_checks(s: Settings) -> list[str]:
    """The LMTP Unix socket: a path the kernel can bind, and octal permissions."""
    problems: list[str] = []
    # sun_path holds 108 bytes with the terminating NUL (unix(7)).
    if len(os.fsencode(s.lmtp.socket)) > 107:
        problems.append("lmtp.socket: the path is longer than 107 bytes (unix(7))")
    mode = s.lmtp.socket_mode
    if not (mode and len(mode) <= 4 and all(c in "01234567" for c in mode)):
        problems.append(f"lmtp.socket_mode: {mode!r} is not an octal mode such as 0660")
    return problems


def _imap_checks(s: Settings, environ: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    names = [a.name for a in s.imap]
    for i, account in enumerate(s.imap):
        where = f"imap[{i}]" + (f" ({account.name})" if account.name else "")
        problems.extend(f"{where}: {p}" for p in _imap_problems(account, environ))
        if account.name and names.count(account.name) > 1:
            problems.append(f"{where}: name is used by more than one [[imap]] table")
    return problems


def _kb_problems(s: Settings) -> list[str]:
    problems: list[str] = []
    for i, article in enumerate(s.kb):
        where = f"kb[{i}]"
        if not article.title.strip():
            problems.append(f"{where}: title is empty")
        if not re.match(r"^https?://\S+$", article.url):
            problems.append(f"{where}: url must be an http:// or https:// address")
        if not article.match:
            problems.append(f"{where}: match is empty")
        else:
            try:
                re.compile(article.match)
            except re.error as exc:
                problems.append(f"{where}: match is not a valid regular expression: {exc}")
    return problems


def _conversation_checks(s: Settings) -> list[str]:
    problems: list[str] = []
    for where, text in (
        ("sla.high", s.sla.high),
        ("sla.normal", s.sla.normal),
        *((f"sla.per_queue.{k}", v) for k, v in s.sla.per_queue.items()),
    ):
        if parse_duration(text) is None:
            problems.append(f"{where}: {text!r} is not a duration such as 10m, 2h or 1d")
    for key in s.sla.per_queue:
        queue, _, priority = key.rpartition(".")
        if queue not in s.queue_names or priority not in ("high", "normal"):
            problems.append(f"sla.per_queue: {key!r} is not <queue>.<high|normal>")
    if s.sla.on_call and not _ADDRESS_RE.match(s.sla.on_call):
        problems.append(f"sla.on_call: {s.sla.on_call!r} is not an e-mail address")
    for where, number in (
        ("sla.close_resolved_days", s.sla.close_resolved_days),
        ("sla.check_seconds", s.sla.check_seconds),
        ("threading.reopen_days", s.threading.reopen_days),
    ):
        if number <= 0:
            problems.append(f"{where}: must be positive")
    languages = ("en", "pl", "sk", "cs", "ru")
    if s.helpdesk.default_language not in languages:
        problems.append(
            f"helpdesk.default_language: {s.helpdesk.default_language!r} is not one of {languages}"
        )
    for queue, language in s.helpdesk.queue_languages.items():
        if queue not in s.queue_names:
            problems.append(f"helpdesk.queue_languages: {queue!r} is not a queue")
        if language not in languages:
            problems.append(f"helpdesk.queue_languages: {language!r} is not one of {languages}")
    if any(not k.strip() for k in s.priority.keywords):
        problems.append("priority.keywords: empty phrase")
    return problems


def _spam_checks(s: Settings) -> list[str]:
    problems = []
    url = s.spam.rspamd_url
    if url and not re.match(r"^http://[^/?#\s]+/?$", url):
        problems.append(f"spam.rspamd_url: {url!r} is not http://host:port")
    if s.spam.rspamd_timeout_ms <= 0 or s.spam.keep_days <= 0:
        problems.append("spam: rspamd_timeout_ms and keep_days must be positive")
    if s.spam.new_tickets_per_sender_per_hour < 0:
        problems.append("spam.new_tickets_per_sender_per_hour: 0 (off) or more")
    return problems


def _webhook_checks(s: Settings, environ: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for i, hook in enumerate(s.webhooks):
        where = f"webhooks[{i}]"
        scheme, _, rest = hook.url.partition("://")
        host = rest.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
        if scheme not in ("http", "https") or not host:
            problems.append(f"{where}.url: must be an http:// or https:// URL")
        elif scheme == "http" and not is_loopback(host):
            problems.append(f"{where}.url: plain http is allowed only to a loopback host")
        if not hook.secret_env or len(environ.get(hook.secret_env, "")) < 16:
            problems.append(f"{where}.secret_env: must name a variable of 16 characters or more")
        unknown = sorted(set(hook.events) - set(WEBHOOK_EVENTS))
        if unknown or not hook.events:
            problems.append(f"{where}.events: one or more of {', '.join(WEBHOOK_EVENTS)}")
        for key in ("timeout", "retry_base_seconds", "retry_max_seconds", "lifetime_hours"):
            if getattr(hook, key) <= 0:
                problems.append(f"{where}.{key}: must be positive")
    return problems


def is_address(value: str) -> bool:
    """A plain e-mail address, as the config and the command line accept them."""
    return bool(_ADDRESS_RE.match(value))


def _limit_checks(s: Settings) -> list[str]:
    problems = []
    for f in dataclasses.fields(LimitSettings):
        if getattr(s.limits, f.name) <= 0:
            problems.append(f"limits.{f.name}: must be positive")
    return problems


def _dkim_checks(d: DkimSettings) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for i, key in enumerate(d.sign):
        where = f"dkim.sign[{i}]"
        domain = key.domain.lower().rstrip(".")
        if domain in seen:
            problems.append(f"{where}.domain: {domain} has more than one signing key")
        seen.add(domain)
        if not _DOMAIN_RE.match(domain):
            problems.append(f"{where}.domain: {key.domain!r} is not a domain name")
        if not _SELECTOR_RE.match(key.selector):
            problems.append(f"{where}.selector: {key.selector!r} is not a DNS label sequence")
        if not os.path.isfile(key.key_file):
            problems.append(f"{where}.key_file: {key.key_file} does not exist")
        elif not os.access(key.key_file, os.R_OK):
            problems.append(f"{where}.key_file: {key.key_file} is not readable")
    return problems


def _imap_problems(a: ImapAccountSettings, environ: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    if not _ACCOUNT_NAME_RE.match(a.name):
        problems.append("name: 1-64 characters of letters, digits, '.', '_' or '-'")
    for key in ("host", "username"):
        if not getattr(a, key):
            problems.append(f"{key}: required")
    if a.tls not in IMAP_TLS_MODES:
        problems.append("tls: must be implicit, starttls or none")
    elif a.tls == "none" and a.host and not is_loopback(a.host):
        # A password in clear text may cross the loopback interface and nothing else.
        problems.append("tls: none is allowed only for a loopback host")
    if a.auth not in IMAP_AUTH_MODES:
        problems.append("auth: must be login or xoauth2")
    if bool(a.password_env) == bool(a.password_file):
        problems.append("exactly one of password_env and password_file is needed")
    elif a.password_env and a.password_env not in environ:
        problems.append(f"password_env: environment variable {a.password_env} is not set")
    elif a.password_file and not os.access(a.password_file, os.R_OK):
        problems.append(f"password_file: {a.password_file} cannot be read")
    if not a.folders:
        problems.append("folders: at least one folder is needed")
    if len(set(a.folders)) != len(a.folders):
        problems.append("folders: a folder is listed twice")
    if any(not f or len(f) > 300 for f in a.folders):
        problems.append("folders: names must be 1-300 characters")
    if a.after not in ("seen", "delete") and not (a.move_to and len(a.move_to) <= 300):
        problems.append("after: must be seen, delete or move:FOLDER")
    elif a.move_to in a.folders:
        problems.append("after: the move target must not be one of the polled folders")
    if a.address and not _ADDRESS_RE.match(a.address):
        problems.append(f"address: {a.address!r} is not an e-mail address")
    if not 0 <= a.port < 65536:
        problems.append("port: must be 0 (the default for the TLS mode) to 65535")
    for key in (
        "poll_interval",
        "reconcile_interval",
        "timeout",
        "batch_size",
        "max_message_size",
    ):
        if getattr(a, key) <= 0:
            problems.append(f"{key}: must be positive")
    return problems


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
