"""threads: callbacks and futures handed to a loop from other threads.

In both modes (standalone: ``tornado_cgen.ioloop.IOLoop``; installed:
``tornado_cgen.install()`` then upstream ``tornado.ioloop.IOLoop``), each
measurement in a fresh interpreter of its own:

* 8 threads x 50,000 ``add_callback`` (and ``call_soon_threadsafe``) into
  a running loop: none lost, FIFO per thread, and how long after each
  thread's last push that callback runs (the backlog queued before it
  runs first, so the figure says how many were waiting);
* the wake-up of an idle loop (asleep in epoll, nothing scheduled) by one
  callback from another thread;
* threads pushing with ``add_callback``/``call_soon_threadsafe`` while the
  loop is closed under them: no exception but asyncio's documented
  ``RuntimeError('Event loop is closed')`` from ``call_soon_threadsafe``
  (``add_callback`` drops the callback quietly, as Tornado's does), and no
  crash;
* futures resolved from another thread through ``call_soon_threadsafe``
  (in lists, and one at a time), ``run_in_executor``, and
  ``concurrent.futures`` futures yielded in a coroutine: every result
  arrives.
"""
import collections
import queue
import sys
import threading
import time

from ._child import (failed, is_worker, ms, on_our_loop, run_worker,
                     worker_main)
from ._report import count, section_main

SECTION = "threads"
WAKE_BOUND = 0.100       # the "within 100 ms"
CLOSED = "Event loop is closed"


def _percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


# -- workers (each runs in a process of its own) ------------------------------

def w_stress(m, api, nthreads, per):
    """`nthreads` threads push `per` callbacks each, then one marker that
    records when it ran; the callbacks themselves are C (list.append) so
    that the loop drains fast and the figure is about waking, not about
    the cost of a Python callback."""
    io = m.IOLoop()
    loop = io.asyncio_loop
    if not on_our_loop(io):
        return {"not_ours": repr(type(loop))}
    push = io.add_callback if api == "add_callback" else \
        loop.call_soon_threadsafe
    seen = [[] for _ in range(nthreads)]
    marks = [None] * nthreads
    loop_thread = threading.get_ident()
    finished = [0]

    def finish(i, t_add, backlog):
        t = time.perf_counter()
        marks[i] = (t_add, t, backlog, len(seen[i]),
                    threading.get_ident() == loop_thread)
        finished[0] += 1
        if finished[0] == nthreads:
            io.stop()

    def producer(i):
        append = seen[i].append
        for n in range(per):
            push(append, n)
        t = time.perf_counter()
        push(finish, i, t, loop._ready_count)

    threads = [threading.Thread(target=producer, args=(i,))
               for i in range(nthreads)]
    io.add_callback(lambda: [t.start() for t in threads])
    safety = io.call_later(120, io.stop)
    t0 = time.perf_counter()
    io.start()
    elapsed = time.perf_counter() - t0
    io.remove_timeout(safety)
    for t in threads:
        t.join()
    got = sum(len(s) for s in seen)
    in_order = sum(1 for s in seen if s == list(range(per)))
    done = [mk for mk in marks if mk is not None]
    # The last push of all, and when its callback (the last to run: the
    # ring is FIFO) ran.
    last = max(done, key=lambda mk: mk[0]) if done else None
    io.close()
    return {
        "total": nthreads * per, "got": got, "in_order": in_order,
        "nthreads": nthreads, "markers": len(done),
        "marker_after_all": sum(1 for mk in done if mk[3] == per),
        "on_loop_thread": sum(1 for mk in done if mk[4]),
        "latency": max(mk[1] for mk in done) - last[0] if done else None,
        "backlog": last[2] if done else None,
        "elapsed": elapsed,
    }


def w_idle(m, api, rounds, gap):
    """One callback at a time from another thread into a loop asleep in
    epoll (nothing else scheduled): the time from the push to the
    callback, each round after `gap` seconds of idleness."""
    io = m.IOLoop()
    loop = io.asyncio_loop
    if not on_our_loop(io):
        return {"not_ours": repr(type(loop))}
    push = io.add_callback if api == "add_callback" else \
        loop.call_soon_threadsafe
    lat = []
    iters = []
    arrived = threading.Event()
    last_it = [loop._iterations]

    def cb(t):
        lat.append(time.perf_counter() - t)
        iters.append(loop._iterations - last_it[0])
        last_it[0] = loop._iterations
        arrived.set()

    lost = [0]

    def producer():
        for _ in range(rounds):
            time.sleep(gap)
            arrived.clear()
            push(cb, time.perf_counter())
            if not arrived.wait(10):
                lost[0] += 1
                break
        push(io.stop)

    t = threading.Thread(target=producer)
    io.add_callback(t.start)
    safety = io.call_later(rounds * (gap + 0.5) + 30, io.stop)
    io.start()
    io.remove_timeout(safety)
    t.join()
    io.close()
    return {"rounds": rounds, "got": len(lat), "lost": lost[0],
            "max": max(lat) if lat else None,
            "p50": _percentile(lat, 0.5), "p99": _percentile(lat, 0.99),
            "max_iterations": max(iters) if iters else None}


