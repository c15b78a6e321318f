"""The fast path's HTTP/1.1 client (`agent.connectors.wsman.http`) against a loopback server
that answers each request with scripted bytes, whole or a byte at a time: every way a reply may
be framed, keep-alive, and every malformed or oversized reply refused with its own error.
(`tests/test_wsman_hostile.py` has whole scans against hostile servers.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import pytest

from agent.connectors.wsman.http import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    Connection,
    HttpProtocolError,
    Reply,
    ReplyTooLarge,
)

#: What the server does for each request in turn: the bytes to send, sent whole or bytewise,
#: and whether it closes the connection afterwards.
Answer = tuple[bytes, bool, bool]


async def _exchange(answers: Sequence[Answer], posts: int | None = None,
                    before: Callable[[asyncio.StreamWriter], Awaitable[None]] | None = None,
                    ) -> list[Reply | BaseException]:
    """Serve `answers` on loopback, post `posts` requests; each reply or its exception."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if before is not None:
            await before(writer)
        for data, bytewise, close in answers:
            await _request(reader)
            for piece in ([data[i:i + 1] for i in range(len(data))] if bytewise else [data]):
                writer.write(piece)
                await writer.drain()
            if close:
                writer.close()
                return
        await reader.read()  # hold the connection until the client drops it

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    results: list[Reply | BaseException] = []
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=MAX_HEAD_BYTES)
        connection = Connection(reader, writer, f"127.0.0.1:{port}")
        for _ in range(posts if posts is not None else len(answers)):
            try:
                async with asyncio.timeout(30):
                    results.append(await connection.post(b"<s:Envelope/>", ()))
            except (HttpProtocolError, ReplyTooLarge, OSError) as exc:
                results.append(exc)
        connection.close()
    finally:
        server.close()
    return results


def _run(answers: Sequence[Answer], posts: int | None = None) -> list[Reply | BaseException]:
    return asyncio.run(_exchange(answers, posts))


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
TO_THE_END = b"HTTP/1.1 200 OK\r\n\r\nall of it"


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize(("data", "close", "expected"), [
    (OK, False, Reply(200, {"content-type": "application/soap+xml", "content-length": "5"},
                      b"hello", False)),
    (CHUNKED, False, Reply(200, {"transfer-encoding": "chunked"}, b"hello world", False)),
    (TO_THE_END, True, Reply(200, {}, b"all of it", True)),
    (b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Negotiate\r\n"
     b"WWW-Authenticate: Basic realm=\"WSMAN\"\r\nContent-Length: 0\r\n\r\n", False,
     Reply(401, {"www-authenticate": 'Negotiate\0Basic realm="WSMAN"', "content-length": "0"},
           b"", False)),
    (b"HTTP/1.1 204 No Content\r\n\r\n", False, Reply(204, {}, b"", False)),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi", True,
     Reply(200, {"connection": "close", "content-length": "2"}, b"hi", True)),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi", True,
     Reply(200, {"content-length": "2"}, b"hi", True)),
], ids=["length", "chunked", "to-the-end", "repeated-header", "no-content", "close", "http-1.0"])
def test_every_framing_is_read_whole_or_bytewise(
    data: bytes, close: bool, expected: Reply, bytewise: bool
) -> None:
    assert _run([(data, bytewise, close)]) == [expected]


def test_replies_on_one_kept_alive_connection_each_go_to_their_request() -> None:
    results = _run([(OK, False, False), (CHUNKED, True, False), (OK, False, False)])
    assert [r.body for r in results if isinstance(r, Reply)] == [b"hello", b"hello world",
                                                                 b"hello"]


def test_a_reply_that_closes_the_connection_leaves_it_closed() -> None:
    first, second = _run([(TO_THE_END, False, True)], posts=2)
    assert isinstance(first, Reply) and first.closes
    assert isinstance(second, ConnectionResetError)


@pytest.mark.parametrize(("data", "close", "error", "words"), [
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * (MAX_HEAD_BYTES + 10), False, ReplyTooLarge,
     "headers longer"),
    (f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode(), False,
     ReplyTooLarge, "limit"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     + f"{MAX_BODY_BYTES + 1:x}\r\n".encode(), False, ReplyTooLarge, "longer than"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * (MAX_HEAD_BYTES + 10),
     False, ReplyTooLarge, "chunk header"),
    (b"ICY 200 OK\r\n\r\n", False, HttpProtocolError, "status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", False, HttpProtocolError, "status line"),
    (b"HTTP/1.1 200 OK\r\nBad Header : x\r\nContent-Length: 0\r\n\r\n", False,
     HttpProtocolError, "malformed"),
    (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", False, HttpProtocolError, "malformed"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", False,
     HttpProtocolError, "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", False, HttpProtocolError,
     "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 1\r\n\r\nx", False,
     HttpProtocolError, "compressed"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", False, HttpProtocolError,
     "Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False,
     HttpProtocolError, "chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX", False,
     HttpProtocolError, "CRLF"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", True, ConnectionResetError,
     "mid-reply"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", True,
     ConnectionResetError, "mid-reply"),
    (b"HTTP/1.1 200 O", True, ConnectionResetError, "before a reply"),
    (b"", True, ConnectionResetError, "before a reply"),
    (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (MAX_BODY_BYTES + 1), False, ReplyTooLarge,
     "longer than"),
], ids=["head-too-long", "length-too-long", "chunk-too-long", "chunk-header-too-long",
        "not-http", "status-digits", "space-before-colon", "no-colon", "two-lengths",
        "negative-length", "compressed", "other-transfer-encoding", "chunk-size",
        "chunk-crlf", "closed-mid-body", "closed-mid-chunk", "closed-mid-head",
        "closed-at-once", "to-the-end-too-long"])
