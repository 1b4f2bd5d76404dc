#!/usr/bin/env python
"""Differential tester: random coroutine programs, tornado_cgen vs Tornado.

Each seed gives one random program (deterministically): a handful of
``@gen.coroutine`` generators, plain ``@gen.coroutine`` functions and
``async def``s that call each other, each a list of steps (yield a done /
pending / failing / cancelled future, ``None``/``moment``, ``gen.sleep(0)``,
nested lists and dicts, ``gen.multi`` with ``quiet_exceptions``,
``with_timeout``, ``WaitIterator``, concurrent futures, contextvars,
``spawn_callback``, callbacks that raise, ...).  The program appends events
to a trace (who reached which step, values received, exceptions caught,
future states, log records of ``tornado.application``); the trace is run
under

  tornado       upstream Tornado (tornado.gen on tornado.ioloop.IOLoop)
  tcg           tornado_cgen on its own IOLoop (the C loop)
  tcg-asyncio   tornado_cgen.gen on asyncio's default loop
  installed     upstream tornado.gen on tornado.ioloop.IOLoop, in a helper
                process where tornado_cgen.install() ran first (the C
                Runner, multi and loop under Tornado's own modules)

and all traces must be equal.  A divergence is minimised (delta debugging on
the program's structure) and printed as a standalone script.

Usage (from the repository root, after ``python setup.py build_ext
--inplace``)::

    PYTHONPATH=python python tools/difftest.py --seed 0 --count 2000
    PYTHONPATH=python python tools/difftest.py --shape multi --seed 0 --count 500
    PYTHONPATH=python python tools/difftest.py --show 1234          # program + traces
    PYTHONPATH=python python tools/difftest.py --repro 1234 > r.py  # standalone script
    python r.py tornado; python r.py tcg; python r.py tcg-asyncio
    python r.py installed

Programs run in worker subprocesses (``--jobs``) so that a segfault or a hang
is a finding, not the end of the run.  ``--include-known`` also generates the
constructs of already-known defects (see KNOWN below); by default they are
left out so that only new divergences show up.
"""
import argparse
import copy
import gc
import json
import logging
import os
import random
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

IMPLS = ("tornado", "tcg", "tcg-asyncio", "installed")

# Known defects (being fixed elsewhere) and the generator options that reach
# them.  With --include-known (or --known NAME) they are generated.
KNOWN = {
    "chain-cancel": "chain_future ignores cancellation: cancellation inside "
                    "with_timeout / WaitIterator",
    "quiet-nontype": "multi with a non-type quiet_exceptions never resolves",
    "multi-cancelled": "a cancelled multi logs 'Exception after Future was "
                       "cancelled' instead of nothing",
    "cf-done": "an already-done concurrent.futures.Future costs extra loop "
               "turns",
    "timeout-nonfuture": "with_timeout(t, non_future) AssertionError vs "
                         "AttributeError",
}

# Divergences this tester found (new at the time).  All are fixed but
# base-child, a deliberate difference (README, gen); the texts say what
# was wrong.  Their constructs are generated unless --avoid NAME /
# --avoid-found, so that a run can hunt for further ones.
FOUND = {
    "spawn-ctx": "tcg loop: a native coroutine started by spawn_callback / "
                 "add_callback runs in an empty context (contextvars lost)",
    "wt-abs-deadline": "gen.with_timeout on a foreign asyncio loop: a past "
                       "absolute deadline fires before already-due timers "
                       "(Tornado clamps it to now, keeping FIFO order)",
    "runsync-base": "run_sync(func) where func raises a BaseException: "
                    "Tornado fails an assert (AssertionError logged and "
                    "raised), ours logs AttributeError and raises "
                    "TimeoutError / RuntimeError",
    "base-child": "a child future failing with a BaseException (an async "
                  "def raising one, as a Task): Tornado's Runner and multi "
                  "let it escape the callback (asyncio logs it; the waiting "
                  "coroutine hangs, multi still resolves from an earlier "
                  "failure); ours throws it into the generator, and multi "
                  "never resolves",
    "task-keepalive": "Tasks that convert_yielded / spawn_callback make for "
                      "native coroutines are not kept alive by the IOLoop "
                      "(Tornado >= 6.4: IOLoop._pending_tasks): a "
                      "fire-and-forget coroutine waiting on an otherwise "
                      "unreferenced future is garbage-collected mid-run "
                      "('Task was destroyed but it is pending!', its "
                      "finally blocks run)",
    "ise-message": "InvalidStateError text: 'FINISHED: <Future ...>' (the "
                   "pure-Python asyncio wording) where asyncio's C Future, "
                   "which Tornado uses, says 'invalid state' (only with "
                   "--strict-messages)",
    "multi-shared-exc-tb": "multi whose children fail with the same "
                           "exception instance: the raised exception lost "
                           "the first child's traceback frames",
}

# --------------------------------------------------------------------------
# The program text: helpers (PRELUDE), the generated coroutines, and the
# driver (TAIL).  The same strings make the standalone reproducers.

PRELUDE = r'''
import asyncio, contextvars, gc, re, concurrent.futures as CF
from datetime import timedelta
CV = contextvars.ContextVar('cv', default='-')
F = []     # shared futures, made by main
P = []     # futures of fired coroutines
TOKG = []  # contextvar tokens shared between coroutines

def X(e):
    m = re.sub(r' at 0x[0-9a-fA-F]+', ' at 0x', str(e))
    if not STRICT and type(e).__name__ == 'InvalidStateError':
        m = '...'   # asyncio's C Future says 'invalid state', ours more
    return [type(e).__name__, m]

def TB(e):  # the program's frames in the traceback
    if TB_SKIP_SHARED and re.fullmatch(r"'?F\d+'?", str(e)):
        return 'shared'   # F[k]'s exception: one instance, many raisers
    out = []
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TB_FILE:
            out.append('%s:%d' % (tb.tb_frame.f_code.co_name, tb.tb_lineno))
        tb = tb.tb_next
    return out

def CX(e):  # a stray __context__ is a bug
    return e.__context__ and type(e.__context__).__name__

def N(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):
        return [N(x) for x in v]
    if isinstance(v, tuple):
        return ['T'] + [N(x) for x in v]
    if isinstance(v, dict):
        return ['D'] + [[N(k), N(x)] for k, x in v.items()]
    if isinstance(v, BaseException):
        return ['E'] + X(v)
    if hasattr(v, 'add_done_callback') and hasattr(v, 'done'):
        return ['FUT', S(v)]
    return ['OBJ', type(v).__name__]

def S(f):
    if not f.done():
        return 'pending'
    if f.cancelled():
        return 'cancelled'
    e = f.exception()
    if e is not None:
        return ['exc'] + X(e)
    return ['ok', N(f.result())]

def done(v):
    f = Future(); f.set_result(v); return f
def failed(e):
    f = Future(); f.set_exception(e); return f
def soon(v):
    f = Future(); io.add_callback(f.set_result, v); return f
def later(v):
    f = Future(); io.call_later(0, f.set_result, v); return f
def soon_fail(e):
    f = Future(); io.add_callback(f.set_exception, e); return f
def soon_cancel(f):
    io.add_callback(f.cancel); return f
def setr(f, v):
    if not f.done(): f.set_result(v)
def setx(f, e):
    if not f.done(): f.set_exception(e)
def cf_done(v):
    f = CF.Future(); f.set_result(v); return f
def cf_exec(v):
    return EXE.submit(lambda: v)
def boom(m):
    raise ValueError(m)
class Boom(BaseException):
    pass
class Aw:  # an awaitable that is not a coroutine or a future
    def __init__(self, f):
        self.f = f
    def __await__(self):
        return (yield from self.f.__await__())
def KW(a, i, **kw):
    T(a, i, 'kw', sorted(kw.items()))
'''

TAIL = r'''
def _main():
    if not MAIN_CATCH_BASE:
        return c0('m')
    try:
        return c0('m')
    except Boom as e:  # --avoid runsync-base
        T('MAIN', 'boom', X(e))
try:
    if RUN_MODE == 'stop':
        _h = io.call_later(HANG, io.stop)
        _r = io.run_sync(_main)
        io.remove_timeout(_h)
    else:
        # (the watchdog ends a native main that swallows the cancellation)
        _h = io.call_later(HANG * 10, io.stop)
        _r = io.run_sync(_main, timeout=HANG)
        io.remove_timeout(_h)
    T('RESULT', N(_r))
except KeyboardInterrupt:
    raise
except BaseException as e:
    T('RAISED', X(e))
T('AFTER', [S(f) for f in F], [S(f) for f in P])
async def _drain():
    for _ in range(12):
        await asyncio.sleep(0)
io.run_sync(_drain)
T('DRAINED', [S(f) for f in F], [S(f) for f in P])
'''


