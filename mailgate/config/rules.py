"""Loading ``[[rules]]``: the admin's own postmaster filters, checked whole at start-up.

Each table has a ``name``, a ``match`` table of regular expressions (``from``,
``sender``, ``to``, ``subject``, ``body``, ``header.<name>``; all given must match) and a
``then`` table (``queue``, ``priority``, ``acknowledge``, ``quarantine``).  Every bad
regex, unknown key, unknown queue or wrong type is a problem of its own, so the config
error at start-up lists them all.  The patterns are compiled here with the ``regex``
module — the engine ``pipeline.rules`` runs them with, under a time budget — in its
``V0`` mode, which reads patterns as Python's ``re`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import regex

from mailgate.config.settings import Rule

MATCH_KEYS = ("from", "sender", "to", "subject", "body")
THEN_KEYS = ("queue", "priority", "acknowledge", "quarantine")
PRIORITIES = ("high", "normal")
_HEADER_NAME = regex.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 field name characters


def build_rules(tables: Any, queue_names: frozenset[str], problems: list[str]) -> tuple[Rule, ...]:
    """The ``[[rules]]`` array of tables as ``Rule`` values; problems are appended."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        problems.append("[[rules]] must be an array of tables")
        return ()
    rules: list[Rule] = []
    names: set[str] = set()
    for i, table in enumerate(tables):
        name = table.get("name")
        where = f"rules[{i}]" + (f" ({name})" if isinstance(name, str) and name else "")
        before = len(problems)
        rule = _rule(where, table, queue_names, problems)
        if isinstance(name, str) and name in names:
            problems.append(f"{where}: name is used by more than one rule")
        names.add(name if isinstance(name, str) else "")
        if rule is not None and len(problems) == before:
            rules.append(rule)
    return tuple(rules)


def _rule(
    where: str, table: Mapping[str, Any], queues: frozenset[str], problems: list[str]
) -> Rule | None:
    for extra in sorted(set(table) - {"name", "match", "then"}):
        problems.append(f"{where}: unknown key {extra!r}")
    name = table.get("name")
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "\r\n,"):
        problems.append(f"{where}.name: required, one line of text without commas")
        name = ""
    match = _match(where, table.get("match"), problems)
    then = _then(where, table.get("then"), queues, problems)
    if match is None or then is None:
        return None
    return Rule(name=name, match=match, **then)


def _match(where: str, value: Any, problems: list[str]) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(value, dict) or not value:
        problems.append(f"{where}.match: required, a table of at least one regex")
        return None
    out: list[tuple[str, str]] = []
    for key, pattern in _flatten(value):
        field_ok = key in MATCH_KEYS or (
            key.startswith("header.") and _HEADER_NAME.match(key[len("header.") :])
        )
        if not field_ok:
            problems.append(
                f"{where}.match: unknown key {key!r} (from, sender, to, subject, body, header.NAME)"
            )
            continue
        if not isinstance(pattern, str):
            problems.append(f"{where}.match.{key}: expected a regex string, got {pattern!r}")
            continue
        try:
            regex.compile(pattern, regex.V0)
        except regex.error as exc:
            problems.append(f"{where}.match.{key}: bad regex {pattern!r}: {exc}")
            continue
        out.append((key.lower(), pattern))
    return tuple(out)


def _flatten(table: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``header.X-Foo = "…"`` written as a dotted key arrives as ``{"header": {…}}``."""
    items: list[tuple[str, Any]] = []
    for key, value in table.items():
        if key == "header" and isinstance(value, dict):
            items.extend((f"header.{name}", v) for name, v in value.items())
        else:
            items.append((key, value))
    return items


def _then(
    where: str, value: Any, queues: frozenset[str], problems: list[str]
) -> dict[str, Any] | None:
    if not isinstance(value, dict) or not value:
        problems.append(f"{where}.then: required, a table of queue/priority/acknowledge/quarantine")
        return None
    out: dict[str, Any] = {}
    for key, v in value.items():
        if key not in THEN_KEYS:
            problems.append(f"{where}.then: unknown key {key!r}")
        elif key == "queue" and not (isinstance(v, str) and v in queues):
            problems.append(
                f"{where}.then.queue: {v!r} is not a queue ({', '.join(sorted(queues))})"
            )
        elif key == "priority" and v not in PRIORITIES:
            problems.append(f"{where}.then.priority: {v!r} is not high or normal")
        elif key == "acknowledge" and not isinstance(v, bool):
            problems.append(f"{where}.then.acknowledge: expected true or false, got {v!r}")
        elif key == "quarantine" and not (isinstance(v, str) and v.strip() and len(v) <= 48):
            problems.append(f"{where}.then.quarantine: a reason of 1-48 characters")
        else:
            out[key] = v
    return out
