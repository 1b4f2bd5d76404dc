"""Tornado's own test suite, from the installed ``tornado`` wheel, under
``tornado_cgen.install()``.

    python tools/tornado_suite.py [runtests options] [tornado.test.module ...]

Runs ``tornado.test.runtests`` with its own rules (warnings are errors,
unexpected log output fails the run) after ``install()``, minus the tests
listed in ``tools/tornado_suite_skips.txt`` (each with its reason).  At the
end it prints the C code's activity counters and fails the run if they are
too small to show that the suite really ran on the C Runner and loop.
"""
import os
import sys
import unittest

import tornado_cgen
from tornado_cgen import _core

# Below these the patch cannot have been active for the whole suite (a full
# run makes millions of each; a run of a few modules, tens of thousands).
MINIMUM = {"coroutine_calls": 1000, "runner_steps": 1000,
           "loop_iterations": 10000}

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


def report():
    stats = _core._stats()
    print("tornado-cgen counters: " + ", ".join(
        "%s=%d" % kv for kv in sorted(stats.items())), file=sys.stderr)
    low = [k for k, v in MINIMUM.items() if stats[k] < v]
    if low:
        print("tornado-cgen: counters below the minimum (%s): the suite did "
              "not run on the C code" % ", ".join(low), file=sys.stderr)
        return False
    return True


def main():
    tornado_cgen.install()
    skip_listed(load_skips())
    import tornado.test.runtests as runtests
    argv = [sys.argv[0]] + sys.argv[1:]
    if not any(not a.startswith("-") for a in sys.argv[1:]):
        argv.append("tornado.test.runtests.all")
    sys.argv = argv
    code = 0
    try:
        runtests.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    ok = report()
    if not tornado_cgen.installed():
        print("tornado-cgen: install() was undone during the run",
              file=sys.stderr)
        ok = False
    sys.exit(code or (0 if ok else 1))


if __name__ == "__main__":
    main()
