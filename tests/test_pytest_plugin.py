"""The pytest plugin, through real pytest runs (pytest's ``pytester``).

The example suites in ``tests/plugin_examples/`` test a small Tornado app
in the three styles (tornado.testing's unittest classes, pytest-tornado's
fixtures, plain pytest); they run with and without ``--tornado-cgen`` and
with and without pytest-asyncio loaded alongside, unchanged each time.
Runs that call install() go to a subprocess, the rest run in-process.
"""
import importlib.metadata
import importlib.util
import pathlib
import sys

import pytest

import tornado_cgen

EXAMPLES = pathlib.Path(__file__).parent / "plugin_examples"


def _entry_point_loaded():
    for ep in importlib.metadata.entry_points(group="pytest11"):
        if ep.value == "tornado_cgen.pytest_plugin":
            return True
    return False


# Installed (pip install .), pytest loads the plugin itself; from a source
# tree on PYTHONPATH it is named.
PLUGIN = [] if _entry_point_loaded() else ["-p", "tornado_cgen.pytest_plugin"]
HAVE_PYTEST_ASYNCIO = importlib.util.find_spec("pytest_asyncio") is not None
ASYNCIO_OFF = ["-p", "no:asyncio"] if HAVE_PYTEST_ASYNCIO else []
INI = """
[pytest]
filterwarnings = error
"""


def test_entry_point_registered_when_installed():
    try:
        dist = importlib.metadata.distribution("tornado-cgen")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("tornado-cgen is not pip-installed here")
    files = {str(f) for f in dist.files or ()}
    if "tornado_cgen/pytest_plugin.py" not in files:
        pytest.skip("the installed tornado-cgen is an older build")
    eps = [ep for ep in dist.entry_points if ep.group == "pytest11"]
    assert [(ep.name, ep.value) for ep in eps] == [
        ("tornado_cgen", "tornado_cgen.pytest_plugin")]


def run_inline(pytester, *args):
    pytester.makeini(INI)
    return pytester.runpytest_inprocess(*PLUGIN, *ASYNCIO_OFF, *args)


def run_subprocess(pytester, *args, asyncio_plugin=False):
    if asyncio_plugin:
        pytester.makeini(INI + "asyncio_default_fixture_loop_scope = function\n")
    else:
        pytester.makeini(INI)
    extra = [] if asyncio_plugin else ASYNCIO_OFF
    return pytester.runpytest_subprocess(*PLUGIN, *extra, *args,
                                         timeout=300)


# -- outcomes and messages --------------------------------------------------

OUTCOMES = '''
import asyncio
import pytest
from tornado_cgen import gen


@pytest.mark.gen_test
def test_generator_passes(io_loop):
    value = yield gen.sleep(0.001)
    assert value is None


@pytest.mark.gen_test
async def test_native_passes():
    await asyncio.sleep(0)


@pytest.mark.gen_test
async def test_native_fails():
    await asyncio.sleep(0)
    assert 1 + 1 == 3


@pytest.mark.gen_test
def test_generator_fails():
    yield gen.moment
    raise KeyError("from the generator")


@pytest.mark.gen_test(timeout=0.1)
async def test_times_out():
    await stuck_here()


async def stuck_here():
    await asyncio.sleep(30)


@pytest.mark.gen_test
async def test_logs_an_exception(io_loop):
    io_loop.add_callback(lambda: 1 / 0)
    await asyncio.sleep(0.01)


@pytest.fixture
async def broken():
    await asyncio.sleep(0)
    raise RuntimeError("fixture broke")


@pytest.mark.gen_test
async def test_fixture_errors(broken):
    pass
'''


def test_outcomes_and_messages(pytester):
    pytester.makepyfile(test_outcomes=OUTCOMES)
    result = run_inline(pytester)
    result.assert_outcomes(passed=2, failed=4, errors=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*_ test_native_fails _*",
        ">*assert 1 + 1 == 3",
        "*_ test_generator_fails _*",
        '>*raise KeyError("from the generator")',
        "*_ test_times_out _*",
        "test_times_out timed out after 0.1 seconds; it was suspended at:",
        '  File "*test_outcomes.py", line *, in test_times_out',
        "    await stuck_here()",
        '  File "*test_outcomes.py", line *, in stuck_here',
        "    await asyncio.sleep(30)",
    ])
    result.stdout.fnmatch_lines([
        "*_ test_logs_an_exception _*",
        "an exception was logged during the test*",
        "ERROR tornado.application: Exception in callback*",
        "ZeroDivisionError: division by zero",
    ])
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_fixture_errors*",
        '>*raise RuntimeError("fixture broke")',
    ])
    # Our frames add nothing to the failures.
    assert "pytest_plugin.py" not in out
    assert "tornado_cgen/testing.py" not in out
    assert "hidden" not in out


