"""asyncio's face of the C event loop.

``Loop`` puts the C core (``tornado_cgen._core.Loop``: ready ring, timer
heap, epoll or poll readiness, waker, the iteration itself) under the stdlib's
``SelectorEventLoop``: every socket, server, pipe, subprocess, TLS and
signal method is the stdlib's own, and the reader/writer hooks those
transports call (``_add_reader`` & co.) are C.  What is defined here is the
cold glue: once-per-run setup around the C loop, closing, and the few
private hooks the stdlib code expects from a selector loop.

Scheduling, timers and readiness dispatch never pass through this file.

It is also the bottom of the package's Python layers (``loop`` <-
``concurrent`` <- ``gen`` <- ``ioloop``; no module imports one above it).
``_current_loop()`` is the package's one lookup of "the current loop"
(``IOLoop.current()`` is built on it), and ``tornado_cgen.ioloop``
registers its ``IOLoop`` here (``_ioloop_setup``) for the layers below that
need it (``_current_ioloop()``: chain_future, sleep, with_timeout), as
``tornado_cgen.gen`` registers itself with ``_core._gen_setup``.
"""
import asyncio
import collections
import functools
import selectors
import sys
import threading
import warnings
import weakref
from asyncio import (base_events, events, selector_events, transports,
                     unix_events)

from . import _core

__all__ = ["Loop", "new_event_loop", "EventLoopPolicy", "run"]

_SelectorKey = selectors.SelectorKey


class _SelectorView:
    """Just enough of a selector for the stdlib's transport reprs and tests
    (``get_key``, ``get_map``): the C core holds the real registrations."""

    __slots__ = ("_loop",)

    def __init__(self, loop):
        self._loop = weakref.ref(loop)

    def get_key(self, fileobj):
        loop = self._loop()
        key = loop._fd_key(fileobj) if loop is not None else None
        if key is None:
            raise KeyError(f"{fileobj!r} is not registered")
        events_, reader, writer = key
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        return _SelectorKey(fileobj, fd, events_, (reader, writer))

    def get_map(self):
        return _MapView(self)

    def close(self):
        pass


class _MapView(collections.abc.Mapping):
    __slots__ = ("_sel",)

    def __init__(self, sel):
        self._sel = sel

    def __getitem__(self, fileobj):
        return self._sel.get_key(fileobj)

    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0


_SST = selector_events._SelectorSocketTransport
_BaseSelector = selector_events.BaseSelectorEventLoop


class _TransportSlots(transports._FlowControlMixin):
    """The attributes of the stdlib's socket transport that its C methods
    read, as slots: the stdlib's code reads and sets them by name as
    before, the C code reads them as struct fields."""

    __slots__ = ("_sock", "_sock_fd", "_protocol", "_conn_lost", "_eof",
                 "_empty_waiter", "_buffer", "_read_ready_cb", "_max_size")

    @property
    def max_size(self):
        """The most one read takes: the stdlib's class value, unless set on
        this transport."""
        try:
            return self._max_size
        except AttributeError:
            return super().max_size

    @max_size.setter
    def max_size(self, value):
        self._max_size = value

    @max_size.deleter
    def max_size(self):
        del self._max_size


_core.TransportMethod.register_slots(_TransportSlots, _SST)


class _SocketTransport(_TransportSlots, _SST):
    """The stdlib's socket transport, with its hot paths in C.

    Every method and attribute is the stdlib's but four, which are
    ``_core.TransportMethod`` descriptors (``ext/transport.c``) over the
    stdlib's functions: ``_read_ready`` and ``_read_ready__data_received``
    (the read and the ``protocol.data_received()`` call: a ``recv()`` into
    a buffer the C module keeps, then a copy of just what came, where the
    stdlib's ``recv(max_size)`` allocates 256 KiB per read, which glibc
    serves with three more system calls), ``_read_ready__get_buffer``
    (a ``BufferedProtocol``'s read, into its own buffer), and ``write``
    (the first ``send()`` when nothing is queued).  Everything else, and every case
    those take no shortcut for (another socket type, a queued buffer,
    memoryviews, errors the stdlib raises), is the stdlib's own code.
    """

    _read_ready = _core.TransportMethod("_read_ready", _SST._read_ready)
    _read_ready__data_received = _core.TransportMethod(
        "_read_ready__data_received", _SST._read_ready__data_received)
    _read_ready__get_buffer = _core.TransportMethod(
        "_read_ready__get_buffer", _SST._read_ready__get_buffer)
    write = _core.TransportMethod("write", _SST.write)

    def __init__(self, *args, **kwargs):
        # The stdlib's class attribute _sock = None, which its __del__
        # reads when __init__ failed early: a slot has no class default.
        self._sock = None
        super().__init__(*args, **kwargs)


