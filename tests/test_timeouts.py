"""gen.with_timeout's timeout path, on every kind of loop.

Tornado runs the timeout callback through ``IOLoop.add_timeout``, so
whatever it raises is logged by ``IOLoop._run_callback`` on
``tornado.application`` ("Exception in callback %r", CancelledError
silent) on any loop, and logs a wrapped future that fails after the
timeout as "Exception in Future %r after timeout", naming the future it
was given (a ``concurrent.futures.Future`` too).  Each test runs on both
implementations (``impl``) and on asyncio's default loop, uvloop,
tornado_cgen's plain loop and an IOLoop.
"""
import asyncio
import concurrent.futures
import datetime
import logging
import re

import pytest

import conftest

APP_LOG = "tornado.application"
NOW = datetime.timedelta(seconds=0)


def _uvloop():
    return pytest.importorskip("uvloop").new_event_loop()


def _tcg():
    import tornado_cgen
    return tornado_cgen.new_event_loop()


LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": _uvloop, "tcg": _tcg,
         "ioloop": None}


@pytest.fixture(params=sorted(LOOPS))
def run(request, impl):
    """Run ``main()`` (a coroutine function) to completion on the loop
    kind under test."""

    def run(main):
        if request.param == "ioloop":
            io = impl.ioloop.IOLoop(make_current=False)
            try:
                return io.run_sync(main)
            finally:
                io.close()
        loop = LOOPS[request.param]()
        try:
            return loop.run_until_complete(main())
        finally:
            loop.close()
            asyncio.set_event_loop(None)

    return run


def _skip_tornado_before_6_6(impl, what):
    conftest.skip_tornado_before_6_6(impl, "%s is 6.6's" % what)


async def _iterations(n=5):
    for _ in range(n):
        await asyncio.sleep(0)


def _errors(caplog):
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_message_callable_failing_is_logged_as_a_callback(impl, run, caplog):
    _skip_tornado_before_6_6(impl, "with_timeout(message=)")
    def message():
        raise ValueError("from message()")

    async def main():
        result = impl.gen.with_timeout(NOW, impl.concurrent.Future(),
                                       message=message)
        await _iterations()
        return result.done()

    with caplog.at_level(logging.DEBUG):
        assert run(main) is False      # the timeout never set its error
    errors = _errors(caplog)
    assert [(r.name, r.exc_info[0]) for r in errors] == [(APP_LOG, ValueError)]
    assert re.fullmatch(r"Exception in callback functools\.partial\(<function "
                        r"with_timeout\.<locals>\.timeout_callback at "
                        r"0x[0-9a-f]+>\)", errors[0].getMessage())


def test_message_callable_cancelled_is_silent(impl, run, caplog):
    _skip_tornado_before_6_6(impl, "with_timeout(message=)")
    def message():
        raise asyncio.CancelledError()

    async def main():
        result = impl.gen.with_timeout(NOW, impl.concurrent.Future(),
                                       message=message)
        await _iterations()
        return result.done()

    with caplog.at_level(logging.DEBUG):
        assert run(main) is False
    assert _errors(caplog) == []


def test_late_failure_logged_naming_the_future(impl, run, caplog):
    async def main():
        inner = impl.concurrent.Future()
        with pytest.raises(asyncio.TimeoutError):
            await impl.gen.with_timeout(NOW, inner)
        inner.set_exception(KeyError("late"))
        await _iterations()
        return repr(inner)

    with caplog.at_level(logging.DEBUG):
        inner_repr = run(main)
    errors = _errors(caplog)
    assert [(r.name, r.exc_info[0]) for r in errors] == [(APP_LOG, KeyError)]
    assert errors[0].getMessage() == (
        "Exception in Future %s after timeout" % inner_repr)


@pytest.mark.parametrize("outcome", ["fails", "cancelled"])
def test_late_concurrent_future_logged_naming_it(impl, run, caplog, outcome):
    # Tornado waits on the concurrent.futures.Future itself: its failure,
    # and its cancellation (concurrent.futures.CancelledError is an
    # Exception, not asyncio's), are logged under its own repr.
    async def main():
        inner = concurrent.futures.Future()
        with pytest.raises(asyncio.TimeoutError):
            await impl.gen.with_timeout(NOW, inner)
        if outcome == "fails":
            inner.set_exception(KeyError("late"))
        else:
            assert inner.cancel()
        await _iterations()
        return inner

    with caplog.at_level(logging.DEBUG):
        inner = run(main)
    errors = _errors(caplog)
    expected = (KeyError if outcome == "fails"
                else concurrent.futures.CancelledError)
    assert [(r.name, r.exc_info[0]) for r in errors] == [(APP_LOG, expected)]
    assert errors[0].getMessage() == (
        "Exception in Future %r after timeout" % (inner,))


def test_concurrent_future_result_and_cancellation(impl, run):
    _skip_tornado_before_6_6(impl, "chain_future copying cancellation")
    # Before the timeout, a concurrent.futures.Future's outcome reaches the
    # result on the loop's thread; its cancellation cancels the result.
    async def main():
        ok = concurrent.futures.Future()
        loop = asyncio.get_running_loop()
        loop.call_soon(ok.set_result, 3)
        value = await impl.gen.with_timeout(datetime.timedelta(seconds=30), ok)
        gone = concurrent.futures.Future()
        result = impl.gen.with_timeout(datetime.timedelta(seconds=30), gone)
        loop.call_soon(gone.cancel)
        with pytest.raises(asyncio.CancelledError):
            await result
        return value, result.cancelled()

    assert run(main) == (3, True)
