"""Callbacks the loop queues without a Handle: a future's done callbacks,
a coroutine's wakeups and Tornado's add_callback return no handle, so the
C loop keeps them inline in its ready queue.  Everything a program can see
of them must be what it sees of a handle: the failure report, asyncio's
debug mode, the context they run in, and the collector.  The same tests
run on asyncio's loop (the ``loop`` fixture), which makes handles for all
of them."""
import asyncio
import contextvars
import gc
import logging
import sys
import warnings
import weakref

import pytest

from conftest import _loop_factories, run_briefly


@pytest.fixture(params=_loop_factories(), ids=lambda p: p[0])
def loop_factory(request):
    return request.param[1]


def test_failing_done_callback_reported_with_its_handle(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    fut = loop.create_future()

    def boom(f):
        raise ValueError("boom")

    fut.add_done_callback(boom)
    fut.set_result(1)
    run_briefly(loop)
    [ctx] = contexts
    assert isinstance(ctx["exception"], ValueError)
    assert ctx["message"].startswith("Exception in callback ")
    handle = ctx["handle"]
    assert isinstance(handle, asyncio.Handle) or \
        type(handle).__name__ == "Handle"
    assert not handle.cancelled()
    assert "boom" in repr(handle)
    # The message names the callback and its argument, as the handle's
    # repr shows them.
    assert "boom" in ctx["message"]


def test_debug_mode_switched_on_after_queueing_reports_slow_callbacks(
        loop, caplog):
    loop.set_debug(False)
    fut = loop.create_future()
    ran = []
    fut.add_done_callback(ran.append)
    fut.set_result(1)
    loop.set_debug(True)
    loop.slow_callback_duration = 0.0
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_briefly(loop)
    assert ran == [fut]
    slow = [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("Executing ")]
    assert any("took" in m and "append" in m for m in slow), slow
    loop.set_debug(False)


def test_debug_mode_done_callback_records_where_it_was_queued(loop):
    # asyncio's debug mode: the handle of a future's done callback records
    # the stack of set_result(), which its failure report carries.
    loop.set_debug(True)
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    fut = loop.create_future()

    def boom(f):
        raise ValueError("boom")

    fut.add_done_callback(boom)
    line = sys._getframe().f_lineno + 1
    fut.set_result(1)
    run_briefly(loop)
    loop.set_debug(False)
    [ctx] = contexts
    frame = ctx["source_traceback"][-1]
    assert (frame.filename, frame.lineno) == (__file__, line)
    assert "created at %s:%d" % (__file__, line) in repr(ctx["handle"])


def test_handles_and_done_callbacks_keep_one_order_across_fatal_errors(
        loop):
    # Handles and done callbacks share one FIFO; a KeyboardInterrupt or
    # SystemExit from either leaves run_forever() with the rest still
    # queued, in order, for the next run.
    order = []

    def cb(tag, exc=None):
        def run(*args):
            order.append(tag)
            if exc is not None:
                raise exc
        return run

    futs = [loop.create_future() for _ in range(3)]
    loop.call_soon(cb("h1"))
    futs[0].add_done_callback(cb("f0", KeyboardInterrupt))
    futs[0].set_result(0)
    loop.call_soon(cb("h2"))
    futs[1].add_done_callback(cb("f1", SystemExit(3)))
    futs[1].set_result(1)
    futs[2].add_done_callback(cb("f2"))
    futs[2].set_result(2)
    loop.call_soon(cb("h3", KeyboardInterrupt))
    loop.call_soon(loop.stop)
    for _ in range(5):
        try:
            loop.run_forever()
        except (KeyboardInterrupt, SystemExit) as e:
            order.append(type(e).__name__)
        else:
            order.append("stopped")
            break
    assert order == ["h1", "f0", "KeyboardInterrupt", "h2", "f1",
                     "SystemExit", "f2", "h3", "KeyboardInterrupt",
                     "stopped"]


def test_done_callback_runs_in_the_given_context(loop):
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    def body():
        fut = loop.create_future()
        ctx = contextvars.copy_context()
        ctx.run(var.set, "given")
        fut.add_done_callback(lambda f: seen.append(var.get()), context=ctx)
        fut.add_done_callback(lambda f: seen.append(var.get()))
        var.set("later")
        fut.set_result(1)
        run_briefly(loop)

    # In a context of its own, so that the test leaves nothing set in the
    # thread's context.
    contextvars.copy_context().run(body)
    # The second was registered with a copy taken at add_done_callback.
    assert seen == ["given", "unset"]


def test_queued_callbacks_in_a_cycle_with_the_loop_are_collected(loop):
    class Holder:
        def method(self, fut):
            pass

    holder = Holder()
    holder.loop = loop          # the cycle: loop -> queue -> holder -> loop
    probe = weakref.ref(holder)
    fut = loop.create_future()
    fut.add_done_callback(holder.method)
    fut.set_result(holder)
    del holder, fut
    # Only the loop's ready queue holds the holder now.
    assert probe() is not None
    run_briefly(loop)           # the callback ran: the queue let go of it
    gc.collect()
    assert probe() is None


def test_close_releases_queued_callbacks(loop):
    class Holder:
        def method(self, fut):
            raise AssertionError("ran after close")

    holder = Holder()
    probe = weakref.ref(holder)
    fut = loop.create_future()
    fut.add_done_callback(holder.method)
    fut.set_result(None)
    del holder, fut
    assert probe() is not None
    loop.close()
    gc.collect()
    assert probe() is None


def test_unreachable_loop_with_queued_callbacks_is_collected(loop_factory):
    class Holder:
        def method(self, fut):
            pass

    lp = loop_factory()
    holder = Holder()
    holder.loop = lp
    probe = weakref.ref(holder)
    fut = lp.create_future()
    fut.add_done_callback(holder.method)
    fut.set_result(None)
    lp_probe = weakref.ref(lp)
    del holder, fut, lp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
        gc.collect()
    assert probe() is None and lp_probe() is None


class _Records(logging.Handler):
    """The records of one logger while the block runs (a handler of the
    test's own, so that repeated runs of the test keep nothing)."""

    def __init__(self, name):
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(name)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def __enter__(self):
        self.logger.addHandler(self)
        return self.records

    def __exit__(self, *exc):
        self.logger.removeHandler(self)


def test_tornado_add_callback_failure_and_context(impl):
    # add_callback(cb) and add_callback(cb, arg) return nothing; a failure
    # is logged on tornado.application naming the partial Tornado builds;
    # the callback runs in a copy of the context add_callback was called
    # in; a returned coroutine is awaited.
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    def boom(arg):
        raise ValueError(arg)

    def record(tag):
        seen.append((tag, var.get()))

    async def later():
        seen.append(("awaited", var.get()))
        io.stop()

    def body():
        var.set("at add")
        assert io.add_callback(boom, "the arg") is None
        assert io.add_callback(record, "one") is None
        assert io.add_callback(lambda: later()) is None
        var.set("after add")
        io.start()
        # The awaited coroutine's Task finished while the loop stopped;
        # its done callbacks (Tornado's bookkeeping of pending tasks) run
        # now, so that the test leaves nothing behind.
        io.run_sync(lambda: impl.gen.sleep(0.001))

    io = impl.ioloop.IOLoop(make_current=False)
    try:
        # In a context of its own: the test leaves nothing set in the
        # thread's context.
        with _Records("tornado.application") as records:
            contextvars.copy_context().run(body)
    finally:
        io.close(all_fds=True)
    assert seen == [("one", "at add"), ("awaited", "at add")]
    [rec] = records
    assert rec.getMessage().startswith("Exception in callback functools.partial(")
    assert "boom" in rec.getMessage() and "'the arg'" in rec.getMessage()
    assert isinstance(rec.exc_info[1], ValueError)
