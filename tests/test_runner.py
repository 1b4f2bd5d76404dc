"""The Runner, the coroutine wrapper and convert_yielded (ext/runner.c):
what only tornado_cgen's C Runner promises (no Python frames of its own, a
C callable wrapper, the Runner type, errors for bad input instead of
crashes), what must not be lost however a coroutine is driven, and
programs that once crashed or lost a call.  Semantics shared with Tornado
are tested against it in test_gen.py and test_multi.py."""
import asyncio
import contextvars
import sys
import traceback

import pytest

import tornado_cgen
from tornado_cgen import _core, gen
from tornado_cgen._core import Runner
from tornado_cgen.concurrent import Future

from conftest import run, run_program, run_python


class EagerFuture(asyncio.Future):
    """Finishes inside its own add_done_callback and calls the callback
    there and then (as a future completed by another thread meanwhile
    may).  Upstream Tornado cannot take one: its resume re-enters the
    coroutine's context while it is entered ("cannot enter context"), so
    these tests are tornado_cgen's own: the wakeup must not be lost."""

    def add_done_callback(self, fn, *, context=None):
        if not self.done():
            self.set_result("eager")
        fn(self)


def test_coroutine_resumes_on_eager_future():
    from tornado_cgen import gen

    async def main():
        @gen.coroutine
        def c():
            x = yield EagerFuture()
            return x

        return await asyncio.wait_for(c(), 5)

    assert run(main) == "eager"


def test_python_built_runner_resumes_on_eager_future():
    # gen.Runner(ctx_run, gen, result_future, first_yielded), as code
    # that drives a generator itself builds it.
    async def main():
        def body():
            x = yield EagerFuture()
            y = yield EagerFuture()
            return (x, y)

        g = body()
        first = next(g)
        result = asyncio.get_running_loop().create_future()
        from tornado_cgen import gen
        gen.Runner(contextvars.copy_context().run, g, result, first)
        return await asyncio.wait_for(result, 5)

    assert run(main) == ("eager", "eager")


def test_coroutine_of_a_non_callable_fails_at_the_call(impl):
    # Tornado decorates anything; the call gives a failed Future.
    async def main():
        c = impl.gen.coroutine(None)
        f = c()
        assert isinstance(f.exception(), TypeError)
        f = impl.gen.coroutine(42)(1, x=2)
        assert isinstance(f.exception(), TypeError)

    run(main)


EXIT_PROGRAMS = {
    "suspended coroutine in a cycle, loop never closed": """
import tornado_cgen
from tornado_cgen import gen, ioloop
io = ioloop.IOLoop(make_current=False)
class Box: pass
box = Box(); box.box = box
@gen.coroutine
def waiter():
    box.never = io.asyncio_loop.create_future()
    yield box.never
async def main():
    box.coro = waiter()
io.run_sync(main)
""",
    "future holding itself through a callback": """
import tornado_cgen
loop = tornado_cgen.new_event_loop()
f = loop.create_future()
f.add_done_callback(lambda _f, f=f: None)
""",
    "python-built runner in a cycle": """
import contextvars, tornado_cgen
from tornado_cgen import gen
from tornado_cgen.concurrent import Future
loop = tornado_cgen.new_event_loop()
never = loop.create_future()
def body():
    yield never
g = body(); first = next(g)
result = loop.create_future()
r = gen.Runner(contextvars.copy_context().run, g, result, first)
never.runner = r if hasattr(never, "__dict__") else None
""",
    "asyncio loop with a gen coroutine pending": """
import asyncio
from tornado_cgen import gen
loop = asyncio.new_event_loop()
class Box: pass
b = Box(); b.b = b
@gen.coroutine
def c():
    yield b.f
async def main():
    b.f = loop.create_future()
    b.c = c()
loop.run_until_complete(main())
""",
}


@pytest.mark.parametrize("name", sorted(EXIT_PROGRAMS))
@pytest.mark.parametrize("dev", [False, True], ids=["", "devmode"])
def test_interpreter_exit_with_live_coroutines(name, dev):
    if name.startswith("asyncio loop") and dev:
        # asyncio's own loop left unclosed must exit cleanly first (3.13's
        # __del__ fails at exit in development mode, without us).
        control = run_python("import asyncio\nloop = asyncio.new_event_loop()",
                             options=("-X", "dev"))
        if "Traceback" in control.stderr:
            pytest.skip("asyncio's own unclosed loop does not exit cleanly "
                        "in development mode on this Python")
    run_program(EXIT_PROGRAMS[name], devmode=dev)