def test_a_bad_reply_is_refused_with_its_own_error(
    data: bytes, close: bool, error: type[BaseException], words: str
) -> None:
    (result,) = _run([(data, False, close)])
    assert isinstance(result, error), result
    assert words in str(result)


async def _timed(script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
                 client: Callable[[Connection], Awaitable[None]], read_timeout: float) -> None:
    """Serve one connection with `script`; run `client` on a connection with `read_timeout`."""
    server = await asyncio.start_server(script, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=MAX_HEAD_BYTES)
        connection = Connection(reader, writer, f"127.0.0.1:{port}", read_timeout)
        try:
            await client(connection)
        finally:
            connection.close()
    finally:
        server.close()


async def _request(reader: asyncio.StreamReader) -> None:
    """Read one request, head and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))


def _answers_then_stalls(answered: int, stall_with: bytes = b""
                         ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                       Awaitable[None]]:
    """A server answering its first `answered` requests, then sending only `stall_with` to
    the next and nothing more."""
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(answered):
            await _request(reader)
            writer.write(OK)
        await _request(reader)
        writer.write(stall_with)
        await reader.read()
    return script


@pytest.mark.parametrize("stall_with", [b"", b"HTTP/1.1 200 OK\r\n", TO_THE_END],
                         ids=["silent", "mid-head", "body-to-the-end"])
def test_a_reply_not_whole_within_the_read_timeout_is_a_timeout(stall_with: bytes) -> None:
    """Whatever the reply had sent, it is a `TimeoutError`: never a reply cut short (a body
    framed by the connection's end would otherwise look complete once the timer drops it)."""
    outcome: list[BaseException | Reply] = []

    async def client(connection: Connection) -> None:
        try:
            async with asyncio.timeout(30):  # only if the timer never fires
                outcome.append(await connection.post(b"<s:Envelope/>", ()))
        except TimeoutError as exc:
            outcome.append(exc)

    asyncio.run(_timed(_answers_then_stalls(0, stall_with), client, read_timeout=0.3))
    assert len(outcome) == 1 and isinstance(outcome[0], TimeoutError), outcome


def test_the_read_timeout_counts_from_each_request_and_never_while_idle() -> None:
    """One timer serves the connection: it must neither drop an idle connection (between
    requests) nor cut a later request short by the deadline of an earlier one."""
    timeout = 0.5
    waited: list[float] = []

    async def client(connection: Connection) -> None:
        assert (await connection.post(b"<s:Envelope/>", ())).body == b"hello"
        await asyncio.sleep(timeout * 1.5)  # idle past the first request's deadline
        assert (await connection.post(b"<s:Envelope/>", ())).body == b"hello"
        await asyncio.sleep(timeout / 2)  # the timer armed by the second request is pending
        loop = asyncio.get_running_loop()
        armed = connection._timer  # by the second request, due before the third's deadline
        sent = loop.time()
        posted = asyncio.ensure_future(connection.post(b"<s:Envelope/>", ()))
        while connection._timer is armed:  # until it fires, early for the third request
            await asyncio.sleep(0.01)
        timer = connection._timer
        assert timer is not None and timer.when() == connection._deadline  # sleeps on exactly
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(posted, 30)
        waited.append(loop.time() - sent)
        assert connection.closed
        assert connection._timer is None  # nothing keeps the connection alive

    asyncio.run(_timed(_answers_then_stalls(2), client, read_timeout=timeout))
    # A lower bound only: the timer may fire late on a busy machine, never early.
    assert waited and waited[0] >= timeout - 0.001


def test_a_connection_dropped_mid_reply_never_returns_it_cut_short() -> None:
    """`close` (the host given up on) during a body framed by the connection's end: an error,
    not the bytes that had come."""
    outcome: list[BaseException | Reply] = []

    sent = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(TO_THE_END)
        await writer.drain()
        sent.set()
        await reader.read()

    async def client(connection: Connection) -> None:
        posted = asyncio.ensure_future(connection.post(b"<s:Envelope/>", ()))
        await sent.wait()
        await asyncio.sleep(0.05)  # the client reads what came (either way, no reply)
        connection.close()
        try:
            outcome.append(await asyncio.wait_for(posted, 30))
        except ConnectionResetError as exc:
            outcome.append(exc)

    asyncio.run(_timed(script, client, read_timeout=30))
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionResetError), outcome


def test_a_cancelled_post_drops_the_connection_and_its_timer() -> None:
    """Cancelled mid-reply (the host deadline), the connection is out of step: it is closed,
    and its timer does not keep it for the read timeout."""
    async def client(connection: Connection) -> None:
        posted = asyncio.ensure_future(connection.post(b"<s:Envelope/>", ()))
        await asyncio.sleep(0.05)
        posted.cancel()
        with pytest.raises(asyncio.CancelledError):
            await posted
        assert connection.closed and connection._timer is None

    asyncio.run(_timed(_answers_then_stalls(0), client, read_timeout=30))
