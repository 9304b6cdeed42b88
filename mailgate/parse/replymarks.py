"""The words mail clients put around a quoted message, in the languages our mail comes in.

Vocabulary only, used by ``quotes``: attribution lines ("On … wrote:"), the lines that
open an original message ("-----Original Message-----"), the labels of Outlook's header
blocks (From/Sent/To/Subject in every language), forwarded-message markers (never cut),
mobile and client signatures, closing formulas of a signature, and mailing-list footers.
Every pattern is anchored or bounded so that it stays linear on hostile bodies.
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------- attribution

# The verb that ends an attribution line, per language; the line must also carry a
# digit or "@" (a date or an address), so "my colleague writes:" is not one.
_VERBS = (
    r"wrote|writes|a\s+écrit|a\s+ecrit|ha\s+scritto|schreef|schrieb|escribió|escribio"
    r"|escreveu|skrev|kirjoitti|pisze|napisał\(a\)|napisała|napisał|napsal\(a\)|napsala|napsal"
    r"|napísal\(a\)|napísala|napísal|написал\(а\)|написала|написал|пишет|写道|寫道|έγραψε"
    r"|írta|yazdı|a\s+scris|je\s+napisao|je\s+napisal|rašė|rakstīja|kirjutas|작성"
    r"|đã\s+viết|menulis|เขียนว่า|пише"
)
# What may follow the verb: after an opener ("Am … schrieb Helpdesk <a@b>:"), up to a
# name and an address; otherwise only the colon ("… Helpdesk <a@b> wrote:", "…写道：");
# or "wrote on <date>:" (older clients).
AFTER_OPENER = re.compile(r"(?:\s+.{0,120})?\s?[:：]?\s*(?:-{2,})?\s*")
AFTER_OPENER_VERB = re.compile(r"\s?[:：]?\s*(?:-{2,})?\s*")
# Languages that name the writer after the verb: "Am … schrieb Helpdesk <a@b>:".
NAME_AFTER_VERBS = frozenset({"schrieb", "schreef", "skrev"})
AFTER_VERB = re.compile(r"\s?[:：]\s*(?:-{2,})?\s*")
AFTER_WROTE_ON = re.compile(r"\s+(?:on|am|le|dnia)\s.{1,120}[:：]\s*", re.IGNORECASE)
WROTE_ON_VERBS = frozenset({"wrote", "schrieb", "a écrit", "napisał", "написал"})
# The first half of an attribution a client wrapped over two lines: it opens like one,
# or carries the address.
ATTRIBUTION_OPENER = re.compile(
    r"^\s*(?:-{2,}\s*)?(?:On|Le|Il|Op|Am|El|Em|Den|W\s+dniu|Dnia|Dne|Dňa|В|在)\s", re.IGNORECASE
)
ATTRIBUTION_START = re.compile(r".*[@<]")
# Gmail in Russian, Yandex, Japanese clients: no verb, "<date>, Name <a@b>:".
ADDRESS_COLON = re.compile(r"<[^<>\s@]{1,64}@[^<>\s@]{1,253}>\s?[:：]$")
# An address anywhere in a line: with a date and a final colon, directly above ">"
# quoted lines, a line is an attribution in any language ("Név <a@b> ezt írta
# (időpont: …):", mutt's "* Name <a@b> [2025-12-01 09:00]:").
ADDRESS_ANYWHERE = re.compile(r"[^\s<>()\[\]@]{1,64}@[^\s<>()\[\]@]{1,253}")

# --------------------------------------------------------------------------- original

ORIGINAL_MESSAGE = re.compile(
    r"^\s*[-_=]{2,}\s*(?:Original\s+Message|Original|Ursprüngliche\s+Nachricht"
    r"|Message\s+d'origine|Messaggio\s+originale|Oorspronkelijk\s+bericht"
    r"|Mensaje\s+original|Mensagem\s+original|Opprinnelig\s+melding|Oprindelig\s+meddelelse"
    r"|Ursprungligt\s+meddelande|Alkuperäinen\s+viesti|Oryginalna\s+wiadomość"
    r"|Wiadomość\s+oryginalna|Pôvodná\s+správa|Původní\s+zpráva|Исходное\s+сообщение"
    r"|原始邮件|原始郵件|元のメッセージ|Eredeti\s+üzenet"
    r"|Reply\s+message|Original\s+mail)\s*[-_=]{2,}\s*$",
    re.IGNORECASE,
)
# Outlook's rule line above its header block.
RULE_LINE = re.compile(r"^\s*_{10,}\s*$")

# --------------------------------------------------------------------------- Outlook block

_FROM_LABELS = (
    r"From|De|Von|Van|Da|Od|От|Från|Fra|Lähettäjä|Feladó|Kimden|Από|Від|Afsender|Avsändare"
    r"|Remitente|发件人|發件人|寄件者|差出人|Expéditeur|Mittente"
)
_DATE_LABELS = (
    r"Sent|Date|Envoyé|Gesendet|Datum|Verzonden|Inviato|Data|Wysłano|Wysłane|Отправлено|Дата"
    r"|Skickat|Sendt|Lähetetty|Küldve|Elküldve|Gönderildi|Fecha|Odesláno|Odoslané"
    r"|(?:Enviado|Enviada)(?:\s+(?:el|em))?|发送时间|日期|寄件日期|送信日時|Tarih|Σταλθηκε|Надіслано"
)
_OTHER_LABELS = (
    _DATE_LABELS
    + r"|To|À|A|An|Aan|Do|Кому|Till|Til|Vastaanottaja|Címzett|Kime|Para|Komu|收件人|宛先"
    r"|Cc|Kopie|CC|Копия|Kopia|Kopio|Másolatot\s+kap|Bilgi"
    r"|Subject|Objet|Betreff|Onderwerp|Oggetto|Temat|Тема|Ämne|Emne|Aihe|Tárgy|Konu"
    r"|Asunto|Assunto|Předmět|Predmet|主题|主旨|件名|Θέμα"
)
# "From: …", "*From:* …", "De : …", "**Von:** …"; the value may be on the same line.
HEADER_FROM = re.compile(rf"^\s*[*>]{{0,2}}\s*(?:{_FROM_LABELS})\s?[*]{{0,2}}\s?[:：]", re.I)
HEADER_DATE = re.compile(rf"^\s*[*>]{{0,2}}\s*(?:{_DATE_LABELS})\s?[*]{{0,2}}\s?[:：]", re.I)
HEADER_OTHER = re.compile(rf"^\s*[*>]{{0,2}}\s*(?:{_OTHER_LABELS})\s?[*]{{0,2}}\s?[:：]", re.I)

# A forwarded message is what the customer wants us to read: never cut there.
FORWARD = re.compile(
    r"Forwarded\s+message|Begin\s+forwarded\s+message|Weitergeleitete\s+Nachricht"
    r"|Message\s+transf[ée]r[ée]|Messaggio\s+inoltrato|Doorgestuurd\s+bericht"
    r"|Mensaje\s+reenviado|Mensagem\s+encaminhada|Przekazana\s+wiadomość"
    r"|Preposlaná\s+správa|Přeposlaná\s+zpráva|Пересылаемое\s+сообщение|Пересланное\s+сообщение"
    r"|Videresendt\s+melding|Vidarebefordrat\s+meddelande|Välitetty\s+viesti|转发邮件"
    r"|^\s*[*]{0,2}(?:Subject|Objet|Betreff|Onderwerp|Oggetto|Temat|Тема|Ämne|Emne|Aihe"
    r"|Asunto|Assunto|Předmět|Predmet|件名|主题)\s?[*]{0,2}\s?:[*]{0,2}\s*"
    r"(?:Fwd?|FW|TR|WG|PD|RV|ENC|I|Doorst|VS|VB|Vs|Пересл|转发)\s*:",
    re.IGNORECASE,
)

# --------------------------------------------------------------------------- signatures

SIGNATURE_DASHES = re.compile(r"^(?:-- ?|--\u00a0|__\s?)$")
# What phones and client apps append below the text.
MOBILE_SIGNATURE = re.compile(
    r"^\s*(?:"
    r"Sent\s+(?:from|with|via|using)\s.{1,80}"
    r"|Get\s+Outlook\s+for\s.{1,40}"
    r"|Sent\s+from\s+my\s.{1,60}"
    r"|(?:Envoyé|Envoye)\s+(?:de|depuis)\s.{1,60}"
    r"|Von\s+meinem\s.{1,60}\s+gesendet|Gesendet\s+von\s.{1,60}"
    r"|Inviato\s+da\s.{1,60}"
    r"|Enviado\s+(?:desde|de|do|a\s+partir\s+do)\s.{1,60}"
    r"|Verzonden\s+(?:vanaf|met|van)\s.{1,60}"
    r"|Wys[łl]an[eoy]\s+(?:z|ze|przy\s+użyciu)\s.{1,60}"
    r"|Odesl[áa]no\s+z\s.{1,60}|Odoslan[ée]\s+z\s.{1,60}"
    r"|Отправлено\s+(?:с|из|через)\s.{1,60}"
    r"|Sendt\s+fra\s.{1,60}|Skickat\s+från\s.{1,60}|Lähetetty\s.{1,60}"
    r"|Küldve\s.{1,60}|Gönderen:?\s.{0,10}iPhone.{0,30}"
    r"|从我的.{1,30}发送|發自我的.{1,30}|iPhoneから送信|Androidから送信"
    r")\s*$",
    re.IGNORECASE,
)
# A closing formula on a line of its own, which opens the signature block.
CLOSING = re.compile(
    r"^\s*(?:"
    r"(?:best|kind|warm|warmest|many|with\s+kind|with\s+best)?\s*regards|regards|cheers"
    r"|best(?:\s+wishes)?|(?:yours\s+)?sincerely|yours\s+truly|thanks\s+(?:and|&)\s+regards"
    r"|pozdrawiam(?:\s+serdecznie)?|serdecznie\s+pozdrawiam|z\s+poważaniem|pozdrowienia"
    r"|łączę\s+pozdrowienia"
    r"|s\s+pozdravom|s\s+pozdravem|s\s+úctou|srdečne|srdečně|so\s+srdečným\s+pozdravom"
    r"|с\s+уважением|с\s+наилучшими\s+пожеланиями|всего\s+доброго|всего\s+хорошего"
    r"|mit\s+freundlichen\s+grüßen|mit\s+freundlichen\s+grüssen|freundliche\s+grüße"
    r"|viele\s+grüße|beste\s+grüße|liebe\s+grüße|herzliche\s+grüße|gruß|grüße|mfg|lg"
    r"|cordialement|bien\s+cordialement|bien\s+à\s+vous|salutations(?:\s+distinguées)?"
    r"|cordiali\s+saluti|distinti\s+saluti|saluti|un\s+saluto"
    r"|saludos(?:\s+cordiales)?|un\s+saludo|atentamente|atenciosamente|abraços|cumprimentos"
    r"|met\s+vriendelijke\s+groet(?:en)?|vriendelijke\s+groet(?:en)?|groeten|mvg"
    r"|med\s+venlig\s+hilsen|vennlig\s+hilsen|med\s+vänliga\s+hälsningar|hälsningar|hilsen"
    r"|ystävällisin\s+terveisin|terveisin|üdvözlettel|üdv|tisztelettel|saygılarımla"
    r"|s\s+poštovanjem|lep\s+pozdrav|lijep\s+pozdrav|srdačan\s+pozdrav"
    r")\s*[,.!]?\s*$",
    re.IGNORECASE,
)

# --------------------------------------------------------------------------- list footers

# Lines that open a mailing list's footer (Google Groups, Mailman, Sympa …).
LIST_FOOTER = re.compile(
    r"^\s*(?:You\s+received\s+this\s+message\s+because\s+you\s+are\s+subscribed\s+to"
    r"|To\s+unsubscribe\s+from\s+this\s+group|To\s+unsubscribe,\s+(?:send|e-?mail|visit)"
    r"|Unsubscribe:\s*\S)",
    re.IGNORECASE,
)
# Mailman's footer opens with a rule line; it is a footer if one of these follows.
LIST_FOOTER_TAIL = re.compile(
    r"mailing\s+list|listinfo|unsubscribe|subscribed\s+to|googlegroups", re.IGNORECASE
)
# The verbs' last words, for a cheap ``str.endswith`` test of a line's end before any
# regex runs (a case-insensitive alternation costs microseconds a line).
VERB_SUFFIXES = (
    "wrote",
    "writes",
    "écrit",
    "ecrit",
    "scritto",
    "schreef",
    "schrieb",
    "escribió",
    "escribio",
    "escreveu",
    "skrev",
    "kirjoitti",
    "pisze",
    "napisał(a)",
    "napisała",
    "napisał",
    "napsal(a)",
    "napsala",
    "napsal",
    "napísal(a)",
    "napísala",
    "napísal",
    "написал(а)",
    "написала",
    "написал",
    "пишет",
    "写道",
    "寫道",
    "έγραψε",
    "írta",
    "yazdı",
    "scris",
    "napisao",
    "napisal",
    "rašė",
    "rakstīja",
    "kirjutas",
    "작성",
)
# A verb at the end of a line: an attribution without its colon ("On … John wrote").
VERB_END = re.compile(rf"(?:{_VERBS})\s*(?:-{{2,}})?\s*$", re.IGNORECASE)
# Any verb at all: the cheap test before ``ATTRIBUTION``.
VERB_ANY = re.compile(_VERBS, re.IGNORECASE)
