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
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailgate.config.checks import cross_checks
from mailgate.config.rules import build_rules
from mailgate.config.settings import (
    LISTS,
    DkimKey,
    Settings,
    section_types,
)
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
        if name == "rules":
            continue  # built once the queues are known (``config.rules``)
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
        if section in LISTS or section == "rules":
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
    queues = frozenset(getattr(built.get("helpdesk"), "queues", {}).values())
    built["rules"] = build_rules(data.get("rules", []), queues, problems)
    # A key with a bad type or an unknown name kept its default above, so the rules
    # between keys still run: the admin sees every problem in one pass.
    settings = Settings(**built)
    problems.extend(cross_checks(settings, environ or {}))
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
