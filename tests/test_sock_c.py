"""The loop's sock_recv, sock_recv_into and sock_sendall (first try in C).

Every test runs on asyncio's own selector loop ("asyncio", the oracle) and
on ours ("tcg") with the same assertions: results, the exception types and
messages, cancellation, and sockets the C path must leave to their own
methods (subclasses, sockets with a timeout, patched classes).
"""
import asyncio
import errno
import socket

import pytest

import tornado_cgen
from tornado_cgen import _core


@pytest.fixture(params=["asyncio", "tcg"])
def loop(request):
    lp = (asyncio.SelectorEventLoop() if request.param == "asyncio"
          else tornado_cgen.new_event_loop())
    yield lp
    lp.close()


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 10))


def test_ping_pong_recv_recv_into_sendall(loop, pair):
    a, b = pair

    async def main():
        got = []
        for i in range(50):
            msg = bytes([i % 256]) * (1 + i * 37)
            waiter = loop.create_task(loop.sock_recv(b, 65536))
            await asyncio.sleep(0)
            await loop.sock_sendall(a, msg)
            data = await waiter
            buf = bytearray(len(msg))
            while len(data) < len(msg):
                data += await loop.sock_recv(b, 65536)
            got.append(data == msg)
            await loop.sock_sendall(b, memoryview(msg))
            n = 0
            view = memoryview(buf)
            while n < len(msg):
                n += await loop.sock_recv_into(a, view[n:])
            got.append(bytes(buf) == msg)
        return got

    assert run(loop, main()) == [True] * 100


def test_eof_and_ready_data(loop, pair):
    a, b = pair
    a.send(b"ready")
    a.shutdown(socket.SHUT_WR)

    async def main():
        first = await loop.sock_recv(b, 100)
        second = await loop.sock_recv(b, 100)
        third = await loop.sock_recv_into(b, bytearray(10))
        return first, second, third

    assert run(loop, main()) == (b"ready", b"", 0)


def test_sendall_larger_than_the_socket_buffer(loop, pair):
    # The first send() is partial; the rest goes through the writer
    # callback while the peer reads slowly.
    a, b = pair
    payload = bytes(range(256)) * 40000    # 10 MB

    async def reader():
        got = bytearray()
        while len(got) < len(payload):
            got += await loop.sock_recv(b, 65536)
        return bytes(got)

    async def main():
        r = loop.create_task(reader())
        await loop.sock_sendall(a, payload)
        return await r

    assert run(loop, main()) == payload


def test_a_cancelled_recv_unregisters_its_reader(loop, pair):
    a, b = pair

    async def main():
        t = loop.create_task(loop.sock_recv(b, 10))
        await asyncio.sleep(0.01)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        a.send(b"later")
        # Nobody reads on the loop's behalf: the bytes wait for us, and a
        # new sock_recv can wait on the same fd again.
        await asyncio.sleep(0.01)
        return b.recv(10)

    assert run(loop, main()) == b"later"

    async def again():
        t = loop.create_task(loop.sock_recv(b, 10))
        await asyncio.sleep(0)
        a.send(b"x")
        return await t

    assert run(loop, again()) == b"x"


@pytest.mark.parametrize("call", [
    lambda lp, s: lp.sock_recv(s, -1),
    lambda lp, s: lp.sock_recv(s, 1.5),
    lambda lp, s: lp.sock_recv(s, "10"),
    lambda lp, s: lp.sock_recv_into(s, b"read-only"),
    lambda lp, s: lp.sock_recv_into(s, "text"),
    lambda lp, s: lp.sock_sendall(s, "text"),
    lambda lp, s: lp.sock_sendall(s, 12),
])
def test_bad_arguments_fail_as_on_asyncio(call, pair):
    a, b = pair
    a.send(b"data")
    outcomes = []
    for lp in (asyncio.SelectorEventLoop(), tornado_cgen.new_event_loop()):
        try:
            with pytest.raises(Exception) as e:
                lp.run_until_complete(call(lp, b))
            outcomes.append((type(e.value), str(e.value)))
        finally:
            lp.close()
    assert outcomes[0] == outcomes[1]


def test_errors_of_a_reset_and_a_closed_socket(pair):
    a, b = pair
    outcomes = []
    for lp in (asyncio.SelectorEventLoop(), tornado_cgen.new_event_loop()):
        x, y = socket.socket(), socket.socket()
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        x.connect(srv.getsockname())
        y, _ = srv.accept()
        srv.close()
        y.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
        x.setblocking(False)
        y.close()          # RST to x
        gone = socket.socket()
        gone.setblocking(False)
        gone.close()
        try:
            for coro in (lambda: lp.sock_recv(x, 10),
                         lambda: lp.sock_recv(gone, 10),
                         lambda: lp.sock_sendall(gone, b"x"),
                         lambda: lp.sock_recv_into(gone, bytearray(3))):
                try:
                    lp.run_until_complete(coro())
                    outcomes.append("no error")
                except OSError as e:
                    outcomes.append((type(e), e.errno))
        finally:
            x.close()
            lp.close()
    half = len(outcomes) // 2
    assert outcomes[:half] == outcomes[half:]
    assert outcomes[0] == (ConnectionResetError, errno.ECONNRESET)


def test_a_socket_with_a_timeout_uses_its_own_method(loop, pair):
    # recv() on a socket with a timeout waits for it: not something the C
    # path may do for it.  With data ready both return it.
    a, b = pair
    b.settimeout(5.0)
    a.send(b"now")

    async def main():
        return await loop.sock_recv(b, 10)

    assert run(loop, main()) == b"now"


def test_debug_mode_refuses_a_blocking_socket(loop, pair):
    a, b = pair
    b.setblocking(True)
    loop.set_debug(True)
    with pytest.raises(ValueError, match="the socket must be non-blocking"):
        loop.run_until_complete(loop.sock_recv(b, 10))


def test_socket_subclasses_and_patched_methods_are_honoured(loop, pair,
                                                            monkeypatch):
    a, b = pair
    calls = []

    class Mine(socket.socket):
        def recv(self, n):
            calls.append(("sub", n))
            return super().recv(n)

    mine = Mine(fileno=b.detach())
    mine.setblocking(False)
    a.send(b"one")
    try:
        assert run(loop, loop.sock_recv(mine, 10)) == b"one"
        real = socket.socket.recv

        def patched(self, n):
            calls.append(("patched", n))
            return real(self, n)

        monkeypatch.setattr(socket.socket, "recv", patched)
        c, d = socket.socketpair()
        c.setblocking(False)
        d.setblocking(False)
        try:
            c.send(b"two")
            assert run(loop, loop.sock_recv(d, 10)) == b"two"
        finally:
            c.close()
            d.close()
    finally:
        mine.close()
    assert ("sub", 10) in calls and ("patched", 10) in calls


def test_the_c_calls_return_none_where_the_methods_would_block(pair):
    a, b = pair
    assert _core._sock_recv(b, 10) is None
    assert _core._sock_recv_into(b, bytearray(4)) is None
    a.send(b"abc")
    assert _core._sock_recv(b, 2) == b"ab"
    buf = bytearray(4)
    assert _core._sock_recv_into(b, buf) == 1 and buf[:1] == b"c"
    assert _core._sock_send(a, b"xyz") == 3 and b.recv(3) == b"xyz"
    with pytest.raises(TypeError):
        _core._sock_recv(b)
