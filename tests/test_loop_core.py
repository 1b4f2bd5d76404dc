"""The C loop's own rules, through its asyncio face: ordering, timers,
readiness, threads, and behaviour under faults (raising callbacks,
KeyboardInterrupt, fds closed while registered, signals during a poll)."""
import asyncio
import contextvars
import gc
import os
import signal
import socket
import threading
import time

import pytest

import tornado_cgen
from tornado_cgen import _core
from tornado_cgen.concurrent import Future


@pytest.fixture
def loop(tcg_loop):
    """Here `loop` is always tornado_cgen's (conftest's is parametrised)."""
    return tcg_loop


def run_soon_then_stop(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


# -- ordering -----------------------------------------------------------------

def test_call_soon_fifo_each_once(loop):
    seen = []
    for i in range(1000):
        loop.call_soon(seen.append, i)
    run_soon_then_stop(loop)
    assert seen == list(range(1000))


def test_callbacks_added_while_running_wait_for_next_iteration(loop):
    order = []

    def first():
        order.append(("first", loop._iterations))
        loop.call_soon(lambda: order.append(("added", loop._iterations)))

    loop.call_soon(first)
    loop.call_soon(lambda: order.append(("second", loop._iterations)))
    loop._run_once()
    assert [o[0] for o in order] == ["first", "second"]
    loop._run_once()
    assert [o[0] for o in order] == ["first", "second", "added"]
    assert order[2][1] == order[0][1] + 1


def test_call_soon_context(loop):
    var = contextvars.ContextVar("var", default="outer")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "inner")
    got = []
    loop.call_soon(lambda: got.append(var.get()), context=ctx)
    loop.call_soon(lambda: got.append(var.get()))
    loop._run_once()
    assert got == ["inner", "outer"]


def test_call_soon_rejects_unknown_keyword(loop):
    with pytest.raises(TypeError):
        loop.call_soon(print, spam=1)


