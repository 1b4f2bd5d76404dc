"""The C socket transport against the stdlib's where a program can tell
them apart only by what the stdlib's Python code does step by step: which
file descriptor it uses, how long it keeps a buffer, what is being handled
while _fatal_error() runs, which attributes it reads.  Each test runs on
asyncio's loop and on ours with the same assertions.
"""
import asyncio
import inspect
import logging
import socket
import struct
import sys

import pytest

import tornado_cgen
from tornado_cgen import _core

LOOPS = {"asyncio": asyncio.new_event_loop, "tcg": tornado_cgen.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    """run(main) on a fresh loop of each kind: (result, handler calls), a
    handler call being (message, exception type, sys.exc_info()'s type)."""
    def run(main):
        loop = LOOPS[request.param]()
        calls = []

        def handler(loop, ctx):
            handled = sys.exc_info()[0]
            calls.append((ctx["message"], type(ctx.get("exception")).__name__,
                          handled.__name__ if handled else None))
        loop.set_exception_handler(handler)
        try:
            result = loop.run_until_complete(asyncio.wait_for(main(), 10))
            loop.run_until_complete(asyncio.sleep(0.01))
        finally:
            loop.close()
        return result, calls
    run.kind = request.param
    return run


class Recorder(asyncio.Protocol):
    def __init__(self):
        self.chunks = []
        self.events = []
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.chunks.append(bytes(data))

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__))
        if not self.lost.done():
            self.lost.set_result(None)


