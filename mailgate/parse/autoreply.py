"""Is this mail from a person?  ``classify`` answers for ``pipeline.process``.

Pure: reads a ``ParsedMessage`` (and, for non-standard bounces, the raw bytes) and
returns a ``Classification``: ``bounce``, ``autoreply``, ``list``, ``other`` or
``human``, with the codes of every rule that hit in ``reasons`` so each decision can
be explained.  ``policy`` never answers anything but ``human`` mail (RFC 3834 and
THREATS.md, "Auto-replies and loops").

Kinds, strongest first: a bounce (a delivery status notification) beats an automatic
reply, which beats a mailing list, which beats ``other`` (bulk/junk precedence, our
own mail coming back, no-reply senders).  Some reasons are informational only and
never change the kind (``x-ms-exchange-inbox-rules-loop``, see ``_INFORMATIONAL``).

Bounce details come from the RFC 3464 ``message/delivery-status`` text when there is
one; otherwise from Exim's ``X-Failed-Recipients`` header, flufl.bounce's detectors
(GNU Mailman's collection for Exchange, Exim, qmail … formats) run on the raw bytes,
and a regex over the body.  Which of our mails a bounce is about is not decided here
but by ``replies.bounces`` (VERP address or our Message-ID in the returned mail).

Our own mail coming back is recognised by its From (a helpdesk address), its
Message-ID (our domain) or the ``X-Loop`` header we stamp on everything we send
(survives forwarders that rewrite the Message-ID).
"""

from __future__ import annotations

import contextlib
import email
import re
from collections.abc import Iterable

from flufl.bounce import all_failures

from mailgate.parse.bouncebody import (
    BOUNCE_SUBJECT,
    DELAY_SUBJECT,
    body_recipients,
    body_status,
    report_kind,
    ses_notification,
)
from mailgate.parse.message import Bounce, Classification, Kind, ParsedMessage

# Anchored at the start: "Autoreply not working" is a customer's question, not an
# automatic reply, but "Automatic reply: <original subject>" is Exchange's prefix.
# Reply and forward prefixes and list tags may precede it: "Re: Out of office".
_AUTOREPLY_SUBJECT = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|odp|fw|fwd|wg|tr|rv|r|ha|на|ответ)\s?:\s*|\[[^\[\]]{0,40}\]\s*)"
    r"{0,4}(?:"
    r"automatic\s+reply|auto[\s-]?reply|auto[\s-]?response|out\s+of\s+(?:the\s+)?office"
    r"(?:\s+auto[\s-]?reply)?|abwesenheitsnotiz|automatische\s+antwort|abwesend"
    r"|réponse\s+automatique|absence|risposta\s+automatica|fuori\s+ufficio"
    r"|respuesta\s+automática|fuera\s+de\s+la\s+oficina|automatisch\s+antwoord|afwezig"
    r"|resposta\s+automática|fora\s+do\s+escritório|frånvaro|fraværende|poissa"
    r"|on\s+vacation|vacation\s+reply|away\s+from\s+(?:the\s+)?office|自動応答|自动回复"
    r"|nepřítomnost|neprítomnosť"
    r"|odpowied[źz]\s+automatyczna|automatyczna\s+odpowied[źz]|nieobecno[śs][ćc]"
    r"|automatick[áa]\s+odpove[ďd]|automatick[áa]\s+odpov[ěe]ď|mimo\s+kancel[áa]ri[ea]"
    r"|mimo\s+kancel[áa][řr]|автоответ|автоматический\s+ответ|нет\s+на\s+месте"
    r")(?:\s*[:\-–(]|\s*$|\s+(?:until|till|from|through|bis|vom|jusqu|du|al|hasta|desde|fino"
    r"|do|od|до|с|\d))",
    re.IGNORECASE,
)
_NOREPLY_LOCAL = re.compile(
    r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer[-_.]?daemon)(?:[-+._].*)?$", re.IGNORECASE
)
_DAEMON_LOCALS = frozenset(
    {"mailer-daemon", "mailer_daemon", "mailerdaemon", "mail-daemon", "maildaemon"}
    | {"postmaster", "post_master", "post-master", "mdaemon"}
)
# Mailboxes that send reports but also other mail: a bounce from them must say so in
# its body (a vendor's "could not be delivered", an SES notification).
_REPORTING_LOCAL = re.compile(
    r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|admin|administrator|root|system"
    r"|microsoftexchange[0-9a-f]{0,40}|bounces?|mail[-_.]?router)(?:[-+._].*)?$",
    re.IGNORECASE,
)
_AUTOREPLY_FLAGS = ("x-autoreply", "x-autorespond", "x-autoreply-from", "x-mail-autoreply")
_NOT_FAILURES = frozenset({"delayed", "delivered", "relayed", "expanded"})
_SUPPRESS_TOKENS = frozenset({"all", "autoreply", "oof"})
# Exchange stamps this on mail an inbox rule acted on: rule auto-replies, but also
# rule forwards/redirects of a person's mail, so on its own it decides nothing.
_INFORMATIONAL = frozenset({"x-ms-exchange-inbox-rules-loop"})
_FORWARD_OR_REPLY = re.compile(
    r"^\s*(?:re|aw|sv|vs|antw|odp|fw|fwd|wg|tr|rv|r|i|enc|pd|ynt|回复|转发)\s?[:：]", re.IGNORECASE
)

