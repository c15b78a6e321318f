"""A strict, minimal HTTP/1.1 client for one WS-Management connection on asyncio streams.

Why not a general HTTP library: a WinRM exchange needs one grammar (``POST`` with a known body,
a status line, headers, a body framed by Content-Length, chunks or the connection's end), and
every reply must be capped while it is read, never follow a redirect and never consult the
process environment (proxies, CA bundles). Writing those dozen rules down costs less CPU per
request than a general client and leaves nothing implicit. Anything outside them is refused with
`HttpProtocolError`; size caps raise `ReplyTooLarge`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from agent.connectors.common import MAX_REPLY_BYTES

#: Longest status line plus headers read from a reply.
MAX_HEAD_BYTES: Final = 64 * 1024
#: Longest reply body read: the same bound as the pywinrm path's.
MAX_BODY_BYTES: Final = MAX_REPLY_BYTES


class HttpProtocolError(Exception):
    """The reply is not HTTP/1.1 the client can read."""


class ReplyTooLarge(Exception):
    """The reply passed a size cap while it was being read."""


@dataclass(frozen=True)
class Reply:
    """One HTTP reply: status, headers (lower-case names; repeated ones joined by a NUL), body."""

    status: int
    headers: dict[str, str]
    body: bytes
    #: Whether the server will close the connection after it.
    closes: bool

    def header_values(self, name: str) -> list[str]:
        """Every value of a header that may repeat (WWW-Authenticate)."""
        value = self.headers.get(name)
        return value.split("\0") if value is not None else []


class Connection:
    """One kept-alive TCP (or TLS) connection to a host's ``/wsman``.

    Each reply must have arrived whole within `read_timeout` seconds of its request, or `post`
    raises `TimeoutError` and the connection is dropped. One timer per connection enforces it,
    not one per request (an ``asyncio.timeout`` each): a request's deadline only moves later, so
    the timer, when it fires early, sleeps again until the deadline of the request then waiting.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host_header: str, read_timeout: float | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self._prefix = (f"POST /wsman HTTP/1.1\r\nHost: {host_header}\r\n"
                        "User-Agent: mfa-agent\r\n").encode("latin-1")
        self.closed = False
        self._read_timeout = read_timeout
        self._loop = asyncio.get_running_loop()
        #: When the reply being waited for is late (loop time); None while no request waits.
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out = False

    async def post(self, body: bytes, headers: tuple[tuple[str, str], ...]) -> Reply:
        """Send one POST and read its reply (`TimeoutError` past `read_timeout`)."""
        if self.closed:
            raise ConnectionResetError("the server closed the connection")
        head = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers)
        self.writer.write(self._prefix + head
                          + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        if self._read_timeout is not None:
            self._deadline = self._loop.time() + self._read_timeout
            if self._timer is None:
                self._timer = self._loop.call_at(self._deadline, self._expire)
        try:
            reply = await self._read_reply()
        except Exception:
            if self._timed_out:
                raise TimeoutError from None
            raise
        except BaseException:  # cancelled mid-reply: the stream is out of step for good
            self.close()
            raise
        finally:
            self._deadline = None
        # A body read to the connection's end ends early too when the connection is dropped.
        if self._timed_out:
            raise TimeoutError
        if self.closed:
            raise ConnectionResetError("the connection was dropped while its reply was read")
        if reply.closes:
            self.closed = True
        return reply

    def _expire(self) -> None:
        """The timer: drop the connection if the waiting request is late, else wait on."""
        self._timer = None
        if self._deadline is None or self.closed:
            return  # no request waits: the next one starts the timer again
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._expire)
            return
        self._timed_out = True
        self.close()  # the read under way ends at once (the connection is lost)

    async def _read_reply(self) -> Reply:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ReplyTooLarge(f"reply headers longer than {MAX_HEAD_BYTES} bytes") from None
        except asyncio.IncompleteReadError as exc:
            if len(exc.partial) > MAX_HEAD_BYTES:
                raise ReplyTooLarge("reply headers too long") from None
            raise ConnectionResetError("the connection closed before a reply") from None
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0") or not (
            len(parts[1]) == 3 and parts[1].isdigit()
        ):
            raise HttpProtocolError("the reply does not start with an HTTP/1.1 status line")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HttpProtocolError("a reply header is malformed")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}\0{value}" if key in headers else value
        closes = parts[0] == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
        body = await self._read_body(status, headers)
        if "content-length" not in headers and "transfer-encoding" not in headers and body:
            closes = True
        return Reply(status, headers, body, closes)

    async def _read_body(self, status: int, headers: dict[str, str]) -> bytes:
        if status in (204, 304) or 100 <= status < 200:
            return b""
        coding = headers.get("content-encoding", "identity").strip().lower()
        if coding != "identity":  # never asked for: nothing is decompressed, nothing expands
            raise HttpProtocolError(
                f"a compressed reply (Content-Encoding {coding[:40]!r}) that was not asked for"
            )
        encoding = headers.get("transfer-encoding")
        if encoding is not None:
            if encoding.lower() != "chunked":
                raise HttpProtocolError(f"unsupported Transfer-Encoding {encoding!r}")
            return await self._read_chunks()
        length_text = headers.get("content-length")
        if length_text is not None:
            if "\0" in length_text or not length_text.isdigit():
                raise HttpProtocolError("the reply has an invalid Content-Length")
            length = int(length_text)
            if length > MAX_BODY_BYTES:
                raise ReplyTooLarge(f"a reply of {length} bytes (limit {MAX_BODY_BYTES})")
            try:
                return await self.reader.readexactly(length) if length else b""
            except asyncio.IncompleteReadError:
                raise ConnectionResetError("the connection closed mid-reply") from None
        body = await self.reader.read(MAX_BODY_BYTES + 1)
        while body and len(body) <= MAX_BODY_BYTES:
            more = await self.reader.read(MAX_BODY_BYTES + 1 - len(body))
            if not more:
                break
            body += more
        if len(body) > MAX_BODY_BYTES:
            raise ReplyTooLarge(f"a reply longer than {MAX_BODY_BYTES} bytes")
        return body

    async def _read_chunks(self) -> bytes:
        body = bytearray()
        try:
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size_text = size_line[:-2].split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HttpProtocolError("a chunk size is malformed") from None
                if size < 0 or len(body) + size > MAX_BODY_BYTES:
                    raise ReplyTooLarge(f"a reply longer than {MAX_BODY_BYTES} bytes")
                if size == 0:
                    while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                        pass  # trailers, ignored
                    return bytes(body)
                body += await self.reader.readexactly(size)
                if await self.reader.readexactly(2) != b"\r\n":
                    raise HttpProtocolError("a chunk is not followed by CRLF")
        except asyncio.LimitOverrunError:
            raise ReplyTooLarge("a chunk header is too long") from None
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("the connection closed mid-reply") from None

    def close(self) -> None:
        """Drop the connection at once (no goodbye: the host is done or given up on)."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.writer.transport.abort()
