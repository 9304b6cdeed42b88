"""Raw bytes → ``ParsedMessage``: the pure parser and classifier of inbound mail.

Nothing in this package touches a database, a socket, the clock or asyncio, and it
imports nothing of mailgate's outside itself but ``errors``: it can be reasoned about
(and fuzzed) alone.  ``reader.parse`` runs the steps in order; ``autoreply.classify``
says whether the mail is from a person, an auto-responder, a bounce or a list.
"""

from mailgate.parse.bounds import DEFAULT_LIMITS, ParseLimits
from mailgate.parse.charsets import decode_bytes
from mailgate.parse.headers import decode_rfc2047, header_text
from mailgate.parse.language import detect_language
from mailgate.parse.markup import html_to_text
from mailgate.parse.mime import display_filename
from mailgate.parse.quotes import strip_quotes
from mailgate.parse.reader import message_from_bytes, parse

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
