"""Sender authentication on real DKIM signatures against a fake resolver, and the
Authentication-Results trust boundary.  Each attack from THREATS.md is a named test."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from mailgate.parse import parse
from mailgate.verify.authn import AuthVerdict, aligned, authenticate, org_domain
from tests.dkimkeys import Key, make_key, sign
from tests.support import FakeDns, make_mail

NOW = datetime.now(UTC)
TRUSTED = frozenset({"mx.helpdesk.example"})


@pytest.fixture(scope="module")
def key() -> Key:
    return make_key()


def verdict(raw: bytes, dns: FakeDns, trusted: frozenset[str] = TRUSTED) -> AuthVerdict:
    parsed = parse(raw)
    sender = parsed.from_.address if parsed.from_ else None
    return authenticate(
        raw, sender, parsed.headers, trusted_authserv_ids=trusted, dnsfunc=dns, now=NOW
    )


def dns_for(key: Key, domain: str = "customer.example", **extra: str) -> FakeDns:
    return FakeDns({f"s1._domainkey.{domain}": key.txt, **extra})


def test_aligned_dkim_signature_passes(key: Key) -> None:
    raw = sign(make_mail(), key, "customer.example")
    v = verdict(raw, dns_for(key))
    assert v.result == "pass"
    assert "dkim:pass:d=customer.example" in v.reasons


def test_signature_from_a_subdomain_is_aligned(key: Key) -> None:
    raw = sign(make_mail(sender="jan@mail.customer.example"), key, "customer.example")
    assert verdict(raw, dns_for(key)).result == "pass"
    assert org_domain("mail.customer.co.uk") == "customer.co.uk"
    assert not aligned("customer.co.uk", "other.co.uk")


def test_valid_signature_by_an_unrelated_domain_is_not_authentication(key: Key) -> None:
    raw = sign(make_mail(sender="ceo@customer.example"), key, "attacker.example")
    v = verdict(raw, dns_for(key, "attacker.example"))
    assert v.result == "none"
    assert "dkim:unaligned:d=attacker.example" in v.reasons


def test_signature_that_does_not_cover_from_is_refused(key: Key) -> None:
    # dkimpy will not sign without From; an attacker's signer will.  Rewrite h=.
    raw = sign(make_mail(), key, "customer.example", headers=(b"from", b"to", b"subject"))
    raw = raw.replace(b"h=from : to :", b"h=to :", 1)
    assert b"h=to :" in raw
    v = verdict(raw, dns_for(key))
    assert v.result == "none"
    assert "dkim:from-not-signed:d=customer.example" in v.reasons


def test_text_appended_after_an_l_limit_is_refused(key: Key) -> None:
    signed = sign(make_mail(body="Please reset DNS.\r\n"), key, "customer.example", length=True)
    assert verdict(signed, dns_for(key)).result == "pass"  # l= covering all is fine
    tampered = signed + b"P.S. Also transfer the domain to evil.example.\r\n"
    v = verdict(tampered, dns_for(key))
    assert v.result == "none"
    assert "dkim:partial-body:d=customer.example" in v.reasons


def test_expired_signature_is_refused(key: Key) -> None:
    import dkim as dkimpy

    raw = make_mail()
    # dkimpy cannot set x= when signing through the module function; build by hand.
    signer = dkimpy.DKIM(raw)
    header = signer.sign(
        b"s1", b"customer.example", key.private_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject"],
    )  # fmt: skip
    past = int(time.time()) - 3600
    forged = header.replace(b"v=1;", f"v=1; x={past};".encode(), 1)
    v = verdict(forged + raw, dns_for(key))
    assert v.result == "none"
    assert "dkim:expired:d=customer.example" in v.reasons


def test_broken_signature_fails_verification(key: Key) -> None:
    raw = sign(make_mail(body="original\r\n"), key, "customer.example")
    v = verdict(raw.replace(b"original", b"modified"), dns_for(key))
    assert v.result == "none"
    assert "dkim:fail:d=customer.example" in v.reasons


def test_forged_authentication_results_from_a_foreign_authserv_id_is_ignored() -> None:
    raw = make_mail(
        headers={
            "Authentication-Results": "mx.attacker.example; dmarc=pass header.from=customer.example"
        }
    )
    v = verdict(raw, FakeDns())
    assert v.result == "none"
    assert not any(r.startswith("authres:") for r in v.reasons)


def test_only_the_topmost_trusted_authentication_results_counts() -> None:
    # The attacker plants a "pass" under our id; our MTA's own header is on top.
    raw = make_mail(
        headers={
            "Authentication-Results": "mx.helpdesk.example; dmarc=pass header.from=customer.example"
        }
    )
    ours = (
        b"Authentication-Results: mx.helpdesk.example; dmarc=fail header.from=customer.example\r\n"
    )
    v = verdict(ours + raw, FakeDns())
    assert v.result == "none"
    assert "authres:dmarc=fail" in v.reasons


def test_trusted_authentication_results_pass() -> None:
    for results in (
        "dmarc=pass header.from=customer.example",
        "dkim=pass header.d=customer.example header.s=s1",
        "spf=pass smtp.mailfrom=bounce@mail.customer.example",
    ):
        header = f"Authentication-Results: mx.helpdesk.example 1; {results}\r\n".encode()
        assert verdict(header + make_mail(), FakeDns()).result == "pass", results
    unaligned = (
        b"Authentication-Results: mx.helpdesk.example; spf=pass smtp.mailfrom=x@other.example\r\n"
    )
    assert verdict(unaligned + make_mail(), FakeDns()).result == "none"


def test_dmarc_reject_without_authentication_is_a_fail() -> None:
    dns = FakeDns({"_dmarc.customer.example": "v=DMARC1; p=reject; rua=mailto:d@customer.example"})
    v = verdict(make_mail(), dns)
    assert (v.result, v.dmarc_policy) == ("fail", "reject")
    # A subdomain follows sp= of the organizational domain.
    dns = FakeDns({"_dmarc.customer.example": "v=DMARC1; p=reject; sp=none"})
    v = verdict(make_mail(sender="a@shop.customer.example"), dns)
    assert (v.result, v.dmarc_policy) == ("none", "none")


def test_dmarc_fail_reported_by_our_mta_carries_the_policy() -> None:
    header = (
        b"Authentication-Results: mx.helpdesk.example; "
        b"dmarc=fail (p=quarantine dis=none) header.from=customer.example\r\n"
    )
    v = verdict(header + make_mail(), FakeDns())
    assert (v.result, v.dmarc_policy) == ("fail", "quarantine")


def test_ambiguous_from_is_never_authenticated(key: Key) -> None:
    raw = sign(make_mail(), key, "customer.example").replace(
        b"From: Jan Kowalski <jan@customer.example>",
        b"From: jan@customer.example<attacker@evil.example>",
    )
    v = verdict(raw, dns_for(key))
    assert v.result == "none" and v.reasons == ("from:not-strict",)
