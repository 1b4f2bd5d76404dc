"""``tornado_cgen.install()``: upstream Tornado on our Runner and loop.

Every test of Tornado behaviour takes ``mode`` and runs twice with the same
assertions: "tornado" (upstream Tornado alone, the oracle) and "installed"
(the same Tornado code under ``install()``).  ``mode`` undoes ``install()``
in its teardown, so no other test runs installed.  Then: ``install()`` and
``uninstall()`` themselves, Tornado missing or too old, the launcher
(``python -m tornado_cgen run``) and interpreter exit, in fresh
interpreters.
"""
import asyncio
import concurrent.futures
import datetime
import functools
import gc
import inspect
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from asyncio import events

import pytest

import conftest
from conftest import run_program, run_python

tornado = pytest.importorskip("tornado")
if tornado.version_info < (6, 2):   # pragma: no cover
    pytest.skip("install() needs Tornado >= 6.2", allow_module_level=True)

import tornado.concurrent  # noqa: E402
import tornado.gen  # noqa: E402
import tornado.ioloop  # noqa: E402
import tornado.platform.asyncio  # noqa: E402
import tornado.util  # noqa: E402
from tornado.ioloop import IOLoop  # noqa: E402

import tornado_cgen  # noqa: E402
from tornado_cgen import _core, _speedup  # noqa: E402
from tornado_cgen.loop import Loop as CLoop  # noqa: E402

APP_LOG = "tornado.application"


@pytest.fixture(autouse=True)
def never_left_installed():
    assert not tornado_cgen.installed()
    yield
    if tornado_cgen.installed():    # pragma: no cover
        tornado_cgen.uninstall()
        pytest.fail("the test left install() on")


@pytest.fixture
def io(mode):
    io = IOLoop(make_current=False)
    yield io
    if not io.asyncio_loop.is_closed():
        io.close()


def _stats():
    return _core._stats()


# ---- install / uninstall / installed ------------------------------------------

def _patchable():
    """Everything install() may patch, by identity: the namespaces of
    tornado.gen, tornado.concurrent, tornado.ioloop, tornado.platform.asyncio
    and of Tornado's IOLoop classes, and asyncio's policy."""
    tasyncio = tornado.platform.asyncio
    spaces = {"tornado.gen": tornado.gen, "tornado.concurrent":
              tornado.concurrent, "tornado.ioloop": tornado.ioloop,
              "tornado.platform.asyncio": tasyncio, "IOLoop": IOLoop,
              "BaseAsyncIOLoop": tasyncio.BaseAsyncIOLoop,
              "AsyncIOLoop": tasyncio.AsyncIOLoop,
              "AsyncIOMainLoop": tasyncio.AsyncIOMainLoop}
    snap = {name: dict(vars(space)) for name, space in spaces.items()}
    snap["policy"] = {"": events._event_loop_policy}
    return snap


def _changed(before, after):
    # (Configurable caches IOLoop's implementation class on first use.)
    return sorted("%s.%s" % (space, name)
                  for space in before
                  for name in set(before[space]) | set(after[space])
                  if before[space].get(name, None) is not
                  after[space].get(name, None)
                  and not name.startswith("_Configurable__"))


def test_install_uninstall_installed_and_twice_harmless():
    before = _patchable()
    assert tornado_cgen.installed() is False
    tornado_cgen.install()
    try:
        assert tornado_cgen.installed() is True
        during = _patchable()
        changed = _changed(before, during)
        # What the docs promise is routed to our code, at least.
        for name in ("tornado.gen.coroutine", "tornado.gen.multi",
                     "tornado.gen.Multi", "tornado.gen.multi_future",
                     "tornado.gen.convert_yielded",
                     "BaseAsyncIOLoop.add_callback", "BaseAsyncIOLoop.call_at",
                     "IOLoop.call_later", "policy."):
            assert name in changed, name
        assert isinstance(asyncio.get_event_loop_policy(),
                          tornado_cgen.EventLoopPolicy)
        tornado_cgen.install()                 # again: nothing moves
        assert tornado_cgen.installed() is True
        assert _changed(during, _patchable()) == []
    finally:
        tornado_cgen.uninstall()
    assert tornado_cgen.installed() is False
    assert _changed(before, _patchable()) == []
    tornado_cgen.uninstall()                   # again: nothing moves
    assert tornado_cgen.installed() is False
    assert _changed(before, _patchable()) == []


def test_uninstall_restores_a_policy_set_before():
    class Policy(asyncio.DefaultEventLoopPolicy):
        pass

    saved = events._event_loop_policy
    policy = Policy()
    asyncio.set_event_loop_policy(policy)
    try:
        tornado_cgen.install()
        assert asyncio.get_event_loop_policy() is not policy
        tornado_cgen.uninstall()
        assert asyncio.get_event_loop_policy() is policy
    finally:
        asyncio.set_event_loop_policy(saved)


