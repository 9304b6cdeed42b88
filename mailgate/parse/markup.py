"""HTML bodies → safe HTML to keep, plain text to read, and the reply without its quote.

``mime`` hands over the HTML part; ``sanitize_html`` gives the HTML we store (or none,
for a nesting bomb), ``html_to_text`` the layout-aware text of an HTML-only body, and
``strip_html_quotes`` cuts the quote containers mail clients wrap around the message
being answered (Gmail, Outlook, Apple Mail, Thunderbird, Yahoo, Zoho …) *before* the
conversion, where they are still marked, so ``quotes`` does not have to guess.
"""

from __future__ import annotations

import re

import inscriptis
import nh3
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

# How deep HTML elements may nest before the sanitizer is not run at all.  nh3's tree
# builder costs time quadratic in the depth (30 000 unclosed <div>s: 1.8 s of CPU that
# no signal can interrupt, 60 000: 7 s); real mail stays far below 100.
MAX_HTML_DEPTH = 1_000
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)[^<>]*?(/?)>")
# Elements that never hold others (void) or that the parser closes by itself when the
# next one opens: neither makes the tree deeper however many of them there are.
_FLAT = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
        "p",
        "li",
        "dt",
        "dd",
        "tr",
        "td",
        "th",
        "option",
    ]
)


def html_depth_exceeds(html: str, limit: int = MAX_HTML_DEPTH) -> bool:
    """Whether the elements of ``html`` nest deeper than ``limit`` (a linear scan that
    counts open and close tags, stopping as soon as the limit is passed)."""
    depth = 0
    for match in _TAG.finditer(html):
        closing, name, self_closing = match.groups()
        if self_closing or name.lower() in _FLAT:
            continue
        if closing:
            depth = max(depth - 1, 0)
        else:
            depth += 1
            if depth > limit:
                return True
    return False


def sanitize_html(html: str, defects: list[str]) -> str | None:
    """The HTML body made safe to show (nh3), or None, with a defect, when it nests
    too deeply to be worth the sanitizer's time; the text comes from ``html_to_text``."""
    if html_depth_exceeds(html):
        defects.append("html:too-deep")
        return None
    return nh3.clean(html)


# inscriptis' default ("relaxed") profile indents every nested <div> by two spaces and
# pads every <span> with spaces: made for web pages, it turns Gmail's div-per-line
# bodies into staircases and Outlook's "Dzie<span>ń</span>" into "Dzie ń".  The
# "strict" profile lays them out as a mail client shows them.
_TEXT_CONFIG = ParserConfig(css=CSS_PROFILES["strict"])


