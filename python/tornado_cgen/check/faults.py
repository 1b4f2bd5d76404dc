"""faults: the loop under raising callbacks, signals, fork, closed fds and
interpreter exit.

In both modes (standalone: ``tornado_cgen.ioloop.IOLoop``; installed:
``tornado_cgen.install()`` then upstream ``tornado.ioloop.IOLoop``), each
measurement in a fresh interpreter of its own:

* 10,000 raising callbacks (``add_callback``, ``call_later``, and
  ``call_soon`` on the asyncio face) give exactly 10,000 log records each
  (``tornado.application``, "Exception in callback"; ``asyncio`` through
  the exception handler) and the loop keeps running;
* SIGINT to a process blocked in ``IOLoop.start()`` (idle, nothing
  scheduled; a far timer; busy with a callback chain) surfaces as
  ``KeyboardInterrupt`` within 100 ms (the delay measured on
  CLOCK_MONOTONIC, which both processes share), and the loop starts again;
* SIGALRM every millisecond (a Python handler) for the length of a
  2-second ``call_later``: the timer fires on time, not early, and
  callbacks pushed from another thread during the storm all arrive;
* an fd closed while registered (alone; with a dup keeping its file open
  and the handler removed after the close; with the handler removing
  itself once reading fails): no crash, no busy loop (the process's CPU
  time over a second of running);
* ``os.fork()`` from a callback of a running loop: the child makes and
  runs a fresh loop (a coroutine, a timer, a thread's callback, an
  executor), exits 0 (at once, or through interpreter exit, tearing down
  its copy of the parent's loop); the parent's loop keeps its timers, its
  reader and its cross-thread wake-ups;
* programs that exit with an unclosed loop, suspended coroutines
  (``@gen.coroutine`` and ``async def``), pending futures with callbacks
  and Runners in cycles: exit status 0 and nothing on stderr, with and
  without a final ``gc.collect()``;
* the socket transport (``_transport``): no fd left open by 10,000
  connect/close cycles (closed, aborted and reset from either end); a
  program whose protocol callbacks raise, whose peers reset mid-write and
  which closes its loop with transports open exits 0, its exception
  handler and stderr as on asyncio's own loop.
"""
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from ._child import (failed, is_worker, ms, on_our_loop, run_worker,
                     command_line, shown, tail, worker_main, Outcome,
                     RESULT_TAG)
from . import _transport
from ._report import count, section_main

SECTION = "faults"
SIGINT_BOUND = 0.100
TIMER_LATE_BOUND = 0.050
CPU_SHARE_BOUND = 0.10


