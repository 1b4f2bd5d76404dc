"""The four implementations and how each one runs each case.

``tcg``      tornado_cgen: ``tornado_cgen.gen.coroutine`` on tornado_cgen's
             own loop when it exists, else on asyncio's default loop;
             ``tornado_cgen.ioloop.IOLoop`` for the loop cases.
``tornado``  Tornado 6's pure-Python ``gen.coroutine`` on its IOLoop
             (asyncio's default loop underneath).
``asyncio``  native ``async def``/``await`` on ``asyncio.new_event_loop()``.
``uvloop``   the same native code on ``uvloop.new_event_loop()``.

tornado_cgen's features are detected when a case is resolved (imports and
``hasattr``), so the harness works while the Runner and the loop are still
being written and picks them up when they land.  What is missing raises
:class:`~tornado_cgen.bench.common.NotAvailable` with the reason.

:func:`resolve` returns ``(run, variant)``: ``run(n)`` performs the case and
returns ``(elapsed_ns, ops)`` or ``(elapsed_ns, ops, extra)``; ``variant``
says what exactly was measured.
"""
import asyncio
import functools
import importlib

from . import genstyle, native
from .common import NotAvailable

IMPLS = ["tcg", "tornado", "asyncio", "uvloop"]

DESCRIPTIONS = {
    "tcg": "tornado_cgen (C Future/Runner/loop)",
    "tornado": "Tornado 6 gen.coroutine, pure Python, asyncio loop",
    "asyncio": "native async def on asyncio's default loop",
    "uvloop": "native async def on uvloop",
}


def installed(name):
    """``(True, version)`` if implementation ``name`` can be imported, else
    ``(False, reason)``."""
    try:
        if name == "tcg":
            mod = importlib.import_module("tornado_cgen")
            return True, getattr(mod, "__version__", "?")
        if name == "asyncio":
            import sys
            return True, "Python %d.%d.%d" % sys.version_info[:3]
        mod = importlib.import_module(name)
    except ImportError as e:
        return False, "not installed (%s)" % e
    version = getattr(mod, "version", None) or getattr(mod, "__version__", "?")
    if name == "tornado" and not version.startswith("6."):
        return False, "Tornado %s installed; the bench wants Tornado 6" % version
    return True, version


# ---------------------------------------------------------------- Tornado 6

class TornadoFlavour(genstyle.Flavour):
    name = "tornado"

    def __init__(self):
        from tornado import concurrent, gen, ioloop
        self.gen = gen
        self.Future = concurrent.Future
        self._IOLoop = ioloop.IOLoop
        self.variant = "tornado.gen.coroutine on Tornado's IOLoop (asyncio)"

    def ioloop_class(self):
        return self._IOLoop

    def new_ioloop(self):
        return self._IOLoop()

    def run(self, main):
        io = self._IOLoop()
        try:
            return io.run_sync(main)
        finally:
            io.close()

    def scheduler(self):
        return self._IOLoop.current().add_callback


# ------------------------------------------------------------ tornado_cgen

_LOOP_METHODS = {
    "3": ["current", "add_callback", "run_sync"],
    "6": ["add_callback", "start", "stop", "close"],
    "7": ["current", "add_callback", "run_sync"],
    "8": ["call_later", "remove_timeout", "add_callback", "start", "stop",
          "close"],
    "9": ["add_handler", "remove_handler", "add_callback", "start", "stop",
          "close"],
}


def _tcg_gen():
    try:
        gen = importlib.import_module("tornado_cgen.gen")
    except ImportError as e:
        raise NotAvailable("tornado_cgen.gen is not there yet (%s)" % e)
    missing = [a for a in ("coroutine", "moment") if not hasattr(gen, a)]
    if missing:
        raise NotAvailable("tornado_cgen.gen has no %s yet" % ", ".join(missing))
    return gen


def _tcg_ioloop_class():
    """tornado_cgen's IOLoop class, or None while it does not exist."""
    try:
        mod = importlib.import_module("tornado_cgen.ioloop")
    except ImportError:
        return None
    return getattr(mod, "IOLoop", None)