def html_to_text(html: str) -> str:
    """Layout-aware text of an HTML-only body (inscriptis), blank-line runs collapsed."""
    try:
        text = inscriptis.get_text(html, _TEXT_CONFIG)
    except (RecursionError, ValueError):
        text = re.sub(r"<[^<>]*>", " ", html)
    lines = [line.rstrip() for line in str(text).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


# --------------------------------------------------------------------------- quotes

# Elements that hold the quoted message: removed with everything inside them, so new
# text below or between them (bottom posting, interleaved answers) stays.
_QUOTE_CONTAINER = re.compile(
    r"""<(div|blockquote|section)\b[^<>]{0,400}?(?:
        class\s*=\s*["']?[^"'<>]{0,100}?\b(?:gmail_quote(?:_container)?|gmail_attr|yahoo_quoted
            |zmail_extra|protonmail_quote|moz-cite-prefix|spark_quote|x_gmail_quote)\b
      | id\s*=\s*["']?(?:yahoo_quoted_\w*|ymail_android_signature|zmail_extra
            |mail-editor-reference-message-container)
      | type\s*=\s*["']?cite\b
    )[^<>]{0,400}>""",
    re.IGNORECASE | re.VERBOSE,
)
# Marks after which everything is the quoted message: Outlook's header blocks, which
# are followed (not enclosed) by the original.
_QUOTE_DIVIDER = re.compile(
    r"""<(?:div|span|hr|p)\b[^<>]{0,400}?(?:
        id\s*=\s*["']?(?:divRplyFwdMsg|appendonsend|OLK_SRC_BODY_SECTION|x_divRplyFwdMsg)\b
      | class\s*=\s*["']?(?:OutlookMessageHeader|x_OutlookMessageHeader)\b
      | style\s*=\s*["'][^"'<>]{0,200}border-top\s*:\s*solid\s+\#(?:E1E1E1|B5C4DF)[^"'<>]{0,200}["']
    )[^<>]{0,400}>""",
    re.IGNORECASE | re.VERBOSE,
)
_FORWARD_MARK = re.compile(
    r"Forwarded\s+message|Weitergeleitete\s+Nachricht|Message\s+transf[ée]r[ée]|Przekazana"
    r"|Preposlan|P[řr]eposlan|Пересланное|Пересылаемое|Mensaje\s+reenviado|Messaggio\s+inoltrato"
    r"|Doorgestuurd\s+bericht|Mensagem\s+encaminhada|Begin\s+forwarded\s+message"
    r"|(?:Subject|Betreff|Objet|Temat|Předmět|Predmet|Тема|Asunto|Oggetto|Onderwerp|Assunto)"
    r"\s*:\s*(?:<[^<>]*>\s*)*(?:Fwd?|FW|TR|WG|PD|RV|I|Doorst)\s*:",
    re.IGNORECASE,
)
_NESTING = {"div", "blockquote", "section"}


def _element_end(html: str, start: int, name: str) -> int:
    """Where the element opened at ``start`` closes (after its end tag); the document's
    end when it never does.  A linear scan counting tags of the same name."""
    depth = 0
    tag = re.compile(rf"<(/?){name}\b[^<>]*>", re.IGNORECASE)
    for match in tag.finditer(html, start):
        if match.group(0).endswith("/>"):
            continue
        depth += -1 if match.group(1) else 1
        if depth == 0:
            return match.end()
    return len(html)


def _text_of(fragment: str) -> str:
    return re.sub(r"<[^<>]*>", " ", fragment)


# Inside a quote container, the quoted paragraphs themselves and the attribution: what
# goes when answers were written between them (Gmail keeps inline answers inside its
# gmail_quote container, between blockquotes).
_INNER_QUOTE = re.compile(
    r"""<(blockquote)\b[^<>]{0,800}>
      | <(div)\b[^<>]{0,400}?class\s*=\s*["']?[^"'<>]{0,100}?\b(?:gmail_attr|moz-cite-prefix)\b
        [^<>]{0,400}>""",
    re.IGNORECASE | re.VERBOSE,
)


def strip_html_quotes(html: str, *, inner: bool = False) -> str:
    """The HTML without the quoted message: quote containers removed, and everything
    after an Outlook header block cut.  A forwarded message is never cut.

    ``inner``: remove only the quoted paragraphs and the attribution, keeping answers
    written between them inside a container (when the whole reply is in one)."""
    if len(html) > 2_000_000:
        return html  # beyond any real reply; the text stripper still runs
    divider = _QUOTE_DIVIDER.search(html)
    if divider is not None and not _FORWARD_MARK.search(_text_of(html[divider.start() :][:5000])):
        html = html[: divider.start()]
    container = _INNER_QUOTE if inner else _QUOTE_CONTAINER
    out: list[str] = []
    position = 0
    for _ in range(50):  # each pass removes one container
        match = container.search(html, position)
        if match is None:
            break
        end = _element_end(html, match.start(), (match.group(1) or match.group(2)).lower())
        if _FORWARD_MARK.search(_text_of(html[match.start() : end][:5000])):
            out.append(html[position:end])
        else:
            out.append(html[position : match.start()])
        position = end
    out.append(html[position:])
    return "".join(out)