class LogCapture(logging.Handler):
    """Appends log records of the watched loggers to the current trace."""

    GC_TIMED = ("Future exception was never retrieved",
                "Task exception was never retrieved",
                "Task was destroyed but it is pending")

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.trace = None
        self.gc_timed = False

    def emit(self, record):
        if self.trace is None:
            return
        msg = str(record.msg)
        if record.name == "asyncio":
            # loop.call_exception_handler: the message names handles and
            # futures by repr; keep its first words.  The unretrieved /
            # destroyed reports depend on when objects die: only with
            # --asyncio-log.
            msg = record.getMessage()
            if msg.startswith(self.GC_TIMED) and not self.gc_timed:
                return
            msg = msg.splitlines()[0] if msg else ""
            m = re.match(r"(Exception in callback|[^<(:]*)", msg)
            msg = m.group(1).strip()
        exc = None
        if record.exc_info and record.exc_info[1] is not None:
            e = record.exc_info[1]
            exc = [type(e).__name__,
                   re.sub(r" at 0x[0-9a-fA-F]+", " at 0x", str(e))]
            if not STRICT and exc[0] == "InvalidStateError":
                exc[1] = "..."
        self.trace.append(["LOG", record.name, record.levelname, msg, exc])


# --------------------------------------------------------------------------
# Running one program under one implementation (in this process).

_MODS = {}
STRICT = False   # --strict-messages: compare InvalidStateError texts too
AVOID = set()    # --avoid: FOUND names whose constructs are not generated
_EXE = None
_CAPTURE = None


def _setup(asyncio_log=False):
    global _EXE, _CAPTURE
    if _CAPTURE is None:
        _CAPTURE = LogCapture()
        import concurrent.futures
        _EXE = concurrent.futures.ThreadPoolExecutor(2)


def _installed():
    m = sys.modules.get("tornado_cgen._speedup")
    return m is not None and m.installed()


def _mods(impl):
    if impl in ("tornado", "installed") and \
            (impl == "installed") != _installed():
        # The oracle must be Tornado's own code, and "installed" must be it
        # only where install() ran (the helper, InstalledServer).
        raise RuntimeError("difftest: %r in a process where install() is %s"
                           % (impl, "on" if _installed() else "off"))
    if impl not in _MODS:
        if impl in ("tornado", "installed"):
            import tornado.gen as g
            import tornado.ioloop as i
            import tornado.concurrent as c
        else:
            import tornado_cgen.gen as g
            import tornado_cgen.ioloop as i
            import tornado_cgen.concurrent as c
        _MODS[impl] = (g, i, c)
    return _MODS[impl]


def make_io(impl):
    import asyncio
    g, i, c = _mods(impl)
    if impl == "tcg-asyncio":
        aloop = asyncio.new_event_loop()
        return i.IOLoop(asyncio_loop=aloop)
    return i.IOLoop()


def run_source(impl, body, run_mode="timeout", hang=0.05, asyncio_log=False):
    """Run a rendered program body under ``impl``; return its trace."""
    import warnings
    if impl == "installed" and not _IN_SERVER:
        return InstalledServer.get().run(body, run_mode, hang, asyncio_log)
    _setup(asyncio_log)
    _CAPTURE.gc_timed = asyncio_log
    saved = []
    for name in ("tornado.application", "asyncio"):
        lg = logging.getLogger(name)
        saved.append((lg, lg.propagate, lg.level))
        lg.addHandler(_CAPTURE)
        lg.propagate = False
        lg.setLevel(logging.DEBUG)
    # The program's gc.collect() calls (and the teardown's) scan only what
    # was made since: otherwise they cost what the process holds (pytest,
    # hypothesis, the helper's history), and a program with a few of them
    # outlasts HANG in one process and not in another.
    gc.freeze()
    try:
        with warnings.catch_warnings():
            # (programs leave coroutines unawaited, futures unretrieved)
            warnings.simplefilter("ignore")
            return _run_source(impl, body, run_mode, hang, asyncio_log)
    finally:
        gc.unfreeze()
        for lg, propagate, level in saved:
            lg.removeHandler(_CAPTURE)
            lg.propagate = propagate
            lg.setLevel(level)


def _run_source(impl, body, run_mode, hang, asyncio_log):
    import asyncio
    _setup(asyncio_log)
    g, i, c = _mods(impl)
    trace = []
    sink = [trace]   # teardown events go to their own (sorted) list
    io = make_io(impl)
    ns = {
        "__name__": "prog",
        "gen": g, "Future": c.Future, "io": io, "EXE": _EXE,
        "T": lambda *a: sink[0].append(list(a)),
        "RUN_MODE": run_mode, "HANG": hang, "STRICT": STRICT,
        "TB_FILE": "<prog>", "IOL": i.IOLoop,
        "TB_SKIP_SHARED": "multi-shared-exc-tb" in AVOID,
        "MAIN_CATCH_BASE": "runsync-base" in AVOID,
    }
    _CAPTURE.trace = trace
    try:
        exec(compile(PRELUDE + body + TAIL, "<prog>", "exec"), ns)
    except Exception as e:  # the harness itself failed
        trace.append(["HARNESS", type(e).__name__, str(e)])
    finally:
        try:
            io.close(all_fds=True)
        except Exception:
            pass
        aloop = getattr(io, "asyncio_loop", None)
        if aloop is not None and not aloop.is_closed():
            aloop.close()
        asyncio.set_event_loop(None)
        # (ns is not cleared: the collector finalises suspended generators
        # while their globals are intact).  What runs now (finally blocks
        # of abandoned coroutines, GC-timed logs) is compared as a
        # multiset: the order objects die in is not part of the contract.
        td = []
        sink[0] = td
        _CAPTURE.trace = td
        del ns, io
        gc.collect()
        _CAPTURE.trace = None
        if "task-keepalive" in AVOID:
            # Tornado never frees the pending Tasks (a class-level set), so
            # their coroutines' finally blocks never run there
            td = [e for e in td if not (len(e) == 3 and e[2] == "finally")]
        if td:
            trace.append(["TEARDOWN"] + sorted(
                json.dumps(e, default=repr) for e in td))
    return json.loads(json.dumps(trace, default=repr))


# --------------------------------------------------------------------------
# "installed": upstream Tornado's modules after tornado_cgen.install().
#
# install() patches tornado.gen, tornado.ioloop and asyncio's event loop
# policy for the whole process, so it must never run where the "tornado"
# oracle (or a pytest session) runs: each process that runs programs gets
# one helper subprocess (``--installed-server``) that calls install() first
# and then runs the programs sent to it, one JSON line each way.  A helper
# that dies or stops answering gives a HARNESS trace (a divergence the
# minimiser can shrink) and is replaced for the next program.

_IN_SERVER = False          # this process is the helper (install() is on)
SERVER_TIMEOUT = 30.0       # seconds one program may take in the helper
                            # (under the driver's --stall)


class InstalledServer:
    _current = None

    @classmethod
    def get(cls):
        if cls._current is None:
            cls._current = cls()
        return cls._current

    def __init__(self):
        import atexit
        import importlib.util
        import site
        env = dict(os.environ)
        # The tornado_cgen this process would import (the source tree, a
        # sanitiser build on PYTHONPATH), first; an installed one is the
        # helper's too.
        spec = importlib.util.find_spec("tornado_cgen")
        path = []
        if spec is not None:
            where = os.path.dirname(os.path.dirname(spec.origin))
            if where not in site.getsitepackages():
                path.append(where)
        if env.get("PYTHONPATH"):
            path.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(path)
        self.p = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--installed-server"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
            text=True, cwd=ROOT)
        atexit.register(self.close)

    def close(self):
        p = self.p
        if InstalledServer._current is self:
            InstalledServer._current = None
        if p.poll() is None:
            try:
                p.stdin.close()
                p.wait(5)
            except Exception:
                p.kill()
                p.wait()

    def run(self, body, run_mode, hang, asyncio_log):
        import selectors
        req = {"body": body, "run_mode": run_mode, "hang": hang,
               "asyncio_log": asyncio_log, "strict": STRICT,
               "avoid": sorted(AVOID)}
        try:
            self.p.stdin.write(json.dumps(req) + "\n")
            self.p.stdin.flush()
            with selectors.DefaultSelector() as sel:
                sel.register(self.p.stdout, selectors.EVENT_READ)
                ready = sel.select(SERVER_TIMEOUT)
            line = self.p.stdout.readline() if ready else None
        except (BrokenPipeError, OSError):
            line = ""
        if line and line.endswith("\n"):
            return json.loads(line)
        if line is None:
            why = "no answer in %gs (killed)" % SERVER_TIMEOUT
            self.p.kill()
        else:
            why = "died"
        rc = self.p.wait()
        self.close()
        if why == "died":
            why += " (rc %s)" % rc
        return [["HARNESS", "installed", why]]


