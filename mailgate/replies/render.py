"""Rendering outgoing mail from jinja2 templates into bytes with fixed headers.

Templates live in ``templates/<kind>/<lang>/{subject,body}.txt.j2``; autoescape is on
and undefined variables are errors.  Only ticket data and configuration reach a
template — never the inbound subject or body, so an acknowledgement cannot be used to
reflect a stranger's text to a forged address.  The Message-ID is chosen here, once,
and stored with the outbox row, so a resend is recognisably the same message.

Every header value passes ``_header``, which refuses CR and LF (header injection) with
a ``PermanentError("header-injection")``; non-ASCII display names and subjects are
RFC 2047 encoded (``email.header``), file names RFC 2231 encoded.  The DKIM signature
is not added here but by the outbox when it sends (``replies.signing``), so a retry
days later carries a fresh signature made with the key configured at that time.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass
from email.charset import QP, Charset
from email.encoders import encode_base64
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.policy import compat32
from email.utils import format_datetime, formataddr
from typing import Any, cast

import jinja2

from mailgate.clock import Clock
from mailgate.config import Settings
from mailgate.errors import PermanentError

LANGUAGES = ("en", "pl", "sk", "cs", "ru")
# Every body template ends with its signature under this line (RFC 3676 §4.3).
SIGNATURE_DELIMITER = "-- \n"
MAX_REFERENCES = 20
# Bodies go out as UTF-8 quoted-printable (readable in raw form, safe for 7-bit hops);
# the lines of the wire format end in CRLF.
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP
_WIRE = compat32.clone(linesep="\r\n")


# Every variable each kind of mail is rendered with (besides number, tag and
# helpdesk_name), with sample values: `mailgate check` and the tests render every
# template in every language with these, so a missing variable fails before a customer
# would see it.
SAMPLE_CONTEXT: dict[str, dict[str, Any]] = {
    "ack": {
        "authorization": "consultative",
        "password_redacted": True,
        "password_used": True,
        "missing": ["target", "service", "start_time", "diagnostics"],
        "web_missing": ["os", "browser", "url", "screenshot"],
        "kb": [{"title": "DNS records: how to add an MX record", "url": "https://kb.example/mx"}],
    },
    "challenge": {
        "reminder": False,
        "login": "jkowalski",
        "requester": "jan@customer.example",
        "requester_name": "Jan Kowalski",
        "subject": "Zmiana DNS",
        "confirm_url": "https://helpdesk.example/confirm/0123456789abcdef0123456789abcdef",
        "expires": "2026-11-26 09:00 UTC",
    },
    "challenge_result": {"outcome": "confirmed"},
    "management_notice": {"queue": "technical"},
    "password_lockout": {
        "login": "jkowalski",
        "failures": 3,
        "hours": 24,
        "until": "2026-11-24 09:00 UTC",
    },
    "operator_notice": {
        "event": "new",
        "requester": "jan@customer.example",
        "queue": "technical",
        "priority": "high",
        "priority_reason": "keyword:awaria",
        "authorization": "authorized",
        "mentions": [7],
        "linked": 3,
        "note_address": "support+42.n.0123456789abcdef0123@helpdesk.example",
        "abusive": True,
        "kb": [{"title": "DNS records: how to add an MX record", "url": "https://kb.example/mx"}],
    },
    "reply": {"operator_name": "Anna Nowak"},
    "holding": {"eta": "2026-11-23 11:00 UTC"},
    "command_error": {},
    "kept_internal": {"reasons": ["unauthenticated", "no-reply-address"]},
    "escalation": {
        "requester": "jan@customer.example",
        "queue": "technical",
        "priority": "high",
        "due": "2026-11-23 09:10 UTC",
        "eta": "2026-11-23 11:00 UTC",
    },
}
PAGE_SAMPLE_CONTEXT: dict[str, dict[str, Any]] = {
    "confirm": {
        "state": "open",
        "outcome": None,
        "number": 1,
        "login": "jkowalski",
        "requester": "jan@customer.example",
        "subject": "Zmiana DNS",
        "expires": "2026-11-26 09:00 UTC",
    },
}


@dataclass(frozen=True, slots=True)
class Quoted:
    """Text and files people wrote, placed around a template's output verbatim."""

    before: str = ""  # above the template's body (an operator's reply)
    after: str = ""  # below it (the customer's text in an operator notice)
    subject: str = ""  # appended to the rendered subject
    attachments: tuple[tuple[str, str, bytes], ...] = ()  # (filename, type, bytes)


