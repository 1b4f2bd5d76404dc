"""Differential property tests: tornado_cgen against upstream Tornado.

Two hypothesis properties, each run in worker processes of their own (so
that a crash or a hang is a failed figure with the program that caused
it, not the end of the check):

random programs
    The program generator of ``tools/difftest.py`` (``difftest.Gen``:
    trees of ``@gen.coroutine`` generators, plain coroutines and ``async
    def``s over futures, lists, dicts, ``multi`` with ``quiet_exceptions``,
    exceptions, cancellations, ``with_timeout``, ``WaitIterator``,
    callbacks, timers, contextvars, threads) draws every decision from a
    hypothesis ``randoms()`` source, so a failing program shrinks.  Each
    program runs on upstream Tornado (the oracle), on tornado_cgen's own
    loop, on tornado_cgen.gen over asyncio's loop and on upstream Tornado
    under ``tornado_cgen.install()``; the traces (values received,
    exceptions caught and raised, future states, log records of
    ``tornado.application`` and ``asyncio``) must be equal.  The
    deliberate difference ``base-child`` is left out here: the second
    property checks it.

the cancelled future (a deliberate difference)
    README, section gen: a cancelled future that a coroutine waits on
    throws ``CancelledError`` into it and, if it escapes, cancels the
    coroutine's own future; any exception from a yielded future's
    ``result()``, ``BaseException``s included, is thrown into the
    generator (Tornado lets a ``BaseException`` escape its Runner into
    the loop, and the coroutine hangs); ``multi``'s first failure, a
    ``CancelledError`` included, is its result (first in the order of its
    children, once all are done, as Tornado's ``multi_future``) and every
    later one is logged as "Multiple exceptions in yield list" unless it
    is a ``CancelledError`` or one of ``quiet_exceptions``.  A recursive
    strategy builds trees of done / failing / cancelled / pending futures,
    lists, dicts, ``multi`` and sub-coroutines with at least one
    cancellation; a model written from those sentences says what each
    step must see, and tornado_cgen (both loops, and installed) must do
    exactly that.  Upstream Tornado must match the model on the programs
    with no ``BaseException`` (a check of the model itself).

Needs the source checkout (``tools/difftest.py``), hypothesis and
Tornado >= 6.6 (the oracle's cancellation semantics).
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter

from ._report import count, section_main

HERE = os.path.dirname(os.path.abspath(__file__))

# Examples of each property: (fast, soak).  The fast run takes about
# 2-3 minutes on 2 idle cores; --soak runs 20 times as many (about 45
# minutes), from a fresh seed.  (Hypothesis draws some programs more than
# once; each distinct one runs once and is what the figures count.)
RANDOM_EXAMPLES = (2000, 100000)
CANCEL_EXAMPLES = (300, 10000)
JOBS = 2
HANG = 0.1           # the run_sync timeout that ends a hung program
HANG_RERUN = 0.3     # ... when a program is run again to confirm
SHRINK_BUDGET = 120  # seconds hypothesis may spend shrinking one failure
STALL = 240          # seconds a worker may go without reporting
DEADLINE = (780, 6900)   # seconds for all workers (the section's timeout
                         # in the runner is 900 / 7200)
OURS = ("tcg", "tcg-asyncio", "installed")
IMPL_TEXT = {
    "tcg": "tornado_cgen (our loop)",
    "tcg-asyncio": "tornado_cgen on asyncio's loop",
    "installed": "upstream Tornado under install()",
}


# --------------------------------------------------------------------------
# The tree's tester.

def find_difftest():
    """The path of tools/difftest.py in the source checkout, or None."""
    from . import find_tree
    for tree in (os.environ.get("TCG_CHECK_TREE"), find_tree()):
        if tree:
            path = os.path.join(tree, "tools", "difftest.py")
            if os.path.exists(path):
                return path
    return None


def load_difftest(path=None):
    mod = sys.modules.get("difftest")
    if mod is not None:
        return mod
    path = path or find_difftest()
    if path is None:
        raise ImportError("tools/difftest.py not found (no source checkout)")
    spec = importlib.util.spec_from_file_location("difftest", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["difftest"] = mod
    spec.loader.exec_module(mod)
    return mod


def missing():
    """Why this section cannot run here, or None."""
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        return "needs hypothesis (pip install 'tornado-cgen[test]')"
    try:
        import tornado
    except ImportError:
        return "needs upstream Tornado, the oracle"
    if tornado.version_info < (6, 6):
        return ("the oracle's cancellation semantics are Tornado 6.6's "
                "(found %s)" % tornado.version)
    if find_difftest() is None:
        return "needs the source checkout (tools/difftest.py)"
    return None


# --------------------------------------------------------------------------
# Trace bookkeeping.

EXC_TAGS = ("exc", "hexc", "cancelled", "boom")


def _events(trace):
    for ev in trace:
        if ev and ev[0] == "TEARDOWN":
            for text in ev[1:]:
                yield json.loads(text)
        else:
            yield ev


def categorise(trace):
    """The trace's events by kind: 'log' records, 'exc' (exceptions caught
    or raised), 'value' (values received and returned), 'other'."""
    out = {"log": Counter(), "exc": Counter(), "value": Counter(),
           "other": Counter()}
    for ev in _events(trace):
        key = json.dumps(ev, sort_keys=True)
        if not isinstance(ev, list) or not ev:
            out["other"][key] += 1
        elif ev[0] == "LOG":
            out["log"][key] += 1
        elif ev[0] == "RAISED" or any(isinstance(x, str) and x in EXC_TAGS
                                      for x in ev[1:4]) or \
                (len(ev) > 4 and ev[2] == "wi" and ev[4] == "exc"):
            out["exc"][key] += 1
        elif ev[0] == "RESULT" or (len(ev) >= 3 and isinstance(ev[1], int)
                                   and (not isinstance(ev[2], str) or
                                        ev[2] in ("h", "wi"))):
            out["value"][key] += 1
        else:
            out["other"][key] += 1
    return out


def _mismatch(a, b):
    return sum(((a - b) + (b - a)).values())


class Stats:
    """What a worker measured, sent to the parent as JSON."""

    def __init__(self):
        self.d = {"programs": 0, "shapes": Counter(),
                  "differ": Counter(), "timing": 0,
                  "compared": Counter(), "cat_differ": Counter(),
                  "cancel_programs": 0, "cancel_bad": Counter(),
                  "cancel_bad_programs": 0,
                  "cancel_tornado_checked": 0, "cancel_tornado_bad": 0,
                  "cancel_tornado_base": 0, "cancel_tornado_base_differ": 0,
                  "cancel_timing": 0}

    def __getitem__(self, k):
        return self.d[k]

    def add(self, k, n=1):
        self.d[k] += n

    def to_json(self):
        return {k: dict(v) if isinstance(v, Counter) else v
                for k, v in self.d.items()}

    @staticmethod
    def merge(items):
        tot = {}
        for d in items:
            for k, v in d.items():
                if isinstance(v, dict):
                    c = tot.setdefault(k, Counter())
                    c.update(v)
                else:
                    tot[k] = tot.get(k, 0) + v
        return tot


# --------------------------------------------------------------------------
# Property 1: difftest's random programs, drawn by hypothesis.

class Divergence(AssertionError):
    pass


def judge(dt, prog, stats, impls=None):
    """Run ``prog`` on every implementation; returns (impls that differ
    from Tornado, every time it was run; traces)."""
    impls = impls or dt.IMPLS
    traces = dt.run_prog(prog, impls, hang=HANG)
    bad = set(dt.diverges(traces))
    if bad:
        # Confirm, with a longer run_sync timeout (a loaded machine can
        # stretch a short run past HANG).  Only a difference that is there
        # both times counts; the rest is the harness's timing.
        again = dt.run_prog(prog, impls, hang=HANG_RERUN)
        bad &= set(dt.diverges(again))
        if not bad:
            stats.add("timing")
            if not dt.diverges(again):
                traces = again
    stats.add("programs")
    stats["shapes"][prog["shape"]] += 1
    ref = categorise(traces["tornado"])
    for cat in ("value", "exc", "log"):
        stats["compared"][cat] += sum(ref[cat].values())
    for impl in OURS:
        if impl not in traces:
            continue
        if impl in bad:
            stats["differ"][impl] += 1
        mine = categorise(traces[impl])
        for cat in ("value", "exc", "log"):
            stats["cat_differ"][cat] += _mismatch(ref[cat], mine[cat])
    return sorted(bad), traces


def describe(dt, traces):
    """The first difference of each implementation, one line."""
    ref = traces["tornado"]
    out = []
    for impl in OURS:
        t = traces.get(impl)
        if t is None or t == ref:
            continue
        i = dt.first_diff(ref, t)
        a = json.dumps(ref[i]) if i < len(ref) else "(end)"
        b = json.dumps(t[i]) if i < len(t) else "(end)"
        out.append("event %d: tornado %s, %s %s" % (i, a[:160], impl,
                                                     b[:160]))
    return "; ".join(out)


def random_property(dt, examples, seed, stats, progress=None, known=None,
                    impls=None, shrink_budget=SHRINK_BUDGET, shapes=None):
    """Run the random-program property; returns None, or (prog, impls,
    traces, error text) for the shrunk counterexample."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    known = set(dt.KNOWN) if known is None else set(known)
    avoid = ("base-child",)    # the deliberate difference: property 2
    dt.AVOID.clear()
    dt.AVOID.update(avoid)
    failing = []
    seen = {}        # program source: verdict (shrinking meets many twice)
    first = []       # when the first counterexample was found

    @hseed(seed)
    @settings(max_examples=examples, deadline=None, database=None,
              derandomize=False, report_multiple_bugs=False,
              phases=(Phase.generate, Phase.shrink),
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(shape=st.sampled_from(shapes or dt.SHAPE_ORDER),
           rng=st.randoms(use_true_random=False))
    def prop(shape, rng):
        prog = dt.Gen(rng, shape, known, avoid).program()
        src = dt.render(prog) + prog["run"]
        if src not in seen:
            if first and time.monotonic() - first[0] > shrink_budget:
                return    # shrinking took long enough: keep what we have
            if progress:
                progress({"prog": prog})
            bad, traces = judge(dt, prog, stats, impls)
            seen[src] = (bad, traces if bad else None)
            if bad:
                first.append(time.monotonic())
        bad, traces = seen[src]
        if bad:
            failing.append((prog, bad, traces))
            raise Divergence("%s differ from Tornado: %s" % (
                ",".join(bad), describe(dt, traces)))

    try:
        prop()
    except Exception as e:   # the shrunk counterexample (or a Flaky)
        if failing:
            prog, bad, traces = failing[-1]
            return prog, bad, traces, "%s: %s" % (type(e).__name__,
                                                  str(e)[:400])
        raise
    return None


def minimise(dt, prog, bad, budget=150, impls=None, progress=None):
    """difftest's structural minimiser on top of hypothesis's shrinking."""
    key = tuple(bad)
    scratch = Stats()

    def still(cand):
        if progress:
            progress({"status": "minimising"})
        b, _ = judge(dt, cand, scratch, impls)
        return tuple(b) == key
    try:
        return dt.minimise(prog, still, budget)
    except Exception:
        return prog


# --------------------------------------------------------------------------
# Property 2: the cancelled future, against the documented behaviour.
#
# A tree: ["done"] ["soon"] ["later"] ["fail", E] ["soonfail", E]
# ["cancelled", msg] ["soon_cancel"]; ["list", [t...]] ["dict", [t...]]
# ["multi", form, [t...], quiet]; ["sub", kind, t] (a coroutine that
# yields t and returns ["s", value]).  The coroutine under test, c1, is a
# list of steps ["try", t] (yield t in a try), ["boom", "future"|"child"]
# (yield a future failed with a BaseException, or an async def raising
# one) and a last step ["bare", t] (yield t uncaught) or ["return"].

QUIET = ["()", "ValueError", "KeyError", "(ValueError, KeyError)"]
CANCEL_LEAVES = ("cancelled", "soon_cancel")


def cancel_program_strategy():
    from hypothesis import strategies as st
    errs = st.sampled_from(["ValueError", "KeyError"])
    leaf = st.one_of(
        st.just(["done"]), st.just(["soon"]), st.just(["later"]),
        st.tuples(st.just("fail"), errs).map(list),
        st.tuples(st.just("soonfail"), errs).map(list),
        st.tuples(st.just("cancelled"), st.sampled_from([None, "m"]))
        .map(list),
        st.just(["soon_cancel"]))

    def extend(kids):
        items = st.lists(kids, max_size=4)
        return st.one_of(
            items.map(lambda k: ["list", k]),
            items.map(lambda k: ["dict", k]),
            st.tuples(st.just("multi"), st.sampled_from(["list", "dict"]),
                      items, st.sampled_from(QUIET)).map(list),
            st.tuples(st.just("sub"), st.sampled_from(["gen", "async"]),
                      kids).map(list))

    tree = st.recursive(leaf, extend, max_leaves=10)
    step = st.one_of(
        tree.map(lambda t: ["try", t]),
        st.sampled_from([["boom", "future"], ["boom", "child"]]))
    last = st.one_of(st.just(["return"]), tree.map(lambda t: ["bare", t]))
    prog = st.fixed_dictionaries({
        "kind": st.sampled_from(["gen", "gen", "async"]),
        "steps": st.lists(step, min_size=1, max_size=5),
        "last": last})
    return prog.filter(lambda p: has_cancel(p))


def has_cancel(x):
    if isinstance(x, list):
        if x and x[0] in CANCEL_LEAVES:
            return True
        return any(has_cancel(y) for y in x)
    if isinstance(x, dict):
        return any(has_cancel(y) for y in x.values())
    return False


def has_base(p):
    """Whether a generator coroutine yields a BaseException (where Tornado
    differs: an async def sees it as asyncio's Task does, in both)."""
    return p["kind"] == "gen" and any(s[0] == "boom" for s in p["steps"])


class CancelRender:
    """Source for a cancellation program (run by difftest.run_source,
    after its PRELUDE; its TAIL calls c0('m'))."""

    def __init__(self, p):
        self.p = p
        self.n = 0
        self.defs = []
        self.subs = 1     # c1 is the coroutine under test

    def num(self):
        self.n += 1
        return self.n

    def expr(self, t, native, inner=False):
        k = t[0]
        if k in ("done", "soon", "later"):
            t.append(self.num())
            return "%s(%d)" % (k, t[1])
        if k in ("fail", "soonfail"):
            t.append("e%d" % self.num())
            return "%s(%s(%r))" % ("failed" if k == "fail" else "soon_fail",
                                   t[1], t[2])
        if k == "cancelled":
            return "cancelled(%r)" % (t[1],)
        if k == "soon_cancel":
            return "soon_cancel(Future())"
        if k in ("list", "dict", "multi"):
            items = t[2] if k == "multi" else t[1]
            form = t[1] if k == "multi" else k
            parts = [self.expr(x, native, True) for x in items]
            if form == "list":
                s = "[%s]" % ", ".join(parts)
            else:
                s = "{%s}" % ", ".join("'k%d': %s" % (j, x)
                                       for j, x in enumerate(parts))
            if k == "multi":
                if t[3] != "()":
                    return "gen.multi(%s, quiet_exceptions=%s)" % (s, t[3])
                return "gen.multi(%s)" % s
            return "gen.multi(%s)" % s if native and not inner else s
        if k == "sub":
            self.subs += 1
            name = "c%d" % self.subs
            native_sub = t[1] == "async"
            body = self.expr(t[2], native_sub)
            if native_sub:
                self.defs.append("async def %s(a):\n    v = await %s\n"
                                 "    return ['s', v]\n" % (name, body))
            else:
                self.defs.append("@gen.coroutine\ndef %s(a):\n"
                                 "    v = yield %s\n"
                                 "    return ['s', v]\n" % (name, body))
            return "%s(a)" % name
        raise ValueError(t)

    def render(self):
        # (expr() numbers the leaves in place: a copy with no shared parts)
        p = json.loads(json.dumps(self.p))
        native = p["kind"] == "async"
        kw = "await" if native else "yield"
        lines = ["async def c1(a):" if native else
                 "@gen.coroutine\ndef c1(a):"]
        for i, st in enumerate(p["steps"]):
            if st[0] == "try":
                e = self.expr(st[1], native)
            else:
                m = "b%d" % self.num()
                st.append(m)
                if st[1] == "future":
                    e = "failed(Boom(%r))" % m
                else:
                    self.subs += 1
                    name = "c%d" % self.subs
                    self.defs.append("async def %s(a):\n    raise Boom(%r)\n"
                                     % (name, m))
                    e = "%s(a)" % name
            lines += ["    try:",
                      "        v = %s %s" % (kw, e),
                      "        T(%d, 'ok', N(v))" % i,
                      "    except Exception as e:",
                      "        T(%d, 'exc', X(e))" % i,
                      "    except asyncio.CancelledError:",
                      "        T(%d, 'cancelled')" % i,
                      "    except Boom as e:",
                      "        T(%d, 'boom', X(e))" % i]
        if p["last"][0] == "bare":
            lines.append("    v = %s %s" % (kw, self.expr(p["last"][1],
                                                         native)))
        lines.append("    return ['end']")
        lines.append("")
        head = ("def cancelled(m):\n"
                "    f = Future(); f.cancel(m); return f\n\n")
        driver = ("@gen.coroutine\n"
                  "def c0(a):\n"
                  "    f = gen.convert_yielded(c1(a))\n"
                  "    w = Future()\n"
                  "    f.add_done_callback(lambda _: w.set_result(None))\n"
                  "    yield w\n"
                  "    T('STATE', S(f))\n"
                  "    return 'end'\n")
        self.p_numbered = p
        return head + "\n".join(self.defs + ["\n".join(lines), driver])


def render_cancel(p):
    r = CancelRender(p)
    src = r.render()
    return src, r.p_numbered


def _exc(etype, msg):
    # X(e) of the prelude: KeyError's str() is its repr
    return [etype, repr(msg) if etype == "KeyError" else msg]


def model(t, logs):
    """What README says yielding tree ``t`` gives: ("ok", value) |
    ("exc", [type, message]) | ("cancelled",); appends the log records
    ("Multiple exceptions in yield list", [type, message]) it causes."""
    k = t[0]
    if k in ("done", "soon", "later"):
        return ("ok", t[1])
    if k in ("fail", "soonfail"):
        return ("exc", _exc(t[1], t[2]))
    if k in CANCEL_LEAVES:
        return ("cancelled",)
    if k == "sub":
        r = model(t[2], logs)
        return ("ok", ["s", r[1]]) if r[0] == "ok" else r
    items = t[2] if k == "multi" else t[1]
    form = t[1] if k == "multi" else k
    quiet = {"()": (), "ValueError": ("ValueError",),
             "KeyError": ("KeyError",),
             "(ValueError, KeyError)": ("ValueError", "KeyError")}[
        t[3] if k == "multi" else "()"]
    kids = [model(x, logs) for x in items]
    first = None
    for r in kids:
        if r[0] == "ok":
            continue
        if first is None:
            first = r
        elif r[0] == "exc" and r[1][0] not in quiet:
            logs.append(["LOG", "tornado.application", "ERROR",
                         "Multiple exceptions in yield list", r[1]])
    if first is not None:
        return first
    values = [r[1] for r in kids]
    if form == "list":
        return ("ok", values)
    return ("ok", ["D"] + [["k%d" % j, v] for j, v in enumerate(values)])


def expected_trace(p):
    """The documented trace of numbered program ``p``: (events, sorted
    log records)."""
    ev, logs = [], []
    for i, st in enumerate(p["steps"]):
        if st[0] == "boom":
            # thrown into the generator, as asyncio's Task does
            ev.append([i, "boom", ["Boom", st[2]]])
            continue
        r = model(st[1], logs)
        if r[0] == "ok":
            ev.append([i, "ok", r[1]])
        elif r[0] == "exc":
            ev.append([i, "exc", r[1]])
        else:
            ev.append([i, "cancelled"])
    state = ["ok", ["end"]]
    if p["last"][0] == "bare":
        r = model(p["last"][1], logs)
        if r[0] == "exc":
            state = ["exc"] + r[1]
        elif r[0] == "cancelled":
            # the coroutine's own future is cancelled
            state = "cancelled"
    ev += [["STATE", state], ["RESULT", "end"], ["AFTER", [], []],
           ["DRAINED", [], []]]
    return ev, sorted(json.dumps(x) for x in logs)


def split_trace(trace):
    ev = [e for e in trace if e[0] != "LOG"]
    logs = sorted(json.dumps(e) for e in trace if e[0] == "LOG")
    return ev, logs


def run_cancel(dt, p, impls, hang=HANG):
    src, numbered = render_cancel(p)
    want = expected_trace(numbered)
    got = {}
    for impl in impls:
        # Tornado's coroutine hangs after a BaseException (its run_sync
        # timeout, then difftest's watchdog at 10 times that): it is only
        # seen to differ, so quickly.
        h = 0.01 if impl == "tornado" and has_base(p) else hang
        got[impl] = split_trace(dt.run_source(impl, src, "timeout", h))
    return src, want, got


def judge_cancel(dt, p, stats):
    """Run cancellation program ``p`` everywhere; returns (our
    implementations that are not as documented, whether Tornado is not
    (on a program without a BaseException), source, wanted, got)."""
    impls = ("tornado",) + OURS
    src, want, got = run_cancel(dt, p, impls)
    base = has_base(p)
    bad = {i for i in OURS if got[i] != want}
    tbad = not base and got["tornado"] != want
    if base:
        stats.add("cancel_tornado_base")
        stats.add("cancel_tornado_base_differ", int(got["tornado"] != want))
    if bad or tbad:
        # Confirm, with a longer run_sync timeout.
        _, _, again = run_cancel(dt, p, impls, HANG_RERUN)
        bad2 = {i for i in OURS if again[i] != want}
        tbad2 = not base and again["tornado"] != want
        if (bad - bad2) or (tbad and not tbad2):
            stats.add("cancel_timing")
        bad &= bad2
        tbad = tbad and tbad2
    stats.add("cancel_programs")
    stats.add("cancel_bad_programs", int(bool(bad)))
    for i in bad:
        stats["cancel_bad"][i] += 1
    if not base:
        stats.add("cancel_tornado_checked")
        stats.add("cancel_tornado_bad", int(tbad))
    return sorted(bad), tbad, src, want, got


def cancel_property(dt, examples, seed, stats, progress=None,
                    shrink_budget=SHRINK_BUDGET):
    """Returns None, or (program source, implementations, text) for the
    shrunk counterexample."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    failing = []
    seen = {}
    first = []
    dt.AVOID.clear()

    @hseed(seed)
    @settings(max_examples=examples, deadline=None, database=None,
              derandomize=False, report_multiple_bugs=False,
              phases=(Phase.generate, Phase.shrink),
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(p=cancel_program_strategy())
    def prop(p):
        key = json.dumps(p, sort_keys=True)
        if key not in seen:
            if first and time.monotonic() - first[0] > shrink_budget:
                return    # shrinking took long enough: keep what we have
            if progress:
                progress({"cancel": p})
            res = judge_cancel(dt, p, stats)
            if res[0] or res[1]:
                first.append(time.monotonic())
            else:
                res = (res[0], res[1], None, None, None)
            seen[key] = res
        bad, tornado_bad, src, want, got = seen[key]
        if bad or tornado_bad:
            who = bad or ["tornado"]
            one = who[0]
            text = ("%s not as documented: want %s, logs %s; got %s, "
                    "logs %s" % (",".join(who), json.dumps(want[0]),
                                 want[1], json.dumps(got[one][0]),
                                 got[one][1]))
            failing.append((src, who, text))
            raise Divergence(text)

    try:
        prop()
    except Exception as e:
        if failing:
            src, who, text = failing[-1]
            return src, who, text[:1200]
        raise
    return None


# --------------------------------------------------------------------------
# The worker process, and the section.

def worker(args):
    dt = load_difftest()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)           # programs' prints must not reach the protocol

    stats = Stats()
    sent = [0]

    def send(msg):
        if "prog" in msg or "cancel" in msg:
            # what it measured so far, in case it dies on this program
            sent[0] += 1
            if sent[0] % 20 == 0:
                msg["stats"] = stats.to_json()
        out.write(json.dumps(msg) + "\n")
        out.flush()

    t0 = time.monotonic()
    res = random_property(dt, args.random, args.seed, stats, send)
    if res is not None:
        prog, bad, traces, err = res
        small = minimise(dt, prog, bad, progress=send)
        if small is not prog:
            traces = dt.run_prog(small, hang=HANG)
        send({"random_fail": {"prog": small, "impls": bad,
                              "error": err,
                              "first": describe(dt, traces)}})
    t1 = time.monotonic()
    res2 = cancel_property(dt, args.cancel, args.seed, stats, send)
    if res2 is not None:
        src, who, text = res2
        send({"cancel_fail": {"src": src, "impls": who, "error": text}})
    send({"done": stats.to_json(), "random_s": t1 - t0,
          "cancel_s": time.monotonic() - t1})
    return 0


def _spawn(seed, n_random, n_cancel):
    cmd = [sys.executable, "-m", "tornado_cgen.check.differential",
           "--worker", "--seed", str(seed), "--random", str(n_random),
           "--cancel", str(n_cancel)]
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(HERE))
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"]
                                      if env.get("PYTHONPATH") else "")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)


def _which_crash(dt, body, run_mode):
    """Which implementations die on ``body``, each in a process of its
    own."""
    out = {}
    code = ("import sys, importlib.util as u; s = u.spec_from_file_location("
            "'difftest', %r); d = u.module_from_spec(s); "
            "sys.modules['difftest'] = d; s.loader.exec_module(d); "
            "t = d.run_source(sys.argv[1], sys.stdin.read(), %r, %r); "
            "sys.exit(70 if t and t[-1][0] == 'HARNESS' else 0)"
            % (dt.__file__, run_mode, HANG))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(HERE))
    for impl in ("tornado",) + OURS:
        try:
            r = subprocess.run([sys.executable, "-c", code, impl],
                               input=body, capture_output=True, text=True,
                               timeout=120, env=env)
            out[impl] = "ok" if r.returncode == 0 else "rc %d" % r.returncode
        except subprocess.TimeoutExpired:
            out[impl] = "hang"
    return out


def _save(text, what):
    d = os.environ.get("TCG_CHECK_DIFF_DIR") or tempfile.gettempdir()
    fd, path = tempfile.mkstemp(prefix="tcg-diff-%s-" % what, suffix=".py",
                                dir=d)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


CANCEL_REPRO_HEAD = '''\
# tornado_cgen check differential: a cancellation program, run by
# tools/difftest.py (python THIS.py [tornado|tcg|tcg-asyncio|installed]
# from the source checkout; see the trace it prints against the
# documented one in the check's note)
import os, sys, json
sys.path.insert(0, os.path.join(%r, "tools"))
import difftest
BODY = %r
impl = sys.argv[1] if len(sys.argv) > 1 else "tcg"
for ev in difftest.run_source(impl, BODY):
    print(json.dumps(ev))
'''


def run(ctx):
    why = missing()
    if why:
        ctx.skip("random programs vs upstream Tornado", why)
        ctx.skip("deliberate difference (cancelled future)", why)
        return
    import tornado
    soak = 1 if ctx.soak else 0
    n_random, n_cancel = RANDOM_EXAMPLES[soak], CANCEL_EXAMPLES[soak]
    base = os.environ.get("TCG_CHECK_DIFF_SEED")
    base = int(base) if base else (
        int.from_bytes(os.urandom(4), "big") if ctx.soak else 0)
    dt_path = find_difftest()
    tree = os.path.dirname(os.path.dirname(dt_path))
    jobs = max(1, min(JOBS, os.cpu_count() or 1))
    ctx.log("%d random + %d cancellation examples in %d workers, seed %d"
            % (n_random, n_cancel, jobs, base))
    t0 = time.monotonic()
    workers = run_workers(base, jobs, n_random, n_cancel,
                          DEADLINE[soak])
    elapsed = time.monotonic() - t0
    dt = load_difftest(dt_path)
    stats = Stats.merge(w["stats"] for w in workers if w["stats"])

    # Workers that died or hung: the program they were running, alone on
    # each implementation.
    broken = {"random": [], "cancel": []}
    for w in workers:
        if w["done"] and not w["killed"]:
            continue
        rc = w["rc"]
        what = w["killed"] or ("died of signal %d" % -rc if rc < 0 else
                               "exit status %d" % rc)
        last = w["last"] or {}
        phase = "cancel" if "cancel" in last else "random"
        if "prog" in last:
            body = dt.render(last["prog"])
            path = _save(dt.repro(last["prog"], HANG), "crash")
            per = _which_crash(dt, body, last["prog"]["run"])
        elif "cancel" in last:
            body, _ = render_cancel(last["cancel"])
            path = _save(CANCEL_REPRO_HEAD % (tree, body), "crash")
            per = _which_crash(dt, body, "timeout")
        else:
            path, per = None, {}
        broken[phase].append("worker seed %d %s%s%s" % (
            w["seed"], what, "; program: %s" % path if path else "",
            "; alone: %s" % ", ".join("%s %s" % kv for kv in per.items())
            if per else ""))
    random_fails = [f["random_fail"] for w in workers for f in w["fails"]
                    if "random_fail" in f]
    cancel_fails = [f["cancel_fail"] for w in workers for f in w["fails"]
                    if "cancel_fail" in f]
    seed_note = ("hypothesis seeds %d..%d: TCG_CHECK_DIFF_SEED=%d python -m "
                 "tornado_cgen.check.differential%s reruns them"
                 % (base, base + jobs - 1, base,
                    " --soak" if ctx.soak else ""))

    # Property 1.
    n = stats.get("programs", 0)
    differ = stats.get("differ", Counter())
    repro = {}
    for f in random_fails:
        path = _save(dt.repro(f["prog"], HANG), "random")
        for impl in f["impls"]:
            repro.setdefault(impl, "shrunk program: %s (run it with "
                             "'tornado' and '%s' as argument); %s; %s" % (
                                 path, impl, f["first"], seed_note))
        ctx.log("divergence (%s), shrunk:\n%s" % (",".join(f["impls"]),
                                                    dt.render(f["prog"])))
    shapes = stats.get("shapes", {})
    shape_note = "shapes %s" % ", ".join(
        "%s %d" % (sh, shapes.get(sh, 0)) for sh in dt.SHAPE_ORDER)
    for impl in OURS:
        d = differ.get(impl, 0)
        ok = d == 0 and impl not in repro and not broken["random"] and n > 0
        note = repro.get(impl) or "; ".join(broken["random"]) or (
            "%s; %s" % (seed_note, shape_note) if impl == "tcg" else "")
        ctx.figure("random programs, %s vs upstream Tornado %s"
                   % (IMPL_TEXT[impl], tornado.version),
                   "%s run, %s differing" % (count(n), count(d)),
                   want="0 differing", ok=ok, note=note)
    compared = stats.get("compared", Counter())
    cat_differ = stats.get("cat_differ", Counter())
    for cat, text in (("value", "values received and returned"),
                      ("exc", "exceptions caught and raised"),
                      ("log", "log records")):
        c, dd = compared.get(cat, 0), cat_differ.get(cat, 0)
        ctx.figure("random programs: %s compared" % text,
                   "%s (against each of %d), differing %s"
                   % (count(c), len(OURS), count(dd)),
                   want="differing 0", ok=dd == 0 and c > 0)
    timing = stats.get("timing", 0) + stats.get("cancel_timing", 0)
    total = n + stats.get("cancel_programs", 0)
    ctx.figure("programs that differed once and agreed when rerun",
               "%s of %s" % (count(timing), count(total)),
               want="<= 2%", ok=timing * 50 <= max(total, 1),
               note="with a %g s run_sync timeout, then %g s: a loaded "
                    "machine" % (HANG, HANG_RERUN) if timing else "")
    if broken["random"] or broken["cancel"]:
        allb = broken["random"] + broken["cancel"]
        ctx.figure("workers crashed or hung", "%d of %d" % (len(allb), jobs),
                   want="0", ok=False, note="; ".join(allb))

    # Property 2.
    nc = stats.get("cancel_programs", 0)
    nbad = stats.get("cancel_bad_programs", 0)
    cbad = stats.get("cancel_bad", Counter())
    notes = {}
    for f in cancel_fails:
        path = _save(CANCEL_REPRO_HEAD % (tree, f["src"]), "cancel")
        who = "tornado" if f["impls"] == ["tornado"] else "ours"
        notes.setdefault(who, "shrunk program: %s; %s" % (path, f["error"]))
        ctx.log("not as documented (%s), shrunk:\n%s" % (
            ",".join(f["impls"]), f["src"]))
    if "ours" not in notes and nbad:
        notes["ours"] = "not as documented: %s" % ", ".join(
            "%s %d" % kv for kv in sorted(cbad.items()))
    ctx.figure("deliberate difference (cancelled future): programs as "
               "documented, on %s" % ", ".join(OURS),
               "%s of %s" % (count(nc - nbad), count(nc)), want="all",
               ok=nc > 0 and nbad == 0 and "ours" not in notes and
               not broken["cancel"],
               note=notes.get("ours") or "; ".join(broken["cancel"]) or
               "README gen: CancelledError thrown in, an escaping one "
               "cancels the coroutine; a BaseException thrown in; multi's "
               "first failure raised, later ones logged")
    tc = stats.get("cancel_tornado_checked", 0)
    tb = stats.get("cancel_tornado_bad", 0)
    nb = stats.get("cancel_tornado_base", 0)
    nbd = stats.get("cancel_tornado_base_differ", 0)
    ctx.figure("the same model, on upstream Tornado %s (no BaseException "
               "in a generator)" % tornado.version,
               "%s of %s as documented" % (count(tc - tb), count(tc)),
               want="all", ok=tc > 0 and tb == 0 and "tornado" not in notes,
               note=notes.get("tornado") or
               "with a BaseException, Tornado differs as README says in "
               "%s of %s" % (count(nbd), count(nb)))
    ctx.log("%.0f s" % elapsed)


def run_workers(base, jobs, n_random, n_cancel, deadline_s):
    """Run the properties in ``jobs`` worker processes; returns what each
    reported."""
    import selectors
    t0 = time.monotonic()
    procs = {}
    for k in range(jobs):
        nr = n_random // jobs + (1 if k < n_random % jobs else 0)
        nc = n_cancel // jobs + (1 if k < n_cancel % jobs else 0)
        p = _spawn(base + k, nr, nc)
        procs[p] = {"seed": base + k, "last": None, "t": time.monotonic(),
                    "done": None, "stats": None, "fails": [], "killed": "",
                    "rc": None}
    sel = selectors.DefaultSelector()
    for p in procs:
        sel.register(p.stdout, selectors.EVENT_READ, p)
    running = set(procs)
    deadline = t0 + deadline_s
    while running:
        for key, _ in sel.select(timeout=5.0):
            p = key.data
            w = procs[p]
            line = p.stdout.readline()
            if not line:
                sel.unregister(p.stdout)
                running.discard(p)
                w["rc"] = p.wait()
                continue
            w["t"] = time.monotonic()
            msg = json.loads(line)
            if "stats" in msg:
                w["stats"] = msg["stats"]
            if "prog" in msg or "cancel" in msg:
                w["last"] = msg
            elif "done" in msg:
                w["done"] = msg
                w["stats"] = msg["done"]
            elif "random_fail" in msg or "cancel_fail" in msg:
                w["fails"].append(msg)
        now = time.monotonic()
        for p in running:
            w = procs[p]
            if not w["killed"] and (now - w["t"] > STALL or now > deadline):
                w["killed"] = ("no progress for %d s" % STALL
                               if now - w["t"] > STALL else
                               "still running at the deadline (%d s)"
                               % deadline_s)
                p.kill()
    return list(procs.values())


def _worker_main(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random", type=int, default=100)
    ap.add_argument("--cancel", type=int, default=50)
    return worker(ap.parse_args(argv))


if __name__ == "__main__":
    if "--worker" in sys.argv[1:]:
        sys.exit(_worker_main(sys.argv[1:]))
    sys.exit(section_main("differential", run))