def test_wrapper_is_the_c_type():
    @gen.coroutine
    def f():
        return 1

    assert type(f) is _core.Coroutine
    assert gen.Runner is _core.Runner


def test_no_runner_frames_in_tracebacks():
    @gen.coroutine
    def inner():
        yield gen.moment
        raise ValueError("x")

    @gen.coroutine
    def outer():
        try:
            yield inner()
        except ValueError as e:
            return e

    exc = run(outer)
    files = {fs.filename for fs in traceback.extract_tb(exc.__traceback__)}
    assert files == {__file__}


def test_runner_holds_while_waiting_and_repr():
    async def main():
        waited = Future()

        @gen.coroutine
        def f():
            return (yield waited)

        fut = f()
        assert "Runner for" in repr(fut)   # the keep-alive callback
        waited.set_result(3)
        assert await fut == 3
        assert "Runner" not in repr(fut)

    run(main)


def test_runner_constructed_from_python():
    # Tornado 6's signature: Runner(ctx_run, gen, result_future, first_yielded)
    def body():
        a = yield gen.moment
        b = yield gen.maybe_future(2)
        return (a, b)

    async def main():
        g = body()
        first = next(g)
        fut = Future()
        runner = gen.Runner(contextvars.copy_context().run, g, fut, first)
        assert not runner.finished
        assert await fut == (None, 2)
        assert runner.finished

    run(main)


def test_runner_rejects_bad_ctx_run():
    async def main():
        with pytest.raises(TypeError):
            gen.Runner(print, iter(()), Future(), None)

    run(main)


def test_convert_yielded_fast_paths_and_registry():
    class Thing:
        pass

    @gen.convert_yielded.register(Thing)
    def _(thing):
        return gen.maybe_future("converted")

    class MyList(list):
        pass

    async def main():
        fut = Future()
        assert gen.convert_yielded(fut) is fut
        assert gen.convert_yielded(None) is gen.moment
        assert gen.convert_yielded([gen.maybe_future(1)]).result() == [1]
        assert gen.convert_yielded({"a": None}).result() == {"a": None}
        assert gen.convert_yielded(MyList()).result() == []   # dispatched
        assert gen.convert_yielded(Thing()).result() == "converted"
        assert gen.convert_yielded.dispatch(Thing) is _
        assert Thing in gen.convert_yielded.registry
        assert gen.convert_yielded.__name__ == "convert_yielded"
        with pytest.raises(gen.BadYieldError):
            gen.convert_yielded(42)
        with pytest.raises(TypeError):
            gen.convert_yielded()

    run(main)


def test_multi_bad_arguments():
    async def main():
        with pytest.raises(TypeError):
            gen.multi()
        with pytest.raises(TypeError):
            gen.multi([], (), 3)
        with pytest.raises(TypeError):
            gen.multi([], bogus=1)
        with pytest.raises(TypeError):
            gen.multi(42)

    run(main)


def test_stale_runner_call_is_ignored():
    async def main():
        waited = Future()

        @gen.coroutine
        def f():
            return (yield waited)

        fut = f()
        runner = fut._callbacks[0][0]
        assert isinstance(runner, gen.Runner)
        runner(object())          # not what it waits for: ignored
        with pytest.raises(TypeError):
            runner()
        waited.set_result(1)
        assert await fut == 1

    run(main)


def test_asyncio_future_subclass_and_duck_future():
    class MyFuture(asyncio.Future):
        pass

    async def main():
        loop = asyncio.get_running_loop()

        @gen.coroutine
        def f():
            sub = MyFuture()
            loop.call_soon(sub.set_result, 1)
            a = yield sub
            sub2 = MyFuture()
            sub2.set_result(2)
            b = yield sub2
            return a + b

        return await f()

    assert run(main) == 3


def test_gc_during_steps_and_many_coroutines():
    import gc

    @gen.coroutine
    def worker(i):
        for _ in range(3):
            yield gen.moment
            if i % 100 == 0:
                gc.collect()   # the Runner and friends are traversed live
        return i

    async def main():
        return await gen.multi([worker(i) for i in range(2000)])

    assert run(main) == list(range(2000))


def test_coroutine_in_threads_each_with_own_loop():
    import threading

    @gen.coroutine
    def f(x):
        yield gen.moment
        fut = Future()
        asyncio.get_running_loop().call_soon(fut.set_result, x)
        return (yield fut)

    results = {}

    def start(x):
        # The call happens inside the thread's running loop.
        async def main():
            return await f(x)
        results[x] = asyncio.run(main())

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i for i in range(4)}


