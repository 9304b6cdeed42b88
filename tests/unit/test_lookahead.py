"""A batch's DNS asked together by the daemon (verify.lookahead): the cache it shares
with every worker, TTLs and negative answers, the batch's budget against a resolver
that never answers, and what authentication makes of a look-up that did not come."""

from __future__ import annotations

import asyncio
import pickle
from datetime import UTC, datetime

import dkim
import pytest

from mailgate.config import Settings
from mailgate.config.checks import nameserver_address
from mailgate.parse import parse
from mailgate.parse.bounds import ParseLimits
from mailgate.pipeline.facts import Evidence, FactsConfig, Job, PoolAnalyzer
from mailgate.verify.authn import AuthVerdict, authenticate
from mailgate.verify.dnscache import FAILURE_TTL, NEGATIVE_TTL, TxtCache
from mailgate.verify.lookahead import Answers, Lookahead, batch_dns, names_for
from tests.dkimkeys import Key, make_key, sign
from tests.support import make_mail

DMARC = "_dmarc.customer.example."
KEY = "s1._domainkey.customer.example."
REJECT = b"v=DMARC1; p=reject"
NOW = datetime.now(UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Resolver:
    """A fake asyncio resolver: answers by name, a count of the questions, and names
    that never answer (a resolver that has gone quiet)."""

    def __init__(self, answers: dict[str, tuple[bytes | None, float]]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self.silent: set[str] = set()

    async def __call__(self, name: str, timeout: float) -> tuple[bytes | None, float]:
        self.asked.append(name)
        if name in self.silent:
            await asyncio.Event().wait()  # never set: only the budget ends the wait
        if name not in self.answers:
            return None, NEGATIVE_TTL  # NXDOMAIN
        return self.answers[name]


def unused(name: str, timeout: float) -> tuple[bytes | None, float]:
    raise AssertionError("the look-ahead never asks the blocking resolver")


def lookahead(resolver: Resolver, clock: Clock, budget: float = 2.0) -> Lookahead:
    return Lookahead(TxtCache(unused, clock), resolver, budget)


@pytest.fixture(scope="module")
def key() -> Key:
    return make_key()


def verdict(raw: bytes, dnsfunc: Answers) -> AuthVerdict:
    parsed = parse(raw)
    sender = parsed.from_.address if parsed.from_ else None
    return authenticate(
        raw, sender, parsed.headers, trusted_authserv_ids=frozenset(), dnsfunc=dnsfunc, now=NOW
    )


def test_the_names_a_message_needs_come_from_its_header_block(key: Key) -> None:
    raw = sign(make_mail(sender="jan@mail.customer.example"), key, "customer.example")
    assert names_for(raw) == [
        "_dmarc.mail.customer.example.",
        DMARC,
        KEY,
    ]
    # An unaligned signature is never verified, so its key is never asked for.
    forged = sign(make_mail(sender="ceo@customer.example"), key, "attacker.example")
    assert names_for(forged) == [DMARC]


def test_a_cached_answer_is_used_until_its_ttl_ends_for_every_batch(key: Key) -> None:
    resolver, clock = Resolver({DMARC: (REJECT, 600)}), Clock()
    dns = lookahead(resolver, clock)
    raw = make_mail()
    first = dns.for_batch([raw, raw])
    clock.now += 599
    second = dns.for_batch([raw])
    assert resolver.asked == [DMARC]  # one question for two batches of three messages
    assert first(DMARC.encode()) == second(DMARC.upper().encode()) == REJECT
    clock.now += 2
    dns.for_batch([raw])
    assert resolver.asked == [DMARC, DMARC]
    assert verdict(raw, second).result == "fail"


def test_no_such_name_is_remembered_too() -> None:
    resolver, clock = Resolver({}), Clock()
    dns = lookahead(resolver, clock)
    answers = dns.for_batch([make_mail()])
    assert answers(DMARC.encode()) is None
    clock.now += NEGATIVE_TTL - 1
    dns.for_batch([make_mail()])
    assert resolver.asked == [DMARC]
    assert verdict(make_mail(), answers).result == "none"


def test_a_silent_resolver_costs_the_batch_its_budget_and_gives_temperror(key: Key) -> None:
    resolver, clock = Resolver({DMARC: (REJECT, 600)}), Clock()
    resolver.silent.add(KEY)
    dns = lookahead(resolver, clock, budget=0.05)
    raw = sign(make_mail(), key, "customer.example")
    answers = dns.for_batch([raw])  # returns: the silent look-up does not hold it
    assert KEY in answers.failed and answers(DMARC.encode()) == REJECT
    with pytest.raises(dkim.DnsTimeoutError, match="temperror"):
        answers(KEY.encode())
    v = verdict(raw, answers)
    # The key might have verified: neither a pass nor a DMARC fail (quarantine).
    assert v.result == "temperror"
    assert "dkim:temperror:d=customer.example" in v.reasons
    assert v.dmarc_policy == "reject"


def test_a_failed_dmarc_look_up_is_a_temperror_not_an_absent_policy() -> None:
    dns = Answers({}, {DMARC: "SERVFAIL"})
    v = verdict(make_mail(), dns)
    assert v.result == "temperror"
    assert any(r.startswith("dmarc:temperror") for r in v.reasons)


def test_a_failure_is_remembered_for_a_while_then_asked_again() -> None:
    class Failing(Resolver):
        async def __call__(self, name: str, timeout: float) -> tuple[bytes | None, float]:
            self.asked.append(name)
            raise dkim.DnsTimeoutError("SERVFAIL")

    resolver, clock = Failing({}), Clock()
    dns = lookahead(resolver, clock)
    assert DMARC in dns.for_batch([make_mail()]).failed
    clock.now += FAILURE_TTL - 1
    assert DMARC in dns.for_batch([make_mail()]).failed
    assert resolver.asked == [DMARC]
    clock.now += 2
    dns.for_batch([make_mail()])
    assert resolver.asked == [DMARC, DMARC]


def test_the_daemons_cache_outlives_a_worker_restart(key: Key) -> None:
    """The answers travel to the workers with each batch: replacing the pool (a budget
    overrun does) loses nothing, and the workers never ask a resolver themselves."""
    resolver, clock = Resolver({DMARC: (REJECT, 600), KEY: (key.txt.encode(), 600)}), Clock()
    dns = lookahead(resolver, clock)
    raw = sign(make_mail(), key, "customer.example")
    config = FactsConfig(
        limits=ParseLimits(),
        own_addresses=frozenset(),
        own_domains=frozenset(),
        trusted_authserv_ids=frozenset(),
        priority=Settings().priority,
    )
    analyzer = PoolAnalyzer(workers=1, budget_seconds=30, memory_mb=2048)
    results: list[str] = []
    try:
        for _ in range(2):
            found = analyzer.run([Job(7, raw, None)], config, batch_dns(dns, [raw]), NOW)
            evidence = found[7]
            assert isinstance(evidence, Evidence), evidence
            results.append(evidence.auth.result)
            analyzer.close()  # the next batch gets fresh worker processes
    finally:
        analyzer.close()
    assert results == ["pass", "pass"]
    # Each name asked once, by the daemon, for both batches and both pools.
    assert sorted(resolver.asked) == [DMARC, KEY]


def test_other_dns_functions_pass_through_and_answers_pickle() -> None:
    def fake(name: bytes, timeout: float = 5) -> None:
        return None

    assert batch_dns(fake, [make_mail()]) is fake
    answers = Answers({DMARC: REJECT}, {KEY: "time-out"})
    assert pickle.loads(pickle.dumps(answers)) == answers


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("::1", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
    ],
)
def test_nameserver_addresses(text: str, address: tuple[str, int]) -> None:
    assert nameserver_address(text) == address
