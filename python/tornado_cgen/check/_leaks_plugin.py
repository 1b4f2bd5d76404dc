"""A pytest plugin that hunts reference leaks test by test, in the manner
of CPython's ``regrtest -R warmups:runs``.

    python3.11-dbg -m pytest -p tornado_cgen.check._leaks_plugin \\
        --refleak=3:3 [--refleak-budget=SECONDS] [--refleak-json=PATH] ...

Each test runs ``warmups + runs`` times in a row.  After each of the last
``runs`` repetitions (and once before them) the process is brought to a
steady state (caches the standard library fills on first use emptied,
``gc.collect()``) and ``sys.gettotalrefcount()`` (debug interpreters),
``sys.getallocatedblocks()`` and the number of open file descriptors are
read.  A test leaks when every one of the measured repetitions grew a
count (regrtest's rule: a leak is growth in every run, so one-off growth,
``[3, 0, 0]``, or noise that goes back, ``[8, -8, 1]``, is not one, while
small steady growth, ``[1, 1, 1]``, is).

Fixtures wider than the test (class, module, session) are set up once, by
the first repetition, and stay up between repetitions, as they would
between tests; only the test's own are torn down and set up again.  Only
the last repetition's outcome is reported.  A test that does not pass on
its first run is not repeated, nor (with ``--refleak-budget``) one whose
first run took longer than the budget; one whose outcome changes on a
later repetition is reported with that outcome and counted as unstable.

At the end the terminal summary gives the counts, and ``--refleak-json``
writes every test's measurements for a program to read.
"""
import array
import gc
import json
import os
import sys
import time

import pytest
from _pytest.runner import CallInfo, get_reraise_exceptions, runtestprotocol

KINDS = ("refs", "blocks", "fds")


def pytest_addoption(parser):
    group = parser.getgroup("refleak", "reference leaks, test by test")
    group.addoption("--refleak", metavar="WARMUPS:RUNS", default=None,
                    help="run each test WARMUPS+RUNS times and report the "
                    "tests whose reference count (debug interpreter), "
                    "allocated blocks or open fds grew in each of the last "
                    "RUNS (e.g. 3:3, as regrtest -R 3:3)")
    group.addoption("--refleak-budget", metavar="SECONDS", type=float,
                    default=None, help="do not repeat a test whose first "
                    "run took longer than this")
    group.addoption("--refleak-json", metavar="PATH", default=None,
                    help="write every test's measurements to PATH")


def parse_spec(spec):
    try:
        warmups, runs = (int(x) for x in spec.split(":"))
    except ValueError:
        raise pytest.UsageError("--refleak wants WARMUPS:RUNS, e.g. 3:3, "
                                "not %r" % spec)
    if warmups < 0 or runs < 1:
        raise pytest.UsageError("--refleak: WARMUPS >= 0 and RUNS >= 1")
    return warmups, runs


def pytest_configure(config):
    spec = config.getoption("refleak")
    if spec:
        warmups, runs = parse_spec(spec)
        config.pluginmanager.register(
            LeakHunter(config, warmups, runs,
                       config.getoption("refleak_budget"),
                       config.getoption("refleak_json")),
            "tornado_cgen-refleak")


# ---- a steady state to measure in -------------------------------------------

def _clear_abc_caches():
    import abc
    import collections.abc
    seen = set()
    todo = [getattr(collections.abc, n) for n in collections.abc.__all__]
    numbers = sys.modules.get("numbers")
    if numbers is not None:
        todo += [getattr(numbers, n) for n in numbers.__all__]
    while todo:
        cls = todo.pop()
        if not isinstance(cls, abc.ABCMeta) or id(cls) in seen:
            continue
        seen.add(id(cls))
        cls._abc_caches_clear()
        todo.extend(type.__subclasses__(cls))


# functools.lru_cache'd functions that fill with what tests pass them.
_LRU_CACHES = (("fnmatch", "_compile_pattern"),
               ("tornado.httputil", "_normalize_header"))


