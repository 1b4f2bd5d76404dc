"""Memory properties of gen.coroutine (Tornado's RunnerGCTest and
circlerefs_test, rewritten), on tornado_cgen and on Tornado 6 as the
oracle, plus reference-count checks on a debug interpreter.
"""
import asyncio
import gc
import os
import sys
import weakref

import pytest

from test_gen import APP_LOG, impl, new_loop, run  # noqa: F401  (fixture)


@pytest.fixture
def gc_disabled():
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Local:
    pass


def exceptions_checked(impl):
    """Whether the exception path is part of a refcount/cycle check.

    Deliberate difference: in Tornado a coroutine that fails leaves a
    reference cycle (the exception's traceback holds ``Runner.run``'s frame,
    which holds the Runner; verified on 6.6.1), so its locals wait for the
    cycle collector.  Our Runner has no Python frame: no cycle."""
    return impl.c_runner


def test_finished_coroutine_frees_locals_by_refcount(impl, gc_disabled):
    gen = impl.gen
    refs = []

    @gen.coroutine
    def inner(fail):
        local = Local()
        refs.append(weakref.ref(local))
        yield gen.moment
        fut = impl.Future()
        asyncio.get_running_loop().call_soon(fut.set_result, None)
        yield fut
        yield [gen.maybe_future(1), gen.moment]
        if fail:
            raise ValueError("some error")
        return local.__class__.__name__

    @gen.coroutine
    def outer():
        a = yield inner(False)
        if exceptions_checked(impl):
            try:
                yield inner(True)
            except ValueError:
                pass
        b = yield inner(False)
        return a, b

    async def main():
        res = await outer()
        # Still inside the loop, the cycle collector off: only refcounting
        # can have freed them.
        assert refs and [r() for r in refs] == [None] * len(refs)
        return res

    assert run(main) == ("Local", "Local")


def test_synchronous_coroutine_frees_locals(impl, gc_disabled):
    gen = impl.gen
    refs = []

    @gen.coroutine
    def f():
        local = Local()
        refs.append(weakref.ref(local))
        yield gen.maybe_future(None)
        return 1

    async def main():
        assert (await f()) == 1
        assert refs[0]() is None

    run(main)


def _garbage_of_interest(garbage):
    names = {"Runner", "Future", "generator", "MultiWaiter", "Coroutine",
             "Local", "frame"}
    return [o for o in garbage if type(o).__name__ in names]


def test_coroutine_chain_leaves_no_cyclic_garbage(impl):
    gen = impl.gen

    @gen.coroutine
    def leaf(i):
        if i % 3 == 0:
            yield gen.moment
        fut = impl.Future()
        asyncio.get_running_loop().call_soon(fut.set_result, i)
        v = yield fut
        if i % 4 == 0:
            raise gen.Return(v)
        return v

    @gen.coroutine
    def failing():
        yield gen.moment
        raise KeyError("x")

    @gen.coroutine
    def handler(i):
        local = Local()  # noqa: F841
        a = yield leaf(i)
        b = yield [leaf(i + 1), {"k": leaf(i + 2)}]
        if exceptions_checked(impl):
            try:
                yield failing()
            except KeyError:
                pass
        return a + b[0] + b[1]["k"]

    async def main():
        for i in range(3):   # warm up caches (singledispatch, loggers)
            await handler(i)
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for i in range(20):
                await handler(i)
            gc.collect()
            return _garbage_of_interest(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()

    assert run(main) == []


def test_suspended_coroutine_in_cycle_collected_when_loop_closes(impl):
    gen = impl.gen
    steps = []
    wref = []

    @gen.coroutine
    def forever():
        try:
            while True:
                yield gen.moment
                steps.append("tick")
        finally:
            steps.append("finalised")

    @gen.coroutine
    def main():
        fut = forever()
        fut._refcycle = fut   # a cycle through the result future
        wref.append(weakref.ref(fut))
        for _ in range(3):
            yield gen.moment

    loop = new_loop()
    try:
        async def go():
            await main()
        loop.run_until_complete(go())
    finally:
        loop.close()
    gc.collect()
    assert wref[0]() is None
    assert steps.count("tick") >= 2
    assert steps[-1] == "finalised"


def test_runner_kept_alive_by_result_future(impl):
    # Tornado issue 1769: nothing but the coroutine's Future (held by the
    # awaiter) references the Runner while it waits on a future that only
    # the generator holds.
    gen = impl.gen
    scope = []

    def resolve():
        gc.collect()
        scope[0]().set_result(123)

    @gen.coroutine
    def tester():
        fut = impl.Future()
        scope.append(weakref.ref(fut))
        asyncio.get_running_loop().call_soon(resolve)
        return (yield fut)

    assert run(tester) == 123


def test_pending_coroutine_future_does_not_leak_after_finish(impl, gc_disabled):
    # The result future's keep-alive reference to the Runner goes when the
    # coroutine finishes: the Future alone does not keep the generator.
    gen = impl.gen
    refs = []

    @gen.coroutine
    def f():
        local = Local()
        refs.append(weakref.ref(local))
        yield gen.moment
        return 1

    async def main():
        fut = f()
        await fut
        assert fut.result() == 1
        assert refs[0]() is None   # fut is still alive here

    run(main)


@pytest.mark.skipif(not hasattr(sys, "gettotalrefcount"),
                    reason="needs a debug interpreter (sys.gettotalrefcount)")
def test_no_reference_growth(monkeypatch):
    monkeypatch.syspath_prepend(
        os.path.join(os.path.dirname(__file__), "..", "tools"))
    import refleak_runner
    deltas = refleak_runner.measure(cycles=2000, rounds=4)
    assert max(deltas[1:]) <= 0, deltas
