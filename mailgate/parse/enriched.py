"""``text/enriched`` (RFC 1896) and its ancestor ``text/richtext`` → plain text.

Older Apple Mail, Eudora and some mailing list software sent bodies in these formats;
``mime`` reads them as body text like text/plain.  Enriched text marks formatting with
``<bold>``-style commands, writes a literal ``<`` as ``<<``, hides ``<param>`` contents
and folds lines: one line break is a space, n breaks in a row are n-1 line breaks.
Richtext breaks lines only at ``<nl>`` and writes ``<`` as ``<lt>``.  Linear.
"""

from __future__ import annotations

import re

_PARAM = re.compile(r"<param>.{0,1000}?</param>", re.IGNORECASE | re.DOTALL)
_COMMAND = re.compile(r"<(<)|<[^<>]{1,60}>")
_BREAKS = re.compile(r"\n+")
_RICH_COMMAND = re.compile(r"<([a-z/]{1,40})>", re.IGNORECASE)


def enriched_to_text(text: str) -> str:
    """The words of a text/enriched body, with its line folding undone."""
    text = _PARAM.sub("", text)
    text = _COMMAND.sub(lambda m: m.group(1) or "", text)
    return _BREAKS.sub(lambda m: " " if len(m.group()) == 1 else m.group()[1:], text)


def richtext_to_text(text: str) -> str:
    """The words of a text/richtext body (RFC 1341): ``<nl>`` breaks a line."""

    def command(match: re.Match[str]) -> str:
        name = match.group(1).lower()
        return {"nl": "\n", "lt": "<", "np": "\n\n"}.get(name, "")

    return _RICH_COMMAND.sub(command, text.replace("\n", " "))
