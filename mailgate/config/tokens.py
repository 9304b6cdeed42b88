"""The panel API's bearer tokens as the environment holds them: ``name:secret[,…]``.

Parsed here, below everything, so the config check at start-up and the API's door
(``daemon.api``) read the same list the same way.
"""

from __future__ import annotations

import re

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def parse_tokens(text: str) -> tuple[dict[str, str], list[str]]:
    """API tokens from ``name:secret[,name:secret…]``: secret → name, and the problems.

    Problems never quote a secret: they end up in logs and on terminals.
    """
    tokens: dict[str, str] = {}
    problems: list[str] = []
    for i, item in enumerate(p.strip() for p in text.split(",")):
        if not item:
            continue
        name, sep, secret = item.partition(":")
        if not sep or not _NAME_RE.match(name):
            problems.append(f"token {i + 1}: write name:secret (name of letters, digits, . _ -)")
        elif len(secret) < 16:
            problems.append(f"token {name!r}: the secret must hold at least 16 characters")
        elif name in tokens.values() or secret in tokens:
            problems.append(f"token {name!r}: name or secret used twice")
        else:
            tokens[secret] = name
    return tokens, problems
