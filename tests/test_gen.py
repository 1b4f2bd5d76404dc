"""tornado_cgen.gen against upstream Tornado 6.

Every test in this file takes an ``impl`` and runs the same code on each:
``cgen`` (tornado_cgen on asyncio's default loop), ``cgen-tcgloop`` (on
tornado_cgen's own C loop), ``tornado`` (upstream Tornado 6, skipped if
not installed) and ``installed`` (upstream Tornado's ``tornado.gen`` while
``tornado_cgen.install()`` is on: our Runner and loop under Tornado's
API): Tornado is the oracle that these tests encode its real semantics.  Each test gets a fresh loop (``run``).  Deliberate differences
are marked where they are tested.
"""
import asyncio
import concurrent.futures
import contextvars
import datetime
import gc
import logging
import sys
import threading
import traceback
import types
import weakref
from collections.abc import Generator

import pytest

import conftest

import tornado_cgen.concurrent as cgen_concurrent
import tornado_cgen.gen as cgen_gen

try:
    import tornado.concurrent as tornado_concurrent
    import tornado.gen as tornado_gen
except ImportError:  # pragma: no cover
    tornado_gen = tornado_concurrent = None


class Impl:
    """``name``; ``tornado_api``: the modules are Tornado's own;
    ``c_runner``: coroutines run on our C Runner (its documented
    differences apply); ``installed``: the test runs under install()."""

    def __init__(self, name, gen, concurrent, loop_factory=None,
                 installed=False):
        self.name = name
        self.gen = gen
        self.concurrent = concurrent
        self.Future = concurrent.Future
        self.loop_factory = loop_factory
        self.installed = installed
        self.tornado_api = gen is tornado_gen
        self.c_runner = gen is cgen_gen or installed

    def __repr__(self):
        return self.name


def _tcg_loop():
    import tornado_cgen
    return tornado_cgen.new_event_loop()


IMPLS = [
    # ours on asyncio's default loop, and on our own C loop
    pytest.param(Impl("tornado_cgen", cgen_gen, cgen_concurrent), id="cgen"),
    pytest.param(Impl("tornado_cgen", cgen_gen, cgen_concurrent, _tcg_loop),
                 id="cgen-tcgloop"),
    pytest.param(
        Impl("tornado", tornado_gen, tornado_concurrent) if tornado_gen else None,
        id="tornado",
        marks=pytest.mark.skipif(tornado_gen is None, reason="Tornado not installed"),
    ),
    # Tornado's gen under install(), on the loops asyncio's policy (ours)
    # gives
    pytest.param(
        Impl("installed", tornado_gen, tornado_concurrent, installed=True)
        if tornado_gen else None,
        id="installed",
        marks=pytest.mark.skipif(tornado_gen is None, reason="Tornado not installed"),
    ),
]

# The loop factory of the running test's impl (None: asyncio's default).
_loop_factory = None


@pytest.fixture(params=IMPLS)
def impl(request):
    global _loop_factory
    _loop_factory = request.param.loop_factory
    try:
        if request.param.installed:
            with conftest.tornado_installed():
                yield request.param
        else:
            yield request.param
    finally:
        _loop_factory = None


def new_loop():
    return (_loop_factory or asyncio.new_event_loop)()


def run(fn, *args):
    """Run ``fn(*args)`` (returning an awaitable) on a fresh loop of the
    implementation under test."""
    return conftest.run(fn, *args, loop_factory=_loop_factory)


def in_loop(fn):
    """Run plain ``fn()`` inside a running fresh loop and return its value."""

    async def main():
        return fn()

    return run(main)


APP_LOG = "tornado.application"


def ioloop_time(impl):
    """The clock of absolute ``with_timeout`` deadlines (``IOLoop.time()``).

    Deliberate difference: Tornado 6's ``IOLoop.time()`` is ``time.time()``;
    ours is the running loop's monotonic ``time()`` (DESIGN: "Time is
    monotonic"); under install() Tornado's IOLoop keeps its own clock)."""
    if impl.tornado_api:
        import time
        return time.time()
    return asyncio.get_running_loop().time()


# ---- the first step and results ------------------------------------------------


