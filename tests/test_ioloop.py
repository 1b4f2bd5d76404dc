"""IOLoop and PeriodicCallback semantics, run against our IOLoop, against
upstream Tornado's (the oracle) and against Tornado's under
``tornado_cgen.install()`` ("installed": Tornado's IOLoop on our C loop): a
test that passes on all three encodes Tornado 6's real behaviour."""
import asyncio
import concurrent.futures
import datetime
import gc
import socket
import threading
import time
import warnings

import pytest

import conftest


def _tornado_impl():
    tornado_ioloop = pytest.importorskip("tornado.ioloop")
    return tornado_ioloop


def _tcg_impl():
    from tornado_cgen import ioloop
    return ioloop


@pytest.fixture(params=["tcg", "tornado", "installed"])
def impl(request):
    """The ioloop module under test (``tornado_cgen.installed()`` tells
    "installed" from "tornado")."""
    if request.param == "tcg":
        yield _tcg_impl()
    elif request.param == "tornado":
        yield _tornado_impl()
    else:
        module = _tornado_impl()
        with conftest.tornado_installed():
            yield module


@pytest.fixture
def io(impl):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = impl.IOLoop()
    yield loop
    if not loop.asyncio_loop.is_closed():
        loop.close()
    asyncio.set_event_loop(None)


APP_LOG = "tornado.application"


def run_then_stop(io, delay=0.0):
    io.call_later(delay, io.stop)
    io.start()


# -- add_callback -------------------------------------------------------------

def test_add_callback_fifo_next_iteration(io):
    seen = []

    def first():
        seen.append("first")
        io.add_callback(seen.append, "added")

    io.add_callback(first)
    io.add_callback(seen.append, "second")
    io.add_callback(lambda: io.add_callback(lambda: io.add_callback(io.stop)))
    io.start()
    assert seen == ["first", "second", "added"]


def test_add_callback_kwargs(io):
    got = []
    io.add_callback(lambda a, b=None: got.append((a, b)), 1, b=2)
    io.add_callback(io.stop)
    io.start()
    assert got == [(1, 2)]


def test_spawn_callback(io):
    got = []
    io.spawn_callback(got.append, 1)
    io.add_callback(io.stop)
    io.start()
    assert got == [1]


def test_exception_in_callback_logged_and_loop_continues(io, caplog):
    got = []

    def boom():
        raise ValueError("boom")

    io.add_callback(boom)
    io.add_callback(got.append, 1)
    io.add_callback(io.stop)
    with caplog.at_level("ERROR", logger=APP_LOG):
        io.start()
    assert got == [1]
    records = [r for r in caplog.records if r.name == APP_LOG]
    assert len(records) == 1
    assert records[0].getMessage().startswith("Exception in callback")
    assert records[0].exc_info[0] is ValueError


def test_cancelled_error_in_callback_is_silent(io, caplog):
    def cancelled():
        raise asyncio.CancelledError()

    io.add_callback(cancelled)
    io.add_callback(io.stop)
    with caplog.at_level("DEBUG"):
        io.start()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_coroutine_returned_from_callback_is_run_and_errors_logged(io, caplog):
    ran = []

    async def coro():
        ran.append(1)
        raise ValueError("in coroutine")

    io.add_callback(coro)
    io.call_later(0.05, io.stop)
    with caplog.at_level("ERROR", logger=APP_LOG):
        io.start()
    assert ran == [1]
    assert any(r.exc_info and r.exc_info[0] is ValueError
               for r in caplog.records if r.name == APP_LOG)


def test_non_awaitable_result_ignored(io, caplog):
    io.add_callback(lambda: 42)
    io.add_callback(io.stop)
    with caplog.at_level("DEBUG"):
        io.start()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def _gen_of(impl):
    import importlib
    return importlib.import_module(impl.__name__.rsplit(".", 1)[0] + ".gen")


