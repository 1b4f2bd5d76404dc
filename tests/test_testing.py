"""tornado_cgen.testing: AsyncTestCase, gen_test, ExpectLog and the HTTP
test cases.

``lib`` runs each test on three: "tcg" (tornado_cgen.testing, standalone),
"tornado" (tornado.testing, the oracle: a test that passes on it encodes
Tornado's behaviour) and "tcg-installed" (tornado_cgen.testing while
install() is on).  What only ours does (the test that logs an exception
fails, a timeout says where it was stuck) is tested on ours.
"""
import asyncio
import gc
import importlib
import logging
import os
import socket
import subprocess
import sys
import textwrap
import types
import unittest
import warnings

import pytest

from conftest import tornado_installed

LIBS = ["tcg", "tornado", "tcg-installed"]


@pytest.fixture(params=LIBS)
def lib(request):
    name = request.param
    if name != "tcg":
        pytest.importorskip("tornado")
    ns = types.SimpleNamespace(name=name, ours=name != "tornado")
    if name == "tcg-installed":
        with tornado_installed():
            ns.testing = importlib.import_module("tornado_cgen.testing")
            ns.gen = importlib.import_module("tornado.gen")
            yield ns
        return
    pkg = "tornado" if name == "tornado" else "tornado_cgen"
    ns.testing = importlib.import_module(pkg + ".testing")
    ns.gen = importlib.import_module(pkg + ".gen")
    yield ns


def _skip_before_6_3():
    # tornado_cgen.testing follows Tornado 6.3 and later: 6.2 wrapped test
    # methods (orig_method) and kept a get_new_ioloop loop set after
    # tearDown.
    import tornado
    if tornado.version_info < (6, 3):
        pytest.skip("Tornado %s: tornado_cgen.testing follows 6.3+"
                    % tornado.version)


def run_test(case):
    """Run one TestCase instance; its result."""
    result = unittest.TestResult()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        case.run(result)
    gc.collect()
    return result


def outcome(result):
    if result.errors:
        return "error"
    if result.failures:
        return "failure"
    assert result.testsRun == 1
    return "pass"


def text(result):
    return "\n".join(tb for _, tb in result.errors + result.failures)


# -- gen_test ---------------------------------------------------------------

def test_gen_test_runs_generator_and_native_tests(lib):
    seen = []
    gen = lib.gen

    class T(lib.testing.AsyncTestCase):
        @lib.testing.gen_test
        def test_generator(self):
            yield gen.moment
            value = yield gen.sleep(0.001)
            seen.append(("generator", value))

        @lib.testing.gen_test
        async def test_native(self):
            await asyncio.sleep(0)
            seen.append(("native",
                         asyncio.get_running_loop() is
                         self.io_loop.asyncio_loop))

        @lib.testing.gen_test(timeout=3)
        def test_plain_function(self):
            seen.append(("plain", None))

    for name in ("test_generator", "test_native", "test_plain_function"):
        assert outcome(run_test(T(name))) == "pass", name
    assert seen == [("generator", None), ("native", True), ("plain", None)]


def test_gen_test_failure_shows_the_test_frame(lib):
    class T(lib.testing.AsyncTestCase):
        @lib.testing.gen_test
        async def test_it(self):
            await asyncio.sleep(0)
            self.assertEqual(1, 2, "the assertion message")

    result = run_test(T("test_it"))
    assert outcome(result) == "failure"
    tb = text(result)
    assert "the assertion message" in tb
    assert 'self.assertEqual(1, 2, "the assertion message")' in tb
    if lib.ours:
        # The harness adds no frames of its own.
        assert "tornado_cgen" not in tb, tb


def test_gen_test_timeout(lib):
    class T(lib.testing.AsyncTestCase):
        @lib.testing.gen_test(timeout=0.05)
        async def test_stuck(self):
            await self.wait_here()

        async def wait_here(self):
            await asyncio.sleep(30)

    result = run_test(T("test_stuck"))
    assert outcome(result) == "error"
    tb = text(result)
    assert "TimeoutError" in tb
    assert "timed out after 0.05 seconds" in tb
    if lib.ours:
        # Where it was stuck: the test's await, then the helper's.
        assert "suspended at" in tb
        assert "await self.wait_here()" in tb
        assert "await asyncio.sleep(30)" in tb


