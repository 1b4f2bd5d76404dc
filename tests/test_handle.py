"""Handle and TimerHandle (ext/handle.c): asyncio's interface, reprs and
error reports as asyncio's own handles give them, and the methods' rules.

Where asyncio's behaviour is the reference, the same test runs on an
asyncio loop and on ours and compares.
"""
import asyncio
import re
import sys

import pytest

import tornado_cgen
from tornado_cgen import _core


@pytest.fixture
def loop(tcg_loop):
    """Here `loop` is always tornado_cgen's (conftest's is parametrised)."""
    return tcg_loop


@pytest.fixture
def both():
    """An asyncio loop and ours, closed afterwards."""
    loops = [asyncio.new_event_loop(), tornado_cgen.new_event_loop()]
    yield loops
    for lp in loops:
        lp.close()


# -- the basics (moved from test_loop_core.py) --------------------------------

def test_handle_cancel(loop):
    seen = []
    h = loop.call_soon(seen.append, 1)
    assert isinstance(h, _core.Handle)
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    loop._run_once()
    assert seen == []
    assert "cancelled" in repr(h)


def test_timer_handle(loop):
    h = loop.call_later(10, print)
    assert isinstance(h, _core.TimerHandle)
    assert abs(h.when() - (loop.time() + 10)) < 1
    h.cancel()
    assert h.cancelled()


# -- methods ------------------------------------------------------------------

def test_run_takes_the_state_from_its_class(loop):
    # _run is METH_METHOD: the same function for both types, any arguments
    # refused as by a no-argument method.
    seen = []
    for h in (loop.call_soon(seen.append, 1),
              loop.call_later(10, seen.append, 2)):
        h._run()
        with pytest.raises(TypeError, match="no arguments"):
            h._run(1)
        with pytest.raises(TypeError, match="no keyword arguments"):
            h._run(x=1)
        h.cancel()
        h._run()   # cancelled: nothing
    assert seen == [1, 2]
    assert _core.TimerHandle._run is _core.Handle._run


def test_args_after_cancel_and_without_arguments(both):
    for lp in both:
        h0, h1, h2 = (lp.call_soon(print), lp.call_soon(print, 1),
                      lp.call_soon(print, 1, 2))
        assert (h0._args, h1._args, h2._args) == ((), (1,), (1, 2))
        h2.cancel()
        assert h2._args is None and h2._callback is None


# -- reprs and error reports, as asyncio's ------------------------------------

def _schedule(lp):
    """The same handles on either loop, created on the same lines."""
    def cb(*args):
        return args
    return [
        lp.call_soon(cb),
        lp.call_soon(cb, 1),
        lp.call_soon(cb, "a", [1, 2]),
        lp.call_later(100, cb, 1),
        lp.call_at(lp.time() + 100, cb),
    ]


def _normalise(text):
    return re.sub(r"when=[0-9.e+-]+", "when=T", text)


@pytest.mark.parametrize("debug", [False, True], ids=["normal", "debug"])
def test_repr_matches_asyncio(both, debug):
    reprs = []
    for lp in both:
        lp.set_debug(debug)
        hs = _schedule(lp)
        reprs.append([_normalise(repr(h)) for h in hs])
        for h in hs:
            h.cancel()
    assert reprs[1] == reprs[0]


@pytest.mark.parametrize("debug", [False, True], ids=["normal", "debug"])
def test_cancelled_repr_matches_asyncio(both, debug):
    # In debug mode asyncio keeps the repr taken at cancel() time, callback
    # and all ("Executing <Handle cancelled cb(1)> took 2.5 seconds").
    reprs = []
    for lp in both:
        lp.set_debug(debug)
        hs = _schedule(lp)
        for h in hs:
            h.cancel()
        reprs.append([_normalise(repr(h)) for h in hs])
    assert reprs[1] == reprs[0]


@pytest.mark.skipif(sys.version_info < (3, 13),
                    reason="debug= of _format_callback_source is 3.13's")
