"""DNS TXT look-ups for DKIM keys and DMARC policies, kept for their TTL.

Every message asks for ``_dmarc.<its From domain>`` and for the key of each signature,
and a helpdesk hears from the same few hundred domains all day: asking the resolver
again for each message cost the facts stage most of its time (issue 21: 76.6 msg/s end
to end with look-ups, 113.7 without).  ``cached_txt`` has dkimpy's ``dnsfunc`` signature
and answers from a cache:

* an answer is kept for its TTL, at least ``MIN_TTL`` and at most ``MAX_TTL``;
* "no such name" and "no TXT record" are kept for ``NEGATIVE_TTL`` (RFC 2308 lets a
  resolver keep them for the zone's SOA minimum; a fixed five minutes is simpler and
  shorter than most);
* a failure (time-out, no resolver) is remembered for ``FAILURE_TTL`` and raised again
  to every caller in that window, so a dead resolver costs one time-out per name and
  window instead of one per message — and the caller still sees the failure.

The daemon keeps one for the batches' look-ups (``verify.lookahead``), shared by every
facts worker.  ``cached_txt`` is a module-level function, so it is
pickled by reference and each facts worker keeps one cache for its whole life instead
of a fresh copy per job.  It holds at most ``MAX_ENTRIES`` names, dropping the oldest.
Tests replace the resolver (``TxtCache(resolve=…, clock=…)``): DNS and the clock are the
two things the suite fakes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import dkim
import dns.exception
import dns.rdatatype
import dns.resolver

MIN_TTL = 60.0
MAX_TTL = 3600.0
NEGATIVE_TTL = 300.0
FAILURE_TTL = 30.0
MAX_ENTRIES = 10_000

# (text or None, seconds it may be kept); raises dkim.DnsTimeoutError on failure.
Resolve = Callable[[str, float], tuple[bytes | None, float]]


@dataclass(frozen=True, slots=True)
class Entry:
    expires: float
    value: bytes | None
    failure: str | None = None  # the message of the error to raise again

    def unpack(self) -> bytes | None:
        """The record, or the remembered failure raised again."""
        if self.failure is not None:
            raise dkim.DnsTimeoutError(self.failure)
        return self.value


class TxtCache:
    def __init__(self, resolve: Resolve, clock: Callable[[], float] = time.monotonic) -> None:
        self._resolve = resolve
        self._clock = clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        # The daemon's inline analyzer may call from several threads.
        self._lock = threading.Lock()

    def get(self, name: bytes, timeout: float = 5) -> bytes | None:
        """dkimpy's ``dnsfunc``: the TXT record of ``name`` (joined strings), or None."""
        try:
            key = name.decode("ascii").lower()
        except UnicodeDecodeError:
            return None  # DKIM's d= and our _dmarc names are ASCII; anything else has none
        entry = self.fresh(key)
        if entry is not None:
            return entry.unpack()
        try:
            value, ttl = self._resolve(key, timeout)
        except dkim.DnsTimeoutError as exc:
            return self.remember_failure(key, str(exc) or "DNS time-out").unpack()
        return self.remember(key, value, ttl).unpack()

    def fresh(self, key: str) -> Entry | None:
        """The entry for ``key`` (a lower-case name) while it may be used, else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.expires <= self._clock():
                return None
            self._entries.move_to_end(key)
            return entry

    def remember(self, key: str, value: bytes | None, ttl: float) -> Entry:
        """Keep an answer (None: no such name or no TXT) for its TTL, clamped."""
        return self._put(key, Entry(self._clock() + min(max(ttl, MIN_TTL), MAX_TTL), value))

    def remember_failure(self, key: str, why: str) -> Entry:
        """Keep a failure for ``FAILURE_TTL``: raised again to every caller meanwhile."""
        return self._put(key, Entry(self._clock() + FAILURE_TTL, None, why))

    def _put(self, key: str, entry: Entry) -> Entry:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
        return entry

    def __len__(self) -> int:
        return len(self._entries)


# SERVFAIL from every server, no resolver, no answer in time: temperror, never "no
# record" (which would read as "no DMARC policy").  The one rule for both resolvers,
# this synchronous one and ``verify.lookahead``'s asynchronous one.
TEMPORARY_FAILURES = (
    dns.resolver.NoNameservers,
    dns.resolver.NoResolverConfiguration,
    dns.exception.Timeout,
)


def resolve_txt(name: str, timeout: float) -> tuple[bytes | None, float]:
    """Ask the system's resolver (dnspython), as dkimpy's own ``get_txt`` does, but keep
    the TTL.  The first TXT record counts, its strings joined (RFC 6376 3.6.2.2)."""
    try:
        answer = dns.resolver.resolve(
            name, dns.rdatatype.TXT, raise_on_no_answer=False, lifetime=timeout, search=False
        )
    except dns.resolver.NXDOMAIN:
        return None, NEGATIVE_TTL
    except TEMPORARY_FAILURES as exc:
        raise dkim.DnsTimeoutError(f"{type(exc).__name__}: {exc}") from exc
    return first_txt(answer)


def first_txt(answer: dns.resolver.Answer) -> tuple[bytes | None, float]:
    """The first TXT record of an answer, its strings joined (RFC 6376 3.6.2.2), and
    its TTL; no TXT record: None, kept ``NEGATIVE_TTL``."""
    for rrset in answer.response.answer:
        if rrset.rdtype == dns.rdatatype.TXT:
            record = next(iter(rrset))
            return b"".join(record.strings), float(rrset.ttl)
    return None, NEGATIVE_TTL


_CACHE = TxtCache(resolve_txt)


def cached_txt(name: bytes, timeout: float = 5) -> bytes | None:
    """The process's cached TXT look-up (see the module's docstring)."""
    return _CACHE.get(name, timeout)


def no_dns(name: bytes, timeout: float = 0) -> None:
    """The resolver when ``verify.dns_lookups`` is off: every name is unknown.  Here, not
    in the daemon's wiring, because a facts worker imports the module of the function
    it is handed, and this one is small."""
    return None