def test_gen_test_timeout_shows_generator_coroutine_stack():
    from tornado_cgen import gen
    from tornado_cgen.testing import AsyncTestCase, gen_test

    @gen.coroutine
    def inner():
        yield gen.sleep(30)

    class T(AsyncTestCase):
        @gen_test(timeout=0.05)
        def test_stuck(self):
            yield inner()

    tb = text(run_test(T("test_stuck")))
    assert "yield inner()" in tb
    assert "yield gen.sleep(30)" in tb


def test_gen_test_is_not_a_test(lib):
    assert lib.testing.gen_test.__test__ is False


def test_gen_test_timeout_zero_times_out_at_once(lib):
    class T(lib.testing.AsyncTestCase):
        @lib.testing.gen_test(timeout=0)
        async def test_it(self):
            await asyncio.sleep(0.05)

    result = run_test(T("test_it"))
    assert outcome(result) == "error"
    assert "timed out after 0 seconds" in text(result)


def test_standalone_generator_tests_take_tornados_gen():
    # Without install(), a generator test written against Tornado's gen
    # (its moment, Return) runs on our Runner as it would on Tornado's.
    tgen = pytest.importorskip("tornado.gen")
    from tornado_cgen.testing import AsyncTestCase, gen_test

    class T(AsyncTestCase):
        @gen_test
        def test_moment(self):
            yield tgen.moment
            yield tgen.sleep(0)

        @gen_test
        def test_return(self):
            yield tgen.moment
            raise tgen.Return()

    for name in ("test_moment", "test_return"):
        result = run_test(T(name))
        assert outcome(result) == "pass", text(result)


def test_timeout_cancels_the_test_coroutine(lib):
    unwound = []

    class T(lib.testing.AsyncTestCase):
        @lib.testing.gen_test(timeout=0.05)
        async def test_stuck(self):
            try:
                await asyncio.sleep(30)
            finally:
                unwound.append(True)

    assert outcome(run_test(T("test_stuck"))) == "error"
    assert unwound == [True]


def test_async_test_timeout_environment(lib, monkeypatch):
    monkeypatch.setenv("ASYNC_TEST_TIMEOUT", "0.25")
    assert lib.testing.get_async_test_timeout() == 0.25
    monkeypatch.setenv("ASYNC_TEST_TIMEOUT", "not a number")
    assert lib.testing.get_async_test_timeout() == 5
    monkeypatch.delenv("ASYNC_TEST_TIMEOUT")
    assert lib.testing.get_async_test_timeout() == 5

    # gen_test reads it when it decorates.
    monkeypatch.setenv("ASYNC_TEST_TIMEOUT", "0.05")

    class T(lib.testing.AsyncTestCase):
        @lib.testing.gen_test
        async def test_stuck(self):
            await asyncio.sleep(30)

    monkeypatch.delenv("ASYNC_TEST_TIMEOUT")
    assert "timed out after 0.05 seconds" in text(run_test(T("test_stuck")))


@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited")
def test_undecorated_coroutine_test_is_an_error(lib):
    class T(lib.testing.AsyncTestCase):
        def test_generator(self):
            yield

        async def test_native(self):
            pass

        def test_returns(self):
            return 42

    for name in ("test_generator", "test_native"):
        result = run_test(T(name))
        assert outcome(result) == "error"
        assert "TypeError" in text(result)
        assert "should be decorated with" in text(result)
    result = run_test(T("test_returns"))
    assert outcome(result) == "error"
    assert "Return value from test method ignored: 42" in text(result)


# -- the loop of a test -----------------------------------------------------

def test_each_test_gets_a_fresh_current_loop_closed_after(lib):
    loops = []

    class T(lib.testing.AsyncTestCase):
        def test_one(self):
            loops.append(self.io_loop)
            assert asyncio.get_event_loop() is self.io_loop.asyncio_loop
            if lib.name == "tcg":
                from tornado_cgen.ioloop import IOLoop
                assert IOLoop.current() is self.io_loop
            else:
                from tornado.ioloop import IOLoop
                assert IOLoop.current() is self.io_loop

        test_two = test_one

    assert outcome(run_test(T("test_one"))) == "pass"
    assert outcome(run_test(T("test_two"))) == "pass"
    a, b = loops
    assert a is not b
    assert a.asyncio_loop.is_closed() and b.asyncio_loop.is_closed()
    if lib.ours:
        assert type(a.asyncio_loop).__module__.startswith("tornado_cgen")
    if lib.name == "tcg-installed":
        import tornado.ioloop
        assert isinstance(a, tornado.ioloop.IOLoop)


