"""Testing support: Tornado's ``tornado.testing`` on the C loop.

``AsyncTestCase`` gives each test a fresh C loop (``self.io_loop``, also
asyncio's loop for the thread) and closes it with ``all_fds=True`` after;
``gen_test`` runs generator-style and ``async def`` test methods on it;
``AsyncHTTPTestCase`` and ``AsyncHTTPSTestCase`` (Tornado installed) start
Tornado's HTTP server on it.  ``ExpectLog``, ``bind_unused_port`` and
``get_async_test_timeout`` behave as Tornado's.

Which IOLoop a test gets follows the package's two modes: standalone, it is
``tornado_cgen.ioloop.IOLoop``; under ``tornado_cgen.install()`` it is
Tornado's own ``tornado.ioloop.IOLoop`` (which then runs on a C loop), so a
Tornado application's tests see the IOLoop class their code uses.

Two things are stricter than ``tornado.testing``, so that a failure is
reported against the test that caused it:

* an exception logged while the test runs (a record at ERROR or above with
  a traceback, outside an ``ExpectLog``), or an exception no one retrieved
  from a future that was collected during the test, fails that test;
* a ``gen_test`` timeout says "timed out after N seconds" and shows the
  stack where the test's coroutine was suspended.

The pytest plugin (``tornado_cgen.pytest_plugin``) is built on the same
pieces.

PYTEST_DONT_REWRITE: the ``assert`` statements here are Tornado's
semantics (an AssertionError with no message); pytest would rewrite
them in every module of a distribution that registers a plugin.
"""
import asyncio
import functools
import gc
import importlib.util
import inspect
import logging
import os
import re
import socket
import sys
import traceback
import types
import unittest
import warnings

from . import _core, gen, ioloop
from ._speedup import installed

_HTTP_CLASSES = ("AsyncHTTPTestCase", "AsyncHTTPSTestCase")

__all__ = ["AsyncTestCase", "gen_test", "ExpectLog", "bind_unused_port",
           "get_async_test_timeout"]
if importlib.util.find_spec("tornado") is not None:
    __all__ += _HTTP_CLASSES

# unittest leaves frames of modules with this global out of the tracebacks
# it prints, so a failing test shows its own frames, not the harness's.
__unittest = True


def get_async_test_timeout():
    """The default timeout of ``gen_test`` and ``wait``, in seconds: the
    ``ASYNC_TEST_TIMEOUT`` environment variable if it is a number, else 5."""
    value = os.environ.get("ASYNC_TEST_TIMEOUT")
    if value is not None:
        try:
            return float(value)
        except ValueError:
            pass
    return 5


