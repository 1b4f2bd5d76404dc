"""The C paths of the loop's socket transport (ext/transport.c), each run
on asyncio's own loop and on ours with the same assertions: the record a
program can see must be the stdlib's.  The activity counters show which
runs went through the C code, so a test cannot pass by falling back.
"""
import asyncio
import gc
import logging
import socket
import subprocess
import sys
import textwrap

import pytest

import tornado_cgen
from tornado_cgen import _core
from tornado_cgen.loop import _SocketTransport

# The transports pair() made, aborted when the test's loop finishes.
OPEN = []

LOOPS = {"asyncio": asyncio.new_event_loop, "tcg": tornado_cgen.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request):
    """run(main) on a fresh loop of each kind; returns (result, errors,
    C reads, C writes), errors being what the loop's exception handler got:
    (message, exception type)."""
    def run(main, *args):
        loop = LOOPS[request.param]()
        errors = []
        loop.set_exception_handler(
            lambda loop, ctx: errors.append(
                (ctx["message"], type(ctx.get("exception")).__name__)))
        before = _core._stats()
        try:
            result = loop.run_until_complete(main(*args))
            loop.run_until_complete(asyncio.sleep(0.01))
        finally:
            # Whatever a test left open (or an exception left behind).
            while OPEN:
                OPEN.pop().abort()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()
        after = _core._stats()
        return (result, errors,
                after["transport_reads"] - before["transport_reads"],
                after["transport_writes"] - before["transport_writes"])
    run.kind = request.param
    return run


class Recorder(asyncio.Protocol):
    def __init__(self):
        self.events = []
        self.data = bytearray()
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        assert type(data) is bytes
        self.data += data

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__))
        self.lost.set_result(None)


async def pair(server_protocol, client_protocol=Recorder):
    """A connected (server protocol, client transport, client protocol)."""
    loop = asyncio.get_running_loop()
    made = loop.create_future()

    def factory():
        p = server_protocol()
        made.set_result(p)
        return p

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, client = await loop.create_connection(
        client_protocol, "127.0.0.1", port)
    proto = await made
    server.close()
    OPEN.extend((transport, proto.transport))
    return proto, transport, client


class Records(logging.Handler):
    """The asyncio logger's records while the block runs (a handler of the
    test's own: repeated runs keep nothing)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger("asyncio")
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def __enter__(self):
        self.logger.addHandler(self)
        return self.records

    def __exit__(self, *exc):
        self.logger.removeHandler(self)


def counts_ok(run, reads, writes):
    """C reads/writes happened on our loop, none on asyncio's."""
    if run.kind == "tcg":
        return reads > 0 and writes > 0
    return reads == 0 and writes == 0


def test_transport_is_the_stdlibs_class():
    from asyncio import selector_events
    assert issubclass(_SocketTransport,
                      selector_events._SelectorSocketTransport)
    for name in ("write", "_read_ready", "_read_ready__data_received",
                 "_read_ready__get_buffer"):
        method = _SocketTransport.__dict__[name]
        stdlib = getattr(selector_events._SelectorSocketTransport, name)
        assert type(method) is _core.TransportMethod
        assert method.fallback is stdlib
        assert method.__name__ == stdlib.__name__
        assert method.__qualname__ == stdlib.__qualname__
        assert method.__doc__ == stdlib.__doc__


def test_echo_sizes_and_types(run):
    async def main():
        class Echo(Recorder):
            def data_received(self, data):
                super().data_received(data)
                self.transport.write(data)

        server, transport, client = await pair(Echo)
        sent = bytearray()
        for i, size in enumerate((1, 100, 1024, 65536, 1 << 20, 3 << 20)):
            chunk = bytes([i + 1]) * size
            kind = (bytes, bytearray, memoryview)[i % 3]
            transport.write(kind(chunk))
            sent += chunk
        transport.write(b"")
        while len(client.data) < len(sent):
            await asyncio.sleep(0.001)
        transport.close()
        await client.lost
        return bytes(client.data) == bytes(sent), client.events

    (same, events), errors, reads, writes = run(main)
    assert same
    assert events == [("lost", "NoneType")]
    assert errors == []
    assert counts_ok(run, reads, writes)