def test_install_and_uninstall_again_and_again():
    before = _patchable()
    for _ in range(3):
        tornado_cgen.install()
        try:
            @tornado.gen.coroutine
            def f():
                yield tornado.gen.moment
                return 1

            io = IOLoop(make_current=False)
            assert io.run_sync(f) == 1
            io.close()
        finally:
            tornado_cgen.uninstall()
        assert _changed(before, _patchable()) == []


def test_uninstall_gives_tornado_cgen_back_its_own_objects():
    # The C Runner serves both packages: after uninstall(), tornado_cgen's
    # coroutines hand out its Future and convert with its registry again.
    from tornado_cgen import gen as tgen, ioloop as tioloop
    from tornado_cgen.concurrent import Future

    tornado_cgen.install()
    tornado_cgen.uninstall()

    @tgen.coroutine
    def f():
        try:
            yield 42
        except tgen.BadYieldError:
            return "ours"

    io = tioloop.IOLoop(make_current=False)
    try:
        assert type(f()) is not asyncio.Future
        assert isinstance(tgen.multi([]), Future)
        assert io.run_sync(f) == "ours"
    finally:
        io.close()


@tornado.gen.coroutine
def _on_tornado_s_runner(coroutine_function):
    # Decorated at import, never installed: Tornado's Runner, add_future.
    return (yield coroutine_function())


def test_coroutines_decorated_while_installed_keep_working_after(mode):
    # ... returning the future Tornado's code knows (asyncio.Future), to
    # Tornado's run_sync, is_future and Runner.
    @tornado.gen.coroutine
    def f():
        yield tornado.gen.moment
        raise tornado.gen.Return(7)

    if mode == "installed":
        tornado_cgen.uninstall()
    io = IOLoop(make_current=False)
    try:
        assert io.run_sync(f) == 7
        assert io.run_sync(lambda: _on_tornado_s_runner(f)) == 7
        assert io.run_sync(lambda: tornado.gen.multi([f(), f()])) == [7, 7]

        async def check():
            fut = f()
            assert _is_tornado_future(fut)
            assert tornado.gen.maybe_future(fut) is fut
            return await fut

        assert io.run_sync(check) == 7
    finally:
        io.close()


# ---- Tornado missing, or too old ------------------------------------------------

FAKE_TORNADO = """
import os, sys
fake = os.path.join(sys.argv[1], "fake")
os.makedirs(os.path.join(fake, "tornado"))
with open(os.path.join(fake, "tornado", "__init__.py"), "w") as f:
    f.write("version = '6.1'\\nversion_info = (6, 1, 0, 0)\\n")
"""


def _fake_tornado(tmp_path):
    fake = tmp_path / "fake" / "tornado"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "version = '6.1'\nversion_info = (6, 1, 0, 0)\n")
    return str(tmp_path / "fake")


CHECK_REFUSED = """
import asyncio, sys
from asyncio import events
{setup}
import tornado_cgen
try:
    tornado_cgen.install()
except ImportError as e:
    print("refused:", e)
else:
    print("installed")
print("installed():", tornado_cgen.installed())
print("policy untouched:", events._event_loop_policy is None)
from tornado_cgen import gen, ioloop       # standalone still works
@gen.coroutine
def f():
    yield gen.moment
    return 5
print("standalone:", ioloop.IOLoop(make_current=False).run_sync(f))
"""


def test_tornado_too_old_is_refused(tmp_path):
    fake = _fake_tornado(tmp_path)
    proc = run_python(CHECK_REFUSED.format(
        setup="sys.path.insert(0, %r)" % fake))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0].startswith("refused: ")
    assert ">= 6.2" in out[0] and "6.1" in out[0]
    assert out[1:] == ["installed(): False", "policy untouched: True",
                       "standalone: 5"]