def bind_unused_port(reuse_port=False, address="127.0.0.1"):
    """A listening, non-blocking IPv4 socket on a free port, and the port:
    ``(socket, port)``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setblocking(False)
        sock.bind((address, 0))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock, sock.getsockname()[1]


class ExpectLog(logging.Filter):
    """A context manager that swallows log records whose message matches
    ``regex`` (with ``re.match``) on ``logger``, and fails if none came.

    ``required=False`` makes the record optional; ``level`` requires the
    records to come at that level (a match at another level is let through
    and reported with a warning on ``tornado.application``), and lowers
    the logger's level for the block if it would hide them.  Afterwards
    ``matched`` counts the swallowed records and ``logged_stack`` says
    whether any record seen carried a traceback.
    """

    def __init__(self, logger, regex, required=True, level=None):
        super().__init__()
        if isinstance(logger, str):
            logger = logging.getLogger(logger)
        self.logger = logger
        self.regex = re.compile(regex)
        self.required = required
        self.level = level
        self.matched = 0
        self.deprecated_level_matched = 0
        self.logged_stack = False
        self.orig_level = None

    def filter(self, record):
        if record.exc_info:
            self.logged_stack = True
        message = record.getMessage()
        if not self.regex.match(message):
            return True
        if self.level is None:
            if record.levelno < logging.WARNING:
                # Told at __exit__: a warning raised inside logging would
                # be swallowed by it.
                self.deprecated_level_matched += 1
        elif record.levelno != self.level:
            logging.getLogger("tornado.application").warning(
                "Got expected log message %r at unexpected level (%s vs %s)"
                % (message, logging.getLevelName(self.level),
                   record.levelname))
            return True
        self.matched += 1
        return False

    def __enter__(self):
        if (self.level is not None
                and self.level < self.logger.getEffectiveLevel()):
            self.orig_level = self.logger.level
            self.logger.setLevel(self.level)
        self.logger.addFilter(self)
        return self

    def __exit__(self, typ, value, tb):
        if self.orig_level is not None:
            self.logger.setLevel(self.orig_level)
        self.logger.removeFilter(self)
        if typ is None and self.required:
            if not self.matched:
                raise Exception("did not get expected log message")
            if self.deprecated_level_matched >= self.matched:
                warnings.warn(
                    "ExpectLog matched at INFO or below without level "
                    "argument", DeprecationWarning)


# -- the loop of one test ---------------------------------------------------

def new_io_loop():
    """A fresh IOLoop on a new C loop, not made current: Tornado's class
    under ``install()``, else ours."""
    if installed():
        import tornado.ioloop
        return tornado.ioloop.IOLoop(make_current=False)
    return ioloop.IOLoop(make_current=False)


class _LoggedExceptions(logging.Handler):
    """Collects, on the root logger, the records of one test that carry an
    exception (ERROR or above).  ``ExpectLog`` filters sit on the loggers
    themselves, so what they swallow never gets here."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        # A CancelledError is the harness cancelling what the test left
        # pending (Tornado <= 6.5 logs the handler task it cancels).
        if record.exc_info and not isinstance(record.exc_info[1],
                                              asyncio.CancelledError):
            self.records.append(record)

    def start(self):
        logging.getLogger().addHandler(self)
        return self

    def stop(self):
        logging.getLogger().removeHandler(self)

    def report(self):
        """None, or the message that fails the test."""
        if not self.records:
            return None
        formatter = logging.Formatter(
            "%(levelname)s %(name)s: %(message)s")
        parts = [formatter.format(r) for r in self.records]
        self.records = []
        what = ("an exception was" if len(parts) == 1
                else "%d exceptions were" % len(parts))
        return ("%s logged during the test (wrap the code in "
                "tornado_cgen.testing.ExpectLog if it is expected):\n%s"
                % (what, "\n".join(parts)))


def _cancel_pending_tasks(io_loop):
    """Cancel the tasks still pending on the test's loop and let them
    finish, so their coroutines unwind inside the test; returns the first
    exception other than CancelledError that one of them ended with."""
    loop = io_loop.asyncio_loop
    if loop.is_closed():
        return None
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return None
    for task in tasks:
        task.cancel()
    timeout = get_async_test_timeout()

    async def settle():
        # Bounded: a task that swallows its cancellation must not hang the
        # run (Tornado waits for ever).
        return (await asyncio.wait(tasks, timeout=timeout))[1]

    pending = io_loop.run_sync(settle)
    if pending:
        return RuntimeError(
            "%d task(s) the test left pending did not finish within %s "
            "seconds of being cancelled: %s" % (
                len(pending), timeout,
                ", ".join(sorted(repr(t) for t in pending))))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            return task.exception()
    return None


def _owned(io_loop):
    """Whether closing ``io_loop`` is the test's business: not for an
    IOLoop over an asyncio loop someone else runs (Tornado's
    ``AsyncIOMainLoop``, our wrapper of a foreign loop), as Tornado
    decides."""
    if isinstance(io_loop, ioloop._AsyncIOWrapper):
        return False
    platform = sys.modules.get("tornado.platform.asyncio")
    return platform is None or not isinstance(io_loop,
                                              platform.AsyncIOMainLoop)


def close_io_loop(io_loop):
    """Close a test's loop and the fds of its handlers, unless the test
    does not own it.  Where Tornado made its own IOLoop over the same C
    loop (Tornado code run without ``install()``), that one is closed
    first, with its handlers' fds."""
    if not _owned(io_loop):
        return
    loop = io_loop.asyncio_loop
    tornado_ioloop = sys.modules.get("tornado.ioloop")
    if tornado_ioloop is not None:
        theirs = tornado_ioloop.IOLoop._ioloop_for_asyncio.get(loop)
        if theirs is not None and theirs is not io_loop:
            theirs.close(all_fds=True)
    io_loop.close(all_fds=True)


# -- running a coroutine test -----------------------------------------------

