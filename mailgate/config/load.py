"""Loading: defaults, one TOML file and the environment become one validated ``Settings``.

Sources, later wins: the built-in defaults (``mailgate.config.settings``), one TOML
file, then environment variables named ``MAILGATE_<SECTION>__<KEY>``
(``MAILGATE_SMTP__LISTEN=127.0.0.1:2525``).  Every problem found — a bad type, an
unknown key, a rule between keys — is collected and raised together as one
``ConfigError`` so an admin fixes the file in one pass.

``[[imap]]`` tables are validated table by table against ``ImapAccountSettings`` and
cannot be set from the environment (only the secrets they name come from there).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailgate.config.settings import (
    IMAP_AUTH_MODES,
    IMAP_TLS_MODES,
    LISTS,
    WEBHOOK_EVENTS,
    DkimKey,
    DkimSettings,
    ImapAccountSettings,
    LimitSettings,
    Settings,
    section_types,
)
from mailgate.config.tokens import parse_tokens
from mailgate.durations import parse_duration
from mailgate.errors import ConfigError

ENV_PREFIX = "MAILGATE_"
# Keys holding arrays of tables ([[dkim.sign]]); other tuple keys are lists of strings.
TABLE_LISTS = frozenset({"dkim.sign"})
_ADDRESS_RE = re.compile(r"^[^@\s<>\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_SELECTOR_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*$")
_LOCAL_PART_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
_ACCOUNT_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def load(path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build ``Settings`` from defaults, the TOML file at ``path`` and the environment."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            problems.append(f"config file {path} does not exist")
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"config file {path} is not valid TOML: {exc}")
    return build(data, environ, problems)


def build(
    data: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    problems: list[str] | None = None,
) -> Settings:
    """Validate a parsed TOML mapping plus environment overrides into ``Settings``."""
    problems = [] if problems is None else problems
    merged: dict[str, dict[str, Any]] = {}
    sections = section_types()
    lists: dict[str, list[Any]] = {}
    for name, value in data.items():
        if name in LISTS:
            if isinstance(value, list) and all(isinstance(v, dict) for v in value):
                lists[name] = value
            else:
                problems.append(f"[[{name}]] must be an array of tables")
        elif name not in sections:
            problems.append(f"unknown section [{name}]{_did_you_mean(name, [*sections, *LISTS])}")
        elif not isinstance(value, dict):
            problems.append(f"[{name}] must be a table")
        else:
            merged[name] = dict(value)
    for key, raw in (environ or {}).items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, option = key[len(ENV_PREFIX) :].lower().partition("__")
        if section in ("config", "test"):  # MAILGATE_CONFIG names the file itself
            continue
        if section in LISTS:
            problems.append(
                f"environment variable {key}: [[{section}]] tables are set in the file only"
            )
            continue
        if section not in sections:
            hint = _did_you_mean(section, [*sections, *LISTS])
            problems.append(f"environment variable {key}: unknown section {section!r}{hint}")
            continue
        merged.setdefault(section, {})[option] = _EnvValue(raw)
    built: dict[str, Any] = {}
    for name, cls in sections.items():
        built[name] = _build_section(name, cls, merged.get(name, {}), problems)
    for name, cls in LISTS.items():
        built[name] = tuple(
            _build_table(f"{name}[{i}]", cls(), table, problems)
            for i, table in enumerate(lists.get(name, []))
        )
    # A key with a bad type or an unknown name kept its default above, so the rules
    # between keys still run: the admin sees every problem in one pass.
    settings = Settings(**built)
    problems.extend(_cross_checks(settings, environ or {}))
    if problems:
        raise ConfigError(problems)
    return settings


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class _EnvValue:
    """A string from the environment, coerced to the type of the key it overrides."""

    text: str


def _build_section(name: str, cls: type, values: Mapping[str, Any], problems: list[str]) -> Any:
    return _build_table(name, getattr(Settings(), name), values, problems)


def _build_table(name: str, default: Any, values: Mapping[str, Any], problems: list[str]) -> Any:
    """``default`` with the well-typed ``values`` applied; every bad key is a problem."""
    fields = {f.name for f in dataclasses.fields(default)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            problems.append(f"[{name}] unknown key {key!r}{_did_you_mean(key, sorted(fields))}")
            continue
        current = getattr(default, key)
        coerced = _coerce(f"{name}.{key}", current, value, problems)
        if coerced is not None:
            kwargs[key] = coerced
    return dataclasses.replace(default, **kwargs)


def _coerce(where: str, default: Any, value: Any, problems: list[str]) -> Any:
    if isinstance(value, _EnvValue):
        text = value.text
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            problems.append(f"{where}: {text!r} is not a boolean")
            return None
        if isinstance(default, int):
            try:
                return int(text)
            except ValueError:
                problems.append(f"{where}: {text!r} is not an integer")
                return None
        if isinstance(default, tuple):
            if where in TABLE_LISTS:
                problems.append(f"{where}: a list of tables cannot be set from the environment")
                return None
            return tuple(p.strip() for p in text.split(",") if p.strip())
        if isinstance(default, Mapping):
            # "a@x=queue,b@x=queue" — mappings are rare in the environment.
            pairs = [p.partition("=") for p in text.split(",") if p.strip()]
            if any(not sep for _, sep, _ in pairs):
                problems.append(f"{where}: expected address=queue pairs separated by commas")
                return None
            return {k.strip(): v.strip() for k, _, v in pairs}
        return text
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, tuple) and where not in TABLE_LISTS:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        problems.append(f"{where}: expected a list of strings, got {value!r}")
        return None
    elif isinstance(default, Mapping):
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return dict(value)
    elif isinstance(default, tuple):
        # The only list of tables so far is [[dkim.sign]] (TABLE_LISTS).
        if isinstance(value, list):
            return _dkim_keys(where, value, problems)
    elif isinstance(default, str) and isinstance(value, str):
        return value
    problems.append(f"{where}: expected {type(default).__name__}, got {value!r}")
    return None


def _dkim_keys(where: str, tables: list[Any], problems: list[str]) -> tuple[DkimKey, ...] | None:
    """Each ``[[dkim.sign]]`` entry with exactly the keys of ``DkimKey``, all strings."""
    names = [f.name for f in dataclasses.fields(DkimKey)]
    keys: list[DkimKey] = []
    before = len(problems)
    for i, table in enumerate(tables):
        if not isinstance(table, dict):
            problems.append(f"{where}[{i}]: expected a table, got {table!r}")
            continue
        for extra in sorted(set(table) - set(names)):
            problems.append(f"{where}[{i}]: unknown key {extra!r}{_did_you_mean(extra, names)}")
        values = {}
        for name in names:
            value = table.get(name)
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{where}[{i}].{name}: required, a non-empty string")
            else:
                values[name] = value.strip()
        if len(values) == len(names):
            keys.append(DkimKey(**values))
    return tuple(keys) if len(problems) == before else None


def parse_hostport(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:25`` for IPv6); raise ValueError when malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port")
    return host.strip("[]"), int(port)


def _cross_checks(s: Settings, environ: Mapping[str, str]) -> list[str]:
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
    if s.outbound.tls not in ("starttls", "implicit", "insecure"):
        problems.append("outbound.tls: must be starttls, implicit or insecure")
    elif s.outbound.tls == "insecure" and s.outbound.relay:
        host = s.outbound.relay.rpartition(":")[0].strip("[]")
        if not is_loopback(host):
            problems.append(
                "outbound.tls: insecure (no TLS) is allowed only for a loopback relay, "
                f"not {host!r}"
            )
    problems.extend(_limit_checks(s))
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
    if s.helpdesk.postmaster and not _ADDRESS_RE.match(s.helpdesk.postmaster):
        problems.append(f"helpdesk.postmaster: {s.helpdesk.postmaster!r} is not an e-mail address")
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
    if s.retention.days < 0 or s.retention.check_seconds <= 0:
        problems.append("retention: days must be 0 or more, check_seconds positive")
    problems.extend(_webhook_checks(s, environ))
    names = [a.name for a in s.imap]
    for i, account in enumerate(s.imap):
        where = f"imap[{i}]" + (f" ({account.name})" if account.name else "")
        problems.extend(f"{where}: {p}" for p in _imap_problems(account, environ))
        if account.name and names.count(account.name) > 1:
            problems.append(f"{where}: name is used by more than one [[imap]] table")
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
