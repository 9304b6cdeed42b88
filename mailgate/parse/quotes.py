"""Reply text → what the author wrote: reply headers, quotes, signatures and footers cut off.

``parse`` stores the result as ``ParsedMessage.text`` (the article and the language
guess use it); ``body_text`` always keeps the whole body, so a wrong cut loses nothing.
HTML replies lose their quote containers in ``markup`` before they get here.

Line-based and linear.  In order: a mailing list's footer goes; the first reply header
(an attribution line such as "On … wrote:" in any of the languages of ``replymarks``,
an "-----Original Message-----" line, or an Outlook header block in any language and
order) ends the new text when it is written above the quote (top posting); when the
quote comes first and new text follows it (bottom posting, interleaved answers) the
text below and between the quotes is kept.  Then the signature goes: from a "-- " line,
a phone's "Sent from my iPhone", or a closing formula ("Regards", "Pozdrawiam",
"С уважением" …) followed by a few short lines.  A forwarded message is never cut.
"""

from __future__ import annotations

import re

from mailgate.parse.replymarks import (
    ADDRESS_ANYWHERE,
    ADDRESS_COLON,
    AFTER_OPENER,
    AFTER_OPENER_VERB,
    AFTER_VERB,
    AFTER_WROTE_ON,
    ATTRIBUTION_OPENER,
    ATTRIBUTION_START,
    CLOSING,
    FORWARD,
    HEADER_DATE,
    HEADER_FROM,
    HEADER_OTHER,
    LIST_FOOTER,
    LIST_FOOTER_TAIL,
    MOBILE_SIGNATURE,
    NAME_AFTER_VERBS,
    ORIGINAL_MESSAGE,
    RULE_LINE,
    SIGNATURE_DASHES,
    VERB_ANY,
    VERB_END,
    VERB_SUFFIXES,
    WROTE_ON_VERBS,
)

_MAX_LINE = 500  # longer lines are text, never a header
_MARKED = re.compile(r"[:：]|--|__")
_SIGNATURE_LINES = 7  # a closing formula opens a signature of at most this many lines
_SIGNATURE_WIDTH = 80


def strip_quotes(body: str) -> str:
    """What the author wrote: new text without the quoted message, signature and footer.

    Never empty when the mail has new text: if the cuts leave nothing, the unquoted
    lines of the body are the answer.
    """
    lines = _drop_list_footer(body.split("\n"))
    found = _reply_header(lines)
    if found is not None:
        start, end = found
        before = lines[:start]
        after = lines[end:]
        if _has_text(before) or not _attribution_at(lines, start):
            lines = before  # top posting: what follows the header is the old mail
        elif _is_quoted_block_then_text(after):
            # Bottom posting or interleaved answers: the quote comes first.
            lines = _drop_leading_quote(after)
        else:
            lines = before
    lines = _drop_signature(_drop_trailing_quote(lines))
    lines = _drop_trailing_quote(lines)
    text = "\n".join(line.rstrip() for line in lines).strip("\n")
    if text.strip() or found is None:
        return text
    unquoted = [line.rstrip() for line in body.split("\n") if not line.lstrip().startswith(">")]
    rest = _drop_signature(unquoted[found[1] :]) if found else unquoted
    return "\n".join(rest).strip("\n")


def _drop_trailing_quote(lines: list[str]) -> list[str]:
    """Without the trailing ">"-quoted block and the blank lines around it."""
    end = len(lines)
    while end and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith(">")):
        end -= 1
    return lines[:end]


def _has_text(lines: list[str]) -> bool:
    return any(line.strip() and not line.lstrip().startswith(">") for line in lines)


def _attribution_at(lines: list[str], index: int) -> bool:
    """Whether the reply header at ``index`` is an attribution (quotes follow with ">")."""
    line = lines[index]
    return (
        _is_attribution(line)
        or _attribution_above_quote(lines, index, line)
        or (index + 1 < len(lines) and _is_attribution(f"{line} {lines[index + 1].strip()}"))
    )