def _frames_of(obj):
    """The frames of the chain of suspended coroutines and generators that
    starts at ``obj`` (a coroutine, a generator, a Task, or a future of a
    ``@gen.coroutine``), outermost first."""
    frames = []
    seen = set()
    while obj is not None and id(obj) not in seen and len(frames) < 100:
        seen.add(id(obj))
        if isinstance(obj, types.CoroutineType):
            if obj.cr_frame is not None:
                frames.append(obj.cr_frame)
            obj = obj.cr_await
        elif isinstance(obj, types.GeneratorType):
            if obj.gi_frame is not None:
                frames.append(obj.gi_frame)
            obj = obj.gi_yieldfrom
        elif isinstance(obj, _core.Runner):
            if obj.gen is not None:
                frames.extend(_frames_of(obj.gen))
            obj = obj.future
        elif isinstance(obj, asyncio.Task):
            obj = obj.get_coro()
        else:
            obj = _runner_of(obj)
    return frames


def _runner_of(future):
    """The C Runner whose coroutine resolves ``future``: while it waits it
    is one of the future's done callbacks."""
    for entry in getattr(future, "_callbacks", None) or ():
        callback = entry[0] if isinstance(entry, tuple) else entry
        if (isinstance(callback, _core.Runner)
                and callback.result_future is future):
            return callback
    return None


def _where(root):
    frames = _frames_of(root)
    if not frames:
        return ""
    summary = traceback.StackSummary.extract(
        ((f, f.f_lineno) for f in frames), lookup_lines=True)
    return "; it was suspended at:\n" + "".join(summary.format()).rstrip()


def run_coroutine_test(io_loop, start, timeout, name):
    """Run ``start()`` (it returns a coroutine, a future or a plain value)
    on ``io_loop`` until it finishes, and return its result or raise its
    exception.  After ``timeout`` seconds (None: no limit) raise
    TimeoutError saying where the coroutine was suspended; it is then
    cancelled, as ``run_sync`` does."""
    __tracebackhide__ = True
    recognise_tornado_gen()
    state = {"root": None, "where": None}
    asyncio_loop = io_loop.asyncio_loop

    async def main():
        __tracebackhide__ = True
        result = start()
        state["root"] = result
        if result is None:
            return None
        if not inspect.isawaitable(result):
            result = gen.convert_yielded(result)
        return await result

    def on_timeout():
        state["where"] = _where(state["root"])
        io_loop.stop()

    def on_done(_):
        io_loop.stop()

    task = asyncio_loop.create_task(main())
    task.add_done_callback(on_done)
    timer = None
    if timeout is not None:
        timer = asyncio_loop.call_later(timeout, on_timeout)
    try:
        io_loop.start()
    finally:
        # Neither may stop the loop again once this run is over.
        task.remove_done_callback(on_done)
        if timer is not None:
            timer.cancel()
    if not task.done():
        task.cancel()
        if state["where"] is None:
            raise RuntimeError("the loop stopped before %s finished" % name)
        error = ioloop.TimeoutError("%s timed out after %s seconds%s" % (
            name, timeout, state["where"]))
        error.tornado_cgen_test_timeout = True
        raise error from None
    return task.result()


def _coroutine_for(func):
    """How ``gen_test`` and the ``gen_test`` marker wrap a test function
    that is not ``async def``: with the coroutine decorator of the mode."""
    if installed():
        import tornado.gen
        return tornado.gen.coroutine(func)
    return gen.coroutine(func)


def recognise_tornado_gen():
    """Standalone, with Tornado's ``gen`` imported as well: have the C
    Runner take Tornado's ``Return``, ``moment`` and ``_null_future`` too
    (the state ``uninstall()`` leaves it in), so a generator test written
    against Tornado's ``gen`` runs on our Runner unchanged."""
    tgen = sys.modules.get("tornado.gen")
    if tgen is not None and not installed():
        gen._setup_core(tgen)


def gen_test(func=None, timeout=None):
    """Run a test method of an ``AsyncTestCase`` as a coroutine on
    ``self.io_loop``: a generator (``@gen.coroutine`` style) or an
    ``async def``.  It fails after ``timeout`` seconds, by default
    ``get_async_test_timeout()`` when the decorator is applied."""
    if timeout is None:
        timeout = get_async_test_timeout()

    def wrap(f):
        if inspect.iscoroutinefunction(f):
            body = f
        else:
            body = _coroutine_for(f)

        @functools.wraps(f)
        def test(self, *args, **kwargs):
            __tracebackhide__ = True
            return run_coroutine_test(
                self.io_loop, functools.partial(body, self, *args, **kwargs),
                timeout, getattr(f, "__qualname__", "the test"))

        return test

    if func is not None:
        return wrap(func)
    return wrap