def test_timeout_option_and_environment(pytester, monkeypatch):
    pytester.makepyfile(test_slow='''
        import asyncio, pytest

        @pytest.mark.gen_test
        async def test_slow():
            await asyncio.sleep(30)
    ''')
    result = run_inline(pytester, "--async-test-timeout=0.05")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*timed out after 0.05 seconds*"])
    monkeypatch.setenv("ASYNC_TEST_TIMEOUT", "0.07")
    result = run_inline(pytester)
    result.stdout.fnmatch_lines(["*timed out after 0.07 seconds*"])


def test_logged_exceptions_can_be_expected_or_allowed(pytester):
    pytester.makepyfile(test_logged='''
        import asyncio, pytest
        from tornado_cgen.testing import ExpectLog

        @pytest.mark.gen_test
        async def test_expected(io_loop):
            with ExpectLog("tornado.application", "Exception in callback"):
                io_loop.add_callback(lambda: 1 / 0)
                await asyncio.sleep(0.01)

        @pytest.mark.gen_test
        async def test_unexpected(io_loop):
            io_loop.add_callback(lambda: 1 / 0)
            await asyncio.sleep(0.01)

        def test_sync_lost_future(io_loop):
            from tornado_cgen.concurrent import Future
            fut = Future()
            fut.set_exception(KeyError("nobody looked"))
            fut.cycle = fut
    ''')
    result = run_inline(pytester)
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_sync_lost_"
                                 "future*", "*nobody looked*"])
    pytester.makeini(INI + "tornado_cgen_fail_on_logged_exceptions = false\n")
    result = pytester.runpytest_inprocess(*PLUGIN, *ASYNCIO_OFF)
    result.assert_outcomes(passed=3)


# -- fixtures ---------------------------------------------------------------

def test_io_loop_and_async_fixtures(pytester):
    pytester.makepyfile(test_fixtures='''
        import asyncio
        import pytest
        from tornado_cgen.ioloop import IOLoop

        order = []

        @pytest.fixture
        async def value():
            await asyncio.sleep(0)
            return 42

        @pytest.fixture
        async def resource(value):
            order.append("setup")
            await asyncio.sleep(0)
            yield value + 1
            await asyncio.sleep(0)
            order.append("teardown")

        @pytest.fixture(scope="module")
        async def wide():
            return 1

        @pytest.mark.gen_test
        async def test_async_fixtures(resource, io_loop):
            assert resource == 43
            assert asyncio.get_running_loop() is io_loop.asyncio_loop
            assert IOLoop.current() is io_loop

        def test_sync_test_with_async_fixture(resource):
            assert resource == 43

        def test_teardown_ran():
            assert order == ["setup", "teardown"] * 2

        def test_io_loop_is_fresh_and_current(io_loop):
            assert type(io_loop).__module__ == "tornado_cgen.ioloop"
            assert asyncio.get_event_loop() is io_loop.asyncio_loop
            assert not io_loop.asyncio_loop.is_closed()
            test_io_loop_is_fresh_and_current.seen = io_loop

        def test_previous_loop_closed():
            assert test_io_loop_is_fresh_and_current.seen.is_closed()

        def test_wide_scoped_async_fixture(wide):
            pass

        class TestInAClass:
            @pytest.fixture
            async def method_fixture(self):
                return type(self).__name__

            @pytest.mark.gen_test
            def test_method(self, method_fixture):
                yield
                assert method_fixture == "TestInAClass"
    ''')
    result = run_inline(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=6, errors=1)
    result.stdout.fnmatch_lines([
        "*async fixture 'wide' is module-scoped: tornado-cgen runs async "
        "fixtures on the test's io_loop, so they must be function-scoped*"])


