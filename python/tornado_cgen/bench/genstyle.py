"""``@gen.coroutine`` cases, written once for Tornado's API.

Two implementations speak this API: Tornado 6 itself (``tornado.gen`` on
``tornado.ioloop.IOLoop``) and tornado_cgen (``tornado_cgen.gen`` on
``tornado_cgen.ioloop.IOLoop``).  A :class:`Flavour` says which modules to
use and how to run a coroutine; the cases below take ``(flavour, n)`` and
return ``(elapsed_ns, ops)``, timed inside the running loop.

Cases 1-5 need only ``gen``; 6-9 use the IOLoop API (``add_callback``,
``call_later``, ``remove_timeout``, ``add_handler``); case 7 needs both.
"""
import abc

from .common import MSG_1K, NotAvailable, check, clock, socketpair


class Flavour(abc.ABC):
    """What a ``gen.coroutine`` implementation provides.

    ``gen`` and ``Future`` are the modules' objects; ``run(main)`` runs the
    coroutine function ``main`` to completion on a fresh loop and returns its
    result; ``new_ioloop()`` makes a fresh Tornado-style IOLoop (current) or
    raises :class:`NotAvailable`; ``scheduler()``, called inside a running
    coroutine, returns ``schedule(fn, *args)`` for "run on the next loop
    iteration"; ``variant`` describes the setup for the report.
    """

    name = "?"
    variant = ""

    @abc.abstractmethod
    def run(self, main):
        """Run the coroutine function ``main`` on a fresh loop; its result."""

    @abc.abstractmethod
    def new_ioloop(self):
        """A fresh IOLoop, made current (or raise NotAvailable)."""

    @abc.abstractmethod
    def scheduler(self):
        """``schedule(fn, *args)``: run on the next loop iteration."""

    @abc.abstractmethod
    def ioloop_class(self):
        """The IOLoop class (or raise NotAvailable)."""


