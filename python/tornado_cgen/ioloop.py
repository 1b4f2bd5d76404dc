"""Tornado's face of the C event loop: ``IOLoop``, ``PeriodicCallback``.

``IOLoop()`` makes one object with both faces: it *is* a tornado_cgen
asyncio loop (``tornado_cgen.loop.Loop``, so ``asyncio.get_running_loop()``
inside it returns it and ``io_loop.asyncio_loop is io_loop``) and it has
Tornado 6's IOLoop methods.  The hot ones are C: ``add_callback`` (and
``spawn_callback``) push a handle on the ready ring from any thread,
``call_at``/``call_later``/``add_timeout`` push on the timer heap, handlers
added with ``add_handler`` are called straight from the readiness dispatch.

Where the two faces share a name, an IOLoop follows Tornado: ``call_later``
and ``call_at`` pass ``**kwargs`` to the callback and run it under
``IOLoop._run_callback``'s rules (Exceptions logged on
``tornado.application``, ``CancelledError`` ignored, a returned awaitable
awaited and its failure logged); ``close(all_fds=False)``.  ``time()`` is
the loop's monotonic clock (Tornado 6 returns ``time.time()`` but only ever
compares it with its own deadlines; asyncio code on this object needs the
clock ``call_at`` uses).  ``tornado_cgen.new_event_loop()`` gives the plain
asyncio face, with asyncio's rules for every method.

``IOLoop.current()`` inside a running loop that is not an IOLoop (asyncio's
default loop, uvloop, a plain tornado_cgen loop) returns a Tornado-style
wrapper, one per asyncio loop, as Tornado's ``AsyncIOMainLoop`` does; on a
plain tornado_cgen loop the wrapper still uses the C paths.

PYTEST_DONT_REWRITE: the ``assert`` statements here are Tornado's
semantics (an AssertionError with no message); pytest would rewrite
them in every module of a distribution that registers a plugin.
"""
import asyncio
import datetime
import functools
import inspect
import math
import numbers
import os
import random
import warnings
import weakref
from asyncio import events

from . import _core, gen
from . import loop as _loop_layer
from .concurrent import Future, future_add_done_callback, is_future
from .loop import Loop, _current_loop
from .log import app_log

__all__ = ["IOLoop", "PeriodicCallback", "TimeoutError"]

TimeoutError = asyncio.TimeoutError


