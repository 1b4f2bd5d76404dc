"""The pytest plugin of tornado-cgen (entry point ``pytest11``).

Fixtures:

* ``io_loop``: a fresh IOLoop on a new C loop per test, also asyncio's loop
  for the thread, closed with ``all_fds=True`` after the test (Tornado's
  ``IOLoop`` under ``install()``, else ``tornado_cgen.ioloop.IOLoop``);
* for Tornado web applications, pytest-tornado's names and meanings:
  ``app`` (the user's; ``--app-fixture`` names another), ``http_server``,
  ``http_client``, ``http_port``, ``base_url``, and ``https_server``,
  ``https_client``, ``https_port`` over the user's ``ssl_options`` fixture
  (``--ssl-options-fixture``).

``@pytest.mark.gen_test`` and ``@pytest.mark.gen_test(timeout=...)`` run a
generator-style or ``async def`` test as a coroutine on ``io_loop`` (the
default timeout: ``--async-test-timeout``, else ``ASYNC_TEST_TIMEOUT``,
else 5 seconds).  ``async def`` fixtures, with or without a ``yield``, run
on the test's ``io_loop`` too, unless pytest-asyncio has claimed them (a
``@pytest_asyncio.fixture``, or any async fixture in its auto mode).

``--tornado-cgen`` (or ``tornado_cgen = true`` in the ini file) calls
``tornado_cgen.install()`` before conftest files and test modules are
imported, so a Tornado application's own tests run on the C code.

An exception logged during a test that uses ``io_loop`` (outside
``ExpectLog``), or one never retrieved from a future collected during it,
fails the test; ``tornado_cgen_fail_on_logged_exceptions = false`` in the
ini file turns that off.
"""
import asyncio
import functools
import gc
import importlib.util
import inspect

import pytest

from . import __version__, ioloop, testing
from . import loop as _loop
from ._speedup import install, installed

_LOGGED = pytest.StashKey()


def _pytest_tornado(pluginmanager):
    """Whether pytest-tornado, which this plugin replaces, will load too."""
    return (not pluginmanager.is_blocked("tornado")
            and importlib.util.find_spec("pytest_tornado") is not None)


def pytest_addoption(parser, pluginmanager):
    group = parser.getgroup("tornado-cgen")
    group.addoption(
        "--tornado-cgen", action="store_true", default=False,
        dest="tornado_cgen",
        help="call tornado_cgen.install() before collection, so Tornado "
             "code under test runs on tornado-cgen's C Runner and loop")
    parser.addini(
        "tornado_cgen", type="bool", default=False,
        help="call tornado_cgen.install() before collection "
             "(as --tornado-cgen)")
    parser.addini(
        "tornado_cgen_fail_on_logged_exceptions", type="bool", default=True,
        help="fail a test that uses io_loop when an exception is logged "
             "during it outside ExpectLog (default: true)")
    if _pytest_tornado(pluginmanager):
        # It defines the same options; pytest_configure says what to do.
        return
    group.addoption(
        "--async-test-timeout", type=float, default=None,
        dest="async_test_timeout",
        help="seconds before a gen_test test fails (default: the "
             "ASYNC_TEST_TIMEOUT environment variable, else 5)")
    group.addoption(
        "--app-fixture", default="app", dest="app_fixture",
        help="the fixture that returns the Tornado application that "
             "http_server serves (default: app)")
    group.addoption(
        "--ssl-options-fixture", default="ssl_options",
        dest="ssl_options_fixture",
        help="the fixture that returns https_server's ssl_options "
             "(default: ssl_options)")


def _wants_install(config, options):
    return bool(getattr(options, "tornado_cgen", False)
                or config.getini("tornado_cgen"))


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    # The earliest point a plugin gets: before conftest files are imported
    # (their @gen.coroutine decorations run at import).
    if _wants_install(early_config, early_config.known_args_namespace):
        _install()


def pytest_configure(config):
    if (config.pluginmanager.has_plugin("tornado")
            or config.pluginmanager.has_plugin("pytest_tornado")):
        raise pytest.UsageError(
            "pytest-tornado is loaded as well as tornado-cgen's plugin, which "
            "replaces it (the same fixtures, marker and options): uninstall "
            "pytest-tornado, or run with -p no:tornado")
    config.addinivalue_line(
        "markers",
        "gen_test(timeout=None): run the test as a coroutine on the io_loop "
        "fixture (tornado-cgen)")
    # Loaded from a conftest or with -p: the hook above did not run for us.
    if _wants_install(config, config.option) and not installed():
        _install()


def _install():
    try:
        install()
    except ImportError as e:      # no Tornado, or one older than 6.2
        raise pytest.UsageError("--tornado-cgen: %s" % e) from None


