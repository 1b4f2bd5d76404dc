"""CPython's own Future conformance tests, run against our Future.

The test classes come from the interpreter's ``test`` package
(``test.test_asyncio.test_futures``), parametrised by the class under test:
we subclass them here and copy nothing.  Tests that cannot apply are
skipped with the reason beside them.
"""
import unittest

import pytest

futures_tests = pytest.importorskip(
    "test.test_asyncio.test_futures",
    reason="the interpreter's test package is not installed")
from test.test_asyncio import utils as test_utils  # noqa: E402

from tornado_cgen.concurrent import Future  # noqa: E402


class OurSubFuture(Future):
    pass


class TestFutureConformance(futures_tests.BaseFutureTests, test_utils.TestCase):
    cls = Future


class TestSubFutureConformance(futures_tests.BaseFutureTests,
                               test_utils.TestCase):
    cls = OurSubFuture


class TestFutureDoneCallbacks(futures_tests.BaseFutureDoneCallbackTests,
                              test_utils.TestCase):
    def _new_future(self):
        return Future(loop=self.loop)


class TestSubFutureDoneCallbacks(futures_tests.BaseFutureDoneCallbackTests,
                                 test_utils.TestCase):
    def _new_future(self):
        return OurSubFuture(loop=self.loop)


class TestFutureInheritance(futures_tests.BaseFutureInheritanceTests,
                            test_utils.TestCase):
    def _get_future_cls(self):
        return Future


def teardown_module():
    import asyncio
    asyncio.set_event_loop_policy(None)
