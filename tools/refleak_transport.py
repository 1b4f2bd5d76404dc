"""Reference-growth check for the socket transport of tornado_cgen's loop:
rounds of connect / echo / close cycles over loopback TCP and a Unix
socket, with a ``data_received`` protocol, a ``BufferedProtocol``, a
stream pair (``open_connection``/``start_server``), and the paths that
fail (a protocol callback raising through the exception handler, a peer
reset, writes after the connection is gone, ``abort`` with data
pending), measured with ``sys.gettotalrefcount()`` on a debug interpreter
(else ``sys.getallocatedblocks()``).

    python tools/refleak_transport.py [cycles] [rounds]

Prints the growth per round after a warm-up round; exits 1 if any round
after the first grew.
"""
import asyncio
import gc
import logging
import os
import socket
import struct
import sys
import tempfile

try:
    import tornado_cgen  # noqa: F401  (a build on PYTHONPATH comes first)
except ImportError:
    sys.path.insert(0, os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import tornado_cgen  # noqa: E402


def _count():
    if hasattr(sys, "gettotalrefcount"):
        return sys.gettotalrefcount()
    return sys.getallocatedblocks()


# Server-side connections not yet lost (a round ends when they are all
# gone, so that no round leaves work to the next).
server_side = [0]


class Echo(asyncio.Protocol):
    """The server side: echoes, and fails on b"raise"."""

    def connection_made(self, transport):
        self.transport = transport
        server_side[0] += 1

    def connection_lost(self, exc):
        server_side[0] -= 1

    def data_received(self, data):
        if data == b"raise":
            raise ValueError("raised on purpose")
        self.transport.write(data)

    def eof_received(self):
        return None


class BufferedEcho(asyncio.BufferedProtocol):
    def __init__(self):
        self.buf = bytearray(1000)

    def connection_made(self, transport):
        self.transport = transport
        server_side[0] += 1

    def connection_lost(self, exc):
        server_side[0] -= 1

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.transport.write(self.buf[:nbytes])


class Client(asyncio.Protocol):
    def __init__(self, loop, want):
        self.want = want
        self.got = bytearray()
        self.done = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.got += data
        if len(self.got) >= self.want and not self.done.done():
            self.done.set_result(bytes(self.got))

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


class BufferedClient(asyncio.BufferedProtocol):
    def __init__(self, loop, want):
        self.want = want
        self.buf = bytearray(7)
        self.got = bytearray()
        self.done = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.got += self.buf[:nbytes]
        if len(self.got) >= self.want and not self.done.done():
            self.done.set_result(bytes(self.got))

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


async def one_cycle(loop, servers, i):
    tcp, buffered, unix_path, streams = servers
    data = b"%d" % i * 50
    # TCP, a data_received protocol both ends, closed by the client.
    tr, c = await loop.create_connection(lambda: Client(loop, len(data)),
                                         *tcp.sockets[0].getsockname())
    tr.write(data)
    tr.writelines([b"", memoryview(b"")])
    assert await c.done == data
    tr.close()
    await c.lost
    # A BufferedProtocol both ends, over a Unix socket.
    tr, c = await loop.create_unix_connection(
        lambda: BufferedClient(loop, len(data)), unix_path)
    tr.write(bytearray(data))
    assert await c.done == data
    tr.write_eof()
    await c.lost
    # A stream pair.
    reader, writer = await asyncio.open_connection(
        *streams.sockets[0].getsockname())
    writer.write(data + b"\n")
    assert await reader.readline() == data + b"\n"
    writer.close()
    await writer.wait_closed()
    # Failures: the server's protocol raises; the peer resets; writes
    # after the connection is gone; an abort with data pending.
    tr, c = await loop.create_connection(lambda: Client(loop, 1),
                                         *tcp.sockets[0].getsockname())
    tr.write(b"raise")
    await c.lost
    for _ in range(6):
        tr.write(b"gone")
    tr, c = await loop.create_connection(lambda: Client(loop, 1),
                                         *tcp.sockets[0].getsockname())
    tr.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    tr.write(b"x" * 100000)
    tr.abort()
    await c.lost
    try:
        tr.write(b"abc")
    except Exception:
        pass


async def one_round(loop, servers, cycles):
    for i in range(cycles):
        await one_cycle(loop, servers, i)
    # The servers' side of the last connections is gone too.
    for _ in range(10000):
        if not server_side[0]:
            break
        await asyncio.sleep(0)
    else:
        raise AssertionError("%d server-side connections left"
                             % server_side[0])
    for _ in range(5):
        await asyncio.sleep(0)


async def start_servers(loop, unix_path):
    async def stream_echo(reader, writer):
        server_side[0] += 1
        try:
            line = await reader.readline()
            writer.write(line)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        finally:
            server_side[0] -= 1

    tcp = await loop.create_server(Echo, "127.0.0.1", 0)
    buffered = await loop.create_unix_server(BufferedEcho, unix_path)
    streams = await asyncio.start_server(stream_echo, "127.0.0.1", 0)
    return tcp, buffered, unix_path, streams


async def stop_servers(servers):
    tcp, buffered, _, streams = servers
    for s in (tcp, buffered, streams):
        s.close()
        await s.wait_closed()


def measure(cycles=100, rounds=5):
    logging.getLogger("asyncio").disabled = True
    loop = tornado_cgen.new_event_loop()
    handled = []
    loop.set_exception_handler(
        lambda loop, context: handled.append(type(context.get("exception"))))
    deltas = [0] * rounds
    tmp = tempfile.mkdtemp(prefix="tcg-refleak-")
    unix_path = os.path.join(tmp, "s")
    try:
        servers = loop.run_until_complete(start_servers(loop, unix_path))
        for r in range(rounds):
            handled.clear()
            gc.collect()
            before = _count()
            loop.run_until_complete(one_round(loop, servers, cycles))
            # (the exception handler saw each raise, and only those)
            assert handled == [ValueError] * cycles, handled[:5]
            handled.clear()
            gc.collect()
            deltas[r] = _count() - before
        loop.run_until_complete(stop_servers(servers))
    finally:
        loop.close()
        if os.path.exists(unix_path):
            os.unlink(unix_path)
        os.rmdir(tmp)
    return deltas


def main():
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    kind = "refs" if hasattr(sys, "gettotalrefcount") else "blocks"
    deltas = measure(cycles, rounds)
    print("tcg transport: %d cycles x %d rounds, %s growth per round: %s"
          % (cycles, rounds, kind, deltas))
    return 1 if max(deltas[1:]) > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