def test_body_runs_synchronously_to_first_yield(impl):
    gen = impl.gen
    events = []

    @gen.coroutine
    def f():
        events.append("start")
        yield gen.moment
        events.append("after")

    async def main():
        fut = f()
        assert events == ["start"]
        assert not fut.done()
        await fut
        assert events == ["start", "after"]

    run(main)


def test_return_forms(impl):
    gen = impl.gen

    @gen.coroutine
    def ret_stmt():
        yield gen.moment
        return 1

    @gen.coroutine
    def ret_exc():
        yield gen.moment
        raise gen.Return(2)

    @gen.coroutine
    def ret_empty():
        yield gen.moment
        raise gen.Return()

    @gen.coroutine
    def ret_sync():
        if False:
            yield
        raise gen.Return(4)

    @gen.coroutine
    def plain():
        return 5

    async def main():
        return [await ret_stmt(), await ret_exc(), await ret_empty(),
                await ret_sync(), await plain()]

    assert run(main) == [1, 2, None, 4, 5]


def test_return_value_attributes(impl):
    r = impl.gen.Return(7)
    assert isinstance(r, Exception) and not isinstance(r, StopIteration)
    assert r.value == 7 and r.args == (7,)
    assert impl.gen.Return().value is None


def test_plain_function_returning_future_is_not_chained(impl):
    gen = impl.gen

    async def main():
        inner = impl.Future()

        @gen.coroutine
        def f():
            return inner

        fut = f()
        assert fut.done()
        assert fut.result() is inner

    run(main)


def test_plain_function_raising(impl):
    gen = impl.gen

    @gen.coroutine
    def f():
        raise ValueError("boom")

    async def main():
        fut = f()
        assert fut.done()
        with pytest.raises(ValueError, match="boom"):
            fut.result()

    run(main)


def test_synchronous_finish_is_done_at_once(impl):
    gen = impl.gen

    @gen.coroutine
    def leaf(x):
        return x

    @gen.coroutine
    def f():
        a = yield leaf(1)
        b = yield [leaf(2), leaf(3)]
        c = yield {"k": leaf(4)}
        return a + sum(b) + c["k"]

    async def main():
        fut = f()
        assert fut.done()   # done futures resume synchronously
        return fut.result()

    assert run(main) == 10


def test_exception_goes_on_future_after_yield(impl):
    gen = impl.gen

    @gen.coroutine
    def f():
        yield gen.moment
        raise KeyError("k")

    with pytest.raises(KeyError):
        run(f)


@pytest.mark.parametrize("when", ["first", "later"])
def test_base_exception_escapes(impl, when):
    gen = impl.gen

    class Stop(BaseException):
        pass

    @gen.coroutine
    def f():
        if when == "later":
            yield impl.gen.maybe_future(1)
        raise Stop()
        yield

    async def main():
        with pytest.raises(Stop):
            f()

    run(main)


def test_base_exception_from_plain_function_escapes(impl):
    class Stop(BaseException):
        pass

    @impl.gen.coroutine
    def f():
        raise Stop()

    with pytest.raises(Stop):
        in_loop(f)


def test_deep_synchronous_chain_does_not_recurse(impl):
    gen = impl.gen

    async def main():
        done = impl.Future()
        done.set_result(1)

        @gen.coroutine
        def f():
            total = 0
            for _ in range(sys.getrecursionlimit() * 3):
                total += yield done
            return total

        return await f()

    assert run(main) == sys.getrecursionlimit() * 3


# ---- moment, None, pending futures ------------------------------------------------


def test_moment_alternates(impl):
    gen = impl.gen
    order = []

    @gen.coroutine
    def worker(name, yieldable):
        for _ in range(3):
            order.append(name)
            yield yieldable()

    async def main():
        await gen.multi([worker("a", lambda: gen.moment),
                         worker("b", lambda: None)])

    run(main)
    assert "".join(order) == "ababab"


def test_done_futures_do_not_alternate(impl):
    gen = impl.gen
    order = []

    async def main():
        @gen.coroutine
        def worker(name):
            for _ in range(3):
                order.append(name)
                f = impl.Future()
                f.set_result(None)
                yield f

        await gen.multi([worker("a"), worker("b")])

    run(main)
    assert "".join(order) == "aaabbb"