def test_callback_result_goes_through_convert_yielded(io, impl, caplog):
    """A callback's result (and run_sync's) is converted by gen's
    convert_yielded, registry included: a registered type is awaited and
    its failure logged."""
    gen = _gen_of(impl)

    class Deferredish:
        def __init__(self, value=None, exc=None):
            self.value, self.exc = value, exc

    @gen.convert_yielded.register(Deferredish)
    def _(d):
        f = asyncio.Future()
        if d.exc is not None:
            f.set_exception(d.exc)
        else:
            f.set_result(d.value)
        return f

    io.add_callback(lambda: Deferredish(exc=KeyError("registered")))
    io.call_later(0.02, io.stop)
    with caplog.at_level("ERROR", logger=APP_LOG):
        io.start()
    assert [r.exc_info[0] for r in caplog.records
            if r.name == APP_LOG] == [KeyError]
    assert io.run_sync(lambda: Deferredish(value=5)) == 5


def test_add_callback_from_other_thread_wakes_loop(io):
    got = []

    def other():
        time.sleep(0.05)
        io.add_callback(lambda: (got.append(threading.get_ident()),
                                 io.stop()))

    t = threading.Thread(target=other)
    io.add_callback(t.start)
    io.call_later(30, io.stop)
    t0 = time.monotonic()
    io.start()
    t.join()
    assert got == [threading.get_ident()]
    assert time.monotonic() - t0 < 10


def test_add_callback_after_close_is_dropped(io):
    io.close()
    io.add_callback(print)          # same thread: dropped, no error
    errors = []

    def other():
        try:
            io.add_callback(print)
        except Exception as e:      # pragma: no cover
            errors.append(e)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert errors == []


def test_add_callback_from_signal_is_deprecated(io):
    got = []
    with pytest.warns(DeprecationWarning) as warned:
        io.add_callback_from_signal(got.append, 1)
    # Tornado warns without a stacklevel: the warning is the library's,
    # not the caller's (so the default filters hide it, even in __main__).
    assert [w.filename for w in warned] != [__file__]
    io.add_callback(io.stop)
    io.start()
    assert got == [1]


def test_thread_stress(io, impl):
    """8 threads x 50,000 add_callback into a running loop: each runs once,
    in order per thread, on the loop thread.  (Upstream, whose every
    cross-thread call writes to a pipe, gets a tenth of the load; under
    install() Tornado's add_callback is the C loop's.)"""
    import tornado_cgen
    ours = (impl.__name__.startswith("tornado_cgen") or
            tornado_cgen.installed())
    nthreads, per = 8, 50000 if ours else 5000
    seen = [[] for _ in range(nthreads)]
    wrong_thread = []
    loop_thread = threading.get_ident()
    remaining = [nthreads * per]

    def record(i, n):
        if threading.get_ident() != loop_thread:
            wrong_thread.append(i)
        seen[i].append(n)
        remaining[0] -= 1
        if remaining[0] == 0:
            io.stop()

    def producer(i):
        add = io.add_callback
        for n in range(per):
            add(record, i, n)

    threads = [threading.Thread(target=producer, args=(i,))
               for i in range(nthreads)]
    io.add_callback(lambda: [t.start() for t in threads])
    io.call_later(120, io.stop)
    io.start()
    for t in threads:
        t.join()
    assert wrong_thread == []
    for s in seen:
        assert s == list(range(per))


# -- timeouts -----------------------------------------------------------------

def test_add_timeout_number_and_timedelta(io):
    seen = []
    io.add_timeout(io.time() + 0.02, seen.append, "abs")
    io.add_timeout(datetime.timedelta(seconds=0.01), seen.append, "rel")
    io.add_timeout(io.time() + 0.03, io.stop)
    io.start()
    assert seen == ["rel", "abs"]


def test_add_timeout_bad_deadline(io):
    with pytest.raises(TypeError, match=r"^Unsupported deadline 'soon'$"):
        io.add_timeout("soon", print)
    # Tornado formats the deadline itself with %, so a 1-tuple shows bare.
    with pytest.raises(TypeError, match=r"^Unsupported deadline 5$"):
        io.add_timeout((5,), print)


