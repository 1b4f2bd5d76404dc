"""Reference-leak check for the C Future, for a debug interpreter.

Runs ROUNDS rounds of: create a Future, add done callbacks (inline first
callback, list of further ones, explicit contexts), resolve it (result,
exception, exception class, cancel with a message), retrieve, remove
callbacks, drive __await__/__iter__ and Tornado 4's exc_info, let the loop run
the callbacks, and drop everything.  ``sys.gettotalrefcount()`` is sampled
after a warm-up and at the end; the script fails if the total grew by more
than a small fixed slack (interned strings, caches), i.e. if anything leaks
per round.

Usage: python3.11-dbg tools/refleak_future.py [ROUNDS]
(the extension must be built for that interpreter; see .ci/run)
"""
import asyncio
import contextvars
import gc
import sys

from tornado_cgen.concurrent import Future

BATCH = 500


class Holder:
    def method(self, fut):
        pass


def one_batch(loop, n):
    holder = Holder()
    futures = []
    ctx = contextvars.copy_context()
    for i in range(n):
        f = Future(loop=loop)
        f.add_done_callback(holder.method)
        f.add_done_callback(lambda fut: None, context=ctx)
        if i % 7 == 0:
            f.add_done_callback(print)
            f.remove_done_callback(print)
        kind = i % 5
        if kind == 0:
            f.set_result((i, "x"))
            f.result()
            it = iter(f)
            try:
                next(it)
            except StopIteration:
                pass
        elif kind == 1:
            f.set_exception(ValueError(i))
            try:
                f.result()
            except ValueError:
                pass
        elif kind == 2:
            f.set_exception(KeyError)
            f.exc_info()
        elif kind == 3:
            f.cancel("msg")
            try:
                f.exception()
            except asyncio.CancelledError:
                pass
        else:
            it = f.__await__()
            assert it.send(None) is f     # pending: yields itself
            f.set_result(None)
            try:
                it.send(None)
            except StopIteration:
                pass
            try:
                f.set_result(1)           # InvalidStateError path
            except asyncio.InvalidStateError:
                pass
        futures.append(f)
    # Run the scheduled callbacks.
    loop.run_until_complete(asyncio.sleep(0))
    futures.clear()


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    if not hasattr(sys, "gettotalrefcount"):
        print("refleak_future: needs a debug interpreter "
              "(sys.gettotalrefcount); skipped")
        return 0
    loop = asyncio.new_event_loop()
    batches = max(rounds // BATCH, 4)
    warmup = 3
    for _ in range(warmup):
        one_batch(loop, BATCH)
    gc.collect()
    before = sys.gettotalrefcount()
    for _ in range(batches - warmup):
        one_batch(loop, BATCH)
    gc.collect()
    after = sys.gettotalrefcount()
    loop.close()
    done = (batches - warmup) * BATCH
    growth = after - before
    print(f"refleak_future: {done} rounds, total refcount {before} -> {after} "
          f"(growth {growth}, {growth / done:.4f} per round)")
    # A leak of one reference per round would show as >= `done`.
    if growth > 100:
        print("refleak_future: FAIL: references leak")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