def installed_server():
    """The helper's main loop: install(), then one program per line."""
    global _IN_SERVER, STRICT
    try:   # die with the worker that started us (a killed hung worker)
        import ctypes
        import signal
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except Exception:
        pass
    # The protocol has stdout to itself: programs' prints go to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    import tornado_cgen
    tornado_cgen.install()
    _IN_SERVER = True
    for line in sys.stdin:
        req = json.loads(line)
        STRICT = req["strict"]
        AVOID.clear()
        AVOID.update(req["avoid"])
        trace = run_source("installed", req["body"], req["run_mode"],
                           req["hang"], req["asyncio_log"])
        out.write(json.dumps(trace) + "\n")
        out.flush()
    return 0


# --------------------------------------------------------------------------
# Program generation.
#
# A program is a dict:
#   {'coros': [coro, ...], 'nF': int, 'init': [[k, how], ...],
#    'run': 'timeout'|'stop', 'shape': str}
# coro: {'kind': 'gen'|'plain'|'async', 'steps': [step, ...], 'final': [...]}
# coroutine i may call coroutine j only for j > i (no recursion).

LEAF_FEATURES = ["done", "fail", "soon", "later", "soonfail", "moment",
                 "none", "sleep0", "call", "F", "cfdone", "cfexec", "bad",
                 "maybe", "cancel"]

SHAPES = {
    "basic": dict(kinds=["gen"], leaves=["done", "fail", "soon", "later",
                                         "moment", "none", "sleep0", "call"],
                  steps=["y"], finals=["ret", "Ret", "raise", "none"]),
    "kinds": dict(kinds=["gen", "plain", "async"],
                  leaves=["done", "fail", "soon", "later", "moment", "none",
                          "sleep0", "call", "maybe", "bad", "K", "aw"],
                  steps=["y", "fire", "pstate", "keep", "cur", "dcb"],
                  finals=["ret", "Ret", "raise", "none", "stopiter",
                          "retfut"]),
    "multi": dict(kinds=["gen", "async"],
                  leaves=["done", "fail", "soon", "later", "soonfail",
                          "moment", "none", "sleep0", "call", "bad"],
                  compound=["list", "dict", "multi"],
                  steps=["y"], finals=["ret", "raise", "none"]),
    "shared": dict(kinds=["gen", "plain", "async"],
                   leaves=["done", "soon", "moment", "call", "F", "K"],
                   compound=["list"],
                   steps=["y", "resolve", "state", "fire", "spawn",
                          "pstate", "keep", "dcb"],
                   finals=["ret", "raise", "none"], nF=(1, 3)),
    "cancel": dict(kinds=["gen", "async", "plain"],
                   leaves=["done", "soon", "fail", "moment", "call", "F",
                           "cancel"],
                   compound=["list", "dict"],
                   steps=["y", "resolve", "state", "fire", "pstate"],
                   finals=["ret", "raise", "raisec", "none"], nF=(1, 3),
                   runs=["timeout", "stop"], cancel=True),
    "timeout": dict(kinds=["gen", "async"],
                    leaves=["done", "fail", "soon", "later", "soonfail",
                            "sleep0", "call", "F"],
                    compound=["list", "wt"],
                    steps=["y", "resolve", "state"],
                    finals=["ret", "raise", "none"], nF=(0, 2),
                    runs=["timeout", "stop"]),
    "waititer": dict(kinds=["gen", "async"],
                     leaves=["done", "fail", "soon", "later", "soonfail",
                             "sleep0", "call", "F"],
                     compound=["list"],
                     steps=["y", "wi", "resolve"],
                     finals=["ret", "raise", "none"], nF=(0, 2)),
    "cv": dict(kinds=["gen", "plain", "async"],
               leaves=["done", "soon", "moment", "none", "sleep0", "call",
                       "fail"],
               compound=["list"],
               steps=["y", "cvset", "cvget", "cvreset", "cvresetg", "fire",
                      "spawn"],
               finals=["ret", "raise", "none"], cv=True),
    "log": dict(kinds=["gen", "plain", "async"],
                leaves=["done", "fail", "soon", "soonfail", "moment",
                        "call", "F"],
                compound=["list", "multi", "dict"],
                steps=["y", "spawn", "cbraise", "cbcoro", "af", "fire",
                       "resolve", "dcb", "gc"], fin=True,
                finals=["ret", "raise", "none"], nF=(0, 2)),
    "loop": dict(kinds=["gen", "plain", "async"],
                 leaves=["done", "fail", "soon", "later", "sleep0", "call",
                         "F", "aw", "moment", "newf"],
                 compound=["list"],
                 steps=["y", "tmo", "tmoabs", "rmtmo", "cbkw", "dcb",
                        "dcbraise", "cbraise", "resolve", "fire", "spawn",
                        "gc", "cbcoro"],
                 finals=["ret", "raise", "none", "boom"], nF=(0, 2),
                 fin=True),
    "threads": dict(kinds=["gen", "async"],
                    leaves=["done", "fail", "soon", "later", "moment",
                            "none", "sleep0", "call", "cfexec", "cfdone"],
                    compound=["list", "dict"],
                    steps=["y"], finals=["ret", "raise", "none"],
                    sequential=True),
    "all": dict(kinds=["gen", "plain", "async"],
                leaves=["done", "fail", "soon", "later", "soonfail",
                        "moment", "none", "sleep0", "call", "F", "bad",
                        "maybe", "cancel", "K", "aw"],
                compound=["list", "dict", "multi", "wt"],
                steps=["y", "y", "wi", "resolve", "state", "fire", "spawn",
                       "cbraise", "cbcoro", "af", "cvset", "cvget",
                       "cvreset", "pstate", "keep", "dcb", "cur", "tmo",
                       "tmoabs", "rmtmo", "cbkw", "dcbraise"],
                finals=["ret", "Ret", "raise", "raisec", "none", "stopiter",
                        "retfut", "boom"],
                nF=(0, 3), runs=["timeout", "stop"], cv=True, cancel=True),
}
SHAPE_ORDER = ["basic", "kinds", "multi", "shared", "cancel", "timeout",
               "waititer", "cv", "log", "threads", "loop", "all"]

CANCEL_LEAVES = {"cancel"}


