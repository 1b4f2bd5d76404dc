"""The ``gc`` section: the collector and the C types.

* No cyclic garbage in normal operation: a request-like path (a handler
  coroutine calling helpers, a list and a dict multi, ``with_timeout``,
  ``sleep``, callbacks, timers, a concurrent future) run many times with
  ``gc.DEBUG_SAVEALL``: everything is freed by reference counting, the
  collector finds nothing.  Standalone and, where Tornado is installed, as
  Tornado code under ``install()``.
* A cycle through every object field of every C type is collected: for
  each field, an object of the type whose field leads back to the object
  (through a box holding a sentinel whose ``__del__`` says it ran); after
  ``gc.collect()`` the sentinel must have been finalized and the object
  freed.
* Very long chains are freed without overflowing the C stack: a million
  futures each the result of the one before (and each the callback
  argument, and each chained by ``chain_future``), a million handles each
  the argument of the one before, and a 100,000-deep nest of suspended
  coroutines, dropped and resolved.  Each in a child process, so that a
  stack overflow is a failed figure.
"""
import asyncio
import contextvars
import functools
import gc
import os
import subprocess
import sys
import weakref

from ._report import count, section_main


class Sentinel:
    """Put in a cycle; ``__del__`` records that the collector freed it."""
    freed = []

    def __init__(self, name):
        self.name = name

    def __del__(self):
        Sentinel.freed.append(self.name)


def _noop(*args, **kwargs):
    pass


# -- cycles through each field ------------------------------------------------

def _cycle_builders():
    """name -> builder(sentinel) that makes a cycle through one field and
    returns an object to watch (weakly, where the type allows; else the
    sentinel alone is watched).  Every builder drops its own references."""
    import tornado_cgen
    from tornado_cgen import gen
    from tornado_cgen.concurrent import Future

    class SubFuture(Future):
        pass

    def future_field(how):
        def build(s):
            loop = tornado_cgen.new_event_loop()
            f = SubFuture(loop=loop) if how == "dict" else Future(loop=loop)
            box = [s, f]
            if how == "callback0":
                f.add_done_callback(functools.partial(_noop, box))
            elif how == "context0":
                var = contextvars.ContextVar("v")
                ctx = contextvars.copy_context()
                ctx.run(var.set, box)
                f.add_done_callback(_noop, context=ctx)
            elif how == "callbacks":
                f.add_done_callback(_noop)
                f.add_done_callback(functools.partial(_noop, box))
            elif how == "result":
                f.set_result(box)
            elif how == "exception":
                e = ValueError("cycle")
                e.box = box
                f.set_exception(e)
                f.exception()          # retrieved: no log at collection
            elif how == "exception_tb":
                def raiser(local):
                    raise KeyError("cycle")
                try:
                    raiser(box)
                except KeyError as e:
                    f.set_exception(e)
                f.exception()          # retrieved: no log at collection
            elif how == "cancel_msg":
                f.cancel(msg=box)
            elif how == "cancelled_exc":
                f.cancel(msg=box)
                try:
                    f.result()          # makes and keeps the CancelledError
                except asyncio.CancelledError:
                    pass
            elif how == "loop":
                loop.box = box
            elif how == "dict":
                f.box = box
            loop.close()
            return f
        return build

    def handle_field(how):
        def build(s):
            loop = tornado_cgen.new_event_loop()
            box = [s]
            if how == "callback":
                h = loop.call_soon(functools.partial(_noop, box))
            elif how == "arg1":
                h = loop.call_soon(_noop, box)
            elif how == "args":
                h = loop.call_soon(_noop, 1, box)
            elif how == "context":
                var = contextvars.ContextVar("v")
                ctx = contextvars.copy_context()
                ctx.run(var.set, box)
                h = loop.call_soon(_noop, context=ctx)
            elif how == "timer":
                h = loop.call_later(3600, _noop, box)
            box.append(h)
            box.append(loop)       # and the loop holds h: ring or heap
            return h
        return build

    def loop_field(how):
        def build(s):
            loop = tornado_cgen.new_event_loop()
            box = [s, loop]
            if how == "ready ring":
                loop.call_soon(_noop, box)
            elif how == "timer heap":
                loop.call_later(3600, _noop, box)
            elif how == "readers":
                r, w = os.pipe()
                box.append(_Fds(r, w))
                loop.add_reader(r, _noop, box)
            elif how == "writers":
                r, w = os.pipe()
                box.append(_Fds(r, w))
                loop.add_writer(w, _noop, box)
            elif how == "exception handler":
                loop.set_exception_handler(functools.partial(_noop, box))
            elif how == "dict":
                loop.box = box
            return loop
        return build

    def runner_field(how):
        def build(s):
            loop = tornado_cgen.new_event_loop()
            var = contextvars.ContextVar("v")
            box = [s]
            holder = {}

            @gen.coroutine
            def body():
                block = Future()
                box.append(block)              # gen's frame -> block
                if how == "ctx":
                    var.set(box)
                holder["block"] = block
                yield block                    # block -> Runner -> gen

            async def start():
                fut = body()
                if how == "result":
                    fut.add_done_callback(functools.partial(_noop, box))
                box.append(fut)
                await asyncio.sleep(0)

            loop.run_until_complete(start())
            blk = holder.pop("block")
            runner = [r for r in gc.get_referrers(blk)
                      if type(r).__name__ == "Runner"]
            loop.close()
            return runner[0] if runner else blk
        return build

    def wrapper_field(how):
        def build(s):
            box = [s]

            def make():
                @gen.coroutine
                def f():
                    return f             # the closure cell -> the wrapper
                return f

            w = make() if how == "func" else gen.coroutine(_noop)
            if how == "dict":
                w.box = box
            box.append(w)
            if how == "func":
                w.__wrapped__.box = box
            return w
        return build

    def multi_field(how):
        def build(s):
            loop = tornado_cgen.new_event_loop()
            box = [s]
            child = SubFuture(loop=loop)
            child.box = box
            if how == "children":
                m = gen.multi([child])
            elif how == "keys":
                class Key:
                    pass
                k = Key()
                k.box = box
                m = gen.multi({k: child})
            elif how == "quiet":
                class Quiet(Exception):
                    pass
                Quiet.box = box
                m = gen.multi([child], quiet_exceptions=(Quiet,))
            box.append(m)            # the multi's future, whose waiter
            loop.close()             # the child's callbacks hold
            return m
        return build

    def iter_field(s):
        loop = tornado_cgen.new_event_loop()
        f = SubFuture(loop=loop)
        it = f.__await__()
        f.box = [s, it]
        loop.close()
        return it

    builders = {}
    for how in ("callback0", "context0", "callbacks", "result", "exception",
                "exception_tb", "cancel_msg", "cancelled_exc", "loop",
                "dict"):
        builders["Future." + how] = future_field(how)
    for how in ("callback", "arg1", "args", "context", "timer"):
        builders["Handle." + how] = handle_field(how)
    for how in ("ready ring", "timer heap", "readers", "writers",
                "exception handler", "dict"):
        builders["Loop." + how] = loop_field(how)
    for how in ("gen + waiting", "ctx", "result"):
        builders["Runner." + how] = runner_field(how)
    for how in ("func", "dict"):
        builders["Coroutine wrapper." + how] = wrapper_field(how)
    for how in ("children", "keys", "quiet"):
        builders["multi waiter." + how] = multi_field(how)
    builders["Future iterator.future"] = iter_field
    return builders