def test_call_later_call_at_kwargs_and_order(io):
    seen = []
    io.call_later(0.02, lambda x=None: seen.append(x), x="later")
    io.call_at(io.time() + 0.01, seen.append, "at")
    io.call_at(io.time() - 10, seen.append, "past")
    io.call_later(0.03, io.stop)
    io.start()
    assert seen == ["past", "at", "later"]


def test_remove_timeout(io):
    seen = []
    h = io.call_later(0.01, seen.append, 1)
    io.remove_timeout(h)
    h2 = io.call_later(0.0, seen.append, 2)
    run_then_stop(io, 0.03)
    io.remove_timeout(h2)           # after it ran: harmless
    assert seen == [2]


def test_exception_in_timeout_logged(io, caplog):
    def boom():
        raise ValueError("boom")

    io.call_later(0, boom)
    with caplog.at_level("ERROR", logger=APP_LOG):
        run_then_stop(io, 0.01)
    assert any(r.getMessage().startswith("Exception in callback")
               for r in caplog.records if r.name == APP_LOG)


def test_time_advances(io):
    t0 = io.time()
    time.sleep(0.01)
    assert io.time() > t0


# -- handlers -----------------------------------------------------------------

def test_add_handler_fd_and_object(io, impl, pair):
    a, b = pair
    calls = []

    def handler(fd, events):
        calls.append((fd, events))
        a.recv(10)
        io.remove_handler(fd)
        io.stop()

    io.add_handler(a.fileno(), handler, impl.IOLoop.READ)
    b.send(b"x")
    io.start()
    assert calls == [(a.fileno(), impl.IOLoop.READ)]

    io.add_handler(a, handler, impl.IOLoop.READ)
    b.send(b"x")
    io.start()
    assert calls[1] == (a, impl.IOLoop.READ)


def test_add_handler_twice_is_value_error(io, impl, pair):
    a, b = pair
    io.add_handler(a.fileno(), lambda fd, ev: None, impl.IOLoop.READ)
    with pytest.raises(ValueError):
        io.add_handler(a, lambda fd, ev: None, impl.IOLoop.READ)
    io.remove_handler(a)


def test_add_handler_that_fails_stays_registered(io, impl):
    """Tornado records the handler before asking the loop to watch the
    fd, and does not undo that if the loop refuses (epoll refuses regular
    files): the fd counts as added until remove_handler."""
    import os
    import tempfile
    fd, path = tempfile.mkstemp()
    try:
        with pytest.raises(PermissionError):
            io.add_handler(fd, lambda fd, ev: None, impl.IOLoop.READ)
        assert fd in io.handlers
        with pytest.raises(ValueError, match="fd %d added twice" % fd):
            io.add_handler(fd, lambda fd, ev: None, impl.IOLoop.READ)
        io.remove_handler(fd)
        assert fd not in io.handlers
        with pytest.raises(PermissionError):
            io.add_handler(fd, lambda fd, ev: None, impl.IOLoop.READ)
        io.remove_handler(fd)
    finally:
        os.close(fd)
        os.unlink(path)


def test_remove_unknown_handler_is_noop(io, impl, pair):
    a, b = pair
    calls = []

    def handler(fd, events):
        calls.append(events)
        a.recv(10)
        io.stop()

    io.remove_handler(a.fileno())       # never added
    io.remove_handler(12345)
    io.add_handler(a, handler, impl.IOLoop.READ)
    io.remove_handler(b)                # another fd: a's handler stays
    b.send(b"x")
    io.call_later(10, io.stop)
    io.start()
    assert calls == [impl.IOLoop.READ]
    io.remove_handler(a)
    io.remove_handler(a)                # twice: still nothing


def test_update_handler(io, impl, pair):
    a, b = pair
    calls = []

    def handler(fd, events):
        calls.append(events)
        if events & impl.IOLoop.WRITE:
            io.update_handler(fd, impl.IOLoop.READ)
            b.send(b"x")
        else:
            a.recv(10)
            io.remove_handler(fd)
            io.stop()

    io.add_handler(a, handler, impl.IOLoop.READ)
    io.update_handler(a, impl.IOLoop.WRITE)
    io.start()
    assert calls == [impl.IOLoop.WRITE, impl.IOLoop.READ]