def test_moment_takes_exactly_one_iteration(impl):
    gen = impl.gen
    ticks = []

    @gen.coroutine
    def f():
        ticks.append("before")
        yield gen.moment
        ticks.append("after")

    async def main():
        loop = asyncio.get_running_loop()
        fut = f()
        loop.call_soon(ticks.append, "cb")
        await fut

    run(main)
    # The resume was scheduled before the callback: one iteration.
    assert ticks == ["before", "after", "cb"]


def test_pending_future_resolved_by_callback(impl):
    gen = impl.gen

    async def main():
        loop = asyncio.get_running_loop()

        @gen.coroutine
        def f():
            fut = impl.Future()
            loop.call_soon(fut.set_result, "x")
            a = yield fut
            afut = loop.create_future()
            loop.call_soon(afut.set_result, "y")
            b = yield afut
            return a + b

        return await f()

    assert run(main) == "xy"


def test_pending_future_exception_thrown_in_with_traceback(impl):
    gen = impl.gen

    def failing():
        raise ValueError("deep")

    async def main():
        loop = asyncio.get_running_loop()

        @gen.coroutine
        def f():
            fut = impl.Future()

            def fail():
                try:
                    failing()
                except ValueError as e:
                    fut.set_exception(e)

            loop.call_soon(fail)
            try:
                yield fut
            except ValueError as e:
                return e

        return await f()

    exc = run(main)
    names = [fs.name for fs in traceback.extract_tb(exc.__traceback__)]
    assert "failing" in names and "f" in names
    assert exc.__context__ is None


def test_no_stray_exception_context(impl):
    # Tornado's test_py3_leak_exception_context: throw() outside except.
    gen = impl.gen

    class MyException(Exception):
        pass

    @gen.coroutine
    def inner(iteration):
        raise MyException(iteration)

    @gen.coroutine
    def outer():
        try:
            yield inner(1)
        except MyException as e:
            assert e.__context__ is None
        try:
            yield inner(2)
        except MyException as e:
            assert e.__context__ is None
            return "ok"

    assert run(outer) == "ok"


def test_yield_pending_then_exception_in_generator_context(impl):
    gen = impl.gen

    @gen.coroutine
    def inner():
        yield gen.moment
        raise ValueError("inner")

    @gen.coroutine
    def outer():
        try:
            raise KeyError("handling")
        except KeyError:
            try:
                yield inner()
            except ValueError as e:
                # Raised while the generator handles KeyError: Python's
                # own context, nothing from the Runner.
                return type(e.__context__)

    assert run(outer) is KeyError


# ---- bad yields, conversion ---------------------------------------------------------


@pytest.mark.parametrize("bad", [42, (1, 2), "s", object])
def test_bad_yield_is_thrown_in(impl, bad):
    gen = impl.gen

    @gen.coroutine
    def f():
        try:
            yield bad
        except gen.BadYieldError as e:
            return str(e)

    msg = run(f)
    assert msg.startswith("yielded unknown object")


def test_bad_yield_uncaught_fails_future(impl):
    @impl.gen.coroutine
    def f():
        yield 42

    with pytest.raises(impl.gen.BadYieldError):
        run(f)


def test_bad_element_in_list(impl):
    gen = impl.gen

    @gen.coroutine
    def f():
        try:
            yield [gen.maybe_future(1), 42]
        except gen.BadYieldError:
            return "caught"

    assert run(f) == "caught"


def test_convert_yielded_register(impl):
    gen = impl.gen

    class Deferredish:
        def __init__(self, value):
            self.value = value

    @gen.convert_yielded.register(Deferredish)
    def _(d):
        f = impl.Future()
        asyncio.get_running_loop().call_soon(f.set_result, d.value * 10)
        return f

    # (singledispatch has no unregister; the class is local to this test.)
    @gen.coroutine
    def f():
        a = yield Deferredish(4)
        b = yield [Deferredish(1), Deferredish(2)]
        return a, b

    assert run(f) == (40, [10, 20])
    assert gen.convert_yielded.dispatch(Deferredish) is _