class Gen:
    def __init__(self, rng, shape, known, avoid=()):
        self.avoid = set(avoid)
        self.r = rng
        self.shape = shape
        self.sp = SHAPES[shape]
        self.known = known
        self.val = 0
        # K1 (chain-cancel): with_timeout/WaitIterator never see a cancelled
        # future unless asked.  Decided per program: either those, or
        # cancellation.
        self.allow_cancel = True
        self.allow_chain = True
        if "chain-cancel" not in known:
            coin = self.r.random() < 0.5
            sp = self.sp
            has_chain = "wi" in sp["steps"] or "wt" in sp.get("compound", ())
            has_cancel = sp.get("cancel") or "resolve" in sp["steps"] or \
                sp.get("nF", (0, 0))[1] > 0
            if shape in ("timeout", "waititer"):
                self.allow_cancel = False
            elif has_chain and has_cancel:
                if coin:
                    self.allow_cancel = False
                else:
                    self.allow_chain = False

    def v(self):
        self.val += 1
        return self.val

    def leaves(self, ctx):
        ls = list(self.sp["leaves"])
        if not self.allow_cancel:
            ls = [x for x in ls if x not in CANCEL_LEAVES]
        if ctx.get("future_only"):
            ls = [x for x in ls if x not in ("moment", "none", "bad",
                                            "cfdone", "cfexec")]
            if "timeout-nonfuture" not in self.known:
                ls = [x for x in ls if x != "aw"]
        if ctx.get("no_call"):
            ls = [x for x in ls if x != "call"]
        if "newf" in ls and ctx["kind"] == "async" and \
                "task-keepalive" in self.avoid:
            ls.remove("newf")
        if ctx.get("no_aw"):
            ls = [x for x in ls if x not in ("aw", "cancel")]
        if not ctx.get("top"):
            # Tornado's multi() sets its result from the executor thread
            # (future_add_done_callback on a concurrent future), which is
            # racy upstream: only a directly yielded one is safe.
            ls = [x for x in ls if x != "cfexec"]
        if ctx["i"] + 1 >= ctx["n"]:
            ls = [x for x in ls if x != "call"]
        if ctx["nF"] == 0:
            ls = [x for x in ls if x != "F"]
        if ctx["kind"] == "plain" or not ctx.get("has_keep"):
            ls = [x for x in ls if x != "K"]
        if "cf-done" not in self.known:
            # (even in a sequential program the extra turns show, e.g. in
            # the order of multi's "Multiple exceptions" logs)
            ls = [x for x in ls if x != "cfdone"]
        return ls or ["done"]

    def leaf(self, ctx):
        kind = self.r.choice(self.leaves(ctx))
        if kind == "newf":
            return ["newf"]
        if kind in ("done", "soon", "later", "maybe", "cfdone", "cfexec"):
            return [kind, self.v()]
        if kind in ("fail", "soonfail"):
            return [kind, self.r.choice(["ValueError", "KeyError"]),
                    "e%d" % self.v()]
        if kind == "call":
            return ["call", self.r.randrange(ctx["i"] + 1, ctx["n"])]
        if kind == "F":
            return ["F", self.r.randrange(ctx["nF"])]
        if kind == "aw":
            sub = dict(ctx, future_only=True, no_aw=True)
            return ["aw", self.leaf(sub)]
        if kind == "cancel":
            sub = self.r.choice(["newf", "soon", "call", "F", "later"])
            if sub == "call" and ctx["i"] + 1 >= ctx["n"]:
                sub = "newf"
            if sub == "F" and ctx["nF"] == 0:
                sub = "newf"
            if sub == "newf":
                inner = ["newf"]
            elif sub in ("soon", "later"):
                inner = [sub, self.v()]
            elif sub == "call":
                inner = ["call", self.r.randrange(ctx["i"] + 1, ctx["n"])]
            else:
                inner = ["F", self.r.randrange(ctx["nF"])]
            return ["cancel", inner]
        return [kind]

    def yieldable(self, ctx, depth=0):
        comp = list(self.sp.get("compound", []))
        if not self.allow_chain:
            comp = [c for c in comp if c != "wt"]
        if ctx.get("future_only"):
            comp = [c for c in comp if c not in ("list", "dict")]
        if not comp or depth >= 2 or self.r.random() < 0.55:
            return self.leaf(dict(ctx, top=depth == 0))
        c = self.r.choice(comp)
        sub = dict(ctx)
        if self.sp.get("sequential"):
            sub["no_call"] = True
        if c in ("list", "dict", "multi"):
            n = self.r.choice([0, 1, 2, 2, 3, 4])
            items = [self.yieldable(sub, depth + 1) for _ in range(n)]
            if c == "list":
                return ["list", items]
            if c == "dict":
                return ["dict", [["k%d" % j, it] for j, it in
                                 enumerate(items)]]
            quiet = self.r.choice(["()", "ValueError", "(ValueError, KeyError)",
                                   "KeyError"])
            if "quiet-nontype" in self.known and self.r.random() < 0.2:
                quiet = "[ValueError]"
            form = self.r.choice(["list", "dict"])
            return ["multi", form, items, quiet]
        if c == "wt":
            mode = self.r.choice(["exp", "far", "abs_exp", "abs_far"])
            if mode == "abs_exp" and "wt-abs-deadline" in self.avoid:
                mode = "abs_far"
            sub["future_only"] = "timeout-nonfuture" not in self.known
            inner = self.yieldable(sub, depth + 1)
            quiet = self.r.choice([None, None, "ValueError"])
            msg = self.r.choice([None, None, "'late'"])
            return ["wt", mode, inner, quiet, msg]
        return self.leaf(ctx)

    def step(self, ctx):
        steps = self.sp["steps"]
        if not self.allow_chain:
            steps = [x for x in steps if x != "wi"] or ["y"]
        if "task-keepalive" in self.avoid:
            steps = [x for x in steps if x != "gc"] or ["y"]
        st = self.r.choice(steps)
        kind = ctx["kind"]
        can_call = ctx["i"] + 1 < ctx["n"]
        if kind == "plain" and st in ("y", "wi", "af", "keep", "dcb",
                                      "dcbraise"):
            st = self.r.choice(["fire", "resolve", "state", "pstate",
                                "cvset", "cvget", "spawn"])
            if st not in self.sp["steps"]:
                st = "pstate"
        if st in ("fire", "spawn", "cbcoro") and not can_call:
            st = "y" if kind != "plain" else "pstate"
        if st in ("resolve", "state") and ctx["nF"] == 0:
            st = "y" if kind != "plain" else "pstate"
        if kind == "plain" and st == "y":
            st = "pstate"
        if st == "y":
            wraps = ["", "e", "e", "eh"]
            if self.allow_cancel:
                wraps.append("ec")
            if "boom" in self.sp["finals"]:
                wraps.append("eb")
            if self.sp.get("fin"):
                wraps += ["f", "f"]
            wrap = self.r.choice(wraps)
            if wrap == "eh":
                return ["y", wrap, self.yieldable(ctx), self.yieldable(ctx)]
            return ["y", wrap, self.yieldable(ctx)]
        if st == "wi":
            n = self.r.choice([1, 2, 3, 3])
            sub = dict(ctx, future_only=True)
            items = [self.leaf(sub) for _ in range(n)]
            if self.r.random() < 0.15 and items:
                items.append(copy.deepcopy(self.r.choice(items)))
            form = self.r.choice(["args", "kw", "async"]
                                 if kind == "async" else ["args", "kw"])
            wrap = self.r.choice(["e", "ec"] if self.allow_cancel else ["e"])
            return ["wi", wrap, form, items]
        if st in ("fire", "spawn", "cbcoro"):
            return [st, self.r.randrange(ctx["i"] + 1, ctx["n"])]
        if st == "resolve":
            hows = ["r", "x", "raw", "cb", "later"]
            if self.allow_cancel:
                hows.append("c")
            return ["resolve", self.r.randrange(ctx["nF"]),
                    self.r.choice(hows)]
        if st == "state":
            return ["state", self.r.randrange(ctx["nF"])]
        if st in ("af", "keep", "dcb", "dcbraise"):
            sub = dict(ctx, future_only=True)
            return [st, self.leaf(sub)]
        return [st]

    def program(self):
        r = self.r
        n = r.randrange(1, 6)
        lo, hi = self.sp.get("nF", (0, 0))
        nF = r.randint(lo, hi)
        coros = []
        for i in range(n):
            kinds = list(self.sp["kinds"])
            if i == 0 and "plain" in kinds and r.random() < 0.8:
                kinds.remove("plain")
            kind = r.choice(kinds)
            ctx = {"i": i, "n": n, "nF": nF, "kind": kind}
            steps = []
            for _ in range(r.randrange(0, 6)):
                steps.append(self.step(ctx))
                if steps[-1][0] == "keep":
                    ctx["has_keep"] = True
            finals = list(self.sp["finals"])
            if not self.allow_cancel:
                finals = [f for f in finals if f != "raisec"]
            if kind == "async":
                finals = [f for f in finals if f != "retfut"]
            if kind == "async":
                finals = [f for f in finals if f != "Ret"]
                if "base-child" in self.avoid:
                    finals = [f for f in finals if f != "boom"]
            final = [r.choice(finals)]
            if final[0] in ("ret", "Ret"):
                final.append(self.v())
            coros.append({"kind": kind, "steps": steps, "final": final})
        # make every coroutine reachable from main
        prog = {"coros": coros}
        for j in range(1, n):
            used = _used(prog)
            if j in used:
                continue
            i = r.choice(sorted(x for x in used if x < j))
            c = coros[i]
            if c["kind"] == "plain" or (r.random() < 0.15 and not
                                        self.sp.get("sequential")):
                st = ["fire", j]
            else:
                y = ["call", j]
                if r.random() < 0.3 and "list" in self.sp.get("compound", ()) \
                        and not self.sp.get("sequential"):
                    ctx = {"i": i, "n": n, "nF": nF, "kind": c["kind"],
                           "no_call": True}
                    y = ["list", [y, self.leaf(ctx)]]
                st = ["y", r.choice(["", "e", "e"]), y]
            c["steps"].insert(r.randrange(len(c["steps"]) + 1), st)
        if "spawn-ctx" in self.avoid and self.sp.get("cv"):
            for c in coros:
                for st in c["steps"]:
                    if st[0] in ("spawn", "cbcoro") and \
                            coros[st[1]]["kind"] == "async":
                        st[0] = "fire"
        init = []
        hows = ["r", "x", "cb", "later", "none"]
        if self.allow_cancel:
            hows.append("c")
        for k in range(nF):
            init.append([k, r.choice(hows)])
        run = r.choice(self.sp.get("runs", ["timeout"]))
        return {"coros": coros, "nF": nF, "init": init, "run": run,
                "shape": self.shape, "cv": bool(self.sp.get("cv"))}


def shape_for_seed(seed, shape):
    if shape == "mix":
        return SHAPE_ORDER[seed % len(SHAPE_ORDER)]
    return shape


def generate(seed, shape="mix", known=(), avoid=()):
    sh = shape_for_seed(seed, shape)
    rng = random.Random("%s:%d" % (sh, seed))
    return Gen(rng, sh, set(known), avoid).program()


# --------------------------------------------------------------------------
# Rendering a program to source.

