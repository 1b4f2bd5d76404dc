"""Native ``async def``/``await`` cases, on any asyncio event loop.

The ``asyncio`` implementation runs them on ``asyncio.new_event_loop()`` (the
default selector loop), ``uvloop`` on ``uvloop.new_event_loop()``; the
``tcg`` implementation reuses the protocol case (10) on tornado_cgen's loop.

Every case function takes ``(new_loop, n)`` and returns ``(elapsed_ns, ops)``,
timed inside the running loop so that loop creation and start-up stay out.
"""
import asyncio
import socket

from .common import MSG_1K, check, clock, socketpair


def _run(new_loop, main):
    """Run ``main()`` to completion on a fresh loop; close the loop after."""
    loop = new_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def case_1(new_loop, n):
    reps = max(1, n // 10)

    async def main():
        f = asyncio.get_running_loop().create_future()
        f.set_result(None)
        t0 = clock()
        for _ in range(reps):
            await f; await f; await f; await f; await f  # noqa: E702
            await f; await f; await f; await f; await f  # noqa: E702
        return clock() - t0, reps * 10

    return _run(new_loop, main)


async def _chain(depth):
    if depth == 1:
        return 1
    return await _chain(depth - 1)


def case_2(new_loop, n):
    tops = max(10, n // 10 // 10 * 10)   # whole groups of 10 top calls

    async def main():
        sleep, chain = asyncio.sleep, _chain
        t0 = clock()
        for _ in range(tops // 10):
            for _ in range(10):
                await chain(10)
            await sleep(0)
        return clock() - t0, tops * 10

    return _run(new_loop, main)


def case_3(new_loop, n):
    async def main():
        loop = asyncio.get_running_loop()
        create, call_soon = loop.create_future, loop.call_soon
        t0 = clock()
        for _ in range(n):
            f = create()
            call_soon(f.set_result, None)
            await f
        return clock() - t0, n

    return _run(new_loop, main)


def case_4(new_loop, n):
    async def main():
        sleep = asyncio.sleep
        t0 = clock()
        for _ in range(n):
            await sleep(0)
        return clock() - t0, n

    return _run(new_loop, main)


def _done_futures(loop, count):
    futures = []
    for i in range(count):
        f = loop.create_future()
        f.set_result(i)
        futures.append(f)
    return futures


def case_5(new_loop, n):
    reps = max(1, n // 10)

    async def main():
        futures = _done_futures(asyncio.get_running_loop(), 10)
        gather = asyncio.gather
        t0 = clock()
        for _ in range(reps):
            await gather(*futures)
        return clock() - t0, reps * 10

    return _run(new_loop, main)


def case_5d(new_loop, n):
    reps = max(1, n // 10)

    async def main():
        futures = dict(zip("abcdefghij",
                           _done_futures(asyncio.get_running_loop(), 10)))
        gather = asyncio.gather
        t0 = clock()
        for _ in range(reps):
            result = dict(zip(futures.keys(), await gather(*futures.values())))
        elapsed = clock() - t0
        check(result["j"] == 9, "dict gather result")
        return elapsed, reps * 10

    return _run(new_loop, main)


def case_6(new_loop, n):
    loop = new_loop()
    left = n
    t = [0, 0]
    call_soon = loop.call_soon

    def step():
        nonlocal left
        left -= 1
        if left:
            call_soon(step)
        else:
            t[1] = clock()
            loop.stop()

    def start():
        t[0] = clock()
        step()

    try:
        loop.call_soon(start)
        loop.run_forever()
    finally:
        loop.close()
    check(left == 0, "callback chain ran %d times" % n)
    return t[1] - t[0], n


def case_7(new_loop, n):
    batches = max(1, n // 100)
    calls = 0

    def cb():
        nonlocal calls
        calls += 1

    async def main():
        loop = asyncio.get_running_loop()
        call_soon, sleep = loop.call_soon, asyncio.sleep
        t0 = clock()
        for _ in range(batches):
            for _ in range(100):
                call_soon(cb)
            await sleep(0)
        return clock() - t0, batches * 100

    result = _run(new_loop, main)
    check(calls == batches * 100, "callback batch count")
    return result


def case_8(new_loop, n):
    loop = new_loop()
    batches = max(1, n // 100)
    left = batches
    t = [0, 0]
    call_later, call_soon = loop.call_later, loop.call_soon

    def never():
        raise AssertionError("a cancelled timer ran")

    def batch():
        nonlocal left
        handles = [call_later(1.0, never) for _ in range(100)]
        for h in handles:
            h.cancel()
        left -= 1
        if left:
            call_soon(batch)
        else:
            t[1] = clock()
            loop.stop()

    def start():
        t[0] = clock()
        batch()

    try:
        loop.call_soon(start)
        loop.run_forever()
    finally:
        loop.close()
    check(left == 0, "timer batches")
    return t[1] - t[0], batches * 100


def case_9(new_loop, n):
    loop = new_loop()
    a, b = socketpair()
    left = n
    t = [0, 0]

    def on_b():
        b.recv(1)
        b.send(b"x")

    def on_a():
        nonlocal left
        a.recv(1)
        left -= 1
        if left:
            a.send(b"x")
        else:
            t[1] = clock()
            loop.stop()

    def start():
        t[0] = clock()
        a.send(b"x")

    try:
        loop.add_reader(b.fileno(), on_b)
        loop.add_reader(a.fileno(), on_a)
        loop.call_soon(start)
        loop.run_forever()
        loop.remove_reader(a.fileno())
        loop.remove_reader(b.fileno())
    finally:
        loop.close()
        a.close()
        b.close()
    check(left == 0, "ping-pong round trips")
    return t[1] - t[0], n


class _Echo(asyncio.Protocol):
    """Server side of case 10: send back every complete 1 KiB message."""

    def connection_made(self, transport):
        self.transport = transport
        self.pending = b""

    def data_received(self, data):
        if self.pending:
            data = self.pending + data
        while len(data) >= 1024:
            self.transport.write(data[:1024])
            data = data[1024:]
        self.pending = data


class _Pinger(asyncio.Protocol):
    """Client side of case 10: ``n`` round trips of 1 KiB, then ``done``."""

    def __init__(self, n, done):
        self.left = n
        self.done = done
        self.pending = b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        if self.pending:
            data = self.pending + data
        if len(data) < 1024:
            self.pending = data
            return
        check(len(data) == 1024, "one message in flight")
        self.pending = b""
        self.left -= 1
        if self.left:
            self.transport.write(MSG_1K)
        else:
            self.done.set_result(clock())

    def start(self):
        self.t0 = clock()
        self.transport.write(MSG_1K)


def case_10(new_loop, n):
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        done = loop.create_future()
        transport, client = await loop.create_connection(
            lambda: _Pinger(n, done), "127.0.0.1", port)
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.start()
        t1 = await done
        elapsed = t1 - client.t0
        transport.close()
        server.close()
        await server.wait_closed()
        return elapsed, n

    return _run(new_loop, main)


def case_10s(new_loop, n):
    """Case 10 through asyncio streams: ``start_server`` with an echo
    handler that reads 1 KiB with ``readexactly``, writes it back and
    awaits ``drain()``; the client from ``open_connection`` writes 1 KiB
    and awaits ``readexactly(1024)`` per round trip."""
    async def main():
        loop = asyncio.get_running_loop()
        served = loop.create_future()

        async def echo(reader, writer):
            readexactly, write, drain = (reader.readexactly, writer.write,
                                         writer.drain)
            try:
                while True:
                    write(await readexactly(1024))
                    await drain()
            except asyncio.IncompleteReadError as e:
                served.set_result(len(e.partial))
            except Exception as e:
                served.set_exception(e)
            finally:
                writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        readexactly, write = reader.readexactly, writer.write
        data = b""
        t0 = clock()
        for _ in range(n):
            write(MSG_1K)
            data = await readexactly(1024)
        elapsed = clock() - t0
        check(data == MSG_1K, "the echo came back as sent")
        writer.close()
        await writer.wait_closed()
        # The handler sees the client's end of stream between messages.
        check(await asyncio.wait_for(served, 30) == 0,
              "the server's handler ended cleanly")
        server.close()
        await server.wait_closed()
        return elapsed, n

    return _run(new_loop, main)


CASES = {
    "1": case_1, "2": case_2, "3": case_3, "4": case_4, "5": case_5,
    "5d": case_5d, "6": case_6, "7": case_7, "8": case_8, "9": case_9,
    "10": case_10, "10s": case_10s,
}
