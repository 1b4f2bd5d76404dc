"""Done ``asyncio.Future`` objects read from their struct (runner.c).

At import the C Runner learns where an exact ``asyncio.Future`` keeps its
state and its result, and then reads the outcome "finished with a result"
from there instead of calling ``done()`` and ``result()``.  Every other
state, and every other type (subclasses, Tasks), still goes through the
methods.  Each behaviour test runs on upstream Tornado ("tornado") and on
the same code under ``install()`` ("installed"), with the same assertions;
the counter tests prove that the read path, not the methods, served them.
"""
import asyncio
import gc
import logging

import pytest

import conftest

tornado = pytest.importorskip("tornado")
if tornado.version_info < (6, 2):   # pragma: no cover
    pytest.skip("install() needs Tornado >= 6.2", allow_module_level=True)

import tornado.gen  # noqa: E402
from tornado.ioloop import IOLoop  # noqa: E402

from tornado_cgen import _core  # noqa: E402


def run(coro_fn):
    io = IOLoop(make_current=False)
    try:
        return io.run_sync(coro_fn)
    finally:
        io.close()


def reads():
    return _core._stats()["aio_future_reads"]


def done_future(value):
    f = asyncio.Future()
    f.set_result(value)
    return f


def test_the_layout_is_known_on_this_interpreter():
    # Every supported CPython has the C Future of _asyncio, whose layout
    # the probe must find: without it the read path never runs.
    assert type(asyncio.Future).__module__ == "builtins"
    assert asyncio.Future.__module__ == "_asyncio"
    assert _core._stats()["aio_layout_known"] is True


def test_done_futures_yield_their_results(mode):
    marker = object()

    @tornado.gen.coroutine
    def main():
        a = yield done_future(marker)
        b = yield done_future(None)
        c = yield [done_future(1), done_future(2)]
        d = yield {"x": done_future("x"), 3: done_future([3])}
        return a, b, c, d

    before = reads()
    a, b, c, d = run(main)
    assert a is marker and b is None
    assert c == [1, 2] and d == {"x": "x", 3: [3]}
    if mode == "installed":
        assert reads() - before >= 6


def test_an_exception_is_raised_and_counts_as_retrieved(mode, caplog):
    # The methods serve this one: result() also marks the exception as
    # retrieved, so no "exception was never retrieved" is logged.
    @tornado.gen.coroutine
    def main():
        f = asyncio.Future()
        f.set_exception(KeyError("k"))
        try:
            yield f
        except KeyError as e:
            return e.args

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        assert run(main) == ("k",)
        gc.collect()
    assert not [r for r in caplog.records if r.name == "asyncio"]


@pytest.mark.skipif(tornado.version_info < (6, 6), reason=(
    "Tornado 6.5 and older let the CancelledError out of their Runner, "
    "and the coroutine never finishes"))
def test_a_cancelled_future_raises_cancelled_error(mode):
    @tornado.gen.coroutine
    def main():
        f = asyncio.Future()
        f.cancel()
        try:
            yield f
        except asyncio.CancelledError:
            return "cancelled"

    assert run(main) == "cancelled"


def test_a_subclass_is_asked_through_its_own_methods(mode):
    class Mine(asyncio.Future):
        def result(self):
            return ("mine", super().result())

    @tornado.gen.coroutine
    def main():
        f = Mine()
        f.set_result(1)
        before = reads()
        one = yield f
        both = yield [f, done_future(2)]
        return one, both, reads() - before

    one, both, counted = run(main)
    assert one == ("mine", 1)
    assert both == [("mine", 1), 2]
    assert counted <= 2   # only the plain Future of the list, if any


def test_a_future_initialised_again_is_read_anew(mode):
    # Future.__init__ on a finished future makes it pending again (its
    # result dropped); what is read afterwards is the second outcome.
    @tornado.gen.coroutine
    def main():
        loop = asyncio.get_running_loop()
        f = asyncio.Future()
        f.set_result("first")
        f.__init__(loop=loop)
        assert not f.done()
        loop.call_soon(f.set_result, "second")
        got = yield f
        return got

    assert run(main) == "second"


def test_a_future_never_initialised_is_not_taken_for_done(mode):
    # Future.__new__ without __init__: no loop, never done.  Yielding it is
    # Tornado's business (asyncio raises); it must not be read as finished.
    f = asyncio.Future.__new__(asyncio.Future)
    assert not f.done()

    @tornado.gen.coroutine
    def main():
        yield [done_future(0), f]
        return "resumed"

    # asyncio's RuntimeError from add_done_callback, with and without
    # install() (Tornado lets it out of its Runner; ours throws it into
    # the coroutine, which does not catch it).
    with pytest.raises(RuntimeError):
        run(main)


def test_tornado_cgen_gen_reads_asyncio_futures_too():
    # Standalone: tornado_cgen.gen's coroutines yield asyncio futures too
    # (asyncio code mixed in); the read path serves them.
    from tornado_cgen import gen
    from tornado_cgen.ioloop import IOLoop as CIOLoop

    @gen.coroutine
    def main():
        a = yield done_future("a")
        b = yield [done_future("b"), done_future("c")]
        return a, b

    io = CIOLoop()
    try:
        before = reads()
        assert io.run_sync(main) == ("a", ["b", "c"])
        assert reads() - before >= 3
    finally:
        io.close()


ASYNCIO_FUTURE_REPLACED = """
import asyncio
import sys


class Shifted(asyncio.Future):
    # A subclass of _asyncio's Future with the same struct and its own
    # result(): its futures must be asked, never read.
    def result(self):
        r = super().result()
        return r + 100 if type(r) is int else r


asyncio.Future = Shifted   # before Tornado (and tornado_cgen) look

import tornado.gen
from tornado.ioloop import IOLoop

if sys.argv[1] == "installed":
    import tornado_cgen
    tornado_cgen.install()


@tornado.gen.coroutine
def main():
    f = asyncio.Future()
    f.set_result(1)
    one = yield f
    both = yield [f, f]
    return one, both


io = IOLoop(make_current=False)
print(io.run_sync(main))
io.close()
"""


@pytest.mark.parametrize("which", ["tornado", "installed"])
def test_asyncio_future_replaced_before_import_keeps_its_methods(which):
    # asyncio.Future is what the Runner takes for "asyncio's Future"; when
    # something replaced it with a subclass before tornado_cgen was
    # imported, that subclass's result() is the outcome, as in Tornado.
    proc = conftest.run_python(ASYNCIO_FUTURE_REPLACED, which)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "(101, [101, 101])"