def _run_foreign_handle(handle):
    # An asyncio.Handle given to _add_callback (signal handlers): asyncio
    # skips it if it was cancelled meanwhile.
    if not handle._cancelled:
        handle._run()


class Loop(_core.Loop, unix_events.SelectorEventLoop):
    """An asyncio event loop whose scheduling, timers and I/O readiness are
    C.  Use it like ``asyncio.SelectorEventLoop``."""

    def __init__(self):
        # The stdlib's own initialisation, whatever the Python version adds
        # to it, with a view of the C registrations as the "selector".  The
        # self-pipe it makes carries signal numbers (signal.set_wakeup_fd);
        # other threads wake the loop through the C core's own waker.
        unix_events.SelectorEventLoop.__init__(self, _SelectorView(self))

    def _make_socket_transport(self, sock, protocol, waiter=None, *,
                               extra=None, server=None):
        return _SocketTransport(self, sock, protocol, waiter, extra, server)

    # -- sock_recv, sock_recv_into, sock_sendall ---------------------------
    # The stdlib's coroutines, step for step, but for their first try at
    # the socket call: _core's returns None where the call would raise
    # BlockingIOError (an exception for every wait, otherwise), and makes
    # the call itself for a plain non-blocking socket.  Waiting is the
    # stdlib's own callbacks (_sock_recv, _sock_read_done, ...).

    def _sock_check(self, sock):
        base_events._check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    def _sock_wait(self, sock, add, callback, done, *args):
        fut = self.create_future()
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = add(fd, callback, fut, sock, *args)
        fut.add_done_callback(functools.partial(done, fd, handle=handle))
        return fut

    async def sock_recv(self, sock, n):
        self._sock_check(sock)
        data = _core._sock_recv(sock, n)
        if data is not None:
            return data
        return await self._sock_wait(sock, self._add_reader, self._sock_recv,
                                     self._sock_read_done, n)

    async def sock_recv_into(self, sock, buf):
        self._sock_check(sock)
        nbytes = _core._sock_recv_into(sock, buf)
        if nbytes is not None:
            return nbytes
        return await self._sock_wait(sock, self._add_reader,
                                     self._sock_recv_into,
                                     self._sock_read_done, buf)

    async def sock_sendall(self, sock, data):
        self._sock_check(sock)
        n = _core._sock_send(sock, data)
        if n is None:
            n = 0
        if n == len(data):
            return
        # The stdlib's writer callback keeps the count sent so far in a
        # one-item list.
        return await self._sock_wait(sock, self._add_writer,
                                     self._sock_sendall,
                                     self._sock_write_done,
                                     memoryview(data), [n])

    sock_recv.__doc__ = _BaseSelector.sock_recv.__doc__
    sock_recv_into.__doc__ = _BaseSelector.sock_recv_into.__doc__
    sock_sendall.__doc__ = _BaseSelector.sock_sendall.__doc__

    # -- running -----------------------------------------------------------

    def run_forever(self):
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_hooks = sys.get_asyncgen_hooks()
        try:
            sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                                   finalizer=self._asyncgen_finalizer_hook)
            events._set_running_loop(self)
            self._run_forever_core()
        finally:
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_hooks)

    def _run_once(self):
        # One iteration (BaseEventLoop's name, used by some test helpers).
        self._check_closed()
        self._check_running()
        events._set_running_loop(self)
        try:
            _core.Loop._run_once(self)
        finally:
            events._set_running_loop(None)

    def _log_slow_callback(self, handle):
        # Debug mode: run one handle, timing it, as BaseEventLoop does.
        self._current_handle = handle
        try:
            t0 = self.time()
            handle._run()
            dt = self.time() - t0
            if dt >= self.slow_callback_duration:
                base_events.logger.warning(
                    "Executing %s took %.3f seconds",
                    base_events._format_handle(handle), dt)
        finally:
            self._current_handle = None

    def _tornado_callback_result(self, ret):
        # A Tornado-style handle (scheduled through IOLoop.current()'s
        # wrapper of this loop, or under install() Tornado's IOLoop)
        # returned ``ret``: IOLoop._run_callback's rules apply.  (An IOLoop
        # that is this loop overrides this.)
        hook = _tornado_result_hook
        if hook is not None and hook(self, ret):
            return
        _registered_ioloop()._for_asyncio(self)._tornado_callback_result(ret)

    # -- closing -----------------------------------------------------------

    def close(self):
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        try:
            unix_events.SelectorEventLoop.close(self)
        finally:
            self._close_core()

    # -- what BaseSelectorEventLoop would get from its selector or pipe ----

    def _write_to_self(self):
        self._wakeup()

    def _add_callback(self, handle):
        if not handle._cancelled:
            self.call_soon(_run_foreign_handle, handle)

    def _add_callback_signalsafe(self, handle):
        self._add_callback(handle)

    def _process_events(self, event_list):
        # The selector loop's hook: never reached, since _run_once is the C
        # core's and it dispatches readiness itself.
        raise RuntimeError("tornado_cgen's loop has no selector events to "
                           "process: the C core dispatches I/O readiness")

    def _timer_handle_cancelled(self, handle):
        pass