def test_convert_yielded_function(impl):
    gen = impl.gen

    async def main():
        assert gen.convert_yielded(None) is gen.moment
        assert gen.convert_yielded(gen.moment) is gen.moment
        f = impl.Future()
        assert gen.convert_yielded(f) is f
        cf = concurrent.futures.Future()
        assert gen.convert_yielded(cf) is cf
        lst = gen.convert_yielded([])
        assert lst.result() == []
        with pytest.raises(gen.BadYieldError):
            gen.convert_yielded(42)

        async def nat():
            return 3

        t = gen.convert_yielded(nat())
        assert await t == 3

    run(main)


def test_yield_native_coroutine_and_awaitable(impl):
    gen = impl.gen

    class Awaitable:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "aw"

    async def native(x):
        await asyncio.sleep(0)
        return x

    @gen.coroutine
    def f():
        a = yield native(1)
        b = yield Awaitable()
        c = yield [native(2), native(3)]
        return a, b, c

    assert run(f) == (1, "aw", [2, 3])


def test_awaited_from_async_def_and_gathered(impl):
    gen = impl.gen

    @gen.coroutine
    def f(x):
        yield gen.moment
        return x

    async def main():
        a = await f(1)
        b = await asyncio.gather(f(2), f(3))
        c = await asyncio.wait_for(f(4), 10)
        return a, b, c

    assert run(main) == (1, [2, 3], 4)


def test_concurrent_future_resumes_on_loop_thread(impl):
    gen = impl.gen

    def work():
        return threading.get_ident()

    @gen.coroutine
    def f():
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            worker_thread = yield ex.submit(work)
        return worker_thread, threading.get_ident()

    worker, resumed = run(f)
    assert worker != threading.get_ident()
    assert resumed == threading.get_ident()


def test_generic_generator_is_driven(impl):
    gen = impl.gen

    class MyGen(Generator):
        """A collections.abc.Generator that is not a Python generator."""

        def __init__(self):
            self.step = 0

        def send(self, value):
            self.step += 1
            if self.step == 1:
                return gen.moment
            if self.step == 2:
                return impl.gen.maybe_future(value)
            raise StopIteration(("done", value))

        def throw(self, *a):
            raise a[0] if len(a) == 1 else a[1]

    @gen.coroutine
    def f():
        return MyGen()

    assert run(f) == ("done", None)


# ---- multi ----------------------------------------------------------------


def test_multi_list_dict_nested_empty(impl):
    gen = impl.gen

    @gen.coroutine
    def val(x):
        yield gen.moment
        return x

    @gen.coroutine
    def f():
        a = yield [val(1), val(2)]
        b = yield {"x": val(3), "y": [val(4), {"z": val(5)}]}
        c = yield []
        d = yield {}
        e = yield gen.multi([val(6)])
        g = yield gen.multi_future({"q": val(7)})
        h = yield gen.Multi([])
        return a, b, c, d, e, g, h

    assert run(f) == ([1, 2], {"x": 3, "y": [4, {"z": 5}]}, [], {}, [6],
                      {"q": 7}, [])


def test_multi_moment_counts_as_done(impl):
    gen = impl.gen

    @gen.coroutine
    def f():
        fut = gen.multi([gen.moment, None])
        assert fut.done()
        return (yield fut)

    assert run(f) == [None, None]


def test_multi_duplicates(impl):
    gen = impl.gen

    async def main():
        loop = asyncio.get_running_loop()
        fut = impl.Future()
        loop.call_soon(fut.set_result, 9)
        return await gen.multi([fut, fut, {"a": fut}])

    assert run(main) == [9, 9, {"a": 9}]


def test_multi_waits_for_all_first_failure_wins(impl, caplog):
    gen = impl.gen
    finished = []

    @gen.coroutine
    def fail(delay_moments, exc):
        for _ in range(delay_moments):
            yield gen.moment
        finished.append(exc)
        raise exc

    @gen.coroutine
    def ok():
        for _ in range(5):
            yield gen.moment
        finished.append("ok")
        return 1

    first, second = ValueError("first"), KeyError("second")

    @gen.coroutine
    def f():
        try:
            # "second" fails earlier in time; "first" wins by input order.
            yield [fail(3, first), fail(1, second), ok()]
        except Exception as e:
            return e

    with caplog.at_level(logging.ERROR, logger=APP_LOG):
        result = run(f)
    assert result is first
    assert len(finished) == 3   # waited for all
    msgs = [r for r in caplog.records if r.name == APP_LOG]
    assert [r.getMessage() for r in msgs] == ["Multiple exceptions in yield list"]
    assert msgs[0].exc_info[1] is second