def clear_caches():
    """Empty the caches that Python and its standard library fill on first
    use (compiled patterns, source lines, typing's generic aliases, the
    method cache...), so that what a test leaves behind is what it
    leaked.  Only modules already imported are touched."""
    mods = sys.modules
    if "re" in mods:
        mods["re"].purge()
    for modname, fn in _LRU_CACHES:
        mod = mods.get(modname)
        cache = getattr(mod, fn, None) if mod is not None else None
        if cache is not None and hasattr(cache, "cache_clear"):
            cache.cache_clear()
    if "linecache" in mods:
        mods["linecache"].clearcache()
    if "typing" in mods:
        for clear in getattr(mods["typing"], "_cleanups", ()):
            clear()
    if "struct" in mods:
        mods["struct"]._clearcache()
    if "urllib.parse" in mods:
        mods["urllib.parse"].clear_cache()
    if "inspect" in mods:
        # getmodule()'s maps of file names to modules
        insp = mods["inspect"]
        for name in ("_filesbymodname", "modulesbyfile"):
            d = getattr(insp, name, None)
            if isinstance(d, dict):
                d.clear()
    if "warnings" in mods:
        # Each module's __warningregistry__ is emptied the next time it
        # warns (a repeated test warns again with a new message text:
        # "coroutine ... was never awaited at 0x...").
        mods["warnings"]._filters_mutated()
    if "collections.abc" in mods:
        _clear_abc_caches()
    core = mods.get("tornado_cgen._core")
    if core is not None and hasattr(core, "_clear_freelists"):
        # Our dead Futures and Handles kept for reuse, up to 256 of each:
        # filling them looks like growth.
        core._clear_freelists()
    sys._clear_type_cache()


def _fd_count():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


_gettotalrefcount = getattr(sys, "gettotalrefcount", None)


def snapshot(out):
    """Reads references, allocated blocks and open fds, in a steady state,
    into `out` (an array of 3, so that no object outlives the reading)."""
    clear_caches()
    # Twice: what the first one frees can make more garbage (finalizers,
    # weakref callbacks).
    gc.collect()
    gc.collect()
    out[0] = _gettotalrefcount() if _gettotalrefcount else 0
    out[1] = sys.getallocatedblocks()
    out[2] = _fd_count()


def leaked(deltas):
    """regrtest's rule: a leak grows in every measured run."""
    return bool(deltas) and all(d >= 1 for d in deltas)


# ---- the repetitions --------------------------------------------------------

class _KeepWider:
    """What the teardown after a repetition is told comes next: the same
    class, module and session, so that only the test's own fixtures are
    torn down (pytest tears down what the next item does not share)."""

    def __init__(self, item):
        self._chain = item.listchain()[:-1]

    def listchain(self):
        return self._chain


def _outcome(reports):
    """passed, skipped or failed (failed if any phase failed)."""
    if any(r.failed for r in reports):
        return "failed"
    if any(r.skipped for r in reports):
        return "skipped"
    return "passed"


