"""Reference-growth check for the C event loop: many rounds of everything
the loop does (callbacks with 0/1/many args and contexts, cancelled
handles, timers fired and cancelled and purged, readers and writers, fds
replaced and closed, raising callbacks through the exception handler and
Tornado's logger, Tornado kwargs callbacks and coroutine results,
call_soon_threadsafe, futures), measured with ``sys.gettotalrefcount()`` on
a debug interpreter (else ``sys.getallocatedblocks()``).

    python tools/refleak_loop.py [cycles] [rounds]

Prints the growth per round after a warm-up round; exits 1 if any round
after the first grew.
"""
import asyncio
import contextvars
import gc
import logging
import os
import socket
import sys

try:
    import tornado_cgen  # noqa: F401  (a build on PYTHONPATH comes first)
except ImportError:
    sys.path.insert(0, os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import tornado_cgen  # noqa: E402
from tornado_cgen.ioloop import IOLoop  # noqa: E402


def _count():
    if hasattr(sys, "gettotalrefcount"):
        return sys.gettotalrefcount()
    return sys.getallocatedblocks()


def noop(*args, **kwargs):
    pass


def boom(*args):
    raise ValueError("boom")


async def coro_fail():
    raise KeyError("coro")


def one_round(io, aloop, cycles):
    ctx = contextvars.copy_context()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        for i in range(cycles):
            # the asyncio face
            aloop.call_soon(noop)
            aloop.call_soon(noop, i)
            aloop.call_soon(noop, i, "x", None, context=ctx)
            aloop.call_soon(noop).cancel()
            aloop.call_soon(boom, i)
            aloop.call_later(0, noop, i)
            aloop.call_later(100, noop, i).cancel()
            aloop.call_soon_threadsafe(noop, i)
            fut = aloop.create_future()
            aloop.call_soon(fut.set_result, i)
            h = aloop._add_reader(a.fileno(), noop, i)
            aloop._add_reader(a.fileno(), noop)     # replaces h
            aloop._add_writer(a.fileno(), aloop._remove_writer, a.fileno())
            h.cancel()
            # the Tornado face
            io.add_callback(noop, i, k=i)
            io.add_callback(boom)
            io.add_callback(coro_fail)
            io.call_later(0, noop, i, k=i)
            io.remove_timeout(io.call_later(100, noop))
            io.add_handler(b.fileno(), noop, IOLoop.READ | IOLoop.WRITE)
            io.update_handler(b.fileno(), IOLoop.READ)
            io.remove_handler(b.fileno())
            if i % 50 == 0:
                aloop.run_until_complete(asyncio.sleep(0))
                aloop._remove_reader(a.fileno())
                io.add_callback(io.stop)
                io.start()
        aloop.run_until_complete(asyncio.sleep(0.001))
        aloop._remove_reader(a.fileno())
        io.run_sync(lambda: asyncio.sleep(0.001))   # spawned tasks finish
    finally:
        a.close()
        b.close()


def measure(cycles=2000, rounds=5):
    logging.getLogger("tornado.application").disabled = True
    logging.getLogger("asyncio").disabled = True
    deltas = [0] * rounds
    io = IOLoop(make_current=False)
    aloop = tornado_cgen.new_event_loop()
    aloop.set_exception_handler(lambda loop, context: None)
    try:
        for r in range(rounds):
            gc.collect()
            before = _count()
            one_round(io, aloop, cycles)
            gc.collect()
            deltas[r] = _count() - before
    finally:
        aloop.close()
        io.close()
    return deltas


def main():
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    kind = "refs" if hasattr(sys, "gettotalrefcount") else "blocks"
    deltas = measure(cycles, rounds)
    print("tcg loop: %d cycles x %d rounds, %s growth per round: %s"
          % (cycles, rounds, kind, deltas))
    return 1 if max(deltas[1:]) > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
