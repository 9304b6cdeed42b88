"""Rendering outgoing mail from jinja2 templates into bytes with fixed headers.

Templates live in ``templates/<kind>/<lang>/{subject,body}.txt.j2``; autoescape is on
and undefined variables are errors.  Only ticket data and configuration reach a
template — never the inbound subject or body, so an acknowledgement cannot be used to
reflect a stranger's text to a forged address.  The Message-ID is chosen here, once,
and stored with the outbox row, so a resend is recognisably the same message.

Every header value passes ``_header``, which refuses CR and LF (header injection) with
a ``PermanentError("header-injection")``; non-ASCII display names and subjects are
RFC 2047 encoded by the stdlib ``email`` policy.  The DKIM signature is not added here
but by the outbox when it sends (``replies.signing``), so a retry days later carries a
fresh signature made with the key configured at that time.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

import jinja2

from mailgate.clock import Clock
from mailgate.config import Settings
from mailgate.errors import PermanentError

LANGUAGES = ("en", "pl", "sk", "cs", "ru")
MAX_REFERENCES = 20


# Every variable each kind of mail is rendered with (besides number, tag and
# helpdesk_name), with sample values: `mailgate check` and the tests render every
# template in every language with these, so a missing variable fails before a customer
# would see it.
SAMPLE_CONTEXT: dict[str, dict[str, Any]] = {
    "ack": {
        "authorization": "consultative",
        "password_redacted": True,
        "missing": ["target", "service", "start_time", "diagnostics"],
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
    },
    "reply": {"operator_name": "Anna Nowak"},
    "holding": {"eta": "2026-11-23 11:00 UTC"},
    "command_error": {},
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
            body = f"{body}\n{quoted.after.rstrip()}\n"
        domain = from_address.rpartition("@")[2]
        message_id = message_id or f"{kind}.{secrets.token_hex(12)}@{domain}"
        msg = EmailMessage(policy=SMTP)
        name = _header("From", self.settings.helpdesk.name)
        local, _, from_domain = _header("From", from_address).rpartition("@")
        msg["From"] = Address(display_name=name, username=local, domain=from_domain)
        msg["To"] = _header("To", to)
        msg["Subject"] = _header("Subject", subject)
        if reply_to:
            msg["Reply-To"] = _header("Reply-To", reply_to)
        msg["Date"] = format_datetime(clock())
        msg["Message-ID"] = f"<{message_id}>"
        if in_reply_to and _usable_id("In-Reply-To", in_reply_to):
            msg["In-Reply-To"] = f"<{in_reply_to}>"
            chain = [r for r in (*references, in_reply_to) if _usable_id("References", r)]
            msg["References"] = " ".join(f"<{r}>" for r in references_chain(chain))
        # RFC 3834: mark everything we generate, and ask Exchange not to answer it.
        if auto_submitted is not None:
            msg["Auto-Submitted"] = _header("Auto-Submitted", auto_submitted)
            # Old vacation programs know neither header but stay quiet for "bulk".
            msg["Precedence"] = "bulk"
        msg["X-Auto-Response-Suppress"] = "All"
        # Names the helpdesk address, so this mail is recognised if it ever comes back
        # to us through a forwarder that rewrites the Message-ID (autoreply.classify).
        msg["X-Loop"] = from_address.lower()
        msg.set_content(body, charset="utf-8", cte="quoted-printable")
        for name, content_type, data in quoted.attachments:
            maintype, _, subtype = content_type.partition("/")
            if not subtype or any(ch in content_type for ch in "\r\n;"):
                maintype, subtype = "application", "octet-stream"
            msg.add_attachment(
                data, maintype=maintype, subtype=subtype, filename=_header("filename", name)
            )
        # After set_content, which drops every Content-* header set before it.
        msg["Content-Language"] = lang
        return Rendered(message_id=message_id, raw=msg.as_bytes(), subject=subject, body=body)

    def page(self, kind: str, language: str | None, **context: Any) -> str:
        """An HTML page of ours (``templates/<kind>/<lang>/page.html.j2``), autoescaped."""
        lang = self._language(kind, language)
        variables = {"helpdesk_name": self.settings.helpdesk.name, "lang": lang, **context}
        return self.env.get_template(f"{kind}/{lang}/page.html.j2").render(variables)

    def _language(self, kind: str, language: str | None) -> str:
        for lang in (language, self.settings.helpdesk.default_language, "en"):
            if lang and (self.settings.template_dir / kind / lang).is_dir():
                return lang
        raise jinja2.TemplateNotFound(f"{kind}/en")

    def _template(self, kind: str, lang: str, part: str) -> jinja2.Template:
        return self.env.get_template(f"{kind}/{lang}/{part}.txt.j2")


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
