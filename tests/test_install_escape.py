"""What escapes Tornado's Runner, under install() as in Tornado.

Tornado's ``Runner.handle_yield`` catches only ``BadYieldError`` from
``convert_yielded`` (it is thrown into the generator).  Any other failure
(a registered converter's own error, a bad child of a yielded list)
leaves the generator suspended and escapes: out of the coroutine call at
the first yield, and at a later one out of the IOLoop callback that
resumed the Runner, where ``IOLoop._run_callback`` logs it.  Waiting for
``gen.moment`` on a closed loop goes through ``IOLoop.add_callback``,
which swallows "Event loop is closed": the coroutine never resumes, and
nothing is logged.  Every test runs on upstream Tornado and under
``install()`` (the ``mode`` fixture) with the same assertions; the
standalone package keeps throwing every failure in (last test).
"""
import asyncio
import gc
import logging
import warnings

import pytest


class Weird:
    """A type whose registered converter fails."""


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def app_log():
    handler = ListHandler()
    logger = logging.getLogger("tornado.application")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def register_weird(gen):
    @gen.convert_yielded.register(Weird)
    def _(w):
        raise TypeError("no weird")


def spin(n=5):
    async def go():
        for _ in range(n):
            await asyncio.sleep(0)
    return go()


def test_converter_error_at_first_yield_escapes_the_call(mode):
    from tornado import gen
    register_weird(gen)
    events = []

    @gen.coroutine
    def first():
        try:
            yield Weird()
        except TypeError:
            events.append("caught")
        return 1

    async def main():
        with pytest.raises(TypeError, match="no weird"):
            first()

    asyncio.run(main())
    assert events == []


def test_converter_error_at_a_later_yield_is_logged_and_never_finishes(
        mode, app_log):
    from tornado import gen
    register_weird(gen)
    events = []

    @gen.coroutine
    def later():
        try:
            yield gen.moment
            yield Weird()
        except TypeError:
            events.append("caught")
        finally:
            events.append("finally")
        return 2

    async def main():
        f = later()
        await spin()
        assert not f.done()
        assert events == []     # suspended, not closed
        return f

    f = asyncio.run(main())
    errors = [r for r in app_log if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].msg == "Exception in callback %r"
    assert isinstance(errors[0].exc_info[1], TypeError)
    assert str(errors[0].exc_info[1]) == "no weird"
    assert not f.done()
    assert events == []


def test_converter_error_of_a_list_child_escapes(mode):
    from tornado import gen
    register_weird(gen)
    events = []

    @gen.coroutine
    def listed():
        try:
            yield [gen.moment, Weird()]
        except TypeError:
            events.append("caught")

    async def main():
        with pytest.raises(TypeError, match="no weird"):
            listed()

    asyncio.run(main())
    assert events == []


def test_a_future_the_converter_returns_late_escapes_after_a_done_one(mode):
    # The escape happens inside the call when the first yields finish at
    # once: no IOLoop callback is involved yet.
    from tornado import gen
    register_weird(gen)

    @gen.coroutine
    def chained():
        yield gen.maybe_future(1)
        yield Weird()

    async def main():
        with pytest.raises(TypeError, match="no weird"):
            chained()

    asyncio.run(main())


def test_bad_yield_error_is_still_thrown_in(mode):
    from tornado import gen

    @gen.coroutine
    def bad():
        try:
            yield 42
        except gen.BadYieldError as e:
            return "caught: %s" % e

    async def main():
        return await bad()

    assert asyncio.run(main()) == "caught: yielded unknown object 42"


