"""Case 11: Tornado's HTTP hello-world under ``wrk``, per request.

The worker process is the server: a Tornado ``web.Application`` answering
``GET /`` with "Hello, world", listening on 127.0.0.1 on a free port.  It
starts ``wrk -t1 -c10 -d<n>s`` as a child process and serves until wrk exits
(one core each on a two-core machine).  Loopback only, bounded by wrk's
duration.  ns/op is ``duration / requests`` as wrk reports them; the
requests/s figure goes into ``--json`` as ``extra.rps``.

Columns: ``tornado`` = Tornado on asyncio's default loop, ``uvloop`` =
Tornado on uvloop, ``tcg`` = Tornado under ``tornado_cgen.install()``;
``asyncio`` is n/a (native asyncio has no HTTP server of its own).
"""
import asyncio
import functools
import re
import shutil
import subprocess

from .common import NotAvailable, check

WRK_ARGS = ["-t1", "-c10"]

_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
_UNITS = {"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9}


def parse_wrk(text):
    """``(requests, duration_ns)`` from wrk's summary, or ValueError."""
    m = _REQUESTS.search(text)
    if not m:
        raise ValueError("no 'N requests in T' line in wrk output:\n" + text)
    return int(m.group(1)), float(m.group(2)) * _UNITS[m.group(3)]


def resolve(impl):
    if shutil.which("wrk") is None:
        raise NotAvailable("wrk is not installed (apt-get install wrk)")
    if impl == "asyncio":
        raise NotAvailable("native asyncio has no HTTP server; Tornado on "
                           "asyncio's loop is the tornado column")
    try:
        import tornado.web  # noqa: F401
    except ImportError:
        raise NotAvailable("Tornado is not installed")
    if impl == "tornado":
        return (functools.partial(serve, asyncio.new_event_loop, None),
                "Tornado HTTPServer on asyncio's default loop")
    if impl == "uvloop":
        import uvloop
        return (functools.partial(serve, uvloop.new_event_loop, None),
                "Tornado HTTPServer on uvloop")
    import tornado_cgen
    install = getattr(tornado_cgen, "install", None)
    if install is None:
        raise NotAvailable("tornado_cgen.install() is not there yet")
    new_loop = getattr(tornado_cgen, "new_event_loop", None)
    if new_loop is None:
        raise NotAvailable("tornado_cgen.new_event_loop is not there yet")
    def install_for_the_case():
        # What serve() undoes when the case ends: nothing if install() was
        # already on.
        if tornado_cgen.installed():
            return None
        install()
        return tornado_cgen.uninstall

    return (functools.partial(serve, new_loop, install_for_the_case),
            "Tornado HTTPServer under tornado_cgen.install(), on "
            "tornado_cgen's loop")


def serve(new_loop, before, seconds):
    # Tornado's modules are imported before ``before`` runs, as they were.
    import tornado.httpserver  # noqa: F401
    import tornado.netutil  # noqa: F401
    import tornado.web  # noqa: F401

    # ``before`` (the tcg column's install()) returns its undo, run when the
    # case ends: the bench's one-shot worker would not care, but a caller
    # that goes on (the suite's run_one) must get upstream Tornado back,
    # not run its oracle under install().
    undo = before() if before is not None else None
    try:
        return _serve(new_loop, seconds)
    finally:
        if undo is not None:
            undo()


def _serve(new_loop, seconds):
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets
    from tornado.web import Application, RequestHandler

    class Hello(RequestHandler):
        def get(self):
            self.write("Hello, world")

    async def main():
        sockets = bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        server = HTTPServer(Application([("/", Hello)]))
        server.add_sockets(sockets)
        cmd = ["wrk"] + WRK_ARGS + ["-d%ds" % max(1, int(seconds)),
                                    "http://127.0.0.1:%d/" % port]
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
        out = loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    check("Non-2xx" not in out, "wrk saw non-2xx responses:\n" + out)
    requests, duration_ns = parse_wrk(out)
    check(requests > 0, "wrk completed no requests:\n" + out)
    errors = re.search(r"Socket errors:.*", out)
    extra = {"rps": requests * 1e9 / duration_ns, "requests": requests,
             "wrk": " ".join(WRK_ARGS)}
    if errors:
        extra["socket_errors"] = errors.group(0)
    return duration_ns, requests, extra
