"""Coroutines: ``tornado_cgen.gen``, Tornado's ``tornado.gen`` on a C Runner.

``coroutine``, the Runner that drives it and ``multi`` live in the C
extension (``ext/runner.c``); this module holds the cold paths: the
exception types, ``convert_yielded``'s registry, timeouts, ``WaitIterator``
and Tornado 4's ``Task``/``Arguments``.

Semantics are Tornado 6.6's (plus ``Task``/``Arguments`` from Tornado 4):

* the body of a decorated function runs synchronously to its first
  ``yield``; a done future resumes it at once, ``None``/``moment`` gives up
  exactly one loop iteration, lists and dicts go through ``multi``;
* ``Return(x)``/``return x`` set the result, an ``Exception`` goes on the
  Future, a ``BaseException`` reaches the caller (or the loop);
* a cancelled future that the coroutine waits on throws ``CancelledError``
  into it; if that escapes, the coroutine's Future is cancelled.

Timers (``sleep``, ``with_timeout``) are ``IOLoop.current()``'s, as in
Tornado: they work on ``tornado_cgen``'s loop and on any other asyncio loop
(the default one, uvloop), with Tornado's callback rules on each.  This
module sits below ``tornado_cgen.ioloop`` and reaches the IOLoop through
``tornado_cgen.loop``'s registration, not an import.
"""
import asyncio
import collections
import concurrent.futures
import datetime
import functools
import sys
from inspect import isawaitable
from typing import Any, Callable

from . import _core
from .loop import _current_ioloop
from .concurrent import (
    Future,
    chain_future,
    future_add_done_callback,
    future_set_exc_info,
    future_set_result_unless_cancelled,
    is_future,
)
from .log import app_log

__all__ = [
    "coroutine",
    "is_coroutine_function",
    "Return",
    "Task",
    "Arguments",
    "multi",
    "Multi",
    "multi_future",
    "maybe_future",
    "with_timeout",
    "sleep",
    "moment",
    "WaitIterator",
    "convert_yielded",
    "BadYieldError",
    "TimeoutError",
    "Runner",
]


class BadYieldError(Exception):
    """A coroutine yielded something that is not a future, a list or dict of
    them, an awaitable, ``None`` or ``moment``."""


# Tornado >= 6.2: gen.TimeoutError is asyncio's (the builtin on 3.11+).
TimeoutError = asyncio.TimeoutError


class Return(Exception):
    """``raise gen.Return(value)``: the pre-Python-3.3 spelling of ``return
    value`` in a coroutine.  An ``Exception``, not a ``StopIteration``, so
    PEP 479 leaves it alone; ``.args`` holds the value too (Cython)."""

    def __init__(self, value: Any = None) -> None:
        super().__init__()
        self.value = value
        self.args = (value,)