class LeakHunter:
    def __init__(self, config, warmups, runs, budget, json_path):
        self.config = config
        self.warmups, self.runs = warmups, runs
        self.budget = budget
        self.json_path = json_path
        self.results = []
        self.t0 = time.monotonic()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid,
                                      location=item.location)
        stay = _KeepWider(item)
        # What is alive now is older than this test: out of the collector's
        # sight (gc.freeze), each collection below scans what this test
        # made, not the whole session (on a debug build that is the
        # difference between a millisecond and a tenth of a second).
        gc.collect()
        gc.freeze()
        total = self.warmups + self.runs
        result = {"nodeid": item.nodeid, "status": "checked",
                  "deltas": {k: [] for k in KINDS}, "leaks": []}
        # The measurements go where they create no object (an int of an
        # array is a C long): a list of them would grow with every one.
        deltas = [array.array("q", bytes(8 * self.runs)) for _ in KINDS]
        prev = array.array("q", bytes(8 * len(KINDS)))
        cur = array.array("q", bytes(8 * len(KINDS)))
        # Every name bound before the first reading: binding one after it
        # would count as growth.
        i = j = n = 0
        have = self.warmups == 0
        if have:
            snapshot(prev)
        t = time.perf_counter()
        reports = runtestprotocol(item, log=False, nextitem=stay)
        result["first_run_s"] = round(time.perf_counter() - t, 4)
        first = _outcome(reports)
        if first != "passed":
            result["status"] = "not repeated: " + first
        elif self.budget is not None and result["first_run_s"] > self.budget:
            result["status"] = "not repeated: slow"
        else:
            for i in range(1, total + 1):
                if i > 1:
                    # pytest keeps a test's captured output and log in
                    # these, run after run: what the report shows is the
                    # last run's.
                    item._report_sections.clear()
                    reports = runtestprotocol(item, log=False, nextitem=stay)
                    if _outcome(reports) != "passed":
                        result["status"] = "unstable: %s on run %d" % (
                            _outcome(reports), i)
                        break
                if i >= self.warmups:
                    snapshot(cur)
                    if have:
                        for j in range(len(KINDS)):
                            deltas[j][n] = cur[j] - prev[j]
                        n += 1
                    prev, cur = cur, prev
                    have = True
            if result["status"] == "checked":
                for j, kind in enumerate(KINDS):
                    d = deltas[j].tolist()
                    result["deltas"][kind] = d
                    if leaked(d) and not (kind == "refs" and
                                          _gettotalrefcount is None):
                        result["leaks"].append(kind)
        # What the terminal, the junit file & co see: the last run.
        for r in reports:
            ihook.pytest_runtest_logreport(report=r)
        # Now what the next test does not share (a class, a module) goes,
        # as pytest's own teardown would (without its plugins' wrappers:
        # capture and logging are done with this test).
        if item.session.shouldfail or item.session.shouldstop:
            nextitem = None
        call = CallInfo.from_call(
            lambda: item.session._setupstate.teardown_exact(nextitem),
            when="teardown", reraise=get_reraise_exceptions(item.config))
        if call.excinfo is not None:
            rep = ihook.pytest_runtest_makereport(item=item, call=call)
            ihook.pytest_runtest_logreport(report=rep)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid,
                                       location=item.location)
        self.results.append(result)
        if result["leaks"]:
            tr = self.config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write_line("")
                tr.write_line("LEAK %s: %s" % (item.nodeid, _describe(result)),
                              red=True)
        return True

    def pytest_sessionfinish(self, session):
        gc.unfreeze()

    def summary(self):
        res = self.results
        checked = [r for r in res if r["status"] == "checked"]
        return {
            "spec": "%d:%d" % (self.warmups, self.runs),
            "debug": _gettotalrefcount is not None,
            "tests": len(res),
            "checked": len(checked),
            "leaking": [r["nodeid"] for r in checked if r["leaks"]],
            "slow": [r["nodeid"] for r in res
                     if r["status"] == "not repeated: slow"],
            "not_passed": {r["nodeid"]: r["status"] for r in res
                           if r["status"].startswith("not repeated: ")
                           and r["status"] != "not repeated: slow"},
            "unstable": {r["nodeid"]: r["status"] for r in res
                         if r["status"].startswith("unstable")},
            "seconds": round(time.monotonic() - self.t0, 1),
        }

    def pytest_terminal_summary(self, terminalreporter):
        s = self.summary()
        tr = terminalreporter
        tr.section("reference leaks (-R %s%s)" % (
            s["spec"], "" if s["debug"] else
            ", blocks and fds only: not a debug interpreter"))
        for r in self.results:
            if r["leaks"]:
                tr.write_line("LEAK %s: %s" % (r["nodeid"], _describe(r)))
        for nodeid, why in sorted(s["unstable"].items()):
            tr.write_line("UNSTABLE %s: %s" % (nodeid, why))
        tr.write_line(
            "%d tests: %d checked, %d leaking, %d unstable, %d not repeated "
            "(%d slow, %d did not pass), in %.0f s" % (
                s["tests"], s["checked"], len(s["leaking"]),
                len(s["unstable"]), len(s["slow"]) + len(s["not_passed"]),
                len(s["slow"]), len(s["not_passed"]), s["seconds"]))

    def pytest_unconfigure(self, config):
        if self.json_path:
            with open(self.json_path, "w") as f:
                json.dump({"summary": self.summary(),
                           "results": self.results}, f, indent=1)


def _describe(result):
    return ", ".join("%s %s" % (k, result["deltas"][k])
                     for k in result["leaks"])