def test_repr_shows_arguments_in_debug_mode_on_313(loop):
    # 3.13's format helpers hide the arguments unless debug=True, which
    # asyncio passes as the loop's debug flag.
    h = loop.call_soon(print, 1, "two")
    assert "print()" in repr(h)
    h.cancel()
    loop.set_debug(True)
    h = loop.call_soon(print, 1, "two")
    assert "print(1, 'two')" in repr(h)
    h.cancel()


@pytest.mark.parametrize("debug", [False, True], ids=["normal", "debug"])
def test_exception_message_matches_asyncio(both, debug):
    messages = []
    for lp in both:
        lp.set_debug(debug)
        lp.slow_callback_duration = 1e9
        got = []
        lp.set_exception_handler(lambda _, ctx: got.append(ctx))

        def fail(*args):
            raise ZeroDivisionError

        lp.call_soon(fail, 1, "x")
        lp.call_soon(lp.stop)
        lp.run_forever()
        assert len(got) == 1 and isinstance(got[0]["exception"],
                                            ZeroDivisionError)
        messages.append(got[0]["message"])
    assert messages[1] == messages[0]


def test_cancel_in_debug_mode_reports_a_failing_repr(both):
    class Unprintable:
        def __call__(self):
            pass

        def __repr__(self):
            raise ZeroDivisionError("no repr")

    for lp in both:
        lp.set_debug(True)
        h = lp.call_soon(Unprintable())
        with pytest.raises(ZeroDivisionError):
            h.cancel()
        assert h.cancelled()
        h.cancel()   # once cancelled, cancel() does nothing


# -- what may become a handle -------------------------------------------------

@pytest.fixture
def io_loop(impl):
    io = impl.ioloop.IOLoop()
    yield io
    io.close()


NOT_CALLABLE = "the first argument must be callable"


@pytest.mark.parametrize("bad", [None, 5], ids=["None", "int"])
def test_tornado_callbacks_must_be_callable_at_once(io_loop, bad):
    # Tornado binds the callback with functools.partial(callback, ...) before
    # it schedules anything: a non-callable is a TypeError on the spot.
    io = io_loop
    for schedule in (lambda: io.add_callback(bad),
                     lambda: io.add_callback(bad, 1, x=2),
                     lambda: io.spawn_callback(bad),
                     lambda: io.call_later(1, bad),
                     lambda: io.call_at(io.time() + 1, bad),
                     lambda: io.add_timeout(io.time() + 1, bad)):
        with pytest.raises(TypeError, match=NOT_CALLABLE):
            schedule()


def test_tornado_add_callback_checks_before_the_closed_loop(impl):
    io = impl.ioloop.IOLoop()
    io.close()
    with pytest.raises(TypeError, match=NOT_CALLABLE):
        io.add_callback(None)
    with pytest.raises(TypeError, match=NOT_CALLABLE):
        io.call_later(1, None)
    assert io.add_callback(print) is None   # dropped quietly


@pytest.mark.parametrize("debug", [False, True], ids=["normal", "debug"])
def test_asyncio_call_soon_none_as_asyncio(both, debug):
    # asyncio checks the callback only in debug mode; otherwise the handle
    # fails when it runs, through the exception handler.
    results = []
    for lp in both:
        lp.set_debug(debug)
        lp.slow_callback_duration = 1e9
        got = []
        errors = []
        lp.set_exception_handler(lambda _, ctx: got.append(
            (ctx["message"], type(ctx["exception"]), str(ctx["exception"]))))
        for method, args in (("call_soon", (None,)),
                             ("call_soon_threadsafe", (None,)),
                             ("call_later", (0, None)),
                             ("call_at", (lp.time(), None))):
            try:
                getattr(lp, method)(*args)
            except TypeError as e:
                errors.append(str(e))
        lp.call_later(0.001, lp.stop)
        lp.run_forever()
        results.append((errors, got))
    assert results[1] == results[0]
    errors, got = results[0]
    if debug:
        assert errors[0] == ("a callable object was expected by call_soon(), "
                             "got None")
        assert not got
    else:
        assert not errors and len(got) == 4