class Render:
    def __init__(self, prog):
        self.p = prog
        self.lines = []

    def w(self, ind, s):
        self.lines.append("    " * ind + s)

    def fut(self, y, native):
        """An expression that is a Future (for WaitIterator, add_future, fire)."""
        if y[0] == "call" and self.p["coros"][y[1]]["kind"] == "async":
            return "gen.convert_yielded(%s)" % self.expr(y, native, True)
        return self.expr(y, native, True)

    def expr(self, y, native, inner=False):
        """``y`` as an expression to yield (native: to await)."""
        k = y[0]
        if k in ("done", "soon", "later"):
            return "%s(%d)" % (k, y[1])
        if k == "maybe":
            return "gen.maybe_future(%d)" % y[1]
        if k == "cfdone":
            return "cf_done(%d)" % y[1]
        if k == "cfexec":
            if native:  # a concurrent future is not awaitable
                return "gen.with_timeout(timedelta(seconds=100), cf_exec(%d))" \
                    % y[1]
            return "cf_exec(%d)" % y[1]
        if k == "fail":
            return "failed(%s(%r))" % (y[1], y[2])
        if k == "soonfail":
            return "soon_fail(%s(%r))" % (y[1], y[2])
        if k in ("moment", "none"):
            if native and not inner:
                return "asyncio.sleep(0)"
            return "gen.moment" if k == "moment" else "None"
        if k == "sleep0":
            return "gen.sleep(0)"
        if k == "bad":
            return "42"
        if k == "call":
            return "c%d(a + '/%d')" % (y[1], self.site)
        if k == "F":
            return "F[%d]" % y[1]
        if k == "newf":
            return "Future()"
        if k == "K":
            return "(K[-1] if K else done(0))"
        if k == "aw":
            return "Aw(%s)" % self.fut(y[1], native)
        if k == "cancel":
            return "soon_cancel(%s)" % self.fut(y[1], native)
        if k == "list":
            s = "[%s]" % ", ".join(self.expr(x, native, True) for x in y[1])
            return "gen.multi(%s)" % s if native and not inner else s
        if k == "dict":
            s = "{%s}" % ", ".join("%r: %s" % (key, self.expr(x, native, True))
                                   for key, x in y[1])
            return "gen.multi(%s)" % s if native and not inner else s
        if k == "multi":
            _, form, items, quiet = y
            if form == "list":
                s = "[%s]" % ", ".join(self.expr(x, native, True)
                                       for x in items)
            else:
                s = "{%s}" % ", ".join("'k%d': %s" % (j, self.expr(x, native,
                                                                   True))
                                       for j, x in enumerate(items))
            if quiet == "()":
                return "gen.multi(%s)" % s
            return "gen.multi(%s, quiet_exceptions=%s)" % (s, quiet)
        if k == "wt":
            _, mode, inner_y, quiet, msg = y
            t = {"exp": "timedelta(0)", "far": "timedelta(seconds=100)",
                 "abs_exp": "io.time() - 1",
                 "abs_far": "io.time() + 100"}[mode]
            extra = ""
            if quiet:
                extra += ", quiet_exceptions=%s" % quiet
            if msg:
                extra += ", message=%s" % msg
            return "gen.with_timeout(%s, %s%s)" % (
                t, self.expr(inner_y, native, True), extra)
        raise ValueError(y)

    def catch(self, ind, wrap, i, tag="exc"):
        self.w(ind, "except Exception as e:")
        self.w(ind + 1, "T(a, %d, %r, X(e), CX(e), TB(e))" % (i, tag))
        if "c" in wrap:
            self.w(ind, "except asyncio.CancelledError as e:")
            self.w(ind + 1, "T(a, %d, 'cancelled')" % i)
        if "b" in wrap:
            self.w(ind, "except Boom as e:")
            self.w(ind + 1, "T(a, %d, 'boom', X(e))" % i)

    def step(self, ind, st, i, native):
        self.site = i
        k = st[0]
        kw = "await" if native else "yield"
        if k == "y":
            wrap, y = st[1], st[2]
            body = ind
            if wrap == "f":
                self.w(ind, "try:")
                self.w(ind + 1, "v = %s %s" % (kw, self.expr(y, native)))
                self.w(ind + 1, "T(a, %d, N(v))" % i)
                self.w(ind, "finally:")
                self.w(ind + 1, "T(a, %d, 'finally')" % i)
                return
            if wrap:
                self.w(ind, "try:")
                body = ind + 1
            self.w(body, "v = %s %s" % (kw, self.expr(y, native)))
            self.w(body, "T(a, %d, N(v))" % i)
            if wrap == "eh":
                # yield again inside the handler: __context__ is legitimate
                self.catch(ind, "", i)
                self.w(ind + 1, "try:")
                self.w(ind + 2, "v = %s %s" % (kw, self.expr(st[3], native)))
                self.w(ind + 2, "T(a, %d, 'h', N(v))" % i)
                self.w(ind + 1, "except Exception as e2:")
                self.w(ind + 2, "T(a, %d, 'hexc', X(e2), CX(e2), TB(e2))" % i)
            elif wrap:
                self.catch(ind, wrap, i)
        elif k == "wi":
            wrap, form, items = st[1], st[2], st[3]
            futs = [self.fut(x, native) for x in items]
            if form == "kw":
                args = ", ".join("w%d=%s" % (j, f) for j, f in enumerate(futs))
            else:
                args = ", ".join(futs)
            if form == "async":
                self.w(ind, "try:")
                self.w(ind + 1, "async for v in gen.WaitIterator(%s):" % args)
                self.w(ind + 2, "T(a, %d, 'wi', N(v))" % i)
                self.catch(ind, wrap, i)
                return
            self.w(ind, "wi = gen.WaitIterator(%s)" % args)
            self.w(ind, "while not wi.done():")
            self.w(ind + 1, "try:")
            self.w(ind + 2, "v = %s wi.next()" % kw)
            self.w(ind + 2, "T(a, %d, 'wi', wi.current_index, N(v))" % i)
            self.w(ind + 1, "except Exception as e:")
            self.w(ind + 2, "T(a, %d, 'wi', wi.current_index, 'exc', X(e), "
                   "CX(e), TB(e))" % i)
            if "c" in wrap:
                self.w(ind + 1, "except asyncio.CancelledError as e:")
                self.w(ind + 2, "T(a, %d, 'wi', wi.current_index, "
                       "'cancelled')" % i)
        elif k == "keep":
            self.w(ind, "K.append(%s)" % self.fut(st[1], native))
        elif k == "dcb":
            self.w(ind, "%s.add_done_callback(lambda f: T(a, %d, 'dcb', S(f)))"
                   % (self.fut(st[1], native), i))
        elif k == "dcbraise":
            self.w(ind, "%s.add_done_callback(lambda f: boom(a + '/%d'))"
                   % (self.fut(st[1], native), i))
        elif k == "tmo":
            self.w(ind, "io.add_timeout(timedelta(0), T, a, %d, 'tmo')" % i)
        elif k == "tmoabs":
            self.w(ind, "io.add_timeout(io.time() - 1, T, a, %d, 'tmoabs')" % i)
        elif k == "rmtmo":
            self.w(ind, "io.remove_timeout(io.call_later(0, T, a, %d, 'rm'))"
                   % i)
        elif k == "gc":
            self.w(ind, "gc.collect()")
        elif k == "cbkw":
            self.w(ind, "io.add_callback(KW, a, %d, x=1, y=2)" % i)
        elif k == "cur":
            self.w(ind, "T(a, %d, 'cur', IOL.current() is io)" % i)
        elif k == "fire":
            self.w(ind, "P.append(%s)" % self.fut(["call", st[1]], native))
            self.w(ind, "T(a, %d, 'fire', S(P[-1]))" % i)
        elif k == "spawn":
            self.w(ind, "io.spawn_callback(c%d, a + '/%d')" % (st[1], i))
        elif k == "cbcoro":
            self.w(ind, "io.add_callback(c%d, a + '/%d')" % (st[1], i))
        elif k == "cbraise":
            self.w(ind, "io.add_callback(boom, a + '/%d')" % i)
        elif k == "af":
            self.w(ind, "io.add_future(%s, lambda f: T(a, %d, 'af', S(f)))"
                   % (self.fut(st[1], native), i))
        elif k == "resolve":
            f, how = st[1], st[2]
            code = {"r": "setr(F[%d], %d)" % (f, 100 + i),
                    "x": "setx(F[%d], KeyError('F%d'))" % (f, f),
                    "c": "F[%d].cancel()" % f,
                    "raw": "F[%d].set_result(%d)" % (f, 200 + i),
                    "cb": "io.add_callback(setr, F[%d], %d)" % (f, 300 + i),
                    "later": "io.call_later(0, setr, F[%d], %d)" % (f, 400 + i),
                    }[how]
            self.w(ind, code)
        elif k == "state":
            self.w(ind, "T(a, %d, 'st', S(F[%d]))" % (i, st[1]))
        elif k == "pstate":
            self.w(ind, "T(a, %d, 'pst', [S(f) for f in P])" % i)
        elif k == "cvset":
            self.w(ind, "tok.append(CV.set(a + '.%d')); "
                   "TOKG.append(tok[-1])" % i)
        elif k == "cvget":
            self.w(ind, "T(a, %d, 'cv', CV.get())" % i)
        elif k in ("cvreset", "cvresetg"):
            lst = "tok" if k == "cvreset" else "TOKG"
            self.w(ind, "try:")
            self.w(ind + 1, "if %s: CV.reset(%s.pop())" % (lst, lst))
            self.w(ind, "except (ValueError, RuntimeError) as e:")
            self.w(ind + 1, "T(a, %d, 'cvr', X(e))" % i)
        else:
            raise ValueError(st)

    def coro(self, idx, c):
        kind = c["kind"]
        native = kind == "async"
        if kind == "async":
            self.w(0, "async def c%d(a):" % idx)
        else:
            self.w(0, "@gen.coroutine")
            self.w(0, "def c%d(a):" % idx)
        if self.p["cv"]:
            self.w(1, "T(a, 'enter', CV.get())")
        else:
            self.w(1, "T(a, 'enter')")
        if idx == 0:
            if self.p["nF"]:
                self.w(1, "F[:] = [Future() for _ in range(%d)]" % self.p["nF"])
            for k, how in self.p["init"]:
                code = {"r": "io.add_callback(setr, F[%d], %d)" % (k, 10 + k),
                        "x": "io.add_callback(setx, F[%d], ValueError('F%d'))"
                             % (k, k),
                        "cb": "io.add_callback(io.add_callback, setr, F[%d], "
                              "%d)" % (k, 20 + k),
                        "later": "io.call_later(0, setr, F[%d], %d)"
                                 % (k, 30 + k),
                        "c": "io.add_callback(F[%d].cancel)" % k,
                        "none": None}[how]
                if code:
                    self.w(1, code)
        if any(s[0] in ("cvset", "cvreset") for s in c["steps"]):
            self.w(1, "tok = []")
        if any(s[0] == "keep" for s in c["steps"]) or \
                '["K"]' in json.dumps(c["steps"]):
            self.w(1, "K = []")
        for i, st in enumerate(c["steps"]):
            self.step(1, st, i, native)
        fin = c["final"]
        self.site = len(c["steps"])
        if fin[0] == "ret":
            self.w(1, "return [a, %d]" % fin[1])
        elif fin[0] == "Ret":
            self.w(1, "raise gen.Return([a, %d])" % fin[1])
        elif fin[0] == "raise":
            self.w(1, "raise ValueError(a)")
        elif fin[0] == "raisec":
            self.w(1, "raise asyncio.CancelledError()")
        elif fin[0] == "stopiter":
            self.w(1, "raise StopIteration(5)")
        elif fin[0] == "boom":
            self.w(1, "raise Boom(a)")
        elif fin[0] == "retfut":
            self.w(1, "return done(7)")
        if kind == "gen" and not any(s[0] in ("y", "wi") for s in c["steps"]):
            self.w(1, "if False: yield")
        self.w(0, "")

    def render(self):
        self.lines = []
        for idx, c in enumerate(self.p["coros"]):
            self.coro(idx, c)
        return "\n".join(self.lines) + "\n"