_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_FLUFL_SCAN_BYTES = 64 * 1024


def classify(
    msg: ParsedMessage,
    envelope_from: str | None,
    own_addresses: frozenset[str] = frozenset(),
    own_message_id_domains: frozenset[str] = frozenset(),
    *,
    raw: bytes | None = None,
) -> Classification:
    """Classify one parsed message; never raises.

    ``envelope_from`` is the SMTP MAIL FROM (``""`` or ``"<>"`` for the null sender);
    ``None`` when unknown (IMAP), in which case the Return-Path header stands in.
    ``raw`` is optional and only read for bounces without a delivery-status part, to
    let flufl.bounce's format detectors find the failed recipients.
    """
    headers = _index(msg.headers)
    sender = _envelope_sender(envelope_from, headers)
    from_address = msg.from_.address if msg.from_ else ""

    bounce_reasons = _bounce_reasons(msg, headers, sender, from_address)
    auto_reasons = _autoreply_reasons(msg, headers, sender, bool(bounce_reasons))
    list_reasons = _list_reasons(headers)
    other_reasons = _other_reasons(
        msg, headers, sender, from_address, own_addresses, own_message_id_domains
    )
    reasons = (*bounce_reasons, *auto_reasons, *list_reasons, *other_reasons)

    kind: Kind = "human"
    bounce = None
    if bounce_reasons:
        bounce = _bounce_details(msg, headers, raw, own_addresses)
        # Only a failure is a bounce; a delay warning or a success report is not.
        kind = "report" if bounce.action in _NOT_FAILURES else "bounce"
    elif any(r not in _INFORMATIONAL for r in auto_reasons):
        kind = "autoreply"
    elif list_reasons:
        kind = "list"
    elif other_reasons:
        kind = "other"
    return Classification(kind=kind, reasons=reasons, bounce=bounce)


