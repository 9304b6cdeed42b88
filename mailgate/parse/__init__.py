"""Raw bytes → ``ParsedMessage``: the pure parser and classifier of inbound mail.

Nothing in this package touches a database, a socket, the clock or asyncio, and it
imports nothing of mailgate's outside itself but ``errors``: it can be reasoned about
(and fuzzed) alone.  ``reader.parse`` runs the steps in order; ``autoreply.classify``
says whether the mail is from a person, an auto-responder, a bounce or a list.
"""

from mailgate.parse.reader import (
    DEFAULT_LIMITS,
    ParseLimits,
    decode_bytes,
    decode_rfc2047,
    detect_language,
    display_filename,
    header_text,
    html_to_text,
    message_from_bytes,
    parse,
    strip_quotes,
)

__all__ = [
    "DEFAULT_LIMITS",
    "ParseLimits",
    "decode_bytes",
    "decode_rfc2047",
    "detect_language",
    "display_filename",
    "header_text",
    "html_to_text",
    "message_from_bytes",
    "parse",
    "strip_quotes",
]
