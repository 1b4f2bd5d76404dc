"""Tornado speedup mode: ``install()``, ``uninstall()``, ``installed()``.

``install()`` makes an installed Tornado (>= 6.2) run on tornado_cgen's C
code, keeping every object and rule a Tornado program can observe:

* the loop: asyncio's policy gives tornado_cgen's C loop, so Tornado's
  ``IOLoop`` (``AsyncIOMainLoop``/``AsyncIOLoop``) runs on it, as it runs
  on uvloop;
* futures: every future the C loop, the C Runner and ``multi`` hand out is
  an ``asyncio.Future``, because Tornado and its users test for it;
* ``tornado.gen``: ``coroutine``, ``multi``/``Multi``/``multi_future`` and
  ``convert_yielded`` are the C ones, over Tornado's own ``Return``,
  ``moment``, ``_null_future``, ``BadYieldError`` and ``convert_yielded``
  registry (``register()`` made before or after install keeps working);
* Tornado's IOLoop layer: ``add_callback``/``spawn_callback``, ``call_at``,
  ``call_later``/``add_timeout`` and ``remove_timeout`` of every
  ``BaseAsyncIOLoop`` whose asyncio loop is ours go straight to the C loop,
  with Tornado's ``_run_callback`` rules (logging, ``CancelledError``,
  awaiting a returned coroutine) kept, and ``IOLoop.current()`` answers
  from C while our loop runs;
* IOStream: plain socket reads skip Tornado's zeroed 64 KiB chunk, and
  ``set_nodelay`` reads a plain socket's family without the enum lookup;
  ``httputil.format_timestamp`` remembers the last second it formatted.

Functions decorated with ``tornado.gen.coroutine`` before ``install()``
keep Tornado's Python Runner; what is decorated afterwards runs on ours,
and returns ``asyncio.Future`` even after ``uninstall()``.
``uninstall()`` puts back everything ``install()`` changed.
"""
import asyncio
import dis
import errno
import functools
import logging
import socket
import threading
import types
from asyncio import events

from . import _core, gen as _gen, loop as _loop

__all__ = ["install", "uninstall", "installed"]

MIN_TORNADO = (6, 2)

# What install() replaced, to put back: (object, attribute, original,
# replacement), and asyncio's policy: (the one before, install()'s).
_saved = None
_saved_policy = None
# install() and uninstall() one at a time (the imports they make and the
# code they call may switch threads).
_lock = threading.RLock()


class TornadoVersionError(ImportError):
    """Tornado is missing, or older than ``install()`` supports."""


def installed():
    """True while ``install()`` is in effect."""
    return _saved is not None


def _tornado():
    try:
        import tornado
    except ImportError as e:
        raise TornadoVersionError(
            "tornado_cgen.install() needs Tornado >= %d.%d; Tornado is not "
            "installed (%s)" % (MIN_TORNADO + (e,))) from e
    version = getattr(tornado, "version_info", (0,))
    if tuple(version[:2]) < MIN_TORNADO:
        raise TornadoVersionError(
            "tornado_cgen.install() needs Tornado >= %d.%d; Tornado %s is "
            "installed" % (MIN_TORNADO + (getattr(tornado, "version", "?"),)))
    import tornado.concurrent
    import tornado.gen
    import tornado.httputil
    import tornado.ioloop
    import tornado.iostream
    import tornado.platform.asyncio
    return tornado


def _patch(saved, obj, name, value):
    saved.append((obj, name, obj.__dict__.get(name, _MISSING), value))
    setattr(obj, name, value)


_MISSING = object()


# ---- tornado.gen ------------------------------------------------------------

def _tornado_coroutine(original):
    def coroutine(func):
        # asyncio.Future for good, not only while installed: Tornado code
        # calling it after uninstall() must still get a future it knows.
        wrapper = _core.Coroutine(func, asyncio.Future)
        functools.update_wrapper(wrapper, func)
        wrapper.__tornado_coroutine__ = True
        return wrapper

    functools.update_wrapper(coroutine, original)
    del coroutine.__wrapped__
    return coroutine


def _tornado_function(c_function, original):
    """A Python function calling ``c_function`` that introspects like
    Tornado's ``original`` (name, module, docs, signature, and a
    singledispatch's ``register``/``dispatch``/``registry``): programs and
    Tornado's API snapshot test see Tornado's function."""
    def function(*args, **kwargs):
        return c_function(*args, **kwargs)

    return functools.update_wrapper(function, original)


