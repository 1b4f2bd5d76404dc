"""Differences from asyncio/Tornado found by ``python -m tornado_cgen
check --only fuzz``: the same bad input raises what asyncio (or Tornado on
asyncio) raises."""
import asyncio
import contextvars
import os

import pytest

import tornado_cgen
from tornado_cgen import ioloop


@pytest.fixture
def loop():
    lp = tornado_cgen.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture
def closed_loop():
    lp = tornado_cgen.new_event_loop()
    lp.close()
    return lp


def noop(*args):
    pass


class FloatOnly:
    def __float__(self):
        return 1.0


@pytest.mark.parametrize("fd", [-1, -2 ** 63 - 1, -2 ** 1000])
def test_negative_fd_is_value_error(loop, fd):
    # selectors: "Invalid file descriptor", however large the number.
    for meth in (loop.add_reader, loop.add_writer):
        with pytest.raises(ValueError):
            meth(fd, noop)
    for meth in (loop.remove_reader, loop.remove_writer):
        with pytest.raises(ValueError):
            meth(fd)


@pytest.mark.parametrize("fd", [2 ** 31, 2 ** 63, 2 ** 1000])
def test_huge_fd(loop, fd):
    # epoll.register's OverflowError; removing one is "not registered".
    with pytest.raises(OverflowError):
        loop.add_reader(fd, noop)
    with pytest.raises(OverflowError):
        loop.add_writer(fd, noop)
    assert loop.remove_reader(fd) is False
    assert loop.remove_writer(fd) is False


@pytest.mark.parametrize("fd", [-1, 2 ** 31, 2 ** 63, -2 ** 1000])
def test_closed_loop_add_reader_is_runtime_error(closed_loop, fd):
    with pytest.raises(RuntimeError):
        closed_loop.add_reader(fd, noop)
    with pytest.raises(RuntimeError):
        closed_loop.add_writer(fd, noop)


@pytest.mark.parametrize("when", ["x", 1j, [], float("nan"), FloatOnly()])
def test_closed_loop_call_at_is_runtime_error(closed_loop, when):
    # asyncio: None is a TypeError, then the closed check, then the value.
    with pytest.raises(RuntimeError):
        closed_loop.call_at(when, noop)
    with pytest.raises(TypeError):
        closed_loop.call_at(None, noop)


@pytest.mark.parametrize("delay", [1j, float("nan")])
def test_closed_loop_call_later_is_runtime_error(closed_loop, delay):
    # asyncio: call_at(time() + delay): the sum, then the closed check.
    with pytest.raises(RuntimeError):
        closed_loop.call_later(delay, noop)


@pytest.mark.parametrize("delay", ["x", [], FloatOnly()])
def test_call_later_not_a_number_is_type_error(loop, closed_loop, delay):
    with pytest.raises(TypeError):
        loop.call_later(delay, noop)
    with pytest.raises(TypeError):
        closed_loop.call_later(delay, noop)


@pytest.mark.parametrize("method", ["call_at", "call_later"])
def test_time_whose_arithmetic_closes_the_loop(method):
    # call_at checks the closed loop before it reads the value; reading it
    # runs Python code (__radd__ here, __float__ of what that returns):
    # a loop that code closed takes no timer.
    lp = tornado_cgen.new_event_loop()

    class Closer:
        def __radd__(self, other):
            lp.close()
            return other + 1.0

    with pytest.raises(RuntimeError):
        getattr(lp, method)(Closer(), noop)
    assert lp.is_closed()


def test_time_arguments_still_accept_numbers(loop):
    import fractions
    for v in (0, 1, 0.5, True, fractions.Fraction(1, 2), float("inf")):
        loop.call_later(v, noop).cancel()
        loop.call_at(loop.time() + v, noop).cancel()
    with pytest.raises(ValueError):
        loop.call_later(float("nan"), noop)


def test_ioloop_time_arguments_like_tornado():
    io = ioloop.IOLoop(make_current=False)
    try:
        with pytest.raises(TypeError):
            io.call_later(FloatOnly(), noop)
        with pytest.raises(TypeError):
            io.call_at(FloatOnly(), noop)
    finally:
        io.close()
    # Closed: Tornado's asyncio call_later raises "closed" before anything
    # looks at a NaN.
    with pytest.raises(RuntimeError):
        io.call_later(float("nan"), noop)
    with pytest.raises(RuntimeError):
        io.call_at(float("nan"), noop)


