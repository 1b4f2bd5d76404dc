"""What only tornado_cgen's C Runner promises (Tornado has no equivalent):
no Python frames of its own, a C callable wrapper, the Runner type, and
errors for bad input instead of crashes."""
import asyncio
import contextvars
import traceback

import pytest

from tornado_cgen import _core, gen
from tornado_cgen.concurrent import Future


def run(fn):
    async def main():
        return await fn()

    return asyncio.run(main())


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
