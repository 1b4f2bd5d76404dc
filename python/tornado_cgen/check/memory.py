"""The ``memory`` section.

* RSS over many coroutine cycles: after a warm-up (arenas, freelists and
  caches at their working size), the resident set may not grow by 1 MiB
  over ten million cycles (``--soak``: a hundred million).  Standalone,
  and Tornado coroutines under ``install()`` (two million; soak twenty).
* The freelists are emptied at interpreter exit: a program that fills
  them and exits with its loop unclosed and coroutines suspended runs on
  the debug (ASan) build, which reports, when asked, what the freelists
  held when the module was cleared; LeakSanitizer then finds no memory
  lost (nothing allocated and left unreachable at exit).
* The socket transport (``_transport``): a writer whose peer never reads,
  honouring ``pause_writing`` (the buffer bounded, the RSS flat) and not
  (the RSS what the buffer holds, the memory reused round after round),
  and one whose peer reads slowly (the RSS flat over many pauses).
"""
import os
import subprocess
import sys

from . import _transport
from ._report import count, section_main

CYCLES = r'''
import gc, sys
MODE, N = sys.argv[1], int(sys.argv[2])
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

@gen.coroutine
def leaf(i):
    if i % 16 == 0:
        yield gen.moment
    return i

@gen.coroutine
def cycle(i):
    done = Future()
    done.set_result(i)
    v = yield done
    w = yield leaf(i)
    return v + w

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def run(n):
    io = IOLoop.current()
    async def many():
        try:
            for i in range(n):
                await cycle(i)
        finally:
            io.stop()
    io.spawn_callback(many)
    io.start()

run(max(N // 10, 100000))          # warm-up
gc.collect()
start = rss_kib()
peak = start
step = max(N // 10, 1)
for _ in range(10):
    run(step)
    peak = max(peak, rss_kib())
gc.collect()
print(start, rss_kib(), peak, step * 10)
'''

EXIT = r'''
import asyncio, sys
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
import tornado_cgen._core as core

@gen.coroutine
def leaf(i):
    yield gen.moment
    return i

@gen.coroutine
def work():
    for i in range(500):
        yield [leaf(i), leaf(i + 1)]
        io.call_later(0, lambda: None)
        io.remove_timeout(io.call_later(60, lambda: None))

@gen.coroutine
def suspended(block):
    yield block

io = IOLoop.current()
io.run_sync(work)
block = Future()
io.run_sync(lambda: gen.sleep(0))
pending = suspended(block)
io.add_callback(lambda: None)
io.call_later(3600, lambda: None)
stats = core._stats()
print(stats["future_freelist"], stats["handle_freelist"],
      stats["timer_handle_freelist"])
# exits with the loop unclosed, a coroutine suspended, handles pending
'''


def _rss(ctx, mode, n):
    r = subprocess.run([sys.executable, "-c", CYCLES, mode, str(n)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=3600)
    name = "%s: RSS growth over %s coroutine cycles" % (mode, count(n))
    if r.returncode:
        ctx.figure(name, "exit status %d" % r.returncode, want="< 1 MiB",
                   ok=False, note=r.stderr.strip()[-1500:])
        return
    start, end, peak, cycles = map(int, r.stdout.split())
    growth = max(end, peak) - start
    ctx.figure(name, "%d KiB" % growth, want="< 1024 KiB",
               ok=growth < 1024 and cycles >= n,
               note="RSS after warm-up %.1f MiB, at the end %.1f MiB, "
               "peak %.1f MiB" % (start / 1024, end / 1024, peak / 1024))


def check_rss(ctx):
    for mode in ctx.modes:
        if mode == "standalone":
            n = 100000000 if ctx.soak else 10000000
        else:
            n = 20000000 if ctx.soak else 2000000
        _rss(ctx, mode, n)


def _asan_env(path):
    from . import asan_env
    env = dict(os.environ, **asan_env(path))
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    env["TCG_DEBUG_REPORT_CLEAR"] = "1"
    return env


def check_exit(ctx):
    asan = os.environ.get("TCG_CHECK_ASAN")
    if not asan:
        ctx.skip("freelists emptied and no memory lost at exit",
                 "needs the ASan build (the source checkout)")
        return
    env = _asan_env(asan)
    for mode in ctx.modes:
        r = subprocess.run([sys.executable, "-c", EXIT, mode],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=600, env=env)
        held = r.stdout.split()
        report = [line for line in r.stderr.splitlines()
                  if line.startswith("tcg: module cleared")]
        leaks = [line for line in r.stderr.splitlines()
                 if "leak of" in line]
        other = [line for line in r.stderr.splitlines()
                 if line not in report]
        filled = len(held) == 3 and sum(map(int, held)) > 0
        ctx.figure(
            "%s: freelists emptied at interpreter exit" % mode,
            report[0].split("; ", 1)[1] if report else
            "no report: the module was not cleared",
            want="the module cleared, its freelists emptied",
            ok=bool(report) and filled and r.returncode == 0,
            note="held before exit (futures, handles, timer handles): %s"
            % " ".join(held) + ("; exit status %d" % r.returncode
                                if r.returncode else ""))
        ctx.figure(
            "%s: LeakSanitizer at exit (loop unclosed, coroutine suspended)"
            % mode, "%d leaks" % len(leaks), want="0",
            ok=not leaks and r.returncode == 0 and not other,
            note="; ".join(other[:12])[-1500:])


def run(ctx):
    check_exit(ctx)
    check_rss(ctx)
    _transport.check_memory(ctx)


if __name__ == "__main__":
    sys.exit(section_main("memory", run))