# Not a test, whatever python_functions says.
gen_test.__test__ = False


# -- the test cases ---------------------------------------------------------

class AsyncTestCase(unittest.TestCase):
    """A TestCase with a fresh IOLoop per test (``self.io_loop``), as
    ``tornado.testing.AsyncTestCase``: decorate coroutine tests with
    ``gen_test``; ``stop()``/``wait()`` for callback style."""

    def __init__(self, methodName="runTest"):
        super().__init__(methodName)
        self.__stopped = False
        self.__running = False
        self.__failure = None
        self.__stop_args = None
        self.__timeout = None
        self.__logged = None

    def setUp(self):
        super().setUp()
        self.__logged = _LoggedExceptions().start()
        self.addCleanup(self.__logged.stop)
        if type(self).get_new_ioloop is not AsyncTestCase.get_new_ioloop:
            warnings.warn("get_new_ioloop is deprecated", DeprecationWarning)
        self.io_loop = self.get_new_ioloop()
        asyncio.set_event_loop(self.io_loop.asyncio_loop)
        self.addCleanup(self.__close_if_left)

    def __close_if_left(self):
        # A setUp that failed after this point gets no tearDown: the loop
        # is not left open and set for the tests after it.
        if not self.io_loop.asyncio_loop.is_closed() and _owned(self.io_loop):
            asyncio.set_event_loop(None)
            close_io_loop(self.io_loop)

    def tearDown(self):
        failed = _cancel_pending_tasks(self.io_loop)
        if failed is not None:
            self._handle_exception(type(failed), failed, failed.__traceback__)
        process = sys.modules.get("tornado.process")
        if process is not None:
            process.Subprocess.uninitialize()
        asyncio.set_event_loop(None)
        close_io_loop(self.io_loop)
        # Futures dropped in cycles report a lost exception when collected:
        # collect now, so it is this test's.
        gc.collect()
        self.__logged.stop()
        report = self.__logged.report()
        super().tearDown()
        self.__rethrow()
        if report is not None:
            raise self.failureException(report)

    def get_new_ioloop(self):
        """The IOLoop for one test; by default a new one (see
        ``new_io_loop``)."""
        return new_io_loop()

    def _handle_exception(self, typ, value, tb):
        if self.__failure is None:
            self.__failure = (typ, value, tb)
        else:
            logging.getLogger("tornado.application").error(
                "multiple unhandled exceptions in test",
                exc_info=(typ, value, tb))
        self.stop()
        return True

    def __rethrow(self):
        if self.__failure is not None:
            failure, self.__failure = self.__failure, None
            raise failure[1].with_traceback(failure[2])

    def run(self, result=None):
        ret = super().run(result)
        # Last resort: a failure that escaped tearDown is not lost.
        self.__rethrow()
        return ret

    def _callTestMethod(self, method):
        result = method()
        if isinstance(result, types.GeneratorType) or inspect.iscoroutine(
                result):
            result.close()
            raise TypeError(
                "Generator and coroutine test methods should be decorated "
                "with tornado_cgen.testing.gen_test")
        if result is not None:
            raise ValueError(
                "Return value from test method ignored: %r" % (result,))

    def stop(self, _arg=None, **kwargs):
        """Stop the loop so that one ``wait()`` returns; the positional
        argument or the keywords are what it returns."""
        assert _arg is None or not kwargs
        self.__stop_args = kwargs or _arg
        if self.__running:
            self.io_loop.stop()
            self.__running = False
        self.__stopped = True

    def wait(self, condition=None, timeout=None):
        """Run the loop until ``stop()`` (and ``condition()``, if given, is
        true), failing after ``timeout`` seconds (default
        ``get_async_test_timeout()``); returns what ``stop`` was given."""
        if timeout is None:
            timeout = get_async_test_timeout()
        if not self.__stopped:
            if timeout:
                def on_timeout():
                    try:
                        raise self.failureException(
                            "Async operation timed out after %s seconds"
                            % timeout)
                    except Exception:
                        self.__failure = sys.exc_info()
                    self.stop()

                self.__timeout = self.io_loop.add_timeout(
                    self.io_loop.time() + timeout, on_timeout)
            while True:
                self.__running = True
                self.io_loop.start()
                if (self.__failure is not None or condition is None
                        or condition()):
                    break
            if self.__timeout is not None:
                self.io_loop.remove_timeout(self.__timeout)
                self.__timeout = None
        assert self.__stopped
        self.__stopped = False
        self.__rethrow()
        result, self.__stop_args = self.__stop_args, None
        return result