def case_1(fl, n):
    gen, Future = fl.gen, fl.Future
    reps = max(1, n // 10)

    @gen.coroutine
    def main():
        f = Future()
        f.set_result(None)
        t0 = clock()
        for _ in range(reps):
            yield f; yield f; yield f; yield f; yield f  # noqa: E702
            yield f; yield f; yield f; yield f; yield f  # noqa: E702
        return clock() - t0, reps * 10

    return fl.run(main)


def case_2(fl, n):
    gen = fl.gen
    tops = max(10, n // 10 // 10 * 10)

    @gen.coroutine
    def chain(depth):
        if depth == 1:
            return 1
        result = yield chain(depth - 1)
        return result

    @gen.coroutine
    def main():
        moment = gen.moment
        t0 = clock()
        for _ in range(tops // 10):
            for _ in range(10):
                yield chain(10)
            yield moment
        return clock() - t0, tops * 10

    return fl.run(main)


def case_3(fl, n):
    gen, Future = fl.gen, fl.Future

    @gen.coroutine
    def main():
        schedule = fl.scheduler()
        t0 = clock()
        for _ in range(n):
            f = Future()
            schedule(f.set_result, None)
            yield f
        return clock() - t0, n

    return fl.run(main)


def case_4(fl, n):
    gen = fl.gen

    @gen.coroutine
    def main():
        moment = gen.moment
        t0 = clock()
        for _ in range(n):
            yield moment
        return clock() - t0, n

    return fl.run(main)


def _done_futures(Future, count):
    futures = []
    for i in range(count):
        f = Future()
        f.set_result(i)
        futures.append(f)
    return futures


def case_5(fl, n):
    gen, Future = fl.gen, fl.Future
    reps = max(1, n // 10)

    @gen.coroutine
    def main():
        futures = _done_futures(Future, 10)
        t0 = clock()
        for _ in range(reps):
            result = yield futures
        elapsed = clock() - t0
        check(result == list(range(10)), "list result")
        return elapsed, reps * 10

    return fl.run(main)


def case_5d(fl, n):
    gen, Future = fl.gen, fl.Future
    reps = max(1, n // 10)

    @gen.coroutine
    def main():
        futures = dict(zip("abcdefghij", _done_futures(Future, 10)))
        t0 = clock()
        for _ in range(reps):
            result = yield futures
        elapsed = clock() - t0
        check(result["j"] == 9, "dict result")
        return elapsed, reps * 10

    return fl.run(main)


def _run_loop(io, start):
    """Run ``io`` until a callback stops it; ``start`` is the first one."""
    try:
        io.add_callback(start)
        io.start()
    finally:
        io.close()


def case_6(fl, n):
    io = fl.new_ioloop()
    add_callback = io.add_callback
    left = n
    t = [0, 0]

    def step():
        nonlocal left
        left -= 1
        if left:
            add_callback(step)
        else:
            t[1] = clock()
            io.stop()

    def start():
        t[0] = clock()
        step()

    _run_loop(io, start)
    check(left == 0, "callback chain")
    return t[1] - t[0], n


def case_7(fl, n):
    gen = fl.gen
    batches = max(1, n // 100)
    calls = 0

    def cb():
        nonlocal calls
        calls += 1

    @gen.coroutine
    def main():
        add_callback, moment = fl.scheduler(), gen.moment
        t0 = clock()
        for _ in range(batches):
            for _ in range(100):
                add_callback(cb)
            yield moment
        return clock() - t0, batches * 100

    result = fl.run(main)
    check(calls == batches * 100, "callback batch count")
    return result


def case_8(fl, n):
    io = fl.new_ioloop()
    call_later, remove_timeout = io.call_later, io.remove_timeout
    add_callback = io.add_callback
    batches = max(1, n // 100)
    left = batches
    t = [0, 0]

    def never():
        raise AssertionError("a cancelled timer ran")

    def batch():
        nonlocal left
        handles = [call_later(1.0, never) for _ in range(100)]
        for h in handles:
            remove_timeout(h)
        left -= 1
        if left:
            add_callback(batch)
        else:
            t[1] = clock()
            io.stop()

    def start():
        t[0] = clock()
        batch()

    _run_loop(io, start)
    check(left == 0, "timer batches")
    return t[1] - t[0], batches * 100


def case_9(fl, n):
    io = fl.new_ioloop()
    READ = fl.ioloop_class().READ
    a, b = socketpair()
    left = n
    t = [0, 0]

    def on_b(fd, events):
        b.recv(1)
        b.send(b"x")

    def on_a(fd, events):
        nonlocal left
        a.recv(1)
        left -= 1
        if left:
            a.send(b"x")
        else:
            t[1] = clock()
            io.stop()

    def start():
        t[0] = clock()
        a.send(b"x")

    try:
        io.add_handler(b.fileno(), on_b, READ)
        io.add_handler(a.fileno(), on_a, READ)
        io.add_callback(start)
        io.start()
        io.remove_handler(a.fileno())
        io.remove_handler(b.fileno())
    finally:
        io.close()
        a.close()
        b.close()
    check(left == 0, "ping-pong round trips")
    return t[1] - t[0], n


def case_10_iostream(fl, n):
    """Case 10 with Tornado's IOStream (TCPServer/TCPClient) and coroutines."""
    try:
        from tornado.iostream import StreamClosedError
        from tornado.netutil import bind_sockets
        from tornado.tcpclient import TCPClient
        from tornado.tcpserver import TCPServer
    except ImportError as e:  # pragma: no cover
        raise NotAvailable("Tornado's IOStream is not importable: %s" % e)
    gen = fl.gen

    class Echo(TCPServer):
        @gen.coroutine
        def handle_stream(self, stream, address):
            stream.set_nodelay(True)
            try:
                while True:
                    data = yield stream.read_bytes(1024)
                    yield stream.write(data)
            except StreamClosedError:
                pass

    @gen.coroutine
    def main():
        sockets = bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        server = Echo()
        server.add_sockets(sockets)
        stream = yield TCPClient().connect("127.0.0.1", port)
        stream.set_nodelay(True)
        t0 = clock()
        for _ in range(n):
            yield stream.write(MSG_1K)
            data = yield stream.read_bytes(1024)
        elapsed = clock() - t0
        check(len(data) == 1024, "1 KiB echoed")
        stream.close()
        server.stop()
        yield gen.moment
        return elapsed, n

    return fl.run(main)


CASES = {
    "1": case_1, "2": case_2, "3": case_3, "4": case_4, "5": case_5,
    "5d": case_5d, "6": case_6, "7": case_7, "8": case_8, "9": case_9,
}