def w_close_race(m, rounds, nthreads, after):
    """Each round: a fresh IOLoop run briefly, `nthreads` threads (half
    ``add_callback``, half ``call_soon_threadsafe``) pushing in a tight
    loop, and ``close()`` called under them; each thread carries on for
    `after` pushes once it sees the loop closed.  Every exception is
    counted by where it came from, its type and its message."""
    sys.setswitchinterval(1e-5)      # interleave the threads finely
    errors = collections.Counter()
    pushes_after = [0]
    pushes = [0]
    ran = [0]

    def noop():
        ran[0] += 1

    for r in range(rounds):
        io = m.IOLoop(make_current=False)
        loop = io.asyncio_loop
        if r == 0 and not on_our_loop(io):
            return {"not_ours": repr(type(loop))}
        state = {"closed": False}
        start = threading.Barrier(nthreads + 1)

        def pusher(kind):
            push = io.add_callback if kind == "add_callback" else \
                loop.call_soon_threadsafe
            start.wait()
            left = after
            n = 0
            while left > 0:
                if state["closed"]:
                    left -= 1
                try:
                    push(noop)
                except BaseException as e:
                    errors[(kind, type(e).__name__, str(e))] += 1
                n += 1
                if n > 200000:      # the main thread never closed it
                    break
            pushes[0] += n

        threads = [threading.Thread(
            target=pusher,
            args=("add_callback" if i % 2 == 0 else "call_soon_threadsafe",))
            for i in range(nthreads)]
        for t in threads:
            t.start()
        start.wait()
        io.add_callback(io.stop)
        io.start()
        io.close()
        state["closed"] = True
        for t in threads:
            t.join()
        pushes_after[0] += after * nthreads
    return {"rounds": rounds, "nthreads": nthreads,
            "errors": [[k[0], k[1], k[2], v] for k, v in errors.items()],
            "pushes": pushes[0], "pushes_after": pushes_after[0],
            "ran": ran[0]}


