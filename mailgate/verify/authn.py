"""Sender authentication: may we believe the From address?  Computed on the raw bytes.

The sender is authenticated only when one of these holds for the strict From domain:

* a DKIM signature that dkimpy verifies, whose ``d=`` is aligned with the From domain
  (same organizational domain: DMARC relaxed alignment), whose ``h=`` covers From,
  with no ``l=`` shorter than the body and no ``x=`` in the past — dkimpy alone would
  accept unaligned, partial and replayed signatures;
* an Authentication-Results header from our own MTA (a configured authserv-id, and only
  the topmost such header, RFC 8601 §5) reporting dmarc=pass, or an aligned dkim=pass or
  spf=pass — every other A-R header is attacker-controlled text and ignored.

When nothing passes, the From domain's DMARC policy decides between "fail" (it asks
receivers to reject or quarantine unauthenticated mail: we quarantine) and "none"
(unauthenticated but not disowned: consultative or confirmation); a look-up that
failed gives "temperror" instead (handled like "none").  DNS comes in through
``dnsfunc`` (dkimpy's signature: ``dnsfunc(name: bytes, timeout=…) -> bytes | None``) so
tests use real signatures against a fake resolver.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import authres
import dkim
import dkim.util
from dkim.canonicalization import CanonicalizationPolicy
from publicsuffixlist import PublicSuffixList

DnsFunc = Callable[..., Any]
# "temperror" (RFC 8601 §2.7.1): a DNS answer the verdict needed did not come (time-out,
# SERVFAIL, or outside the batch's DNS budget, ``verify.lookahead``).  Never a pass; not
# a DMARC fail either, since the missing key might have verified: the sender is treated
# as unauthenticated, like "none".
Result = Literal["pass", "fail", "none", "temperror"]

_PSL = PublicSuffixList()
_QUIET = logging.getLogger("mailgate.verify.dkimpy")
_QUIET.setLevel(logging.CRITICAL)  # dkimpy logs every failed lookup at ERROR
DNS_TIMEOUT = 5
_DMARC_COMMENT = re.compile(r"\bdmarc\s*=\s*\w+\s*\([^)]*?\bp\s*=\s*(\w+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class AuthVerdict:
    result: Result
    reasons: tuple[str, ...]
    dmarc_policy: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "reasons": list(self.reasons),
            "dmarc_policy": self.dmarc_policy,
        }


def org_domain(domain: str) -> str:
    """The organizational domain (registrable part) used for DMARC alignment."""
    domain = domain.lower().rstrip(".")
    return str(_PSL.privatesuffix(domain) or domain)


def aligned(domain: str, from_domain: str) -> bool:
    return org_domain(domain) == org_domain(from_domain)


def authenticate(
    raw: bytes,
    from_address: str | None,
    headers: Iterable[tuple[str, str]],
    *,
    trusted_authserv_ids: frozenset[str],
    dnsfunc: DnsFunc,
    now: datetime,
) -> AuthVerdict:
    """The verdict for one message; ``headers`` are the parsed (name, value) pairs."""
    if not from_address or "@" not in from_address:
        return AuthVerdict("none", ("from:not-strict",))
    from_domain = from_address.rpartition("@")[2].lower()
    reasons: list[str] = []
    a_r = _trusted_results(headers, trusted_authserv_ids)
    dmarc_policy: str | None = None
    if a_r is not None:
        passed, policy, notes = _judge_results(*a_r, from_domain)
        reasons.extend(notes)
        dmarc_policy = policy
        if passed:
            return AuthVerdict("pass", tuple(reasons), dmarc_policy)
    passed, notes = _judge_dkim(raw, from_domain, dnsfunc, now)
    reasons.extend(notes)
    if passed:
        return AuthVerdict("pass", tuple(reasons), dmarc_policy)
    unsure = any(note.startswith("dkim:temperror:") for note in notes)
    if dmarc_policy is None:
        try:
            dmarc_policy = lookup_dmarc_policy(from_domain, dnsfunc)
        except DnsTemporary as exc:
            reasons.append(f"dmarc:temperror:{exc}")
            return AuthVerdict("temperror", tuple(reasons), None)
    if dmarc_policy in ("reject", "quarantine"):
        if unsure:  # the key we could not fetch might have passed: no DMARC fail
            reasons.append(f"dmarc:temperror:p={dmarc_policy}")
            return AuthVerdict("temperror", tuple(reasons), dmarc_policy)
        reasons.append(f"dmarc:fail:p={dmarc_policy}")
        return AuthVerdict("fail", tuple(reasons), dmarc_policy)
    reasons.append(f"dmarc:p={dmarc_policy or 'absent'}")
    return AuthVerdict("temperror" if unsure else "none", tuple(reasons), dmarc_policy)


class DnsTemporary(Exception):
    """A DNS look-up the verdict needs failed (time-out, SERVFAIL, outside the budget)."""


def _trusted_results(
    headers: Iterable[tuple[str, str]], trusted: frozenset[str]
) -> tuple[Any, str] | None:
    """The topmost Authentication-Results header whose authserv-id we trust."""
    if not trusted:
        return None
    wanted = {t.lower() for t in trusted}
    for name, value in headers:
        if name.lower() != "authentication-results":
            continue
        # "authserv-id [version]; results" (RFC 8601 §2.2)
        words = value.split(";", 1)[0].split()
        claimed = words[0].lower() if words else ""
        if claimed not in wanted:
            continue  # someone else's header: attacker-controlled text
        try:
            return authres.AuthenticationResultsHeader.parse_value(value), value
        except Exception:  # noqa: BLE001 -- our topmost header unreadable: trust nothing below it
            return None
    return None


def _judge_results(header: Any, value: str, from_domain: str) -> tuple[bool, str | None, list[str]]:
    notes: list[str] = []
    policy: str | None = None
    passed = False
    for result in header.results:
        method, outcome = str(result.method).lower(), str(result.result).lower()
        props = {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}
        if method == "dmarc":
            domain = props.get("header.from", from_domain).lower()
            policy = props.get("policy.dmarc") or _policy_from_comment(value) or policy
            notes.append(f"authres:dmarc={outcome}")
            if outcome == "pass" and aligned(domain, from_domain):
                passed = True
        elif method == "dkim":
            domain = props.get("header.d", "").lower()
            notes.append(f"authres:dkim={outcome}:d={domain}")
            if outcome == "pass" and domain and aligned(domain, from_domain):
                passed = True
        elif method == "spf":
            mailfrom = props.get("smtp.mailfrom", "").lower()
            domain = mailfrom.rpartition("@")[2]
            notes.append(f"authres:spf={outcome}:{domain}")
            if outcome == "pass" and domain and aligned(domain, from_domain):
                passed = True
    return passed, policy, notes


def _policy_from_comment(value: str) -> str | None:
    # OpenDMARC writes the policy in a comment, "dmarc=fail (p=reject dis=none)", which
    # the authres parser drops; read it from the header text.
    match = _DMARC_COMMENT.search(value)
    return match.group(1).lower() if match else None


def _judge_dkim(
    raw: bytes, from_domain: str, dnsfunc: DnsFunc, now: datetime
) -> tuple[bool, list[str]]:
    notes: list[str] = []
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    if b"dkim-signature" not in head.lower():
        return False, ["dkim:none"]  # skip dkimpy's own full parse of the message
    try:
        checker = dkim.DKIM(raw, logger=_QUIET, timeout=DNS_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 -- a message dkimpy cannot read has no valid signature
        return False, [f"dkim:unreadable:{type(exc).__name__}"]
    signatures = [v for k, v in checker.headers if k.lower() == b"dkim-signature"]
    if not signatures:
        return False, ["dkim:none"]
    for index, value in enumerate(signatures):
        try:
            tags = dkim.util.parse_tag_value(value)
        except Exception:  # noqa: BLE001 -- a malformed signature is just not a pass
            notes.append("dkim:malformed")
            continue
        domain = tags.get(b"d", b"").decode("ascii", "replace").lower()
        label = f"d={domain}"
        covered = [h.strip().lower() for h in tags.get(b"h", b"").split(b":")]
        if b"from" not in covered:
            notes.append(f"dkim:from-not-signed:{label}")
            continue
        if not domain or not aligned(domain, from_domain):
            notes.append(f"dkim:unaligned:{label}")
            continue
        expiry = tags.get(b"x")
        if expiry is not None and expiry.isdigit() and int(expiry) < now.timestamp():
            notes.append(f"dkim:expired:{label}")
            continue
        if b"l" in tags and not _length_covers_body(checker, tags):
            notes.append(f"dkim:partial-body:{label}")
            continue
        failures: list[str] = []
        try:
            ok = checker.verify(idx=index, dnsfunc=_Noting(dnsfunc, failures))
        except dkim.ValidationError:
            # dkimpy reports a key it could not fetch as a failed signature: tell them apart.
            if failures:
                notes.append(f"dkim:temperror:{label}")
                continue
            ok = False  # dkimpy's way of saying "body hash mismatch" and the like
        except Exception as exc:  # noqa: BLE001 -- dkimpy raises many types for bad input
            notes.append(f"dkim:error:{label}:{type(exc).__name__}")
            continue
        if ok:
            notes.append(f"dkim:pass:{label}")
            return True, notes
        notes.append(f"dkim:temperror:{label}" if failures else f"dkim:fail:{label}")
    return False, notes


class _Noting:
    """Wraps ``dnsfunc`` to note the look-ups that failed (dkimpy swallows them)."""

    def __init__(self, dnsfunc: DnsFunc, failures: list[str]) -> None:
        self.dnsfunc = dnsfunc
        self.failures = failures

    def __call__(self, name: bytes, timeout: float = DNS_TIMEOUT) -> Any:
        try:
            return self.dnsfunc(name, timeout=timeout)
        except Exception as exc:
            self.failures.append(str(exc) or type(exc).__name__)
            raise


def _length_covers_body(checker: Any, tags: dict[bytes, bytes]) -> bool:
    """An ``l=`` that stops short of the body lets anyone append text after it."""
    try:
        limit = int(tags[b"l"])
        policy = CanonicalizationPolicy.from_c_value(tags.get(b"c", b"simple/simple"))
        body = policy.canonicalize_body(checker.body)
    except Exception:  # noqa: BLE001 -- anything odd here means "not covered"
        return False
    return limit >= len(body)


def lookup_dmarc_policy(from_domain: str, dnsfunc: DnsFunc) -> str | None:
    """p= (or sp= for a subdomain) of the DMARC record; None when there is none.

    Raises ``DnsTemporary`` when a look-up fails: "no policy" would be a guess."""
    org = org_domain(from_domain)
    candidates = [(from_domain, "p")]
    if org != from_domain:
        candidates.append((org, "sp"))
    for domain, key in candidates:
        try:
            record = dnsfunc(f"_dmarc.{domain}.".encode(), timeout=DNS_TIMEOUT)
        except Exception as exc:
            raise DnsTemporary(f"_dmarc.{domain}") from exc
        if not record:
            continue
        text = record.decode("ascii", "replace") if isinstance(record, bytes) else str(record)
        if not text.lower().startswith("v=dmarc1"):
            continue
        tags = {}
        for part in text.split(";"):
            name, _, val = part.strip().partition("=")
            tags[name.strip().lower()] = val.strip().lower()
        return tags.get(key) or tags.get("p")
    return None