# -- the current loop, and the IOLoop above this layer --------------------

def _current_loop(running=True):
    """The running loop (unless ``running`` is false), else the loop set
    for this thread (``asyncio.set_event_loop``), else None.  Unlike
    ``asyncio.get_event_loop()`` it never creates a loop or warns."""
    if running:
        loop = events._get_running_loop()
        if loop is not None:
            return loop
    policy = events.get_event_loop_policy()
    local = getattr(policy, "_local", None)
    if local is not None and hasattr(local, "_loop"):
        return local._loop    # the stdlib's policies (uvloop's too)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return policy.get_event_loop()
    except RuntimeError:
        return None


_IOLoop = None

# install(): Tornado's IOLoop._run_callback rules for what a callback
# returns, hook(loop, ret) -> True when it handled it.
_tornado_result_hook = None


def _ioloop_setup(ioloop_class):
    """Used once by tornado_cgen.ioloop: register its IOLoop class."""
    global _IOLoop
    _IOLoop = ioloop_class


def _registered_ioloop():
    # The package imports tornado_cgen.ioloop, so this is set before any
    # program code runs.
    if _IOLoop is None:
        raise RuntimeError("tornado_cgen.ioloop has not registered its "
                           "IOLoop (import tornado_cgen first)")
    return _IOLoop


def _current_ioloop():
    """``IOLoop.current()``, for the modules below tornado_cgen.ioloop."""
    return _registered_ioloop().current()


def new_event_loop():
    """A new tornado_cgen event loop (like ``uvloop.new_event_loop``)."""
    return Loop()


class EventLoopPolicy(unix_events.DefaultEventLoopPolicy):
    """An event loop policy whose loops are tornado_cgen loops."""

    def _loop_factory(self):
        return new_event_loop()


def run(main, *, debug=None, **run_kwargs):
    """``asyncio.run(main)`` on a tornado_cgen loop (like ``uvloop.run``)."""
    if sys.version_info >= (3, 12):
        return asyncio.run(main, debug=debug, loop_factory=new_event_loop,
                           **run_kwargs)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug,
                            loop_factory=new_event_loop) as runner:
            return runner.run(main)
    loop = new_event_loop()  # 3.10: no Runner
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