def test_get_new_ioloop_override_is_deprecated_and_not_owned(lib):
    if lib.name == "tornado":
        _skip_before_6_3()
    # A shared loop handed out by an override of get_new_ioloop is the
    # test's to use, not to close (Tornado: _NON_OWNED_IOLOOPS).
    shared = asyncio.new_event_loop()
    if lib.name == "tcg":
        from tornado_cgen.ioloop import IOLoop
    else:
        from tornado.ioloop import IOLoop
    seen = []

    class T(lib.testing.AsyncTestCase):
        def get_new_ioloop(self):
            asyncio.set_event_loop(shared)
            return IOLoop.current()

        def test_a(self):
            seen.append(self.io_loop)

        test_b = test_a

    try:
        case = T("test_a")
        with pytest.warns(DeprecationWarning, match="get_new_ioloop is "
                          "deprecated"):
            case.setUp()
        case.tearDown()
        case.doCleanups()
        for name in ("test_a", "test_b"):
            assert outcome(run_test(T(name))) == "pass"
        assert seen[0] is seen[1]
        assert not shared.is_closed()
    finally:
        asyncio.set_event_loop(None)
        shared.close()


def test_handler_fds_closed_with_the_loop(lib):
    socks = []

    class T(lib.testing.AsyncTestCase):
        def test_it(self):
            a, b = socket.socketpair()
            socks.extend([a, b])
            self.io_loop.add_handler(a, lambda fd, ev: None,
                                     self.io_loop.READ)

    assert outcome(run_test(T("test_it"))) == "pass"
    a, b = socks
    assert a.fileno() == -1
    b.close()


def test_pending_tasks_are_cancelled_in_teardown(lib):
    unwound = []

    class T(lib.testing.AsyncTestCase):
        @lib.testing.gen_test
        async def test_it(self):
            async def forever():
                try:
                    await asyncio.sleep(30)
                finally:
                    unwound.append(True)
            asyncio.ensure_future(forever())
            await asyncio.sleep(0)

    assert outcome(run_test(T("test_it"))) == "pass"
    assert unwound == [True]


def test_a_task_that_ignores_cancellation_does_not_hang_teardown(
        monkeypatch):
    from tornado_cgen.testing import AsyncTestCase, gen_test
    monkeypatch.setenv("ASYNC_TEST_TIMEOUT", "0.2")
    release = []

    class T(AsyncTestCase):
        @gen_test
        async def test_it(self):
            async def stubborn():
                while not release:
                    try:
                        await asyncio.sleep(30)
                    except asyncio.CancelledError:
                        pass
            self.task = asyncio.ensure_future(stubborn())
            await asyncio.sleep(0)

    case = T("test_it")
    result = run_test(case)
    release.append(True)
    assert outcome(result) == "error"
    assert "1 task(s) the test left pending did not finish within 0.2 " \
        "seconds of being cancelled" in text(result)


def test_stop_and_wait(lib):
    got = []

    class T(lib.testing.AsyncTestCase):
        def test_arg(self):
            self.io_loop.add_callback(self.stop, "value")
            got.append(self.wait())

        def test_kwargs(self):
            self.io_loop.add_callback(lambda: self.stop(a=1))
            got.append(self.wait())

        def test_condition(self):
            count = []

            def tick():
                count.append(1)
                self.stop()
                if len(count) < 3:
                    self.io_loop.add_callback(tick)
            self.io_loop.add_callback(tick)
            self.wait(condition=lambda: len(count) >= 3)
            got.append(len(count))

        def test_timeout(self):
            self.wait(timeout=0.05)

    for name in ("test_arg", "test_kwargs", "test_condition"):
        assert outcome(run_test(T(name))) == "pass", name
    assert got == ["value", {"a": 1}, 3]
    result = run_test(T("test_timeout"))
    assert outcome(result) == "failure"
    assert "Async operation timed out after 0.05 seconds" in text(result)


# -- exceptions logged or lost during a test (ours only) --------------------

def test_logged_exception_fails_the_test():
    from tornado_cgen.testing import AsyncTestCase, ExpectLog

    class T(AsyncTestCase):
        def test_logged(self):
            self.io_loop.add_callback(lambda: 1 / 0)
            self.io_loop.add_callback(self.stop)
            self.wait()

        def test_expected(self):
            with ExpectLog("tornado.application", "Exception in callback"):
                self.io_loop.add_callback(lambda: 1 / 0)
                self.io_loop.add_callback(self.stop)
                self.wait()

        def test_error_without_traceback(self):
            logging.getLogger("tornado.application").error("just a message")

    result = run_test(T("test_logged"))
    assert outcome(result) == "failure"
    assert "an exception was logged during the test" in text(result)
    assert "ZeroDivisionError" in text(result)
    assert outcome(run_test(T("test_expected"))) == "pass"
    assert outcome(run_test(T("test_error_without_traceback"))) == "pass"