def _is_quoted_block_then_text(after: list[str]) -> bool:
    """A ">"-quoted block directly below the header, then unquoted new text."""
    i = 0
    while i < len(after) and not after[i].strip():
        i += 1
    if i >= len(after) or not after[i].lstrip().startswith(">"):
        return False
    while i < len(after) and (after[i].lstrip().startswith(">") or not after[i].strip()):
        i += 1
    rest = after[i:]
    if not rest:
        return False
    # A signature or another reply header below the quote is not new text.
    kept = _drop_signature(list(rest))
    return any(line.strip() for line in kept) and _reply_header(rest) != (0, 1)


def _drop_leading_quote(lines: list[str]) -> list[str]:
    i = 0
    while i < len(lines) and (lines[i].lstrip().startswith(">") or not lines[i].strip()):
        i += 1
    return lines[i:]


# --------------------------------------------------------------------------- headers


def _reply_header(lines: list[str]) -> tuple[int, int] | None:
    """(first line, line after it) of the first reply header, or None."""
    last = len(lines) - 1
    for index, line in enumerate(lines):
        # The common case inline (a body line with no ":", "--" or "__", not followed
        # by a line with ":", not ending in a letter): this loop sees every line.
        plain = ":" not in line and "--" not in line and "__" not in line and "：" not in line
        alone = index == last or ":" not in lines[index + 1]
        if plain and alone and not line.rstrip()[-1:].isalpha():
            continue
        span = _reply_header_at(lines, index, line)
        if span:
            return index, index + span
    return None


def _reply_header_at(lines: list[str], index: int, line: str) -> int:
    """How many lines the reply header starting at ``index`` spans (0: none)."""
    following = lines[index + 1] if index + 1 < len(lines) else ""
    # Every header form has ":" or "--" on its first two lines, or ends in a verb; most
    # body lines have neither, and the regexes below stay off them.
    if len(line) > _MAX_LINE or line.lstrip().startswith(">") or not line.strip():
        return 0
    marked = _MARKED.search(line) is not None or ":" in following
    if not marked and not _ends_with_verb(line):
        return 0
    if re.search(r"[^\W\d_]", line) and ORIGINAL_MESSAGE.match(line):
        return 1
    if RULE_LINE.match(line):
        nxt = _next_nonblank(lines, index + 1)
        if nxt is not None and _outlook_block(lines, nxt):
            return nxt - index + 1
        return 0
    if _outlook_block(lines, index):
        return 1
    if _is_attribution(line):
        return 1
    # Clients wrap a long attribution once; join only a line that opens like one (the
    # second half may then read as an attribution of its own: "x@y> wrote:").
    if len(following) < 200 and _is_attribution(f"{line} {following.strip()}"):
        if ATTRIBUTION_OPENER.match(line):
            return 2
        if ATTRIBUTION_START.match(line) and not _is_attribution(following):
            return 2
    return 1 if _attribution_above_quote(lines, index, line) else 0


def _attribution_above_quote(lines: list[str], index: int, line: str) -> bool:
    """A line with a date and an address, ending in a colon, right above a ">" quote:
    an attribution whatever its language."""
    stripped = line.rstrip()
    if len(stripped) > _ATTRIBUTION_MAX or not stripped.endswith((":", "：")):
        return False
    nxt = _next_nonblank(lines, index + 1)
    if nxt is None or not lines[nxt].lstrip().startswith(">"):
        return False
    return bool(re.search(r"\d", stripped)) and ADDRESS_ANYWHERE.search(stripped) is not None


def _ends_with_verb(line: str) -> bool:
    tail = line[-40:].rstrip().rstrip("-").rstrip().lower()
    return tail.endswith(VERB_SUFFIXES) and bool(VERB_END.search(line[-40:]))


def _next_nonblank(lines: list[str], start: int) -> int | None:
    for i in range(start, min(start + 3, len(lines))):
        if lines[i].strip():
            return i
    return None