class _NullFuture:
    """A done "future" with result None that is not a real Future: the
    type of ``moment``.  Making one touches no event loop, so importing this
    module never does either."""

    def __init__(self, name: str) -> None:
        self._name = name

    def result(self) -> None:
        return None

    def done(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "<tornado_cgen.gen.%s>" % self._name


_null_future = _NullFuture("_null_future")

moment = _NullFuture("moment")
moment.__doc__ = """Yield ``gen.moment`` (or ``None``) to let the loop run
one iteration before the coroutine goes on."""


Arguments = collections.namedtuple("Arguments", ["args", "kwargs"])
Arguments.__doc__ = """Tornado 4: what a ``Task`` callback's future holds
when the callback got more than one positional argument or any keyword."""


# ---- coroutines -----------------------------------------------------------


def coroutine(func: Callable) -> Callable:
    """Decorator: ``func`` (a generator function, or a plain one) becomes a
    coroutine returning a ``Future``.

    The wrapper is a C callable carrying ``functools.wraps`` attributes,
    ``__wrapped__`` and ``__tornado_coroutine__ = True``; it works as a
    method too.
    """
    wrapper = _core.Coroutine(func)
    functools.update_wrapper(wrapper, func)
    wrapper.__tornado_coroutine__ = True
    return wrapper


def is_coroutine_function(func: Any) -> bool:
    """True if ``func`` was decorated with ``coroutine``."""
    return getattr(func, "__tornado_coroutine__", False)


Runner = _core.Runner


# ---- convert_yielded ------------------------------------------------------


def _wrap_awaitable(awaitable: Any) -> "asyncio.Future":
    # A Task that the IOLoop holds until it is done (asyncio holds tasks
    # only weakly), as Tornado >= 6.4 does.
    fut = asyncio.ensure_future(awaitable)
    io_loop = _current_ioloop()
    io_loop._register_task(fut)
    fut.add_done_callback(lambda f: io_loop._unregister_task(f))
    return fut


def _wrap_concurrent(future: concurrent.futures.Future) -> "asyncio.Future":
    # The Runner resumes on the loop thread: an asyncio future of the
    # running loop that copies the outcome across.
    return asyncio.wrap_future(future)


def _convert_yielded(yielded: Any) -> Any:
    if yielded is None or yielded is moment:
        return moment
    if yielded is _null_future:
        return _null_future
    if isinstance(yielded, (list, dict)):
        return multi(yielded)
    if is_future(yielded):
        return yielded
    if isawaitable(yielded):
        return _wrap_awaitable(yielded)
    raise BadYieldError("yielded unknown object %r" % (yielded,))


_convert_dispatch = functools.singledispatch(_convert_yielded)

convert_yielded = _core.ConvertYielded(_convert_dispatch)
functools.update_wrapper(convert_yielded, _convert_yielded)
convert_yielded.__name__ = convert_yielded.__qualname__ = "convert_yielded"
convert_yielded.__doc__ = """Convert a yielded object to something the Runner can wait on:
``None``/``moment`` -> ``moment``, a list or dict -> ``multi(...)``, a
future -> itself, an awaitable -> an asyncio Task; anything else raises
``BadYieldError``.

Extend it like a ``functools.singledispatch`` function:
``@convert_yielded.register(SomeType)`` teaches coroutines to yield
``SomeType`` (``.dispatch`` and ``.registry`` work too).  Exact futures,
lists, dicts and ``None`` take C fast paths that never dispatch; the C
Runner consults the registry for every other type.
"""

def _setup_core(others=None):
    """Hand the C Runner this module's objects.  ``others`` (Tornado's
    ``tornado.gen``, after ``uninstall()``) has its ``Return``, ``moment``
    and ``_null_future`` recognised as well, for the coroutines decorated
    while ``install()`` was on."""
    if others is None:
        _core._gen_setup(Return, moment, _null_future, _convert_dispatch,
                         _wrap_concurrent, _wrap_awaitable)
    else:
        _core._gen_setup((Return, others.Return), moment, _null_future,
                         _convert_dispatch, _wrap_concurrent, _wrap_awaitable,
                         others.moment, others._null_future)


_setup_core()


# ---- multi ----------------------------------------------------------------

multi = _core.multi

Multi = multi


def multi_future(children: Any, quiet_exceptions: Any = ()) -> Future:
    """The same as ``multi`` (kept for Tornado < 4.3 callers)."""
    return multi(children, quiet_exceptions)


def maybe_future(x: Any) -> Any:
    """``x`` if it is a future, else a done Future holding ``x``."""
    if is_future(x):
        return x
    fut = Future()
    fut.set_result(x)
    return fut


# ---- timers ----------------------------------------------------------------


def sleep(duration: float) -> Future:
    """A Future that resolves (to None) after ``duration`` seconds."""
    f = Future()
    _current_ioloop().call_later(
        duration, lambda: future_set_result_unless_cancelled(f, None))
    return f


def with_timeout(
    timeout: "float | datetime.timedelta",
    future: Any,
    quiet_exceptions: Any = (),
    *,
    message: "str | Callable[[], str] | None" = None,
) -> Future:
    """A Future with ``future``'s outcome, or ``TimeoutError`` once
    ``timeout`` passes: anything ``IOLoop.add_timeout`` takes (an absolute
    ``IOLoop.time()`` or a ``datetime.timedelta`` from now).  ``message``
    (a string, or a callable called only on timeout) is the error's
    message.

    ``future`` (any yieldable) is not cancelled on timeout; if it fails
    later its exception is logged ("Exception in Future %r after timeout")
    unless it is an instance of ``quiet_exceptions`` or a
    ``CancelledError``.  The timer is the current IOLoop's, so whatever it
    raises is logged as an IOLoop callback's is, on any loop.
    """
    converted = convert_yielded(future)
    result = Future()
    chain_future(converted, result)
    io_loop = _current_ioloop()

    def error_callback(f: Any) -> None:
        try:
            f.result()
        except asyncio.CancelledError:
            pass
        except Exception as e:
            if not isinstance(e, quiet_exceptions):
                app_log.error(
                    "Exception in Future %r after timeout", f, exc_info=True
                )

    def timeout_callback() -> None:
        if not result.done():
            if message is None:
                msg = "Timeout"
            elif callable(message):
                msg = message()
            else:
                msg = message
            result.set_exception(TimeoutError(msg))
        # Should the wrapped future fail later, log it.
        future_add_done_callback(converted, error_callback)

    handle = io_loop.add_timeout(timeout, timeout_callback)
    if isinstance(converted, (Future, asyncio.Future)):
        future_add_done_callback(
            converted, lambda f: io_loop.remove_timeout(handle))
    else:
        # A concurrent.futures.Future finishes on another thread: back to
        # the loop's first.
        io_loop.add_future(converted, lambda f: io_loop.remove_timeout(handle))
    return result


# ---- WaitIterator -----------------------------------------------------------


class WaitIterator:
    """Results of several futures in the order they finish::

        it = gen.WaitIterator(f1, f2)
        while not it.done():
            try:
                result = yield it.next()
            except Exception as e:
                ...  # it.current_future failed
            else:
                ...  # it.current_index (or keyword) finished

    or ``async for result in gen.WaitIterator(...)`` (which stops at the
    first exception).  Futures are given positionally or by keyword, not
    both; the same future may be given more than once.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args and kwargs:
            raise ValueError("You must provide args or kwargs, not both")
        items = list(kwargs.items()) if kwargs else list(enumerate(args))
        # future -> the keys it was given under, in order
        self._unfinished: "dict[Any, collections.deque]" = {}
        for key, fut in items:
            self._unfinished.setdefault(fut, collections.deque()).append(key)
        self._finished: "collections.deque" = collections.deque()
        self.current_index: Any = None
        self.current_future: Any = None
        self._running_future: Any = None
        for _, fut in items:
            future_add_done_callback(fut, self._done_callback)

    def done(self) -> bool:
        """True once every result has been handed out."""
        if self._finished or self._unfinished:
            return False
        self.current_index = self.current_future = None
        return True

    def next(self) -> Future:
        """A new Future for the next result to come."""
        self._running_future = Future()
        if self._finished:
            return self._return_result(self._finished.popleft())
        return self._running_future

    def _done_callback(self, done: Any) -> None:
        if self._running_future is not None and not self._running_future.done():
            self._return_result(done)
        else:
            self._finished.append(done)

    def _return_result(self, done: Any) -> Future:
        res = self._running_future
        if res is None:
            raise Exception("no future is running")
        chain_future(done, res)
        self._running_future = None
        self.current_future = done
        keys = self._unfinished[done]
        self.current_index = keys.popleft()
        if not keys:
            del self._unfinished[done]
        return res

    def __aiter__(self) -> "WaitIterator":
        return self

    def __anext__(self) -> Future:
        if self.done():
            raise StopAsyncIteration()
        return self.next()


# ---- Tornado 4: Task ----------------------------------------------------------


def Task(func: Callable, *args: Any, **kwargs: Any) -> Future:
    """Tornado 4's adapter for callback-style functions.

    Calls ``func(*args, callback=cb, **kwargs)`` and returns a Future for
    what ``cb`` receives: no argument gives ``None``, one gives it, more (or
    any keyword) give ``Arguments(args, kwargs)``.  Only the first call of
    ``cb`` counts.  An exception raised by ``func`` itself goes into the
    Future (re-raised if ``cb`` was already called).  Tornado 4 also routed
    exceptions of callbacks that ``func`` scheduled through stack_context;
    there is no stack_context here, so those reach the loop instead.
    """
    future = Future()

    def set_result(value: Any) -> None:
        if not future.done():
            future.set_result(value)

    def callback(*cb_args: Any, **cb_kwargs: Any) -> None:
        if cb_kwargs or len(cb_args) > 1:
            set_result(Arguments(cb_args, cb_kwargs))
        elif cb_args:
            set_result(cb_args[0])
        else:
            set_result(None)

    try:
        func(*args, callback=callback, **kwargs)
    except Exception:
        if future.done():
            raise
        future_set_exc_info(future, sys.exc_info())
    return future