def test_cancellation_logged_by_the_harness_is_not_a_failure():
    # Tornado <= 6.5 logs the CancelledError of a handler task that
    # tearDown cancels; that is the harness's doing, not the test's.
    from tornado_cgen.testing import AsyncTestCase

    class T(AsyncTestCase):
        def test_it(self):
            try:
                raise asyncio.CancelledError()
            except asyncio.CancelledError:
                logging.getLogger("asyncio").exception("cancelled")

    assert outcome(run_test(T("test_it"))) == "pass"


def test_lost_future_exception_fails_that_test():
    from tornado_cgen.concurrent import Future
    from tornado_cgen.testing import AsyncTestCase

    class T(AsyncTestCase):
        def test_lost(self):
            fut = Future()
            fut.set_exception(KeyError("nobody looked"))
            fut.cycle = fut            # only the collector frees it

        def test_next(self):
            pass

    result = run_test(T("test_lost"))
    assert outcome(result) == "failure"
    assert "nobody looked" in text(result)
    assert outcome(run_test(T("test_next"))) == "pass"


# -- ExpectLog, bind_unused_port --------------------------------------------

def test_expect_log(lib):
    ExpectLog = lib.testing.ExpectLog
    log = logging.getLogger("tcg.test.expectlog")
    log.propagate = False
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Keep()
    log.addHandler(handler)
    try:
        with ExpectLog(log, "expected") as e:
            log.warning("expected one")
            log.warning("something else")
            log.warning("the expected one")   # re.match: not at the start
        assert e.matched == 1
        assert seen == ["something else", "the expected one"]
        assert not e.logged_stack

        with pytest.raises(Exception, match="did not get expected log"):
            with ExpectLog("tcg.test.expectlog", "never"):
                pass
        with ExpectLog(log, "never", required=False) as e:
            pass
        assert e.matched == 0

        # An exception in the block wins over the missing record.
        with pytest.raises(KeyError):
            with ExpectLog(log, "never"):
                raise KeyError

        with ExpectLog(log, "boom") as e:
            try:
                1 / 0
            except ZeroDivisionError:
                log.exception("boom")
        assert e.logged_stack

        # level: the logger's level is lowered for the block, and a match
        # at another level goes through (with a warning on the app log).
        log.setLevel(logging.WARNING)
        with ExpectLog(log, "quiet", level=logging.DEBUG) as e:
            assert log.getEffectiveLevel() == logging.DEBUG
            log.debug("quiet please")
        assert log.level == logging.WARNING
        assert e.matched == 1
        del seen[:]
        with ExpectLog("tornado.application", "Got expected log message",
                       required=False):
            with ExpectLog(log, "loud", level=logging.INFO,
                           required=False) as e:
                log.error("loud")
        assert e.matched == 0
        assert seen == ["loud"]

        # Matched only below WARNING without a level: a DeprecationWarning
        # (since Tornado 6.3).
        if lib.name == "tornado":
            _skip_before_6_3()
        log.setLevel(logging.DEBUG)
        with pytest.warns(DeprecationWarning, match="without level"):
            with ExpectLog(log, "info"):
                log.info("info message")
    finally:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
        log.propagate = True


def test_bind_unused_port(lib):
    sock, port = lib.testing.bind_unused_port()
    try:
        assert sock.getsockname() == ("127.0.0.1", port)
        assert sock.family == socket.AF_INET
        assert not sock.getblocking()
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        client = socket.create_connection(("127.0.0.1", port))   # listening
        client.close()
    finally:
        sock.close()
    sock, _ = lib.testing.bind_unused_port(reuse_port=True)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    finally:
        sock.close()


# -- the HTTP test cases ----------------------------------------------------

