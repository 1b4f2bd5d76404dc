"""Cases 11 and 11c: Tornado's HTTP server under ``wrk``, per request.

The worker process is the server: a Tornado ``web.Application`` on
127.0.0.1 (a free port) with two handlers,

* ``GET /`` (case 11): hello-world, ``self.write("Hello, world")``;
* ``GET /coroutine`` (case 11c): ``get()`` is a ``@gen.coroutine`` that
  yields a sub-coroutine, a list of two sub-coroutines (``multi``) and
  ``gen.sleep(0)`` (one loop trip through ``call_later``), then writes the
  same "Hello, world".

It starts ``wrk -t1 -c10 -d<n>s`` as a child process and serves until wrk
exits.  With two CPUs or more the server is pinned to the first allowed CPU
and wrk (through ``taskset``) to the second, so that they never share a
core; ``extra.pinning`` says what was done.  Loopback only, bounded by wrk's
duration.  ns/op is ``duration / requests`` as wrk reports them (10
connections: the inverse of the throughput); the requests/s figure goes into
``--json`` as ``extra.rps``.  The harness interleaves the implementations
and the report uses the median of the rounds.

Columns: ``tornado`` = Tornado on asyncio's default loop, ``uvloop`` =
Tornado on uvloop, ``tornado+install`` = Tornado under
``tornado_cgen.install()`` (the worker installed before importing Tornado;
the loop comes from asyncio's policy, as in any asyncio program);
``asyncio`` and ``tcg`` are n/a (neither has an HTTP server of its own).
"""
import asyncio
import functools
import os
import re
import shutil
import subprocess

from .common import NotAvailable, check

WRK_ARGS = ["-t1", "-c10"]

PATHS = {"11": "/", "11c": "/coroutine"}
BODY = b"Hello, world"

_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_UNITS = {"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9}


def parse_wrk(text):
    """``(requests, duration_ns)`` from wrk's summary, or ValueError.  The
    duration comes from the "Requests/sec" line when there is one (wrk
    computes it from its microsecond clock; "in 2.01s" is rounded to 10
    ms, half a percent)."""
    m = _REQUESTS.search(text)
    if not m:
        raise ValueError("no 'N requests in T' line in wrk output:\n" + text)
    requests = int(m.group(1))
    rate = _RATE.search(text)
    if rate and float(rate.group(1)) > 0:
        return requests, requests * 1e9 / float(rate.group(1))
    return requests, float(m.group(2)) * _UNITS[m.group(3)]


def resolve(impl, case_id="11"):
    if shutil.which("wrk") is None:
        raise NotAvailable("wrk is not installed (apt-get install wrk)")
    if impl == "asyncio":
        raise NotAvailable("native asyncio has no HTTP server; Tornado on "
                           "asyncio's loop is the tornado column")
    if impl == "tcg":
        raise NotAvailable("tornado_cgen has no HTTP server of its own; "
                           "Tornado under install() is the tornado+install "
                           "column")
    try:
        import tornado.web  # noqa: F401
    except ImportError:
        raise NotAvailable("Tornado is not installed")
    path = PATHS[case_id]
    handler = "hello-world" if case_id == "11" else "@gen.coroutine handler"
    if impl == "tornado":
        return (functools.partial(serve, asyncio.new_event_loop, path),
                "Tornado HTTPServer, %s, on asyncio's default loop" % handler)
    if impl == "uvloop":
        import uvloop
        return (functools.partial(serve, uvloop.new_event_loop, path),
                "Tornado HTTPServer, %s, on uvloop" % handler)
    # tornado+install: the worker installed before importing Tornado, so
    # asyncio's policy gives tornado_cgen's loop.
    import tornado_cgen
    check(tornado_cgen.installed(), "tornado+install without install()")
    return (functools.partial(serve, asyncio.new_event_loop, path),
            "Tornado HTTPServer, %s, under tornado_cgen.install() "
            "(tornado_cgen's loop from asyncio's policy)" % handler)


def make_app():
    """The application of cases 11 and 11c (also used by
    ``tools/profile_http.py``).  Call it after ``install()``: coroutines
    decorated before keep Tornado's Runner."""
    from tornado import gen
    from tornado.web import Application, RequestHandler

    class Hello(RequestHandler):
        def get(self):
            self.write(BODY)

    @gen.coroutine
    def part(text):
        # A sub-coroutine that finishes at once (a cache hit, say).
        return text

    class Coroutine(RequestHandler):
        @gen.coroutine
        def get(self):
            hello = yield part(b"Hello")
            comma, world = yield [part(b", "), part(b"world")]
            yield gen.sleep(0)
            self.write(hello + comma + world)

    return Application([(PATHS["11"], Hello), (PATHS["11c"], Coroutine)])


async def fetch_once(port, path):
    """One request before wrk starts: the handler answers as it should
    (wrk only counts status codes, not bodies)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
                 % path.encode())
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    check(response.split(b"\r\n", 1)[0].endswith(b" 200 OK") and
          response.endswith(b"\r\n\r\n" + BODY),
          "GET %s answered %r" % (path, response[-200:]))


def cpus():
    """``(server_cpu, client_cpu)``, or None with fewer than two CPUs (or
    no ``taskset`` to pin wrk with)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover
        return None
    if len(allowed) < 2 or shutil.which("taskset") is None:
        return None
    return allowed[0], allowed[1]


def serve(new_loop, path, seconds):
    pin = cpus()
    if pin:
        # Put back afterwards: in-process callers (the tests) go on.
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {pin[0]})
        pinning = "server on CPU %d, wrk on CPU %d" % pin
    else:
        pinning = "not pinned (fewer than 2 CPUs, or no taskset)"
    try:
        out = _serve(new_loop, path, seconds, pin)
    finally:
        if pin:
            os.sched_setaffinity(0, allowed)
    check("Non-2xx" not in out, "wrk saw non-2xx responses:\n" + out)
    requests, duration_ns = parse_wrk(out)
    check(requests > 0, "wrk completed no requests:\n" + out)
    errors = re.search(r"Socket errors:.*", out)
    extra = {"rps": requests * 1e9 / duration_ns, "requests": requests,
             "wrk": " ".join(WRK_ARGS), "path": path, "pinning": pinning}
    if errors:
        extra["socket_errors"] = errors.group(0)
    return duration_ns, requests, extra


def _serve(new_loop, path, seconds, pin):
    """Serve on a fresh loop until wrk is done; wrk's output."""
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    async def main():
        import tornado_cgen
        from tornado_cgen import _core
        on_c_loop = isinstance(asyncio.get_running_loop(), _core.Loop)
        check(on_c_loop == tornado_cgen.installed(),
              "install() in effect: %s, on tornado_cgen's loop: %s"
              % (tornado_cgen.installed(), on_c_loop))
        sockets = bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        server = HTTPServer(make_app())
        server.add_sockets(sockets)
        await fetch_once(port, path)
        cmd = ["wrk"] + WRK_ARGS + ["-d%ds" % max(1, int(seconds)),
                                    "http://127.0.0.1:%d%s" % (port, path)]
        if pin:
            cmd = ["taskset", "-c", str(pin[1])] + cmd
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                await asyncio.sleep(0.05)
        finally:
            if proc.poll() is None:  # pragma: no cover
                proc.kill()
        out = proc.communicate()[0].decode(errors="replace")
        server.stop()
        await server.close_all_connections()
        return out

    loop = new_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