def test_multi_quiet_exceptions(impl, caplog):
    gen = impl.gen

    @gen.coroutine
    def fail(exc):
        yield gen.moment
        raise exc

    @gen.coroutine
    def f():
        try:
            yield gen.multi([fail(ValueError()), fail(KeyError())],
                            quiet_exceptions=KeyError)
        except ValueError:
            pass
        try:
            yield gen.multi([fail(ValueError()), fail(KeyError())],
                            quiet_exceptions=(TypeError, KeyError))
        except ValueError:
            return "ok"

    with caplog.at_level(logging.ERROR, logger=APP_LOG):
        assert run(f) == "ok"
    assert not [r for r in caplog.records if r.name == APP_LOG]


def test_multi_done_failures_synchronous(impl, caplog):
    gen = impl.gen

    async def main():
        a, b = impl.Future(), impl.Future()
        a.set_exception(ValueError("a"))
        b.set_exception(KeyError("b"))
        fut = gen.multi([a, b])
        assert fut.done()
        with pytest.raises(ValueError):
            fut.result()

    with caplog.at_level(logging.ERROR, logger=APP_LOG):
        run(main)
    assert [r.getMessage() for r in caplog.records if r.name == APP_LOG] == [
        "Multiple exceptions in yield list"]


def test_multi_bad_child_raises(impl):
    gen = impl.gen

    async def main():
        with pytest.raises(gen.BadYieldError):
            gen.multi([42])

    run(main)


def test_multi_cancelling_result_spares_children(impl):
    gen = impl.gen

    async def main():
        loop = asyncio.get_running_loop()
        child = impl.Future()
        fut = gen.multi([child])
        fut.cancel()
        loop.call_soon(child.set_result, 1)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert child.result() == 1
        assert fut.cancelled()

    run(main)


# ---- cancellation --------------------------------------------------------------


def _tornado_before_6_6():
    import tornado
    return tornado.version_info < (6, 6)


def skip_tornado_before_6_6(impl):
    conftest.skip_tornado_before_6_6(
        impl, "it hangs when a yielded future is cancelled (its issue 3537)",
        in_runner=True)


def test_cancelled_future_thrown_in_and_catchable(impl):
    skip_tornado_before_6_6(impl)
    gen = impl.gen

    async def main():
        loop = asyncio.get_running_loop()

        @gen.coroutine
        def f():
            fut = impl.Future()
            loop.call_soon(fut.cancel)
            try:
                yield fut
            except asyncio.CancelledError:
                return "caught"

        return await f()

    assert run(main) == "caught"


def test_cancelled_future_escaping_cancels_coroutine(impl):
    skip_tornado_before_6_6(impl)
    # DESIGN's choice; Tornado 6.6 does the same (6.5 hung: issue 3537).
    gen = impl.gen

    async def main():
        loop = asyncio.get_running_loop()

        @gen.coroutine
        def f():
            fut = impl.Future()
            loop.call_soon(fut.cancel)
            yield fut

        fut = f()
        with pytest.raises(asyncio.CancelledError):
            await fut
        assert fut.cancelled()

    run(main)


def test_cancelled_error_from_first_step_cancels(impl):
    skip_tornado_before_6_6(impl)
    @impl.gen.coroutine
    def f():
        raise asyncio.CancelledError()

    async def main():
        fut = f()
        assert fut.cancelled()

    run(main)


def test_cancel_own_future_does_not_stop_generator(impl, caplog):
    gen = impl.gen
    steps = []

    @gen.coroutine
    def f(fail):
        yield gen.moment
        steps.append("resumed")
        yield gen.moment
        steps.append("end")
        if fail:
            raise ValueError("after cancel")
        return 1

    async def main():
        for fail in (False, True):
            fut = f(fail)
            assert fut.cancel()
            for _ in range(5):
                await asyncio.sleep(0)
            assert fut.cancelled()

    with caplog.at_level(logging.ERROR, logger=APP_LOG):
        run(main)
    assert steps == ["resumed", "end", "resumed", "end"]
    assert [r.getMessage() for r in caplog.records if r.name == APP_LOG] == [
        "Exception after Future was cancelled"]