def test_a_moment_on_a_closed_loop_never_resumes_and_logs_nothing(
        mode, app_log, caplog):
    from tornado import gen
    from tornado.ioloop import IOLoop
    events = []

    @gen.coroutine
    def moment_after_close():
        try:
            yield gen.moment
            events.append("resumed")
        except Exception as e:
            events.append(repr(e))

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            io_loop = IOLoop.current()
        loop.close()
        f = moment_after_close()
        assert not f.done()
        del f
        gc.collect()
    finally:
        asyncio.set_event_loop(None)
        IOLoop._ioloop_for_asyncio.pop(loop, None)
        del io_loop
    assert events == []
    assert app_log == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_standalone_throws_a_converter_error_in():
    # tornado_cgen.gen (no install()) throws every conversion failure into
    # the generator, which can catch it.
    from tornado_cgen import gen

    class Odd:
        pass

    @gen.convert_yielded.register(Odd)
    def _(o):
        raise TypeError("no odd")

    @gen.coroutine
    def first():
        try:
            yield Odd()
        except TypeError as e:
            return "caught: %s" % e

    async def main():
        return await first()

    assert asyncio.run(main()) == "caught: no odd"


def test_a_cancelled_error_escaping_at_a_later_yield_is_dropped_silently(
        mode, app_log):
    # IOLoop._run_callback, which resumes Tornado's Runner, passes over a
    # CancelledError: nothing logged, nothing for the loop's exception
    # handler, and the coroutine stays suspended.
    from tornado import gen

    class Cancelling:
        pass

    @gen.convert_yielded.register(Cancelling)
    def _(c):
        raise asyncio.CancelledError("converter")

    events = []

    @gen.coroutine
    def later():
        try:
            yield gen.moment
            yield Cancelling()
        except asyncio.CancelledError:
            events.append("caught")
        finally:
            events.append("finally")

    reported = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: reported.append(context))
        f = later()
        await spin()
        assert not f.done()
        assert events == []
        return f

    f = asyncio.run(main())
    assert reported == []
    assert app_log == []
    assert not f.done()
    assert events == []


class Sticky(asyncio.Future):
    """A future that takes no done callback."""

    def add_done_callback(self, fn, *, context=None):
        raise ValueError("no callbacks")


def test_a_future_that_refuses_the_runner_escapes(mode, app_log):
    # Tornado's Runner registers through IOLoop.add_future, outside any
    # try: the failure escapes the call at the first yield and is logged
    # at a later one, and the generator is never thrown into.
    from tornado import gen
    events = []

    @gen.coroutine
    def first():
        try:
            yield Sticky()
        except ValueError:
            events.append("caught first")

    @gen.coroutine
    def later():
        try:
            yield gen.moment
            yield Sticky()
        except ValueError:
            events.append("caught later")

    async def main():
        with pytest.raises(ValueError, match="no callbacks"):
            first()
        f = later()
        await spin()
        assert not f.done()
        return f

    f = asyncio.run(main())
    assert events == []
    assert not f.done()
    errors = [r for r in app_log if r.levelno == logging.ERROR]
    assert [(r.msg, type(r.exc_info[1])) for r in errors] == [
        ("Exception in callback %r", ValueError)]


def test_an_uninitialised_future_escapes(mode):
    # Tornado's handle_yield asks the future done() outside any try: an
    # asyncio.Future never given __init__ raises there, and that escapes,
    # alone or in a list.
    from tornado import gen
    events = []

    def bare():
        return asyncio.Future.__new__(asyncio.Future)

    @gen.coroutine
    def alone():
        try:
            yield bare()
        except RuntimeError:
            events.append("caught")

    @gen.coroutine
    def listed():
        try:
            yield [gen.moment, bare()]
        except RuntimeError:
            events.append("caught")

    async def main():
        for coroutine in (alone, listed):
            with pytest.raises(RuntimeError, match="uninitialized Future"):
                coroutine()

    asyncio.run(main())
    assert events == []


def test_a_converted_future_whose_done_raises_escapes(mode):
    # A registered converter may return any future-like object; Tornado
    # asks it done() outside any try.
    from tornado import gen

    class Sour:
        pass

    class BadDone(asyncio.Future):
        def done(self):
            raise ValueError("no done")

    @gen.convert_yielded.register(Sour)
    def _(s):
        return BadDone()

    events = []

    @gen.coroutine
    def sour():
        try:
            yield Sour()
        except ValueError:
            events.append("caught")

    async def main():
        with pytest.raises(ValueError, match="no done"):
            sour()

    asyncio.run(main())
    assert events == []