def _http_test_cases():
    """Define the HTTP test cases; they need Tornado's server and client."""
    from tornado.httpclient import AsyncHTTPClient
    from tornado.httpserver import HTTPServer
    import tornado

    class AsyncHTTPTestCase(AsyncTestCase):
        """An ``AsyncTestCase`` that starts Tornado's ``HTTPServer`` on the
        application ``get_app()`` returns, as Tornado's class of the same
        name: ``self.http_client``, ``fetch(path)``, ``get_url(path)``."""

        def setUp(self):
            super().setUp()
            sock, port = bind_unused_port()
            self.addCleanup(sock.close)      # the server's once it listens
            self.__port = port
            self.http_client = self.get_http_client()
            # Closed by tearDown, else (setUp failed further on) here: an
            # open client stays in AsyncHTTPClient's cache, and keeps the
            # loop it is keyed by alive, for good.  (close() is idempotent.)
            self.addCleanup(self.http_client.close)
            self._app = self.get_app()
            self.http_server = self.get_http_server()
            self.http_server.add_sockets([sock])

        def get_http_client(self):
            return AsyncHTTPClient()

        def get_http_server(self):
            return HTTPServer(self._app, **self.get_httpserver_options())

        def get_app(self):
            """Return the application (or ``HTTPServer`` callback) to test.

            Abstract, as in Tornado: a subclass that does not override it
            fails in setUp with NotImplementedError (the type Tornado
            raises), here with a message that says what is missing."""
            raise NotImplementedError(
                "%s must override get_app() to return the application to "
                "test" % type(self).__name__)

        def fetch(self, path, raise_error=False, **kwargs):
            """Fetch ``path`` from the test server (a whole URL as is) and
            return the response; ``raise_error`` as ``AsyncHTTPClient``'s
            but false by default."""
            if path.lower().startswith(("http://", "https://")):
                url = path
            else:
                url = self.get_url(path)
            return self.io_loop.run_sync(
                lambda: self.http_client.fetch(
                    url, raise_error=raise_error, **kwargs),
                timeout=get_async_test_timeout())

        def get_httpserver_options(self):
            return {}

        def get_http_port(self):
            return self.__port

        def get_protocol(self):
            return "http"

        def get_url(self, path):
            return "%s://127.0.0.1:%s%s" % (
                self.get_protocol(), self.get_http_port(), path)

        def tearDown(self):
            self.http_server.stop()
            self.io_loop.run_sync(self.http_server.close_all_connections,
                                  timeout=get_async_test_timeout())
            self.http_client.close()
            del self.http_server
            del self._app
            super().tearDown()

    class AsyncHTTPSTestCase(AsyncHTTPTestCase):
        """``AsyncHTTPTestCase`` over TLS, with the self-signed test
        certificate that ships with Tornado unless ``get_ssl_options`` is
        overridden."""

        def get_http_client(self):
            return AsyncHTTPClient(force_instance=True,
                                   defaults=dict(validate_cert=False))

        def get_httpserver_options(self):
            return dict(ssl_options=self.get_ssl_options())

        def get_ssl_options(self):
            return AsyncHTTPSTestCase.default_ssl_options()

        @staticmethod
        def default_ssl_options():
            where = os.path.join(os.path.dirname(tornado.__file__), "test")
            return dict(certfile=os.path.join(where, "test.crt"),
                        keyfile=os.path.join(where, "test.key"))

        def get_protocol(self):
            return "https"

    for cls in (AsyncHTTPTestCase, AsyncHTTPSTestCase):
        cls.__module__ = __name__
        cls.__qualname__ = cls.__name__
    return AsyncHTTPTestCase, AsyncHTTPSTestCase


def __getattr__(name):
    if name in _HTTP_CLASSES:
        try:
            classes = _http_test_cases()
        except ImportError as e:
            raise ImportError(
                "tornado_cgen.testing.%s needs Tornado installed (%s)"
                % (name, e), name=name) from e
        globals().update(zip(_HTTP_CLASSES, classes))
        return globals()[name]
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