class _Counter(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.matching = 0
        self.other = []

    def emit(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        if (record.getMessage().startswith("Exception in callback") and
                isinstance(exc, _Boom)):
            self.matching += 1
        else:
            self.other.append("%s: %s" % (record.name,
                                          record.getMessage()[:80]))


class _Boom(Exception):
    pass


def _boom():
    raise _Boom("raised on purpose")


def _capture(name):
    logger = logging.getLogger(name)
    h = _Counter()
    logger.addHandler(h)
    logger.propagate = False
    return logger, h


# -- workers ------------------------------------------------------------------

def w_raising(m, n):
    """`n` raising callbacks through each path; count the records."""
    out = {}
    app_logger, app = _capture(m.app_logger)
    aio_logger, aio = _capture("asyncio")
    io = m.IOLoop()
    if not on_our_loop(io):
        return {"not_ours": repr(type(io.asyncio_loop))}
    loop = io.asyncio_loop
    for path in ("add_callback", "call_later", "call_soon"):
        app.matching, aio.matching = 0, 0
        after = []
        if path == "add_callback":
            for _ in range(n):
                io.add_callback(_boom)
        elif path == "call_later":
            for _ in range(n):
                io.call_later(0, _boom)
        else:
            for _ in range(n):
                loop.call_soon(_boom)
        # The loop must still run what comes after them: a callback, then
        # a timer, then stop.
        io.add_callback(after.append, "callback")
        io.call_later(0.01, lambda: (after.append("timer"), io.stop()))
        safety = io.call_later(60, io.stop)
        io.start()
        io.remove_timeout(safety)
        out[path] = {"records": (aio if path == "call_soon" else app).matching,
                     "wrong_logger": (app if path == "call_soon" else
                                      aio).matching,
                     "after": after}
    out["other"] = (app.other + aio.other)[:5]
    io.close()
    app_logger.removeHandler(app)
    aio_logger.removeHandler(aio)
    return out


def w_sigint(m, rounds, how):
    """Driven by the parent over stdin/stdout: print ``ready``, block in
    ``start()``, print when the KeyboardInterrupt was caught (on
    CLOCK_MONOTONIC), start the loop again and run a callback."""
    io = m.IOLoop()
    if not on_our_loop(io):
        return {"not_ours": repr(type(io.asyncio_loop))}
    caught = []
    restarted = 0
    escaped = []
    for k in range(rounds):
        chain = []
        far = None

        def ready():
            sys.stdout.write("ready\n")
            sys.stdout.flush()
            if how == "busy":
                io.add_callback(spin)

        def spin():
            chain.append(1)
            io.add_callback(spin)

        if how == "far timer":
            far = io.call_later(3600, io.stop)
        io.add_callback(ready)
        try:
            io.start()
            escaped.append("start() returned")
        except KeyboardInterrupt:
            caught.append(time.monotonic())
        except BaseException as e:
            escaped.append("%s: %s" % (type(e).__name__, e))
        if far is not None:
            io.remove_timeout(far)
        sys.stdout.write("caught %r\n" % (caught[-1] if caught else None))
        sys.stdout.flush()
        # Started again, the loop runs what it is given.
        got = []
        io.add_callback(lambda: (got.append(1), io.stop()))
        safety = io.call_later(10, io.stop)
        io.start()
        io.remove_timeout(safety)
        if got == [1]:
            restarted += 1
    io.close()
    return {"caught": caught, "restarted": restarted, "escaped": escaped}


def w_sigalrm(m, timer, interval, push_every):
    """SIGALRM every `interval` s while a `timer`-second ``call_later``
    runs, and a thread pushing a callback every `push_every` s."""
    hits = [0]

    def on_alarm(signum, frame):
        hits[0] += 1

    io = m.IOLoop()
    if not on_our_loop(io):
        return {"not_ours": repr(type(io.asyncio_loop))}
    res = {}
    lat = []
    stop_pushing = threading.Event()

    def arrived(t):
        lat.append(time.perf_counter() - t)

    pushed = [0]

    def pusher():
        while not stop_pushing.wait(push_every):
            pushed[0] += 1
            io.add_callback(arrived, time.perf_counter())

    def fire():
        res["fired"] = time.monotonic()
        stop_pushing.set()
        io.add_callback(io.stop)

    def begin():
        res["t0"] = time.monotonic()
        io.call_later(timer, fire)
        threading.Thread(target=pusher, daemon=True).start()

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, interval, interval)
    try:
        io.add_callback(begin)
        safety = io.call_later(timer + 60, io.stop)
        io.start()
        io.remove_timeout(safety)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    # What was pushed before stop_pushing was seen arrives by now.
    io.add_callback(io.stop)
    io.start()
    io.close()
    late = res["fired"] - res["t0"] - timer if "fired" in res else None
    return {"late": late, "signals": hits[0], "pushed": pushed[0],
            "arrived": len(lat), "max_latency": max(lat) if lat else None}


def w_closed_fd(m, case, api, seconds):
    """A socket registered for reading, its fd closed while registered,
    the peer writing to it; the loop run for `seconds`."""
    io = m.IOLoop()
    if not on_our_loop(io):
        return {"not_ours": repr(type(io.asyncio_loop))}
    loop = io.asyncio_loop
    a, b = socket.socketpair()
    a.setblocking(False)
    fd = a.detach()
    keep = os.dup(fd) if case != "closed" else None
    calls = [0]
    errors = []

    def remove():
        if api == "add_handler":
            io.remove_handler(fd)
        else:
            loop.remove_reader(fd)

    def on_ready(*args):
        calls[0] += 1
        try:
            os.read(fd, 100)
        except OSError:
            if case == "handler removes itself":
                remove()

    if api == "add_handler":
        io.add_handler(fd, on_ready, m.IOLoop.READ)
    else:
        loop.add_reader(fd, on_ready)
    os.close(fd)
    if case == "dup, handler removed after close":
        try:
            remove()
        except Exception as e:
            errors.append("%s: %s" % (type(e).__name__, e))
    if keep is not None:
        b.send(b"x" * 10)   # the file (still open) is readable
    io.call_later(seconds, io.stop)
    it0 = loop._iterations
    cpu0, t0 = time.process_time(), time.perf_counter()
    io.start()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    iterations = loop._iterations - it0
    try:
        if case == "closed":
            remove()
        io.close()
    except Exception as e:
        errors.append("%s: %s" % (type(e).__name__, e))
    if keep is not None:
        os.close(keep)
    b.close()
    return {"cpu": cpu, "wall": wall, "iterations": iterations,
            "calls": calls[0], "errors": errors}


def w_fork(m, child_exit):
    """Fork from a callback of a running loop; see the module doc."""
    io = m.IOLoop()
    if not on_our_loop(io):
        return {"not_ours": repr(type(io.asyncio_loop))}
    ticks = []
    res = {"child_status": None}
    a, b = socket.socketpair()
    a.setblocking(False)
    got_bytes = []
    io.add_handler(a.fileno(), lambda fd, ev: got_bytes.append(a.recv(10)),
                   m.IOLoop.READ)

    def tick():
        ticks.append(time.monotonic())
        io.call_later(0.005, tick)

    def in_child():
        import concurrent.futures
        ok = False
        try:
            fresh = m.IOLoop(make_current=False)
            if not on_our_loop(fresh):
                os._exit(4)

            @m.gen.coroutine
            def work():
                yield m.gen.sleep(0.01)
                f = m.Future()
                threading.Thread(target=fresh.add_callback,
                                 args=(f.set_result, 7)).start()
                x = yield f
                with concurrent.futures.ThreadPoolExecutor(1) as ex:
                    y = yield fresh.run_in_executor(ex, sum, [1, 2])
                return x + y

            ok = fresh.run_sync(work, timeout=10) == 10
            fresh.close()
        except BaseException:
            import traceback
            traceback.print_exc()
        if child_exit == "os._exit" or not ok:
            sys.stderr.flush()
            os._exit(0 if ok else 3)
        raise SystemExit(0)     # out through the parent's loop, and exit

    def do_fork():
        res["ticks_before"] = len(ticks)
        pid = os.fork()
        if pid == 0:
            in_child()
        res["fork_t"] = time.monotonic()

        def reap():
            _, status = os.waitpid(pid, 0)
            io.add_callback(child_done, status)
        threading.Thread(target=reap, daemon=True).start()

    def child_done(status):
        res["child_status"] = status
        res["reaped_t"] = time.monotonic()
        # Now that the child is gone: the parent's I/O and wake-ups.
        b.send(b"after")
        threading.Thread(target=lambda: (time.sleep(0.05),
                                         io.add_callback(woken))).start()

    def woken():
        res["woken"] = True
        io.call_later(0.05, io.stop)

    io.add_callback(tick)
    io.call_later(0.05, do_fork)
    safety = io.call_later(30, io.stop)
    io.start()      # the child, ending by interpreter exit, leaves here
    io.remove_timeout(safety)
    after = [t for t in ticks if t > res.get("reaped_t", float("inf"))]
    io.remove_handler(a.fileno())
    io.close()
    a.close()
    b.close()
    status = res["child_status"]
    return {"child_status": status,
            "child_exit": (os.waitstatus_to_exitcode(status)
                           if status is not None else None),
            "ticks_after_child": len(after),
            "read_after_child": b"".join(got_bytes).decode(),
            "woken_after_child": res.get("woken", False)}


# -- programs that exit with things alive ---------------------------------

PRELUDE = {
    "standalone": (
        "import asyncio\n"
        "from tornado_cgen import gen, ioloop, concurrent\n"
        "IOLoop = ioloop.IOLoop\n"
        "Future = concurrent.Future\n"),
    "installed": (
        "import asyncio\n"
        "import tornado_cgen\n"
        "tornado_cgen.install()\n"
        "from tornado import gen, ioloop, concurrent\n"
        "IOLoop = ioloop.IOLoop\n"
        "Future = concurrent.Future\n"),
}

EXIT_PROGRAMS = {
    # Coroutines of both kinds suspended on futures nobody will resolve,
    # the loop never closed.
    "suspended coroutines": """
io = IOLoop()
never = []
@gen.coroutine
def gen_waiter(i):
    f = Future()
    never.append(f)
    yield f
async def native_waiter(i):
    f = Future()
    never.append(f)
    await f
@gen.coroutine
def main():
    for i in range(50):
        gen_waiter(i)
        io.add_callback(native_waiter, i)
    yield gen.sleep(0.01)
io.run_sync(main)
""",
    # Pending futures whose callbacks are bound methods of objects that
    # hold the future and the loop; timers and a reader left behind.
    "pending futures with callbacks in cycles": """
import os
io = IOLoop()
class Conn:
    def __init__(self):
        self.io = io
        self.f = Future()
        self.f.add_done_callback(self.on_done)
        self.t = io.call_later(30, self.on_done, None)
        self.self = self
    def on_done(self, f):
        pass
@gen.coroutine
def main():
    global conns, r, w
    conns = [Conn() for _ in range(100)]
    r, w = os.pipe()
    io.add_handler(r, lambda fd, ev: None, IOLoop.READ)
    yield gen.moment
io.run_sync(main)
""",
    # Runners in reference cycles: coroutines whose frames hold their own
    # result future and the future they wait on, chains of coroutines
    # waiting on each other (the native ones driven by Tornado's
    # add_callback, not by an asyncio Task the program holds: asyncio
    # reports a pending Task it collects, whatever loop it ran on).
    "Runners in cycles": """
io = IOLoop()
@gen.coroutine
def selfish(box):
    box["inner"] = Future()
    yield box["inner"]
@gen.coroutine
def chain(depth):
    if depth:
        yield chain(depth - 1)
    else:
        yield Future()
async def native_chain(depth):
    if depth:
        await native_chain(depth - 1)
    else:
        await Future()
@gen.coroutine
def main():
    for i in range(20):
        box = {}
        box["outer"] = selfish(box)
        box["self"] = box
    global c
    c = chain(30)
    c.add_done_callback(lambda f: c)
    io.add_callback(native_chain, 30)
    yield gen.moment
io.run_sync(main)
""",
    # sys.exit() from a callback while the loop runs, coroutines
    # suspended.
    "sys.exit from a running loop": """
import sys
io = IOLoop()
@gen.coroutine
def waiter():
    yield Future()
async def native():
    await Future()
def bye():
    sys.exit(0)
for i in range(10):
    io.add_callback(waiter)
    io.add_callback(native)
io.call_later(0.01, bye)
io.start()
""",
    # Daemon threads still pushing into the loop (both ways) while the
    # interpreter exits.  (With four threads spinning, a callback can wait
    # longer than asyncio's debug mode allows for the GIL: not a report
    # this program is about.)
    "daemon threads pushing at exit": """
import threading
io = IOLoop()
aio = io.asyncio_loop
aio.slow_callback_duration = 60
def noop(*a):
    pass
def pusher(push):
    while True:
        try:
            push(noop, 1)
        except RuntimeError:
            pass
for i in range(4):
    push = io.add_callback if i % 2 else aio.call_soon_threadsafe
    threading.Thread(target=pusher, args=(push,), daemon=True).start()
io.call_later(0.05, io.stop)
io.start()
""",
}


def _exit_program_source(name, mode, collect):
    src = PRELUDE[mode] + EXIT_PROGRAMS[name]
    if collect:
        src += "import gc\ngc.collect()\n"
    return src


def _exit_command(name, mode, collect, devmode):
    cmd = [sys.executable] + (["-X", "dev"] if devmode else []) + [
        "-m", "tornado_cgen.check." + SECTION,
        "--exit-program", name, "--mode", mode]
    if collect:
        cmd.append("--gc")
    return cmd


_program_globals = None


def _run_exit_program(argv):
    """Run one of EXIT_PROGRAMS as a script would run: its globals live
    until the interpreter's end."""
    global _program_globals
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--exit-program", required=True)
    p.add_argument("--mode", required=True)
    p.add_argument("--gc", action="store_true")
    a = p.parse_args(argv)
    src = _exit_program_source(a.exit_program, a.mode, a.gc)
    _program_globals = {"__name__": "__main__"}
    exec(compile(src, "<exit program: %s>" % a.exit_program, "exec"),
         _program_globals)
    return 0


# -- the figures --------------------------------------------------------------

def _not_ours(ctx, name, res):
    if "not_ours" in res:
        ctx.figure(name, "the IOLoop runs on " + res["not_ours"],
                   want="tornado_cgen's loop", ok=False)
        return True
    return False


def _raising(ctx, mode, n):
    label = "%s: %s raising callbacks" % (mode, count(n))
    res, bad = run_worker(SECTION, "raising", mode, {"n": n}, timeout=300)
    if bad:
        return failed(ctx, label, bad)
    if _not_ours(ctx, label, res):
        return
    where = {"add_callback": "IOLoop.add_callback, tornado.application",
             "call_later": "IOLoop.call_later(0), tornado.application",
             "call_soon": "asyncio face call_soon, asyncio logger"}
    for path, what in where.items():
        r = res[path]
        ok = (r["records"] == n and r["wrong_logger"] == 0 and
              r["after"] == ["callback", "timer"])
        notes = []
        if r["wrong_logger"]:
            notes.append("%s on the other logger" % count(r["wrong_logger"]))
        notes.append("the loop ran on: " + (", ".join(r["after"]) or
                                            "nothing after them"))
        ctx.figure("%s (%s): log records" % (label, what),
                   "%s of %s" % (count(r["records"]), count(n)),
                   want="exactly %s, then the loop keeps running" % count(n),
                   ok=ok, note="; ".join(notes))
    other = res["other"]
    ctx.figure(label + ": other log records", "none" if not other else
               "; ".join(other), want="none", ok=not other)


def _sigint(ctx, mode, how, rounds):
    label = "%s: SIGINT to a process blocked in start() (%s)" % (mode, how)
    cmd = command_line(SECTION, "sigint", mode,
                       {"rounds": rounds, "how": how})
    errfile = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=errfile,
                            text=True)
    killer = threading.Timer(60 + rounds * 5, proc.kill)
    killer.start()
    delays = []
    result = None
    problems = []
    try:
        for k in range(rounds):
            line = proc.stdout.readline()
            if line.strip() != "ready":
                if line.startswith(RESULT_TAG):
                    result = json.loads(line[len(RESULT_TAG):])
                problems.append("round %d: expected 'ready', got %r"
                                % (k, line[:100]))
                break
            time.sleep(0.2)      # asleep in epoll by now
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            line = proc.stdout.readline()
            if not line.startswith("caught "):
                problems.append("round %d: expected 'caught', got %r"
                                % (k, line[:100]))
                break
            t = json.loads(line.split(" ", 1)[1].strip().replace(
                "None", "null"))
            if t is None:
                problems.append("round %d: no KeyboardInterrupt" % k)
            else:
                delays.append(t - sent)
        # Not communicate(): it would lose what readline() buffered.
        rest = proc.stdout.read()
        proc.wait()
    finally:
        killer.cancel()
        proc.stdout.close()
        errfile.seek(0)
        err = errfile.read()
        errfile.close()
    for line in (rest or "").splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
    if proc.returncode != 0 or result is None:
        what = ("died of signal %d" % -proc.returncode
                if proc.returncode and proc.returncode < 0 else
                "exit status %s" % proc.returncode if proc.returncode else
                "no result")
        return failed(ctx, label, Outcome(
            what, "; ".join(problems) + " " + tail(err), shown(cmd) +
            "  (then send SIGINT after each 'ready')"))
    if _not_ours(ctx, label, result):
        return
    problems += result["escaped"]
    worst = max(delays) if delays else None
    ok = (not problems and len(delays) == rounds and
          worst <= SIGINT_BOUND and result["restarted"] == rounds)
    ctx.figure(label + ": KeyboardInterrupt after",
               "max %s over %d signals" % (ms(worst), len(delays))
               if delays else "never", want="<= %d ms, each time"
               % (SIGINT_BOUND * 1e3), ok=ok and True,
               note="; ".join(problems) if problems else
               "started again and ran a callback %d of %d times"
               % (result["restarted"], rounds))