@pytest.mark.parametrize("ctx", [object(), 5])
def test_context_that_is_not_a_context(loop, ctx):
    # asyncio runs context.run(callback, *args): AttributeError, reported.
    seen = []
    loop.set_exception_handler(lambda lp, c: seen.append(c["exception"]))
    loop.call_soon(noop, 1, context=ctx)
    loop.call_soon(noop, 1, 2, context=ctx)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert [type(e) for e in seen] == [AttributeError, AttributeError]


def test_context_like_object_is_used(loop):
    calls = []

    class Ctx:
        def run(self, fn, *args):
            calls.append(args)
            return fn(*args)
    loop.call_soon(noop, context=Ctx())
    loop.call_soon(noop, 1, context=Ctx())
    loop.call_soon(noop, 1, 2, context=Ctx())
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == [(), (1,), (1, 2)]
    # A real Context still goes the fast way.
    var = contextvars.ContextVar("v")
    ctx = contextvars.copy_context()
    ctx.run(var.set, 3)
    got = []
    loop.call_soon(lambda: got.append(var.get()), context=ctx)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert got == [3]


@pytest.mark.parametrize("fd", ["x", 2 ** 31, -1])
def test_update_handler_of_an_fd_never_added(fd):
    # Tornado watches it anyway: a bad fd fails as add_reader fails it.
    io = ioloop.IOLoop(make_current=False)
    try:
        ref = asyncio.new_event_loop()
        try:
            with pytest.raises(Exception) as want:
                if isinstance(fd, str):
                    raise AttributeError
                ref.add_reader(fd, noop)
        finally:
            ref.close()
        with pytest.raises(want.type):
            io.update_handler(fd, ioloop.IOLoop.READ)
    finally:
        io.close()


def test_update_handler_of_an_fd_never_added_fails_when_ready():
    io = ioloop.IOLoop(make_current=False)
    r, w = os.pipe()
    seen = []
    io.asyncio_loop.set_exception_handler(
        lambda lp, c: seen.append(c.get("exception")))
    try:
        io.update_handler(r, ioloop.IOLoop.READ)
        os.write(w, b"x")
        io.call_later(0.05, io.stop)
        io.start()
        assert seen and all(isinstance(e, KeyError) for e in seen)
        io.update_handler(r, 0)
    finally:
        io.close()
        os.close(r)
        os.close(w)


def _run_own_future(step):
    """Run a coroutine that does step(own_result_future) after a yield and
    returns (or raises); returns (its future, what the loop reported)."""
    from tornado_cgen import gen
    io = ioloop.IOLoop(make_current=False)
    seen = []
    io.asyncio_loop.set_exception_handler(
        lambda lp, c: seen.append(c.get("exception")))
    me = []

    @gen.coroutine
    def body():
        yield None
        return step(me[0])

    io.add_callback(lambda: me.append(body()))
    io.call_later(0.05, io.stop)
    io.start()
    io.close()
    return me[0], seen


def test_coroutine_whose_result_future_was_set_meanwhile():
    # Tornado: future_set_result_unless_cancelled on a done (not cancelled)
    # future raises InvalidStateError out of the Runner.  It was dropped.
    fut, seen = _run_own_future(lambda f: f.set_result("early") or "late")
    assert fut.result() == "early"
    assert [type(e) for e in seen] == [asyncio.InvalidStateError]


def test_coroutine_raising_after_its_result_future_was_set():
    # It was logged as "Exception after Future was cancelled" (ValueError).
    def step(f):
        f.set_exception(KeyError("early"))
        raise ValueError("late")
    fut, seen = _run_own_future(step)
    assert isinstance(fut.exception(), KeyError)
    assert [type(e) for e in seen] == [asyncio.InvalidStateError]


def test_coroutine_whose_result_future_was_cancelled_meanwhile():
    # Cancelled: the outcome is dropped quietly, as Tornado drops it.
    fut, seen = _run_own_future(lambda f: f.cancel() and "late")
    assert fut.cancelled()
    assert seen == []