def test_http_test_case(lib):
    web = pytest.importorskip("tornado.web")
    calls = []

    class Hello(web.RequestHandler):
        def get(self):
            calls.append(type(asyncio.get_running_loop()).__module__)
            self.write("hello " + self.get_argument("who", "world"))

    class T(lib.testing.AsyncHTTPTestCase):
        def get_app(self):
            return web.Application([("/", Hello)])

        def test_fetch(self):
            response = self.fetch("/?who=you")
            self.assertEqual(response.code, 200)
            self.assertEqual(response.body, b"hello you")
            self.assertEqual(self.fetch("/missing").code, 404)
            self.assertEqual(
                self.get_url("/x"),
                "http://127.0.0.1:%d/x" % self.get_http_port())
            self.assertEqual(self.fetch(self.get_url("/")).body,
                             b"hello world")

        @lib.testing.gen_test
        def test_generator_fetch(self):
            response = yield self.http_client.fetch(self.get_url("/"))
            self.assertEqual(response.body, b"hello world")

    for name in ("test_fetch", "test_generator_fetch"):
        result = run_test(T(name))
        assert outcome(result) == "pass", text(result)
    if lib.ours:
        assert calls and all(m.startswith("tornado_cgen.") for m in calls)


def test_http_test_case_without_get_app(lib):
    pytest.importorskip("tornado.web")

    class NoApp(lib.testing.AsyncHTTPTestCase):
        def test_it(self):
            pass

    case = NoApp("test_it")
    result = run_test(case)
    assert outcome(result) == "error"
    assert "NotImplementedError" in text(result)
    if lib.ours:
        assert "NoApp must override get_app()" in text(result)
        # No tearDown ran, yet nothing is left open or set: not the loop,
        # nor the client (AsyncHTTPClient's cache would keep both).
        assert case.io_loop.asyncio_loop.is_closed()
        assert case.http_client._closed
        from tornado_cgen.loop import _current_loop
        assert _current_loop(running=False) is None


def test_https_test_case(lib):
    web = pytest.importorskip("tornado.web")

    class Hello(web.RequestHandler):
        def get(self):
            self.write(self.request.protocol)

    class T(lib.testing.AsyncHTTPSTestCase):
        def get_app(self):
            return web.Application([("/", Hello)])

        def test_fetch(self):
            self.assertTrue(self.get_url("/").startswith("https://"))
            self.assertEqual(self.fetch("/").body, b"https")

    result = run_test(T("test_fetch"))
    assert outcome(result) == "pass", text(result)


def test_http_test_cases_need_tornado():
    code = textwrap.dedent("""
        import sys
        sys.modules["tornado"] = None          # as if not installed
        from tornado_cgen import testing
        assert testing.AsyncTestCase and testing.gen_test
        from tornado_cgen.testing import *      # __all__ without HTTP
        assert "AsyncHTTPTestCase" not in testing.__all__
        try:
            from tornado_cgen.testing import AsyncHTTPTestCase
        except ImportError as e:
            print("ImportError:", e)
        try:
            testing.nothing_here
        except AttributeError as e:
            print("AttributeError:", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ImportError: tornado_cgen.testing.AsyncHTTPTestCase needs " \
        "Tornado installed" in out.stdout
    assert "AttributeError: module 'tornado_cgen.testing' has no " \
        "attribute 'nothing_here'" in out.stdout
    assert out.stderr == ""


@pytest.mark.parametrize("mode", ["tcg", "tcg-installed"])
def test_tornados_own_testing_tests_pass_on_ours(mode):
    # Tornado's tests of tornado.testing (tornado.test.testing_test, from
    # the installed wheel), run by Tornado's runner with tornado.testing's
    # names rebound to ours before the test module imports them.
    pytest.importorskip("tornado.test.runtests")
    _skip_before_6_3()
    code = textwrap.dedent("""
        import sys
        import tornado.testing
        import tornado_cgen
        if sys.argv[1] == "tcg-installed":
            tornado_cgen.install()
        from tornado_cgen import testing
        for name in testing.__all__:
            setattr(tornado.testing, name, getattr(testing, name))
        print("classes from", tornado.testing.AsyncTestCase.__module__)
        from tornado.test import runtests
        sys.argv = [sys.argv[0], "tornado.test.testing_test"]
        runtests.main()
    """)
    out = subprocess.run([sys.executable, "-c", code, mode],
                         capture_output=True, text=True, timeout=300)
    assert "classes from tornado_cgen.testing" in out.stdout
    assert out.returncode == 0, out.stdout + out.stderr
    ran = [line for line in out.stderr.splitlines() if line.startswith("Ran ")]
    assert ran and int(ran[0].split()[1]) >= 15, out.stderr
    assert any(line.startswith("OK") for line in out.stderr.splitlines())