def pytest_report_header(config):
    if installed():
        import tornado
        return ("tornado-cgen %s: install() is on: Tornado %s runs on its C "
                "Runner and loop" % (__version__, tornado.version))
    return None


def _timeout(config, marker=None):
    if marker is not None and "timeout" in marker.kwargs:
        return marker.kwargs["timeout"]
    # (The options may be pytest-tornado's, not defined by us: the
    # defaults then stand in.)
    value = config.getoption("async_test_timeout", None)
    return testing.get_async_test_timeout() if value is None else value


# -- collection and running -------------------------------------------------

@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    # pytest refuses generator functions as tests; a gen_test one is a
    # @gen.coroutine-style test.
    if (inspect.isgeneratorfunction(obj)
            and collector.istestfunction(obj, name)):
        probe = pytest.Function.from_parent(collector, name=name)
        if probe.get_closest_marker("gen_test") is not None:
            return list(collector._genfunctions(name, obj))
    return None


def pytest_collection_modifyitems(config, items):
    if not _asyncio_mode_auto(config):
        return
    for item in items:
        if (item.get_closest_marker("gen_test") is not None
                and inspect.iscoroutinefunction(getattr(item, "obj", None))):
            raise pytest.UsageError(
                "%s: an async def gen_test test needs pytest-asyncio in "
                "strict mode (asyncio_mode = strict); in auto mode "
                "pytest-asyncio runs every async def test itself"
                % item.nodeid)


def _asyncio_mode_auto(config):
    if not config.pluginmanager.has_plugin("asyncio"):
        return False
    try:
        mode = config.getoption("asyncio_mode", None) or \
            config.getini("asyncio_mode")
    except ValueError:
        return False
    return str(mode).lower().endswith("auto")


def _is_our_async_fixture(fixturedef, config):
    """An ``async def`` fixture (with or without ``yield``) that this
    plugin runs: not one pytest-asyncio has claimed."""
    func = getattr(fixturedef.func, "__func__", fixturedef.func)
    if not (inspect.iscoroutinefunction(func)
            or inspect.isasyncgenfunction(func)):
        return False
    if getattr(func, "_force_asyncio_fixture", False):
        return False
    return not _asyncio_mode_auto(config)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    names = getattr(item, "fixturenames", None)
    if names is None or "io_loop" in names:
        return
    defs = item._fixtureinfo.name2fixturedefs
    for i, name in enumerate(names):
        fixturedefs = defs.get(name)
        if fixturedefs and _is_our_async_fixture(fixturedefs[-1],
                                                 item.config):
            names.insert(i, "io_loop")     # set up before the fixture
            return
    if item.get_closest_marker("gen_test") is not None:
        names.append("io_loop")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    marker = pyfuncitem.get_closest_marker("gen_test")
    if marker is None:
        return None
    __tracebackhide__ = True
    func = pyfuncitem.obj
    kwargs = {name: pyfuncitem.funcargs[name]
              for name in pyfuncitem._fixtureinfo.argnames}
    body = func if inspect.iscoroutinefunction(func) else \
        testing._coroutine_for(func)
    _run(pyfuncitem.funcargs["io_loop"], functools.partial(body, **kwargs),
         _timeout(pyfuncitem.config, marker), pyfuncitem.name)
    logged = pyfuncitem.stash.get(_LOGGED, None)
    if logged is not None:
        # What was logged so far fails the test itself; the collector runs
        # once, at io_loop's teardown, for what is only lost then.
        _fail_if_logged(logged)
    return True


def _fail_if_logged(logged):
    report = logged.report()
    if report is not None:
        pytest.fail(report, pytrace=False)


def _unless_failed(excinfo):
    return not isinstance(excinfo.value, pytest.fail.Exception)