def _outlook_block(lines: list[str], index: int) -> bool:
    """Outlook's header block: From/Sent/To/Subject lines (localized, in any order, blank
    lines between them allowed), at least three of them or From with Sent/Date, and
    not a forwarded message."""
    first = lines[index]
    if not (HEADER_FROM.match(first) or HEADER_OTHER.match(first)):
        return False
    labels = 0
    has_from = has_date = False
    window = lines[index : index + 9]
    for line in window:
        if not line.strip():
            continue
        if HEADER_FROM.match(line):
            has_from = True
        elif HEADER_DATE.match(line):
            has_date = True
        elif not HEADER_OTHER.match(line):
            break
        labels += 1
    # "Od: poniedziałku / Do: środy" in a customer's text is no header block: it takes
    # a sender and a date (Outlook always writes both).
    if not (has_from and has_date) or labels < 2:
        return False
    context = lines[max(0, index - 2) : index + 9]
    return not any(FORWARD.search(line) for line in context)


_ATTRIBUTION_MAX = 400  # longer lines are text (an attribution wrapped once is ~250)
_VERB_WINDOW = 200  # the verb is this close to the end of the line


def _is_attribution(line: str) -> bool:
    """An attribution line: opener … verb [name] [:], or … verb:, or … <address>:.

    The verb is found first in the line's tail, then the text around it is checked
    with anchored patterns: no pattern scans the line with a lazy ``.*`` before an
    alternation, which would cost hundreds of steps a character (sender-controlled)."""
    line = line.rstrip()
    if len(line) > _ATTRIBUTION_MAX or not re.search(r"[\d@]", line):
        return False
    if not line.endswith((":", "：", "-")) and not _ends_with_verb(line):
        return False
    if ADDRESS_COLON.search(line):
        return True
    for verb in VERB_ANY.finditer(line, max(0, len(line) - _VERB_WINDOW)):
        before, after = line[: verb.start()], line[verb.end() :]
        if not before.strip():
            continue
        if ATTRIBUTION_OPENER.match(before):
            name_after = verb.group().lower() in NAME_AFTER_VERBS
            if (AFTER_OPENER if name_after else AFTER_OPENER_VERB).fullmatch(after):
                return True
        if AFTER_VERB.fullmatch(after):
            return True
        if verb.group().lower() in WROTE_ON_VERBS and AFTER_WROTE_ON.fullmatch(after):
            return True
    return False


# --------------------------------------------------------------------------- signatures


def _drop_signature(lines: list[str]) -> list[str]:
    for index, line in enumerate(lines):
        if SIGNATURE_DASHES.match(line):
            return lines[:index]
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    # A phone's or client's line among the last three lines of text.
    for index in nonblank[-3:]:
        if len(lines[index]) < 120 and MOBILE_SIGNATURE.match(lines[index]):
            lines = lines[:index]
            nonblank = [i for i in nonblank if i < index]
            break
    # A closing formula followed by a few short lines (a name, a title, a phone).
    for index in reversed(nonblank[-_SIGNATURE_LINES:]):
        if len(lines[index]) < 60 and CLOSING.match(lines[index]):
            tail = [line for line in lines[index + 1 :] if line.strip()]
            short = all(len(line.strip()) <= _SIGNATURE_WIDTH for line in tail)
            if short and any(lines[i].strip() for i in nonblank if i < index):
                return lines[:index]
    return lines


def _drop_list_footer(lines: list[str]) -> list[str]:
    """A mailing list's footer at the end of the body (Mailman's rule line and list
    address, Google Groups' subscription notice)."""
    start = max(0, len(lines) - 15)
    for index in range(start, len(lines)):
        line = lines[index]
        if len(line) > _MAX_LINE:
            continue
        if LIST_FOOTER.match(line):
            return _cut_before_separator(lines, index)
        if re.match(r"^\s*_{5,}\s*$", line) and any(
            LIST_FOOTER_TAIL.search(nxt) for nxt in lines[index + 1 : index + 5]
        ):
            return lines[:index]
    return lines


def _cut_before_separator(lines: list[str], index: int) -> list[str]:
    """Cut at ``index``, and at a "--" line right above it (Google Groups)."""
    above = index - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    if above >= 0 and lines[above].strip() in ("--", "-- ", "---"):
        return lines[:above]
    return lines[:index]
