"""Tornado internals on the HTTP request path that install() replaces.

``IOStream.set_nodelay`` (a plain socket's family read without the enum
lookup) and ``httputil.format_timestamp`` (the last second's string
remembered).  Each test runs on upstream Tornado and under ``install()``
(the ``mode`` fixture) with the same assertions: a program sees the same
results, errors and socket options.
"""
import calendar
import datetime
import email.utils
import math
import socket
import time

import pytest


# ---- httputil.format_timestamp ------------------------------------------------

def http_date(ts):
    """What Tornado documents: RFC 1123 in GMT, through email.utils."""
    return email.utils.formatdate(ts, usegmt=True)


STAMPS = [
    0, 0.0, 1, 1359312200, 1359312200.0, 1359312200.25, 1359312200.999998,
    # Within a microsecond of the next second: fromtimestamp rounds it up.
    1359312200.9999996, 1359312200.9999999, 1359312201.0,
    2 ** 31, 2 ** 31 + 0.5, 4102444800.5, 99999999999.5, 10 ** 11,
    10 ** 11 + 1, 253402300000, -1, -0.5, -86400.25,
]


@pytest.mark.parametrize("ts", STAMPS, ids=repr)
def test_format_timestamp_numbers(mode, ts):
    from tornado import httputil
    assert httputil.format_timestamp(ts) == http_date(ts)
    # Again (the second is remembered), and the neighbours after it.
    assert httputil.format_timestamp(ts) == http_date(ts)
    for other in (ts + 1, ts - 1, ts + 0.5):
        assert httputil.format_timestamp(other) == http_date(other)
        assert httputil.format_timestamp(ts) == http_date(ts)


def test_format_timestamp_other_types(mode):
    from tornado import httputil
    when = datetime.datetime(2013, 1, 27, 18, 43, 20)
    expected = "Sun, 27 Jan 2013 18:43:20 GMT"
    assert httputil.format_timestamp(1359312200) == expected
    assert httputil.format_timestamp(when) == expected
    assert httputil.format_timestamp(when.utctimetuple()) == expected
    assert httputil.format_timestamp(tuple(when.utctimetuple())) == expected
    assert httputil.format_timestamp(True) == http_date(1)
    assert httputil.format_timestamp(calendar.timegm(
        when.utctimetuple())) == expected
    with pytest.raises(TypeError, match="unknown timestamp type"):
        httputil.format_timestamp("1359312200")
    with pytest.raises(TypeError):
        httputil.format_timestamp(None)


@pytest.mark.parametrize("ts", [math.nan, math.inf, -math.inf, 1e20,
                                10 ** 20])
def test_format_timestamp_errors_are_tornados(mode, ts):
    from tornado import httputil
    with pytest.raises(Exception) as theirs:
        http_date(ts)
    with pytest.raises(type(theirs.value)) as ours:
        httputil.format_timestamp(ts)
    assert str(ours.value) == str(theirs.value)


def test_format_timestamp_follows_time(mode):
    from tornado import httputil
    now = time.time()
    for ts in (now, now + 0.3, now + 1.2, now + 3600, now):
        assert httputil.format_timestamp(ts) == http_date(ts)


def test_format_timestamp_honours_a_patched_formatdate(mode, monkeypatch):
    from tornado import httputil
    assert httputil.format_timestamp(1359312200.5).endswith(" GMT")
    calls = []

    def formatdate(timeval=None, localtime=False, usegmt=False):
        calls.append((timeval, usegmt))
        return "patched"

    monkeypatch.setattr(email.utils, "formatdate", formatdate)
    assert httputil.format_timestamp(1359312200.5) == "patched"
    assert calls == [(1359312200.5, True)]


def test_format_timestamp_introspects_as_tornados(mode):
    import inspect
    from tornado import httputil
    assert httputil.format_timestamp.__name__ == "format_timestamp"
    assert httputil.format_timestamp.__module__ == "tornado.httputil"
    assert "HTTP" in httputil.format_timestamp.__doc__
    assert list(inspect.signature(
        httputil.format_timestamp).parameters) == ["ts"]