class IOLoop:
    """Tornado's IOLoop.  ``IOLoop()`` is a new C loop (made current
    unless ``make_current=False``); ``IOLoop(asyncio_loop=loop)`` wraps an
    existing asyncio loop."""

    NONE = 0
    READ = 0x001
    WRITE = 0x004
    ERROR = 0x018

    # asyncio loop -> its IOLoop wrapper (our own IOLoops are their own).
    _ioloop_for_asyncio = weakref.WeakKeyDictionary()

    def __new__(cls, *args, **kwargs):
        if cls is IOLoop:
            if kwargs.get("asyncio_loop") is not None:
                cls = _AsyncIOWrapper
            else:
                cls = _CIOLoop
        return super().__new__(cls)

    # -- current loop ------------------------------------------------------

    @staticmethod
    def current(instance=True):
        """The IOLoop of the running asyncio loop, else of the thread's
        current loop; with neither, a new IOLoop made current (or None if
        ``instance`` is false)."""
        loop = _current_loop()
        if loop is not None and loop.is_closed():
            loop = None
        if loop is None:
            if not instance:
                return None
            return IOLoop()
        return IOLoop._for_asyncio(loop, instance)

    @staticmethod
    def _for_asyncio(loop, create=True):
        if isinstance(loop, IOLoop):
            return loop
        io = IOLoop._ioloop_for_asyncio.get(loop)
        if io is None and create and not loop.is_closed():
            io = _AsyncIOWrapper(asyncio_loop=loop, make_current=False)
        return io

    @staticmethod
    def instance():
        """Deprecated alias for `current()`."""
        return IOLoop.current()

    def install(self):
        """Deprecated alias for `make_current()`."""
        self.make_current()

    @staticmethod
    def clear_instance():
        """Deprecated alias for `clear_current()`."""
        IOLoop.clear_current()

    def make_current(self):
        warnings.warn("make_current is deprecated; start the event loop "
                      "first", DeprecationWarning, stacklevel=2)
        self._make_current()

    def _make_current(self):
        if not getattr(self, "_is_current", False):
            self._old_asyncio = _current_loop(running=False)
            self._is_current = True
        asyncio.set_event_loop(self.asyncio_loop)

    @staticmethod
    def clear_current():
        warnings.warn("clear_current is deprecated", DeprecationWarning,
                      stacklevel=2)
        IOLoop._clear_current()

    @staticmethod
    def _clear_current():
        old = IOLoop.current(instance=False)
        if old is not None:
            old._clear_current_hook()

    def _clear_current_hook(self):
        if getattr(self, "_is_current", False):
            self._is_current = False
            old = self._old_asyncio
            self._old_asyncio = None
            if old is not None and old.is_closed():
                old = None
            asyncio.set_event_loop(old)

    def _init_tornado(self, make_current):
        self.handlers = {}
        self._readers = set()
        self._writers = set()
        self._is_current = False
        self._old_asyncio = None
        if make_current:
            self._make_current()

    # -- handlers ----------------------------------------------------------

    def split_fd(self, fd):
        if isinstance(fd, int):
            return fd, fd
        return fd.fileno(), fd

    def close_fd(self, fd):
        try:
            if isinstance(fd, int):
                os.close(fd)
            else:
                fd.close()
        except OSError:
            pass

    def add_handler(self, fd, handler, events):
        """Call ``handler(fd_or_obj, event)`` when the fd is ready for
        ``events`` (``READ``/``WRITE``, or'ed)."""
        fd, fileobj = self.split_fd(fd)
        if fd in self.handlers:
            raise ValueError("fd %s added twice" % fd)
        # Recorded first and kept if the loop refuses the fd, as Tornado
        # does: the fd counts as added until remove_handler.
        self.handlers[fd] = (fileobj, handler)
        if events & IOLoop.READ:
            self.asyncio_loop.add_reader(fd, handler, fileobj, IOLoop.READ)
            self._readers.add(fd)
        if events & IOLoop.WRITE:
            self.asyncio_loop.add_writer(fd, handler, fileobj, IOLoop.WRITE)
            self._writers.add(fd)

    def update_handler(self, fd, events):
        fd, fileobj = self.split_fd(fd)
        entry = self.handlers.get(fd)
        if entry is None:
            # An fd add_handler was never given: Tornado watches it anyway
            # (so a bad fd fails as add_reader fails it) and fails with
            # KeyError in the loop once it is ready.
            entry = (fd, self._unknown_fd_ready)
        fileobj, handler = entry
        aloop = self.asyncio_loop
        if events & IOLoop.READ:
            if fd not in self._readers:
                aloop.add_reader(fd, handler, fileobj, IOLoop.READ)
                self._readers.add(fd)
        elif fd in self._readers:
            aloop.remove_reader(fd)
            self._readers.discard(fd)
        if events & IOLoop.WRITE:
            if fd not in self._writers:
                aloop.add_writer(fd, handler, fileobj, IOLoop.WRITE)
                self._writers.add(fd)
        elif fd in self._writers:
            aloop.remove_writer(fd)
            self._writers.discard(fd)

    def _unknown_fd_ready(self, fd, events):
        fileobj, handler = self.handlers[fd]
        handler(fileobj, events)

    def remove_handler(self, fd):
        """Stop watching ``fd``; an fd that is not watched is ignored."""
        fd, fileobj = self.split_fd(fd)
        if fd not in self.handlers:
            return
        aloop = self.asyncio_loop
        if fd in self._readers:
            if not aloop.is_closed():
                aloop.remove_reader(fd)
            self._readers.discard(fd)
        if fd in self._writers:
            if not aloop.is_closed():
                aloop.remove_writer(fd)
            self._writers.discard(fd)
        del self.handlers[fd]

    def _close_handlers(self, all_fds):
        for fd in list(self.handlers):
            fileobj, _ = self.handlers[fd]
            self.remove_handler(fd)
            if all_fds:
                self.close_fd(fileobj)

    # -- running -----------------------------------------------------------

    def start(self):
        self.asyncio_loop.run_forever()

    def run_sync(self, func, timeout=None):
        """Start the loop, run ``func`` (its result converted as a yielded
        value), stop when that finishes and return its result.  After
        ``timeout`` seconds the future is cancelled and TimeoutError
        raised."""
        # func's future, and whether the timeout fired.  Where func raised
        # a BaseException (which the loop reports), there is no future:
        # the asserts fail then, as Tornado's do.
        state = {"future": None, "timed_out": False}

        def run():
            try:
                result = func()
                if result is not None:
                    result = gen.convert_yielded(result)
            except Exception as e:
                fut = Future()
                state["future"] = fut
                fut.set_exception(e)
            else:
                if is_future(result):
                    state["future"] = result
                else:
                    fut = Future()
                    state["future"] = fut
                    fut.set_result(result)
            assert state["future"] is not None
            self.add_future(state["future"], lambda f: self.stop())

        self.add_callback(run)
        if timeout is not None:
            def on_timeout():
                state["timed_out"] = True
                assert state["future"] is not None
                if not state["future"].cancel():
                    self.stop()
            handle = self.add_timeout(self.time() + timeout, on_timeout)
        self.start()
        if timeout is not None:
            self.remove_timeout(handle)
        fut = state["future"]
        assert fut is not None
        if fut.cancelled() or not fut.done():
            if state["timed_out"]:
                raise TimeoutError(
                    "Operation timed out after %s seconds" % timeout)
            raise RuntimeError("Event loop stopped before Future completed.")
        return fut.result()

    # -- what the concrete classes provide --------------------------------
    # Written for an IOLoop over another asyncio loop (_AsyncIOWrapper);
    # _CIOLoop replaces them with the C loop's own methods.

    _c = None   # the tornado_cgen loop underneath, for its C paths

    def time(self):
        return self.asyncio_loop.time()

    def stop(self):
        self.asyncio_loop.stop()

    def add_callback(self, callback, *args, **kwargs):
        """Schedule ``callback(*args, **kwargs)`` on the next iteration.
        Safe from any thread; dropped quietly once the loop is closed."""
        if self._c is not None:
            return self._c._tornado_add_callback(callback, *args, **kwargs)
        aloop = self.asyncio_loop
        if events._get_running_loop() is aloop:
            call_soon = aloop.call_soon
        else:
            call_soon = aloop.call_soon_threadsafe
        try:
            call_soon(self._run_callback,
                      functools.partial(callback, *args, **kwargs))
        except (RuntimeError, AttributeError):
            pass  # the loop is closed: dropped, as Tornado does

    def call_at(self, when, callback, *args, **kwargs):
        if kwargs:
            callback = functools.partial(callback, *args, **kwargs)
            args = ()
        if self._c is not None:
            return self._c._tornado_call_at(when, callback, *args)
        return self.asyncio_loop.call_later(
            max(0, when - self.time()), self._run_callback,
            functools.partial(callback, *args))

    def close(self, all_fds=False):
        if self._is_current:
            self._clear_current_hook()
        self._close_handlers(all_fds)
        IOLoop._ioloop_for_asyncio.pop(self.asyncio_loop, None)
        self.asyncio_loop.close()

    def run_in_executor(self, executor, func, *args):
        return self.asyncio_loop.run_in_executor(executor, func, *args)

    def set_default_executor(self, executor):
        return self.asyncio_loop.set_default_executor(executor)



    # -- callbacks, timeouts, futures -------------------------------------

    def add_timeout(self, deadline, callback, *args, **kwargs):
        """Run ``callback`` at ``deadline``: a time on `time()`'s clock or a
        ``datetime.timedelta`` from now.  Returns a handle for
        `remove_timeout`."""
        if isinstance(deadline, numbers.Real):
            return self.call_at(deadline, callback, *args, **kwargs)
        if isinstance(deadline, datetime.timedelta):
            return self.call_at(self.time() + deadline.total_seconds(),
                                callback, *args, **kwargs)
        raise TypeError("Unsupported deadline %r" % deadline)  # sic: Tornado's

    def call_later(self, delay, callback, *args, **kwargs):
        return self.call_at(self.time() + delay, callback, *args, **kwargs)

    def remove_timeout(self, timeout):
        """Cancel a timeout; safe after it ran."""
        timeout.cancel()

    def add_callback_from_signal(self, callback, *args, **kwargs):
        # No stacklevel, as Tornado: the warning is this module's.
        warnings.warn("add_callback_from_signal is deprecated",
                      DeprecationWarning)
        self.add_callback(callback, *args, **kwargs)

    def spawn_callback(self, callback, *args, **kwargs):
        self.add_callback(callback, *args, **kwargs)

    def add_future(self, future, callback):
        """Schedule ``callback(future)`` on this loop once ``future`` is
        done (never inline)."""
        if isinstance(future, (Future, asyncio.Future)):
            future.add_done_callback(
                lambda f: self._run_callback(functools.partial(callback, f)))
        else:
            assert is_future(future)
            # concurrent.futures.Future: add_callback is thread-safe, so it
            # may run inline in whichever thread finishes the future.
            future_add_done_callback(
                future, lambda f: self.add_callback(callback, f))

    def _run_callback(self, callback):
        try:
            ret = callback()
            if ret is not None:
                self._tornado_callback_result(ret)
        except asyncio.CancelledError:
            pass
        except Exception:
            app_log.error("Exception in callback %r", callback, exc_info=True)

    def _tornado_callback_result(self, ret):
        # What _run_callback does with a non-None result: an awaitable is
        # awaited so that its failure is logged; anything else is ignored.
        try:
            ret = gen.convert_yielded(ret)
        except gen.BadYieldError:
            return
        self.add_future(ret, self._discard_future_result)

    def _discard_future_result(self, future):
        future.result()

    def _register_task(self, f):
        # tornado.gen keeps tasks it creates alive through the IOLoop.
        self._pending_tasks.add(f)

    def _unregister_task(self, f):
        self._pending_tasks.discard(f)

    _pending_tasks = set()