def render(prog):
    return Render(prog).render()


def run_prog(prog, impls=IMPLS, hang=0.05, asyncio_log=False):
    body = render(prog)
    return {impl: run_source(impl, body, prog["run"], hang, asyncio_log)
            for impl in impls}


def diverges(traces):
    ref = traces["tornado"]
    return [impl for impl in traces if impl != "tornado" and traces[impl] != ref]


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


# --------------------------------------------------------------------------
# Minimisation (greedy delta debugging on the program structure).

def _used(prog):
    used = {0}
    changed = True

    def walk(y, out):
        if isinstance(y, list):
            if y and y[0] == "call":
                out.add(y[1])
            for x in y:
                walk(x, out)
    while changed:
        changed = False
        for i in sorted(used):
            out = set()
            for st in prog["coros"][i]["steps"]:
                if st[0] in ("fire", "spawn", "cbcoro"):
                    out.add(st[1])
                walk(st, out)
            if not out <= used:
                used |= out
                changed = True
    return used


def prune(prog):
    """Drop unreachable coroutines, renumbering the calls."""
    used = sorted(_used(prog))
    if len(used) == len(prog["coros"]):
        return prog
    ren = {old: new for new, old in enumerate(used)}
    p = copy.deepcopy(prog)

    def fix(y):
        if isinstance(y, list):
            if y and y[0] == "call" and isinstance(y[1], int):
                y[1] = ren[y[1]]
            for x in y:
                fix(x)
    p["coros"] = [p["coros"][i] for i in used]
    for c in p["coros"]:
        for st in c["steps"]:
            if st[0] in ("fire", "spawn", "cbcoro"):
                st[1] = ren[st[1]]
            else:
                fix(st)
    return p


def _subtrees(y, path=()):
    """(path, node) for every yieldable node inside ``y``."""
    yield path, y
    k = y[0]
    if k == "list":
        for j, x in enumerate(y[1]):
            yield from _subtrees(x, path + (1, j))
    elif k == "dict":
        for j, kv in enumerate(y[1]):
            yield from _subtrees(kv[1], path + (1, j, 1))
    elif k == "multi":
        for j, x in enumerate(y[2]):
            yield from _subtrees(x, path + (2, j))
    elif k == "wt":
        yield from _subtrees(y[2], path + (2,))
    elif k == "cancel":
        yield from _subtrees(y[1], path + (1,))


def _get(root, path):
    for p in path:
        root = root[p]
    return root


def _set(root, path, val):
    if not path:
        return val
    _get(root, path[:-1])[path[-1]] = val
    return root


def candidates(prog):
    """Simpler variants of ``prog``, roughly most-reducing first."""
    P = prog
    # drop whole coroutines: replace calls to them by done()
    for ci in range(len(P["coros"]) - 1, 0, -1):
        p = copy.deepcopy(P)

        def repl(y):
            if isinstance(y, list):
                for j, x in enumerate(y):
                    if isinstance(x, list) and x and x[0] == "call" \
                            and x[1] == ci:
                        y[j] = ["done", 0]
                    else:
                        repl(x)
        for c in p["coros"]:
            c["steps"] = [s for s in c["steps"]
                          if not (s[0] in ("fire", "spawn", "cbcoro")
                                  and s[1] == ci)]
            repl(c["steps"])
        yield prune(p)
    # drop steps
    for ci, c in enumerate(P["coros"]):
        for si in range(len(c["steps"]) - 1, -1, -1):
            p = copy.deepcopy(P)
            del p["coros"][ci]["steps"][si]
            yield prune(p)
    # shared futures: drop initial resolvers
    for j in range(len(P["init"])):
        if P["init"][j][1] != "none":
            p = copy.deepcopy(P)
            p["init"][j][1] = "none"
            yield p
    # finals
    for ci, c in enumerate(P["coros"]):
        if c["final"] != ["none"]:
            p = copy.deepcopy(P)
            p["coros"][ci]["final"] = ["none"]
            yield p
    # simplify yieldables: replace a node by one of its children / a leaf,
    # drop list elements, drop the try
    for ci, c in enumerate(P["coros"]):
        for si, st in enumerate(c["steps"]):
            if st[0] == "y" and st[1]:
                p = copy.deepcopy(P)
                p["coros"][ci]["steps"][si][1] = ""
                yield p
            if st[0] == "wi":
                for j in range(len(st[3])):
                    if len(st[3]) > 1:
                        p = copy.deepcopy(P)
                        del p["coros"][ci]["steps"][si][3][j]
                        yield prune(p)
            if st[0] not in ("y", "af", "keep", "dcb", "dcbraise"):
                continue
            yi = 2 if st[0] == "y" else 1
            for path, node in list(_subtrees(st[yi])):
                k = node[0]
                kids = []
                if k == "list":
                    kids = node[1]
                elif k == "dict":
                    kids = [kv[1] for kv in node[1]]
                elif k == "multi":
                    kids = node[2]
                elif k in ("wt",):
                    kids = [node[2]]
                elif k == "cancel":
                    kids = [node[1]] if node[1][0] != "newf" else []
                for kid in kids:
                    if kid[0] in ("moment", "none", "bad") and st[0] != "y":
                        continue
                    p = copy.deepcopy(P)
                    s = p["coros"][ci]["steps"][si]
                    s[yi] = _set(s[yi], path, copy.deepcopy(kid))
                    yield prune(p)
                if k in ("list", "dict", "multi"):
                    arr = node[2] if k == "multi" else node[1]
                    for j in range(len(arr)):
                        p = copy.deepcopy(P)
                        s = p["coros"][ci]["steps"][si]
                        n2 = _get(s[yi], path)
                        del (n2[2] if k == "multi" else n2[1])[j]
                        yield prune(p)
                if k == "multi" and node[3] != "()":
                    p = copy.deepcopy(P)
                    _get(p["coros"][ci]["steps"][si][yi], path)[3] = "()"
                    yield p
                if k == "multi" and node[1] == "dict":
                    p = copy.deepcopy(P)
                    _get(p["coros"][ci]["steps"][si][yi], path)[1] = "list"
                    yield p
                if k == "wt" and (node[3] or node[4]):
                    p = copy.deepcopy(P)
                    n2 = _get(p["coros"][ci]["steps"][si][yi], path)
                    n2[3] = n2[4] = None
                    yield p
                if k not in ("done", "call") and path != () and \
                        st[0] == "y":
                    p = copy.deepcopy(P)
                    s = p["coros"][ci]["steps"][si]
                    s[yi] = _set(s[yi], path, ["done", 0])
                    yield p
    # kinds: async/plain -> gen
    for ci, c in enumerate(P["coros"]):
        if c["kind"] != "gen":
            p = copy.deepcopy(P)
            p["coros"][ci]["kind"] = "gen"
            yield p
    if P["run"] != "timeout":
        p = copy.deepcopy(P)
        p["run"] = "timeout"
        yield p
    if P["cv"]:
        p = copy.deepcopy(P)
        p["cv"] = False
        yield p
    if P["nF"] and not any("F" in json.dumps(c) for c in P["coros"]):
        p = copy.deepcopy(P)
        p["nF"] = 0
        p["init"] = []
        yield p