# ---- contextvars ----------------------------------------------------------------


def test_contextvars_isolated_and_propagated(impl):
    gen = impl.gen
    var = contextvars.ContextVar("var", default="outer")

    async def native_child():
        return var.get()

    @gen.coroutine
    def child():
        yield gen.moment
        return var.get()

    @gen.coroutine
    def f():
        var.set("inner")
        a = var.get()
        yield gen.moment
        b = var.get()
        c = yield child()
        d = yield native_child()
        return a, b, c, d

    async def main():
        fut = f()
        assert var.get() == "outer"   # nothing leaks out of the call
        res = await fut
        assert var.get() == "outer"
        return res

    assert run(main) == ("inner", "inner", "inner", "inner")


def test_contextvar_reset_across_yield(impl):
    gen = impl.gen
    var = contextvars.ContextVar("var", default=0)

    @gen.coroutine
    def f():
        token = var.set(1)
        yield gen.moment
        fut = impl.Future()
        asyncio.get_running_loop().call_soon(fut.set_result, None)
        yield fut
        var.reset(token)   # same Context on every step, or this raises
        return var.get()

    assert run(f) == 0


def test_context_visible_to_first_yielded_native_coroutine(impl):
    gen = impl.gen
    var = contextvars.ContextVar("var", default=None)

    async def native():
        return var.get()

    @gen.coroutine
    def f():
        var.set("set")
        return (yield native())

    assert run(f) == "set"


def test_concurrent_coroutines_have_separate_contexts(impl):
    gen = impl.gen
    var = contextvars.ContextVar("var", default=None)

    @gen.coroutine
    def f(name):
        var.set(name)
        for _ in range(3):
            yield gen.moment
            assert var.get() == name
        return var.get()

    async def main():
        return await gen.multi([f("a"), f("b")])

    assert run(main) == ["a", "b"]


# ---- the wrapper -------------------------------------------------------------------


def test_wrapper_attributes(impl):
    gen = impl.gen

    def func(a, b=2):
        """docstring"""
        yield gen.moment

    func.custom = "attr"
    wrapper = gen.coroutine(func)
    assert wrapper.__wrapped__ is func
    assert wrapper.__name__ == "func"
    assert wrapper.__qualname__ == func.__qualname__
    assert wrapper.__doc__ == "docstring"
    assert wrapper.__module__ == __name__
    assert wrapper.custom == "attr"
    assert wrapper.__tornado_coroutine__ is True
    assert gen.is_coroutine_function(wrapper)
    assert not gen.is_coroutine_function(func)
    import inspect
    assert list(inspect.signature(wrapper).parameters) == ["a", "b"]


def test_is_coroutine_function_of_result(impl):
    gen = impl.gen

    @gen.coroutine
    def f():
        return 1

    assert not gen.is_coroutine_function(in_loop(f))


def test_wrapper_as_method(impl):
    gen = impl.gen

    class C:
        def __init__(self):
            self.x = 5

        @gen.coroutine
        def m(self, y, *, z=0):
            yield gen.moment
            return self.x + y + z

        @classmethod
        @gen.coroutine
        def cm(cls, y):
            return cls.__name__ + y

        @staticmethod
        @gen.coroutine
        def sm(y):
            return y

    c = C()

    async def main():
        return (await c.m(1, z=2), await C.m(c, 1), await C.cm("!"),
                await c.sm(3), await getattr(c, "m")(0))

    assert run(main) == (8, 6, "C!", 3, 5)


def test_coroutine_returns_future_type(impl):
    @impl.gen.coroutine
    def f():
        return 1

    fut = in_loop(f)
    assert isinstance(fut, impl.Future)
    assert impl.concurrent.is_future(fut)


# ---- helpers --------------------------------------------------------------------------


