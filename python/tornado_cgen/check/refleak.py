"""The ``refleak`` section: reference growth per cycle, on a debug
interpreter (``sys.gettotalrefcount``), for each workload by name.

Each workload runs at two sizes after a warm-up; the growth per cycle is
the difference of the two growths over the difference of the sizes, so
that what a run costs once (caches, first-time imports) cancels out.  A
leak of one reference per cycle shows as 1.0; the figure must be exactly
0.  A workload is measured up to three times and the smallest growth is
kept: a leak grows every time, a cache that happens to resize does not.

Then the per-test leak check over the C-facing test suite (in the manner
of CPython's ``regrtest -R``), when the source checkout is there.
"""
import asyncio
import gc
import os
import socket
import subprocess
import sys

from ._report import count, section_main


def _refs():
    return sys.gettotalrefcount()


# -- the workloads: each makes `one(io)`, a coroutine function for one cycle --

def workloads():
    from tornado_cgen import gen
    from tornado_cgen.concurrent import Future
    from tornado_cgen.ioloop import IOLoop

    @gen.coroutine
    def leaf(i):
        return i

    @gen.coroutine
    def leaf_moment(i):
        yield gen.moment
        return i

    @gen.coroutine
    def raiser(i):
        yield gen.moment
        raise ValueError(i)

    @gen.coroutine
    def returner(i):
        yield gen.moment
        raise gen.Return(i)

    @gen.coroutine
    def done_future(io):
        f = Future()
        f.set_result(1)
        v = yield f
        assert v == 1

    @gen.coroutine
    def sub_coroutine(io):
        assert (yield leaf(2)) == 2

    @gen.coroutine
    def moment(io):
        yield gen.moment

    @gen.coroutine
    def list_multi(io):
        assert (yield [leaf(1), leaf_moment(2), leaf(3)]) == [1, 2, 3]

    @gen.coroutine
    def dict_multi(io):
        d = yield {"a": leaf(1), "b": leaf_moment(2)}
        assert d == {"a": 1, "b": 2}

    @gen.coroutine
    def raise_propagate(io):
        try:
            yield raiser(3)
        except ValueError:
            pass
        else:
            raise AssertionError("no exception")

    @gen.coroutine
    def gen_return(io):
        assert (yield returner(4)) == 4

    @gen.coroutine
    def cancel(io):
        f = Future()
        io.add_callback(f.cancel)
        try:
            yield f
        except asyncio.CancelledError:
            pass

    @gen.coroutine
    def with_timeout_expiring(io):
        try:
            yield gen.with_timeout(io.time() + 0.0001, Future())
        except gen.TimeoutError:
            pass
        else:
            raise AssertionError("no timeout")

    @gen.coroutine
    def add_callback(io):
        f = Future()
        io.add_callback(f.set_result, 5)
        io.add_callback(lambda x, k=None: None, 1, k=2)
        assert (yield f) == 5

    @gen.coroutine
    def add_remove_timeout(io):
        t = io.add_timeout(io.time() + 3600, lambda: None)
        io.remove_timeout(t)
        t = io.call_later(3600, lambda: None)
        io.remove_timeout(t)
        f = Future()
        io.add_timeout(io.time(), f.set_result, None)
        yield f

    pair = []

    @gen.coroutine
    def add_remove_handler(io):
        if not pair:
            a, b = socket.socketpair()
            a.setblocking(False)
            b.setblocking(False)
            pair.extend((a, b))
        a, b = pair
        f = Future()

        def on_read(fd, events):
            a.recv(16)
            io.remove_handler(fd)
            f.set_result(events)

        io.add_handler(a.fileno(), on_read, IOLoop.READ)
        io.update_handler(a.fileno(), IOLoop.READ | IOLoop.ERROR)
        b.send(b"x")
        assert (yield f) & IOLoop.READ

    server = []

    async def tcp_echo(io):
        if not server:
            async def echo(reader, writer):
                data = await reader.readexactly(5)
                writer.write(data)
                await writer.drain()
                writer.close()
                await writer.wait_closed()
            srv = await asyncio.start_server(echo, "127.0.0.1", 0)
            server.append(srv)
        port = server[0].sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()

    def cleanup():
        for s in pair:
            s.close()
        pair.clear()
        for srv in server:
            srv.close()
        server.clear()

    return {
        "yield a done future": (done_future, 2000),
        "a sub-coroutine": (sub_coroutine, 2000),
        "a moment": (moment, 2000),
        "a list multi": (list_multi, 1000),
        "a dict multi": (dict_multi, 1000),
        "raise and propagate": (raise_propagate, 1000),
        "gen.Return": (gen_return, 1000),
        "cancel": (cancel, 1000),
        "with_timeout expiring": (with_timeout_expiring, 200),
        "add_callback": (add_callback, 2000),
        "add_timeout / call_later / remove_timeout": (add_remove_timeout,
                                                      1000),
        "add_handler / update_handler / remove_handler on a socketpair":
            (add_remove_handler, 1000),
        "TCP echo through asyncio streams": (tcp_echo, 100),
    }, cleanup


def growth_per_cycle(run_cycles, n, tries=3):
    """(growth per cycle, [growths]) of `run_cycles(k)` between sizes n and
    3n, the smallest of `tries` measurements (see the module's text)."""
    run_cycles(n)                       # warm-up
    best = None
    seen = []
    for _ in range(tries):
        deltas = []
        for k in (n, 3 * n):
            gc.collect()
            before = _refs()
            run_cycles(k)
            gc.collect()
            deltas.append(_refs() - before)
        per = (deltas[1] - deltas[0]) / (2 * n)
        seen.append(deltas)
        if best is None or abs(per) < abs(best):
            best = per
        if best == 0:
            break
    return best, seen


