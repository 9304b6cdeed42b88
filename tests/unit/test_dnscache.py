"""The TXT cache in front of the resolver: TTLs, negative answers, failures, size."""

from __future__ import annotations

import pickle

import dkim
import dns.resolver
import pytest

from mailgate.verify import dnscache
from mailgate.verify.dnscache import FAILURE_TTL, MAX_TTL, MIN_TTL, NEGATIVE_TTL, TxtCache


class Resolver:
    """A fake resolver: a table of answers, and a count of the questions it got."""

    def __init__(self, answers: dict[str, tuple[bytes | None, float] | Exception]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, name: str, timeout: float) -> tuple[bytes | None, float]:
        self.asked.append(name)
        answer = self.answers[name]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


DMARC = "_dmarc.customer.example."
RECORD = b"v=DMARC1; p=reject"


def test_an_answer_is_kept_for_its_ttl_then_asked_again() -> None:
    resolver, clock = Resolver({DMARC: (RECORD, 600)}), Clock()
    cache = TxtCache(resolver, clock)
    assert cache.get(DMARC.encode()) == RECORD
    clock.now += 599
    assert cache.get(DMARC.upper().encode()) == RECORD  # names compare without case
    assert resolver.asked == [DMARC]
    clock.now += 2
    assert cache.get(DMARC.encode()) == RECORD
    assert resolver.asked == [DMARC, DMARC]


@pytest.mark.parametrize(("ttl", "kept"), [(0, MIN_TTL), (5, MIN_TTL), (86400, MAX_TTL)])
def test_ttls_are_clamped(ttl: float, kept: float) -> None:
    resolver, clock = Resolver({DMARC: (RECORD, ttl)}), Clock()
    cache = TxtCache(resolver, clock)
    cache.get(DMARC.encode())
    clock.now += kept - 1
    cache.get(DMARC.encode())
    assert len(resolver.asked) == 1
    clock.now += 2
    cache.get(DMARC.encode())
    assert len(resolver.asked) == 2


def test_no_record_is_remembered_too() -> None:
    resolver, clock = Resolver({DMARC: (None, NEGATIVE_TTL)}), Clock()
    cache = TxtCache(resolver, clock)
    assert cache.get(DMARC.encode()) is None
    clock.now += NEGATIVE_TTL - 1
    assert cache.get(DMARC.encode()) is None
    assert len(resolver.asked) == 1


def test_a_failure_is_raised_again_without_asking_until_its_window_ends() -> None:
    resolver, clock = Resolver({DMARC: dkim.DnsTimeoutError("time-out")}), Clock()
    cache = TxtCache(resolver, clock)
    for _ in range(3):
        with pytest.raises(dkim.DnsTimeoutError, match="time-out"):
            cache.get(DMARC.encode())
    assert len(resolver.asked) == 1  # one time-out paid, not three
    resolver.answers[DMARC] = (RECORD, 600)
    clock.now += FAILURE_TTL + 1
    assert cache.get(DMARC.encode()) == RECORD


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dnscache, "MAX_ENTRIES", 3)
    names = [f"_dmarc.d{i}.example." for i in range(5)]
    resolver = Resolver({n: (RECORD, 600) for n in names})
    cache = TxtCache(resolver, Clock())
    for name in names:
        cache.get(name.encode())
    assert len(cache) == 3
    cache.get(names[0].encode())  # dropped first, so asked again
    assert resolver.asked.count(names[0]) == 2


def test_a_name_that_is_not_ascii_has_no_record() -> None:
    resolver = Resolver({})
    assert TxtCache(resolver, Clock()).get("_dmarc.zażółć.example.".encode()) is None
    assert resolver.asked == []


def test_workers_keep_one_cache_for_their_life() -> None:
    """The facts pool pickles the dns function with every job: the cached look-up must
    travel by reference (its module's cache), not as a copy of a cache."""
    assert pickle.loads(pickle.dumps(dnscache.cached_txt)) is dnscache.cached_txt


def test_servfail_from_every_server_is_a_temperror_not_no_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The synchronous resolver follows the look-ahead's rule: a failed look-up must not
    read as "no DMARC record" (which would let the message through as policy none)."""

    def servfail(*_args: object, **_kwargs: object) -> object:
        raise dns.resolver.NoNameservers()

    monkeypatch.setattr(dns.resolver, "resolve", servfail)
    with pytest.raises(dkim.DnsTimeoutError):
        dnscache.resolve_txt(DMARC, 1.0)


def test_no_such_name_is_no_record(monkeypatch: pytest.MonkeyPatch) -> None:
    def nxdomain(*_args: object, **_kwargs: object) -> object:
        raise dns.resolver.NXDOMAIN()

    monkeypatch.setattr(dns.resolver, "resolve", nxdomain)
    assert dnscache.resolve_txt(DMARC, 1.0) == (None, NEGATIVE_TTL)