def test_handler_constants(impl):
    assert (impl.IOLoop.NONE, impl.IOLoop.READ, impl.IOLoop.WRITE,
            impl.IOLoop.ERROR) == (0, 1, 4, 0x18)


def test_close_all_fds(impl, pair):
    a, b = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        io = impl.IOLoop()
    io.add_handler(a, lambda fd, ev: None, impl.IOLoop.READ)
    io.close(all_fds=True)
    assert a.fileno() == -1
    assert b.fileno() != -1
    asyncio.set_event_loop(None)


def test_fd_closed_while_handler_registered(io, impl, pair):
    """Closing a watched fd silences it (epoll forgets a closed file), the
    loop goes on, and after remove_handler the fd number can be watched
    again, by a new file that reuses it."""
    import os
    a, b = pair
    calls = []
    io.add_handler(a.fileno(), lambda fd, ev: calls.append(("old", fd)),
                   impl.IOLoop.READ)
    fd = a.fileno()
    c, d = socket.socketpair()          # (made now, so not reusing fd)
    b.send(b"x")                        # readable, but closed before polled
    a.close()
    ran = []
    io.add_callback(ran.append, 1)
    run_then_stop(io, 0.02)
    assert calls == [] and ran == [1]
    io.remove_handler(fd)

    try:
        os.dup2(c.fileno(), fd)         # fd is now another socket
        io.add_handler(fd, lambda fd_, ev: (calls.append(("new", fd_)),
                                            io.stop()), impl.IOLoop.READ)
        d.send(b"y")
        io.call_later(10, io.stop)
        io.start()
        assert calls[:1] == [("new", fd)]
        io.remove_handler(fd)
    finally:
        os.close(fd)
        c.close()
        d.close()


# -- running ------------------------------------------------------------------

def test_start_while_running_raises(io):
    errors = []

    def nested():
        try:
            io.start()
        except RuntimeError as e:
            errors.append(e)
        io.stop()

    io.add_callback(nested)
    io.start()
    assert len(errors) == 1


def test_keyboard_interrupt_propagates_and_loop_restarts(io):
    got = []

    def interrupt():
        raise KeyboardInterrupt

    io.add_callback(interrupt)
    with pytest.raises(KeyboardInterrupt):
        io.start()
    io.add_callback(got.append, 1)
    io.add_callback(io.stop)
    io.start()
    assert got == [1]


def test_current_inside_running_loop(io, impl):
    got = []

    def check():
        got.append(impl.IOLoop.current())
        io.stop()

    io.add_callback(check)
    io.start()
    assert got == [io]


def test_current_on_foreign_asyncio_loop(impl):
    got = []

    async def main():
        a = impl.IOLoop.current()
        got.append(a is impl.IOLoop.current())
        got.append(isinstance(a, impl.IOLoop))
        fut = asyncio.get_running_loop().create_future()
        a.add_callback(fut.set_result, 5)
        got.append(await fut)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert got == [True, True, 5]


def test_current_on_uvloop(impl):
    uvloop = pytest.importorskip("uvloop")
    got = []

    async def main():
        a = impl.IOLoop.current()
        fut = asyncio.get_running_loop().create_future()
        a.add_callback(fut.set_result, 7)
        a.call_later(0.001, lambda: None)
        got.append(await fut)

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert got == [7]


def test_make_current_and_clear_current(impl):
    io = impl.IOLoop(make_current=False)
    try:
        with pytest.warns(DeprecationWarning):
            io.make_current()
        assert impl.IOLoop.current() is io
        with pytest.warns(DeprecationWarning):
            impl.IOLoop.clear_current()
        assert impl.IOLoop.current(instance=False) is not io
    finally:
        io.close()
        asyncio.set_event_loop(None)


# -- run_sync -----------------------------------------------------------------