def test_a_coroutine_s_own_future_factory():
    # Coroutine(func, factory): what install()'s tornado.gen.coroutine
    # makes; its calls return factory() whatever the module-wide factory.
    class Marked(asyncio.Future):
        pass

    def body(x):
        yield gen.moment
        return x

    async def main():
        own = _core.Coroutine(body, Marked)
        default = _core.Coroutine(body, None)
        f, g = own(1), default(2)
        assert type(f) is Marked and isinstance(g, Future)
        return await f, await g

    assert run(main) == (1, 2)
    with pytest.raises(TypeError, match="must be callable"):
        _core.Coroutine(body, 5)
    with pytest.raises(TypeError):
        _core.Coroutine(body, None, None)


@pytest.fixture
def asyncio_result_futures():
    """Coroutines return asyncio.Future, as install() will make them."""
    _core._set_future_factory(asyncio.Future)
    try:
        yield
    finally:
        _core._set_future_factory(None)


def test_future_factory_asyncio_futures(asyncio_result_futures, caplog):
    import logging

    @gen.coroutine
    def leaf(x):
        yield gen.moment
        return x

    @gen.coroutine
    def fails():
        yield gen.moment
        raise ValueError("v")

    @gen.coroutine
    def f():
        a = yield leaf(1)
        b = yield [leaf(2), leaf(3)]
        try:
            yield fails()
        except ValueError:
            pass
        return a + sum(b)

    @gen.coroutine
    def cancelled_self():
        yield gen.moment
        yield gen.moment
        raise KeyError("after cancel")

    async def main():
        fut = f()
        assert type(fut) is asyncio.Future
        assert await fut == 6
        c = cancelled_self()
        c.cancel()
        for _ in range(4):
            await asyncio.sleep(0)
        assert c.cancelled()
        assert not fut._callbacks   # the keep-alive was removed

    with caplog.at_level(logging.ERROR, logger="tornado.application"):
        run(main)
    assert [r.getMessage() for r in caplog.records
            if r.name == "tornado.application"] == [
        "Exception after Future was cancelled"]


# ---- programs that once crashed or lost a call -----------------------------

class TestRunnerEdges:
    def test_stop_iteration_without_value(self):
        @gen.coroutine
        def f():
            raise StopIteration.__new__(StopIteration)

        fut = f()
        assert fut.done()
        # PEP 479 does not apply: the function is not a generator.
        assert fut.result() is None

    def test_failed_runner_construction_keeps_references(self):
        def g():
            yield

        gi = g()
        next(gi)

        class RefusesCallbacks:
            def add_done_callback(self, fn):
                raise ValueError("no callbacks")

        bad = RefusesCallbacks()
        ctx = contextvars.copy_context()
        before = [sys.getrefcount(o) for o in (gi, bad, ctx)]
        for _ in range(3):
            with pytest.raises(ValueError):
                Runner(ctx.run, gi, bad, None)
        assert [sys.getrefcount(o) for o in (gi, bad, ctx)] == before

    def test_callback_during_registration_is_not_lost(self, tcg_loop):
        class FinishesWhileRegistering:
            """Done between done() and add_done_callback(), as a future
            finished by another thread can be."""
            def __init__(self):
                self._done = False

            def done(self):
                return self._done

            def result(self):
                return 42

            def add_done_callback(self, fn):
                self._done = True
                fn(self)

        class Marker:
            pass

        @gen.convert_yielded.register(Marker)
        def _(marker):
            return FinishesWhileRegistering()

        @gen.coroutine
        def coro():
            return (yield Marker())

        async def main():
            return await asyncio.wait_for(coro(), 5)

        assert tcg_loop.run_until_complete(main()) == 42


def test_task_for_a_yielded_native_coroutine_is_held(impl):
    # A fire-and-forget @gen.coroutine waiting on a native coroutine that
    # waits on a future nobody else holds: the IOLoop keeps the Task (and
    # so the whole chain) alive until it is done, as Tornado >= 6.4 does.
    import gc

    closed = []

    async def forgotten():
        try:
            await asyncio.get_running_loop().create_future()
        except GeneratorExit:
            closed.append("collected")
            raise

    async def main():
        @impl.gen.coroutine
        def outer():
            yield forgotten()

        outer()   # the result future is dropped
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
        await asyncio.sleep(0)
        assert closed == []
        assert len(asyncio.all_tasks()) == 2   # main and forgotten()

    run(main)