async def accepted(protocol):
    """(transport, protocol, peer socket) over a socketpair."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    b.setblocking(False)
    transport, proto = await loop.connect_accepted_socket(protocol, a)
    await asyncio.sleep(0)
    return transport, proto, b


async def until(predicate):
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("timed out")


def test_write_uses_the_sockets_own_fd(run):
    # The program closes the socket behind the transport's back and the
    # fd number is reused: the stdlib's sock.send() fails (EBADF), it
    # never writes to whatever now has that number.
    async def main():
        transport, proto, peer = await accepted(Recorder)
        sock = transport.get_extra_info("socket")
        fd = sock.fileno()
        transport._sock.close()
        c, d = socket.socketpair()
        try:
            transport.write(b"not for c")
            d.setblocking(False)
            try:
                leaked = d.recv(100)
            except BlockingIOError:
                leaked = b""
            reused = c.fileno() == fd
        finally:
            c.close()
            d.close()
            peer.close()
        await proto.lost
        return leaked, reused, proto.events

    (leaked, reused, events), calls = run(main)
    assert leaked == b""
    assert events == [("lost", "OSError")]
    assert calls == []


def test_read_uses_the_sockets_own_fd(run):
    # Closed in get_buffer() and the number reused by another socket: the
    # stdlib's recv_into() fails, it never reads the other socket.
    async def main():
        others = []

        class Buffered(asyncio.BufferedProtocol):
            def __init__(self):
                self.buf = bytearray(64)
                self.got = []
                self.lost = asyncio.get_running_loop().create_future()

            def connection_made(self, transport):
                self.transport = transport

            def get_buffer(self, hint):
                self.transport._sock.close()
                c, d = socket.socketpair()
                d.send(b"secret")
                others.extend((c, d))
                return self.buf

            def buffer_updated(self, n):
                self.got.append(bytes(self.buf[:n]))

            def connection_lost(self, exc):
                self.lost.set_result(type(exc).__name__)

        transport, proto, peer = await accepted(Buffered)
        peer.send(b"data")
        lost = await proto.lost
        for s in others + [peer]:
            s.close()
        return proto.got, lost

    (got, lost), calls = run(main)
    assert got == []
    assert lost == "OSError"
    assert calls == []


def test_buffer_kept_while_buffer_updated_runs(run):
    # The stdlib holds get_buffer()'s object until the read is done: a
    # bytearray exported through a fresh memoryview cannot be resized in
    # buffer_updated().
    async def main():
        class Buffered(asyncio.BufferedProtocol):
            def __init__(self):
                self.ba = bytearray(64)
                self.events = []
                self.lost = asyncio.get_running_loop().create_future()

            def connection_made(self, transport):
                self.transport = transport

            def get_buffer(self, hint):
                return memoryview(self.ba)

            def buffer_updated(self, n):
                self.events.append(n)
                self.ba.extend(b"!")

            def connection_lost(self, exc):
                self.events.append(type(exc).__name__)
                self.lost.set_result(None)

        transport, proto, peer = await accepted(Buffered)
        peer.send(b"12345")
        await proto.lost
        peer.close()
        return proto.events

    events, calls = run(main)
    assert events == [5, "BufferError"]
    assert calls == [("Fatal error: protocol.buffer_updated() call failed.",
                      "BufferError", "BufferError")]


def test_fatal_error_runs_with_the_exception_handled(run):
    # The stdlib calls _fatal_error() in its except clause: the exception
    # handler sees it in sys.exc_info().
    async def main():
        class Bad(Recorder):
            def data_received(self, data):
                raise ValueError("boom")

        transport, proto, peer = await accepted(Bad)
        peer.send(b"x")
        await proto.lost
        peer.close()
        return proto.events

    events, calls = run(main)
    assert events == [("lost", "ValueError")]
    assert calls == [("Fatal error: protocol.data_received() call failed.",
                      "ValueError", "ValueError")]


def test_debug_log_of_a_read_error_has_its_traceback(run):
    # Debug mode logs an OSError in _fatal_error() with exc_info=True.
    async def main():
        asyncio.get_running_loop().set_debug(True)
        got = []

        class Handler(logging.Handler):
            def emit(self, record):
                if "Fatal read error" in record.getMessage():
                    got.append(record.exc_info[0].__name__
                               if record.exc_info[0] else None)

        handler = Handler()
        logger = logging.getLogger("asyncio")
        old = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        try:
            transport, proto, peer = await accepted(Recorder)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
            peer.send(b"x")
            await until(lambda: proto.chunks)
            transport.write(b"y")      # unread by the peer: a reset
            peer.close()
            await proto.lost
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old)
        return got, proto.events

    (got, events), calls = run(main)
    if events == [("lost", "ConnectionResetError")]:
        assert got == ["ConnectionResetError"]
    else:    # the reset came as an EOF on this kernel
        assert events == ["eof", ("lost", "NoneType")]


def test_max_size_is_read_from_the_transport(run):
    async def main():
        transport, proto, peer = await accepted(Recorder)
        transport.max_size = 10
        peer.send(b"x" * 35)
        await until(lambda: sum(map(len, proto.chunks)) == 35)
        transport.close()
        peer.close()
        await proto.lost
        return [len(c) for c in proto.chunks]

    chunks, calls = run(main)
    assert chunks == [10, 10, 10, 5]
    assert calls == []


def test_write_data_changed_by_the_checks(run):
    # The stdlib reads `data` when it sends, after its checks (here a
    # queue whose truth test empties the caller's bytearray): it sends
    # what is there then.  (The C path read the buffer before the checks
    # and sent freed memory.)
    async def main():
        transport, proto, peer = await accepted(Recorder)
        payload = bytearray(b"p" * (1 << 20))
        queue_type = type(transport._buffer)

        class Emptying(queue_type):
            def __bool__(self):
                del payload[:]
                return False

        transport._buffer = Emptying()
        transport.write(payload)
        transport._buffer = queue_type()
        transport.write(b"end")
        got = bytearray()
        while not got.endswith(b"end"):
            await asyncio.sleep(0.001)
            try:
                got += peer.recv(1 << 20)
            except BlockingIOError:
                pass
        transport.close()
        peer.close()
        return bytes(got)

    got, calls = run(main)
    assert got == b"end"
    assert calls == []


def test_read_ready_cb_recursing_is_a_recursion_error(run):
    # `_read_ready_cb = _read_ready` recurses: the stdlib's RecursionError,
    # not a C stack overflow.
    async def main():
        transport, proto, peer = await accepted(Recorder)
        transport._read_ready_cb = transport._read_ready
        try:
            transport._read_ready()
        except RecursionError:
            result = "RecursionError"
        transport.close()
        peer.close()
        return result

    result, calls = run(main)
    assert result == "RecursionError"


def test_read_ready_handle_repr_as_the_stdlibs(run):
    # asyncio names a callback's source when it is a function (through
    # __wrapped__): the stdlib's bound _read_ready has none to show.
    from asyncio import format_helpers

    async def main():
        transport, proto, peer = await accepted(Recorder)
        text = format_helpers._format_callback_source(transport._read_ready,
                                                      ())
        sig = str(inspect.signature(transport.write))
        transport.close()
        peer.close()
        return text, sig

    (text, sig), calls = run(main)
    assert text == "_SelectorSocketTransport._read_ready()"
    assert sig == "(data)"


def test_unset_protocol_and_socket_read_by_name(run):
    # Attributes deleted from the transport: the stdlib meets an
    # AttributeError where it reads them (a subclass's __getattr__ sees
    # the lookup).
    async def main():
        transport, proto, peer = await accepted(Recorder)
        del transport._protocol
        peer.send(b"x")
        await asyncio.sleep(0.05)
        transport._protocol = proto
        transport.abort()
        peer.close()
        await proto.lost
        return proto.chunks

    chunks, calls = run(main)
    assert chunks == []
    assert [c[:2] for c in calls] == [
        ("Exception in callback _SelectorSocketTransport._read_ready()",
         "AttributeError")]


def test_c_paths_taken(run):
    # The tests above are about the C paths: they still run for the
    # common case.
    async def main():
        before = _core._stats()
        transport, proto, peer = await accepted(Recorder)
        transport.write(b"out")
        peer.send(b"in")
        await until(lambda: proto.chunks)
        transport.close()
        peer.close()
        after = _core._stats()
        return (after["transport_reads"] - before["transport_reads"],
                after["transport_writes"] - before["transport_writes"])

    (reads, writes), calls = run(main)
    if run.kind == "tcg":
        assert reads > 0 and writes > 0
    else:
        assert reads == writes == 0