def w_future_threadsafe(m, n, batch, pingpong):
    """`n` futures resolved by another thread with
    ``call_soon_threadsafe(f.set_result, i)`` and yielded by a
    ``@gen.coroutine`` in lists of `batch`; then `pingpong` more, one at a
    time (the loop asleep between them)."""
    io = m.IOLoop()
    loop = io.asyncio_loop
    if not on_our_loop(io):
        return {"not_ours": repr(type(loop))}
    work = queue.SimpleQueue()

    def resolver():
        while True:
            futs = work.get()
            if futs is None:
                return
            for i, f in enumerate(futs):
                loop.call_soon_threadsafe(f.set_result, i)

    t = threading.Thread(target=resolver)
    t.start()
    stats = {"batched": 0, "batched_wrong": 0, "single": 0,
             "single_wrong": 0}

    @m.gen.coroutine
    def main():
        expect = list(range(batch))
        for _ in range(n // batch):
            futs = [m.Future() for _ in range(batch)]
            work.put(futs)
            got = yield futs
            stats["batched"] += len(got)
            if list(got) != expect:
                stats["batched_wrong"] += 1
        for _ in range(pingpong):
            f = m.Future()
            work.put([f])
            got = yield f
            stats["single"] += 1
            if got != 0:
                stats["single_wrong"] += 1

    t0 = time.perf_counter()
    try:
        io.run_sync(main, timeout=600)
    except Exception as e:
        stats["error"] = "%s: %s" % (type(e).__name__, e)
    stats["elapsed"] = time.perf_counter() - t0
    work.put(None)
    t.join()
    io.close()
    stats.update(n=n // batch * batch, pingpong=pingpong)
    return stats


def _triple(i):
    return i * 3


def w_executor(m, n, batch, workers):
    """`n` calls through ``IOLoop.run_in_executor`` (yielded in lists of
    `batch`), and `n` ``concurrent.futures`` futures from
    ``executor.submit`` yielded one by one in a ``@gen.coroutine``
    (submitted `batch` at a time, so the first of each batch are still
    running when yielded and the rest already done)."""
    import concurrent.futures
    io = m.IOLoop()
    if not on_our_loop(io):
        return {"not_ours": repr(type(io.asyncio_loop))}
    ex = concurrent.futures.ThreadPoolExecutor(workers)
    stats = {"rie": 0, "rie_wrong": 0, "cf": 0, "cf_wrong": 0,
             "cf_pending": 0}

    @m.gen.coroutine
    def via_run_in_executor():
        for b in range(0, n, batch):
            got = yield [io.run_in_executor(ex, _triple, i)
                         for i in range(b, b + batch)]
            stats["rie"] += len(got)
            if list(got) != [_triple(i) for i in range(b, b + batch)]:
                stats["rie_wrong"] += 1

    @m.gen.coroutine
    def via_concurrent_futures():
        for b in range(0, n, batch):
            futs = [ex.submit(_triple, i) for i in range(b, b + batch)]
            for i, f in zip(range(b, b + batch), futs):
                if not f.done():
                    stats["cf_pending"] += 1
                got = yield f
                stats["cf"] += 1
                if got != _triple(i):
                    stats["cf_wrong"] += 1

    for key, fn in (("rie", via_run_in_executor),
                    ("cf", via_concurrent_futures)):
        t0 = time.perf_counter()
        try:
            io.run_sync(fn, timeout=600)
        except Exception as e:
            stats[key + "_error"] = "%s: %s" % (type(e).__name__, e)
        stats[key + "_elapsed"] = time.perf_counter() - t0
    ex.shutdown()
    io.close()
    stats["n"] = n // batch * batch
    return stats


# -- the figures --------------------------------------------------------------

def _not_ours(ctx, name, res):
    if "not_ours" in res:
        ctx.figure(name, "the IOLoop runs on " + res["not_ours"],
                   want="tornado_cgen's loop", ok=False)
        return True
    return False


def _stress(ctx, mode, api, nthreads, per):
    label = "%s: %s, %d threads x %s" % (mode, api, nthreads, count(per))
    res, bad = run_worker(SECTION, "stress", mode,
                          {"api": api, "nthreads": nthreads, "per": per},
                          timeout=300)
    if bad:
        return failed(ctx, label, bad)
    if _not_ours(ctx, label, res):
        return
    lost = res["total"] - res["got"]
    ctx.figure(label + ": lost", "%s of %s" % (count(lost),
                                              count(res["total"])),
               want="0", ok=lost == 0 and res["markers"] == nthreads,
               note="in %.2f s" % res["elapsed"] if res["markers"] == nthreads
               else "%d of %d threads' last callbacks never ran"
               % (nthreads - res["markers"], nthreads))
    fifo_ok = (res["in_order"] == nthreads and
               res["marker_after_all"] == res["markers"])
    ctx.figure(label + ": FIFO per thread",
               "%d of %d threads in order" % (res["in_order"], nthreads),
               want="all", ok=fifo_ok,
               note="" if res["marker_after_all"] == res["markers"] else
               "a thread's last callback ran before its earlier ones")
    ctx.figure(label + ": on the loop's thread",
               "%d of %d" % (res["on_loop_thread"], res["markers"]),
               want="all", ok=res["on_loop_thread"] == nthreads)
    lat = res["latency"]
    ctx.figure(label + ": last push to its callback running",
               ms(lat) if lat is not None else "never ran",
               want="<= %d ms" % (WAKE_BOUND * 1e3),
               ok=lat is not None and lat <= WAKE_BOUND,
               note="the last push of all; %s callbacks (list.append) were "
               "queued ahead of it"
               % count(res["backlog"]) if lat is not None else "")


def _idle(ctx, mode, api, rounds, gap):
    label = "%s: %s wakes an idle loop" % (mode, api)
    res, bad = run_worker(SECTION, "idle", mode,
                          {"api": api, "rounds": rounds, "gap": gap},
                          timeout=rounds * (gap + 0.1) + 120)
    if bad:
        return failed(ctx, label, bad)
    if _not_ours(ctx, label, res):
        return
    ok = res["lost"] == 0 and res["got"] == rounds and \
        res["max"] <= WAKE_BOUND
    value = ("max %s, p99 %s, median %s over %s wake-ups"
             % (ms(res["max"]), ms(res["p99"]), ms(res["p50"]),
                count(res["got"])) if res["got"] else "never woke")
    ctx.figure(label, value, want="max <= %d ms, none lost"
               % (WAKE_BOUND * 1e3), ok=ok,
               note="%d lost; " % res["lost"] * (res["lost"] > 0) +
               "each after %d ms asleep; at most %s loop iterations "
               "between wake-ups" % (gap * 1e3, res["max_iterations"]))


def _close_race(ctx, mode, rounds, nthreads, after):
    label = "%s: add_callback/call_soon_threadsafe racing close(), %s " \
        "rounds x %d threads" % (mode, count(rounds), nthreads)
    res, bad = run_worker(SECTION, "close_race", mode,
                          {"rounds": rounds, "nthreads": nthreads,
                           "after": after}, timeout=600)
    if bad:
        return failed(ctx, label, bad)
    if _not_ours(ctx, label, res):
        return
    documented = 0
    other = []
    for kind, tname, msg, n in res["errors"]:
        if kind == "call_soon_threadsafe" and tname == "RuntimeError" \
                and msg == CLOSED:
            documented += n
        else:
            other.append("%s raised %s(%r) x%s" % (kind, tname, msg,
                                                   count(n)))
    ctx.figure(label + ": undocumented exceptions",
               "none" if not other else "; ".join(other),
               want="none (call_soon_threadsafe: RuntimeError(%r); "
               "add_callback: dropped quietly)" % CLOSED,
               ok=not other,
               note="%s pushes, %s after close(); %s RuntimeError(%r)"
               % (count(res["pushes"]), count(res["pushes_after"]),
                  count(documented), CLOSED))


def _future_threadsafe(ctx, mode, n, batch, pingpong):
    label = "%s: Future resolved by call_soon_threadsafe from a thread" % mode
    res, bad = run_worker(SECTION, "future_threadsafe", mode,
                          {"n": n, "batch": batch, "pingpong": pingpong},
                          timeout=600)
    if bad:
        return failed(ctx, label, bad)
    if _not_ours(ctx, label, res):
        return
    err = res.get("error")
    lost = res["n"] - res["batched"]
    ctx.figure("%s, in lists of %d: arrived" % (label, batch),
               "%s of %s" % (count(res["batched"]), count(res["n"])),
               want="all, right values",
               ok=not err and lost == 0 and res["batched_wrong"] == 0,
               note=err or ("%d lists with wrong values; " %
                            res["batched_wrong"] if res["batched_wrong"]
                            else "") + "in %.1f s with the %s below"
               % (res["elapsed"], count(pingpong)))
    ctx.figure("%s, one at a time: arrived" % label,
               "%s of %s" % (count(res["single"]), count(pingpong)),
               want="all, right values",
               ok=not err and res["single"] == pingpong and
               res["single_wrong"] == 0,
               note=err or "each handed to the thread only once the last "
               "arrived")


def _executor(ctx, mode, n, batch, workers):
    label = "%s: concurrent.futures, %d pool threads" % (mode, workers)
    res, bad = run_worker(SECTION, "executor", mode,
                          {"n": n, "batch": batch, "workers": workers},
                          timeout=600)
    if bad:
        return failed(ctx, label, bad)
    if _not_ours(ctx, label, res):
        return
    err = res.get("rie_error")
    ctx.figure("%s: IOLoop.run_in_executor, yielded in lists of %d: arrived"
               % (label, batch),
               "%s of %s" % (count(res["rie"]), count(res["n"])),
               want="all, right values",
               ok=not err and res["rie"] == res["n"] and
               res["rie_wrong"] == 0,
               note=err or "in %.1f s" % res["rie_elapsed"])
    err = res.get("cf_error")
    ctx.figure("%s: yield executor.submit(...) in @gen.coroutine: arrived"
               % label,
               "%s of %s" % (count(res["cf"]), count(res["n"])),
               want="all, right values",
               ok=not err and res["cf"] == res["n"] and res["cf_wrong"] == 0,
               note=err or "%s still running when yielded; in %.1f s"
               % (count(res["cf_pending"]), res["cf_elapsed"]))


def run(ctx):
    soak = ctx.soak
    for mode in ctx.modes:
        for api in ("add_callback", "call_soon_threadsafe"):
            _stress(ctx, mode, api, 8, 50000)
        if soak:
            _stress(ctx, mode, "add_callback", 8, 1000000)
        for api in ("add_callback", "call_soon_threadsafe"):
            _idle(ctx, mode, api, 5000 if soak else 500, 0.002)
        _close_race(ctx, mode, 10000 if soak else 1000, 4, 50)
        _future_threadsafe(ctx, mode, 1000000 if soak else 100000, 100,
                           1000000 if soak else 100000)
        _executor(ctx, mode, 1000000 if soak else 100000, 100, 4)
    if "installed" not in ctx.modes:
        ctx.skip("installed mode", "upstream Tornado >= 6.2 is not installed")


if __name__ == "__main__":
    if is_worker():
        sys.exit(worker_main(globals()))
    sys.exit(section_main(SECTION, run))