# ---- the IOLoop layer ----------------------------------------------------------

def _patch_ioloop(saved, base, IOLoop):
    """Route BaseAsyncIOLoop.add_callback/call_at/remove_timeout and
    IOLoop.call_later (hence add_timeout, spawn_callback) to the C loop, and
    answer IOLoop.current() from C while our loop runs:
    _core.TornadoMethod descriptors (ext/speedup.c) that take the C path
    when the IOLoop's asyncio_loop is ours and call Tornado's function
    otherwise (or on an IOLoop class with its own _run_callback).
    add_timeout and spawn_callback reach them through Tornado's code."""
    TM = _core.TornadoMethod
    call_at = TM("call_at", base.call_at, IOLoop)
    _patch(saved, base, "add_callback", TM("add_callback", base.add_callback,
                                           IOLoop))
    _patch(saved, base, "call_at", call_at)
    _patch(saved, base, "remove_timeout",
           TM("remove_timeout", base.remove_timeout, IOLoop))
    _patch(saved, IOLoop, "call_later",
           TM("call_later", IOLoop.call_later, IOLoop, call_at))
    # A staticmethod, as Tornado's.
    _patch(saved, IOLoop, "current",
           staticmethod(TM("current", IOLoop.current, IOLoop)))


# ---- IOStream ------------------------------------------------------------------

def _iostream_read_to_buffer(iostream):
    """BaseIOStream._read_to_buffer without its per-read zeroed chunk.

    Tornado reads into a new ``bytearray(read_chunk_size)`` (64 KiB, zeroed)
    on every read and copies what came into the read buffer: a 64 KiB
    memset per read, about a sixth of a hello-world request.  For a plain
    socket ``IOStream`` this reads with ``socket.recv`` instead, which
    allocates the chunk without clearing it and copies the same bytes into
    the same buffer.  Everything else (a user read buffer, SSL and pipe
    streams, a subclass's or instance's own ``read_from_fd``, a socket that
    is not a plain ``socket.socket``, a buffer too full to take a whole
    chunk, where Tornado's version-specific overflow error applies)
    goes through Tornado's own method."""
    original = iostream.BaseIOStream._read_to_buffer
    plain_read_from_fd = iostream.IOStream.read_from_fd
    socket_type = socket.socket

    def _read_to_buffer(self):
        chunk = self.read_chunk_size
        if (self._user_read_buffer or
                type(self).read_from_fd is not plain_read_from_fd or
                "read_from_fd" in self.__dict__ or
                type(self.socket) is not socket_type or
                self.max_buffer_size - self._read_buffer_size < chunk):
            return original(self)
        try:
            data = self.socket.recv(chunk)
        except BlockingIOError:
            return 0
        except OSError as e:
            # As Tornado: a reset is a close, anything else closes and
            # raises.
            if self._is_connreset(e):
                self.close(exc_info=e)
                return None
            self.close(exc_info=e)
            raise
        if not data:
            self.close()
            return 0
        self._read_buffer += data
        n = len(data)
        self._read_buffer_size += n
        return n

    functools.update_wrapper(_read_to_buffer, original)
    del _read_to_buffer.__wrapped__
    return _read_to_buffer


def _iostream_set_nodelay(iostream):
    """IOStream.set_nodelay without the enum lookup of ``socket.family``.

    Tornado asks ``self.socket.family``, which the socket module's
    property turns into an ``AddressFamily`` member on every call (two
    calls a request: HTTP/1 sets the flag after a response and clears it
    again).  For a plain ``socket.socket`` this reads the family number
    from ``_socket.socket`` itself, the value the property converts;
    ``AF_INET`` and ``AF_INET6`` compare equal either way.  Any other
    socket (SSL, a subclass) goes through Tornado's method."""
    original = iostream.IOStream.set_nodelay
    socket_type = socket.socket
    raw_family = _socket_family()
    inet = (socket.AF_INET, socket.AF_INET6)
    tcp, nodelay = socket.IPPROTO_TCP, socket.TCP_NODELAY

    def set_nodelay(self, value):
        sock = self.socket
        if type(sock) is not socket_type:
            return original(self, value)
        if raw_family(sock) in inet:
            try:
                sock.setsockopt(tcp, nodelay, 1 if value else 0)
            except OSError as e:
                if e.errno != errno.EINVAL and not self._is_connreset(e):
                    raise

    functools.update_wrapper(set_nodelay, original)
    del set_nodelay.__wrapped__
    return set_nodelay


