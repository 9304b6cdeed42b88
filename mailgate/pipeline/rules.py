"""The admin's ``[[rules]]``, run over one message's parsed facts inside ``decide``.

Every rule whose patterns all match applies, in file order: a later queue or priority
overrides an earlier one, and a quarantine ends the walk.  The outcome carries the
rule hits (``rule:<name>``) that are stored with the message.

The patterns are the admin's, so one of them may backtrack catastrophically on a
hostile message.  ``re`` cannot be interrupted, and the decision runs inside the
pipeline's write transaction, so a stalled match would stall every message behind it.
The ``regex`` module reads the same syntax (its ``V0`` mode) and takes a ``timeout=``
per search: a search past ``BUDGET_SECONDS`` counts as no match and leaves a
``rule-timeout:<name>`` hit and a warning.  The texts searched are also cut to
``MAX_TEXT`` characters, which bounds the work of well-behaved patterns too.  A linear
engine (RE2) would need no budget, but it refuses look-around and back-references that
admins' filters use, and reads some classes differently from what the issue promises
("Python regular expressions").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from functools import lru_cache

import regex

from mailgate.config import Rule

log = logging.getLogger(__name__)

BUDGET_SECONDS = 0.05  # per search; a rule has at most a handful
MAX_TEXT = 100_000  # characters of a body (or header) that patterns see


@dataclass(frozen=True, slots=True)
class Target:
    """What a rule's ``match`` keys name, taken from the parsed message and envelope."""

    from_: str
    sender: str
    to: tuple[str, ...]
    subject: str
    body: str
    headers: tuple[tuple[str, str], ...]  # lower-cased names, decoded values


@dataclass(frozen=True, slots=True)
class Outcome:
    hits: tuple[str, ...] = ()
    queue: str | None = None
    priority: str | None = None
    priority_rule: str | None = None
    acknowledge: bool | None = None
    quarantine: str | None = None


NO_RULES = Outcome()


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> regex.Pattern[str]:
    return regex.compile(pattern, regex.V0)  # validated when the config was loaded


def _values(target: Target, key: str) -> tuple[str, ...]:
    if key == "from":
        return (target.from_,)
    if key == "sender":
        return (target.sender,)
    if key == "to":
        return target.to
    if key == "subject":
        return (target.subject,)
    if key == "body":
        return (target.body,)
    name = key[len("header.") :]
    return tuple(v for n, v in target.headers if n == name)


class _TooSlow(Exception):
    pass


def _matches(pattern: str, values: tuple[str, ...]) -> bool:
    compiled = _compiled(pattern)
    for value in values:
        try:
            if compiled.search(value[:MAX_TEXT], timeout=BUDGET_SECONDS):
                return True
        except TimeoutError as exc:
            raise _TooSlow from exc
    return False


def evaluate(rules: tuple[Rule, ...], target: Target) -> Outcome:
    """Apply every matching rule in order; stop at the first quarantine."""
    hits: list[str] = []
    out = Outcome()
    for rule in rules:
        try:
            hit = all(_matches(p, _values(target, key)) for key, p in rule.match)
        except _TooSlow:
            log.warning("rule %r ran out of its time budget; taken as not matching", rule.name)
            hits.append(f"rule-timeout:{rule.name}")
            continue
        if not hit:
            continue
        hits.append(f"rule:{rule.name}")
        if rule.quarantine is not None:
            out = replace(out, quarantine=rule.quarantine)
            break
        out = replace(
            out,
            queue=rule.queue or out.queue,
            priority=rule.priority or out.priority,
            priority_rule=rule.name if rule.priority else out.priority_rule,
            acknowledge=out.acknowledge if rule.acknowledge is None else rule.acknowledge,
        )
    return replace(out, hits=tuple(hits))
