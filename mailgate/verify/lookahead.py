"""DNS for a batch, looked up together before the facts workers need it (issue 21).

Each message asks for ``_dmarc.<From domain>`` (and the organizational domain's) and for
the key of each aligned DKIM signature.  Asked one by one inside the facts workers, with
a 5 s time-out each, a slow resolver stalled the whole batch and every worker kept its
own cache.  Here the daemon does it instead, once per batch:

* ``names_for`` reads the names a message will need from its header block alone (the
  From domains, and ``<s>._domainkey.<d>`` of each DKIM-Signature whose ``d=`` is aligned
  with a From domain — an unaligned signature is never verified, so its key is never
  asked, which also keeps a message with a thousand signatures from costing a thousand
  look-ups; at most ``MAX_NAMES`` per message);
* ``Lookahead.for_batch`` answers what the daemon's cache (``dnscache.TxtCache``, one
  for the process, so shared by every worker and kept when a worker is replaced) holds,
  and asks the resolver for the rest **at the same time** (dnspython's asyncio resolver,
  on one background event loop), waiting at most ``budget`` seconds for the batch;
* the answers travel to the workers as an ``Answers`` value — a small picklable
  ``dnsfunc`` that never touches the network.  A name the budget did not cover, or that
  the resolver failed on, raises ``dkim.DnsTimeoutError`` there, which ``verify.authn``
  turns into ``temperror`` (RFC 7489 §6.6.2, RFC 8601 §2.7.1): never a pass, never a
  DMARC fail either — the sender is handled as unauthenticated.

A look-up still running when the budget ends is not cancelled: its answer fills the
cache for the next batch (and a failure is remembered for ``FAILURE_TTL``), and a name
already being asked is not asked twice.  Answers are not kept across a daemon restart:
the first batch after a start pays one round of look-ups, bounded by the budget, which
was judged cheaper than a table written from the hot path.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import dkim
import dkim.util
import dns.asyncresolver
import dns.nameserver
import dns.rdatatype
import dns.resolver

from mailgate.config.checks import nameserver_address
from mailgate.verify.authn import org_domain
from mailgate.verify.dnscache import (
    NEGATIVE_TTL,
    TEMPORARY_FAILURES,
    Entry,
    TxtCache,
    first_txt,
)

MAX_NAMES = 8  # per message: From domains and aligned signatures
LOOKUP_SECONDS = 5.0  # one look-up's own lifetime, past the batch's budget

# (text or None, seconds it may be kept); raises dkim.DnsTimeoutError on failure.
AsyncResolve = Callable[[str, float], Awaitable[tuple[bytes | None, float]]]

_FOLDED = re.compile(rb"\r?\n[ \t]+")
_DOMAIN = re.compile(r"@\[?([A-Za-z0-9.-]+)")


@dataclass(frozen=True, slots=True)
class Answers:
    """What the workers get as ``dnsfunc``: the batch's answers and nothing else."""

    records: dict[str, bytes | None] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # name → why

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        key = name.decode("ascii", "replace").lower()
        if key in self.records:
            return self.records[key]
        why = self.failed.get(key, "not looked up for this batch")
        raise dkim.DnsTimeoutError(f"temperror: {key}: {why}")


def _header_block(raw: bytes) -> list[tuple[str, bytes]]:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    fields = []
    for line in _FOLDED.sub(b" ", head).splitlines():
        name, sep, value = line.partition(b":")
        if sep:
            fields.append((name.strip().decode("ascii", "replace").lower(), value.strip()))
    return fields


def names_for(raw: bytes) -> list[str]:
    """The TXT names ``verify.authn`` may ask about this message (lower case, dotted)."""
    fields = _header_block(raw)
    domains: list[str] = []
    for name, value in fields:
        if name == "from":
            for found in _DOMAIN.findall(value.decode("utf-8", "replace")):
                domain = found.lower().rstrip(".")
                if domain and domain not in domains:
                    domains.append(domain)
    names: list[str] = []
    for domain in domains:
        names.append(f"_dmarc.{domain}.")
        org = org_domain(domain)
        if org != domain:
            names.append(f"_dmarc.{org}.")
    for name, value in fields:
        if name != "dkim-signature":
            continue
        try:
            tags = dkim.util.parse_tag_value(value)
        except Exception:  # noqa: BLE001, S112 -- a malformed signature is never verified
            continue
        signer = tags.get(b"d", b"").decode("ascii", "replace").lower()
        selector = tags.get(b"s", b"").decode("ascii", "replace").lower()
        if signer and selector and any(org_domain(signer) == org_domain(d) for d in domains):
            names.append(f"{selector}._domainkey.{signer}.")
    return list(dict.fromkeys(names))[:MAX_NAMES]


