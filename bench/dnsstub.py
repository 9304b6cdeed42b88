"""A stub DNS server on loopback for the benchmark's DNS rows (``bench/run.py --dns``).

The bench machine has no internet, so ``[verify] dns_lookups = true`` could only be
measured against a resolver that fails at once.  This answers UDP queries itself,
each after ``delay`` seconds (a nearby recursive resolver's round trip):

* TXT ``_dmarc.<anything>`` → ``v=DMARC1; p=none`` (so the decisions are the same as
  with look-ups off: unauthenticated, not disowned);
* TXT ``<selector>._domainkey.<anything>`` → a DKIM key record;
* anything else → NXDOMAIN.

Only what a stub resolver needs of RFC 1035 is written here: one question per query,
no compression in the question, the answer pointing back at it (0xC00C).
"""

from __future__ import annotations

import asyncio
import struct
import threading

TXT, IN = 16, 1
DMARC = b"v=DMARC1; p=none"
DKIM = b"v=DKIM1; k=rsa; p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAL"  # a key nobody signs with
TTL = 300


def _question(query: bytes) -> tuple[list[bytes], int, int] | None:
    labels, offset = [], 12
    while offset < len(query):
        length = query[offset]
        offset += 1
        if length == 0:
            break
        if length & 0xC0:
            return None
        labels.append(query[offset : offset + length].lower())
        offset += length
    if offset + 4 > len(query):
        return None
    qtype, _qclass = struct.unpack("!HH", query[offset : offset + 4])
    return labels, qtype, offset + 4


def answer(query: bytes) -> bytes | None:
    """The reply to one query (None: not a query we can read, dropped)."""
    if len(query) < 12:
        return None
    ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
    parsed = _question(query) if qdcount == 1 else None
    if parsed is None:
        return None
    labels, qtype, end = parsed
    question = query[12:end]
    text = None
    if labels and labels[0] == b"_dmarc":
        text = DMARC
    elif len(labels) > 2 and labels[1] == b"_domainkey":
        text = DKIM
    if text is None:  # NXDOMAIN, authoritative, recursion available
        return struct.pack("!HHHHHH", ident, 0x8583, 1, 0, 0, 0) + question
    if qtype != TXT:  # the name exists, but has no record of this type
        return struct.pack("!HHHHHH", ident, 0x8580, 1, 0, 0, 0) + question
    rdata = bytes([len(text)]) + text
    record = struct.pack("!HHHIH", 0xC00C, TXT, IN, TTL, len(rdata)) + rdata
    return struct.pack("!HHHHHH", ident, 0x8580, 1, 1, 0, 0) + question + record


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.transport: asyncio.DatagramTransport | None = None
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries += 1
        reply = answer(data)
        if reply is not None and self.transport is not None:
            asyncio.get_running_loop().call_later(self.delay, self.transport.sendto, reply, addr)


class StubDns:
    """The server in a thread of this process: ``with StubDns(0.02) as dns: dns.port``."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.port = 0
        self.protocol = _Protocol(delay)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> StubDns:
        self._thread.start()
        made = asyncio.run_coroutine_threadsafe(
            self._loop.create_datagram_endpoint(lambda: self.protocol, local_addr=("127.0.0.1", 0)),
            self._loop,
        )
        transport, _ = made.result(timeout=10)
        self.port = transport.get_extra_info("sockname")[1]
        return self

    def __exit__(self, *exc: object) -> None:
        if self.protocol.transport is not None:
            self._loop.call_soon_threadsafe(self.protocol.transport.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