def test_run_sync_coroutine(io):
    async def f():
        await asyncio.sleep(0)
        return 42

    assert io.run_sync(f) == 42


def test_run_sync_plain_function(io):
    assert io.run_sync(lambda: None) is None


def test_run_sync_exception(io):
    async def f():
        raise ValueError("x")

    with pytest.raises(ValueError):
        io.run_sync(f)

    def g():
        raise KeyError("sync")

    with pytest.raises(KeyError):
        io.run_sync(g)


def test_run_sync_timeout_cancels(io, impl):
    cancelled = []

    async def f():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(1)
            raise

    with pytest.raises(impl.TimeoutError,
                       match=r"Operation timed out after 0.05 seconds"):
        io.run_sync(f, timeout=0.05)
    assert cancelled == [1]


def test_run_sync_loop_stopped(io):
    async def f():
        io.stop()
        await asyncio.sleep(10)

    with pytest.raises(RuntimeError, match="Event loop stopped before "
                                           "Future completed"):
        io.run_sync(f)


def test_run_sync_non_yieldable_is_error(io):
    with pytest.raises(Exception):
        io.run_sync(lambda: 42)


# -- futures and executors ----------------------------------------------------

def test_add_future_is_deferred(io):
    got = []
    fut = asyncio.Future(loop=io.asyncio_loop)
    fut.set_result(3)
    io.add_future(fut, lambda f: got.append(f.result()))
    assert got == []
    io.add_callback(io.add_callback, io.stop)
    io.start()
    assert got == [3]


def test_add_future_concurrent(io):
    got = []
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        cf = ex.submit(lambda: 9)

        def done(f):
            got.append((f.result(), threading.get_ident()))
            io.stop()

        io.add_future(cf, done)
        io.call_later(10, io.stop)
        io.start()
    assert got == [(9, threading.get_ident())]


def test_add_future_of_a_non_future_is_an_assertion_error(io, impl):
    # Tornado: `assert is_future(future)` (no message); ours raised
    # AttributeError.
    gen = _gen_of(impl)
    for obj in (5, None, gen.moment, object()):
        with pytest.raises(AssertionError) as info:
            io.add_future(obj, lambda f: None)
        assert str(info.value) == ""


def test_add_future_callback_exception_logged(io, caplog):
    fut = asyncio.Future(loop=io.asyncio_loop)
    fut.set_result(None)

    def boom(f):
        raise ValueError("boom")

    io.add_future(fut, boom)
    with caplog.at_level("ERROR", logger=APP_LOG):
        run_then_stop(io, 0.01)
    assert any(r.getMessage().startswith("Exception in callback")
               for r in caplog.records if r.name == APP_LOG)


def test_run_in_executor(io):
    async def f():
        return await io.run_in_executor(None, sum, [1, 2, 3])

    assert io.run_sync(f) == 6
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        io.set_default_executor(ex)
        assert io.run_sync(f) == 6


# -- PeriodicCallback ---------------------------------------------------------

def test_periodic_callback_runs_and_stops(io, impl):
    count = []

    def cb():
        count.append(1)
        if len(count) == 3:
            pc.stop()
            io.add_callback(io.stop)

    pc = impl.PeriodicCallback(cb, 5)
    assert not pc.is_running()
    io.add_callback(pc.start)
    io.call_later(10, io.stop)
    io.start()
    assert len(count) == 3
    assert not pc.is_running()


def test_periodic_callback_timedelta_and_validation(impl):
    pc = impl.PeriodicCallback(lambda: None,
                               datetime.timedelta(seconds=1.5))
    assert pc.callback_time == 1500
    with pytest.raises(ValueError):
        impl.PeriodicCallback(lambda: None, 0)
    with pytest.raises(ValueError):
        impl.PeriodicCallback(lambda: None, -1)


