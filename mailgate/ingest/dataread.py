"""The SMTP/LMTP DATA reader: the message into one buffer as it arrives (issue 21).

aiosmtpd 1.4 keeps DATA as a list of one ``bytearray`` per line and joins them at the
end: for a 34 MB message with a 25 MB base64 attachment that is some 450 000 small
objects (about twice the message) plus the joined copy, all in the daemon at once.
``LeanData`` replaces its ``smtp_DATA`` with the same protocol on a ``BytesIO``:

* lines end at CRLF only, and only a line ``.`` CRLF at the start of a line ends the
  data — what aiosmtpd 1.4.5 fixed for SMTP smuggling (CVE-2024-27305) is kept;
* a leading dot is removed from every line (RFC 5321 §4.5.2);
* the size limit counts the bytes on the wire, as aiosmtpd does, and is enforced while
  reading: past it the rest is read and dropped, and the reply is 552 once the final
  dot arrives (RFC 5321 §4.2.5: the reply comes after the data); a line longer than
  the stream's limit likewise gives 500 at the end;
* ``BytesIO.getvalue`` hands over its own buffer instead of copying it, so the peak
  is about the message once, not three times.

Everything after the data — the handler's ``handle_DATA``, the state reset, the reply
(one per recipient in LMTP, ``smtp.PerRecipientLMTP``) — is aiosmtpd's own sequence.
"""

from __future__ import annotations

import asyncio
import io

from aiosmtpd.smtp import MISSING, SMTP

TOO_MUCH = "552 Error: Too much mail data"
TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"


async def read_data(
    reader: asyncio.StreamReader, limit: int | None
) -> tuple[bytes | None, str | None]:
    """The message up to the final dot, unstuffed; or None and the error reply.

    Returns (None, None) when the stream ended without the final dot."""
    buffer: io.BytesIO | None = io.BytesIO()
    refusal: str | None = None
    size = 0
    partial = False  # the last read stopped inside an over-long line
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as exc:
            # Longer than the stream's line limit: drop what we hold, read on.
            refusal = refusal or TOO_LONG
            buffer = None
            line = await reader.read(exc.consumed)
            if not line:
                return None, None
            size += len(line)
            partial = True
            continue
        except asyncio.IncompleteReadError:
            return None, None  # the peer went away mid-message
        if not partial and line == b".\r\n":
            break
        size += len(line)
        if limit and size > limit and refusal is None:
            refusal, buffer = TOO_MUCH, None  # keep reading to the dot, keep nothing
        if buffer is not None and not partial:
            buffer.write(memoryview(line)[1:] if line.startswith(b".") else line)
        partial = False
    if refusal is not None or buffer is None:
        return None, refusal
    return buffer.getvalue(), None


class LeanData(SMTP):
    """aiosmtpd's SMTP with ``read_data`` as its DATA reader (see the module)."""

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            raw, refusal = await read_data(self._reader, self.data_size_limit)
        except asyncio.CancelledError:
            self._writer.close()  # the connection was reset during DATA
            raise
        if raw is None:
            if refusal is None:
                return  # no final dot: the connection is gone, nothing to answer
            await self.push(refusal)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        # decode_data is off for our listeners: the handler reads the bytes.
        self.envelope.content = self.envelope.original_content = raw
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)