def test_maybe_future(impl):
    gen = impl.gen

    async def main():
        f = impl.Future()
        assert gen.maybe_future(f) is f
        g = gen.maybe_future(3)
        assert g.done() and g.result() == 3

    run(main)


def test_sleep(impl):
    gen = impl.gen

    @gen.coroutine
    def f():
        loop = asyncio.get_running_loop()
        start = loop.time()
        r = yield gen.sleep(0.01)
        return r, loop.time() - start >= 0.005

    assert run(f) == (None, True)


def test_with_timeout_times_out_without_cancelling(impl):
    gen = impl.gen

    async def main():
        inner = impl.Future()
        with pytest.raises(gen.TimeoutError):
            await gen.with_timeout(datetime.timedelta(seconds=0.01), inner)
        assert not inner.done()
        if impl.tornado_api and _tornado_before_6_6():
            return   # with_timeout(message=) is Tornado 6.6's
        with pytest.raises(gen.TimeoutError, match="custom"):
            await gen.with_timeout(ioloop_time(impl) + 0.01, inner,
                                   message="custom")
        assert not inner.done()

    run(main)


def test_with_timeout_completes(impl):
    gen = impl.gen

    @gen.coroutine
    def val():
        yield gen.moment
        return 3

    async def main():
        a = await gen.with_timeout(datetime.timedelta(seconds=10), val())
        b = await gen.with_timeout(ioloop_time(impl) + 10, val())
        return a, b

    assert run(main) == (3, 3)


def test_with_timeout_logs_late_failure_unless_quiet(impl, caplog):
    gen = impl.gen

    async def main():
        loop = asyncio.get_running_loop()
        for quiet in ((), ValueError):
            inner = impl.Future()
            with pytest.raises(gen.TimeoutError):
                await gen.with_timeout(datetime.timedelta(seconds=0.001),
                                       inner, quiet_exceptions=quiet)
            inner.set_exception(ValueError("late"))
            for _ in range(3):
                await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR, logger=APP_LOG):
        run(main)
    msgs = [r.getMessage() for r in caplog.records if r.name == APP_LOG]
    assert len(msgs) == 1 and msgs[0].startswith("Exception in Future")
    assert msgs[0].endswith("after timeout")


def test_with_timeout_of_moment_is_an_assertion_error(impl):
    # None and moment convert to moment, which is no future: Tornado's
    # chain_future hands it to IOLoop.add_future, whose `assert
    # is_future(future)` fails (no message).  Ours raised AttributeError.
    gen = impl.gen

    async def main():
        for obj in (None, gen.moment):
            with pytest.raises(AssertionError) as info:
                gen.with_timeout(datetime.timedelta(seconds=1), obj)
            assert str(info.value) == ""
        with pytest.raises(gen.BadYieldError):    # not yieldable at all
            gen.with_timeout(datetime.timedelta(seconds=1), 5)

    run(main)


def test_with_timeout_of_a_cancelled_future(impl, caplog):
    # Tornado 6.6 (chain_future copies cancellation): the result is
    # cancelled at once, nothing raises and nothing is logged; the timeout
    # never fires.  Ours raised CancelledError from with_timeout itself.
    if impl.tornado_api and _tornado_before_6_6():
        pytest.skip("Tornado before 6.6 leaves the result pending")
    gen = impl.gen

    async def main():
        inner = impl.Future()
        inner.cancel()
        result = gen.with_timeout(datetime.timedelta(seconds=0.01), inner)
        assert result.cancelled()
        with pytest.raises(asyncio.CancelledError):
            await result
        await asyncio.sleep(0.03)      # past the deadline: nothing happens

        # Cancelled while waited on: the same, and no TimeoutError later.
        inner = impl.Future()
        result = gen.with_timeout(datetime.timedelta(seconds=0.01), inner)
        asyncio.get_running_loop().call_soon(inner.cancel)
        with pytest.raises(asyncio.CancelledError):
            await result
        assert result.cancelled()
        await asyncio.sleep(0.03)

    with caplog.at_level(logging.DEBUG):
        run(main)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_with_timeout_bad_deadline(impl):
    gen = impl.gen

    async def main():
        with pytest.raises(TypeError):
            gen.with_timeout("soon", impl.Future())

    run(main)


