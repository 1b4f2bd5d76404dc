"""The socket transport, asyncio's loop against ours: what a program sees.

Every scenario runs once on ``asyncio.new_event_loop()`` and once on
``tornado_cgen.new_event_loop()`` and writes a *record* of what it
observed: the protocol's callbacks with their arguments (received data is
kept as byte counts and contents, since how the kernel splits a stream
into reads is not the transport's to decide), the exceptions raised to the
caller (type and message), what reached the loop's exception handler (its
``message``, the exception's type, which of ``transport``/``protocol`` it
was given) and the ``asyncio`` logger's records.  The two records must be
equal, and each test also states the record it expects, so a scenario that
observed nothing on both loops fails.

Each scenario runs over the kinds of connection that apply: TCP on
loopback made by ``create_connection`` and by ``create_server``, a Unix
socket made by ``create_unix_connection`` and by ``create_unix_server``,
and an accepted TCP socket given to ``connect_accepted_socket``.  The
peer, unless said otherwise, is a plain non-blocking socket driven by the
loop's ``sock_*`` methods, so only the transport under test is a
transport.

Where the record depends on the Python version (the stdlib's transport
changed between 3.11 and 3.12), the expected record says so; the two loops
must agree on every version.
"""
import array
import asyncio
import logging
import os
import re
import shutil
import socket
import struct
import sys
import tempfile
from asyncio import selector_events

import pytest

import tornado_cgen
import tornado_cgen.loop

LOOPS = (("asyncio", asyncio.new_event_loop),
         ("tcg", tornado_cgen.new_event_loop))

KINDS = ("tcp", "tcp-server", "unix", "unix-server", "accepted")
TCP_KINDS = ("tcp", "tcp-server", "accepted")

PY312 = sys.version_info >= (3, 12)
MIB = 1 << 20


# -- the record ---------------------------------------------------------------

def _exc(exc):
    """An exception as the record keeps it: type name and message."""
    if exc is None:
        return None
    return (type(exc).__name__, str(exc))