def test_partly_sent_bytearray(run):
    # A send that takes part of a bytearray queues the rest as the
    # stdlib's code does: a copy before 3.12; from 3.12 a view, which keeps
    # the caller's bytearray from being resized until it is sent.
    async def main():
        server, transport, client = await pair(Recorder)
        payload = bytearray(b"a" * (8 << 20))
        transport.write(payload)
        queued = transport.get_write_buffer_size()
        try:
            payload[:] = b"b" * 10       # the caller reuses its buffer
            resized = True
        except BufferError:
            resized = False
        while len(server.data) < (8 << 20):
            await asyncio.sleep(0.001)
        transport.close()
        return queued > 0, resized, bytes(server.data) == b"a" * (8 << 20)

    (queued, resized, intact), errors, _, _ = run(main)
    assert queued and intact
    assert resized == (sys.version_info < (3, 12))
    assert errors == []


def test_write_type_errors_and_eof(run):
    async def main():
        server, transport, client = await pair(Recorder)
        out = []
        for bad in ("text", 1, None):
            try:
                transport.write(bad)
            except TypeError as e:
                out.append(str(e))
        transport.write_eof()
        try:
            transport.write(b"x")
        except RuntimeError as e:
            out.append(str(e))
        transport.close()
        return out

    out, errors, _, _ = run(main)
    assert out == [
        "data argument must be a bytes-like object, not 'str'",
        "data argument must be a bytes-like object, not 'int'",
        "data argument must be a bytes-like object, not 'NoneType'",
        "Cannot call write() after write_eof()",
    ]
    assert errors == []


def test_write_after_connection_lost_warns_as_the_stdlib(run):
    async def main():
        server, transport, client = await pair(Recorder)
        server.transport.abort()
        await client.lost
        for _ in range(7):
            transport.write(b"x")
        return client.events

    with Records() as records:
        events, errors, _, _ = run(main)
    assert events in ([("lost", "ConnectionResetError")],
                      ["eof", ("lost", "NoneType")])
    warnings = [r for r in records
                if r.getMessage() == "socket.send() raised exception."]
    assert len(warnings) == 3    # writes 5, 6 and 7 after the loss
    assert errors == []


def test_data_received_raising_is_a_fatal_error(run):
    async def main():
        class Bad(Recorder):
            def data_received(self, data):
                raise ValueError("boom")

        server, transport, client = await pair(Bad)
        transport.write(b"x")
        await server.lost
        return server.events, server.transport.is_closing()

    (events, closing), errors, _, _ = run(main)
    assert events == [("lost", "ValueError")]
    assert closing
    assert errors == [("Fatal error: protocol.data_received() call failed.",
                       "ValueError")]


def test_keyboard_interrupt_in_data_received_propagates(run):
    async def main():
        class Bad(Recorder):
            def data_received(self, data):
                raise KeyboardInterrupt

        server, transport, client = await pair(Bad)
        transport.write(b"x")
        await asyncio.sleep(1)

    with pytest.raises(KeyboardInterrupt):
        run(main)


def test_set_protocol_inside_data_received(run):
    # data_received switches to a BufferedProtocol: the next read goes to
    # its buffer, on both loops.
    async def main():
        class Buffered(asyncio.BufferedProtocol):
            def __init__(self):
                self.buf = bytearray(16)
                self.got = bytearray()
                self.done = asyncio.get_running_loop().create_future()

            def get_buffer(self, hint):
                return self.buf

            def buffer_updated(self, n):
                self.got += self.buf[:n]
                if len(self.got) >= 40:
                    self.done.set_result(bytes(self.got))

            def connection_lost(self, exc):
                pass

        buffered = Buffered()

        class Switch(Recorder):
            def data_received(self, data):
                super().data_received(data)
                self.transport.set_protocol(buffered)

        server, transport, client = await pair(Switch)
        transport.write(b"first")
        while not server.data:
            await asyncio.sleep(0.001)
        transport.write(b"z" * 40)
        got = await buffered.done
        transport.close()
        return bytes(server.data), got

    (first, got), errors, _, _ = run(main)
    assert first == b"first"
    assert got == b"z" * 40
    assert errors == []


@pytest.mark.parametrize("buffer_kind", ["empty", "readonly", "strided",
                                         "raises"])