def test_closed_loop_raises(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_later(1, print)
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon_threadsafe(print)
    loop.close()  # idempotent


# -- timers -------------------------------------------------------------------

def test_timers_by_deadline_then_fifo(loop):
    seen = []
    now = loop.time()
    loop.call_at(now + 0.03, seen.append, "c")
    loop.call_at(now + 0.01, seen.append, "a1")
    loop.call_at(now + 0.01, seen.append, "a2")
    loop.call_at(now + 0.02, seen.append, "b")
    loop.call_at(now + 0.04, loop.stop)
    loop.run_forever()
    assert seen == ["a1", "a2", "b", "c"]


def test_time_is_monotonic_clock(loop):
    t0 = time.monotonic()
    t = loop.time()
    assert t0 <= t <= time.monotonic()


def test_timer_does_not_fire_early(loop):
    fired = []
    t0 = loop.time()
    loop.call_later(0.05, lambda: (fired.append(loop.time()), loop.stop()))
    loop.run_forever()
    assert fired[0] - t0 >= 0.05


def test_many_cancelled_timers_are_purged(loop):
    handles = [loop.call_later(100, print) for _ in range(1000)]
    for h in handles[:900]:
        h.cancel()
    assert loop._timer_cancelled_count == 900
    loop.call_soon(lambda: None)   # so the iteration does not sleep
    loop._run_once()
    assert loop._timer_count == 100
    assert loop._timer_cancelled_count == 0
    for h in handles[900:]:
        h.cancel()


def test_none_delay_is_type_error(loop):
    with pytest.raises(TypeError):
        loop.call_later(None, print)
    with pytest.raises(TypeError):
        loop.call_at(None, print)


# -- faults -------------------------------------------------------------------

def test_raising_callback_is_reported_and_loop_continues(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    seen = []

    def boom():
        raise ValueError("boom")

    loop.call_soon(boom)
    loop.call_soon(seen.append, 1)
    run_soon_then_stop(loop)
    assert seen == [1]
    assert len(contexts) == 1
    assert contexts[0]["message"].startswith("Exception in callback")
    assert isinstance(contexts[0]["exception"], ValueError)
    assert isinstance(contexts[0]["handle"], _core.Handle)


def test_default_exception_handler_logs(loop, caplog):
    loop.call_soon(lambda: 1 / 0)
    with caplog.at_level("ERROR", logger="asyncio"):
        run_soon_then_stop(loop)
    assert "Exception in callback" in caplog.text
    assert "ZeroDivisionError" in caplog.text


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_fatal_exceptions_propagate_and_loop_restarts(loop, exc):
    seen = []

    def fatal():
        raise exc()

    loop.call_soon(seen.append, 1)
    loop.call_soon(fatal)
    loop.call_soon(seen.append, 2)
    with pytest.raises(exc):
        loop.run_forever()
    assert seen == [1]
    assert not loop.is_running()
    assert asyncio._get_running_loop() is None
    run_soon_then_stop(loop)
    assert seen == [1, 2]


def test_start_while_running_raises(loop):
    errors = []

    def nested():
        try:
            loop.run_forever()
        except RuntimeError as e:
            errors.append(e)
        loop.stop()

    loop.call_soon(nested)
    loop.run_forever()
    assert len(errors) == 1


def test_stop_before_run_runs_one_iteration(loop):
    seen = []
    loop.stop()
    loop.call_soon(seen.append, 1)
    loop.run_forever()
    assert seen == [1]


def test_running_loop_visible(loop):
    got = []

    def check():
        got.append(asyncio.get_running_loop())
        got.append(Future().get_loop())
        loop.stop()

    loop.call_soon(check)
    loop.run_forever()
    assert got == [loop, loop]
    assert asyncio._get_running_loop() is None


# -- readiness ----------------------------------------------------------------

def test_reader_and_writer(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    got = []
    try:
        def on_read():
            got.append(a.recv(10))
            loop.remove_reader(a)
            loop.stop()

        loop.add_reader(a, on_read)
        loop.add_writer(b, lambda: (b.send(b"x"), loop.remove_writer(b)))
        loop.run_forever()
        assert got == [b"x"]
        assert not loop.remove_reader(a)
        assert not loop.remove_writer(b)
    finally:
        a.close()
        b.close()


def test_replacing_a_reader_cancels_the_old_handle(loop):
    a, b = socket.socketpair()
    try:
        h1 = loop._add_reader(a.fileno(), print)
        h2 = loop._add_reader(a.fileno(), print)
        assert h1.cancelled() and not h2.cancelled()
        assert loop._remove_reader(a.fileno())
        assert h2.cancelled()
    finally:
        a.close()
        b.close()


def test_bad_fds(loop):
    with pytest.raises(ValueError):
        loop.add_reader(-1, print)
    with pytest.raises(ValueError):
        loop.add_reader(object(), print)
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        loop._add_reader(r, print)


def test_fd_closed_while_registered(loop):
    a, b = socket.socketpair()
    calls = []
    loop._add_reader(a.fileno(), calls.append, 1)
    fd = a.fileno()
    a.close()           # epoll drops it; our record is stale
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert calls == []
    assert loop._remove_reader(fd)   # no error although fd is gone
    b.close()


def test_fd_closed_but_file_still_open_does_not_spin(loop):
    # The registered fd is closed while a dup keeps its file open: epoll
    # keeps reporting the old number, which can no longer be unregistered.
    a, b = socket.socketpair()
    keep = a.dup()
    fd = a.fileno()
    loop._add_reader(fd, lambda: None)
    a.close()
    assert loop._remove_reader(fd)
    b.send(b"x")        # `keep` (same file) becomes readable
    start = loop._iterations
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert loop._iterations - start < 20
    keep.close()
    b.close()


# -- threads ------------------------------------------------------------------

def test_call_soon_threadsafe_wakes_sleeping_loop(loop):
    got = []

    def other():
        time.sleep(0.05)
        loop.call_soon_threadsafe(lambda: (got.append(threading.get_ident()),
                                           loop.stop()))

    t = threading.Thread(target=other)
    t.start()
    loop.call_later(30, loop.stop)     # the wake-up, not this, must stop it
    t0 = time.monotonic()
    loop.run_forever()
    t.join()
    assert got == [threading.get_ident()]
    assert time.monotonic() - t0 < 10


def test_threadsafe_stress(loop):
    nthreads, per = 8, 20000
    seen = [[] for _ in range(nthreads)]
    loop_thread = []

    def record(i, n):
        seen[i].append(n)

    def producer(i):
        for n in range(per):
            loop.call_soon_threadsafe(record, i, n)

    threads = [threading.Thread(target=producer, args=(i,))
               for i in range(nthreads)]

    def check_done():
        loop_thread.append(threading.get_ident())
        if all(len(s) == per for s in seen):
            loop.stop()
        else:
            loop.call_later(0.001, check_done)

    loop.call_soon(lambda: [t.start() for t in threads])
    loop.call_soon(check_done)
    loop.run_forever()
    for t in threads:
        t.join()
    for s in seen:
        assert s == list(range(per))
    assert set(loop_thread) == {threading.get_ident()}


# -- signals ------------------------------------------------------------------

@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals are delivered to the main thread")
def test_eintr_keeps_remaining_timeout(loop):
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        t0 = loop.time()
        loop.call_later(0.15, loop.stop)
        loop.run_forever()
        elapsed = loop.time() - t0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert hits == [1]
    assert elapsed >= 0.15


def test_signal_raising_keyboardinterrupt_during_poll(loop):
    def raise_ki(*a):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, raise_ki)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        loop.call_later(30, loop.stop)
        with pytest.raises(KeyboardInterrupt):
            loop.run_forever()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert not loop.is_running()
    run_soon_then_stop(loop)


def test_add_signal_handler(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, lambda: (got.append(1),
                                                     loop.stop()))
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(30, loop.stop)
    loop.run_forever()
    assert got == [1]
    assert loop.remove_signal_handler(signal.SIGUSR1)


# -- lifetime -----------------------------------------------------------------

def test_loop_with_cycles_is_collected():
    import weakref
    loop = tornado_cgen.new_event_loop()
    loop.call_soon(lambda: loop)
    loop.call_later(100, lambda: loop)
    ref = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert ref() is None


def test_unclosed_loop_is_collected_with_pending_handles():
    import weakref
    import warnings
    loop = tornado_cgen.new_event_loop()
    loop.call_soon(lambda: loop)
    ref = weakref.ref(loop)
    del loop
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert ref() is None


# -- entry points -------------------------------------------------------------

def test_run_and_runner():
    async def main():
        return type(asyncio.get_running_loop())

    assert tornado_cgen.run(main()) is tornado_cgen.loop.Loop
    if hasattr(asyncio, "Runner"):   # 3.11+
        with asyncio.Runner(loop_factory=tornado_cgen.new_event_loop) as r:
            assert r.run(main()) is tornado_cgen.loop.Loop


def test_policy():
    old = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(tornado_cgen.EventLoopPolicy())
    try:
        loop = asyncio.new_event_loop()
        assert isinstance(loop, tornado_cgen.loop.Loop)
        loop.close()
    finally:
        asyncio.set_event_loop_policy(old)


def test_run_once_refuses_nesting(loop):
    errors = []

    def nested():
        try:
            loop._run_once()
        except RuntimeError as e:
            errors.append(e)

    loop.call_soon(nested)
    loop._run_once()
    assert len(errors) == 1
    assert asyncio._get_running_loop() is None


def test_asyncio_face_has_no_tornado_methods(loop):
    assert not hasattr(loop, "add_callback")
    assert not hasattr(loop, "add_handler")


def test_threadsafe_wakeups_while_loop_sleeps(loop):
    """Producers that pause between pushes, so the loop keeps going to
    sleep: every push must wake it (a lost wake-up would leave the loop
    asleep until the safety timer)."""
    nthreads, per = 4, 300
    done = [0]
    total = nthreads * per

    def record():
        done[0] += 1
        if done[0] == total:
            loop.stop()

    def producer(i):
        for n in range(per):
            loop.call_soon_threadsafe(record)
            time.sleep(0.0002 if n % 3 else 0)

    threads = [threading.Thread(target=producer, args=(i,))
               for i in range(nthreads)]
    loop.call_soon(lambda: [t.start() for t in threads])
    safety = loop.call_later(30, loop.stop)
    t0 = time.monotonic()
    loop.run_forever()
    for t in threads:
        t.join()
    safety.cancel()
    assert done[0] == total
    assert time.monotonic() - t0 < 25


def test_stop_from_other_thread_wakes_loop(loop):
    t = threading.Timer(0.05, loop.call_soon_threadsafe, args=(loop.stop,))
    t.start()
    safety = loop.call_later(30, loop.stop)
    t0 = time.monotonic()
    loop.run_forever()
    t.join()
    safety.cancel()
    assert time.monotonic() - t0 < 25


# ---- programs that once crashed or lost a call -----------------------------

class TestLoopEdges:
    def test_nan_time_is_refused(self, tcg_loop):
        with pytest.raises(ValueError):
            tcg_loop.call_later(float("nan"), print)
        with pytest.raises(ValueError):
            tcg_loop.call_at(float("nan"), print)
        # Timers keep working (a NaN in the heap used to hide them all).
        fired = []
        tcg_loop.call_later(0.001, fired.append, 1)
        tcg_loop.call_later(0.01, tcg_loop.stop)
        tcg_loop.run_forever()
        assert fired == [1]

    def test_infinite_deadline_never_fires(self, tcg_loop):
        fired = []
        tcg_loop.call_later(float("inf"), fired.append, "never")
        tcg_loop.call_later(0.01, tcg_loop.stop)
        tcg_loop.run_forever()
        assert fired == []

    def test_bogus_huge_fd_is_refused_without_a_huge_table(self, tcg_loop):
        import resource
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with pytest.raises(OSError):
            tcg_loop.add_reader(2 ** 25, print)
        with pytest.raises(OSError):
            tcg_loop.add_writer(2 ** 30, print)
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert grown_kib < 64 * 1024   # a 2**25-entry table is ~1.5 GiB
