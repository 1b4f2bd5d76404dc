"""A pytest plugin that hunts reference leaks test by test, in the manner
of CPython's ``regrtest -R warmups:runs``.

    python3.11-dbg -m pytest -p tornado_cgen.check._leaks_plugin \\
        --refleak=3:3 [--refleak-budget=SECONDS] [--refleak-json=PATH] ...

Each test runs ``warmups + runs`` times in a row.  After the last warmup
and after each run the process is brought to a steady state (below) and
``sys.gettotalrefcount()`` (debug interpreters), ``sys.getallocatedblocks()``
and the number of open file descriptors are read.  A test leaks when a
count grew in every one of the runs (regrtest's rule: one-off growth,
``[3, 0, 0]``, or noise that goes back, ``[8, -8, 1]``, is not a leak;
small steady growth, ``[1, 1, 1]``, is).

The steady state: what Python, pytest, Tornado and we keep that grows run
after run without a leak is emptied or taken back first -- the standard
library's caches (re, fnmatch, linecache, typing, struct, urllib, inspect,
the ABCs' caches, the type method cache, the warning registries), our
freelists of dead Futures and Handles (``_core._clear_freelists()``), the
types a test registered with ``convert_yielded`` (singledispatch cannot
unregister), the tasks Tornado's ``IOLoop._pending_tasks`` keeps of loops
that are closed, pytest's stale fixture finalizers, captured output,
subtests' reports and record of warnings -- then ``gc.collect()``.
Everything alive when a test begins is frozen out of the collector's sight
(``gc.freeze()``, undone at the end of the session), so that a collection
scans what the test made: a full one costs a tenth of a second on a debug
build.

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
import functools
import gc
import json
import os
import sys
import time
import warnings

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
    group.addoption("--refleak-blocks-only", metavar="TEXT[,TEXT...]",
                    default="", help="for the tests whose id contains one "
                    "of these, judge blocks and fds, not references: code "
                    "of a release-ABI extension (uvloop, on Debian's debug "
                    "interpreter) does not keep the debug build's total "
                    "reference count, which drifts on every run")
    group.addoption("--refleak-types", action="store_true",
                    help="for a leaking test, also say which types of "
                    "object grew in number (slower; the counting itself "
                    "shows as a little growth)")
    group.addoption("--refleak-json", metavar="PATH", default=None,
                    help="write every test's measurements to PATH")


def parse_spec(spec):
    try:
        warmups, runs = (int(x) for x in spec.split(":"))
    except ValueError:
        raise pytest.UsageError("--refleak wants WARMUPS:RUNS, e.g. 3:3, "
                                "not %r" % spec)
    if warmups < 1 or runs < 1:
        # (A first run does what is done once: imports, caches.)
        raise pytest.UsageError("--refleak: WARMUPS >= 1 and RUNS >= 1")
    return warmups, runs


def pytest_configure(config):
    spec = config.getoption("refleak")
    if spec:
        warmups, runs = parse_spec(spec)
        config.pluginmanager.register(
            LeakHunter(config, warmups, runs,
                       config.getoption("refleak_budget"),
                       config.getoption("refleak_json"),
                       config.getoption("refleak_types"),
                       [t for t in config.getoption(
                           "refleak_blocks_only").split(",") if t]),
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
    for modname in ("tornado.ioloop", "tornado_cgen.ioloop"):
        mod = mods.get(modname)
        if mod is not None:
            _drop_tasks_of_closed_loops(getattr(mod.IOLoop, "_pending_tasks",
                                                None))
    core = mods.get("tornado_cgen._core")
    if core is not None and hasattr(core, "_clear_freelists"):
        # Our dead Futures and Handles kept for reuse, up to 256 of each:
        # filling them looks like growth.
        core._clear_freelists()
    sys._clear_type_cache()


def _drop_tasks_of_closed_loops(tasks):
    """Tornado keeps every task gen makes in a set of IOLoop's until it
    finishes, so one pending when its loop closed stays for good: a test
    that stops a loop under a coroutine leaves one each run.  They can
    never run again; the report asyncio would give at their destruction
    is not given (with them kept, it never is).  A task that is done is
    kept: it should have taken itself out, and not doing so is a leak."""
    if not isinstance(tasks, set):
        return
    for task in list(tasks):
        try:
            stuck = not task.done() and task.get_loop().is_closed()
        except Exception:
            continue
        if stuck:
            if hasattr(task, "_log_destroy_pending"):
                task._log_destroy_pending = False
            tasks.discard(task)


# singledispatch functions a test may register its own types with (there is
# no unregister): module, attribute.
_REGISTRIES = (("tornado.gen", "convert_yielded"),
               ("tornado_cgen.gen", "_convert_dispatch"))


class Registries:
    """What the singledispatch registries held when a test began, to take
    the test's registrations back after each of its runs (as regrtest does
    with the ABCs' registries): a test that registers a class of its own
    registers a new one every run."""

    def __init__(self):
        self.saved = []
        seen = set()
        for modname, attr in _REGISTRIES:
            mod = sys.modules.get(modname)
            func = getattr(mod, attr, None) if mod is not None else None
            proxy = getattr(func, "registry", None)
            if proxy is None:
                continue
            # The dict behind the read-only view.
            backing = [d for d in gc.get_referents(proxy)
                       if isinstance(d, dict)]
            if len(backing) != 1 or id(backing[0]) in seen:
                continue
            seen.add(id(backing[0]))
            self.saved.append((func, backing[0], dict(backing[0])))

    def restore(self):
        for func, registry, before in self.saved:
            if len(registry) != len(before) or any(
                    registry.get(k) is not v for k, v in before.items()):
                registry.clear()
                registry.update(before)
                func._clear_cache()


def _fd_count():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


_gettotalrefcount = getattr(sys, "gettotalrefcount", None)


def snapshot(out, registries=None):
    """Reads references, allocated blocks and open fds, in a steady state,
    into `out` (an array of 3, so that no object outlives the reading)."""
    if registries is not None:
        registries.restore()
    clear_caches()
    # Twice: what the first one frees can make more garbage (finalizers,
    # weakref callbacks).
    gc.collect()
    gc.collect()
    out[0] = _gettotalrefcount() if _gettotalrefcount else 0
    out[1] = sys.getallocatedblocks()
    out[2] = _fd_count()


def _type_counts():
    counts = {}
    for o in gc.get_objects():
        t = type(o)
        name = "%s.%s" % (t.__module__, t.__qualname__)
        counts[name] = counts.get(name, 0) + 1
    return counts


def _type_growth(seen):
    """The types (tracked by the collector) that grew in every run."""
    grew = {}
    for name in seen[-1]:
        d = [b.get(name, 0) - a.get(name, 0) for a, b in zip(seen, seen[1:])]
        if all(x > 0 for x in d):
            grew[name] = d
    return dict(sorted(grew.items(), key=lambda kv: -sum(kv[1]))[:8])


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


def _drop_stale_finalizers(item):
    """A test's fixture that uses a wider one (tmp_path: the session's
    tmp_path_factory) leaves the wider one a finalizer to finish it, each
    time it is set up, which stays until the wider one ends (pytest's own
    growth, test after test).  Once the test's fixtures are torn down those
    finalizers would do nothing (finish() of a finished fixture returns):
    dropped, so that they are not counted as the test's."""
    info = getattr(item, "_fixtureinfo", None)
    for defs in getattr(info, "name2fixturedefs", {}).values():
        for fixturedef in defs:
            fins = getattr(fixturedef, "_finalizers", None)
            if fixturedef.scope == "function" or not fins:
                continue
            fins[:] = [f for f in fins if not _stale_finish(f, item)]