def test_bad_get_buffer(run, buffer_kind):
    async def main():
        class Buffered(asyncio.BufferedProtocol):
            def __init__(self):
                self.lost = asyncio.get_running_loop().create_future()

            def connection_made(self, transport):
                self.transport = transport

            def get_buffer(self, hint):
                if buffer_kind == "empty":
                    return bytearray()
                if buffer_kind == "readonly":
                    return b"12345678"
                if buffer_kind == "strided":
                    return memoryview(bytearray(16))[::2]
                raise LookupError("no buffer")

            def buffer_updated(self, n):
                pass

            def connection_lost(self, exc):
                self.lost.set_result(type(exc).__name__)

        server, transport, client = await pair(Buffered)
        transport.write(b"data")
        lost = await server.lost
        transport.close()
        return lost

    lost, errors, _, _ = run(main)
    expected = {
        "empty": ("Fatal error: protocol.get_buffer() call failed.",
                  "RuntimeError"),
        "readonly": ("Fatal read error on socket transport", "TypeError"),
        "strided": ("Fatal read error on socket transport", "TypeError"),
        "raises": ("Fatal error: protocol.get_buffer() call failed.",
                   "LookupError"),
    }[buffer_kind]
    assert errors == [expected]
    assert lost == expected[1]


def test_buffer_updated_raising(run):
    async def main():
        class Buffered(asyncio.BufferedProtocol):
            def __init__(self):
                self.buf = bytearray(64)
                self.lost = asyncio.get_running_loop().create_future()

            def connection_made(self, transport):
                self.transport = transport

            def get_buffer(self, hint):
                return self.buf

            def buffer_updated(self, n):
                raise ArithmeticError(n)

            def connection_lost(self, exc):
                self.lost.set_result(type(exc).__name__)

        server, transport, client = await pair(Buffered)
        transport.write(b"data")
        lost = await server.lost
        transport.close()
        return lost

    lost, errors, reads, _ = run(main)
    assert lost == "ArithmeticError"
    assert errors == [("Fatal error: protocol.buffer_updated() call failed.",
                       "ArithmeticError")]
    assert (reads > 0) == (run.kind == "tcg")


class _Sock(socket.socket):
    """A socket subclass: the C paths leave it to the stdlib's code."""
    sends = 0

    def send(self, data, *args):
        _Sock.sends += 1
        return super().send(data, *args)