def test_pytest_tornado_fixtures(pytester):
    pytest.importorskip("tornado")
    # Imported here first: an in-process run drops the modules it imported
    # itself, and a second run would mix two copies of Tornado.
    import tornado.httpclient, tornado.httpserver, tornado.web  # noqa: F401
    import tornado.simple_httpclient  # noqa: F401
    pytester.makepyfile(test_web='''
        import asyncio
        import pytest
        import tornado.web
        from tornado_cgen.testing import AsyncHTTPSTestCase


        class Proto(tornado.web.RequestHandler):
            def get(self):
                self.write(self.request.protocol)


        @pytest.fixture
        def app():
            return tornado.web.Application([("/", Proto)])


        @pytest.fixture
        def ssl_options():
            return AsyncHTTPSTestCase.default_ssl_options()


        @pytest.mark.gen_test
        def test_http(http_client, base_url, http_port, http_server):
            assert base_url == "http://localhost:%d" % http_port
            response = yield http_client.fetch(base_url)
            assert response.body == b"http"


        @pytest.mark.gen_test
        async def test_https(https_client, base_url, https_port):
            assert base_url == "https://localhost:%d" % https_port
            response = await https_client.fetch(base_url,
                                                validate_cert=False)
            assert response.body == b"https"


        @pytest.mark.gen_test
        def test_tornado_gen_without_install(io_loop):
            # Tornado's own moment and Return, on our Runner.
            import tornado.gen
            yield tornado.gen.moment
            raise tornado.gen.Return()


        def test_no_app(request):
            with pytest.raises(pytest.FixtureLookupError):
                request.getfixturevalue("nonexistent_app_fixture")
    ''')
    result = run_inline(pytester)
    result.assert_outcomes(passed=4)
    pytester.makeconftest('''
        import pytest, tornado.web

        @pytest.fixture
        def other_app():
            return tornado.web.Application([])
    ''')
    result = pytester.runpytest_inprocess(
        *PLUGIN, *ASYNCIO_OFF, "--app-fixture=other_app", "-k", "test_http and not https")
    result.assert_outcomes(failed=1)     # other_app has no "/" route
    result.stdout.fnmatch_lines(["*HTTP 404*"])


# -- a Tornado app's own suites: --tornado-cgen, pytest-asyncio --------------

PROBE = '''
import tornado.gen
import tornado.ioloop
import tornado_cgen
import webapp


def test_probe(io_loop):
    print("PROBE installed=%s decorated=%s ioloop=%s" % (
        tornado_cgen.installed(),
        type(webapp.add).__module__ + "." + type(webapp.add).__name__,
        isinstance(io_loop, tornado.ioloop.IOLoop)))
'''


def _copy_examples(pytester):
    tornado = pytest.importorskip("tornado")
    if tornado.version_info < (6, 3):
        # Not ours: pytest >= 8 cannot collect Tornado 6.2's AsyncTestCase
        # subclasses (its __init__ wraps the method pytest names runTest).
        pytest.skip("Tornado %s's test cases predate this pytest"
                    % tornado.version)
    for path in EXAMPLES.glob("*.py"):
        name = path.name
        if name.startswith("suite_"):
            name = "test_" + name[len("suite_"):]
        pytester.path.joinpath(name).write_text(path.read_text())
    pytester.makepyfile(test_probe=PROBE)
    pytester.syspathinsert()


EXAMPLE_TESTS = 6 + 5 + 3 + 1


@pytest.mark.parametrize("how", ["option", "ini", "off"])
def test_tornado_app_suites(pytester, how):
    _copy_examples(pytester)
    args = ["-s", "-p", "no:cacheprovider"]
    if how == "option":
        args.append("--tornado-cgen")
    if how == "ini":
        pytester.makeini(INI + "tornado_cgen = true\n")
        result = pytester.runpytest_subprocess(*PLUGIN, *ASYNCIO_OFF, *args,
                                               timeout=300)
    else:
        result = run_subprocess(pytester, *args)
    result.assert_outcomes(passed=EXAMPLE_TESTS)
    on = how != "off"
    header = ("tornado-cgen %s: install() is on: Tornado * runs on its C "
              "Runner and loop" % tornado_cgen.__version__)
    if on:
        result.stdout.fnmatch_lines([header])
        # Decorated at import, before install() could run otherwise: the
        # plugin installed first.
        result.stdout.fnmatch_lines(
            ["*PROBE installed=True decorated=tornado_cgen._core.Coroutine ioloop=True*"])
    else:
        result.stdout.no_fnmatch_line(header)
        result.stdout.fnmatch_lines(
            ["*PROBE installed=False decorated=builtins.function ioloop=False*"])


