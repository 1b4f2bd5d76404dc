"""More of CPython's asyncio test suite, run on our loop: streams, TLS
(start_tls and the SSL transport), sendfile, subprocesses, timeouts,
task groups and runners.

Classes whose loop comes from ``create_event_loop``/``new_loop`` are
subclassed with ours; the rest make their loops through the event loop
policy, so every test here runs with ``tornado_cgen.EventLoopPolicy``
installed (re-installed before each test, since some stdlib tests reset
the policy).  Nothing is copied.
"""
import asyncio
import sys

import pytest

pytest.importorskip("test.test_asyncio.test_events",
                    reason="the interpreter's test package is not installed")
if sys.version_info < (3, 11):
    pytest.skip("the stdlib suites used here (runners, ssl, task groups, "
                "timeouts) are 3.11+", allow_module_level=True)
from test.test_asyncio import (  # noqa: E402
    test_runners, test_sendfile, test_sock_lowlevel, test_sslproto, test_ssl,
    test_streams, test_subprocess, test_taskgroups, test_timeouts,
    test_waitfor)
from test.test_asyncio import utils as test_utils  # noqa: E402

import tornado_cgen  # noqa: E402
from tornado_cgen.loop import Loop  # noqa: E402


@pytest.fixture(autouse=True)
def our_policy():
    asyncio.set_event_loop_policy(tornado_cgen.EventLoopPolicy())
    yield
    asyncio.set_event_loop_policy(None)


class TestSendfile(test_sendfile.SendfileTestsBase, test_utils.TestCase):
    def create_event_loop(self):
        return tornado_cgen.new_event_loop()


class TestSockLowLevel(test_sock_lowlevel.BaseSockTestsMixin,
                       test_utils.TestCase):
    # sock_recv, sock_recv_into and sock_sendall are the loop's own (their
    # first try in C); the rest of the sock_* API is the stdlib's.
    def create_event_loop(self):
        return tornado_cgen.new_event_loop()


class TestStartTLS(test_sslproto.BaseStartTLS, test_utils.TestCase):
    def new_loop(self):
        return tornado_cgen.new_event_loop()


class TestSslProtoHandshake(test_sslproto.SslProtoHandshakeTests):
    pass


class TestSSL(test_ssl.TestSSL):
    pass


class TestStreams(test_streams.StreamTests):
    pass


class TestSubprocess(test_subprocess.SubprocessThreadedWatcherTests):
    pass


class TestSubprocessPidfd(test_subprocess.SubprocessPidfdWatcherTests):
    pass


class TestTimeouts(test_timeouts.TimeoutTests):
    pass


class TestWaitFor(test_waitfor.AsyncioWaitForTest):
    pass


class TestTaskGroups(test_taskgroups.TestTaskGroup):
    pass


class TestRunners(test_runners.RunnerTests):
    pass


def test_policy_loops_are_ours():
    loop = asyncio.new_event_loop()
    try:
        assert isinstance(loop, Loop)
    finally:
        loop.close()
