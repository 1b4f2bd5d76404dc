"""A small Tornado application: the code under test of the example suites
(tests/test_pytest_plugin.py runs them with pytest)."""
import asyncio

import tornado.gen
import tornado.web


class Hello(tornado.web.RequestHandler):
    def get(self):
        self.write("Hello, world")


class Sum(tornado.web.RequestHandler):
    # @gen.coroutine code: under --tornado-cgen it runs on the C Runner.
    @tornado.gen.coroutine
    def get(self):
        a = yield add(int(self.get_argument("a")), 0)
        b = yield add(int(self.get_argument("b")), 0)
        self.write({"sum": a + b})


class Slow(tornado.web.RequestHandler):
    async def get(self):
        await asyncio.sleep(0.01)
        self.write("done")


class Broken(tornado.web.RequestHandler):
    def get(self):
        raise ValueError("broken on purpose")


@tornado.gen.coroutine
def add(x, y):
    yield tornado.gen.moment
    return x + y


def make_app():
    return tornado.web.Application([
        (r"/", Hello), (r"/sum", Sum), (r"/slow", Slow), (r"/broken", Broken),
    ])