def _sigalrm(ctx, mode, timer):
    label = "%s: SIGALRM every 1 ms during a %g s call_later" % (mode, timer)
    res, bad = run_worker(SECTION, "sigalrm", mode,
                          {"timer": timer, "interval": 0.001,
                           "push_every": 0.005}, timeout=timer + 120)
    if bad:
        return failed(ctx, label, bad)
    if _not_ours(ctx, label, res):
        return
    late = res["late"]
    ctx.figure(label + ": timer lateness",
               ms(late) if late is not None else "never fired",
               want="0 to %d ms" % (TIMER_LATE_BOUND * 1e3),
               ok=late is not None and 0 <= late <= TIMER_LATE_BOUND,
               note="%s signals handled" % count(res["signals"]))
    lost = res["pushed"] - res["arrived"]
    ctx.figure(label + ": callbacks pushed from a thread during it",
               "%s of %s arrived, slowest %s" % (
                   count(res["arrived"]), count(res["pushed"]),
                   ms(res["max_latency"])),
               want="all, each <= 100 ms",
               ok=lost == 0 and res["pushed"] > 0 and
               res["max_latency"] is not None and
               res["max_latency"] <= 0.100)


def _closed_fd(ctx, mode, case, api, seconds):
    label = "%s: fd closed while registered (%s, %s)" % (mode, api, case)
    res, bad = run_worker(SECTION, "closed_fd", mode,
                          {"case": case, "api": api, "seconds": seconds},
                          timeout=seconds + 60)
    if bad:
        return failed(ctx, label, bad)
    if _not_ours(ctx, label, res):
        return
    share = res["cpu"] / res["wall"] if res["wall"] else 1.0
    ctx.figure(label + ": CPU while it runs",
               "%.1f%% of %.2f s" % (share * 100, res["wall"]),
               want="< %d%%, no crash, no error" % (CPU_SHARE_BOUND * 100),
               ok=share < CPU_SHARE_BOUND and not res["errors"],
               note="; ".join(res["errors"] + [
                   "%s loop iterations, handler called %s times"
                   % (count(res["iterations"]), count(res["calls"]))]))