def test_timeout_error_is_asyncio(impl):
    assert impl.gen.TimeoutError is asyncio.TimeoutError


def test_wait_iterator_order_and_index(impl):
    gen = impl.gen

    async def main():
        loop = asyncio.get_running_loop()
        futs = [impl.Future() for _ in range(3)]
        loop.call_soon(futs[2].set_result, "c")
        loop.call_soon(futs[0].set_exception, ValueError("a"))
        loop.call_soon(futs[1].set_result, "b")
        it = gen.WaitIterator(*futs)
        seen = []
        while not it.done():
            try:
                r = await it.next()
            except ValueError:
                r = "err"
            seen.append((it.current_index, r, it.current_future is futs[it.current_index]))
        assert it.current_index is None and it.current_future is None
        return seen

    assert run(main) == [(2, "c", True), (0, "err", True), (1, "b", True)]


def test_wait_iterator_kwargs_done_and_async_for(impl):
    gen = impl.gen

    async def main():
        a, b = impl.Future(), impl.Future()
        a.set_result(1)
        asyncio.get_running_loop().call_soon(b.set_result, 2)
        it = gen.WaitIterator(x=a, y=b)
        out = []
        async for r in it:
            out.append((it.current_index, r))
        with pytest.raises(ValueError):
            gen.WaitIterator(a, y=b)
        empty = gen.WaitIterator()
        assert empty.done()
        return out

    assert run(main) == [("x", 1), ("y", 2)]


def test_wait_iterator_cancelled_future(impl, caplog):
    # Tornado 6.6: a future cancelled while next() waits raises
    # CancelledError to the waiter, then iteration goes on.  Ours logged
    # "Exception in callback ... CancelledError" and never resolved.
    if impl.tornado_api and _tornado_before_6_6():
        pytest.skip("Tornado before 6.6 never resolves next() here")
    gen = impl.gen

    async def main():
        loop = asyncio.get_running_loop()
        a, b = impl.Future(), impl.Future()
        it = gen.WaitIterator(a, b)
        loop.call_soon(a.cancel)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(it.next(), 5)
        assert (it.current_index, it.current_future) == (0, a)
        loop.call_soon(b.set_result, "b")
        assert await asyncio.wait_for(it.next(), 5) == "b"
        assert it.current_index == 1
        # Cancelled before next() is called: the same.
        c = impl.Future()
        c.cancel()
        it = gen.WaitIterator(c)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(it.next(), 5)
        assert it.done()

    with caplog.at_level(logging.DEBUG):
        run(main)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_wait_iterator_duplicates(impl):
    if impl.tornado_api and _tornado_before_6_6():
        pytest.skip("Tornado before 6.6 fails on a future given twice")
    gen = impl.gen

    async def main():
        f = impl.Future()
        asyncio.get_running_loop().call_soon(f.set_result, 1)
        it = gen.WaitIterator(f, f)
        out = []
        while not it.done():
            out.append((await it.next(), it.current_index))
        return out

    assert run(main) == [(1, 0), (1, 1)]


# ---- other loops ----------------------------------------------------------------------


def test_runs_on_uvloop(impl):
    uvloop = pytest.importorskip("uvloop")
    gen = impl.gen

    @gen.coroutine
    def leaf(x):
        yield gen.moment
        return x

    @gen.coroutine
    def f():
        loop = asyncio.get_running_loop()
        fut = impl.Future()
        loop.call_soon(fut.set_result, 1)
        a = yield fut
        b = yield [leaf(2), {"k": leaf(3)}]
        yield gen.sleep(0.001)
        return a, b

    async def main():
        return await f()

    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(main()) == (1, [2, {"k": 3}])
    finally:
        loop.close()



@cgen_gen.coroutine
def module_level_cgen(x):
    return x


if tornado_gen is not None:
    @tornado_gen.coroutine
    def module_level_tornado(x):
        return x


def test_wrapper_pickles_and_copies_by_reference(impl):
    import copy
    import pickle

    f = module_level_cgen if impl.gen is cgen_gen else module_level_tornado
    assert pickle.loads(pickle.dumps(f)) is f
    assert copy.copy(f) is f and copy.deepcopy(f) is f