class _Fds:
    """Closes a pipe when the collector frees it."""

    def __init__(self, *fds):
        self.fds = fds

    def __del__(self):
        for fd in self.fds:
            os.close(fd)


def check_cycles(ctx):
    import warnings
    builders = _cycle_builders()
    not_freed = []
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        for name, build in builders.items():
            Sentinel.freed.clear()
            obj = build(Sentinel(name))
            try:
                ref = weakref.ref(obj)
            except TypeError:
                ref = None
            kind = type(obj).__name__
            del obj
            gc.collect()
            gc.collect()
            if name not in Sentinel.freed or (ref is not None and
                                              ref() is not None):
                not_freed.append("%s (%s)" % (name, kind))
    ctx.figure("cycles through each object field of each C type, collected",
               "%d of %d" % (len(builders) - len(not_freed), len(builders)),
               want="all", ok=not not_freed,
               note="not collected: " + ", ".join(not_freed) if not_freed
               else "fields: " + ", ".join(builders))


# -- no cyclic garbage in normal operation ------------------------------------

REQUEST_PATH = r'''
import concurrent.futures, gc, sys
MODE = sys.argv[1]
if MODE == "installed":
    import tornado_cgen
    tornado_cgen.install()
    from tornado import gen
    from tornado.ioloop import IOLoop
    from tornado.concurrent import Future
else:
    from tornado_cgen import gen
    from tornado_cgen.ioloop import IOLoop
    from tornado_cgen.concurrent import Future

pool = concurrent.futures.ThreadPoolExecutor(1)

@gen.coroutine
def lookup(key):
    if key % 3 == 0:
        yield gen.moment
    return key * 2

@gen.coroutine
def fetch(io, key):
    f = Future()
    io.add_callback(f.set_result, key)
    v = yield f
    return v

async def native(key):
    return key + 1

@gen.coroutine
def handler(io, i):
    a = yield lookup(i)
    b, c = yield [lookup(i + 1), fetch(io, i)]
    d = yield {"x": lookup(i + 2), "y": native(i)}
    yield gen.sleep(0)
    t = io.call_later(60, lambda: None)
    io.remove_timeout(t)
    v = yield gen.with_timeout(io.time() + 60, fetch(io, i))
    w = yield io.run_in_executor(pool, abs, -i)
    return a + b + c + d["x"] + d["y"] + v + w

def run(n):
    # Started and stopped by hand: Tornado's run_sync defines a class per
    # call (a TypedDict), and classes are cyclic garbage of Tornado's own.
    io = IOLoop.current()
    async def many():
        try:
            for i in range(n):
                await handler(io, i)
        finally:
            io.stop()
    io.spawn_callback(many)
    io.start()

run(200)                         # warm: imports, caches, first-time setup
gc.collect()
gc.disable()
gc.set_debug(gc.DEBUG_SAVEALL)
N = int(sys.argv[2])
run(N)
found = gc.collect()
gc.set_debug(0)
kinds = {}
for o in gc.garbage:
    kinds[type(o).__name__] = kinds.get(type(o).__name__, 0) + 1
print(N, found, len(gc.garbage),
      sorted(kinds.items(), key=lambda kv: -kv[1])[:8])
'''