def _fork(ctx, mode, child_exit):
    label = "%s: os.fork() in a running loop's callback, child ends by %s" \
        % (mode, child_exit)
    res, bad = run_worker(SECTION, "fork", mode, {"child_exit": child_exit},
                          timeout=120)
    if bad:
        return failed(ctx, label, bad)
    if _not_ours(ctx, label, res):
        return
    ctx.figure(label + ": child's fresh loop",
               "exit %s" % res["child_exit"], want="exit 0 (its loop ran a "
               "coroutine, a timer, a thread's callback, an executor)",
               ok=res["child_exit"] == 0,
               note=tail(res["_stderr"]) if res["_stderr"] else "")
    parent_ok = (res["ticks_after_child"] > 0 and
                 res["read_after_child"] == "after" and
                 res["woken_after_child"])
    ctx.figure(label + ": parent's loop after it",
               "%d timer ticks, reader got %r, thread wake-up %s" % (
                   res["ticks_after_child"], res["read_after_child"],
                   "arrived" if res["woken_after_child"] else "lost"),
               want="ticks, 'after', arrived", ok=parent_ok)


def _exits(ctx, mode):
    """One figure per program: all of its variants (with and without a
    final gc.collect(), normal and development mode)."""
    variants = list(itertools.product((False, True), (False, True)))
    for name in EXIT_PROGRAMS:
        bad = []
        for collect, devmode in variants:
            which = "%s gc.collect()%s" % ("with" if collect else "without",
                                          ", -X dev" if devmode else "")
            cmd = _exit_command(name, mode, collect, devmode)
            try:
                r = subprocess.run(cmd, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True,
                                   timeout=60)
            except subprocess.TimeoutExpired:
                bad.append("%s: hung (killed after 60 s); reproduce: %s"
                           % (which, shown(cmd)))
                continue
            rc = r.returncode
            if rc != 0 or r.stderr:
                got = ("exit %d" % rc if rc >= 0 else
                       "died of signal %d" % -rc)
                if r.stderr:
                    got += ", stderr: " + tail(r.stderr, 300)
                bad.append("%s: %s; reproduce: %s" % (which, got, shown(cmd)))
        ctx.figure("%s: exit with %s" % (mode, name),
                   "%d of %d runs exit 0 with empty stderr"
                   % (len(variants) - len(bad), len(variants)),
                   want="all (with and without a final gc.collect(), "
                   "with and without -X dev)", ok=not bad,
                   note=" || ".join(bad))


def run(ctx):
    soak = ctx.soak
    for mode in ctx.modes:
        _raising(ctx, mode, 100000 if soak else 10000)
        for how in ("idle", "far timer", "busy"):
            _sigint(ctx, mode, how, 20 if soak else 3)
        _sigalrm(ctx, mode, 2.0)
        if soak:
            _sigalrm(ctx, mode, 30.0)
        for api in ("add_handler", "add_reader"):
            for case in ("closed", "dup, handler removed after close",
                         "handler removes itself"):
                _closed_fd(ctx, mode, case, api, 10.0 if soak else 1.0)
        for child_exit in ("os._exit", "interpreter exit"):
            _fork(ctx, mode, child_exit)
        _exits(ctx, mode)
    # The transport is the loop's, the same in both modes.
    _transport.check_fds(ctx)
    _transport.check_faults(ctx)
    if "installed" not in ctx.modes:
        ctx.skip("installed mode", "upstream Tornado >= 6.2 is not installed")


if __name__ == "__main__":
    if is_worker():
        sys.exit(worker_main(globals()))
    if "--exit-program" in sys.argv:
        sys.exit(_run_exit_program(sys.argv[1:]))
    sys.exit(section_main(SECTION, run))
