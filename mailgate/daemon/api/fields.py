"""What the API accepts: request bodies and query strings described once, as data.

A ``Shape`` is a list of ``Field``s.  The same description checks a request (every
unknown, missing or invalid field is collected, then raised as one 422) and becomes
the JSON Schema in the OpenAPI document, so the document cannot drift from what the
code accepts.  Values are strings (and one integer, a page size); what they must mean —
an existing account, a registered operator — is checked by ``tickets.panel``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mailgate.daemon.api.problems import Problem, invalid

# No NUL: PostgreSQL text cannot hold it, and no mail or address needs it.
NO_NUL = "^[^\\u0000]*$"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    description: str
    required: bool = False
    max_length: int = 512
    min_length: int = 0
    enum: tuple[str, ...] | None = None
    format: str | None = None  # "date-time"
    integer: tuple[int, int] | None = None  # an integer in this range (a query value)
    # Turns a well-formed string into the handler's value, or says what is wrong with it.
    convert: Callable[[str], tuple[Any, str]] | None = None

    def schema(self) -> dict[str, Any]:
        if self.integer is not None:
            low, high = self.integer
            return {"type": "integer", "minimum": low, "maximum": high}
        doc: dict[str, Any] = {"type": "string", "description": self.description}
        if self.enum is not None:
            doc["enum"] = list(self.enum)
            return doc
        doc["maxLength"] = self.max_length
        if self.min_length:
            doc["minLength"] = self.min_length
        if self.format:
            doc["format"] = self.format
        else:
            doc["pattern"] = NO_NUL
        return doc

    def check(self, value: Any) -> tuple[Any, str]:
        """The value as the handler gets it, or a problem with it."""
        if self.integer is not None:
            return _integer(value, *self.integer)
        if not isinstance(value, str):
            return None, "must be a string"
        if self.enum is not None and value not in self.enum:
            return None, f"must be one of {', '.join(self.enum)}"
        if len(value) > self.max_length or len(value) < self.min_length:
            return None, f"must be {self.min_length} to {self.max_length} characters"
        if "\x00" in value:
            return None, "must not contain NUL"
        if self.format == "date-time":
            return _timestamp(value)
        if self.convert is not None:
            return self.convert(value)
        return value, ""


def _integer(value: Any, low: int, high: int) -> tuple[Any, str]:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None, "must be an integer"
    if not low <= number <= high:
        return None, f"must be {low} to {high}"
    return number, ""


def _timestamp(value: str) -> tuple[Any, str]:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None, "must be an RFC 3339 date-time"
    if when.tzinfo is None:
        return None, "must carry a time zone offset (Z or +01:00)"
    return when, ""


@dataclass(frozen=True, slots=True)
class Shape:
    fields: tuple[Field, ...]

    def read(self, data: Any, where: str = "") -> dict[str, Any]:
        """The known fields that were given, checked; 422 listing every problem."""
        if not isinstance(data, Mapping):
            raise invalid([(where or "body", "must be a JSON object")])
        known = {f.name: f for f in self.fields}
        problems = [(name, "unknown field") for name in data if name not in known]
        values: dict[str, Any] = {}
        for f in self.fields:
            if f.name not in data:
                if f.required:
                    problems.append((f.name, "required"))
                continue
            value, problem = f.check(data[f.name])
            if problem:
                problems.append((f.name, problem))
            else:
                values[f.name] = value
        if problems:
            raise invalid(problems)
        return values

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of a body of this shape."""
        doc: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {f.name: f.schema() for f in self.fields},
        }
        required = [f.name for f in self.fields if f.required]
        if required:
            doc["required"] = required
        return doc

    def parameters(self) -> list[dict[str, Any]]:
        """The OpenAPI query parameters of a query string of this shape."""
        return [
            {
                "name": f.name,
                "in": "query",
                "required": f.required,
                "description": f.description,
                "schema": f.schema(),
            }
            for f in self.fields
        ]


def parse_json(raw: bytes) -> Any:
    """The request body as JSON, or 400."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}") from exc
