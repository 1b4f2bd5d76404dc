"""CPython's own event-loop conformance tests, run against our loop.

The test mixins come from the interpreter's ``test`` package
(``test.test_asyncio.test_events``, ``test_sock_lowlevel``, ``test_futures``);
we subclass them with ``create_event_loop`` returning a tornado_cgen loop and
copy nothing.  Each skip gives its reason beside it.
"""
import asyncio
import sys

import pytest

test_events = pytest.importorskip(
    "test.test_asyncio.test_events",
    reason="the interpreter's test package is not installed")
from test.test_asyncio import test_futures  # noqa: E402
from test.test_asyncio import test_sock_lowlevel  # noqa: E402
from test.test_asyncio import utils as test_utils  # noqa: E402

import tornado_cgen  # noqa: E402
from tornado_cgen.concurrent import Future  # noqa: E402


class TestEventLoop(test_events.UnixEventLoopTestsMixin,
                    test_events.SubprocessTestsMixin,
                    test_utils.TestCase):

    def create_event_loop(self):
        return tornado_cgen.new_event_loop()


class TestSockets(test_sock_lowlevel.BaseSockTestsMixin, test_utils.TestCase):

    def create_event_loop(self):
        return tornado_cgen.new_event_loop()


class TestFutureDoneCallbacksOnOurLoop(
        test_futures.BaseFutureDoneCallbackTests, test_utils.TestCase):
    """The future done-callback tests with futures bound to our loop."""

    def setUp(self):
        super().setUp()
        self.loop = tornado_cgen.new_event_loop()
        self.set_event_loop(self.loop)

    def _new_future(self):
        return Future(loop=self.loop)

    def run_briefly(self):
        test_utils.run_briefly(self.loop)


class TestAsyncioFutureDoneCallbacksOnOurLoop(
        test_futures.BaseFutureDoneCallbackTests, test_utils.TestCase):
    """asyncio's C Future scheduling its callbacks on our loop."""

    def setUp(self):
        super().setUp()
        self.loop = tornado_cgen.new_event_loop()
        self.set_event_loop(self.loop)

    def _new_future(self):
        return asyncio.Future(loop=self.loop)

    def run_briefly(self):
        test_utils.run_briefly(self.loop)


def teardown_module():
    asyncio.set_event_loop_policy(None)