@dataclass(frozen=True, slots=True)
class Rendered:
    message_id: str  # without angle brackets
    raw: bytes
    subject: str = ""
    body: str = ""


class Renderer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(settings.template_dir),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            # Block tags on lines of their own leave no blank lines behind.
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._languages: dict[tuple[str, str | None], str] = {}

    def subject_tag(self, number: int) -> str:
        return self.settings.helpdesk.subject_tag.format(number=number)

    def render(
        self,
        kind: str,
        language: str | None,
        *,
        from_address: str,
        to: str,
        in_reply_to: str | None,
        references: tuple[str, ...],
        clock: Clock,
        auto_submitted: str | None = "auto-replied",
        reply_to: str | None = None,
        message_id: str | None = None,
        quoted: Quoted | None = None,
        **context: Any,
    ) -> Rendered:
        """``auto_submitted=None`` marks a mail a person wrote (an operator's reply):
        no Auto-Submitted, no Precedence.  ``quoted`` carries text people wrote, which
        goes into the mail beside the template's output, never through the engine."""
        lang = self._language(kind, language)
        variables = {"helpdesk_name": self.settings.helpdesk.name, **context}
        # Templates end in a newline; anything left inside the subject is an attempt
        # to start a new header line and is refused below.
        subject = self._template(kind, lang, "subject").render(variables).strip()
        body = self._template(kind, lang, "body").render(variables)
        quoted = quoted or Quoted()
        if quoted.subject:
            subject = f"{subject} {quoted.subject}".strip()
        if quoted.before:
            body = f"{quoted.before.rstrip()}\n\n{body}"
        if quoted.after:
            body = _before_signature(body, quoted.after)
        domain = from_address.rpartition("@")[2]
        message_id = message_id or f"{kind}.{secrets.token_hex(12)}@{domain}"
        headers: list[tuple[str, str | Header]] = [
            (
                "From",
                formataddr(
                    (_header("From", self.settings.helpdesk.name), _header("From", from_address)),
                    charset="utf-8",
                ),
            ),
            ("To", _header("To", to)),
            ("Subject", _text_header("Subject", subject)),
        ]
        if reply_to:
            headers.append(("Reply-To", _header("Reply-To", reply_to)))
        headers.append(("Date", format_datetime(clock())))
        headers.append(("Message-ID", f"<{message_id}>"))
        if in_reply_to and _usable_id("In-Reply-To", in_reply_to):
            headers.append(("In-Reply-To", f"<{in_reply_to}>"))
            chain = [r for r in (*references, in_reply_to) if _usable_id("References", r)]
            headers.append(("References", " ".join(f"<{r}>" for r in references_chain(chain))))
        # RFC 3834: mark everything we generate, and ask Exchange not to answer it.
        if auto_submitted is not None:
            headers.append(("Auto-Submitted", _header("Auto-Submitted", auto_submitted)))
            # Old vacation programs know neither header but stay quiet for "bulk".
            headers.append(("Precedence", "bulk"))
        headers.append(("X-Auto-Response-Suppress", "All"))
        # Names the helpdesk address, so this mail is recognised if it ever comes back
        # to us through a forwarder that rewrites the Message-ID (autoreply.classify).
        headers.append(("X-Loop", from_address.lower()))
        headers.append(("Content-Language", lang))
        msg = _assemble(headers, body, quoted.attachments)
        return Rendered(
            message_id=message_id, raw=msg.as_bytes(policy=_WIRE), subject=subject, body=body
        )

    def page(self, kind: str, language: str | None, **context: Any) -> str:
        """An HTML page of ours (``templates/<kind>/<lang>/page.html.j2``), autoescaped."""
        lang = self._language(kind, language)
        variables = {"helpdesk_name": self.settings.helpdesk.name, "lang": lang, **context}
        return self.env.get_template(f"{kind}/{lang}/page.html.j2").render(variables)

    def _language(self, kind: str, language: str | None) -> str:
        key = (kind, language)
        if key not in self._languages:  # the template tree is fixed while we run
            self._languages[key] = self._find_language(kind, language)
        return self._languages[key]

    def _find_language(self, kind: str, language: str | None) -> str:
        for lang in (language, self.settings.helpdesk.default_language, "en"):
            if lang and (self.settings.template_dir / kind / lang).is_dir():
                return lang
        raise jinja2.TemplateNotFound(f"{kind}/en")

    def _template(self, kind: str, lang: str, part: str) -> jinja2.Template:
        return self.env.get_template(f"{kind}/{lang}/{part}.txt.j2")