def size(prog):
    return len(render(prog))


def minimise(prog, still_bad, budget=600):
    """Greedy: take the first simpler candidate that still fails; repeat."""
    cur = prog
    tries = 0
    improved = True
    while improved and tries < budget:
        improved = False
        for cand in candidates(cur):
            if size(cand) >= size(cur):
                continue
            try:
                render(cand)
            except Exception:
                continue
            tries += 1
            if still_bad(cand):
                cur = cand
                improved = True
                break
            if tries >= budget:
                break
    return cur


def divergence_key(traces):
    """Which implementations disagree with upstream (the 'same bug' test)."""
    return tuple(sorted(diverges(traces)))


# --------------------------------------------------------------------------
# Reproducers.

REPRO_HEAD = r'''# difftest reproducer: python THIS.py [tornado|tcg|tcg-asyncio|installed]
import sys, asyncio, logging, concurrent.futures
impl = sys.argv[1] if len(sys.argv) > 1 else 'tornado'
if impl == 'installed':
    import tornado_cgen
    tornado_cgen.install()
if impl in ('tornado', 'installed'):
    from tornado import gen, ioloop, concurrent as tc
else:
    from tornado_cgen import gen, ioloop, concurrent as tc
Future = tc.Future
io = ioloop.IOLoop(asyncio_loop=asyncio.new_event_loop()) \
    if impl == 'tcg-asyncio' else ioloop.IOLoop()
EXE = concurrent.futures.ThreadPoolExecutor(2)
class H(logging.Handler):
    def emit(self, r):
        e = r.exc_info[1] if r.exc_info else None
        print('LOG', r.name, r.msg, e and X(e))
for _n in ('tornado.application', 'asyncio'):
    logging.getLogger(_n).addHandler(H())
    logging.getLogger(_n).propagate = False
def T(*a): print(*a)
STRICT = True
TB_SKIP_SHARED = False
MAIN_CATCH_BASE = False
TB_FILE = __file__
IOL = ioloop.IOLoop
RUN_MODE = %(run)r
HANG = %(hang)r
'''


def repro(prog, hang=0.05):
    return (REPRO_HEAD % {"run": prog["run"], "hang": hang} + PRELUDE +
            "\n# ---- program ----\n" + render(prog) + "# ---- driver ----" +
            TAIL + "EXE.shutdown()\n")


# --------------------------------------------------------------------------
# Worker: generate + run + compare a range of seeds, one JSON line each.

def features(prog):
    s = json.dumps(prog["coros"])
    out = set()
    for name in ("list", "dict", "multi", "wt", "cancel", "cfdone", "cfexec",
                 "wi", "fire", "spawn", "cbraise", "cbcoro", "af", "resolve",
                 "cvset", "cvreset", "cvresetg", "bad", "raisec", "stopiter",
                 "retfut", "soonfail", "later", "sleep0", "moment", "none",
                 "maybe"):
        if '"%s"' % name in s:
            out.add(name)
    for c in prog["coros"]:
        out.add("kind:" + c["kind"])
    out.add("run:" + prog["run"])
    if any(h == "c" for _, h in prog["init"]):
        out.add("init-cancel")
    return sorted(out)


def worker(args):
    known = set(args.known)
    _setup(args.asyncio_log)
    for seed in range(args.seed, args.seed + args.count):
        print(json.dumps({"start": seed}), flush=True)
        prog = generate(seed, args.shape, known, args.avoid)
        traces = run_prog(prog, args.impls, hang=args.hang,
                          asyncio_log=args.asyncio_log)
        bad = diverges(traces)
        res = {"seed": seed, "shape": prog["shape"], "ok": not bad}
        if bad:
            # Deterministic? (run again; a flaky program is reported as such)
            again = run_prog(prog, args.impls, hang=args.hang,
                             asyncio_log=args.asyncio_log)
            flaky = again != traces
            res["flaky"] = flaky
            res["impls"] = bad
            key = divergence_key(traces)
            if args.minimise and not flaky:
                def still(cand):
                    print(json.dumps({"hb": seed}), flush=True)
                    t = run_prog(cand, args.impls, hang=args.hang,
                                 asyncio_log=args.asyncio_log)
                    if divergence_key(t) != key:
                        return False
                    t2 = run_prog(cand, args.impls, hang=args.hang,
                                  asyncio_log=args.asyncio_log)
                    return t2 == t
                small = minimise(prog, still, args.budget)
            else:
                small = prog
            res["prog"] = small
            res["features"] = features(small)
            t = run_prog(small, args.impls, hang=args.hang,
                         asyncio_log=args.asyncio_log)
            res["traces"] = t
        print(json.dumps(res), flush=True)


# --------------------------------------------------------------------------
# Driver: workers in subprocesses; a crash or hang of one is a finding.

def spawn_worker(args, seed, count):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker",
           "--seed", str(seed), "--count", str(count), "--shape", args.shape,
           "--hang", str(args.hang), "--budget", str(args.budget),
           "--impls", ",".join(args.impls)]
    for k in args.known:
        cmd += ["--known", k]
    for k in args.avoid:
        cmd += ["--avoid", k]
    if not args.minimise:
        cmd.append("--no-minimise")
    if args.asyncio_log:
        cmd.append("--asyncio-log")
    if args.strict_messages:
        cmd.append("--strict-messages")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + \
        env.get("PYTHONPATH", "")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True, cwd=ROOT)


def crash_impls(args, seed):
    """Which implementations crash on ``seed`` alone (each in a subprocess)."""
    prog = generate(seed, args.shape, set(args.known), args.avoid)
    out = {}
    for impl in args.impls:
        code = ("import sys; sys.path.insert(0, %r); import difftest as d; "
                "p = d.generate(%d, %r, %r, %r); "
                "t = d.run_prog(p, impls=[%r], hang=%r)[%r]; "
                # ("installed" runs in a helper: its death is a trace)
                "sys.exit(70 if t and t[-1][0] == 'HARNESS' else 0)"
                % (HERE, seed, args.shape, list(args.known), list(args.avoid),
                   impl, args.hang, impl))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.join(ROOT, "python")
        try:
            r = subprocess.run([sys.executable, "-c", code], env=env,
                               capture_output=True, text=True, timeout=60)
            out[impl] = r.returncode
        except subprocess.TimeoutExpired:
            out[impl] = "hang"
    return out