class TcgFlavour(genstyle.Flavour):
    """tornado_cgen's gen.coroutine; on its own loop when that exists."""

    name = "tcg"

    def __init__(self, case_id):
        from tornado_cgen.concurrent import Future
        self.gen = _tcg_gen()
        self.Future = Future
        self._IOLoop = _tcg_ioloop_class()
        needed = _LOOP_METHODS.get(case_id, ["run_sync", "current"])
        if self._IOLoop is not None:
            missing = [m for m in needed if not hasattr(self._IOLoop, m)]
            if missing:
                self._loop_missing = "tornado_cgen IOLoop has no %s yet" % (
                    ", ".join(missing))
            else:
                self._loop_missing = None
        else:
            self._loop_missing = "tornado_cgen.ioloop.IOLoop is not there yet"
        if self._loop_missing is None:
            self.variant = "tornado_cgen.gen.coroutine on tornado_cgen's IOLoop"
        else:
            self.variant = ("tornado_cgen.gen.coroutine on asyncio's default "
                            "loop (%s)" % self._loop_missing)

    def ioloop_class(self):
        if self._loop_missing:
            raise NotAvailable(self._loop_missing)
        return self._IOLoop

    def new_ioloop(self):
        return self.ioloop_class()()

    def run(self, main):
        if self._loop_missing is None:
            io = self._IOLoop()
            try:
                return io.run_sync(main)
            finally:
                io.close()

        async def outer():
            return await main()

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(outer())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def scheduler(self):
        if self._loop_missing is None:
            return self._IOLoop.current().add_callback
        return asyncio.get_running_loop().call_soon


def _tcg_new_event_loop():
    """tornado_cgen's asyncio-faced loop factory, or NotAvailable."""
    import tornado_cgen
    factory = getattr(tornado_cgen, "new_event_loop", None)
    if factory is None:
        raise NotAvailable("tornado_cgen.new_event_loop is not there yet")
    return factory


# ----------------------------------------------------------------- resolve

def _loop_factory(impl):
    if impl == "asyncio":
        return asyncio.new_event_loop
    import uvloop
    return uvloop.new_event_loop


def resolve(impl, case_id):
    """``(run, variant)`` for one case of one implementation, or raise
    NotAvailable.  Nothing is run or timed here."""
    ok, why = installed(impl)
    if not ok:
        raise NotAvailable(why)
    if case_id == "11":
        from . import httpcase
        return httpcase.resolve(impl)

    if impl in ("asyncio", "uvloop"):
        new_loop = _loop_factory(impl)
        variant = "async def on %s" % ("uvloop" if impl == "uvloop"
                                       else "asyncio's default loop")
        if case_id == "10":
            variant += ", asyncio protocols"
        return functools.partial(native.CASES[case_id], new_loop), variant

    if impl == "tornado":
        fl = TornadoFlavour()
        if case_id == "10":
            return (functools.partial(genstyle.case_10_iostream, fl),
                    fl.variant + ", IOStream (TCPServer/TCPClient)")
        return functools.partial(genstyle.CASES[case_id], fl), fl.variant

    # tcg
    if case_id == "10":
        # tornado_cgen has no IOStream of its own: asyncio protocols on its
        # loop's asyncio face (the same code as the native column).
        factory = _tcg_new_event_loop()
        probe = factory()
        try:
            missing = [m for m in ("create_server", "create_connection")
                       if not hasattr(probe, m)]
        finally:
            probe.close()
        if missing:
            raise NotAvailable("tornado_cgen's loop has no %s yet"
                               % ", ".join(missing))
        return (functools.partial(native.case_10, factory),
                "asyncio protocols on tornado_cgen's loop")
    fl = TcgFlavour(case_id)
    if case_id in ("6", "7", "8", "9"):
        fl.ioloop_class()      # the loop cases need tornado_cgen's IOLoop
    if case_id in ("5", "5d") and not hasattr(fl.gen, "multi"):
        raise NotAvailable("tornado_cgen.gen.multi is not there yet")
    variant = fl.variant
    if case_id in ("6", "8", "9"):
        variant = "tornado_cgen.ioloop.IOLoop"
    return functools.partial(genstyle.CASES[case_id], fl), variant