class _CIOLoop(IOLoop, Loop):
    """An IOLoop that is itself the C loop (what ``IOLoop()`` returns)."""

    def __init__(self, make_current=True):
        Loop.__init__(self)
        self._init_tornado(make_current)

    @property
    def asyncio_loop(self):
        return self

    # The C loop's own methods (IOLoop's generic ones would shadow them).
    add_callback = _core.Loop._tornado_add_callback
    spawn_callback = _core.Loop._tornado_add_callback
    time = _core.Loop.time
    stop = _core.Loop.stop
    run_in_executor = Loop.run_in_executor
    set_default_executor = Loop.set_default_executor

    # Tornado's timer methods, in C.
    call_at = _core.Loop._tornado_call_at
    call_later = _core.Loop._tornado_call_later
    remove_timeout = _core.Loop._tornado_remove_timeout

    def close(self, all_fds=False):
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._is_current:
            self._clear_current_hook()
        self._close_handlers(all_fds)
        Loop.close(self)

    def __repr__(self):
        return "<%s running=%s closed=%s debug=%s>" % (
            "IOLoop", self.is_running(), self.is_closed(), self.get_debug())


class _AsyncIOWrapper(IOLoop):
    """Tornado's face over another asyncio loop (asyncio's default loop,
    uvloop, a plain tornado_cgen loop), one per asyncio loop."""

    def __init__(self, asyncio_loop, make_current=True):
        self.asyncio_loop = asyncio_loop
        for loop in list(IOLoop._ioloop_for_asyncio):
            if loop.is_closed():
                IOLoop._ioloop_for_asyncio.pop(loop, None)
        existing = IOLoop._ioloop_for_asyncio.setdefault(asyncio_loop, self)
        if existing is not self:
            raise RuntimeError("IOLoop %r already associated with asyncio "
                               "loop %r" % (existing, asyncio_loop))
        # On our own loop, use its C paths directly.
        self._c = asyncio_loop if isinstance(asyncio_loop, _core.Loop) \
            else None
        self._init_tornado(make_current)