def test_socket_subclass_takes_the_stdlibs_path(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        sa = _Sock(a.family, a.type, fileno=a.detach())
        sa.setblocking(False)
        _Sock.sends = 0
        transport, proto = await loop.connect_accepted_socket(Recorder, sa)
        transport.write(b"hello")
        b.setblocking(False)
        while True:
            try:
                got = b.recv(10)
                break
            except BlockingIOError:
                await asyncio.sleep(0.001)
        b.send(b"back")
        while not proto.data:
            await asyncio.sleep(0.001)
        transport.close()
        b.close()
        return got, bytes(proto.data), _Sock.sends

    (got, back, sends), errors, reads, writes = run(main)
    assert (got, back, sends) == (b"hello", b"back", 1)
    assert (reads, writes) == (0, 0)
    assert errors == []


def test_transport_attributes_still_read_by_name(run):
    async def main():
        server, transport, client = await pair(Recorder)
        names = ("_sock", "_sock_fd", "_protocol", "_conn_lost", "_eof",
                 "_empty_waiter", "_buffer", "_read_ready_cb")
        values = {n: getattr(transport, n) for n in names}
        transport.close()
        await client.lost
        return (type(values["_sock"]) is socket.socket,
                values["_sock_fd"] == values["_sock"].fileno()
                if values["_sock"].fileno() != -1 else True,
                values["_protocol"] is client, values["_conn_lost"],
                values["_eof"], values["_empty_waiter"],
                len(values["_buffer"]), transport._sock)

    result, errors, _, _ = run(main)
    assert result == (True, True, True, 0, False, None, 0, None)


def test_exit_with_transports_open():
    code = textwrap.dedent("""
        import asyncio, gc, tornado_cgen

        class P(asyncio.Protocol):
            def connection_made(self, t):
                self.t = t
                self.me = self          # a cycle through the protocol

        async def main():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(P, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            t, p = await loop.create_connection(P, "127.0.0.1", port)
            t.write(b"x" * 100000)
            await asyncio.sleep(0.01)
            loop.keep = (server, t, p)

        loop = tornado_cgen.new_event_loop()
        loop.run_until_complete(main())
        # Exit with the loop unclosed and the transports open.
    """)
    r = subprocess.run([sys.executable, "-W", "ignore::ResourceWarning", "-c",
                        code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    gc.collect()


def test_every_stream_api_makes_the_c_transport(run, tmp_path):
    # create_server/create_connection, the Unix pair, connect_accepted_socket
    # and streams all get the same transport class, and its C paths.
    async def main():
        loop = asyncio.get_running_loop()
        kinds = []

        class Echo(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                kinds.append(type(transport).__name__)

            def data_received(self, data):
                self.transport.write(data)

        path = str(tmp_path / "s")
        userver = await loop.create_unix_server(Echo, path)
        r, w = await asyncio.open_unix_connection(path)
        kinds.append(type(w.transport).__name__)
        w.write(b"unix")
        got = [await r.readexactly(4)]
        w.close()
        await w.wait_closed()
        userver.close()

        a, b = socket.socketpair()
        t, p = await loop.connect_accepted_socket(Echo, a)
        r2, w2 = await asyncio.open_connection(sock=b)
        kinds.append(type(w2.transport).__name__)
        w2.write(b"pair")
        got.append(await r2.readexactly(4))
        w2.close()
        await w2.wait_closed()
        t.close()
        await asyncio.sleep(0.01)
        return kinds, got

    (kinds, got), errors, reads, writes = run(main)
    assert got == [b"unix", b"pair"]
    expected = ("_SocketTransport" if run.kind == "tcg"
                else "_SelectorSocketTransport")
    assert kinds == [expected] * 4
    assert counts_ok(run, reads, writes)
    assert errors == []


def test_max_size_set_and_deleted(run):
    # max_size reads as the stdlib's: the class value, one set on the
    # transport, and one set on the stdlib's class.
    from asyncio import selector_events

    async def main():
        server, transport, client = await pair(Recorder)
        st = server.transport
        st.max_size = 5
        st.pause_reading()
        transport.write(b"x" * 23)
        await asyncio.sleep(0.02)
        st.resume_reading()
        while len(server.data) < 23:
            await asyncio.sleep(0.001)
        del st.max_size
        default = st.max_size
        saved = selector_events._SelectorTransport.max_size
        selector_events._SelectorTransport.max_size = 7
        try:
            server.data.clear()
            st.pause_reading()
            transport.write(b"y" * 15)
            await asyncio.sleep(0.02)
            st.resume_reading()
            while len(server.data) < 15:
                await asyncio.sleep(0.001)
            class_level = st.max_size
        finally:
            selector_events._SelectorTransport.max_size = saved
        transport.close()
        return default, class_level

    (default, class_level), errors, _, _ = run(main)
    assert (default, class_level) == (256 * 1024, 7)
    assert errors == []


def test_max_size_chunks(run):
    # recv(self.max_size) on every read.
    async def main():
        chunks = []

        class Rec(Recorder):
            def data_received(self, data):
                chunks.append(len(data))
                super().data_received(data)

        server, transport, client = await pair(Rec)
        server.transport.max_size = 5
        server.transport.pause_reading()
        transport.write(b"x" * 23)
        await asyncio.sleep(0.02)
        server.transport.resume_reading()
        while len(server.data) < 23:
            await asyncio.sleep(0.001)
        transport.close()
        return chunks

    chunks, errors, _, _ = run(main)
    assert chunks == [5, 5, 5, 5, 3]


def test_socket_class_patched_after_use(run):
    # A method set on socket.socket while transports run is honoured from
    # the next call on, and the C path comes back once it is gone.
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        transport, proto = await loop.connect_accepted_socket(Recorder, a)
        calls = []
        transport.write(b"1")
        original = socket.socket.send

        def send(self, data, *args):
            calls.append(bytes(data))
            return original(self, data, *args)

        socket.socket.send = send
        try:
            transport.write(b"22")
        finally:
            del socket.socket.send
        transport.write(b"333")
        b.setblocking(False)
        got = b""
        while len(got) < 6:
            await asyncio.sleep(0.001)
            try:
                got += b.recv(100)
            except BlockingIOError:
                pass
        transport.close()
        b.close()
        return got, calls

    (got, calls), errors, reads, writes = run(main)
    assert (got, calls) == (b"122333", [b"22"])
    assert writes == (2 if run.kind == "tcg" else 0)
    assert errors == []
