"""Operators' e-mail commands: the ``#word`` lines at the top of an operator's mail.

``read`` is pure.  It takes the visible text of an operator's mail (quotes already cut
by ``quotes.strip_quotes``) and splits it into the leading command block and the rest,
which is the reply.  Every command is checked here against the queues and operators it
may name; one invalid command makes the whole mail change nothing (the pipeline sends
the operator the errors), so a typo never half-applies.  Whether the writer may give
commands at all — an authenticated operator with a valid operator token — is policy's
question, not this module's.

    #status open|pending|resolved|closed   #priority high|normal
    #assign <operator address or name>     #queue <queue>
    #note                                  #eta 2h waiting for the datacenter
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from mailgate.durations import format_duration, parse_duration
from mailgate.store.states import TicketStatus

STATUSES = tuple(s.value for s in TicketStatus if s is not TicketStatus.NEW)
PRIORITIES = ("high", "normal")
_LINE = re.compile(r"^#([a-z][a-z_-]*)\b[ \t]*(.*)$", re.IGNORECASE)
MAX_BLOCK = 20  # lines; a longer run of #lines is text, not commands


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # status | priority | assign | queue | note | eta
    value: str = ""  # normalized: a status, a priority, an operator address, a queue
    duration: timedelta | None = None  # eta
    reason: str = ""  # eta

    @property
    def shown(self) -> str:
        """The command as an operator would write it (events and notes show this)."""
        duration = format_duration(self.duration) if self.duration is not None else ""
        return " ".join(
            part for part in (f"#{self.name}", self.value, duration, self.reason) if part
        )


@dataclass(frozen=True, slots=True)
class Block:
    commands: tuple[Command, ...]
    errors: tuple[str, ...]
    text: str  # the rest of the mail: what the customer will read

    @property
    def note(self) -> bool:
        return any(c.name == "note" for c in self.commands)


def read(text: str, *, queues: frozenset[str], operators: Mapping[str, str]) -> Block:
    """Split ``text`` into its leading command block and the reply.

    ``operators`` maps lower-cased addresses and names to operator addresses.
    """
    lines = text.split("\n")
    commands: list[Command] = []
    errors: list[str] = []
    index = 0
    while index < len(lines) and index < MAX_BLOCK:
        line = lines[index].strip()
        if not line:
            index += 1
            continue
        match = _LINE.match(line)
        if match is None:
            break
        name, argument = match.group(1).lower(), match.group(2).strip()
        command, error = check(name, argument, queues, operators)
        if error:
            errors.append(f"{line}: {error}")
        elif command is not None:
            commands.append(command)
        index += 1
    rest = "\n".join(lines[index:]).strip("\n")
    return Block(tuple(commands), tuple(errors), rest)


def check(
    name: str, argument: str, queues: frozenset[str], operators: Mapping[str, str]
) -> tuple[Command | None, str]:
    """One command and its argument, checked: the command, or an error for its writer.

    The panel API's PATCH checks its fields here, so both doors follow one set of rules.
    """
    value = argument.lower()
    if name == "status":
        if value not in STATUSES:
            return None, f"status must be one of {', '.join(STATUSES)}"
        return Command("status", value), ""
    if name == "priority":
        if value not in PRIORITIES:
            return None, f"priority must be one of {', '.join(PRIORITIES)}"
        return Command("priority", value), ""
    if name == "assign":
        address = operators.get(value)
        if address is None:
            return None, f"no operator {argument!r}"
        return Command("assign", address), ""
    if name == "queue":
        if argument not in queues:
            return None, f"no queue {argument!r} (queues: {', '.join(sorted(queues))})"
        return Command("queue", argument), ""
    if name == "note":
        return (Command("note"), "") if not argument else (None, "#note takes no argument")
    if name == "eta":
        head, _, reason = argument.partition(" ")
        duration = parse_duration(head)
        if duration is None or not reason.strip():
            return None, "write #eta <duration such as 30m, 2h, 1d> <reason for the customer>"
        return Command("eta", duration=duration, reason=reason.strip()), ""
    return None, "unknown command"
