"""Edge cases of the C code that once crashed, leaked or lost a call.

Each test is the smallest Python program that reached a defect in the C
extension (found by review), kept so it cannot come back.  They are about
our C types, so they run on tornado_cgen only.
"""
import asyncio
import contextvars
import gc
import sys
import weakref

import pytest

import tornado_cgen
from tornado_cgen import gen
from tornado_cgen._core import Runner
from tornado_cgen.concurrent import Future


@pytest.fixture
def tcg_loop():
    loop = tornado_cgen.new_event_loop()
    yield loop
    loop.close()


class TestFutureEdges:
    def test_callbacks_attribute_is_a_copy(self, tcg_loop):
        f = Future(loop=tcg_loop)
        seen = []
        f.add_done_callback(print)
        f.add_done_callback(seen.append)
        f.remove_done_callback(print)     # the rest now lives in a list
        f._callbacks.append(42)           # must not reach the future
        f._callbacks.clear()
        f.set_result(1)
        tcg_loop.run_until_complete(asyncio.sleep(0))
        assert seen == [f]

    def test_remove_keeps_callbacks_added_by_eq(self, tcg_loop):
        f = Future(loop=tcg_loop)
        late = []

        class AddsOnCompare:
            def __call__(self, fut):
                pass

            def __eq__(self, other):
                f.add_done_callback(lambda fut: late.append("late"))
                return False

            __hash__ = object.__hash__

        f.add_done_callback(lambda fut: None)
        f.add_done_callback(AddsOnCompare())
        assert f.remove_done_callback(print) == 0
        f.set_result(1)
        tcg_loop.run_until_complete(asyncio.sleep(0))
        assert late == ["late"]

    def test_future_resurrected_by_exception_handler_stays_collectable(
            self, tcg_loop):
        kept = []
        tcg_loop.set_exception_handler(lambda loop, ctx: kept.append(ctx["future"]))
        f = Future(loop=tcg_loop)
        f.set_exception(ValueError("never retrieved"))
        del f
        gc.collect()
        fut = kept.pop()
        assert gc.is_tracked(fut)

        class Node:
            pass

        node = Node()
        node.fut, fut.node = fut, node    # a cycle through the future
        ref = weakref.ref(node)
        del node, fut
        gc.collect()
        assert ref() is None

    def test_instance_dict(self, tcg_loop):
        f = Future(loop=tcg_loop)
        f.note = "x"
        assert vars(f) == {"note": "x"}


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