def _socket_family():
    """``_socket.socket``'s own ``family`` getter, as a function."""
    import _socket
    return _socket.socket.family.__get__


def _httputil_format_timestamp(httputil):
    """httputil.format_timestamp, remembering the last second it formatted.

    ``RequestHandler.clear()`` formats the ``Date`` header of every
    response with ``format_timestamp(time.time())``, about 5% of a
    hello-world request in ``email.utils``.  The string depends only on
    the whole second.  For a float or int timestamp from 1970 to about
    the year 5000 (a float not within a microsecond of the next second,
    which the microsecond rounding of ``datetime.fromtimestamp`` could
    carry into it) the last second's string is returned again, as long
    as ``email.utils.formatdate`` is the one this saw at install().
    Everything else is Tornado's function."""
    import email.utils
    original = httputil.format_timestamp
    formatdate = email.utils.formatdate
    last = (None, None)

    def format_timestamp(ts):
        nonlocal last
        kind = type(ts)
        # (NaN fails every comparison.)
        if kind is float and 0.0 <= ts < 1e11:
            second = int(ts)
            if ts - second >= 0.999999:
                return original(ts)
        elif kind is int and 0 <= ts < 10 ** 11:
            second = ts
        else:
            return original(ts)
        if email.utils.formatdate is not formatdate:
            return original(ts)
        seen, text = last
        if seen != second:
            text = original(second)
            last = (second, text)
        return text

    functools.update_wrapper(format_timestamp, original)
    del format_timestamp.__wrapped__
    return format_timestamp


def _callback_result_hook(IOLoop, gen):
    """What a C Tornado-style handle does with a callback's non-None
    result under install(): Tornado's IOLoop._run_callback rules."""
    ioloops = IOLoop._ioloop_for_asyncio

    def hook(loop, ret):
        io_loop = ioloops.get(loop)
        if io_loop is None:
            return False
        try:
            ret = gen.convert_yielded(ret)
        except gen.BadYieldError:
            # A method returning a non-yieldable is fine: ignored.
            return True
        io_loop.add_future(ret, io_loop._discard_future_result)
        return True

    return hook


# ---- logging ---------------------------------------------------------------------

def _call_site(code, msg):
    """``(pathname, lineno, funcName)`` of the logging call in ``code`` (or
    a function nested in it) whose first argument is the constant ``msg``,
    as ``logging`` finds it from the calling frame; None if there is none."""
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            site = _call_site(const, msg)
            if site is not None:
                return site
    line, found = None, False
    for ins in dis.get_instructions(code):
        positions = getattr(ins, "positions", None)    # 3.11+
        if positions is not None:
            line = positions.lineno if positions.lineno is not None else line
        elif ins.starts_line is not None:              # 3.10
            line = ins.starts_line
        if ins.opname == "LOAD_CONST" and ins.argval == msg:
            found = True
        elif found and ins.opname.startswith("CALL"):
            return (code.co_filename, line, code.co_name)
    return None


def _tornado_log_hook(tornado):
    """The C code's log hook under install() (ext/tcg.h, ``log_hook``):
    the records Tornado's own code makes for the same events, down to
    where they come from (``pathname``, ``lineno``, ``funcName``: Tornado's
    default log format shows ``module:lineno``).  Only the traceback
    differs: it has no frame of Tornado's, since no Tornado code ran."""
    where = {"Exception in callback %r": tornado.ioloop.IOLoop._run_callback,
             "Exception after Future was cancelled":
                 tornado.concurrent.future_set_exception_unless_cancelled,
             "Multiple exceptions in yield list": tornado.gen.multi_future}
    sites = {}
    for msg, function in where.items():
        code = getattr(function, "__code__", None)
        site = _call_site(code, msg) if code is not None else None
        if site is not None:
            sites[msg] = site

    def hook(logger, msg, args, exc):
        if not logger.isEnabledFor(logging.ERROR):
            return
        site = sites.get(msg)
        if site is None or logging._srcfile is None:
            # Where the C code was called from, as without the hook.
            logger.error(msg, *args, exc_info=exc, stacklevel=2)
            return
        pathname, lineno, func = site
        logger.handle(logger.makeRecord(
            logger.name, logging.ERROR, pathname, lineno, msg, args,
            (type(exc), exc, exc.__traceback__), func))

    return hook


