"""The unittest style: tornado.testing.AsyncHTTPTestCase, unchanged."""
import json

import tornado.testing
from tornado.testing import AsyncHTTPTestCase, ExpectLog, gen_test

import webapp


class WebAppTest(AsyncHTTPTestCase):
    def get_app(self):
        return webapp.make_app()

    def test_hello(self):
        response = self.fetch("/")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.body, b"Hello, world")

    def test_sum(self):
        response = self.fetch("/sum?a=2&b=3")
        self.assertEqual(json.loads(response.body), {"sum": 5})

    @gen_test
    def test_slow_generator(self):
        response = yield self.http_client.fetch(self.get_url("/slow"))
        self.assertEqual(response.body, b"done")

    @gen_test
    async def test_slow_native(self):
        response = await self.http_client.fetch(self.get_url("/slow"))
        self.assertEqual(response.body, b"done")

    def test_broken(self):
        with ExpectLog("tornado.application", "Uncaught exception"):
            response = self.fetch("/broken")
        self.assertEqual(response.code, 500)

    @gen_test
    def test_coroutine_helper(self):
        total = yield webapp.add(20, 22)
        self.assertEqual(total, 42)
