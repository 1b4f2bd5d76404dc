"""Tornado's own test suite, from the installed ``tornado`` wheel, under
``tornado_cgen.install()``.

    python tools/tornado_suite.py [runtests options] [tornado.test.module ...]

Runs ``tornado.test.runtests`` with its own rules (warnings are errors,
unexpected log output fails the run) after ``install()``, minus the tests
listed in ``tools/tornado_suite_skips.txt`` (each with its reason).  At the
end it prints the C code's activity counters and fails the run if they are
too small to show that the suite really ran on the C Runner and loop (for
the whole suite, FULL_RUN_MINIMUM; for chosen modules, above zero).
"""
import os
import sys
import unittest

import tornado_cgen
from tornado_cgen import _core

# What a full run must reach: about half of the least a full run made on any
# supported Tornado (measured on CPython 3.10 to 3.13):
#
#   Tornado   coroutine_calls  runner_steps  loop_iterations
#   6.2             888           79,653        23,351
#   6.3.3           889           79,659        21,874
#   6.4.2           890           79,662        22,104
#   6.5.7           896           79,692        23,305
#   6.5.10          916           79,746        22,824
#   6.6.1         1,036           80,085        33,125-34,195
#
# A run with install() not in effect counts none (Tornado's own Runner and
# asyncio's loop do not count); one where much of the suite missed the C
# code falls short.  Most runner steps (60,000) are the three iostream_test
# ...test_future_write tests: skipping them needs a lower minimum here.
# A run of chosen modules only needs each counter above zero.
FULL_RUN_MINIMUM = {"coroutine_calls": 400, "runner_steps": 40000,
                    "loop_iterations": 10000}
ALL = "tornado.test.runtests.all"

HERE = os.path.dirname(os.path.abspath(__file__))


def load_skips(path=os.path.join(HERE, "tornado_suite_skips.txt")):
    """``{test id: reason}`` from the skip list (``id  # reason`` lines)."""
    skips = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            test_id, _, reason = line.partition("#")
            skips[test_id.strip()] = reason.strip()
    return skips


def skip_listed(skips):
    """Make unittest skip the listed tests, with their reasons."""
    orig_run = unittest.TestCase.run

    def run(self, result=None):
        reason = skips.get(self.id())
        if reason is not None:
            method = getattr(self, self._testMethodName)
            setattr(self, self._testMethodName,
                    unittest.skip("tornado-cgen: " + reason)(method))
        return orig_run(self, result)

    unittest.TestCase.run = run


def report(full):
    """Print the counters; False if they are below what a run (``full``:
    the whole suite) makes on the C code."""
    stats = _core._stats()
    print("tornado-cgen counters: " + ", ".join(
        "%s=%d" % kv for kv in sorted(stats.items())), file=sys.stderr)
    minimum = FULL_RUN_MINIMUM if full else dict.fromkeys(FULL_RUN_MINIMUM, 1)
    low = ["%s=%d < %d" % (k, stats[k], v) for k, v in minimum.items()
           if stats[k] < v]
    if low:
        print("tornado-cgen: counters below the minimum for %s (%s): the "
              "tests did not run on the C code" % (
                  "a full run" if full else "any run", ", ".join(low)),
              file=sys.stderr)
        return False
    return True


def main():
    tornado_cgen.install()
    skip_listed(load_skips())
    import tornado.test.runtests as runtests
    names = [a for a in sys.argv[1:] if not a.startswith("-")]
    full = not names or names == [ALL]
    sys.argv = sys.argv[:1] + sys.argv[1:] + ([] if names else [ALL])
    code = 0
    try:
        runtests.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    ok = report(full)
    if not tornado_cgen.installed():
        print("tornado-cgen: install() was undone during the run",
              file=sys.stderr)
        ok = False
    sys.exit(code or (0 if ok else 1))


if __name__ == "__main__":
    main()