def _before_signature(body: str, text: str) -> str:
    """``text`` placed at the end of ``body`` but above its signature, so every mail
    ends with the signature under its ``-- `` delimiter (RFC 3676 §4.3), which mail
    clients recognise and leave out of a quoted reply."""
    head, delimiter, signature = body.rpartition(SIGNATURE_DELIMITER)
    if not delimiter:
        return f"{body}\n{text.rstrip()}\n"
    return f"{head.rstrip()}\n\n{text.rstrip()}\n\n{delimiter}{signature}"


def references_chain(ids: list[str]) -> list[str]:
    """The References of a reply: the parent's chain plus the parent, without repeats.

    When the chain is too long the first id (the thread's root) is kept with the most
    recent ones (RFC 5322 §3.6.4 and the practice of Thunderbird): mail clients that
    thread by References need the root, Outlook and Gmail the immediate parent.
    """
    unique = list(dict.fromkeys(ids))
    if len(unique) <= MAX_REFERENCES:
        return unique
    return [unique[0], *unique[-(MAX_REFERENCES - 1) :]]


def _assemble(
    headers: list[tuple[str, str | Header]],
    body: str,
    attachments: tuple[tuple[str, str, bytes], ...],
) -> Message:
    """The MIME structure: one text/plain part, or multipart/mixed with the files.

    Built with the ``compat32`` classes, which store header values as given: the
    header registry of the modern API parsed every value again and was the largest
    single cost of an acknowledgement.  Our values are ours (checked by ``_header``),
    so that parsing bought nothing.
    """
    text = Message()
    text.set_payload(body, _UTF8_QP)
    if attachments:
        msg: Message = MIMEMultipart("mixed")
        del text["MIME-Version"]
        msg.attach(text)
        for name, content_type, data in attachments:
            maintype, _, subtype = content_type.partition("/")
            if not subtype or any(ch in content_type for ch in "\r\n;"):
                maintype, subtype = "application", "octet-stream"
            part = MIMEBase(maintype, subtype)
            del part["MIME-Version"]
            part.set_payload(data)
            encode_base64(part)
            filename = _header("filename", name)
            part.add_header(
                "Content-Disposition",
                "attachment",
                filename=filename if filename.isascii() else ("utf-8", "", filename),
            )
            msg.attach(part)
    else:
        msg = text
    for name, value in headers:
        # A Header is a valid value (the stubs type this class for str only).
        msg[name] = cast(str, value)
    return msg


def _text_header(name: str, value: str) -> str | Header:
    """Free text for a header, RFC 2047 encoded only where it is not plain ASCII.

    ASCII words stay readable on the wire (the ``[#123]`` tag above all: filters and
    people grep for it); runs of other words become encoded words.  Runs of white
    space become one space, which the encoding could not keep at a boundary anyway.
    """
    _header(name, value)
    if value.isascii():
        return value
    header = Header(header_name=name)
    for ascii_run, words in itertools.groupby(value.split(), key=str.isascii):
        header.append(" ".join(words), "us-ascii" if ascii_run else "utf-8")
    return header


def _header(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise PermanentError(
            "header-injection", f"{name} value {value[:80]!r} contains a line break"
        )
    return value


def _usable_id(name: str, value: str) -> bool:
    """An inbound Message-ID we can quote; junk ids are left out of the chain."""
    _header(name, value)
    return bool(value) and not any(ch.isspace() or ch in "<>" for ch in value)
