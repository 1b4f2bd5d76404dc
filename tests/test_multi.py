"""gen.multi (ext/runner.c) against upstream Tornado: how the result of a
list or dict of children is built, what is logged, and bad input.

Each test takes ``impl`` (tornado_cgen, and upstream Tornado as the
oracle) and runs the same code on both.
"""
import asyncio
import concurrent.futures
import logging
import traceback

import pytest

from conftest import run, run_program, skip_tornado_before_6_6


def capture_loop_errors(loop):
    """Collect what reaches the loop's exception handler."""
    seen = []
    loop.set_exception_handler(lambda loop, ctx: seen.append(ctx))
    return seen


def test_bad_quiet_exceptions_still_resolves(impl):
    # The first failure becomes the result; the TypeError of the bad
    # quiet_exceptions comes out of the done callback afterwards.
    async def main():
        loop = asyncio.get_running_loop()
        errors = capture_loop_errors(loop)
        f, g = loop.create_future(), loop.create_future()
        m = impl.gen.multi([f, g], quiet_exceptions=5)
        f.set_exception(ValueError("f"))
        g.set_exception(KeyError("g"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert m.done()
        assert isinstance(m.exception(), ValueError)
        [ctx] = errors
        assert isinstance(ctx["exception"], TypeError)
        assert isinstance(ctx["exception"].__context__, KeyError)

    run(main)


def test_bad_quiet_exceptions_when_all_done_raises(impl):
    async def main():
        loop = asyncio.get_running_loop()
        f, g = loop.create_future(), loop.create_future()
        f.set_exception(ValueError("f"))
        g.set_exception(KeyError("g"))
        with pytest.raises(TypeError):
            impl.gen.multi([f, g], quiet_exceptions=5)

    run(main)


def test_cancelled_multi_filters_later_failures(impl, caplog):
    # Once the multi's own future is done (cancelled here), every child
    # failure takes the "Multiple exceptions" path: quiet ones and
    # CancelledError are not logged, others are.
    async def main():
        loop = asyncio.get_running_loop()
        f = loop.create_future()
        m = impl.gen.multi([f], quiet_exceptions=ValueError)
        m.cancel()
        f.set_exception(ValueError("quiet"))
        g = loop.create_future()
        m2 = impl.gen.multi([g])
        m2.cancel()
        g.cancel()
        h = loop.create_future()
        m3 = impl.gen.multi([h], quiet_exceptions=ValueError)
        m3.cancel()
        h.set_exception(KeyError("loud"))
        for _ in range(5):
            await asyncio.sleep(0)
        assert m.cancelled() and m2.cancelled() and m3.cancelled()

    with caplog.at_level(logging.DEBUG):
        run(main)
    records = [r for r in caplog.records if r.name == "tornado.application"]
    assert [r.getMessage() for r in records] == [
        "Multiple exceptions in yield list"]
    assert isinstance(records[0].exc_info[1], KeyError)


def test_cancelled_child_is_a_failure_not_a_cancel(impl):
    skip_tornado_before_6_6(impl, "a cancelled child fails the multi "
                            "(6.5's escaped its callback)", in_runner=True)

    async def main():
        loop = asyncio.get_running_loop()
        f, g = loop.create_future(), loop.create_future()
        m = impl.gen.multi([f, g])
        f.cancel()
        g.set_result(1)
        for _ in range(5):
            await asyncio.sleep(0)
        assert not m.cancelled()
        assert isinstance(m.exception(), asyncio.CancelledError)

    run(main)


def test_done_concurrent_future_counts_as_done(impl):
    async def main():
        cf = concurrent.futures.Future()
        cf.set_result(3)
        m = impl.gen.multi([cf])
        assert m.done()
        assert m.result() == [3]
        d = impl.gen.multi({"a": cf})
        assert d.done() and d.result() == {"a": 3}

    run(main)


def test_yield_done_concurrent_future_resumes_at_once(impl):
    async def main():
        loop = asyncio.get_running_loop()
        cf = concurrent.futures.Future()
        cf.set_result(3)
        order = []

        @impl.gen.coroutine
        def c():
            loop.call_soon(order.append, "callback")
            x = yield cf
            order.append(("resumed", x))

        c()
        assert order == [("resumed", 3)]
        await asyncio.sleep(0)
        assert order == [("resumed", 3), "callback"]

    run(main)


def test_dict_subclass_read_through_its_methods(impl):
    class Odd(dict):
        def keys(self):
            return ["a", "b"]

        def values(self):
            return [None, 5]

    async def main():
        loop = asyncio.get_running_loop()
        f = loop.create_future()
        f.set_result(5)

        class D(Odd):
            def values(self):
                return [None, f]

        return await impl.gen.multi(D(x=1))

    assert run(main) == {"a": None, "b": 5}


def test_dict_subclass_keys_and_values_of_unequal_length(impl):
    class D(dict):
        def keys(self):
            return ["a", "b", "c"]

        def values(self):
            return [None]

    async def main():
        return await impl.gen.multi(D())

    assert run(main) == {"a": None}


@pytest.mark.parametrize("build", ["self", "deep"])
def test_recursive_lists_raise_recursion_error(impl, build):
    if build == "self":
        a = []
        a.append(a)
    else:
        a = []
        for _ in range(100_000):
            a = [a]

    async def main():
        with pytest.raises(RecursionError):
            impl.gen.multi(a)
        with pytest.raises(RecursionError):
            impl.gen.convert_yielded(a)
        d = {}
        d["d"] = d
        with pytest.raises(RecursionError):
            impl.gen.multi(d)

    run(main)


def test_yield_recursive_list(impl):
    # Tornado lets the RecursionError out of the call (its Runner only
    # catches BadYieldError), and so does the C Runner under install()
    # (tests/test_install_escape.py); tornado_cgen.gen throws it into the
    # generator, as every failure to convert a yielded object (README), so
    # the coroutine can catch it.
    a = []
    a.append(a)

    async def main():
        @impl.gen.coroutine
        def c():
            try:
                yield a
            except RecursionError:
                return "caught"
            return "not raised"

        if impl.tornado_api:
            with pytest.raises(RecursionError):
                c()
        else:
            assert c().result() == "caught"

    run(main)


def test_shared_exception_keeps_the_first_childs_traceback(impl):
    # Two children failed with one exception instance: the multi fails
    # with the traceback it had when the first was read, as Tornado's
    # (which sets it on the result before reading the second).
    err = ValueError("shared")

    def raiser_one():
        raise err

    def raiser_two():
        raise err

    async def main():
        loop = asyncio.get_running_loop()
        futs = []
        for raiser in (raiser_one, raiser_two):
            f = loop.create_future()
            try:
                raiser()
            except ValueError as e:
                f.set_exception(e)
            futs.append(f)

        @impl.gen.coroutine
        def c():
            try:
                yield futs
            except ValueError as e:
                return [fr.name for fr in traceback.extract_tb(e.__traceback__)]

        return c().result()

    names = run(main)
    assert "raiser_one" in names and "raiser_two" not in names, names


def test_results_list_never_seen_half_built(impl):
    # A child's result() runs Python code while multi gathers the results:
    # the list being filled (NULL slots) must not be reachable through
    # gc.get_objects() (it crashed on indexing).
    import gc

    class Peek(concurrent.futures.Future):
        def result(self, timeout=None):
            for o in gc.get_objects():
                if type(o) is list and len(o) == 2:
                    o[0], o[1]
            return super().result(timeout)

    async def main():
        a, b = Peek(), Peek()
        a.set_result(1)
        b.set_result(2)
        assert impl.gen.multi([a, b]).result() == [1, 2]

    run(main)


def _finished(impl, value):
    f = impl.concurrent.Future()
    f.set_result(value)
    return f


def test_all_finished_children_results_in_order(impl):
    # Every child already has a result: a list gives a new list, a dict a
    # new plain dict with the children's keys in their order (str, int and
    # other keys alike), from yield and from multi() alike.
    class Key:
        def __init__(self, name):
            self.name = name

        def __hash__(self):
            return hash(self.name)

        def __eq__(self, other):
            return isinstance(other, Key) and other.name == self.name

    k = Key("k")

    @impl.gen.coroutine
    def main():
        futs = [_finished(impl, i) for i in range(12)]
        res = yield futs
        assert res == list(range(12)) and res is not futs
        assert type(res) is list
        keyed = {"b": futs[0], 3: futs[1], "a": futs[2]}
        res = yield keyed
        assert type(res) is dict
        assert list(res.items()) == [("b", 0), (3, 1), ("a", 2)]
        res = yield {"x": futs[3], k: futs[4]}
        assert list(res.items()) == [("x", 3), (k, 4)]
        m = impl.gen.multi({"z": futs[5], "y": futs[6]})
        assert m.done() and list(m.result().items()) == [("z", 5), ("y", 6)]
        assert (yield []) == [] and (yield {}) == {}
        # A child with no result yet, a failed child, None: the general
        # rules (wait; the first failure; a moment).
        f = impl.concurrent.Future()
        io.add_callback(f.set_result, "late")
        assert (yield {"a": futs[7], "f": f}) == {"a": 7, "f": "late"}
        bad = impl.concurrent.Future()
        bad.set_exception(KeyError("bad"))
        try:
            yield [futs[8], bad, futs[9]]
        except KeyError as e:
            assert e.args == ("bad",)
        else:
            raise AssertionError("no KeyError")
        assert (yield [futs[10], None]) == [10, None]
        return "ok"

    io = impl.ioloop.IOLoop(make_current=False)
    try:
        assert io.run_sync(main) == "ok"
    finally:
        io.close(all_fds=True)


def test_finalizer_that_empties_the_list_while_multi_reads_it():
    # A collection while multi() makes its result list runs finalizers,
    # which may change the children list under it; the outcome is that of
    # the list before or after the change, never a read past its end.
    out = run_program("""
        import asyncio, gc
        import tornado_cgen
        from tornado_cgen import gen
        from tornado_cgen.concurrent import Future

        loop = tornado_cgen.new_event_loop()
        asyncio.set_event_loop(loop)
        n = 1000
        futs = []
        for i in range(n):
            f = Future()
            f.set_result(i)
            futs.append(f)
        children = list(futs)
        ran = []

        class Bomb:
            def __del__(self):
                ran.append(1)
                children.clear()
                futs.clear()

        b = Bomb()
        b.self = b
        del b
        keep = [[] for _ in range(200)]   # no free list to reuse
        gc.set_threshold(1)
        try:
            m = gen.multi(children)
        finally:
            gc.set_threshold(700, 10, 10)
        gc.collect()
        res = m.result()
        print(ran == [1], res in ([], list(range(n))))
        loop.close()
    """)
    assert out.split() == ["True", "True"]
