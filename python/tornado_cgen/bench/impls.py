"""The implementations and how each one runs each case.

``tcg``      tornado_cgen: ``tornado_cgen.gen.coroutine`` on tornado_cgen's
             own loop when it exists, else on asyncio's default loop;
             ``tornado_cgen.ioloop.IOLoop`` for the loop cases.
``tornado``  Tornado 6's pure-Python ``gen.coroutine`` on its IOLoop
             (asyncio's default loop underneath).
``asyncio``  native ``async def``/``await`` on ``asyncio.new_event_loop()``.
``uvloop``   the same native code on ``uvloop.new_event_loop()``.
``tornado+install``
             the ``tornado`` code (``tornado.gen``, ``tornado.ioloop``) with
             ``tornado_cgen.install()`` in effect: Tornado's gen.coroutine
             on the C Runner, its IOLoop on the C loop.  The worker process
             installs before it imports or runs anything else
             (:func:`prepare_process`); in-process callers go through
             :func:`environment`, which uninstalls again, so install()
             never reaches another implementation's measurement.

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
from .common import NotAvailable, check

IMPLS = ["tcg", "tornado", "tornado+install", "asyncio", "uvloop"]

# Column labels where the name is too wide for the table.
LABELS = {"tornado+install": "t+install"}

DESCRIPTIONS = {
    "tcg": "tornado_cgen (C Future/Runner/loop)",
    "tornado": "Tornado 6 gen.coroutine, pure Python, asyncio loop",
    "asyncio": "native async def on asyncio's default loop",
    "uvloop": "native async def on uvloop",
    "tornado+install": "the tornado column's code under tornado_cgen.install()",
}

INSTALL = "tornado+install"

# The HTTP cases (httpcase.py): Tornado's server under wrk.
HTTP_CASES = ("11", "11c")

# The asyncio-only cases: asyncio streams (10s) and a protocol server under
# 100 connections (12, manyconn.py), on asyncio, uvloop and tcg's loop.
ASYNCIO_ONLY_CASES = ("10s", "12")


def label(name):
    """The column label of implementation ``name``."""
    return LABELS.get(name, name)


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
        if name == INSTALL:
            return _install_available()
        mod = importlib.import_module(name)
    except ImportError as e:
        return False, "not installed (%s)" % e
    version = getattr(mod, "version", None) or getattr(mod, "__version__", "?")
    if name == "tornado" and not version.startswith("6."):
        return False, "Tornado %s installed; the bench wants Tornado 6" % version
    return True, version


def _install_available():
    """Whether the tornado+install implementation can run, without
    installing anything (the harness asks in its own process)."""
    ok, version = installed("tornado")
    if not ok:
        return False, version
    import tornado
    import tornado_cgen
    if not hasattr(tornado_cgen, "install"):
        return False, "tornado_cgen.install() is not there yet"
    from tornado_cgen import _speedup
    if tuple(tornado.version_info[:2]) < _speedup.MIN_TORNADO:
        return False, ("install() needs Tornado >= %d.%d; %s installed"
                       % (_speedup.MIN_TORNADO + (version,)))
    return True, "Tornado %s under tornado_cgen %s" % (
        version, tornado_cgen.__version__)


def _install_in_effect():
    try:
        import tornado_cgen
    except ImportError:      # pragma: no cover
        return False
    return bool(getattr(tornado_cgen, "installed", lambda: False)())


def prepare_process(impl):
    """First thing a worker process does: ``install()`` for
    tornado+install, before Tornado is imported or any coroutine is
    decorated (functions decorated earlier keep Tornado's Runner)."""
    if impl == INSTALL and installed(INSTALL)[0]:
        import tornado_cgen
        tornado_cgen.install()


class environment:
    """``with environment(impl):`` -- the process state ``impl`` is
    measured in.  tornado+install: install() for the duration (undone
    afterwards unless it was already in effect, as in a worker process).
    Every other implementation: refuse to run while install() is in
    effect, since the numbers would be install()'s."""

    def __init__(self, impl):
        self.impl = impl
        self.undo = False

    def __enter__(self):
        if self.impl == INSTALL:
            if installed(INSTALL)[0] and not _install_in_effect():
                import asyncio
                import tornado_cgen
                tornado_cgen.install()
                # The new policy has no loop set for this thread: say so,
                # as the process had said to the old one, or Tornado's
                # IOLoop() asking get_event_loop() warns on 3.12+.
                asyncio.set_event_loop(None)
                self.undo = True
        elif _install_in_effect():
            raise NotAvailable("tornado_cgen.install() is in effect in this "
                               "process: a %s number would be install()'s"
                               % self.impl)
        return self

    def __exit__(self, *exc):
        if self.undo:
            import tornado_cgen
            tornado_cgen.uninstall()
        return False


# ---------------------------------------------------------------- Tornado 6

class TornadoFlavour(genstyle.Flavour):
    """Tornado 6's own code.  ``install=True`` is the tornado+install
    flavour: the very same calls, with install() in effect (checked on
    every run, so a number is never labelled with the wrong setup)."""

    name = "tornado"

    def __init__(self, install=False):
        from tornado import concurrent, gen, ioloop
        self.gen = gen
        self.Future = concurrent.Future
        self._IOLoop = ioloop.IOLoop
        self.install = install
        if install:
            self.name = INSTALL
            self.variant = ("tornado.gen.coroutine on Tornado's IOLoop under "
                            "tornado_cgen.install() (C Runner, C loop)")
        else:
            self.variant = ("tornado.gen.coroutine on Tornado's IOLoop "
                            "(asyncio)")

    def check_setup(self, io):
        """Fail loudly if install() is (not) in effect as the flavour says."""
        from tornado_cgen import _core
        on_c_loop = isinstance(io.asyncio_loop, _core.Loop)
        check(on_c_loop == self.install and
              _install_in_effect() == self.install,
              "%s: install() in effect: %s, IOLoop on the C loop: %s"
              % (self.name, _install_in_effect(), on_c_loop))

    def ioloop_class(self):
        return self._IOLoop

    def new_ioloop(self):
        io = self._IOLoop()
        self.check_setup(io)
        return io

    def run(self, main):
        io = self._IOLoop()
        try:
            self.check_setup(io)
            return io.run_sync(main)
        finally:
            io.close()

    def scheduler(self):
        return self._IOLoop.current().add_callback


# ------------------------------------------------------------ tornado_cgen

# IOLoop methods each case uses (the Tornado face of tornado_cgen's loop).
_IOLOOP_METHODS = {
    "3": ["current", "add_callback"],
    "6": ["add_callback", "start", "stop", "close"],
    "7": ["current", "add_callback"],
    "8": ["call_later", "remove_timeout", "add_callback", "start", "stop",
          "close"],
    "9": ["add_handler", "remove_handler", "add_callback", "start", "stop",
          "close", "READ"],
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


def _tcg_new_event_loop():
    """tornado_cgen's loop factory (its asyncio face), or None."""
    import tornado_cgen
    return getattr(tornado_cgen, "new_event_loop", None)


def _tcg_ioloop_class(case_id):
    """``(IOLoop, None)`` when tornado_cgen's IOLoop has what the case
    uses, else ``(None, reason)``.  The methods are looked up on an
    instance: ``IOLoop()`` returns a subclass that carries them."""
    try:
        mod = importlib.import_module("tornado_cgen.ioloop")
    except ImportError:
        return None, "tornado_cgen.ioloop is not there yet"
    IOLoop = getattr(mod, "IOLoop", None)
    if IOLoop is None:
        return None, "tornado_cgen.ioloop has no IOLoop yet"
    try:
        probe = IOLoop()
    except Exception as e:
        return None, "tornado_cgen's IOLoop() fails: %r" % e
    try:
        missing = [m for m in ["run_sync", "close"] +
                   _IOLOOP_METHODS.get(case_id, ["current"])
                   if not hasattr(probe, m)]
    finally:
        if hasattr(probe, "close"):
            probe.close()
        asyncio.set_event_loop(None)
    if missing:
        return None, "tornado_cgen IOLoop has no %s yet" % ", ".join(missing)
    return IOLoop, None


class TcgFlavour(genstyle.Flavour):
    """tornado_cgen's gen.coroutine, on tornado_cgen's loop when it exists.

    With tornado_cgen's IOLoop, coroutines run under ``IOLoop().run_sync``
    (the IOLoop is also the asyncio loop) and callbacks go through
    ``IOLoop.current().add_callback``; with only the loop's asyncio face,
    under ``run_until_complete`` with ``call_soon``; with neither, on
    asyncio's default loop (labelled so in the variant).
    """

    name = "tcg"

    def __init__(self, case_id):
        from tornado_cgen.concurrent import Future
        try:
            self.gen, self.gen_missing = _tcg_gen(), None
        except NotAvailable as e:     # the loop cases do not need it
            self.gen, self.gen_missing = None, str(e)
        self.Future = Future
        self.new_loop = _tcg_new_event_loop()
        self._IOLoop, self._ioloop_missing = _tcg_ioloop_class(case_id)
        if self.new_loop is None:
            self._IOLoop = None
            self.variant = ("tornado_cgen.gen.coroutine on asyncio's default "
                            "loop (tornado_cgen's loop is not there yet)")
        elif self._IOLoop is not None:
            self.variant = ("tornado_cgen.gen.coroutine on tornado_cgen's "
                            "loop, IOLoop API")
        else:
            self.variant = ("tornado_cgen.gen.coroutine on tornado_cgen's "
                            "loop, asyncio API (%s)" % self._ioloop_missing)

    @property
    def has_own_loop(self):
        return self.new_loop is not None

    def ioloop_class(self):
        if self._IOLoop is None:
            raise NotAvailable(self._ioloop_missing or
                               "tornado_cgen's loop is not there yet")
        return self._IOLoop

    def new_ioloop(self):
        return self.ioloop_class()()

    def run(self, main):
        if self._IOLoop is not None:
            # One object with both faces: IOLoop.current() inside is it.
            io = self._IOLoop()
            try:
                return io.run_sync(main)
            finally:
                io.close()
                asyncio.set_event_loop(None)

        async def outer():
            return await main()

        loop = (self.new_loop or asyncio.new_event_loop)()
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(outer())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    def scheduler(self):
        if self._IOLoop is not None:
            return self._IOLoop.current().add_callback
        return asyncio.get_running_loop().call_soon


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
    if case_id in HTTP_CASES:
        from . import httpcase
        return httpcase.resolve(impl, case_id)
    if case_id in ASYNCIO_ONLY_CASES:
        return _resolve_asyncio_only(impl, case_id)

    if impl in ("asyncio", "uvloop"):
        new_loop = _loop_factory(impl)
        variant = "async def on %s" % ("uvloop" if impl == "uvloop"
                                       else "asyncio's default loop")
        if case_id == "10":
            variant += ", asyncio protocols"
        return functools.partial(native.CASES[case_id], new_loop), variant

    if impl in ("tornado", INSTALL):
        fl = TornadoFlavour(install=impl == INSTALL)
        if case_id == "10":
            return (functools.partial(genstyle.case_10_iostream, fl),
                    fl.variant + ", IOStream (TCPServer/TCPClient)")
        return functools.partial(genstyle.CASES[case_id], fl), fl.variant

    # tcg
    fl = TcgFlavour(case_id)
    if case_id not in ("6", "8", "9", "10") and fl.gen is None:
        raise NotAvailable(fl.gen_missing)
    if case_id in ("5", "5d") and not hasattr(fl.gen, "multi"):
        raise NotAvailable("tornado_cgen.gen.multi is not there yet")
    if case_id in ("6", "7", "8", "9", "10") and not fl.has_own_loop:
        raise NotAvailable("tornado_cgen's loop (tornado_cgen.new_event_loop)"
                           " is not there yet")
    if case_id == "10":
        # tornado_cgen has no IOStream of its own: asyncio protocols on its
        # loop's asyncio face (the same code as the native columns).
        return (functools.partial(native.case_10, fl.new_loop),
                "asyncio protocols on tornado_cgen's loop")
    if case_id in ("6", "8", "9"):
        if fl._IOLoop is not None:
            return (functools.partial(genstyle.CASES[case_id], fl),
                    "tornado_cgen.ioloop.IOLoop")
        # The loop without its Tornado face yet: the same work through its
        # asyncio API (call_soon, call_later + cancel, add_reader).
        return (functools.partial(native.CASES[case_id], fl.new_loop),
                "asyncio API of tornado_cgen's loop (%s)" % fl._ioloop_missing)
    return functools.partial(genstyle.CASES[case_id], fl), fl.variant


def _asyncio_only_case(case_id):
    if case_id == "12":
        from . import manyconn
        return manyconn.case_12
    return native.CASES[case_id]


_ASYNCIO_ONLY_WHAT = {
    "10s": "asyncio streams (start_server, open_connection) on {loop}",
    "12": "an asyncio.Protocol echo server (create_server) on {loop}, 100 "
          "connections from a C client in another process",
}


def _resolve_asyncio_only(impl, case_id):
    """Cases 10s and 12: asyncio code on asyncio's loop, uvloop or
    tornado_cgen's loop (whatever transports that loop makes)."""
    what = _ASYNCIO_ONLY_WHAT[case_id]
    if impl in ("tornado", INSTALL):
        raise NotAvailable("case %s is asyncio code with no Tornado form (%s)"
                           % (case_id, what.format(loop="an asyncio loop")))
    run = _asyncio_only_case(case_id)
    if impl in ("asyncio", "uvloop"):
        return (functools.partial(run, _loop_factory(impl)),
                what.format(loop="uvloop" if impl == "uvloop"
                            else "asyncio's default loop"))
    new_loop = _tcg_new_event_loop()
    if new_loop is None:
        raise NotAvailable("tornado_cgen's loop (tornado_cgen.new_event_loop)"
                           " is not there yet")
    return (functools.partial(run, new_loop),
            what.format(loop="tornado_cgen's loop"))