def _norm(text):
    """A message with what differs from run to run taken out: addresses,
    fds, ports, and the transport's class name (asyncio's is
    ``_SelectorSocketTransport``; ours is another subclass of it)."""
    text = re.sub(r"0x[0-9a-fA-F]+", "0x?", text)
    text = re.sub(r"fd=-?\d+", "fd=?", text)
    text = re.sub(r"File descriptor \d+", "File descriptor ?", text)
    text = re.sub(r"(\('127\.0\.0\.1', )\d+\)", r"\1?)", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:?", text)
    text = re.sub(r"[^'\s]*tcg-tr-[^'\s]*", "PATH", text)
    text = re.sub(r"<\w+( closed| closing)? fd=", r"<Transport\1 fd=", text)
    # (reprlib's shortening of the same, in a handle's repr: its first
    # thirteen characters)
    text = re.sub(r"<[^<>()]{12}\.\.\.", "<Transport...", text)
    return text


class Record:
    """What one run of a scenario observed (``events``), and the types of
    the transports it made (kept apart: they differ on purpose)."""

    def __init__(self, loop):
        self.loop = loop
        self.events = []
        self.transport_types = []

    def add(self, *event):
        # Consecutive receipts are one event: the kernel decides the
        # chunks.
        if (event[0] == "data" and self.events and
                self.events[-1][0] == "data" and
                self.events[-1][1] == event[1]):
            self.events[-1] = ("data", event[1],
                               self.events[-1][2] + event[2])
            return
        self.events.append(event)

    def on_exception(self, loop, context):
        exc = context.get("exception")
        self.events.append((
            "handler", _norm(context["message"]),
            type(exc).__name__ if exc is not None else None,
            tuple(sorted(k for k in ("transport", "protocol")
                         if k in context))))

    def of(self, kind):
        return [e for e in self.events if e[0] == kind]


class _LogCapture(logging.Handler):
    def __init__(self, rec):
        super().__init__(logging.DEBUG)
        self.rec = rec

    def emit(self, record):
        self.rec.events.append(("log", record.levelname,
                                _norm(record.getMessage()),
                                type(record.exc_info[1]).__name__
                                if record.exc_info else None))


_PROTOCOL_EVENTS = ("connection_made", "data", "eof_received",
                    "connection_lost", "get_buffer", "pause_writing",
                    "resume_writing")


def by_connection(events):
    """The events of each connection apart, in their order (where two
    connections' events interleave is the loop's scheduling, which
    asyncio does not define)."""
    return sorted(events, key=lambda e: e[1] if e[0] in _PROTOCOL_EVENTS
                  else "")


def on_both(scenario, *args, timeout=30, each_connection=False,
            debug=False):
    """Run ``scenario(loop, rec, *args)`` on both loops; the record (its
    return value appended) when the two agree (`each_connection`: when
    each connection's events agree, see `by_connection`)."""
    records = {}
    logger = logging.getLogger("asyncio")
    for name, factory in LOOPS:
        loop = factory()
        rec = Record(loop)
        loop.set_exception_handler(rec.on_exception)
        if debug:
            loop.set_debug(True)
            # (what debug mode says of slow callbacks is about timing)
            loop.slow_callback_duration = 60
        capture = _LogCapture(rec)
        old_level, old_propagate = logger.level, logger.propagate
        logger.addHandler(capture)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        try:
            task = loop.create_task(
                asyncio.wait_for(scenario(loop, rec, *args), timeout))
            while True:
                # A KeyboardInterrupt or SystemExit out of a callback
                # leaves the loop; the scenario carries on when it runs
                # again.
                try:
                    result = loop.run_until_complete(task)
                    break
                except (KeyboardInterrupt, SystemExit) as e:
                    if task.done():
                        raise
                    rec.add("escaped the loop", type(e).__name__, str(e))
            # Callbacks the scenario scheduled last (connection_lost) run.
            for _ in range(3):
                loop.run_until_complete(asyncio.sleep(0))
        finally:
            logger.removeHandler(capture)
            logger.setLevel(old_level)
            logger.propagate = old_propagate
            loop.close()
        rec.events.append(("result", result))
        records[name] = rec
        # The transports are the loop's own: asyncio's class on asyncio's
        # loop, on ours a subclass of it that is not it.
        base = selector_events._SelectorSocketTransport
        for t in rec.transport_types:
            if name == "asyncio":
                assert t is base, t
            else:
                assert issubclass(t, base) and t is not base, t
    if each_connection:
        assert (by_connection(records["tcg"].events) ==
                by_connection(records["asyncio"].events))
        return by_connection(records["asyncio"].events)
    assert records["tcg"].events == records["asyncio"].events
    return records["asyncio"].events


# -- protocols that record ----------------------------------------------------

class RecProtocol(asyncio.Protocol):
    """A protocol writing its callbacks into the record.  ``raise_in``:
    names of callbacks that raise ``ValueError(name)``; ``keep_open``:
    what ``eof_received`` returns."""

    def __init__(self, rec, raise_in=(), keep_open=None, tag="p",
                 flow=False):
        self.rec, self.raise_in, self.keep_open, self.tag = (
            rec, set(raise_in), keep_open, tag)
        # Whether pause_writing/resume_writing go into the record (when
        # they come depends on the kernel's buffers, unless a test makes
        # them small).
        self.flow = flow
        loop = rec.loop
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.eof = loop.create_future()
        self.data = bytearray()
        self.chunks = []
        self.transport = None
        self.wanted = None
        self.got_wanted = loop.create_future()

    def _maybe_raise(self, name):
        if name in self.raise_in:
            raise ValueError(name)

    def connection_made(self, transport):
        self.transport = transport
        self.rec.transport_types.append(type(transport))
        self.rec.add("connection_made", self.tag)
        if not self.made.done():
            self.made.set_result(transport)
        self._maybe_raise("connection_made")

    def data_received(self, data):
        self.rec.add("data", self.tag, len(data))
        if type(data) is not bytes:
            self.rec.add("data type", type(data).__name__)
        if len(data) > selector_events._SelectorSocketTransport.max_size:
            self.rec.add("more than max_size in one call", len(data))
        # Kept as given: what the protocol was handed stays as it was.
        self.chunks.append(data)
        self.data += data
        self._check_wanted()
        self._maybe_raise("data_received")

    def _check_wanted(self):
        if (self.wanted is not None and len(self.data) >= self.wanted and
                not self.got_wanted.done()):
            self.got_wanted.set_result(None)

    def want(self, n):
        """A future done when `n` bytes have come in all."""
        self.wanted = n
        self.got_wanted = self.rec.loop.create_future()
        self._check_wanted()
        return self.got_wanted

    def eof_received(self):
        self.rec.add("eof_received", self.tag)
        if not self.eof.done():
            self.eof.set_result(None)
        self._maybe_raise("eof_received")
        return self.keep_open

    def pause_writing(self):
        if self.flow:
            self.rec.add("pause_writing", self.tag)
        self._maybe_raise("pause_writing")

    def resume_writing(self):
        if self.flow:
            self.rec.add("resume_writing", self.tag)
        self._maybe_raise("resume_writing")

    def connection_lost(self, exc):
        self.rec.add("connection_lost", self.tag, _exc(exc))
        if not self.lost.done():
            self.lost.set_result(exc)
        self._maybe_raise("connection_lost")


class RecBufferedProtocol(RecProtocol, asyncio.BufferedProtocol):
    """The same, receiving through ``get_buffer``/``buffer_updated`` into
    a buffer of ``size`` bytes (``size=0``: an empty one)."""

    def __init__(self, rec, size=7, buf=None, **kw):
        super().__init__(rec, **kw)
        self.buf = bytearray(size) if buf is None else buf
        self.hints = set()

    def get_buffer(self, sizehint):
        self.hints.add(sizehint)
        self.rec.add("get_buffer", self.tag)
        self._maybe_raise("get_buffer")
        return self.buf

    def buffer_updated(self, nbytes):
        self.rec.add("data", self.tag, nbytes)
        if not 0 < nbytes <= len(self.buf):
            self.rec.add("bad nbytes", nbytes)
        self.data += self.buf[:nbytes]
        self._check_wanted()
        self._maybe_raise("buffer_updated")

    def data_received(self, data):
        self.rec.add("data_received on a BufferedProtocol", len(data))


# -- connections --------------------------------------------------------------

class Pair:
    """A transport of one kind and its peer, a plain socket."""

    def __init__(self, transport, protocol, peer, closers):
        self.transport, self.protocol, self.peer = transport, protocol, peer
        self._closers = closers

    async def close(self):
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.peer.close()
        for c in self._closers:
            r = c()
            if asyncio.iscoroutine(r):
                await r
        # Let the transport's connection_lost run.
        for _ in range(3):
            await asyncio.sleep(0)


def _unix_path():
    d = tempfile.mkdtemp(prefix="tcg-tr-")
    return os.path.join(d, "s"), d


SMALL = 65536


async def open_pair(loop, kind, factory, small=False):
    """The transport (made by `factory()`'s protocol) of `kind` with a
    non-blocking plain socket as its peer.  `small`: the transport's send
    buffer and the peer's receive buffer are made small (64 KiB), so that
    what the kernel absorbs does not hide what a test wants buffered in
    the transport."""
    closers = []
    made = []

    def factory_kept():
        p = factory()
        made.append(p)
        return p

    def shrink(s, opt):
        if small:
            s.setsockopt(socket.SOL_SOCKET, opt, SMALL)

    def new_peer(family):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        shrink(s, socket.SO_RCVBUF)
        return s

    if kind in ("tcp", "unix", "accepted"):
        family = socket.AF_INET if kind != "unix" else socket.AF_UNIX
        lsock = socket.socket(family, socket.SOCK_STREAM)
        lsock.setblocking(False)
        if kind == "unix":
            path, d = _unix_path()
            lsock.bind(path)
            closers.append(lambda: shutil.rmtree(d, ignore_errors=True))
        else:
            lsock.bind(("127.0.0.1", 0))
        # (what is accepted inherits it)
        shrink(lsock, socket.SO_RCVBUF)
        lsock.listen(4)
        closers.insert(0, lsock.close)
        if kind == "accepted":
            client = new_peer(family)
            await loop.sock_connect(client, lsock.getsockname())
            accepted, _ = await loop.sock_accept(lsock)
            tr, proto = await loop.connect_accepted_socket(factory_kept,
                                                           accepted)
            peer = client
        else:
            accept = loop.create_task(loop.sock_accept(lsock))
            if kind == "unix":
                tr, proto = await loop.create_unix_connection(factory_kept,
                                                              path)
            else:
                tr, proto = await loop.create_connection(
                    factory_kept, *lsock.getsockname())
            peer, _ = await accept
            peer.setblocking(False)
    else:
        if kind == "unix-server":
            path, d = _unix_path()
            srv = await loop.create_unix_server(factory_kept, path)
            family, addr = socket.AF_UNIX, path
            closers.append(lambda: shutil.rmtree(d, ignore_errors=True))
        else:
            srv = await loop.create_server(factory_kept, "127.0.0.1", 0)
            family, addr = socket.AF_INET, srv.sockets[0].getsockname()

        async def close_server():
            srv.close()
            await srv.wait_closed()
        closers.insert(0, close_server)
        peer = new_peer(family)
        await loop.sock_connect(peer, addr)
        while not made:
            await asyncio.sleep(0)
        proto = made[0]
        tr = await proto.made
    await proto.made
    shrink(tr.get_extra_info("socket"), socket.SO_SNDBUF)
    # What the transport scheduled when it was made (its reader) has run.
    await settle(3)
    return Pair(tr, proto, peer, closers)


async def peer_read(loop, peer, n=None):
    """Read from the peer until `n` bytes came (None: until EOF)."""
    got = bytearray()
    while n is None or len(got) < n:
        chunk = await loop.sock_recv(peer, 1 << 18)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def reset(sock):
    """Close `sock` so that its peer sees a reset (RST)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


def _payload(n):
    base = bytes(range(251))
    return (base * (n // 251 + 1))[:n]


async def settle(n=20):
    """Let the loop go round `n` times (a chance for what must not happen
    to happen)."""
    for _ in range(n):
        await asyncio.sleep(0)


# -- echo, write's data types -------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [1, 1000, 65537, 3 * MIB + 5])
def test_echo_sizes(kind, size):
    data = _payload(size)

    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec))
        tr, proto = pair.transport, pair.protocol
        tr.write(data)
        got = await peer_read(loop, pair.peer, size)
        await loop.sock_sendall(pair.peer, got)
        await proto.want(size)
        pair.peer.shutdown(socket.SHUT_WR)
        await proto.lost
        await pair.close()
        return (got == data, bytes(proto.data) == data,
                b"".join(proto.chunks) == data)

    assert on_both(scenario) == [
        ("connection_made", "p"), ("data", "p", size), ("eof_received", "p"),
        ("connection_lost", "p", None), ("result", (True, True, True))]


def _write_arg(how, data):
    if how == "bytes":
        return data
    if how == "bytearray":
        return bytearray(data)
    if how == "memoryview":
        return memoryview(data)
    if how == "memoryview slice":
        return memoryview(b"xx" + data + b"yy")[2:-2]
    if how == "memoryview of a bytearray":
        return memoryview(bytearray(data))
    raise AssertionError(how)


@pytest.mark.parametrize("kind", ["tcp", "unix"])
@pytest.mark.parametrize("how", ["bytes", "bytearray", "memoryview",
                                 "memoryview slice",
                                 "memoryview of a bytearray"])
@pytest.mark.parametrize("size", [10, 2 * MIB])
def test_write_types(kind, how, size):
    data = _payload(size)

    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec))
        ret = pair.transport.write(_write_arg(how, data))
        got = await peer_read(loop, pair.peer, size)
        await pair.close()
        return ret, got == data

    assert on_both(scenario) == [
        ("connection_made", "p"), ("connection_lost", "p", None),
        ("result", (None, True))]


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_write_copies_data_it_keeps(kind):
    # A bytearray changed after write() returned: the peer gets what it
    # held at the call (the transport copies what it could not send).
    size = 2 * MIB

    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec),
                               small=True)
        buf = bytearray(_payload(size))
        pair.transport.write(buf)
        kept = pair.transport.get_write_buffer_size()
        buf[:] = b"\0" * size
        got = await peer_read(loop, pair.peer, size)
        await pair.close()
        return kept > 0, got == _payload(size)

    # 3.12 and later keep a view of the caller's object instead of a copy
    # (what the peer gets then is what the object holds when it is sent).
    assert on_both(scenario) == [
        ("connection_made", "p"), ("connection_lost", "p", None),
        ("result", (True, not PY312))]


@pytest.mark.parametrize("when", ["idle", "buffered"])
def test_write_odd_memoryviews(when):
    # A non-contiguous view and a 2-D one, written when nothing is
    # buffered (the first send is tried at once) and when something is.
    # The stdlib (3.11): on an idle transport the non-contiguous view
    # fails the socket's send() (a fatal write error, BufferError through
    # the exception handler, the connection lost); behind buffered data
    # the buffer refuses it (TypeError raised to the caller, the transport
    # unharmed).  The 2-D view is C-contiguous: its six bytes go out.
    big = 2 * MIB

    async def scenario(loop, rec):
        out = []
        for view in (memoryview(b"abcdef")[::2],
                     memoryview(bytearray(b"abcdef")).cast("B", (2, 3))):
            pair = await open_pair(loop, "tcp", lambda: RecProtocol(rec),
                                   small=True)
            tr = pair.transport
            sent = 0
            if when == "buffered":
                tr.write(_payload(big))
                sent = big
                assert tr.get_write_buffer_size() > 0
            try:
                tr.write(view)
                what = ["returned", tr.is_closing()]
            except Exception as e:
                what = ["raised", _exc(e), tr.is_closing()]
            if not tr.is_closing():
                tr.write_eof()
                got = await peer_read(loop, pair.peer)
                # (short: how much went out before a later failure is
                # the kernel's business)
                what += [len(got) - sent if len(got) >= sent else "short",
                         got[sent:], got[:sent] == _payload(sent)]
            out.append(what)
            await pair.close()
        return out

    rec = on_both(scenario)
    bad, two_d = rec[-1][1]
    assert two_d == ["returned", False, 6, b"abcdef", True]
    if when == "idle":
        assert bad == ["returned", True]
        assert rec[:3] == [
            ("connection_made", "p"),
            ("handler", "Fatal write error on socket transport",
             "BufferError", ("protocol", "transport")),
            ("connection_lost", "p",
             ("BufferError",
              "memoryview: underlying buffer is not C-contiguous"))]
    elif not PY312:
        assert bad == ["raised", ("TypeError", "can't set bytearray slice "
                                  "from memoryview"), False, 0, b"", True]
    else:
        # 3.12 and later take it into their buffer of views (and fail on
        # it when sending, differently from one patch release to another:
        # only the loops' agreement is asserted there).
        assert bad[:2] == ["returned", False]


@pytest.mark.parametrize("kind", ["tcp", "unix", "accepted"])
def test_empty_writes_and_writelines(kind):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec))
        tr = pair.transport
        out = []
        for empty in (b"", bytearray(), memoryview(b""),
                      memoryview(b"abc")[3:]):
            out.append(tr.write(empty))
        out.append(tr.get_write_buffer_size())
        out.append(tr.writelines([]))
        out.append(tr.writelines([b"a", bytearray(b"b"), memoryview(b"c"),
                                  b""]))
        out.append(tr.writelines(iter([b"d", b"e"])))
        out.append(tr.writelines(x for x in [b"f"]))
        tr.write_eof()
        out.append(await peer_read(loop, pair.peer))
        await pair.close()
        return out

    assert on_both(scenario) == [
        ("connection_made", "p"), ("connection_lost", "p", None),
        ("result", [None] * 4 + [0, None, None, None, None, b"abcdef"])]


BAD_DATA = ["text", None, 1, 1.5, array.array("b", b"ab"), [b"a"],
            (b"a",), {b"a"}]


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_write_bad_types(kind):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec))
        tr = pair.transport
        out = []
        for bad in BAD_DATA:
            try:
                tr.write(bad)
                out.append("no error")
            except Exception as e:
                out.append(_exc(e))
        for bad in (["text"], [b"a", 1], None, 5):
            try:
                tr.writelines(bad)
                out.append("no error")
            except Exception as e:
                out.append(_exc(e)[0])
        out.append(tr.is_closing())
        out.append(tr.get_write_buffer_size())
        tr.write(b"ok")
        tr.write_eof()
        out.append(await peer_read(loop, pair.peer))
        await pair.close()
        return out

    rec = on_both(scenario)
    result = rec[-1][1]
    assert result[:len(BAD_DATA)] == [
        ("TypeError", "data argument must be a bytes-like object, not %r"
         % type(b).__name__) for b in BAD_DATA]
    # writelines(): 3.12 and later take no data (None) as nothing to write.
    assert result[len(BAD_DATA):len(BAD_DATA) + 4] == [
        "TypeError", "TypeError", "no error" if PY312 else "TypeError",
        "TypeError"]
    # Nothing was written, the transport is as it was.
    assert result[-3:] == [False, 0, b"ok"]


@pytest.mark.parametrize("kind", ["tcp", "unix", "accepted"])
def test_write_after_write_eof(kind):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec))
        tr = pair.transport
        out = [tr.can_write_eof()]
        tr.write(b"before")
        tr.write_eof()
        tr.write_eof()          # again: nothing
        for data in (b"x", b"", bytearray(b"y")):
            try:
                tr.write(data)
                out.append("no error")
            except RuntimeError as e:
                out.append(_exc(e))
        try:
            tr.writelines([b"z"])
            out.append("no error")
        except RuntimeError as e:
            out.append(_exc(e))
        try:
            tr.write("text")
        except TypeError as e:      # the type is checked first
            out.append(_exc(e)[0])
        out.append(await peer_read(loop, pair.peer))
        out.append(tr.is_closing())
        # The other direction still works.
        await loop.sock_sendall(pair.peer, b"back")
        await pair.protocol.want(4)
        out.append(bytes(pair.protocol.data))
        await pair.close()
        return out

    eof = ("RuntimeError", "Cannot call write() after write_eof()")
    lines_eof = ("RuntimeError", "Cannot call writelines() after write_eof()"
                 if PY312 else "Cannot call write() after write_eof()")
    assert on_both(scenario) == [
        ("connection_made", "p"), ("data", "p", 4),
        ("connection_lost", "p", None),
        ("result", [True, eof, eof, eof, lines_eof, "TypeError", b"before",
                    False, b"back"])]


def _conn_lost_writes(tr, out, rec):
    """Write after the connection is gone: silent for the first four, then
    a warning each."""
    for i in range(7):
        before = len(rec.of("log"))
        tr.write(b"x")
        out.append(len(rec.of("log")) - before)
    tr.write(b"")           # not counted, not logged
    before = len(rec.of("log"))
    try:
        tr.writelines([b"y"])
        exc = None
    except Exception as e:
        exc = _exc(e)
    out.append(("writelines", len(rec.of("log")) - before, exc))


@pytest.mark.parametrize("kind", KINDS)
def test_write_after_close(kind):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec))
        tr = pair.transport
        tr.close()
        out = [tr.is_closing()]
        _conn_lost_writes(tr, out, rec)
        await pair.protocol.lost
        _conn_lost_writes(tr, out, rec)
        out.append(await peer_read(loop, pair.peer))
        await pair.close()
        return out

    warn = ("log", "WARNING", "socket.send() raised exception.", None)
    rec = on_both(scenario)
    result = rec[-1][1]
    # write(): four silent, then a warning each.
    assert result[:8] == [True, 0, 0, 0, 0, 1, 1, 1]
    assert result[9:16] == [1] * 7
    if not PY312:
        # writelines() is a write() of the joined data.
        assert rec == (
            [("connection_made", "p")] + [warn] * 4 +
            [("connection_lost", "p", None)] + [warn] * 8 +
            [("result", [True, 0, 0, 0, 0, 1, 1, 1, ("writelines", 1, None)]
              + [1] * 7 + [("writelines", 1, None), b""])])
    else:
        # writelines() is its own (3.12.1: after the connection is lost
        # it fails on the transport's cleared state).
        assert rec[:4] == [("connection_made", "p")] + [warn] * 3


@pytest.mark.parametrize("kind", TCP_KINDS)
def test_write_after_connection_lost_to_reset(kind):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec))
        reset(pair.peer)
        exc = await pair.protocol.lost
        out = [type(exc).__name__]
        _conn_lost_writes(pair.transport, out, rec)
        await pair.close()
        return out

    warn = ("log", "WARNING", "socket.send() raised exception.", None)
    rec = on_both(scenario)
    assert rec[:5] == (
        [("connection_made", "p"),
         ("connection_lost", "p",
          ("ConnectionResetError", "[Errno 104] Connection reset by peer"))]
        + [warn] * 3)
    assert rec[-1][1][:8] == ["ConnectionResetError", 0, 0, 0, 0, 1, 1, 1]
    if not PY312:
        assert rec[5:] == [warn, ("result", [
            "ConnectionResetError", 0, 0, 0, 0, 1, 1, 1,
            ("writelines", 1, None)])]


# -- peer reset ---------------------------------------------------------------

@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("kind", TCP_KINDS)
@pytest.mark.parametrize("reading", [True, False])
def test_peer_reset(kind, reading, debug):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec))
        tr = pair.transport
        if not reading:
            tr.pause_reading()
        await loop.sock_sendall(pair.peer, b"last words")
        if reading:
            await pair.protocol.want(10)
        reset(pair.peer)
        if not reading:
            await settle()
            out = [pair.protocol.lost.done()]
            tr.resume_reading()
        else:
            out = []
        exc = await pair.protocol.lost
        out += [type(exc).__name__, tr.is_closing(),
                tr.get_extra_info("socket") is not None]
        await pair.close()
        return out

    got = on_both(scenario, debug=debug)
    if debug:
        # Debug mode logs the read error (at debug level, the transport
        # named), and nothing else.
        log = ("log", "DEBUG", "<Transport fd=? read=polling "
               "write=<idle, bufsize=0>>: Fatal read error on socket "
               "transport", "ConnectionResetError")
        assert log in got
        # (and what it says of connections made)
        got = [e for e in got if e[:2] not in (("log", "DEBUG"),
                                               ("log", "INFO"))]
    if reading:
        assert got == [
            ("connection_made", "p"), ("data", "p", 10),
            ("connection_lost", "p",
             ("ConnectionResetError", "[Errno 104] Connection reset by peer")),
            ("result", ["ConnectionResetError", True, True])]
    else:
        # Unread data, then a reset: the data is read first (Linux).
        assert got == [
            ("connection_made", "p"), ("data", "p", 10),
            ("connection_lost", "p",
             ("ConnectionResetError", "[Errno 104] Connection reset by peer")),
            ("result", [False, "ConnectionResetError", True, True])]


@pytest.mark.parametrize("kind", TCP_KINDS)
def test_peer_reset_mid_write(kind):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec),
                               small=True)
        tr = pair.transport
        tr.write(_payload(4 * MIB))
        await loop.sock_recv(pair.peer, 1000)
        reset(pair.peer)
        exc = await pair.protocol.lost
        out = [isinstance(exc, ConnectionError), tr.is_closing(),
               tr.get_write_buffer_size()]
        tr.write(b"more")
        await pair.close()
        return out

    rec = on_both(scenario)
    assert [e[0] for e in rec] == ["connection_made", "connection_lost",
                                   "result"]
    assert rec[-1] == ("result", [True, True, 0])


# -- half-close ---------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("keep_open", [None, False, True])
def test_eof_received(kind, keep_open):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind,
                               lambda: RecProtocol(rec, keep_open=keep_open))
        tr, peer = pair.transport, pair.peer
        await loop.sock_sendall(peer, b"ping")
        peer.shutdown(socket.SHUT_WR)
        await pair.protocol.eof
        await settle()
        out = [tr.is_closing(), tr.is_reading(), pair.protocol.lost.done()]
        if keep_open:
            tr.write(b"still writing")
            tr.write_eof()
            out.append(await peer_read(loop, peer))
            await settle()
            out.append(pair.protocol.lost.done())
            tr.close()
        await pair.protocol.lost
        out.append(await peer_read(loop, peer))
        await pair.close()
        return out

    head = [("connection_made", "p"), ("data", "p", 4),
            ("eof_received", "p"), ("connection_lost", "p", None)]
    if keep_open:
        assert on_both(scenario) == head + [
            # (the reader is removed, but is_reading() says True)
            ("result", [False, True, False, b"still writing", False, b""])]
    else:
        assert on_both(scenario) == head + [
            ("result", [True, False, True, b""])]


@pytest.mark.parametrize("kind", KINDS)
def test_write_eof_flushes_first(kind):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec),
                               small=True)
        tr = pair.transport
        tr.write(_payload(MIB))
        pending = tr.get_write_buffer_size() > 0
        tr.write_eof()
        out = [pending, tr.can_write_eof(), tr.is_closing()]
        got = await peer_read(loop, pair.peer)
        out.append(got == _payload(MIB))
        await pair.close()
        return out

    assert on_both(scenario) == [
        ("connection_made", "p"), ("connection_lost", "p", None),
        ("result", [True, True, False, True])]


# -- protocol callbacks that raise --------------------------------------------

@pytest.mark.parametrize("kind", ["tcp", "unix", "accepted"])
@pytest.mark.parametrize("where", ["data_received", "eof_received",
                                   "connection_made", "connection_lost"])
def test_protocol_raises(kind, where):
    async def scenario(loop, rec):
        pair = await open_pair(
            loop, kind, lambda: RecProtocol(rec, raise_in=[where]))
        tr, peer = pair.transport, pair.peer
        await settle()
        await loop.sock_sendall(peer, b"data")
        if where != "data_received":
            await pair.protocol.want(4)
            peer.shutdown(socket.SHUT_WR)
        await pair.protocol.lost
        out = [tr.is_closing(), await peer_read(loop, peer)]
        tr.write(b"after")
        await pair.close()
        return out

    rec = on_both(scenario)
    fatal = "Fatal error: protocol.%s() call failed." % where
    if where == "data_received":
        assert rec == [
            ("connection_made", "p"), ("data", "p", 4),
            ("handler", fatal, "ValueError", ("protocol", "transport")),
            ("connection_lost", "p", ("ValueError", where)),
            ("result", [True, b""])]
    elif where == "eof_received":
        assert rec == [
            ("connection_made", "p"), ("data", "p", 4),
            ("eof_received", "p"),
            ("handler", fatal, "ValueError", ("protocol", "transport")),
            ("connection_lost", "p", ("ValueError", where)),
            ("result", [True, b""])]
    elif where == "connection_made":
        # Through the loop's handle: the connection carries on.
        assert rec[0] == ("connection_made", "p")
        assert rec[1][:3] == (
            "handler", "Exception in callback %s" % rec[1][1].split(
                "Exception in callback ", 1)[1], "ValueError")
        assert "connection_made" in rec[1][1]
        assert rec[2:] == [
            ("data", "p", 4), ("eof_received", "p"),
            ("connection_lost", "p", None), ("result", [True, b""])]
    else:
        assert rec[:4] == [
            ("connection_made", "p"), ("data", "p", 4),
            ("eof_received", "p"), ("connection_lost", "p", None)]
        assert rec[4][0] == "handler" and "connection_lost" in rec[4][1]
        assert rec[4][2] == "ValueError"
        assert rec[5:] == [("result", [True, b""])]


@pytest.mark.parametrize("kind", ["tcp", "unix", "accepted"])
@pytest.mark.parametrize("where", ["get_buffer", "buffer_updated",
                                   "empty buffer", "read-only buffer",
                                   "not a buffer"])
def test_buffered_protocol_raises(kind, where):
    async def scenario(loop, rec):
        if where == "empty buffer":
            def factory():
                return RecBufferedProtocol(rec, size=0)
        elif where == "read-only buffer":
            def factory():
                return RecBufferedProtocol(rec, buf=b"read-only")
        elif where == "not a buffer":
            def factory():
                return RecBufferedProtocol(rec, buf=object())
        else:
            def factory():
                return RecBufferedProtocol(rec, raise_in=[where])
        pair = await open_pair(loop, kind, factory)
        tr = pair.transport
        await loop.sock_sendall(pair.peer, b"data")
        await pair.protocol.lost
        out = [tr.is_closing(), bytes(pair.protocol.data)]
        await pair.close()
        return out

    rec = on_both(scenario)
    if where == "buffer_updated":
        assert rec == [
            ("connection_made", "p"), ("get_buffer", "p"), ("data", "p", 4),
            ("handler", "Fatal error: protocol.buffer_updated() call failed.",
             "ValueError", ("protocol", "transport")),
            ("connection_lost", "p", ("ValueError", "buffer_updated")),
            ("result", [True, b"data"])]
    elif where == "read-only buffer":
        # The socket refuses it: a read error, not the protocol's.
        assert rec[:3] == [
            ("connection_made", "p"), ("get_buffer", "p"),
            ("handler", "Fatal read error on socket transport",
             "TypeError", ("protocol", "transport"))]
        assert rec[3][:2] == ("connection_lost", "p")
        assert rec[3][2][0] == "TypeError" and "read-write" in rec[3][2][1]
        assert rec[4:] == [("result", [True, b""])]
    else:
        exc = {"get_buffer": ("ValueError", "get_buffer"),
               "empty buffer": ("RuntimeError",
                                "get_buffer() returned an empty buffer"),
               "not a buffer": ("TypeError",
                                "object of type 'object' has no len()")}[
            where]
        assert rec == [
            ("connection_made", "p"), ("get_buffer", "p"),
            ("handler", "Fatal error: protocol.get_buffer() call failed.",
             exc[0], ("protocol", "transport")),
            ("connection_lost", "p", exc),
            ("result", [True, b""])]


class Acting(RecProtocol):
    """Does `action` to its transport from inside its first
    ``data_received``."""

    def __init__(self, rec, action):
        super().__init__(rec)
        self.action = action

    def data_received(self, data):
        super().data_received(data)
        if self.action is not None:
            action, self.action = self.action, None
            if action != "echo":
                # (once per read the kernel decides on: not recorded)
                self.rec.add("acting", action)
            tr = self.transport
            if action == "echo":
                tr.write(data)
                self.action = "echo"
            elif action == "pause_reading":
                tr.pause_reading()
            elif action == "close":
                tr.close()
            elif action == "write, close":
                tr.write(data * 1000)
                tr.close()
            elif action == "abort":
                tr.abort()
            elif action == "write_eof":
                tr.write(b"bye")
                tr.write_eof()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", ["pause_reading", "close", "write, close",
                                    "abort", "write_eof"])
def test_transport_used_inside_data_received(kind, action):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: Acting(rec, action))
        tr, proto, peer = pair.transport, pair.protocol, pair.peer
        await loop.sock_sendall(peer, b"first")
        await proto.want(5)
        await settle()
        out = [tr.is_closing(), tr.is_reading(), proto.lost.done()]
        rec.add("peer sends more")
        try:
            await loop.sock_sendall(peer, b"second")
        except OSError:
            pass    # (a Unix socket's peer is told at once it is closed)
        await settle()
        if action != "write_eof":
            out.append(len(proto.data))
        if action == "pause_reading":
            tr.resume_reading()
            await proto.want(11)
            tr.close()
        if action == "write_eof":
            await proto.want(11)
            out.append(await peer_read(loop, peer))
            tr.close()
        await proto.lost
        if action in ("close", "write, close", "abort"):
            try:
                got = await peer_read(loop, peer)
            except ConnectionResetError:
                got = "reset"
            out.append(got if action != "write, close" else len(got))
        await pair.close()
        return out

    rec = on_both(scenario)
    head = [("connection_made", "p"), ("data", "p", 5),
            ("acting", action)]
    if action == "pause_reading":
        assert rec == head + [("peer sends more",), ("data", "p", 6),
                              ("connection_lost", "p", None),
                              ("result", [False, False, False, 5])]
    elif action == "write_eof":
        assert rec == head + [("peer sends more",), ("data", "p", 6),
                              ("connection_lost", "p", None),
                              ("result", [False, True, False, b"bye"])]
    else:
        # Closed from inside the callback: no more reads.  (The unread
        # "second" makes the kernel reset the connection: what the peer
        # reads then is the kernel's business, not compared.)
        assert rec[:5] == head + [("connection_lost", "p", None),
                                  ("peer sends more",)]
        result = rec[5][1]
        assert rec[5][0] == "result" and len(rec) == 6
        assert result[:4] == [True, False, True, 5]


@pytest.mark.parametrize("kind", KINDS)
def test_echo_from_data_received(kind):
    size = MIB

    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: Acting(rec, "echo"))
        sender = loop.create_task(loop.sock_sendall(pair.peer,
                                                    _payload(size)))
        got = await peer_read(loop, pair.peer, size)
        await sender
        pair.peer.shutdown(socket.SHUT_WR)
        await pair.protocol.lost
        await pair.close()
        return got == _payload(size)

    assert on_both(scenario) == [
        ("connection_made", "p"), ("data", "p", size), ("eof_received", "p"),
        ("connection_lost", "p", None), ("result", True)]


def test_default_exception_handler_logs():
    # No handler of the program's: the loop's default one logs the fatal
    # error, the protocol and the transport named.
    async def scenario(loop, rec):
        loop.set_exception_handler(None)
        pair = await open_pair(
            loop, "tcp", lambda: RecProtocol(rec, raise_in=["data_received"]))
        await loop.sock_sendall(pair.peer, b"data")
        await pair.protocol.lost
        await pair.close()
        return None

    assert on_both(scenario) == [
        ("connection_made", "p"), ("data", "p", 4),
        ("log", "ERROR", "Fatal error: protocol.data_received() call failed."
         "\nprotocol: <test_transport.RecProtocol object at 0x?>"
         "\ntransport: <Transport fd=? read=polling write=<idle, "
         "bufsize=0>>", "ValueError"),
        ("connection_lost", "p", ("ValueError", "data_received")),
        ("result", None)]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("where", ["data_received", "eof_received",
                                   "get_buffer", "buffer_updated"])
def test_base_exceptions_leave_the_loop(where, exc_type):
    # KeyboardInterrupt and SystemExit from a protocol's callback are not
    # the protocol's failure: they leave the loop, the transport stays as
    # it was, and the loop run again goes on reading (an EOF is seen
    # again).
    base = (RecBufferedProtocol if where in ("get_buffer", "buffer_updated")
            else RecProtocol)

    class Once(base):
        raised = False

        def _maybe_raise(self, name):
            if name == where and not self.raised:
                self.raised = True
                raise exc_type(name)

    async def scenario(loop, rec):
        pair = await open_pair(loop, "tcp", lambda: Once(rec))
        proto, tr = pair.protocol, pair.transport
        await loop.sock_sendall(pair.peer, b"data")
        if where == "eof_received":
            await proto.want(4)
            pair.peer.shutdown(socket.SHUT_WR)
            await proto.lost
        else:
            await proto.want(4)
            await settle()
            out = [tr.is_closing(), tr.is_reading()]
            await loop.sock_sendall(pair.peer, b"more")
            await proto.want(8)
            pair.peer.shutdown(socket.SHUT_WR)
            await proto.lost
        await pair.close()
        return bytes(proto.data) if where == "eof_received" else (
            out + [bytes(proto.data)])

    rec = on_both(scenario)
    escaped = ("escaped the loop", exc_type.__name__, where)
    if where == "eof_received":
        assert rec == [
            ("connection_made", "p"), ("data", "p", 4), ("eof_received", "p"),
            escaped, ("eof_received", "p"), ("connection_lost", "p", None),
            ("result", b"data")]
    elif where == "data_received":
        assert rec == [
            ("connection_made", "p"), ("data", "p", 4), escaped,
            ("data", "p", 4), ("eof_received", "p"),
            ("connection_lost", "p", None),
            ("result", [False, True, b"datamore"])]
    else:
        first = ([("get_buffer", "p"), escaped] if where == "get_buffer" else
                 [("get_buffer", "p"), ("data", "p", 4), escaped])
        got = rec[1:len(first) + 1]
        assert rec[0] == ("connection_made", "p") and got == first
        assert rec[-3:] == [("eof_received", "p"),
                            ("connection_lost", "p", None),
                            ("result", [False, True, b"datamore"])]
        assert sum(e[2] for e in rec if e[0] == "data") == 8


@pytest.mark.parametrize("where", ["pause_writing", "resume_writing"])
def test_flow_control_callbacks_raise(where):
    async def scenario(loop, rec):
        pair = await open_pair(
            loop, "tcp", lambda: RecProtocol(rec, raise_in=[where], flow=True),
            small=True)
        tr = pair.transport
        tr.set_write_buffer_limits(high=4096)
        tr.write(_payload(MIB))
        got = await peer_read(loop, pair.peer, MIB)
        await settle()
        out = [got == _payload(MIB), tr.is_closing(),
               tr.get_write_buffer_size()]
        await pair.close()
        return out

    msg = "protocol.%s() failed" % where
    assert on_both(scenario) == [
        ("connection_made", "p"), ("pause_writing", "p")] + (
        [("handler", msg, "ValueError", ("protocol", "transport"))]
        if where == "pause_writing" else []) + [
        ("resume_writing", "p")] + (
        [("handler", msg, "ValueError", ("protocol", "transport"))]
        if where == "resume_writing" else []) + [
        ("connection_lost", "p", None), ("result", [True, False, 0])]


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_max_size_bounds_each_read(kind):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec))
        tr, proto = pair.transport, pair.protocol
        tr.max_size = 5
        tr.pause_reading()
        await loop.sock_sendall(pair.peer, b"x" * 23)
        await settle()
        proto.chunks.clear()
        tr.resume_reading()
        await proto.want(23)
        sizes = [len(c) for c in proto.chunks]
        await pair.close()
        return sizes

    assert on_both(scenario)[-1] == ("result", [5, 5, 5, 5, 3])


# -- BufferedProtocol and set_protocol ----------------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [1, 7, 65536])
def test_buffered_protocol(kind, size):
    n = min(100000, 3000 * size)     # (one read per `size` bytes at most)

    async def scenario(loop, rec):
        pair = await open_pair(loop, kind,
                               lambda: RecBufferedProtocol(rec, size=size))
        proto = pair.protocol
        await loop.sock_sendall(pair.peer, _payload(n))
        await proto.want(n)
        pair.peer.shutdown(socket.SHUT_WR)
        await proto.lost
        out = [bytes(proto.data) == _payload(n), sorted(proto.hints)]
        await pair.close()
        return out

    rec = on_both(scenario)
    # get_buffer/data alternate; the record keeps their order.
    assert rec[0] == ("connection_made", "p")
    assert rec[-3:] == [("eof_received", "p"), ("connection_lost", "p", None),
                        ("result", [True, [-1]])]
    # (the last get_buffer is the one whose read found the EOF)
    middle = rec[1:-4]
    assert rec[-4] == ("get_buffer", "p")
    assert middle[0::2] == [("get_buffer", "p")] * (len(middle) // 2)
    assert sum(e[2] for e in middle[1::2]) == n
    assert all(e[:2] == ("data", "p") and e[2] <= size for e in middle[1::2])


@pytest.mark.parametrize("kind", ["tcp", "unix", "accepted"])
@pytest.mark.parametrize("where", ["between reads", "inside a callback"])
def test_set_protocol_switches_kind(kind, where):
    async def scenario(loop, rec):
        plain = RecProtocol(rec, tag="plain")
        buffered = RecBufferedProtocol(rec, size=64, tag="buffered")
        plain2 = RecProtocol(rec, tag="plain2")
        order = [buffered, plain2]
        pair = await open_pair(loop, kind, lambda: plain)
        tr = pair.transport
        out = [tr.get_protocol() is plain]
        if where == "inside a callback":
            orig = RecProtocol.data_received

            def switching(self, data):
                orig(self, data)
                tr.set_protocol(order.pop(0))
            plain.data_received = switching.__get__(plain)
            buffered.buffer_updated = (lambda n, b=buffered: (
                RecBufferedProtocol.buffer_updated(b, n),
                tr.set_protocol(order.pop(0))))
        for msg, now, nxt in ((b"one", plain, buffered),
                              (b"two", buffered, plain2),
                              (b"three", plain2, None)):
            await loop.sock_sendall(pair.peer, msg)
            await now.want(len(msg))
            if where == "between reads" and nxt is not None:
                tr.set_protocol(nxt)
            out.append(tr.get_protocol() is (nxt or plain2))
        pair.peer.shutdown(socket.SHUT_WR)
        await plain2.lost
        out += [bytes(plain.data), bytes(buffered.data), bytes(plain2.data),
                plain.lost.done(), buffered.lost.done()]
        await pair.close()
        return out

    assert on_both(scenario) == [
        ("connection_made", "plain"), ("data", "plain", 3),
        ("get_buffer", "buffered"), ("data", "buffered", 3),
        ("data", "plain2", 5), ("eof_received", "plain2"),
        ("connection_lost", "plain2", None),
        ("result", [True, True, True, True, b"one", b"two", b"three",
                    False, False])]


# -- reading paused, writing paused -------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_pause_resume_reading(kind):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec))
        tr, proto = pair.transport, pair.protocol
        out = [tr.is_reading()]
        tr.pause_reading()
        tr.pause_reading()          # again: nothing
        out.append(tr.is_reading())
        await loop.sock_sendall(pair.peer, b"held")
        await settle()
        out.append(len(proto.data))
        rec.add("resuming")
        tr.resume_reading()
        tr.resume_reading()         # again: nothing
        out.append(tr.is_reading())
        await proto.want(4)
        # Paused across the EOF: it waits too.
        tr.pause_reading()
        pair.peer.shutdown(socket.SHUT_WR)
        await settle()
        out.append(proto.eof.done())
        rec.add("resuming")
        tr.resume_reading()
        await proto.lost
        out.append(tr.is_reading())
        tr.pause_reading()          # closed: nothing
        tr.resume_reading()
        out.append(tr.is_reading())
        await pair.close()
        return out

    assert on_both(scenario) == [
        ("connection_made", "p"), ("resuming",), ("data", "p", 4),
        ("resuming",), ("eof_received", "p"), ("connection_lost", "p", None),
        ("result", [True, False, 0, True, False, False, False])]


@pytest.mark.parametrize("kind", KINDS)
def test_write_buffer_limits_and_pause_writing(kind):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec, flow=True),
                               small=True)
        tr = pair.transport
        out = [tr.get_write_buffer_limits()]
        tr.set_write_buffer_limits(high=100000)
        out.append(tr.get_write_buffer_limits())
        tr.set_write_buffer_limits(low=10)
        out.append(tr.get_write_buffer_limits())
        tr.set_write_buffer_limits(high=32768, low=8192)
        out.append(tr.get_write_buffer_limits())
        for bad in ((10, 20), (-1, None), (None, -5)):
            try:
                tr.set_write_buffer_limits(*bad)
                out.append("no error")
            except ValueError as e:
                out.append(_exc(e))
        out.append(tr.get_write_buffer_limits())
        tr.write(_payload(MIB))
        size = tr.get_write_buffer_size()
        out.append(size > 32768)
        rec.add("reading")
        got = await peer_read(loop, pair.peer, MIB)
        await settle()
        out += [got == _payload(MIB), tr.get_write_buffer_size()]
        # Limits lowered under what is buffered pause at once.
        tr.set_write_buffer_limits(high=0)
        out.append(tr.get_write_buffer_limits())
        tr.write(b"z" * 10)
        rec.add("wrote 10")
        await peer_read(loop, pair.peer, 10)
        await settle()
        await pair.close()
        return out

    assert on_both(scenario) == [
        ("connection_made", "p"), ("pause_writing", "p"), ("reading",),
        ("resume_writing", "p"), ("wrote 10",),
        ("connection_lost", "p", None),
        ("result", [
            (16384, 65536), (25000, 100000), (10, 40), (8192, 32768),
            ("ValueError", "high (10) must be >= low (20) must be >= 0"),
            ("ValueError", "high (-1) must be >= low (-1) must be >= 0"),
            ("ValueError", "high (-20) must be >= low (-5) must be >= 0"),
            (8192, 32768), True, True, 0, (0, 0)])]


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_writer_honouring_pause_stays_bounded(kind):
    # A writer whose peer never reads: it writes whenever it may, the
    # transport pauses it, and the buffer stays under the high-water mark
    # plus the one write that crossed it.
    chunk, high = 16384, 65536

    async def scenario(loop, rec):
        class Writer(RecProtocol):
            paused = False
            peak = 0

            def pause_writing(self):
                super().pause_writing()
                self.paused = True

            def resume_writing(self):
                super().resume_writing()
                self.paused = False

        pair = await open_pair(loop, kind, lambda: Writer(rec, flow=True),
                               small=True)
        tr, w = pair.transport, pair.protocol
        tr.set_write_buffer_limits(high=high)
        writes = 0
        for _ in range(400):
            if not w.paused:
                tr.write(b"w" * chunk)
                writes += 1
            w.peak = max(w.peak, tr.get_write_buffer_size())
            await asyncio.sleep(0)
        out = [w.paused, w.peak > high, w.peak <= high + chunk,
               writes < 400]
        tr.abort()
        await pair.close()
        return out

    rec = on_both(scenario)
    assert rec == [("connection_made", "p"), ("pause_writing", "p"),
                   ("connection_lost", "p", None),
                   ("result", [True, True, True, True])]


# -- close, abort, state ------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_close_flushes_pending_writes(kind):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec),
                               small=True)
        tr = pair.transport
        tr.write(_payload(2 * MIB))
        out = [tr.get_write_buffer_size() > 0]
        tr.close()
        tr.close()
        out += [tr.is_closing(), tr.is_reading()]
        await settle()
        out.append(pair.protocol.lost.done())
        rec.add("peer reads")
        got = await peer_read(loop, pair.peer)
        await pair.protocol.lost
        out += [got == _payload(2 * MIB), tr.get_write_buffer_size(),
                tr.get_extra_info("socket") is not None]
        await pair.close()
        return out

    assert on_both(scenario) == [
        ("connection_made", "p"), ("peer reads",),
        ("connection_lost", "p", None),
        ("result", [True, True, False, False, True, 0, True])]


@pytest.mark.parametrize("kind", KINDS)
def test_abort_drops_pending_writes(kind):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec),
                               small=True)
        tr = pair.transport
        tr.write(_payload(4 * MIB))
        tr.abort()
        out = [tr.is_closing(), tr.get_write_buffer_size()]
        await pair.protocol.lost
        try:
            got = await peer_read(loop, pair.peer)
        except ConnectionResetError:
            got = b""
        out.append(len(got) < 4 * MIB)
        tr.abort()
        tr.close()
        await pair.close()
        return out

    assert on_both(scenario) == [
        ("connection_made", "p"), ("connection_lost", "p", None),
        ("result", [True, 0, True])]


@pytest.mark.parametrize("kind", KINDS)
def test_extra_info_repr_protocol(kind):
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec),
                               small=True)
        tr, peer = pair.transport, pair.peer
        sock = tr.get_extra_info("socket")
        out = [type(sock).__module__ + "." + type(sock).__qualname__,
               sock.fileno() == tr._sock_fd,
               tr.get_extra_info("sockname") == sock.getsockname(),
               tr.get_extra_info("peername") == peer.getsockname() or
               tr.get_extra_info("peername") == sock.getpeername(),
               tr.get_extra_info("nonexistent"),
               tr.get_extra_info("nonexistent", "dflt"),
               tr.get_protocol() is pair.protocol,
               tr.is_closing(), tr.is_reading(),
               _norm(repr(tr))]
        tr.pause_reading()
        out.append(_norm(repr(tr)))
        tr.write(_payload(MIB))
        out.append(re.sub(r"bufsize=\d+", "bufsize=N", _norm(repr(tr))))
        tr.close()
        out.append(re.sub(r"bufsize=\d+", "bufsize=N", _norm(repr(tr))))
        await peer_read(loop, peer)
        await pair.protocol.lost
        out.append(_norm(repr(tr)))
        out.append(tr.get_extra_info("socket") is sock)
        await pair.close()
        return out

    rec = on_both(scenario)
    assert rec[-1][1] == [
        "asyncio.trsock.TransportSocket", True, True, True, None, "dflt",
        True, False, True,
        "<Transport fd=? read=polling write=<idle, bufsize=0>>",
        "<Transport fd=? read=idle write=<idle, bufsize=0>>",
        "<Transport fd=? read=idle write=<polling, bufsize=N>>",
        "<Transport closing fd=? read=idle write=<polling, bufsize=N>>",
        "<Transport closed fd=?>", True]


@pytest.mark.parametrize("kind", ["tcp", "unix", "accepted"])
def test_fd_in_use_by_transport(kind):
    # The loop knows the transport's fd is taken: its reader/writer and
    # sock_* methods refuse it while the transport lives, and allow it
    # after.
    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec))
        tr = pair.transport
        sock = tr.get_extra_info("socket")
        fd = sock.fileno()
        out = []
        for call in (lambda: loop.add_reader(fd, print),
                     lambda: loop.add_writer(fd, print),
                     lambda: loop.remove_reader(fd),
                     lambda: loop.remove_writer(fd)):
            try:
                call()
                out.append("no error")
            except RuntimeError as e:
                out.append(_norm(str(e)))
        raw = socket.socket(fileno=os.dup(fd))
        raw.setblocking(False)
        try:
            # (a dup: its own fd, not the transport's)
            out.append(loop.add_reader(raw.fileno(), print))
            out.append(loop.remove_reader(raw.fileno()))
        finally:
            raw.close()
        tr.close()
        await pair.protocol.lost
        await pair.close()
        return out

    in_use = ("File descriptor ? is used by transport <Transport fd=? "
              "read=polling write=<idle, bufsize=0>>")
    assert on_both(scenario) == [
        ("connection_made", "p"), ("connection_lost", "p", None),
        ("result", [in_use] * 4 + [None, True])]


def test_unclosed_transport_warns():
    # A transport left open when its loop closes warns when it goes.
    import gc
    import warnings
    seen = {}
    for name, factory in LOOPS:
        loop = factory()
        rec = Record(loop)
        pair = loop.run_until_complete(
            open_pair(loop, "tcp", lambda: RecProtocol(rec)))
        loop.close()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            # (the closed loop, the protocol and its futures go too)
            del loop, rec
            pair.transport = pair.protocol = None
            gc.collect()
        pair.peer.close()
        for c in pair._closers:
            r = c()
            if asyncio.iscoroutine(r):
                r.close()
        seen[name] = [(w.category.__name__, _norm(str(w.message)))
                      for w in caught if "transport" in str(w.message)]
    assert seen["tcg"] == seen["asyncio"] == [
        ("ResourceWarning", "unclosed transport <Transport fd=?>")]


# -- sendfile, start_tls ------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_sendfile(kind):
    size = 300000

    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec))
        tr = pair.transport
        out = []
        with tempfile.TemporaryFile() as f:
            f.write(_payload(size))
            f.flush()
            f.seek(0)
            tr.write(b"head")
            reader = loop.create_task(peer_read(loop, pair.peer, 4 + size +
                                                4 + 1000))
            sending = loop.create_task(loop.sendfile(tr, f))
            await asyncio.sleep(0)
            try:
                tr.write(b"during")
                out.append("no error")
            except RuntimeError as e:
                out.append(_exc(e))
            out.append(await sending)
            out.append(f.tell())
            tr.write(b"tail")
            out.append(await loop.sendfile(tr, f, offset=10, count=1000))
            got = await reader
        out.append(got == b"head" + _payload(size) + b"tail" +
                   _payload(size)[10:1010])
        await pair.close()
        return out

    assert on_both(scenario) == [
        ("connection_made", "p"), ("connection_lost", "p", None),
        ("result", [("RuntimeError", "unable to write; sendfile is in "
                     "progress"), size, size, 1000, True])]


def _tls_contexts():
    utils = pytest.importorskip(
        "test.test_asyncio.utils",
        reason="the interpreter's test package (its certificates) is not "
        "installed")
    import ssl
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(utils.ONLYCERT, utils.ONLYKEY)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    return server, client


@pytest.mark.parametrize("kind", KINDS)
def test_start_tls(kind):
    server_ctx, client_ctx = _tls_contexts()
    size = 200000

    async def scenario(loop, rec):
        pair = await open_pair(loop, kind, lambda: RecProtocol(rec))
        tr = pair.transport
        # The peer: a transport too, since TLS needs one on each side.
        ptr, pproto = await loop.connect_accepted_socket(
            lambda: RecProtocol(rec, tag="peer"), pair.peer)
        tr.write(b"plain")
        await pproto.want(5)
        tls_server = loop.create_task(loop.start_tls(
            ptr, pproto, server_ctx, server_side=True))
        tls = await loop.start_tls(tr, pair.protocol, client_ctx)
        ptls = await tls_server
        out = [tr.is_closing(), tls.get_extra_info("cipher") is not None,
               tls.get_extra_info("socket") is tr.get_extra_info("socket")]
        tls.write(_payload(size))
        await pproto.want(5 + size)
        ptls.write(b"back")
        await pair.protocol.want(4)
        out += [bytes(pproto.data) == b"plain" + _payload(size),
                bytes(pair.protocol.data)]
        tls.close()
        await pair.protocol.lost
        await pproto.lost
        await pair.close()
        return out

    # The transport under TLS is closing (start_tls took it over); data
    # both ways; close_notify seen as EOF on each side.
    assert on_both(scenario, each_connection=True) == [
        ("result", [False, True, True, True, b"back"]),
        ("connection_made", "p"), ("data", "p", 4), ("eof_received", "p"),
        ("connection_lost", "p", None),
        ("connection_made", "peer"), ("data", "peer", 5 + size)] + (
        # (3.10's TLS protocol does not pass close_notify on as an EOF)
        [("eof_received", "peer")] if sys.version_info >= (3, 11) else []) + [
        ("connection_lost", "peer", None)]


# -- streams ------------------------------------------------------------------

@pytest.mark.parametrize("unix", [False, True])
def test_streams_reads_at_eof(unix):
    async def scenario(loop, rec):
        done = loop.create_future()

        async def handle(reader, writer):
            writer.write(b"12345line one\nline two\npartial")
            await writer.drain()
            writer.write_eof()
            await done
            writer.close()
            await writer.wait_closed()

        if unix:
            path, d = _unix_path()
            srv = await asyncio.start_unix_server(handle, path)
            reader, writer = await asyncio.open_unix_connection(path)
        else:
            srv = await asyncio.start_server(handle, "127.0.0.1", 0)
            reader, writer = await asyncio.open_connection(
                *srv.sockets[0].getsockname())
        out = [await reader.readexactly(5), await reader.readline(),
               await reader.readuntil(b"\n"), await reader.readline(),
               await reader.readline(), await reader.read(-1),
               await reader.read(10), reader.at_eof()]
        try:
            await reader.readexactly(3)
        except asyncio.IncompleteReadError as e:
            out.append((type(e).__name__, e.partial, e.expected))
        done.set_result(None)
        writer.close()
        await writer.wait_closed()
        srv.close()
        await srv.wait_closed()
        if unix:
            shutil.rmtree(d, ignore_errors=True)
        return out

    assert on_both(scenario) == [
        ("result", [b"12345", b"line one\n", b"line two\n", b"partial", b"",
                    b"", b"", True, ("IncompleteReadError", b"", 3)])]


def test_streams_incomplete_and_drain_under_slow_reader():
    size = 2 * MIB

    async def scenario(loop, rec):
        start_reading = loop.create_future()
        got = loop.create_future()

        async def handle(reader, writer):
            writer.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            await start_reading
            data = await reader.readexactly(size)
            try:
                await reader.readexactly(10)
            except asyncio.IncompleteReadError as e:
                got.set_result((data == _payload(size), e.partial,
                                e.expected, str(e)))
            writer.close()
            await writer.wait_closed()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(
            *srv.sockets[0].getsockname())
        writer.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        writer.write(_payload(size))
        drain = loop.create_task(writer.drain())
        await settle()
        out = [drain.done(), writer.transport.get_write_buffer_size() > 0]
        start_reading.set_result(None)
        await drain
        writer.write(b"short")
        writer.write_eof()
        out.append(await got)
        out.append(await reader.read())
        writer.close()
        await writer.wait_closed()
        srv.close()
        await srv.wait_closed()
        return out

    assert on_both(scenario) == [
        ("result", [False, True,
                    (True, b"short", 10,
                     "5 bytes read on a total of 10 expected bytes"), b""])]