@pytest.mark.parametrize("next_timeout,now,expected", [
    (1000, 1000, 1010),      # on time
    (1000, 1005, 1010),      # late within the period
    (1000, 1025, 1030),      # overran: missed runs skipped
    (1000, 995, 1010),       # clock went backwards: one period on
])
def test_periodic_callback_schedule(impl, next_timeout, now, expected):
    pc = impl.PeriodicCallback(lambda: None, 10000)
    pc._next_timeout = next_timeout
    pc._update_next(now)
    assert pc._next_timeout == expected


@pytest.mark.parametrize("rand,expected", [(0.0, 1009.5), (1.0, 1010.5),
                                            (0.5, 1010)])
def test_periodic_callback_jitter(impl, monkeypatch, rand, expected):
    import random
    monkeypatch.setattr(random, "random", lambda: rand)
    pc = impl.PeriodicCallback(lambda: None, 10000, jitter=0.1)
    pc._next_timeout = 1000
    pc._update_next(1000)
    assert pc._next_timeout == pytest.approx(expected)


def test_periodic_callback_exception_logged(io, impl, caplog):
    calls = []

    def cb():
        calls.append(1)
        if len(calls) == 2:
            pc.stop()
            io.add_callback(io.stop)
        raise ValueError("periodic")

    pc = impl.PeriodicCallback(cb, 1)
    io.add_callback(pc.start)
    with caplog.at_level("ERROR", logger=APP_LOG):
        io.start()
    assert len(calls) == 2
    assert sum(1 for r in caplog.records if r.name == APP_LOG) == 2


def test_periodic_coroutine_awaited_before_next_run(io, impl):
    active = [0]
    max_active = [0]
    runs = []

    async def cb():
        active[0] += 1
        max_active[0] = max(max_active[0], active[0])
        await asyncio.sleep(0.02)      # longer than the period
        active[0] -= 1
        runs.append(1)
        if len(runs) == 3:
            pc.stop()
            io.add_callback(io.stop)

    pc = impl.PeriodicCallback(cb, 2)
    io.add_callback(pc.start)
    io.call_later(10, io.stop)
    io.start()
    assert len(runs) == 3
    assert max_active[0] == 1


def test_periodic_callback_runs_in_a_task(io, impl):
    """Tornado's PeriodicCallback._run is a coroutine, which the IOLoop
    runs as a Task: the callback sees a current task, and runs a loop step
    after its timer (a timer due at the same time, scheduled after it, runs
    first)."""
    seen = []

    def cb():
        seen.append(("periodic", asyncio.current_task() is not None))
        pc.stop()
        io.add_callback(io.stop)

    def start():
        pc.start()
        io.call_at(pc._next_timeout, seen.append, "timer")

    pc = impl.PeriodicCallback(cb, 10)
    io.add_callback(start)
    io.call_later(10, io.stop)
    io.start()
    assert seen == ["timer", ("periodic", True)]


def test_periodic_callback_keeps_going_after_keyboard_interrupt(io, impl):
    # The interrupt reaches start()'s caller, and the next run was
    # scheduled all the same (Tornado's _run reschedules in `finally`).
    runs = []

    def cb():
        runs.append(1)
        if len(runs) == 1:
            raise KeyboardInterrupt
        if len(runs) == 3:
            pc.stop()
            io.add_callback(io.stop)

    pc = impl.PeriodicCallback(cb, 1)
    io.add_callback(pc.start)
    interrupts = 0
    for _ in range(5):
        guard = io.call_later(1, io.stop)
        try:
            io.start()
        except KeyboardInterrupt:
            interrupts += 1
        else:
            break               # stopped: by cb, or by the guard
        finally:
            io.remove_timeout(guard)
    assert interrupts >= 1
    assert len(runs) == 3 and not pc.is_running()