def drive(args):
    import selectors
    seeds = list(range(args.seed, args.seed + args.count))
    chunk = max(1, min(args.chunk, (len(seeds) + args.jobs - 1) // args.jobs))
    todo = [(s, min(chunk, args.seed + args.count - s))
            for s in range(args.seed, args.seed + args.count, chunk)]
    running = {}
    sel = selectors.DefaultSelector()
    results = []
    crashes = []
    t0 = time.time()

    def start_next():
        while todo and len(running) < args.jobs:
            s, n = todo.pop(0)
            p = spawn_worker(args, s, n)
            running[p] = {"start": s, "end": s + n, "cur": None,
                          "t": time.time(), "buf": ""}
            sel.register(p.stdout, selectors.EVENT_READ, p)

    start_next()
    while running:
        events = sel.select(timeout=1.0)
        for key, _ in events:
            p = key.data
            st = running[p]
            line = p.stdout.readline()
            if line:
                msg = json.loads(line)
                st["t"] = time.time()
                if "hb" in msg:
                    pass
                elif "start" in msg:
                    st["cur"] = msg["start"]
                else:
                    results.append(msg)
                    if not msg["ok"]:
                        report_one(msg, args)
                continue
            # EOF: the worker ended
            sel.unregister(p.stdout)
            rc = p.wait()
            err = p.stderr.read()
            del running[p]
            if rc != 0 and st["cur"] is not None:
                seed = st["cur"]
                info = {"seed": seed, "rc": rc, "stderr": err[-2000:]}
                info["per_impl"] = crash_impls(args, seed)
                crashes.append(info)
                print("CRASH seed %d rc=%s per-impl=%s\n%s" % (
                    seed, rc, info["per_impl"], err[-1500:]), flush=True)
                if seed + 1 < st["end"]:
                    todo.insert(0, (seed + 1, st["end"] - seed - 1))
        now = time.time()
        for p, st in list(running.items()):
            if now - st["t"] > args.stall:
                print("HANG seed %s (no progress for %ds)" % (st["cur"],
                                                             args.stall),
                      flush=True)
                p.kill()
                st["t"] = now
        start_next()
    summarise(results, crashes, time.time() - t0, args)
    return 1 if (crashes or any(not r["ok"] for r in results)) else 0


def classify(msg):
    """Best guess at which known (K:) or found (F:) defect a divergence is."""
    prog, t = msg["prog"], msg["traces"]
    src = render(prog)
    ref = t["tornado"]
    tags = []
    for impl in msg["impls"]:
        ours = t[impl]
        i = first_diff(ref, ours)
        a = ref[i] if i < len(ref) else None
        b = ours[i] if i < len(ours) else None

        def logs(tr):
            return sum(1 for e in tr if e[0] == "LOG" and
                       e[3] == "Exception after Future was cancelled")
        def fin(tr):
            evs = []
            for e in tr:
                if e[0] == "TEARDOWN":
                    evs += [json.loads(x) for x in e[1:]]
                else:
                    evs.append(e)
            return [e for e in evs if (len(e) == 3 and e[2] == "finally") or
                    (e[0] == "LOG" and e[3].startswith("Task was destroyed"))]
        if logs(ours) > logs(ref):
            tags.append("K:multi-cancelled")
        elif fin(ours) != fin(ref) and "async def" in src:
            tags.append("F:task-keepalive")
        elif impl in ("tcg", "installed") and a and b and len(a) == 3 and len(b) == 3 and \
                a[1] == b[1] == "enter" and a[2] != b[2]:
            tags.append("F:spawn-ctx")
        elif impl == "tcg-asyncio" and "io.time() - 1" in src:
            tags.append("F:wt-abs-deadline")
        elif a and b and a[:-1] == b[:-1] and len(a) >= 6 and \
                a[2] in ("exc", "hexc") and a[-1] != b[-1]:
            tags.append("F:multi-shared-exc-tb")
        elif "Boom" in src and any(
                (e[0] == "LOG" and e[4] and
                 e[4][0] in ("AssertionError", "AttributeError")) or
                (e[0] == "RAISED" and e[1][0] == "AssertionError")
                for e in ref + ours):
            tags.append("F:runsync-base")
        elif "Boom" in src and re.search(r"async def c\d+\(a\):\n(    .*\n)*"
                                         r"    raise Boom", src):
            tags.append("F:base-child")
        elif "add_future(Aw(" in src or "WaitIterator(Aw(" in src:
            tags.append("K:timeout-nonfuture")
        elif "[ValueError]" in src:
            tags.append("K:quiet-nontype")
        elif re.search(r"with_timeout\([^,]+, (None|gen\.moment|42|Aw\()",
                       src):
            tags.append("K:timeout-nonfuture")
        elif re.search(r"soon_cancel|\.cancel\b|CancelledError\(\)", src) \
                and ("WaitIterator" in src or "with_timeout" in src):
            tags.append("K:chain-cancel")
        elif "cf_done" in src:
            tags.append("K:cf-done")
        else:
            tags.append("unclassified")
    return sorted(set(tags))


def report_one(msg, args):
    prog = msg["prog"]
    print("=" * 72)
    print("DIVERGENCE seed %d shape %s impls %s%s" % (
        msg["seed"], msg["shape"], ",".join(msg["impls"]),
        " (FLAKY)" if msg.get("flaky") else ""))
    print("features:", " ".join(msg["features"]))
    print("class:", " ".join(classify(msg)))
    if prog["run"] != "timeout":
        print("# RUN_MODE = %r (run_sync without timeout; io.stop after HANG)"
              % prog["run"])
    print(render(prog), end="")
    t = msg["traces"]
    ref = t["tornado"]
    for impl in t:
        if impl != "tornado" and t[impl] != ref:
            i = first_diff(ref, t[impl])
            print("-- first difference at event %d (tornado vs %s):" % (i, impl))
            for j in range(max(0, i - 2), min(len(ref), i + 3)):
                print("   tornado %s" % json.dumps(ref[j]))
            for j in range(max(0, i - 2), min(len(t[impl]), i + 3)):
                print("   %-7s %s" % (impl[:7], json.dumps(t[impl][j])))
    sys.stdout.flush()


def summarise(results, crashes, dt, args):
    from collections import Counter
    by_shape = Counter(r["shape"] for r in results)
    bad_shape = Counter(r["shape"] for r in results if not r["ok"])
    print("=" * 72)
    print("ran %d programs in %.1fs; divergent %d; crashes %d" % (
        len(results), dt, sum(not r["ok"] for r in results), len(crashes)))
    for sh in SHAPE_ORDER:
        if by_shape[sh]:
            print("  %-9s %5d programs, %4d divergent" % (sh, by_shape[sh],
                                                          bad_shape[sh]))
    classes = Counter()
    for r in results:
        if not r["ok"]:
            for tag in classify(r):
                classes[tag] += 1
    for tag, n in sorted(classes.items()):
        print("  class %-22s %4d  %s" % (tag, n, KNOWN.get(tag[2:]) or
                                         FOUND.get(tag[2:]) or ""))
    for c in crashes:
        print("  crash: seed %d rc %s per-impl %s" % (c["seed"], c["rc"],
                                                     c["per_impl"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "crashes": crashes}, f)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--shape", default="mix",
                    choices=["mix"] + SHAPE_ORDER,
                    help="program shape; 'mix' rotates through all by seed")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--chunk", type=int, default=250)
    ap.add_argument("--hang", type=float, default=0.05,
                    help="run_sync timeout (s) that ends a hung program")
    ap.add_argument("--stall", type=int, default=60,
                    help="kill a worker after this many seconds of silence")
    ap.add_argument("--budget", type=int, default=400,
                    help="minimiser: at most this many candidate runs")
    ap.add_argument("--no-minimise", dest="minimise", action="store_false")
    ap.add_argument("--known", action="append", default=[],
                    choices=sorted(KNOWN),
                    help="also generate this known defect's constructs")
    ap.add_argument("--include-known", action="store_true")
    ap.add_argument("--avoid", action="append", default=[],
                    choices=sorted(FOUND),
                    help="do not generate this found divergence's constructs")
    ap.add_argument("--avoid-found", action="store_true",
                    help="--avoid all of FOUND")
    ap.add_argument("--asyncio-log", action="store_true",
                    help="compare the 'asyncio' logger's records too")
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--strict-messages", action="store_true",
                    help="compare InvalidStateError messages too")
    ap.add_argument("--show", type=int, metavar="SEED",
                    help="print SEED's program and its three traces")
    ap.add_argument("--repro", type=int, metavar="SEED",
                    help="print SEED's program as a standalone script")
    ap.add_argument("--impls", default=",".join(IMPLS),
                    help="comma-separated implementations to run (tornado, "
                         "the oracle, is always one); default: all of %s"
                         % ",".join(IMPLS))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--installed-server", action="store_true",
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.installed_server:
        return installed_server()
    impls = [i for i in args.impls.split(",") if i]
    bad = set(impls) - set(IMPLS)
    if bad:
        ap.error("--impls: unknown %s (choose from %s)"
                 % (",".join(sorted(bad)), ",".join(IMPLS)))
    args.impls = ["tornado"] + [i for i in IMPLS[1:] if i in impls]
    if args.include_known:
        args.known = sorted(KNOWN)
    if args.avoid_found:
        args.avoid = sorted(FOUND)
    global STRICT
    STRICT = args.strict_messages
    AVOID.update(args.avoid)
    if args.worker:
        return worker(args)
    if args.show is not None or args.repro is not None:
        seed = args.show if args.show is not None else args.repro
        prog = generate(seed, args.shape, set(args.known), args.avoid)
        if args.repro is not None:
            print(repro(prog, args.hang), end="")
            return 0
        print("# seed %d shape %s features %s" % (seed, prog["shape"],
                                                 " ".join(features(prog))))
        print(render(prog))
        traces = run_prog(prog, args.impls, hang=args.hang,
                          asyncio_log=args.asyncio_log)
        for impl in args.impls:
            print("--", impl, "(same as tornado)" if impl != "tornado" and
                  traces[impl] == traces["tornado"] else "")
            for ev in traces[impl]:
                print("  ", json.dumps(ev))
        return 1 if diverges(traces) else 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
