"""Reference-growth check for Tornado's own code under ``install()``: a
Tornado coroutine that waits on a pending asyncio future resolved by
``add_callback``, yields a moment, a list and a dict of coroutines, sets
and removes timers (``call_later``/``remove_timeout``/``call_at``), sleeps,
times out in ``with_timeout`` and catches a failing sub-coroutine: every
path install() routes to the C Runner and loop.  Measured with
``sys.gettotalrefcount()`` on a debug interpreter (else
``sys.getallocatedblocks()``).

    python tools/refleak_install.py [cycles] [rounds]

Needs Tornado importable (CI puts a copy of the test environment's pure
Python package on PYTHONPATH for the debug interpreter).  Prints the growth
per round after a warm-up round; exits 1 if any round after the first grew.
"""
import gc
import os
import sys

try:
    import tornado_cgen  # noqa: F401  (a build on PYTHONPATH comes first)
except ImportError:
    sys.path.insert(0, os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import tornado_cgen

tornado_cgen.install()

from tornado import ioloop  # noqa: E402
# The cycle, decorated now that install() is on: the check's own.
from tornado_cgen.check.refleak import tornado_cycle  # noqa: E402

one_cycle = tornado_cycle()


def _count():
    if hasattr(sys, "gettotalrefcount"):
        return sys.gettotalrefcount()
    return sys.getallocatedblocks()


def measure(cycles=2000, rounds=5):
    io = ioloop.IOLoop.current()

    async def batch():
        for _ in range(cycles):
            assert (await one_cycle(io)) == 7

    deltas = [0] * rounds   # preallocated: storing a result costs nothing
    try:
        for r in range(rounds):
            gc.collect()
            before = _count()
            io.run_sync(batch)
            gc.collect()
            deltas[r] = _count() - before
    finally:
        io.close()
    return deltas


def main():
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    deltas = measure(cycles, rounds)
    tornado_cgen.uninstall()
    kind = "refs" if hasattr(sys, "gettotalrefcount") else "blocks"
    print("Tornado under install(): %d cycles x %d rounds, %s growth per "
          "round: %s" % (cycles, rounds, kind, deltas))
    return 1 if max(deltas[1:]) > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