@pytest.mark.skipif(not HAVE_PYTEST_ASYNCIO, reason="needs pytest-asyncio")
@pytest.mark.parametrize("install", [False, True], ids=["off", "installed"])
def test_alongside_pytest_asyncio(pytester, install):
    _copy_examples(pytester)
    pytester.makepyfile(test_both='''
        import asyncio
        import pytest
        import pytest_asyncio
        import tornado_cgen
        import tornado_cgen.loop


        def ours(loop):
            return isinstance(loop, tornado_cgen.loop.Loop)


        @pytest_asyncio.fixture
        async def theirs_fixture():
            return ours(asyncio.get_running_loop())


        @pytest.fixture
        async def our_fixture():
            return ours(asyncio.get_running_loop())


        @pytest.mark.asyncio
        async def test_pytest_asyncio_marker(theirs_fixture):
            # pytest-asyncio's own loop: asyncio's, or under install()
            # (whose policy gives C loops) one of ours.
            assert theirs_fixture == tornado_cgen.installed()
            assert ours(asyncio.get_running_loop()) == \
                tornado_cgen.installed()


        @pytest.mark.gen_test
        async def test_gen_test_marker(our_fixture):
            assert our_fixture
            assert ours(asyncio.get_running_loop())
    ''')
    args = ["--asyncio-mode=strict"]
    if install:
        args.append("--tornado-cgen")
    result = run_subprocess(pytester, *args, asyncio_plugin=True)
    result.assert_outcomes(passed=EXAMPLE_TESTS + 2)
    result.stdout.fnmatch_lines(["plugins: *asyncio-*"])


def test_without_tornado(pytester):
    # The plugin and the io_loop fixture need no Tornado.
    pytester.makepyfile(test_standalone='''
        import asyncio, sys, pytest
        from tornado_cgen import gen

        @pytest.mark.gen_test
        def test_generator(io_loop):
            yield gen.sleep(0.001)
            assert sys.modules["tornado"] is None

        @pytest.mark.gen_test
        async def test_native():
            await asyncio.sleep(0)

        def test_http_fixture_needs_tornado(request):
            with pytest.raises(ImportError):
                request.getfixturevalue("http_server")
    ''')
    pytester.makeconftest('''
        import sys
        import pytest
        sys.modules["tornado"] = None

        @pytest.fixture
        def app():
            return None
    ''')
    result = run_subprocess(pytester)
    result.assert_outcomes(passed=3)


def test_plugin_module_does_not_import_tornado():
    import subprocess
    code = ("import sys, tornado_cgen.pytest_plugin; "
            "print('tornado' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_tornado_cgen_option_without_tornado(pytester):
    pytester.makepyfile(blocktornado='''
        import sys
        sys.modules["tornado"] = None
    ''')
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    pytester.syspathinsert()
    result = run_subprocess(pytester, "-p", "blocktornado", "--tornado-cgen")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: --tornado-cgen: tornado_cgen.install() needs Tornado >= 6.2*"])


def test_pytest_tornado_alongside_is_a_usage_error(pytester):
    # A stand-in for pytest-tornado: the same options, loaded as a plugin.
    pytester.makepyfile(pytest_tornado='''
        def pytest_addoption(parser):
            parser.addoption("--async-test-timeout", type=float)
            parser.addoption("--app-fixture", default="app")
            parser.addoption("--ssl-options-fixture", default="ssl_options")
    ''')
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = run_subprocess(pytester, "-p", "pytest_tornado")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: pytest-tornado is loaded as well as tornado-cgen's plugin, "
        "which replaces it*-p no:tornado"])


@pytest.mark.skipif(not HAVE_PYTEST_ASYNCIO, reason="needs pytest-asyncio")
def test_pytest_asyncio_auto_mode_is_a_usage_error(pytester):
    pytester.makepyfile(test_x='''
        import pytest

        @pytest.mark.gen_test
        async def test_x():
            pass
    ''')
    result = run_subprocess(pytester, "--asyncio-mode=auto",
                            asyncio_plugin=True)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: test_x.py::test_x: an async def gen_test test needs "
        "pytest-asyncio in strict mode*"])