def test_tasks_made_for_the_ioloop_are_kept_alive(io, impl, caplog):
    """A coroutine handed to the IOLoop (spawn_callback, or through
    gen.convert_yielded, as with_timeout does) becomes a Task that the
    IOLoop holds until it finishes: asyncio itself keeps only a weak
    reference, and a Task waiting on a future nothing else holds would be
    collected ("Task was destroyed but it is pending!")."""
    gen = _gen_of(impl)
    closed = []

    async def forgotten(tag):
        try:
            await asyncio.get_running_loop().create_future()
        except GeneratorExit:
            closed.append(tag)
            raise

    async def main():
        io.spawn_callback(forgotten, "spawned")
        gen.convert_yielded(forgotten("converted"))
        gen.with_timeout(datetime.timedelta(seconds=30), forgotten("timed"))
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0)
        return [t for t in asyncio.all_tasks()
                if t is not asyncio.current_task()]

    async def cancel(tasks):
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    gc.collect()                    # no garbage of earlier tests in the log
    with caplog.at_level("DEBUG"):
        alive = io.run_sync(main)
    try:
        assert closed == []
        assert [t.get_coro().__name__ for t in alive] == ["forgotten"] * 3
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
    finally:
        io.run_sync(lambda: cancel(alive))


def test_timeout_error_is_asyncio_s(impl):
    assert impl.TimeoutError is asyncio.TimeoutError


def test_ioloop_is_collected(impl):
    import weakref
    io = impl.IOLoop(make_current=False)
    io.add_callback(lambda: io)
    ref = weakref.ref(io)
    io.close()
    del io
    gc.collect()
    assert ref() is None


def test_current_on_plain_tornado_cgen_loop(impl, caplog):
    """IOLoop.current() over tornado_cgen.new_event_loop() (not an IOLoop):
    Tornado's rules still hold for its callbacks."""
    import tornado_cgen
    ran = []

    async def coro(x):
        ran.append(x)
        raise ValueError("from coroutine callback")

    async def main():
        io = impl.IOLoop.current()
        assert io is impl.IOLoop.current()
        io.add_callback(coro, 1)
        io.call_later(0, coro, 2)
        await asyncio.sleep(0.05)

    loop = tornado_cgen.new_event_loop()
    try:
        with caplog.at_level("ERROR", logger=APP_LOG):
            loop.run_until_complete(main())
    finally:
        loop.close()
    assert ran == [1, 2]
    assert sum(1 for r in caplog.records
               if r.name == APP_LOG and r.exc_info
               and r.exc_info[0] is ValueError) == 2


def test_current_after_the_current_loop_closed(impl):
    if not impl.__name__.startswith("tornado_cgen"):
        pytest.skip("a choice of ours: upstream wraps the closed loop and "
                    "returns an IOLoop that cannot run; we make a new one")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = asyncio.new_event_loop()
        asyncio.set_event_loop(old)
        old.close()
        try:
            io = impl.IOLoop.current()
            assert io is not None
            assert not io.asyncio_loop.is_closed()
            io.close()
        finally:
            asyncio.set_event_loop(None)


def test_callbacks_and_their_coroutines_run_in_the_callers_context(io):
    # add_callback copies the caller's context; a native coroutine that a
    # callback returns becomes a Task in that same context.
    import contextvars
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    async def native(tag):
        seen.append((tag, var.get()))

    def plain(tag):
        seen.append((tag, var.get()))

    async def main():
        var.set("caller")
        io.add_callback(native, "add_callback")
        io.spawn_callback(native, "spawn_callback")
        io.add_callback(plain, "plain")
        io.call_later(0, native, "call_later")
        io.add_timeout(datetime.timedelta(0), native, "add_timeout")
        for _ in range(5):
            await asyncio.sleep(0.001)

    io.run_sync(main)
    assert sorted(seen) == sorted(
        (tag, "caller") for tag in ("add_callback", "spawn_callback", "plain",
                                    "call_later", "add_timeout"))


def test_run_sync_of_a_function_raising_a_base_exception(io):
    # The loop reports the BaseException (it is not the function's
    # outcome); with no future to cancel or return, run_sync's asserts
    # fail, in the timeout callback and then in run_sync itself.
    class Boom(BaseException):
        pass

    def func():
        raise Boom()

    io.asyncio_loop.set_exception_handler(lambda loop, ctx: None)
    io.call_later(0.05, io.stop)
    with pytest.raises(AssertionError):
        io.run_sync(func, timeout=0.01)