def test_tornado_missing_is_refused():
    proc = run_python(CHECK_REFUSED.format(
        setup="sys.modules['tornado'] = None   # not importable"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0].startswith("refused: ")
    assert ">= 6.2" in out[0] and "not installed" in out[0]
    assert out[1:] == ["installed(): False", "policy untouched: True",
                       "standalone: 5"]


def test_launcher_with_tornado_too_old(tmp_path):
    fake = _fake_tornado(tmp_path)
    app = tmp_path / "app.py"
    app.write_text("print('ran')\n")
    env = conftest._child_env(False)
    env["PYTHONPATH"] = fake + os.pathsep + env["PYTHONPATH"]
    proc = subprocess.run([sys.executable, "-m", "tornado_cgen", "run",
                           str(app)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert ">= 6.2" in proc.stderr and "6.1" in proc.stderr


# ---- the futures handed out ---------------------------------------------------------

def _is_tornado_future(f):
    return (type(f) is asyncio.Future and tornado.concurrent.is_future(f)
            and isinstance(f, tornado.concurrent.Future))


def test_coroutine_results_are_asyncio_futures(mode, io):
    @tornado.gen.coroutine
    def done():
        return 1

    @tornado.gen.coroutine
    def pending():
        yield tornado.gen.moment
        return 2

    @tornado.gen.coroutine
    def failing():
        raise ValueError("x")

    async def main():
        futs = [done(), pending(), failing()]
        assert all(_is_tornado_future(f) for f in futs)
        assert (await futs[0], await futs[1]) == (1, 2)
        with pytest.raises(ValueError):
            await futs[2]
        return "ok"

    assert io.run_sync(main) == "ok"


def test_loop_futures_are_asyncio_futures(mode, io):
    async def main():
        loop = IOLoop.current().asyncio_loop
        assert loop is io.asyncio_loop
        assert isinstance(loop, CLoop) is (mode == "installed")
        f = loop.create_future()
        assert _is_tornado_future(f) and f.get_loop() is loop
        g = loop.run_in_executor(None, sum, [1, 2])
        assert _is_tornado_future(g)
        h = io.run_in_executor(None, sum, [3, 4])
        assert _is_tornado_future(h)
        f.set_result(0)
        return await f, await g, await h

    assert io.run_sync(main) == (0, 3, 7)


def test_multi_results_are_asyncio_futures(mode, io):
    gen = tornado.gen

    @gen.coroutine
    def child(x):
        yield gen.moment
        return x

    async def main():
        done = asyncio.get_running_loop().create_future()
        done.set_result("d")
        results = [gen.multi([]), gen.multi({}), gen.multi([done]),
                   gen.multi([child(1), child(2)]),
                   gen.multi({"a": child(3), "b": done}),
                   gen.Multi([child(4)]), gen.multi_future([child(5)])]
        assert all(_is_tornado_future(f) for f in results)
        return [await f for f in results]

    assert io.run_sync(main) == [[], {}, ["d"], [1, 2], {"a": 3, "b": "d"},
                                 [4], [5]]


# ---- tornado.gen's objects and the Runner under them ------------------------------

KEPT = ["Return", "moment", "_null_future", "BadYieldError", "TimeoutError",
        "sleep", "with_timeout", "WaitIterator", "maybe_future",
        "is_coroutine_function", "Runner"]


def test_tornado_objects_are_kept():
    before = {name: getattr(tornado.gen, name) for name in KEPT}
    with conftest.tornado_installed():
        assert {name: getattr(tornado.gen, name) for name in KEPT} == before
        for name in KEPT:
            assert getattr(tornado.gen, name) is before[name], name
        # the registry is Tornado's own
        assert (tornado.gen.convert_yielded.registry is
                before["Runner"].__init__.__globals__[
                    "convert_yielded"].registry)


def test_return_moment_bad_yield_are_tornado_s(mode, io):
    gen = tornado.gen

    @gen.coroutine
    def f():
        yield gen.moment
        yield None
        x = yield gen._null_future
        try:
            yield 42
        except gen.BadYieldError as e:
            caught = type(e)
        raise gen.Return((x, caught))

    assert io.run_sync(f) == (None, gen.BadYieldError)


def test_tornado_cgen_s_return_and_moment_are_recognised_too():
    # Code written for the standalone package keeps working on Tornado's
    # coroutines under install() (the C Runner knows both).
    from tornado_cgen import gen as tcg_gen
    with conftest.tornado_installed():
        @tornado.gen.coroutine
        def f():
            yield tcg_gen.moment
            raise tcg_gen.Return("ours")

        io = IOLoop(make_current=False)
        try:
            assert io.run_sync(f) == "ours"
        finally:
            io.close()


def test_decorated_function_introspection(mode):
    def original(a, b=2):
        """Docs."""
        yield
        return a + b

    f = tornado.gen.coroutine(original)
    assert tornado.gen.is_coroutine_function(f)
    assert f.__tornado_coroutine__ is True
    assert f.__wrapped__ is original
    assert (f.__name__, f.__qualname__, f.__doc__, f.__module__) == (
        original.__name__, original.__qualname__, "Docs.", __name__)
    assert str(inspect.signature(f)) == "(a, b=2)"
    assert not tornado.gen.is_coroutine_function(original)

    class C:
        @tornado.gen.coroutine
        def method(self, x):
            return (self, x)

    c = C()
    io = IOLoop(make_current=False)
    try:
        assert io.run_sync(lambda: c.method(1)) == (c, 1)
    finally:
        io.close()
    assert tornado.gen.is_coroutine_function(C.method)
    # The decorator itself introspects as Tornado's.
    assert tornado.gen.coroutine.__name__ == "coroutine"
    assert tornado.gen.coroutine.__module__ == "tornado.gen"


def test_functions_decorated_before_install_keep_tornado_s_runner():
    @tornado.gen.coroutine
    def before(x):
        yield tornado.gen.moment
        return ("before", x)

    with conftest.tornado_installed():
        @tornado.gen.coroutine
        def after(x):
            yield tornado.gen.moment
            return ("after", x)

        @tornado.gen.coroutine
        def main():
            return (yield [before(1), after(2)])

        io = IOLoop(make_current=False)
        try:
            s0 = _stats()
            assert io.run_sync(lambda: before(0)) == ("before", 0)
            s1 = _stats()
            assert io.run_sync(lambda: after(0)) == ("after", 0)
            s2 = _stats()
            assert io.run_sync(main) == [("before", 1), ("after", 2)]
        finally:
            io.close()
    # Tornado's Runner ran `before`: no C coroutine call or step...
    assert s1["coroutine_calls"] == s0["coroutine_calls"]
    assert s1["runner_steps"] == s0["runner_steps"]
    # ... while `after` is C: one call, its two steps; the loop is ours.
    assert s2["coroutine_calls"] == s1["coroutine_calls"] + 1
    assert s2["runner_steps"] >= s1["runner_steps"] + 2
    assert s2["loop_iterations"] > s1["loop_iterations"]


def test_convert_yielded_register_before_and_after_install():
    class Before:
        pass

    class After:
        pass

    def done_future(value):
        f = asyncio.get_running_loop().create_future()
        f.set_result(value)
        return f

    tornado.gen.convert_yielded.register(Before)(
        lambda b: done_future("before"))

    @tornado.gen.coroutine
    def tornado_runner(obj):
        return (yield obj)

    def check(phase):
        @tornado.gen.coroutine
        def current_runner(obj):
            return (yield obj)

        io = IOLoop(make_current=False)
        try:
            for c in (tornado_runner, current_runner):
                assert io.run_sync(lambda: c(Before())) == "before", phase
                assert io.run_sync(lambda: c(After())) == "after", phase
                assert io.run_sync(lambda: c([Before(), After()])) == [
                    "before", "after"], phase
            assert io.run_sync(lambda: Before()) == "before", phase
            assert tornado.gen.convert_yielded.dispatch(After) is not None
        finally:
            io.close()

    with conftest.tornado_installed():
        tornado.gen.convert_yielded.register(After)(
            lambda a: done_future("after"))
        check("installed")
    check("after uninstall")   # what was registered meanwhile is kept


# ---- the IOLoop --------------------------------------------------------------------

def test_ioloop_current(mode):
    async def main():
        io = IOLoop.current()
        assert IOLoop.current() is io
        assert io.asyncio_loop is asyncio.get_running_loop()
        assert isinstance(io.asyncio_loop, CLoop) is (mode == "installed")
        return type(io).__name__

    # asyncio.run takes the policy's loop: ours under install()
    assert asyncio.run(main()) == "AsyncIOMainLoop"


def test_run_sync(mode, io):
    @tornado.gen.coroutine
    def coro(x):
        yield tornado.gen.sleep(0)
        return x

    async def native():
        await asyncio.sleep(0)
        assert IOLoop.current() is io
        return "native"

    @tornado.gen.coroutine
    def failing():
        yield tornado.gen.moment
        raise KeyError("k")

    assert io.run_sync(lambda: coro(3)) == 3
    assert io.run_sync(native) == "native"
    assert io.run_sync(lambda: None) is None
    with pytest.raises(tornado.gen.BadYieldError):   # not a yieldable
        io.run_sync(lambda: "plain")
    with pytest.raises(KeyError):
        io.run_sync(failing)
    never = io.asyncio_loop.create_future()
    with pytest.raises(tornado.util.TimeoutError):
        io.run_sync(lambda: never, timeout=0.01)


def test_close_all_fds(mode):
    io = IOLoop(make_current=False)
    a, b = socket.socketpair()
    try:
        io.add_handler(a, lambda fd, events: None, IOLoop.READ)
        io.add_handler(b.fileno(), lambda fd, events: None, IOLoop.WRITE)
        io.close(all_fds=True)
        assert io.asyncio_loop.is_closed()
        assert a.fileno() == -1                 # closed as a socket object
        with pytest.raises(OSError):
            os.fstat(b.fileno())                # closed as an fd
    finally:
        a.close()
        b.detach()


def test_add_callback_from_another_thread_wakes_the_loop(mode, io):
    # The loop sleeps on a one-minute timer; the thread's callback must
    # wake it (a missed wake-up would show as the timer firing).
    got = []
    running = threading.Event()

    def other():
        running.wait(30)
        time.sleep(0.02)                 # let the loop go to sleep
        io.add_callback(lambda: (got.append(threading.get_ident()),
                                 io.stop()))

    t = threading.Thread(target=other)
    io.add_callback(running.set)
    io.call_later(60, lambda: (got.append("timer"), io.stop()))
    t.start()
    io.start()
    t.join()
    assert got == [threading.get_ident()]


def test_add_callback_from_threads_loses_nothing(mode, io):
    nthreads, per = 4, 2000
    seen = [[] for _ in range(nthreads)]
    remaining = [nthreads * per]
    loop_thread = threading.get_ident()
    wrong = []

    def record(i, n, *, k):
        assert k == "kw"
        if threading.get_ident() != loop_thread:
            wrong.append(i)
        seen[i].append(n)
        remaining[0] -= 1
        if remaining[0] == 0:
            io.stop()

    def producer(i):
        for n in range(per):
            io.add_callback(record, i, n, k="kw")

    threads = [threading.Thread(target=producer, args=(i,))
               for i in range(nthreads)]
    io.add_callback(lambda: [t.start() for t in threads])
    io.call_later(120, io.stop)
    io.start()
    for t in threads:
        t.join()
    assert wrong == []
    assert seen == [list(range(per))] * nthreads


def test_timers(mode, io):
    # Absolute deadlines fire in their order whatever the machine's load;
    # relative ones (call_later, a timedelta) are only checked to fire.
    order = []

    def mark(tag, *args, **kwargs):
        order.append((tag, args, kwargs))

    now = io.time()
    io.call_at(now + 0.03, mark, "call_at 3", 3, k=3)
    io.add_timeout(now + 0.01, mark, "add_timeout 1")
    io.call_at(now + 0.02, mark, "call_at 2")
    io.add_timeout(now + 0.04, mark, "add_timeout 4", 4)
    gone = io.call_at(now + 0.015, mark, "removed")
    io.remove_timeout(gone)
    io.remove_timeout(gone)                  # twice: harmless
    io.add_timeout(now + 0.1, io.stop)
    io.start()
    assert order == [("add_timeout 1", (), {}), ("call_at 2", (), {}),
                     ("call_at 3", (3,), {"k": 3}), ("add_timeout 4", (4,), {})]

    relative = []
    io.call_later(0.01, relative.append, "call_later")
    io.call_later(-1, relative.append, "negative delay")
    io.add_timeout(datetime.timedelta(seconds=0.01), relative.append,
                   "timedelta")
    for gone in (io.call_later(0, relative.append, "removed"),
                 io.add_timeout(datetime.timedelta(0), relative.append,
                                "removed")):
        io.remove_timeout(gone)
    io.call_later(0.05, io.stop)
    io.start()
    assert sorted(relative) == ["call_later", "negative delay", "timedelta"]
    with pytest.raises(TypeError):
        io.add_timeout("soon", mark)


def test_remove_timeout_from_a_callback_and_another_thread(mode, io):
    fired = []
    a = io.call_later(0.02, fired.append, "a")
    b = io.call_later(0.02, fired.append, "b")
    io.add_callback(io.remove_timeout, a)
    t = threading.Thread(target=lambda: io.add_callback(io.remove_timeout, b))
    t.start()
    t.join()
    io.call_later(0.05, io.stop)
    io.start()
    assert fired == []


# -- logging: the records must be upstream's ----------------------------------------

def _boom(tag):
    raise ValueError("boom %s" % tag)


async def _failing_native():
    raise KeyError("native")


def _records(caplog):
    return [r for r in caplog.records if r.name == APP_LOG]


def _describe(record):
    """What a program or a log format can see of a record (the
    traceback's frames from the callback on)."""
    frames = [f.name for f in
              __import__("traceback").extract_tb(record.exc_info[2])]
    return {
        "name": record.name, "levelno": record.levelno, "msg": record.msg,
        "message": record.getMessage(),
        "args": [type(a) for a in record.args],
        "exc": (record.exc_info[0], str(record.exc_info[1])),
        "frames": frames[frames.index("_boom"):] if "_boom" in frames
        else frames[-1:],
        "where": (record.pathname, record.module, record.funcName,
                  record.lineno),
    }


class _Keep(logging.Handler):
    """Keeps the ERROR records; stops ``io`` once it has ``n`` of them."""

    def __init__(self, records, io, n):
        super().__init__(logging.ERROR)
        self.records, self.io, self.n = records, io, n

    def emit(self, record):
        self.records.append(record)
        if len(self.records) == self.n:
            self.io.add_callback(self.io.stop)


def _log_exceptions_in_callbacks():
    """Schedule failing callbacks every way Tornado offers; return the
    tornado.application records, described."""
    io = IOLoop(make_current=False)
    handler_records = []
    h = _Keep(handler_records, io, 6)
    logger = logging.getLogger(APP_LOG)
    logger.addHandler(h)
    try:
        io.add_callback(_boom, "add_callback")
        io.spawn_callback(_boom, "spawn_callback")
        io.call_later(0, _boom, "call_later")
        io.call_at(io.time(), _boom, "call_at")
        io.add_timeout(datetime.timedelta(0), _boom, "add_timeout")
        f = io.asyncio_loop.create_future()
        io.add_future(f, functools.partial(_boom, "add_future"))
        f.set_result(None)
        io.call_later(60, io.stop)
        io.start()
    finally:
        logger.removeHandler(h)
        io.close()
    return sorted((_describe(r) for r in handler_records),
                  key=lambda d: d["message"])


def test_exception_in_callback_logged_as_upstream():
    upstream = _log_exceptions_in_callbacks()
    with conftest.tornado_installed():
        installed = _log_exceptions_in_callbacks()
    assert len(upstream) == 6
    assert all(d["msg"] == "Exception in callback %r" for d in upstream)
    assert installed == upstream


def test_exception_in_callback_logged(mode, io, caplog):
    got = []
    io.add_callback(_boom, 1)
    io.add_callback(got.append, "after")
    io.add_callback(io.stop)
    with caplog.at_level(logging.ERROR, logger=APP_LOG):
        io.start()
    assert got == ["after"]
    [record] = _records(caplog)
    assert record.levelno == logging.ERROR
    assert record.msg == "Exception in callback %r"
    assert record.getMessage() == "Exception in callback %r" % (
        functools.partial(_boom, 1),)
    assert record.exc_info[0] is ValueError


def test_cancelled_error_in_callback_is_silent(mode, io, caplog):
    def cancelled():
        raise asyncio.CancelledError()

    io.add_callback(cancelled)
    io.call_later(0, cancelled)
    io.add_callback(io.stop)
    with caplog.at_level(logging.DEBUG):
        io.start()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def _returned_coroutines_failing():
    @tornado.gen.coroutine
    def tornado_coro():
        yield tornado.gen.moment
        raise IndexError("tornado coroutine")

    io = IOLoop(make_current=False)
    records = []
    h = _Keep(records, io, 4)
    logging.getLogger(APP_LOG).addHandler(h)
    try:
        io.add_callback(lambda: 42)         # not yieldable: ignored
        io.add_callback(_failing_native)
        io.add_callback(tornado_coro)
        io.spawn_callback(tornado_coro)
        io.call_later(0, _failing_native)
        io.call_later(60, io.stop)
        io.start()
    finally:
        logging.getLogger(APP_LOG).removeHandler(h)
        io.close()
    return sorted(
        ((r.msg, r.exc_info[0], str(r.exc_info[1]),
          type(r.args[0]).__name__, r.args[0].func.__name__,
          r.pathname, r.funcName, r.lineno) for r in records),
        key=str)


def _other_logged_failures():
    """What the C Runner and multi log (Tornado's gen and concurrent log
    the same): a later failure in a multi, a failure after the
    coroutine's future was cancelled."""
    gen = tornado.gen

    @gen.coroutine
    def fail(exc, wait=None):
        if wait is not None:
            yield wait
        raise exc

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    async def main():
        release = asyncio.get_running_loop().create_future()
        multi = gen.multi([fail(KeyError("first")), fail(IndexError("second"))])
        with pytest.raises(KeyError):
            await multi
        late = fail(ValueError("after cancel"), release)
        late.cancel()
        release.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)

    io = IOLoop(make_current=False)
    h = Keep(logging.ERROR)
    logging.getLogger(APP_LOG).addHandler(h)
    try:
        io.run_sync(main)
    finally:
        logging.getLogger(APP_LOG).removeHandler(h)
        io.close()
    return sorted((_describe(r) for r in records), key=lambda d: d["msg"])


def test_runner_and_multi_log_as_upstream():
    upstream = _other_logged_failures()
    with conftest.tornado_installed():
        installed = _other_logged_failures()
    assert [(d["msg"], d["exc"]) for d in upstream] == [
        ("Exception after Future was cancelled", (ValueError, "after cancel")),
        ("Multiple exceptions in yield list", (IndexError, "second"))]
    for d in upstream + installed:
        d.pop("frames")    # Tornado's own frames come first upstream
    assert installed == upstream


def test_call_site_is_where_logging_finds_the_caller():
    # install()'s log records are placed where Tornado's code logs from:
    # _call_site must find the line logging itself reports, for one-line
    # and multi-line calls, nested functions and keyword arguments alike.
    log = logging.getLogger("tornado_cgen.test.call_site")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    def one(cb):
        try:
            raise ValueError
        except Exception:
            log.error("Exception in callback %r", cb, exc_info=True)

    def outer():
        def callback(x):
            try:
                raise KeyError
            except Exception as e:
                if not isinstance(e, OSError):
                    log.error(
                        "Multiple exceptions in yield list", exc_info=True
                    )
        return callback

    def keyword(exc):
        log.error("Exception after Future was cancelled", exc_info=exc)

    h = Keep()
    log.addHandler(h)
    log.propagate = False
    try:
        one(1)
        outer()(1)
        keyword(ValueError())
    finally:
        log.removeHandler(h)
        log.propagate = True
    for record, function in zip(records, (one, outer, keyword)):
        assert _speedup._call_site(function.__code__, record.msg) == (
            record.pathname, record.lineno, record.funcName)
    assert _speedup._call_site(one.__code__, "not logged") is None


def test_callback_returning_a_failing_coroutine_is_logged():
    upstream = _returned_coroutines_failing()
    with conftest.tornado_installed():
        installed = _returned_coroutines_failing()
    assert [(r[0], r[1], r[4]) for r in upstream] == [
        ("Exception in callback %r", IndexError, "_discard_future_result"),
        ("Exception in callback %r", IndexError, "_discard_future_result"),
        ("Exception in callback %r", KeyError, "_discard_future_result"),
        ("Exception in callback %r", KeyError, "_discard_future_result")]
    assert installed == upstream


# ---- the launcher ----------------------------------------------------------------------

def _launch(*args, cwd=None, options=()):
    return subprocess.run(
        [sys.executable, *options, "-m", "tornado_cgen", *args],
        env=conftest._child_env(False), cwd=cwd, capture_output=True,
        text=True, timeout=120)


def _python(*args, cwd=None):
    return subprocess.run([sys.executable, *args],
                          env=conftest._child_env(False), cwd=cwd,
                          capture_output=True, text=True, timeout=120)


REPORT = """\
import os, pickle, sys
import tornado_cgen
from tornado import gen
from tornado.ioloop import IOLoop

class Point:
    pass

@gen.coroutine
def double(x):
    yield gen.moment
    return 2 * x

io = IOLoop(make_current=False)
print("argv", sys.argv)
print("name", __name__)
print("path0", sys.path[0])
print("file", __file__)
print("main", sys.modules["__main__"].__dict__ is globals())
print("pickle", type(pickle.loads(pickle.dumps(Point()))) is Point)
print("installed", tornado_cgen.installed())
print("loop", type(io.asyncio_loop).__module__)
print("result", io.run_sync(lambda: double(21)))
"""


def _lines(out):
    return dict(line.split(" ", 1) for line in out.splitlines())


def test_launcher_runs_a_script(tmp_path):
    app = tmp_path / "app dir" / "app.py"
    app.parent.mkdir()
    app.write_text(REPORT)
    proc = _launch("run", str(app), "a", "--b", "-m", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    got = _lines(proc.stdout)
    assert got == {
        "argv": repr([str(app), "a", "--b", "-m"]), "name": "__main__",
        "path0": str(app.parent), "file": str(app), "main": "True",
        "pickle": "True", "installed": "True", "loop": "tornado_cgen.loop",
        "result": "42"}
    # python itself (the oracle), but for install()
    direct = _lines(_python(str(app), "a", "--b", "-m", cwd=tmp_path).stdout)
    assert {k: v for k, v in direct.items() if k not in ("installed", "loop")
            } == {k: v for k, v in got.items()
                  if k not in ("installed", "loop")}


def test_launcher_runs_a_relative_script_as_python_does(tmp_path):
    (tmp_path / "app.py").write_text(REPORT)
    got = _lines(_launch("run", "app.py", "x", cwd=tmp_path).stdout)
    direct = _lines(_python("app.py", "x", cwd=tmp_path).stdout)
    assert got["argv"] == direct["argv"] == repr(["app.py", "x"])
    assert got["file"] == direct["file"]
    assert got["path0"] == direct["path0"] == str(tmp_path)


def test_launcher_runs_a_module(tmp_path):
    (tmp_path / "appmod.py").write_text(REPORT)
    pkg = tmp_path / "apppkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(REPORT)
    for target, file in (("appmod", tmp_path / "appmod.py"),
                         ("apppkg", pkg / "__main__.py")):
        for spelling in (["-m", target], ["-m" + target]):
            proc = _launch("run", *spelling, "x", "-y", cwd=tmp_path)
            assert proc.returncode == 0 and proc.stderr == "", proc.stderr
            got = _lines(proc.stdout)
            assert got == {
                "argv": repr([str(file), "x", "-y"]), "name": "__main__",
                "path0": str(tmp_path), "file": str(file), "main": "True",
                "pickle": "True", "installed": "True",
                "loop": "tornado_cgen.loop", "result": "42"}
            direct = _lines(_python("-m", target, "x", "-y",
                                    cwd=tmp_path).stdout)
            assert direct["argv"] == got["argv"]
            assert direct["path0"] == got["path0"]


def test_launcher_runs_a_directory_and_a_zip_file(tmp_path):
    import zipfile
    (tmp_path / "appdir").mkdir()
    (tmp_path / "appdir" / "__main__.py").write_text(REPORT)
    with zipfile.ZipFile(tmp_path / "app.pyz", "w") as z:
        z.writestr("__main__.py", REPORT)
    for target in ("appdir", "app.pyz"):
        proc = _launch("run", target, "z", cwd=tmp_path)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        got = _lines(proc.stdout)
        direct = _lines(_python(target, "z", cwd=tmp_path).stdout)
        assert got["installed"] == "True"
        for key in ("argv", "name", "path0", "file", "main", "pickle"):
            assert got[key] == direct[key], (target, key)


FAILURES = {
    "exception": """\
def inner():
    raise ValueError("boom")
inner()
""",
    "chained": """\
try:
    {}["k"]
except KeyError as e:
    raise RuntimeError("wrapped") from e
""",
    "syntax_error": "def f(:\n",
    "exit_code": "import sys\nprint('out')\nsys.exit(3)\n",
    "exit_message": "import sys\nsys.exit('bye')\n",
    "exit_none": "raise SystemExit\n",
    "keyboard_interrupt": "raise KeyboardInterrupt\n",
    "excepthook": """\
import sys
def hook(t, v, tb):
    import traceback
    print("hook:", t.__name__, [f.name for f in traceback.extract_tb(tb)])
sys.excepthook = hook
def f():
    raise OSError("x")
f()
""",
}


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_launcher_failures_are_python_s(tmp_path, name):
    # The same stdout, stderr (traceback included) and exit status as
    # python's own, for a script and for a module.
    (tmp_path / "prog.py").write_text(FAILURES[name])
    ours = _launch("run", "prog.py", cwd=tmp_path)
    python = _python("prog.py", cwd=tmp_path)
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        python.returncode, python.stdout, python.stderr)
    ours = _launch("run", "-m", "prog", cwd=tmp_path)
    python = _python("-m", "prog", cwd=tmp_path)
    assert (ours.returncode, ours.stdout, ours.stderr) == (
        python.returncode, python.stdout, python.stderr)
    if name == "exception":
        assert python.returncode == 1 and 'line 2, in inner' in ours.stderr


def test_launcher_missing_program(tmp_path):
    ours = _launch("run", "nosuch.py", cwd=tmp_path)
    python = _python("nosuch.py", cwd=tmp_path)
    assert ours.returncode == python.returncode == 2
    assert ours.stderr == python.stderr
    ours = _launch("run", "-m", "nosuch", cwd=tmp_path)
    python = _python("-m", "nosuch", cwd=tmp_path)
    assert ours.returncode == python.returncode == 1
    assert ours.stderr == python.stderr


def test_launcher_usage_help_and_version():
    proc = _launch("--version")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == (
        "tornado-cgen %s" % tornado_cgen.__version__)
    proc = _launch("--help")
    assert proc.returncode == 0
    assert "run app.py" in proc.stdout and "run -m module" in proc.stdout
    assert "--version" in proc.stdout
    proc = _launch("run", "--help")
    assert proc.returncode == 0 and "usage:" in proc.stdout
    for args in (["run"], ["run", "-m"], ["run", "--bogus"]):
        proc = _launch(*args)
        assert proc.returncode == 2 and "usage:" in proc.stderr, args


# ---- interpreter exit ------------------------------------------------------------------

EXIT_PROGRAM = """
import asyncio, gc
import tornado_cgen
{install}
from tornado import gen
from tornado.ioloop import IOLoop

class Box:
    pass

box = Box()
box.box = box

@gen.coroutine
def waiter(fut):
    box.waiting = fut
    yield fut                         # never resolved

@gen.coroutine
def sleeper():
    yield gen.sleep(3600)             # a timer nobody cancels

@gen.coroutine
def parent():
    box.children = [waiter(box.never), sleeper()]
    yield box.children                # a multi pending forever

io = IOLoop(make_current=False)       # never closed
box.io = io
io.asyncio_loop.box = box

async def main():
    box.never = asyncio.get_running_loop().create_future()
    box.never.add_done_callback(lambda f: box)
    box.parent = parent()
    box.timer = io.call_later(3600, print, "never")
    box.done = gen.maybe_future(None)

io.run_sync(main)
io.add_callback(print, "never either")   # queued, the loop never runs again
other = IOLoop(make_current=False)    # never started, never closed
other.box = box
box.other = other
del io, other
gc.collect()
print("end")
"""


@pytest.mark.parametrize("dev", [False, True], ids=["", "devmode"])
@pytest.mark.parametrize("installed", [False, True],
                         ids=["tornado", "installed"])
def test_interpreter_exit_with_live_objects(installed, dev):
    source = EXIT_PROGRAM.format(
        install="tornado_cgen.install()" if installed else "")
    assert run_program(source, devmode=dev) == "end\n"


def test_interpreter_exit_under_the_launcher(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text(EXIT_PROGRAM.format(install="assert tornado_cgen.installed()"))
    proc = _launch("run", str(prog))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "end\n", "")