# ---- install / uninstall --------------------------------------------------------

def install():
    """Run Tornado on tornado_cgen's C loop and Runner (see the module
    docstring).  Calling it again while installed does nothing.  If it
    fails, nothing is left changed."""
    global _saved, _saved_policy
    with _lock:
        if _saved is not None:
            return
        tornado = _tornado()
        policy = events._event_loop_policy
        saved = []
        try:
            _install(tornado, saved)
        except BaseException:
            _undo(saved, tornado.gen, (policy, None))
            raise
        _saved_policy = (policy, events._event_loop_policy)
        _saved = saved


def _install(tornado, saved):
    tgen = tornado.gen
    tioloop = tornado.ioloop
    tasyncio = tornado.platform.asyncio
    base = tasyncio.BaseAsyncIOLoop

    log_hook = _tornado_log_hook(tornado)     # before multi_future is ours
    tconvert = tgen.convert_yielded   # Tornado's singledispatch: its registry
    c_convert = _core.ConvertYielded(tconvert)
    convert = _tornado_function(c_convert, tconvert)
    multi = _tornado_function(_core.multi, tgen.multi)
    for name, value in (
            ("coroutine", _tornado_coroutine(tgen.coroutine)),
            ("multi", multi), ("Multi", multi),
            ("multi_future", _tornado_function(_core.multi, tgen.multi_future)),
            ("convert_yielded", convert)):
        _patch(saved, tgen, name, value)
    if getattr(tasyncio, "convert_yielded", None) is tconvert:
        _patch(saved, tasyncio, "convert_yielded", convert)
    _patch_ioloop(saved, base, tioloop.IOLoop)
    _patch(saved, tornado.iostream.BaseIOStream, "_read_to_buffer",
           _iostream_read_to_buffer(tornado.iostream))
    _patch(saved, tornado.iostream.IOStream, "set_nodelay",
           _iostream_set_nodelay(tornado.iostream))
    _patch(saved, tornado.httputil, "format_timestamp",
           _httputil_format_timestamp(tornado.httputil))

    # The C Runner: Tornado's objects first, ours still recognised.
    _core._gen_setup((tgen.Return, _gen.Return), tgen.moment,
                     tgen._null_future, tconvert, _gen._wrap_concurrent,
                     tgen._wrap_awaitable, _gen.moment, _gen._null_future)
    _core._set_future_factory(asyncio.Future)
    # A coroutine's first yield calls IOLoop.current(), as Tornado's Runner.
    _core._set_tornado_ioloop(tioloop.IOLoop)
    # Conversion failures other than BadYieldError escape, as in Tornado.
    _core._set_tornado_escapes(tgen.BadYieldError)
    _core._set_log_hook(log_hook)
    _loop._tornado_result_hook = _callback_result_hook(tioloop.IOLoop, tgen)
    asyncio.set_event_loop_policy(_loop.EventLoopPolicy())


def _undo(saved, tgen, policies):
    """Put back what install() changed (``saved``, the C Runner's and
    loop's settings) and asyncio's policy (``policies``: the one before,
    and install()'s or None).  What the program has changed again since
    (an attribute, the policy) is the program's: it stays."""
    for obj, name, original, value in reversed(saved):
        if obj.__dict__.get(name, _MISSING) is not value:
            continue
        if original is _MISSING:
            delattr(obj, name)
        else:
            setattr(obj, name, original)
    _gen._setup_core(tgen)
    _core._set_future_factory(None)
    _core._set_tornado_ioloop(None)
    _core._set_tornado_escapes(None)
    _core._set_log_hook(None)
    _loop._tornado_result_hook = None
    before, ours = policies
    current = events._event_loop_policy
    if current is not before and (ours is None or current is ours):
        asyncio.set_event_loop_policy(before)


def uninstall():
    """Undo ``install()``: Tornado's own code and asyncio's previous policy
    again, but for what the program replaced itself since.  Functions
    decorated with ``tornado.gen.coroutine`` while installed keep running
    on the C Runner, still returning ``asyncio.Future``.  Does nothing when
    not installed."""
    global _saved, _saved_policy
    with _lock:
        if _saved is None:
            return
        saved, _saved = _saved, None
        policies, _saved_policy = _saved_policy, None
        import tornado.gen
        _undo(saved, tornado.gen, policies)