def _stale_finish(fin, item):
    if not isinstance(fin, functools.partial):
        return False
    owner = getattr(fin.func, "__self__", None)
    request = fin.keywords.get("request")
    return (getattr(fin.func, "__name__", "") == "finish" and
            owner is not None and getattr(owner, "scope", "") == "function"
            and owner.cached_result is None and request is not None and
            getattr(request, "_pyfuncitem", None) is item)


class _Stats:
    """The terminal's lists of reports as they were before a test: the
    ones a subtest logs itself, in each run, are taken back before the
    next run."""

    def __init__(self, config):
        tr = config.pluginmanager.get_plugin("terminalreporter")
        self.stats = getattr(tr, "stats", None)
        self.base = ({k: len(v) for k, v in self.stats.items()}
                     if self.stats is not None else None)

    def restore(self):
        if self.stats is None:
            return
        for key in list(self.stats):
            if key not in self.base:
                del self.stats[key]
            else:
                del self.stats[key][self.base[key]:]


def _outcome(reports):
    """passed, skipped or failed (failed if any phase failed)."""
    if any(r.failed for r in reports):
        return "failed"
    if any(r.skipped for r in reports):
        return "skipped"
    return "passed"


class LeakHunter:
    def __init__(self, config, warmups, runs, budget, json_path,
                 types=False, blocks_only=()):
        self.config = config
        self.blocks_only = list(blocks_only)
        self.types = types
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
        registries = Registries()
        stats = _Stats(self.config)
        types_seen = []
        have = False
        j = n = 0
        t = time.perf_counter()
        for i in range(1, total + 1):
            if i > 1:
                # What pytest keeps of a run, run after run (captured output
                # and log, subtests' reports): only the last run's stays.
                item._report_sections.clear()
                stats.restore()
            # The warnings of one run (and of the collections after it):
            # pytest's own record of them would grow run after run.  The
            # last run's are given to it at the end.
            with warnings.catch_warnings(record=True) as caught:
                reports = runtestprotocol(item, log=False, nextitem=stay)
                _drop_stale_finalizers(item)
                if i == 1:
                    result["first_run_s"] = round(time.perf_counter() - t, 4)
                    if _outcome(reports) != "passed":
                        result["status"] = "not repeated: " + _outcome(
                            reports)
                        break
                    if (self.budget is not None and
                            result["first_run_s"] > self.budget):
                        result["status"] = "not repeated: slow"
                        break
                elif _outcome(reports) != "passed":
                    result["status"] = "unstable: %s on run %d" % (
                        _outcome(reports), i)
                    break
                if i >= self.warmups:
                    snapshot(cur, registries)
                    if have:
                        for j in range(len(KINDS)):
                            deltas[j][n] = cur[j] - prev[j]
                        n += 1
                    prev, cur = cur, prev
                    have = True
                    if self.types:
                        types_seen.append(_type_counts())
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename,
                                   w.lineno, source=w.source)
        if result["status"] == "checked":
            refs_judged = _gettotalrefcount is not None and not any(
                t in item.nodeid for t in self.blocks_only)
            if not refs_judged:
                result["refs_not_judged"] = True
            for j, kind in enumerate(KINDS):
                d = deltas[j].tolist()
                result["deltas"][kind] = d
                if leaked(d) and (kind != "refs" or refs_judged):
                    result["leaks"].append(kind)
            if result["leaks"] and len(types_seen) > 1:
                result["types"] = _type_growth(types_seen)
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
            "refs_not_judged": sum(1 for r in checked
                                   if r.get("refs_not_judged")),
            "leaking": [r["nodeid"] for r in checked if r["leaks"]],
            "slow": [r["nodeid"] for r in res
                     if r["status"] == "not repeated: slow"],
            "not_passed": {r["nodeid"]: r["status"] for r in res
                           if r["status"].startswith("not repeated: ")
                           and r["status"] != "not repeated: slow"},
            "unstable": {r["nodeid"]: r["status"] for r in res
                         if r["status"].startswith("unstable")},
            "seconds": round(time.monotonic() - self.t0, 1),
            "core": _core_file(),
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
            "%d tests: %d checked (%d on blocks and fds only), %d leaking, "
            "%d unstable, %d not repeated (%d slow, %d did not pass), "
            "in %.0f s" % (
                s["tests"], s["checked"], s["refs_not_judged"],
                len(s["leaking"]), len(s["unstable"]),
                len(s["slow"]) + len(s["not_passed"]),
                len(s["slow"]), len(s["not_passed"]), s["seconds"]))

    def pytest_unconfigure(self, config):
        if self.json_path:
            with open(self.json_path, "w") as f:
                json.dump({"summary": self.summary(),
                           "results": self.results}, f, indent=1)


def _core_file():
    """The file of the tornado_cgen._core the tests ran on (None if they
    did not import it)."""
    core = sys.modules.get("tornado_cgen._core")
    return getattr(core, "__file__", None)


def _describe(result):
    text = ", ".join("%s %s" % (k, result["deltas"][k])
                     for k in result["leaks"])
    if result.get("types"):
        text += "; more of: " + ", ".join(
            "%s %s" % kv for kv in result["types"].items())
    return text