def check_no_cyclic_garbage(ctx):
    n = 20000 if ctx.soak else 2000
    for mode in ctx.modes:
        r = subprocess.run([sys.executable, "-c", REQUEST_PATH, mode, str(n)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=600)
        if r.returncode != 0:
            ctx.figure("%s: cyclic garbage over %s request-like paths" % (
                mode, count(n)), "exit status %d" % r.returncode, want="0",
                ok=False, note=r.stderr.strip()[-1500:])
            continue
        parts = r.stdout.split(None, 3)
        found = int(parts[1])
        ctx.figure("%s: cyclic garbage over %s request-like paths "
                   "(gc.DEBUG_SAVEALL)" % (mode, count(n)),
                   "%d objects" % found, want="0", ok=found == 0,
                   note=parts[3].strip() if found else "")


# -- long chains -----------------------------------------------------------------

CHAINS = {
    "a million futures, each the result of the one before": r'''
import sys
from tornado_cgen.concurrent import Future
head = f = Future()
for i in range(int(sys.argv[1])):
    g = Future(); f.set_result(g); f = g
del f, g
del head
''',
    "a million futures, each a done-callback argument of the one before": r'''
import functools, sys
from tornado_cgen.concurrent import Future
head = f = Future()
for i in range(int(sys.argv[1])):
    g = Future(); f.add_done_callback(functools.partial(print, g)); f = g
del f, g
del head
''',
    "a million futures chained by chain_future": r'''
import sys
from tornado_cgen.concurrent import Future, chain_future
head = f = Future()
for i in range(int(sys.argv[1])):
    g = Future(); chain_future(f, g); f = g
del f, g
del head
''',
    "a million handles, each the argument of the one before": r'''
import sys, tornado_cgen
loop = tornado_cgen.new_event_loop()
h = None
for i in range(int(sys.argv[1])):
    h = loop.call_soon(print, h)
    h.cancel()
loop.close()
del h
''',
}

NEST = r'''
import asyncio, gc, sys
MODE, N, HOW = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if MODE == "installed":
    import tornado_cgen
    tornado_cgen.install()
    from tornado import gen
    from tornado.ioloop import IOLoop
    from tornado.concurrent import Future
else:
    from tornado_cgen import gen
    from tornado_cgen.ioloop import IOLoop
    from tornado_cgen.concurrent import Future

state = {}

@gen.coroutine
def nest(n):
    yield gen.moment              # each level starts on its own loop turn
    if n == 0:
        yield state["block"]
    else:
        yield nest(n - 1)
    return n

async def build():
    state["block"] = Future()
    top = nest(N)
    for _ in range(N + 10):
        await asyncio.sleep(0)
    return top

io = IOLoop()
top = io.run_sync(build)
if HOW == "resolved":
    state.pop("block").set_result(None)
    assert io.run_sync(lambda: top) == N
io.close()
del top
state.clear()
gc.collect()
print("freed")
'''


def _child(code, args, timeout):
    try:
        r = subprocess.run([sys.executable, "-c", code] + args,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "hung (killed after %d s)" % timeout, ""
    if r.returncode < 0:
        return "died of signal %d" % -r.returncode, r.stderr[-800:]
    if r.returncode:
        return "exit status %d" % r.returncode, r.stderr[-800:]
    return "freed", ""


def check_chains(ctx):
    for name, code in CHAINS.items():
        outcome, err = _child(code, ["1000000"], 600)
        ctx.figure(name + ", dropped", outcome, want="freed",
                   ok=outcome == "freed", note=err.strip())
    n = 100000
    for mode in ctx.modes:
        for how in ("dropped suspended", "resolved"):
            outcome, err = _child(NEST, [mode, str(n), how.split()[0]], 900)
            ctx.figure("%s: a %s-deep nest of coroutines, %s" % (
                mode, count(n), how), outcome, want="freed",
                ok=outcome == "freed", note=err.strip())


def run(ctx):
    check_no_cyclic_garbage(ctx)
    check_cycles(ctx)
    check_chains(ctx)


if __name__ == "__main__":
    sys.exit(section_main("gc", run))