# ---- IOStream.set_nodelay ---------------------------------------------------------

def tcp_pair():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return client, server


def nodelay(sock):
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_set_nodelay_on_tcp(mode):
    from tornado.iostream import IOStream
    client, server = tcp_pair()

    async def main():
        stream = IOStream(client)
        assert not nodelay(client)
        stream.set_nodelay(True)
        assert nodelay(client)
        stream.set_nodelay(False)
        assert not nodelay(client)
        stream.set_nodelay(1)
        assert nodelay(client)
        stream.set_nodelay(0)
        assert not nodelay(client)
        stream.close()
        # A closed stream has no socket: nothing happens.
        assert stream.socket is None
        stream.set_nodelay(True)

    import asyncio
    try:
        asyncio.run(main())
    finally:
        server.close()


class OddSocket(socket.socket):
    """A socket subclass: Tornado's own method runs for it."""
    families = []

    @property
    def family(self):
        fam = super().family
        self.families.append(fam)
        return fam


def test_set_nodelay_of_a_socket_subclass_reads_its_family(mode):
    from tornado.iostream import IOStream
    client, server = tcp_pair()
    odd = OddSocket(fileno=client.detach())

    async def main():
        stream = IOStream(odd)
        stream.set_nodelay(True)
        assert nodelay(odd)
        assert OddSocket.families == [socket.AF_INET]
        stream.close()

    import asyncio
    try:
        asyncio.run(main())
    finally:
        server.close()
        OddSocket.families.clear()


def test_set_nodelay_on_a_unix_socket_does_nothing(mode):
    from tornado.iostream import IOStream
    a, b = socket.socketpair()

    async def main():
        stream = IOStream(a)
        stream.set_nodelay(True)    # not TCP: no setsockopt, no error
        stream.close()

    import asyncio
    try:
        asyncio.run(main())
    finally:
        b.close()


def test_set_nodelay_errors(mode, monkeypatch):
    # EINVAL and a reset are swallowed (a socket closed at the wrong
    # time); anything else is raised.
    import errno
    from tornado.iostream import IOStream
    client, server = tcp_pair()
    raised = []

    def failing(self, *args):
        raise raised[-1]

    async def main():
        stream = IOStream(client)
        monkeypatch.setattr(socket.socket, "setsockopt", failing)
        for err in (errno.EINVAL, errno.ECONNRESET):
            raised.append(OSError(err, "x"))
            stream.set_nodelay(True)
        raised.append(OSError(errno.EBADF, "bad"))
        with pytest.raises(OSError) as e:
            stream.set_nodelay(True)
        assert e.value.errno == errno.EBADF
        monkeypatch.undo()
        stream.close()

    import asyncio
    try:
        asyncio.run(main())
    finally:
        server.close()


# ---- gen.convert_yielded of a native coroutine -----------------------------------

def test_convert_yielded_of_a_coroutine(mode):
    # web.RequestHandler's execute() converts the handler's _execute()
    # coroutine: a Task, in the current context, that the IOLoop holds
    # until it is done (Tornado 6.4+ keeps it in _pending_tasks).
    import asyncio
    import contextvars
    from tornado import gen
    from tornado.ioloop import IOLoop
    var = contextvars.ContextVar("var", default="outside")

    async def work(x):
        await asyncio.sleep(0)
        return x * 2, var.get()

    async def main():
        io_loop = IOLoop.current()
        var.set("caller")
        fut = gen.convert_yielded(work(21))
        assert isinstance(fut, asyncio.Task)
        pending = getattr(io_loop, "_pending_tasks", None)
        if pending is not None:
            assert fut in pending
        assert await fut == (42, "caller")
        await asyncio.sleep(0)
        if pending is not None:
            assert fut not in pending

    asyncio.run(main())
