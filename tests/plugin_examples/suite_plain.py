"""Plain pytest: synchronous tests that start the server themselves."""
import asyncio
import json

from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port

import webapp


def fetch(path):
    async def main():
        sock, port = bind_unused_port()
        server = HTTPServer(webapp.make_app())
        server.add_sockets([sock])
        client = AsyncHTTPClient()
        try:
            return await client.fetch("http://127.0.0.1:%d%s" % (port, path),
                                      raise_error=False)
        finally:
            client.close()
            server.stop()
            await server.close_all_connections()

    return asyncio.run(main())


def test_hello():
    assert fetch("/").body == b"Hello, world"


def test_sum():
    assert json.loads(fetch("/sum?a=2&b=3").body) == {"sum": 5}


def test_run_sync():
    loop = IOLoop(make_current=False)
    try:
        assert loop.run_sync(lambda: webapp.add(1, 2)) == 3
    finally:
        loop.close()
