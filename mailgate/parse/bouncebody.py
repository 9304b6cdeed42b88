"""Bounces without an RFC 3464 part: what the subject and the body of a non-standard
failure report say, in the formats of the MTAs and vendors that send them.

``autoreply`` asks here once a mail comes from a bounce sender (null reverse path,
MAILER-DAEMON, postmaster, MDaemon, a no-reply or admin mailbox): whether its subject
or body is a failure report (or only a delay warning), and which recipients failed with
what status.  Formats written after each one's documented or observed output: Postfix,
Exim, Sendmail, qmail, Exchange and Office 365, Gmail, Yahoo, AOL, Domino, MDaemon,
Courier, James, Zimbra, McAfee and Trend Micro gateways, Amazon SES notifications
(JSON), Japanese and Chinese carriers.  Every pattern is bounded: the body is
sender-controlled.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mailgate.parse.message import Bounce

_SCAN = 20_000  # the report comes first; the returned message follows

# --------------------------------------------------------------------------- subjects

BOUNCE_SUBJECT = re.compile(
    r"undelivered\s+mail|delivery\s+status\s+notification\s*\(\s*failure|mail\s+delivery\s+fail"
    r"|undeliverable|undelivered|returned\s+mail|failure\s+notice|delivery\s+failure"
    r"|delivery\s+has\s+failed|could\s+not\s+be\s+delivered|not\s+delivered|nondeliverable"
    r"|non-?delivery|delivery\s+notification:\s*delivery\s+has\s+failed|returned\s+message"
    r"|mail\s+system\s+error|permanent\s+delivery\s+failure|message\s+delivery\s+failure"
    r"|address\s+not\s+found|delivery\s+problem|mail\s+delivery\s+status"
    # German, French, Spanish, Italian
    r"|unzustellbar|nicht\s+zustellbar|zustellung\s+fehlgeschlagen|unzustellbare"
    r"|nachricht\s+konnte\s+nicht|übermittlungsstatus.{0,20}fehler|zustellstatus.{0,20}fehler"
    r"|non\s+remis|non\s+distribuable|échec\s+de\s+(?:la\s+)?(?:remise|distribution)"
    r"|message\s+non\s+remis|rapport\s+de\s+non-remise|état\s+de\s+remise\s*\(\s*échec"
    r"|no\s+se\s+puede\s+entregar|mensaje\s+no\s+entregado|no\s+entregado|error\s+en\s+la\s+entrega"
    r"|devolución\s+de\s+correo|estado\s+de\s+entrega\s*\(\s*error"
    r"|non\s+recapitabile|messaggio\s+non\s+recapitato|mancato\s+recapito|impossibile\s+recapitare"
    r"|consegna\s+non\s+riuscita|stato\s+di\s+consegna\s*\(\s*errore"
    # Polish, Czech, Slovak, Russian
    r"|niedostarczaln|nie\s+dostarczono|niedostarczon|nie\s+można\s+dostarczyć"
    r"|stanie\s+dostarczenia\s*\(\s*niepowodzenie"
    r"|nedoručiteľn|nedoručiteln|nedoručen|nelze\s+doručit|nebola\s+doručená|vrácená\s+pošta"
    r"|stavu\s+doručen[íia]\s*\(\s*(?:chyba|zlyhanie)"
    r"|не\s+доставлено|недоставл|не\s+удалось\s+доставить|не\s+удается\s+доставить"
    r"|не\s+может\s+быть\s+доставлено|возврат\s+письма|статусе\s+доставки\s*\(\s*ошибка"
    # Japanese, Chinese
    r"|配信不能|配送エラー|配信エラー|配信失敗|送信できませんでした|宛先不明|不達"
    r"|退信|投递失败|发送失败|无法投递|无法送达|未送达|無法傳遞|退件|傳送失敗",
    re.IGNORECASE,
)
DELAY_SUBJECT = re.compile(
    r"delayed\s+mail|delivery\s+status\s+notification\s*\(\s*delay|message\s+delayed"
    r"|delivery\s+delayed|delayed\s+\d+\s+hours|warning:.{0,60}delayed|still\s+being\s+retried"
    r"|zustellung\s+verzögert|verzögert|retard|remise\s+différée|retrasad|ritardat"
    r"|opóźnion|zpožděn|oneskoren|задерж|遅延|延迟"
    r"|could\s+not\s+send\s+message\s+for\s+past",  # Sendmail's warning
    re.IGNORECASE,
)

# --------------------------------------------------------------------------- bodies

FAILURE_BODY = re.compile(
    r"I'm\s+sorry\s+to\s+have\s+to\s+inform\s+you\s+that\s+your\s+message\s+could\s+not"
    r"|could\s+not\s+be\s+delivered\s+to\s+one\s+or\s+more\s+(?:of\s+its\s+)?recipients"
    r"|The\s+following\s+address\(es\)\s+failed"
    r"|following\s+addresses\s+had\s+permanent\s+fatal\s+errors"
    r"|This\s+is\s+the\s+qmail-send\s+program|wasn't\s+able\s+to\s+deliver\s+your\s+message"
    r"|Delivery\s+has\s+failed\s+to\s+these\s+recipients|couldn't\s+be\s+delivered"
    r"|did\s+not\s+reach\s+the\s+following\s+recipient|Remote\s+Server\s+returned\s+'?[45]\d\d"
    r"|Address\s+not\s+found|wasn't\s+delivered\s+to|Delivery\s+to\s+the\s+following\s+recipient"
    r"\s+failed|unable\s+to\s+deliver\s+your\s+message|was\s+not\s+delivered\s+to"
    r"|PERMANENT\s+fatal\s+delivery\s+errors|cannot\s+be\s+delivered|UNDELIVERABLE\s+MAIL"
    r"|Failed\s+recipient\(s\)|not\s+listed\s+in\s+(?:Domino|public\s+Name\s+&\s+Address)"
    r"|message\s+was\s+not\s+delivered|could\s+not\s+deliver\s+the\s+message"
    r"|Your\s+message\s+could\s+not\s+be\s+delivered|delivery\s+failed\s+permanently"
    r"|配信できませんでした|配信に失敗|送信できませんでした|宛先不明"
    r"|被退回|无法投递|无法送达|投递失败|退信原因|發送失敗|無法傳遞",
    re.IGNORECASE,
)
DELAY_BODY = re.compile(
    r"THIS\s+IS\s+A\s+WARNING\s+(?:MESSAGE\s+)?ONLY|has\s+not\s+yet\s+been\s+delivered|will\s+be\s+retried"
    r"|still\s+trying|Delivery\s+incomplete|No\s+action\s+is\s+required\s+on\s+your\s+part"
    r"|delivery\s+(?:is\s+)?delayed|will\s+continue\s+to\s+(?:try|attempt)",
    re.IGNORECASE,
)

_ADDRESS = (
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){1,8}"
)
_ADDRESS_RE = re.compile(_ADDRESS)
_STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
_SMTP_CODE = re.compile(r"(?<![\d.#])#?([45]\d\d)(?![\d.])")
# Lines that name a failed recipient, in every format above.
_RECIPIENT_LINES = (
    # Postfix, qmail, Yahoo, Courier: "<a@b>: …" or "<a@b>:" alone
    re.compile(rf"^\s{{0,20}}<({_ADDRESS})>\s*:"),
    # Exim, Domino, Exchange, James, Gmail: the address alone on its line
    re.compile(rf"^\s{{0,20}}<?({_ADDRESS})>?\s*$"),
    # RFC 3464 fields where the report came as plain text
    re.compile(rf"^\s{{0,20}}(?:Final|Original)-Recipient:\s*rfc822\s*;\s*<?({_ADDRESS})>?", re.I),
    # Exchange, Office 365: "a@b (a@b)", "Name (a@b)" alone on a line
    re.compile(rf"^(?:[^<>@()]{{0,80}}?|\s{{0,20}}{_ADDRESS}\s{{0,5}})\(<?({_ADDRESS})>?\)\s*$"),
    # Sendmail's transcript: "<a@b>... Deferred: …"
    re.compile(rf"^\s{{0,20}}<({_ADDRESS})>\.\.\.\s"),
    # old Exchange "a@b on <date>", localized: "am", "le", "el", "il", "op", "em", "på"
    re.compile(rf"^\s{{0,20}}({_ADDRESS})\s+(?:on|am|le|el|il|op|em|på|den)\s"),
    # Sendmail/Courier transcripts, James, MDaemon: "RCPT TO:<a@b>"
    re.compile(rf"RCPT\s+TO:\s*<?({_ADDRESS})>?", re.IGNORECASE),
    # gateways, carriers: "Recipient: a@b", "宛先: a@b", "收件人：a@b"
    re.compile(
        rf"(?:Recipient(?:\(s\))?|Recipient\s+address|Original\s+recipient|宛先|收件人|收件人地址)"
        rf"\s*[:：]\s*<?({_ADDRESS})>?",
        re.IGNORECASE,
    ),
    # prose: "wasn't delivered to a@b", "Your message to a@b couldn't", "delivered to a@b."
    re.compile(
        rf"(?:delivered\s+to|message\s+to|deliver\s+(?:it\s+)?to)\s+<?({_ADDRESS})>?", re.IGNORECASE
    ),
    # "550 5.1.1 <a@b>: …", "550 a@b... User unknown"
    re.compile(rf"\b[45]\d\d\b.{{0,40}}?<?({_ADDRESS})>?(?:\.\.\.|:|\s)", re.IGNORECASE),
)


def report_kind(subject: str, body: str) -> str | None:
    """ "failure", "delay" or None: what a report from a bounce sender says it is."""
    head = body[:_SCAN]
    if DELAY_SUBJECT.search(subject) or DELAY_BODY.search(head):
        return "delay"
    if BOUNCE_SUBJECT.search(subject) or FAILURE_BODY.search(head):
        return "failure"
    return None


def body_recipients(body: str) -> list[str]:
    """Failed recipients named in the report, in order, before the returned message."""
    found: list[str] = []
    for line in _report_lines(body):
        for pattern in _RECIPIENT_LINES:
            match = pattern.search(line)
            if match:
                found.append(match.group(1))
                break
    return found


_RETURNED = re.compile(
    r"^\s*(?:-{2,}.{0,60}(?:copy|original|returned|below)|Received:\s)", re.IGNORECASE
)


def _report_lines(body: str) -> list[str]:
    lines = []
    for line in body[:_SCAN].splitlines():
        # The returned message's headers start here: its From/To are not failures.
        if _RETURNED.match(line):
            break
        lines.append(line[:1000])
    return lines


def body_status(body: str) -> tuple[str | None, str | None]:
    """The enhanced status code (or, when only a basic SMTP code is given, its class as
    "5.0.0"/"4.0.0") and the line it came from."""
    lines = _report_lines(body)
    for pattern, basic in ((_STATUS, False), (_SMTP_CODE, True)):
        for line in lines:
            match = pattern.search(line)
            if match:
                status = f"{match.group(1)[0]}.0.0" if basic else match.group(1)
                return status, " ".join(line.split())[:300] or None
    return None, None


def ses_notification(body: str) -> Bounce | str | None:
    """An Amazon SES notification (raw, or wrapped in an SNS message): a ``Bounce``
    for a bounce, the notification type ("Delivery", "Complaint") otherwise, None when
    the body is no SES notification."""
    text = body.strip()
    if not text.startswith("{") or "Type" not in text or len(text) > 1_000_000:
        return None
    try:
        doc: Any = json.loads(text)
        if isinstance(doc, dict) and isinstance(doc.get("Message"), str):
            doc = json.loads(doc["Message"])  # SNS wraps the SES notification as a string
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    kind = doc.get("notificationType") or doc.get("eventType")
    if kind != "Bounce":
        return kind if isinstance(kind, str) else None
    found = doc.get("bounce")
    bounce: dict[str, Any] = found if isinstance(found, dict) else {}
    recipients: list[str] = []
    status: str | None = None
    diagnostic: str | None = None
    for entry in bounce.get("bouncedRecipients") or ():
        if isinstance(entry, dict) and isinstance(entry.get("emailAddress"), str):
            recipients.append(entry["emailAddress"])
            status = status or _str(entry.get("status"))
            diagnostic = diagnostic or _str(entry.get("diagnosticCode"))
    permanent = bounce.get("bounceType") != "Transient"
    if status is None:
        status = "5.0.0" if permanent else "4.0.0"
    return Bounce(tuple(recipients), status, "failed" if permanent else "delayed", diagnostic)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def addresses(text: str) -> list[str]:
    return _ADDRESS_RE.findall(text)