def check_standalone(ctx):
    import logging
    from tornado_cgen.ioloop import IOLoop
    logging.getLogger("tornado.application").disabled = True
    io = IOLoop(make_current=False)
    table, cleanup = workloads()
    try:
        # The control: the same measurement on a workload that keeps one
        # object per cycle must see it (else the figures below prove
        # nothing).
        kept = []

        def leaky(k):
            async def batch():
                for _ in range(k):
                    kept.append(object())
            io.run_sync(batch)

        per, seen = growth_per_cycle(leaky, 500)
        ctx.figure("control: a workload keeping one object per cycle",
                   _fmt(per), want=">= 0.99", ok=per >= 0.99,
                   note="the measurement sees a leak")
        del kept[:]
        for name, (one, n) in table.items():
            if ctx.soak:
                n *= 5

            def run_cycles(k, one=one):
                async def batch():
                    for _ in range(k):
                        await one(io)
                io.run_sync(batch)

            per, seen = growth_per_cycle(run_cycles, n)
            ctx.figure("standalone: %s: refs per cycle" % name,
                       _fmt(per), want="0", ok=per == 0,
                       note="cycles %s and %s, growth %s" % (
                           count(n), count(3 * n), seen[-1]))
    finally:
        cleanup()
        io.close(all_fds=False)


def tornado_cycle():
    """A Tornado coroutine for one cycle of everything install() routes to
    the C Runner and loop: a future resolved by add_callback, a moment, a
    list and a dict of coroutines, timers set and removed, a sleep, a
    with_timeout expiring, a failing sub-coroutine caught.  Call it after
    install(): the coroutines are decorated then.  (tools/refleak_install.py
    runs the same cycle.)"""
    from tornado import gen
    from tornado.concurrent import Future

    @gen.coroutine
    def leaf(x):
        return x

    @gen.coroutine
    def failing():
        yield gen.moment
        raise KeyError("expected")

    @gen.coroutine
    def one_cycle(io):
        f = Future()
        io.add_callback(f.set_result, 1)
        v = yield f
        yield gen.moment
        a, b = yield [leaf(1), leaf(2)]
        d = yield {"x": leaf(3)}
        io.remove_timeout(io.call_later(10, lambda: None))
        io.call_at(io.time() - 1, lambda: None)
        yield gen.sleep(0)
        try:
            yield gen.with_timeout(io.time() + 0.0001, Future())
        except gen.TimeoutError:
            pass
        try:
            yield failing()
        except KeyError:
            pass
        return v + a + b + d["x"]

    return one_cycle


INSTALLED = r'''
import sys
import tornado_cgen
tornado_cgen.install()
from tornado import ioloop
from tornado_cgen.check.refleak import growth_per_cycle, tornado_cycle

one_cycle = tornado_cycle()
io = ioloop.IOLoop.current()
calls = tornado_cgen._core._stats()["coroutine_calls"]

def run_cycles(k):
    async def batch():
        for _ in range(k):
            assert (await one_cycle(io)) == 7
    io.run_sync(batch)

per, seen = growth_per_cycle(run_cycles, int(sys.argv[1]))
calls = tornado_cgen._core._stats()["coroutine_calls"] - calls
print(per, calls, seen[-1])
'''


def check_installed(ctx):
    if "installed" not in ctx.modes:
        ctx.skip("installed: a Tornado @gen.coroutine under install()",
                 "needs Tornado >= 6.2")
        return
    n = 2500 if ctx.soak else 500
    r = subprocess.run([sys.executable, "-c", INSTALLED, str(n)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=1200)
    name = "installed: a Tornado @gen.coroutine under install(): refs per cycle"
    if r.returncode:
        ctx.figure(name, "exit status %d" % r.returncode, want="0", ok=False,
                   note=r.stderr.strip()[-1500:])
        return
    per, calls, seen = r.stdout.split(None, 2)
    per, calls = float(per), int(calls)
    ctx.figure(name, _fmt(per), want="0", ok=per == 0 and calls > 10 * n,
               note="cycles %s and %s, growth %s; %s calls on the C Runner"
               % (count(n), count(3 * n), seen.strip(), count(calls)))


def check_tools(ctx, tree):
    """The checkout's broader refleak scripts (tools/refleak_*.py: every
    path of the Future, the loop, the Runner and install()), each a
    figure."""
    tools = os.path.join(tree, "tools")
    for fn in sorted(os.listdir(tools)):
        if not (fn.startswith("refleak_") and fn.endswith(".py")):
            continue
        r = subprocess.run([sys.executable, os.path.join(tools, fn)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=1800)
        last = r.stdout.strip().splitlines()[-3:]
        ctx.figure("tools/%s (growth per round after the first)" % fn,
                   "exit status %d" % r.returncode, want="0",
                   ok=r.returncode == 0, note=" | ".join(last)[-1500:])


def _fmt(per):
    return "0" if per == 0 else "%.4f" % per


def run(ctx):
    if not hasattr(sys, "gettotalrefcount"):
        ctx.skip("reference growth", "needs a debug interpreter "
                 "(python -m tornado_cgen check finds python3.11-dbg)")
        return
    ctx.log("on %s" % sys.executable)
    check_standalone(ctx)
    check_installed(ctx)
    tree = os.environ.get("TCG_CHECK_TREE")
    if not tree or not os.path.isdir(os.path.join(tree, "tests")):
        ctx.skip("per-test leak check over the suite",
                 "needs the source checkout (its tests/)")
        return
    check_tools(ctx, tree)
    from .suite_leaks import run_suite_leaks
    run_suite_leaks(ctx, tree, sys.executable, dict(os.environ), ctx.soak)


if __name__ == "__main__":
    sys.exit(section_main("refleak", run))
