"""Reference-growth check for the C Runner: many coroutine cycles (done
futures, sub-coroutines, moments, lists, dicts, exceptions, Return,
cancellation, bad yields), measured with ``sys.gettotalrefcount()`` on a
debug interpreter (else ``sys.getallocatedblocks()``).

    python tools/refleak_runner.py [cycles] [rounds] [asyncio|tcg|both]

Prints the growth per round after a warm-up round; exits 1 if any round
after the first grew.  Also imported by tests/test_gen_memory.py.
"""
import asyncio
import gc
import os
import sys

try:
    import tornado_cgen  # noqa: F401  (a build on PYTHONPATH comes first)
except ImportError:
    sys.path.insert(0, os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from tornado_cgen import gen  # noqa: E402
from tornado_cgen.concurrent import Future  # noqa: E402


@gen.coroutine
def leaf(i):
    return i


@gen.coroutine
def leaf_moment(i):
    yield gen.moment
    return i


@gen.coroutine
def leaf_return(i):
    yield None
    raise gen.Return(i)


@gen.coroutine
def failing(i):
    if i % 2:
        yield gen.moment
    raise ValueError(i)


@gen.coroutine
def cancelled():
    fut = Future()
    asyncio.get_running_loop().call_soon(fut.cancel)
    yield fut


@gen.coroutine
def one_cycle(i):
    done = Future()
    done.set_result(i)
    total = yield done
    total += yield leaf(i)
    total += yield leaf_moment(i)
    total += yield leaf_return(i)
    total += sum((yield [leaf(1), leaf_moment(2), done]))
    d = yield {"a": leaf(1), "b": [leaf_moment(2), None]}
    total += d["a"] + d["b"][0]
    pending = Future()
    asyncio.get_running_loop().call_soon(pending.set_result, 1)
    total += yield pending
    afut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(afut.set_result, 1)
    total += yield afut
    try:
        yield failing(i)
    except ValueError:
        total += 1
    try:
        yield [failing(1), failing(2)]
    except ValueError:
        total += 1
    try:
        yield 42
    except gen.BadYieldError:
        total += 1
    try:
        yield cancelled()
    except asyncio.CancelledError:
        total += 1

    async def native():
        return 1

    total += yield native()
    total += yield issue8_paths(i)
    return total


class _Eager(asyncio.Future):
    # Finishes inside its own add_done_callback (a lost wakeup once).
    def add_done_callback(self, fn, *, context=None):
        if not self.done():
            self.set_result(1)
        fn(self)


class _Keyed(dict):
    def keys(self):
        return ["k"]

    def values(self):
        return [None]


_self_list = []
_self_list.append(_self_list)


@gen.coroutine
def issue8_paths(i):
    """Paths added by the fixes for issue 8: multi's failure handling,
    done concurrent futures, dict subclasses, recursion, eager futures and
    a Runner built from Python."""
    import concurrent.futures
    import contextvars
    loop = asyncio.get_running_loop()
    total = 0
    f, g = loop.create_future(), loop.create_future()
    m = gen.multi([f, g], quiet_exceptions=KeyError)
    f.set_exception(ValueError(i))
    g.set_exception(KeyError(i))
    try:
        yield m
    except ValueError:
        total += 1
    h = loop.create_future()
    c = gen.multi([h], quiet_exceptions=5)
    c.cancel()
    h.set_exception(ValueError(i))
    cf = concurrent.futures.Future()
    cf.set_result(1)
    total += (yield [cf])[0]
    total += len((yield _Keyed(a=1)))
    try:
        gen.multi(_self_list)
    except RecursionError:
        total += 1
    total += yield _Eager()

    def body():
        x = yield _Eager()
        return x

    b = body()
    result = loop.create_future()
    gen.Runner(contextvars.copy_context().run, b, result, next(b))
    total += yield result
    yield gen.moment   # let the bad quiet_exceptions error reach the loop
    return total


def _count():
    if hasattr(sys, "gettotalrefcount"):
        return sys.gettotalrefcount()
    return sys.getallocatedblocks()


def _new_loop(kind):
    if kind == "tcg":
        import tornado_cgen
        return tornado_cgen.new_event_loop()
    return asyncio.new_event_loop()


def measure(cycles=10000, rounds=5, loop_kind="asyncio"):
    """Growth of the reference (or block) count per round of `cycles` on a
    loop of `loop_kind` ("asyncio" or "tcg", tornado_cgen's)."""
    import logging
    # Quiet the expected "Multiple exceptions" logs; restored on return.
    loggers = [logging.getLogger(n) for n in ("tornado.application", "asyncio")]
    was_disabled = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True

    async def batch():
        for i in range(cycles):
            await one_cycle(i)

    # Preallocated: storing a result costs no reference of its own.
    deltas = [0] * rounds
    loop = _new_loop(loop_kind)
    try:
        for r in range(rounds):
            gc.collect()
            before = _count()
            loop.run_until_complete(batch())
            gc.collect()
            deltas[r] = _count() - before
    finally:
        loop.close()
        for lg, was in zip(loggers, was_disabled):
            lg.disabled = was
    return deltas


def main():
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    which = sys.argv[3] if len(sys.argv) > 3 else "both"
    kinds = ["asyncio", "tcg"] if which == "both" else [which]
    kind = "refs" if hasattr(sys, "gettotalrefcount") else "blocks"
    status = 0
    for loop_kind in kinds:
        deltas = measure(cycles, rounds, loop_kind)
        print("%s loop: %d cycles x %d rounds, %s growth per round: %s"
              % (loop_kind, cycles, rounds, kind, deltas))
        if max(deltas[1:]) > 0:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
