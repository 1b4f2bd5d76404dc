"""Futures: ``tornado_cgen.concurrent``, Tornado 6's ``tornado.concurrent``.

``Future`` is the C type from ``tornado_cgen._core``: asyncio's rules (and
asyncio code accepts it), plus Tornado 4's ``exc_info()``/``set_exc_info()``.
The helpers below follow Tornado 6.x; they accept our Future, asyncio's and
``concurrent.futures.Future`` alike.
"""
import asyncio
import concurrent.futures
import functools
import sys
import types
from typing import Any, Callable, Optional, Tuple

from . import loop as _loop_layer
from ._core import Future
from .log import app_log

__all__ = [
    "Future",
    "FUTURES",
    "is_future",
    "chain_future",
    "future_set_result_unless_cancelled",
    "future_set_exception_unless_cancelled",
    "future_set_exc_info",
    "future_add_done_callback",
    "run_on_executor",
    "DummyExecutor",
    "dummy_executor",
    "ReturnValueIgnoredError",
]

FUTURES = (Future, asyncio.Future, concurrent.futures.Future)


class ReturnValueIgnoredError(Exception):
    # No longer used; kept for compatibility (as in Tornado 6).
    pass


def is_future(x: Any) -> bool:
    """True for our Future, asyncio's, and ``concurrent.futures``'s."""
    return isinstance(x, FUTURES)


class DummyExecutor(concurrent.futures.Executor):
    """An executor that runs the function at once, in the calling thread."""

    def submit(self, fn, *args, **kwargs):
        future = concurrent.futures.Future()
        try:
            future_set_result_unless_cancelled(future, fn(*args, **kwargs))
        except Exception:
            future_set_exc_info(future, sys.exc_info())
        return future

    if sys.version_info >= (3, 9):

        def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
            pass

    else:  # pragma: no cover

        def shutdown(self, wait: bool = True) -> None:
            pass


dummy_executor = DummyExecutor()


def run_on_executor(*args: Any, **kwargs: Any) -> Callable:
    """Decorator: run a method on ``self.executor``, returning a Future.

    Usable bare (``@run_on_executor``) or with an argument naming the
    executor attribute (``@run_on_executor(executor="_thread_pool")``).
    The returned Future is an asyncio-compatible one chained to the
    executor's ``concurrent.futures.Future``.
    """

    def run_on_executor_decorator(fn: Callable) -> Callable:
        executor = kwargs.get("executor", "executor")

        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            async_future = Future()
            conc_future = getattr(self, executor).submit(fn, self, *args, **kwargs)
            chain_future(conc_future, async_future)
            return async_future

        return wrapper

    if args and kwargs:
        raise ValueError("cannot combine positional and keyword args")
    if len(args) == 1:
        return run_on_executor_decorator(args[0])
    elif len(args) != 0:
        raise ValueError("expected 1 argument, got %d" % len(args))
    return run_on_executor_decorator


_NO_RESULT = object()


def chain_future(a, b) -> None:
    """Copy ``a``'s outcome into ``b`` when ``a`` finishes, unless ``b`` is
    already done (cancelled, typically); a cancelled ``a`` cancels ``b``
    (Tornado 6.6).  ``a`` may be a ``concurrent.futures.Future``; its
    outcome then reaches ``b`` on the current IOLoop's thread."""

    def copy(a) -> None:
        if b.done():
            return
        if a.cancelled():
            b.cancel()
            return
        if hasattr(a, "exc_info") and a.exc_info() is not None:
            future_set_exc_info(b, a.exc_info())
        else:
            a_exc = a.exception()
            if a_exc is not None:
                b.set_exception(a_exc)
            else:
                b.set_result(a.result())

    if isinstance(a, (Future, asyncio.Future)):
        future_add_done_callback(a, copy)
    else:
        # concurrent.futures.Future, whose callbacks run on the executor's
        # thread: IOLoop.add_future brings the copy to the loop's thread
        # (and refuses anything that is no future).
        _loop_layer._current_ioloop().add_future(a, copy)


def future_set_result_unless_cancelled(future, value: Any) -> None:
    """``future.set_result(value)`` unless the future was cancelled."""
    if not future.cancelled():
        future.set_result(value)


def future_set_exception_unless_cancelled(future, exc: BaseException) -> None:
    """``future.set_exception(exc)`` unless the future was cancelled, in
    which case the exception is logged ("Exception after Future was
    cancelled")."""
    if not future.cancelled():
        future.set_exception(exc)
    else:
        app_log.error("Exception after Future was cancelled", exc_info=exc)


def future_set_exc_info(future, exc_info: Tuple[Optional[type], Optional[BaseException], Optional[types.TracebackType]]) -> None:
    """Set ``exc_info[1]`` as the future's exception (logged, not set, if the
    future was cancelled)."""
    if exc_info[1] is None:
        raise Exception("future_set_exc_info called with no exception")
    future_set_exception_unless_cancelled(future, exc_info[1])


def future_add_done_callback(future, callback: Callable) -> None:
    """Call ``callback(future)`` when the future is done: **at once** if it
    already is (unlike ``add_done_callback``, which schedules it)."""
    if future.done():
        callback(future)
    else:
        future.add_done_callback(callback)