def _index(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for name, value in headers:
        index.setdefault(name, []).append(value)
    return index


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _envelope_sender(envelope_from: str | None, headers: dict[str, list[str]]) -> str | None:
    """The reverse path without brackets; ``""`` is the null sender, None unknown."""
    value = envelope_from if envelope_from is not None else _first(headers, "return-path")
    if value is None:
        return None
    return value.strip().strip("<>").strip()


def _local(address: str) -> str:
    return address.rpartition("@")[0].lower() if "@" in address else address.lower()


def _bounce_reasons(
    msg: ParsedMessage, headers: dict[str, list[str]], sender: str | None, from_address: str
) -> list[str]:
    if msg.content_type == "multipart/report" and msg.delivery_status is not None:
        return ["dsn:delivery-status"]
    who = _bounce_sender(msg, sender, from_address)
    if who is None:
        return []  # a person's mail, whatever its subject or headers say
    if "x-failed-recipients" in headers:  # Exim puts it on its bounces only
        return [who, "x-failed-recipients"]
    strong = who != "sender:reporting"
    if not strong and _FORWARD_OR_REPLY.match(msg.subject):
        return []  # an admin forwarding a bounce to us is asking for help
    if strong and BOUNCE_SUBJECT.search(msg.subject):
        return [who, "subject:bounce"]
    if strong and DELAY_SUBJECT.search(msg.subject):
        return [who, "subject:delay"]
    kind = report_kind("", msg.body_text)
    if kind is not None:
        return [who, f"body:{kind}"]
    if isinstance(ses_notification(msg.body_text), Bounce):
        return [who, "ses:bounce"]
    return []


def _bounce_sender(msg: ParsedMessage, sender: str | None, from_address: str) -> str | None:
    """Why the sender may be a bounce's, or None: a person's mail is never a bounce."""
    if sender == "":
        return "envelope:null"
    if sender is not None and _local(sender) in _DAEMON_LOCALS:
        return "envelope:mailer-daemon"
    if _local(from_address) in _DAEMON_LOCALS or "from:mailer-daemon" in msg.defects:
        return "from:mailer-daemon"
    if _REPORTING_LOCAL.match(_local(from_address)) or (
        sender and _REPORTING_LOCAL.match(_local(sender))
    ):
        return "sender:reporting"
    return None


def _autoreply_reasons(
    msg: ParsedMessage, headers: dict[str, list[str]], sender: str | None, bounce: bool
) -> list[str]:
    reasons = []
    auto_submitted = _first(headers, "auto-submitted")
    if auto_submitted is not None:
        # The keyword may carry parameters or a comment: "auto-replied (vacation)".
        keyword = re.split(r"[\s;(]", auto_submitted.strip(), maxsplit=1)[0].lower()
        if keyword != "no":  # RFC 3834 5.1: anything but "no" is automatic
            reasons.append(f"auto-submitted:{keyword or 'empty'}")
    reasons.extend(flag for flag in _AUTOREPLY_FLAGS if flag in headers)
    suppress = _first(headers, "x-auto-response-suppress")
    if suppress is not None:
        tokens = {t.strip().lower() for t in suppress.split(",")}
        reasons.extend(f"x-auto-response-suppress:{t}" for t in sorted(tokens & _SUPPRESS_TOKENS))
    if (_first(headers, "precedence") or "").strip().lower() == "auto_reply":
        reasons.append("precedence:auto_reply")
    if _AUTOREPLY_SUBJECT.search(msg.subject):
        reasons.append("subject:autoreply")
    if msg.content_type == "multipart/report" and msg.delivery_status is None:
        reasons.append("report:not-dsn")  # read receipts (RFC 8098), feedback reports
    if sender == "" and not bounce:
        reasons.append("envelope:null")
    if "x-ms-exchange-inbox-rules-loop" in headers:
        reasons.append("x-ms-exchange-inbox-rules-loop")
    return reasons


def _list_reasons(headers: dict[str, list[str]]) -> list[str]:
    reasons: list[str] = [n for n in ("list-id", "list-unsubscribe", "list-post") if n in headers]
    if (_first(headers, "precedence") or "").strip().lower() == "list":
        reasons.append("precedence:list")
    return reasons


def _other_reasons(
    msg: ParsedMessage,
    headers: dict[str, list[str]],
    sender: str | None,
    from_address: str,
    own_addresses: frozenset[str],
    own_message_id_domains: frozenset[str],
) -> list[str]:
    reasons = []
    precedence = (_first(headers, "precedence") or "").strip().lower()
    if precedence in ("bulk", "junk"):
        reasons.append(f"precedence:{precedence}")
    own = {a.lower() for a in own_addresses}
    if from_address and from_address.lower() in own:
        reasons.append("own:from")
    if any(v.strip().lower() in own for v in headers.get("x-loop", ())):
        reasons.append("own:x-loop")
    # Our outgoing Message-IDs carry our domain; a customer's reply has its own id
    # (ours is then only in In-Reply-To/References), so this finds our mail looping.
    if msg.message_id and "@" in msg.message_id:
        domain = msg.message_id.rpartition("@")[2].lower()
        if domain in {d.lower() for d in own_message_id_domains}:
            reasons.append("own:message-id")
    if _NOREPLY_LOCAL.match(_local(from_address)) or (
        sender and _NOREPLY_LOCAL.match(_local(sender))
    ):
        reasons.append("sender:noreply")
    return reasons


# --------------------------------------------------------------------------- bounces


def _bounce_details(
    msg: ParsedMessage, headers: dict[str, list[str]], raw: bytes | None, own: frozenset[str]
) -> Bounce:
    if msg.delivery_status is not None:
        parsed = parse_delivery_status(msg.delivery_status)
        if parsed.recipients:
            return parsed
    ses = ses_notification(msg.body_text)
    if isinstance(ses, Bounce) and ses.recipients:
        return ses
    failed = [a.strip() for v in headers.get("x-failed-recipients", ()) for a in v.split(",")]
    skip = {a.lower() for a in own}
    if msg.from_:
        skip.add(msg.from_.address.lower())
    return _guess_bounce(msg, raw, frozenset(skip), [a for a in failed if "@" in a])


def parse_delivery_status(text: str) -> Bounce:
    """Per-recipient fields of an RFC 3464 delivery-status body.

    Lists every recipient (Original-Recipient when given, as that is the address we
    sent to, else Final-Recipient); status and action are those of the first
    recipient whose action is "failed", else of the first recipient.
    """
    recipients: list[str] = []
    chosen: tuple[str | None, str | None, str | None] | None = None
    first: tuple[str | None, str | None, str | None] | None = None
    unfolded = re.sub(r"\r?\n[ \t]+", " ", text.replace("\r\n", "\n"))
    for block in re.split(r"\n\s*\n", unfolded):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, colon, value = line.partition(":")
            if colon:
                fields.setdefault(name.strip().lower(), value.strip())
        address = _dsn_address(fields.get("original-recipient")) or _dsn_address(
            fields.get("final-recipient")
        )
        if address is None:
            continue  # the per-message block, or junk
        recipients.append(address)
        status_match = _STATUS.search(fields.get("status", ""))
        status = status_match.group(1) if status_match else None
        action = fields.get("action", "").split()[0].lower() if fields.get("action") else None
        # "smtp; 550 5.1.1 <x@y>: Recipient address rejected" → the part after the type
        diagnostic = " ".join(fields.get("diagnostic-code", "").partition(";")[2].split()) or None
        first = first or (status, action, diagnostic)
        if chosen is None and action == "failed":
            chosen = (status, action, diagnostic)
    status, action, diagnostic = chosen or first or (None, None, None)
    return Bounce(tuple(dict.fromkeys(recipients)), status, action, diagnostic)


def _dsn_address(value: str | None) -> str | None:
    """``rfc822; User@Example.COM`` → ``User@example.com``."""
    if not value:
        return None
    address = value.partition(";")[2] if ";" in value else value
    address = address.strip().strip("<>").strip()
    if "@" not in address or any(ch.isspace() for ch in address):
        return None
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"


def _guess_bounce(
    msg: ParsedMessage, raw: bytes | None, skip: frozenset[str], failed: list[str]
) -> Bounce:
    """Non-standard bounce: X-Failed-Recipients, flufl.bounce on the raw bytes, then
    the report formats of ``bouncebody``."""
    permanent: list[str] = list(failed)
    temporary: list[str] = []
    if raw is not None and not permanent:
        # Heuristic third-party detectors on hostile input: a crash in one of them
        # must cost us the guess, not the message.
        with contextlib.suppress(Exception):
            # The diagnostic comes first; the returned message (which can be megabytes
            # of attachments) does not need to be scanned, so bound the work.
            temp, perm = all_failures(email.message_from_bytes(raw[:_FLUFL_SCAN_BYTES]))
            temporary = sorted(a.decode("ascii", "replace") for a in temp)
            permanent += sorted(a.decode("ascii", "replace") for a in perm)
    found = [*permanent, *temporary] or body_recipients(msg.body_text)
    recipients = tuple(
        dict.fromkeys(
            _normalize(a)
            for a in found
            if a.lower() not in skip and _local(a) not in _DAEMON_LOCALS
        )
    )
    status, diagnostic = body_status(msg.body_text)
    kind = report_kind(msg.subject, msg.body_text)
    action: str | None
    if kind == "delay" and not (status or "").startswith("5"):
        action = "delayed"
        if status is None or status.startswith("2"):
            status = status if status and status.startswith("4") else None
    elif permanent:
        action = "failed"
    elif temporary:
        action = "delayed"
    elif status:
        action = "failed" if status.startswith("5") else "delayed"
    elif kind == "failure":
        action = "failed"
    else:
        action = None
    return Bounce(recipients, status, action, diagnostic)


def _normalize(address: str) -> str:
    local, _, domain = address.strip().strip("<>").rpartition("@")
    return f"{local}@{domain.lower().rstrip('.')}"  # "delivered to a@b." ends a sentence
