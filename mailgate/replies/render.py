"""Rendering outgoing mail from jinja2 templates into bytes with fixed headers.

Templates live in ``templates/<kind>/<lang>/{subject,body}.txt.j2``; autoescape is on
and undefined variables are errors.  Only ticket data and configuration reach a
template — never the inbound subject or body, so an acknowledgement cannot be used to
reflect a stranger's text to a forged address.  The Message-ID is chosen here, once,
and stored with the outbox row, so a resend is recognisably the same message.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from typing import Any

import jinja2

from mailgate.clock import Clock
from mailgate.config import Settings

LANGUAGES = ("en", "pl", "sk", "cs", "ru")
MAX_REFERENCES = 20

# Every variable each kind of mail is rendered with (besides number, tag and
# helpdesk_name), with sample values: `mailgate check` and the tests render every
# template in every language with these, so a missing variable fails before a customer
# would see it.
SAMPLE_CONTEXT: dict[str, dict[str, Any]] = {
    "ack": {"authorization": "consultative", "password_redacted": True},
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
        auto_submitted: str = "auto-replied",
        reply_to: str | None = None,
        **context: Any,
    ) -> Rendered:
        lang = self._language(kind, language)
        variables = {"helpdesk_name": self.settings.helpdesk.name, **context}
        subject = self._template(kind, lang, "subject").render(variables)
        body = self._template(kind, lang, "body").render(variables)
        domain = from_address.rpartition("@")[2]
        message_id = f"{kind}.{secrets.token_hex(12)}@{domain}"
        msg = EmailMessage(policy=SMTP)
        msg["From"] = formataddr((self.settings.helpdesk.name, from_address))
        msg["To"] = to
        subject = " ".join(subject.split())
        msg["Subject"] = subject
        if reply_to:
            msg["Reply-To"] = reply_to
        msg["Date"] = format_datetime(clock())
        msg["Message-ID"] = f"<{message_id}>"
        if in_reply_to:
            msg["In-Reply-To"] = f"<{in_reply_to}>"
            chain = [*references, in_reply_to][-MAX_REFERENCES:]
            msg["References"] = " ".join(f"<{r}>" for r in dict.fromkeys(chain))
        # RFC 3834: mark everything we generate, and ask Exchange not to answer it.
        msg["Auto-Submitted"] = auto_submitted
        msg["X-Auto-Response-Suppress"] = "All"
        msg.set_content(body, charset="utf-8", cte="quoted-printable")
        # After set_content, which drops Content-* headers set before it.
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
