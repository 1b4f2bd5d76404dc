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
  ``call_later``, ``add_timeout`` and ``add_future`` of every
  ``BaseAsyncIOLoop`` whose asyncio loop is ours go straight to the C loop,
  with Tornado's ``_run_callback`` rules (logging, ``CancelledError``,
  awaiting a returned coroutine) kept.

Functions decorated with ``tornado.gen.coroutine`` before ``install()``
keep Tornado's Python Runner; what is decorated afterwards runs on ours,
and returns ``asyncio.Future`` even after ``uninstall()``.
``uninstall()`` puts back everything ``install()`` changed.
"""
import asyncio
import dis
import functools
import logging
import types
from asyncio import events

from . import _core, gen as _gen, loop as _loop

__all__ = ["install", "uninstall", "installed"]

MIN_TORNADO = (6, 2)

# What install() replaced, to put back: (object, attribute, original).
_saved = None
_saved_policy = None


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
    import tornado.ioloop
    import tornado.platform.asyncio
    return tornado


def _patch(saved, obj, name, value):
    saved.append((obj, name, obj.__dict__.get(name, _MISSING)))
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

def _ioloop_methods(base, IOLoop):
    """Replacements for BaseAsyncIOLoop's hot methods: the C loop's Tornado
    entry points when the asyncio loop is ours, Tornado's code otherwise."""
    CLoop = _core.Loop
    orig_add_callback = base.add_callback
    orig_call_at = base.call_at
    ioloop_time = IOLoop.time

    def add_callback(self, callback, *args, **kwargs):
        loop = self.asyncio_loop
        if isinstance(loop, CLoop):
            # Thread-safe, wakes the loop only when it sleeps; a closed
            # loop drops the callback quietly, as Tornado's does.
            loop._tornado_add_callback(callback, *args, **kwargs)
        else:
            orig_add_callback(self, callback, *args, **kwargs)

    def call_at(self, when, callback, *args, **kwargs):
        loop = self.asyncio_loop
        if isinstance(loop, CLoop):
            # Tornado's conversion: a delay from IOLoop.time() (which a
            # subclass may override), never negative.
            return loop._tornado_call_later(
                max(0, when - self.time()), callback, *args, **kwargs)
        return orig_call_at(self, when, callback, *args, **kwargs)

    def call_later(self, delay, callback, *args, **kwargs):
        loop = self.asyncio_loop
        cls = type(self)
        if (isinstance(loop, CLoop) and cls.call_at is call_at and
                cls.time is ioloop_time):
            # IOLoop.call_later is call_at(time() + delay), and call_at
            # turns that back into a delay: the same, with no clock read.
            return loop._tornado_call_later(
                max(0, delay), callback, *args, **kwargs)
        return self.call_at(self.time() + delay, callback, *args, **kwargs)

    return {"add_callback": add_callback, "call_at": call_at,
            "call_later": call_later}


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
    docstring).  Calling it again while installed does nothing."""
    global _saved, _saved_policy
    if _saved is not None:
        return
    tornado = _tornado()
    tgen = tornado.gen
    tioloop = tornado.ioloop
    tasyncio = tornado.platform.asyncio
    base = tasyncio.BaseAsyncIOLoop

    saved = []
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
    methods = _ioloop_methods(base, tioloop.IOLoop)
    _patch(saved, tioloop.IOLoop, "call_later", methods.pop("call_later"))
    for name, fn in methods.items():
        _patch(saved, base, name, fn)

    # The C Runner: Tornado's objects first, ours still recognised.
    _core._gen_setup((tgen.Return, _gen.Return), tgen.moment,
                     tgen._null_future, tconvert, _gen._wrap_concurrent,
                     tgen._wrap_awaitable, _gen.moment, _gen._null_future)
    _core._set_future_factory(asyncio.Future)
    _core._set_log_hook(log_hook)
    _loop._tornado_result_hook = _callback_result_hook(tioloop.IOLoop, tgen)

    _saved_policy = events._event_loop_policy
    asyncio.set_event_loop_policy(_loop.EventLoopPolicy())
    _saved = saved


def uninstall():
    """Undo ``install()``: Tornado's own code and asyncio's previous policy
    again.  Functions decorated with ``tornado.gen.coroutine`` while
    installed keep running on the C Runner, still returning
    ``asyncio.Future``.  Does nothing when not installed."""
    global _saved, _saved_policy
    if _saved is None:
        return
    saved, _saved = _saved, None
    for obj, name, original in reversed(saved):
        if original is _MISSING:
            delattr(obj, name)
        else:
            setattr(obj, name, original)
    import tornado.gen
    _gen._setup_core(tornado.gen)
    _core._set_future_factory(None)
    _core._set_log_hook(None)
    _loop._tornado_result_hook = None
    asyncio.set_event_loop_policy(_saved_policy)
    _saved_policy = None