class PeriodicCallback:
    """Call ``callback`` every ``callback_time`` (milliseconds, or a
    ``timedelta``), with optional ``jitter`` (a fraction of the period).
    Runs that are missed because a call overran are skipped; a callback
    that returns an awaitable is awaited before the next run is
    scheduled.  `start` binds it to `IOLoop.current()`."""

    def __init__(self, callback, callback_time, jitter=0):
        self.callback = callback
        if isinstance(callback_time, datetime.timedelta):
            self.callback_time = (callback_time
                                  / datetime.timedelta(milliseconds=1))
        else:
            if callback_time <= 0:
                raise ValueError(
                    "Periodic callback must have a positive callback_time")
            self.callback_time = callback_time
        self.jitter = jitter
        self._running = False
        self._timeout = None

    def start(self):
        self.io_loop = IOLoop.current()
        self._running = True
        self._next_timeout = self.io_loop.time()
        self._schedule_next()

    def stop(self):
        self._running = False
        if self._timeout is not None:
            self.io_loop.remove_timeout(self._timeout)
            self._timeout = None

    def is_running(self):
        return self._running

    async def _run(self):
        # A coroutine, as Tornado's: the IOLoop runs it as a Task (the
        # callback sees a current task, a loop step after its timer), and
        # the next run is scheduled whatever the callback raises.
        if not self._running:
            return
        try:
            val = self.callback()
            if val is not None and inspect.isawaitable(val):
                await val
        except Exception:
            app_log.error("Exception in callback %r", self.callback,
                          exc_info=True)
        finally:
            self._schedule_next()

    def _schedule_next(self):
        if self._running:
            self._update_next(self.io_loop.time())
            self._timeout = self.io_loop.add_timeout(self._next_timeout,
                                                     self._run)

    def _update_next(self, current_time):
        period = self.callback_time / 1000.0
        if self.jitter:
            period *= 1 + (self.jitter * (random.random() - 0.5))
        if self._next_timeout <= current_time:
            # Skip the runs we missed, keeping to the schedule.
            self._next_timeout += (math.floor(
                (current_time - self._next_timeout) / period) + 1) * period
        else:
            # The clock went backwards: just move one period on.
            self._next_timeout += period


# The layers below this one (loop, concurrent, gen) reach the IOLoop here.
_loop_layer._ioloop_setup(IOLoop)