class Lookahead:
    """The daemon's DNS: a batch's names asked together, under a budget (see above).

    Also a plain ``dnsfunc`` (called with one name) for the inline analyzer and tests,
    answering from the same cache and asking on a miss within the budget.
    """

    def __init__(self, cache: TxtCache, resolve: AsyncResolve, budget: float) -> None:
        self.cache = cache
        self.resolve = resolve
        self.budget = budget
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._asking: dict[str, asyncio.Future[Entry]] = {}  # only touched in the loop

    def for_batch(self, raws: Iterable[bytes]) -> Answers:
        wanted = list(dict.fromkeys(n for raw in raws for n in names_for(raw)))
        known = {name: self.cache.fresh(name) for name in wanted}
        missing = [name for name, entry in known.items() if entry is None]
        if missing:
            known.update(self._ask(missing))
        records: dict[str, bytes | None] = {}
        failed: dict[str, str] = {}
        for name, entry in known.items():
            if entry is None:
                failed[name] = f"no answer within the batch's {self.budget:g} s"
            elif entry.failure is not None:
                failed[name] = entry.failure
            else:
                records[name] = entry.value
        return Answers(records, failed)

    def __call__(self, name: bytes, timeout: float = 5) -> bytes | None:
        key = name.decode("ascii", "replace").lower()
        entry = self.cache.fresh(key)
        if entry is None:
            entry = self._ask([key]).get(key)
        if entry is None:
            raise dkim.DnsTimeoutError(f"temperror: {key}: no answer within {self.budget:g} s")
        return entry.unpack()

    def _ask(self, names: list[str]) -> dict[str, Entry | None]:
        """Ask for ``names`` at once; what is back within the budget (None: not yet)."""
        loop = self._event_loop()
        future: Future[dict[str, Entry | None]] = asyncio.run_coroutine_threadsafe(
            self._gather(names), loop
        )
        try:
            # The coroutine keeps its own budget; the margin only covers a stuck loop.
            return future.result(timeout=self.budget + 1)
        except FutureTimeout:
            return dict.fromkeys(names)

    async def _gather(self, names: list[str]) -> dict[str, Entry | None]:
        asking = [self._asking.get(name) or self._start(name) for name in names]
        await asyncio.wait(asking, timeout=self.budget)
        return {
            name: (task.result() if task.done() else None)
            for name, task in zip(names, asking, strict=True)
        }

    def _start(self, name: str) -> asyncio.Future[Entry]:
        task = asyncio.ensure_future(self._lookup(name))
        self._asking[name] = task
        task.add_done_callback(lambda _: self._asking.pop(name, None))
        return task

    async def _lookup(self, name: str) -> Entry:
        try:
            value, ttl = await asyncio.wait_for(self.resolve(name, LOOKUP_SECONDS), LOOKUP_SECONDS)
        except (dkim.DnsTimeoutError, TimeoutError) as exc:
            return self.cache.remember_failure(name, str(exc) or type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 -- any resolver error: temperror, remembered
            return self.cache.remember_failure(name, f"{type(exc).__name__}: {exc}")
        return self.cache.remember(name, value, ttl)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="dns", daemon=True)
                thread.start()
                self._loop = loop
            return self._loop


def resolver(nameservers: tuple[str, ...]) -> AsyncResolve:
    """An asyncio resolver: the system's (``/etc/resolv.conf``), or ``nameservers``
    ("host" or "host:port", ``[verify] nameservers``) when given."""
    if nameservers:
        engine = dns.asyncresolver.Resolver(configure=False)
        servers: list[str | dns.nameserver.Nameserver] = []
        for server in nameservers:
            servers.append(dns.nameserver.Do53Nameserver(*nameserver_address(server)))
        engine.nameservers = servers
    else:
        engine = None

    async def resolve(name: str, timeout: float) -> tuple[bytes | None, float]:
        nonlocal engine
        try:
            if engine is None:
                engine = dns.asyncresolver.Resolver()  # reads resolv.conf once
            answer = await engine.resolve(
                name, dns.rdatatype.TXT, raise_on_no_answer=False, lifetime=timeout, search=False
            )
        except dns.resolver.NXDOMAIN:
            return None, NEGATIVE_TTL
        except TEMPORARY_FAILURES as exc:
            raise dkim.DnsTimeoutError(f"{type(exc).__name__}: {exc}") from exc
        return first_txt(answer)

    return resolve


def batch_dns(dnsfunc: Callable[..., object], raws: Iterable[bytes]) -> Callable[..., object]:
    """The ``dnsfunc`` to hand a batch's facts workers: the daemon's look-ahead answers,
    or ``dnsfunc`` itself when it is something else (DNS off, a test's fake)."""
    return dnsfunc.for_batch(raws) if isinstance(dnsfunc, Lookahead) else dnsfunc