def _run(io_loop, start, timeout, name):
    """``testing.run_coroutine_test``, its timeout reported as a failure
    whose message is the whole story (where the coroutine was stuck)."""
    # Hidden, except under that failure: pytest shows only its message,
    # but would add a note that every frame is hidden.
    __tracebackhide__ = _unless_failed
    try:
        return testing.run_coroutine_test(io_loop, start, timeout, name)
    except ioloop.TimeoutError as e:      # asyncio's (3.10: not builtin)
        if not getattr(e, "tornado_cgen_test_timeout", False):
            raise
        message = str(e)
    pytest.fail(message, pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    if not _is_our_async_fixture(fixturedef, request.config):
        yield
        return
    original = fixturedef.func
    fixturedef.func = _run_on_io_loop(original, fixturedef, request)
    try:
        yield
    finally:
        fixturedef.func = original


def _run_on_io_loop(func, fixturedef, request):
    """A synchronous stand-in for an async fixture: it runs the fixture's
    coroutine (or its async generator up to the ``yield``, and the rest at
    teardown) on the test's io_loop."""
    name = fixturedef.argname

    def setup(**kwargs):
        __tracebackhide__ = True
        if fixturedef.scope != "function":
            pytest.fail(
                "async fixture %r is %s-scoped: tornado-cgen runs async "
                "fixtures on the test's io_loop, so they must be "
                "function-scoped" % (name, fixturedef.scope), pytrace=False)
        target = func
        if request.instance is not None and hasattr(func, "__func__"):
            target = func.__func__.__get__(request.instance)
        io_loop = request.getfixturevalue("io_loop")
        timeout = _timeout(request.config)
        what = "fixture %r" % name
        if not inspect.isasyncgenfunction(func):
            return _run(io_loop, functools.partial(target, **kwargs),
                        timeout, what)
        agen = target(**kwargs)
        value = _run(io_loop, agen.__anext__, timeout, what)

        def finish():
            __tracebackhide__ = True
            try:
                _run(io_loop, agen.__anext__, timeout, what)
            except StopAsyncIteration:
                return
            pytest.fail("async fixture %r yielded more than once" % name,
                        pytrace=False)

        request.addfinalizer(finish)
        return value

    return setup


# -- fixtures ---------------------------------------------------------------

@pytest.fixture
def io_loop(request):
    """A fresh IOLoop on a new C loop, asyncio's loop for the test, closed
    (with its handlers' fds) after it."""
    fail_on_logged = request.config.getini(
        "tornado_cgen_fail_on_logged_exceptions")
    logged = testing._LoggedExceptions()
    # The thread's loop before the test (another plugin's, say), put back
    # after it rather than dropped.
    previous = _loop._current_loop(running=False)
    loop = testing.new_io_loop()
    try:
        logged.start()
        if fail_on_logged:
            request.node.stash[_LOGGED] = logged
        asyncio.set_event_loop(loop.asyncio_loop)
        yield loop
        failed = testing._cancel_pending_tasks(loop)
    finally:
        try:
            if previous is not None and previous.is_closed():
                previous = None
            asyncio.set_event_loop(previous)
            testing.close_io_loop(loop)
            gc.collect()
        finally:
            logged.stop()
            request.node.stash[_LOGGED] = None
    if failed is not None:
        raise failed
    if fail_on_logged:
        _fail_if_logged(logged)


@pytest.fixture
def _unused_port():
    sock, port = testing.bind_unused_port()
    yield sock, port
    sock.close()


@pytest.fixture
def http_port(_unused_port):
    """The port of the test server."""
    return _unused_port[1]


@pytest.fixture
def https_port(_unused_port):
    """The port of the HTTPS test server."""
    return _unused_port[1]


@pytest.fixture
def base_url(request):
    """``scheme://localhost:port`` of the test server (https when the test
    uses the https fixtures)."""
    names = request.fixturenames
    if {"https_port", "https_client", "https_server"} & set(names):
        return "https://localhost:%s" % request.getfixturevalue("https_port")
    return "http://localhost:%s" % request.getfixturevalue("http_port")


def _server(request, io_loop, sock, **options):
    from tornado.httpserver import HTTPServer
    app = request.getfixturevalue(
        request.config.getoption("app_fixture", "app"))
    server = HTTPServer(app, **options)
    server.add_socket(sock)

    def stop():
        server.stop()
        io_loop.run_sync(server.close_all_connections,
                         timeout=_timeout(request.config))

    request.addfinalizer(stop)
    return server


@pytest.fixture
def http_server(request, io_loop, _unused_port):
    """Tornado's HTTPServer serving the ``app`` fixture on ``http_port``."""
    return _server(request, io_loop, _unused_port[0])


@pytest.fixture
def https_server(request, io_loop, _unused_port):
    """Tornado's HTTPServer serving the ``app`` fixture over TLS on
    ``https_port``, with the ``ssl_options`` fixture."""
    ssl_options = request.getfixturevalue(
        request.config.getoption("ssl_options_fixture", "ssl_options"))
    return _server(request, io_loop, _unused_port[0],
                   ssl_options=ssl_options)


def _client(request):
    from tornado.httpclient import AsyncHTTPClient
    client = AsyncHTTPClient()
    request.addfinalizer(client.close)
    return client


@pytest.fixture
def http_client(request, http_server):
    """Tornado's AsyncHTTPClient, for requests to ``http_server``."""
    return _client(request)


@pytest.fixture
def https_client(request, https_server):
    """Tornado's AsyncHTTPClient, for requests to ``https_server``."""
    return _client(request)
