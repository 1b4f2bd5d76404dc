"""Load: ``wrk`` against two servers on tornado_cgen, each in a child
process of its own, with no error responses, flat RSS, and every
connection closed at the end.

The servers:

* ``echo``: the TCP echo server on tornado_cgen's loop, standalone
  (``tornado_cgen.new_event_loop()``, asyncio streams from
  ``asyncio.start_server``).  wrk speaks HTTP, so the echo speaks just
  enough of it: it reads each request head (up to the blank line) and
  writes it back as the body of an ``HTTP/1.1 200 OK`` response, keeping
  the connection open unless the request says ``Connection: close``.  wrk
  checks every body is the request it sent.
* ``tornado``: a Tornado ``web.Application`` under ``tornado_cgen.install()``
  (the application of benchmark cases 11/11c: ``GET /`` a plain write,
  ``GET /coroutine`` a ``@gen.coroutine`` that yields sub-coroutines, a list
  of them and ``gen.sleep(0)``), wrk alternating the two paths; every body
  must be "Hello, world".

Each server gets two runs of wrk (one thread, 32 connections, 5 s
timeout), one after the other:

* keep-alive, 10 s (60 s with ``--soak``, as the issue asks): the RSS of the
  server is read from ``/proc/PID/status`` every second; the first 3 s
  (10 s soak) are warm-up (allocator arenas, caches, the connections
  themselves), growth is counted from the first sample after them;
* churn, 3 s (10 s soak): every request says ``Connection: close``, so
  every request is a new connection accepted and closed.

After each run, every connection the server had must be closed within 3 s
(its sockets, found through ``/proc/PID/fd`` and ``/proc/net/tcp``) and its
count of fds back to the one before the run.  Then the server is told to
stop (its stdin closes) and must exit 0, having logged nothing at WARNING
or above.  Responses are counted by a wrk Lua script: status 200 and the
expected body, per response.
"""
import json
import os
import re
import select
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

from ._report import count, section_main

HERE = os.path.dirname(os.path.abspath(__file__))

CONNECTIONS = 32
WRK_TIMEOUT = "5s"
#: Growth of RSS after the warm-up that counts as flat, in bytes.  With 32
#: connections held open the server's live objects are a fixed set once it
#: is warm; what it allocates per request is freed per request.  A leak of
#: one object per request (16 bytes at the very least) over the soak's
#: hundreds of thousands of requests is megabytes; 2 MiB leaves room for a
#: couple of pymalloc arenas (1 MiB each) and the page-granular noise of
#: RSS.
RSS_BOUND = 2 << 20
CLOSE_WITHIN = 3.0

BODY_TORNADO = "Hello, world"

#: The wrk script: count responses by what they are (status, body), per
#: thread, and print the sums (and wrk's own summary) on one tagged line.
LUA = r"""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, bad_status, bad_body, first_bad = 0, 0, 0, ""
  local body = os.getenv("TCG_LOAD_BODY")
  if body == "@request" then want = wrk.format() else want = body end
  local paths = os.getenv("TCG_LOAD_PATHS")
  if paths and paths ~= "" then
    reqs = {}
    for p in string.gmatch(paths, "[^,]+") do
      table.insert(reqs, wrk.format(nil, p))
    end
    n = 0
    request = function()
      n = n + 1
      return reqs[(n % #reqs) + 1]
    end
  end
end

function response(status, headers, body)
  if status ~= 200 then
    bad_status = bad_status + 1
    if first_bad == "" then first_bad = "status " .. status end
  elseif body ~= want then
    bad_body = bad_body + 1
    if first_bad == "" then first_bad = "body " .. string.sub(body, 1, 80) end
  else
    ok = ok + 1
  end
end

function done(summary, latency, requests)
  local s = {ok = 0, bad_status = 0, bad_body = 0, first_bad = ""}
  for _, t in ipairs(threads) do
    s.ok = s.ok + t:get("ok")
    s.bad_status = s.bad_status + t:get("bad_status")
    s.bad_body = s.bad_body + t:get("bad_body")
    if s.first_bad == "" then s.first_bad = t:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    "TCG-LOAD ok=%d bad_status=%d bad_body=%d requests=%d duration_us=%d " ..
    "connect=%d read=%d write=%d timeout=%d status=%d p99_us=%d " ..
    "first_bad=%s\n",
    s.ok, s.bad_status, s.bad_body, summary.requests, summary.duration,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(99), string.gsub(s.first_bad, "%s", "_")))
end
"""


# -- the servers (child processes) --------------------------------------

class _Logged:
    """Counts what the server logs at WARNING or above."""

    def __init__(self):
        import logging
        self.count = 0
        self.first = []
        outer = self

        class Handler(logging.Handler):
            def emit(self, record):
                outer.count += 1
                if len(outer.first) < 3:
                    outer.first.append(self.format(record)[-500:])

        logging.getLogger().addHandler(Handler(logging.WARNING))


def _stdin_closed(loop, stop):
    """Stop when the parent closes our stdin (a pipe), or on SIGTERM /
    SIGINT (run by hand, stdin a terminal or /dev/null)."""
    import signal
    fd = sys.stdin.fileno()

    def readable():
        if not os.read(fd, 4096):
            loop.remove_reader(fd)
            stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    if stat.S_ISFIFO(os.fstat(fd).st_mode):
        loop.add_reader(fd, readable)


def _ready(port, kind, loop):
    import tornado_cgen
    from tornado_cgen import _core
    what = "%s.%s (%s)" % (type(loop).__module__, type(loop).__qualname__,
                           "C loop" if isinstance(loop, _core.Loop) else
                           "NOT tornado_cgen's loop")
    if kind == "tornado":
        what += ", install() %s" % ("on" if tornado_cgen.installed() else
                                    "OFF")
    print("READY %d %s %s" % (port, kind, what), flush=True)


def serve_echo():
    """The echo server: each request head comes back as the body."""
    import asyncio
    import tornado_cgen

    logged = _Logged()
    stats = {"connections": 0, "requests": 0, "unexpected": 0,
             "unexpected_first": []}
    writers = set()
    # Faults to show that the figures can fail (by hand, not in the check):
    # leak (64 KiB kept per 10 requests), noclose (connections ended by
    # the client are never closed), badbody (every 1000th body is wrong),
    # crash (exit after 5,000 requests), hang (the loop blocks after
    # 5,000 requests).
    fault = os.environ.get("TCG_LOAD_FAULT", "")
    kept = []

    def unexpected(e):
        stats["unexpected"] += 1
        if len(stats["unexpected_first"]) < 3:
            stats["unexpected_first"].append(repr(e))

    async def handle(reader, writer):
        stats["connections"] += 1
        writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    if fault == "noclose":
                        kept.append(writer)
                    break           # the client went (wrk stopping)
                except ConnectionError:
                    break
                stats["requests"] += 1
                if fault == "leak" and stats["requests"] % 10 == 0:
                    kept.append(bytearray(65536))
                elif fault == "badbody" and stats["requests"] % 1000 == 0:
                    head = head.replace(b"GET", b"PUT")
                elif fault == "crash" and stats["requests"] == 5000:
                    os._exit(3)
                elif fault == "hang" and stats["requests"] == 5000:
                    time.sleep(3600)
                lower = head.lower()
                first = head.split(b"\r\n", 1)[0]
                close = (b"\r\nconnection: close\r\n" in lower or
                         first.endswith(b" HTTP/1.0") and
                         b"\r\nconnection: keep-alive\r\n" not in lower)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s"
                             b"\r\n%s" % (len(head), b"Connection: close\r\n"
                                          if close else b"", head))
                if close:
                    break
                try:
                    await writer.drain()
                except ConnectionError:
                    break
        except Exception as e:  # pragma: no cover - reported, not raised
            unexpected(e)
        finally:
            writers.discard(writer)
            if writer not in kept:
                writer.close()
                try:
                    await writer.wait_closed()
                except ConnectionError:
                    pass
                except Exception as e:  # pragma: no cover
                    unexpected(e)

    async def main():
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        _stdin_closed(loop, done.set)
        _ready(server.sockets[0].getsockname()[1], "echo", loop)
        await done.wait()
        server.close()
        for w in list(writers):
            w.close()
        await server.wait_closed()
        await asyncio.sleep(0.1)

    loop = tornado_cgen.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    _stats(logged, stats)


def serve_tornado():
    """Tornado's HTTP server under install() (the benchmark's app)."""
    import tornado_cgen
    tornado_cgen.install()
    import asyncio
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets
    from ..bench.httpcase import make_app

    logged = _Logged()
    stats = {}

    async def main():
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(make_app())
        server.add_sockets(sockets)
        _stdin_closed(loop, done.set)
        _ready(sockets[0].getsockname()[1], "tornado", loop)
        await done.wait()
        server.stop()
        await server.close_all_connections()

    asyncio.run(main())
    _stats(logged, stats)


def _stats(logged, stats):
    from tornado_cgen import _core
    stats["core"] = _core._stats()
    stats["logged"] = logged.count
    stats["logged_first"] = logged.first
    print("STATS " + json.dumps(stats), flush=True)


# -- measuring from outside ---------------------------------------------

def rss(pid):
    """VmRSS of `pid` in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ValueError("no VmRSS for %d" % pid)


def sched(pid):
    """(seconds on a CPU, seconds runnable but waiting for one or None) of
    the main thread of `pid` (the servers' loops run there)."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            run, wait = f.read().split()[:2]
        return int(run) / 1e9, int(wait) / 1e9
    except (FileNotFoundError, ValueError):  # pragma: no cover
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return ((int(fields[11]) + int(fields[12])) /
                os.sysconf("SC_CLK_TCK"), None)


class Busy:
    """How busy the server was over a stretch: on a CPU, and waiting for
    one (the machine is shared: a server that waits for a CPU is loaded
    all the same)."""

    def __init__(self, pid):
        self.pid = pid
        self.t0 = time.monotonic()
        self.s0 = sched(pid)

    def text(self):
        try:
            run, wait = sched(self.pid)
        except (FileNotFoundError, ProcessLookupError):
            return "server gone"
        wall = time.monotonic() - self.t0
        run = (run - self.s0[0]) / wall
        if wait is None:
            return "server on a CPU %.0f%% of the time" % (100 * run)
        wait = (wait - self.s0[1]) / wall
        return "server busy %.0f%% of the time: %.0f%% on a CPU, %.0f%% " \
            "waiting for one" % (100 * (run + wait), 100 * run, 100 * wait)


_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV",
           "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT",
           "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK",
           "0A": "LISTEN", "0B": "CLOSING"}


def tcp_table():
    """[(local_port, state, inode)] for every TCP socket of this host."""
    rows = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    p = line.split()
                    rows.append((int(p[1].rsplit(":", 1)[1], 16),
                                 _STATES.get(p[3], p[3]), int(p[9])))
        except FileNotFoundError:  # pragma: no cover - no IPv6
            pass
    return rows


def fds(pid):
    """(number of open fds, socket inodes) of `pid`."""
    d = "/proc/%d/fd" % pid
    n, inodes = 0, set()
    for fd in os.listdir(d):
        try:
            target = os.readlink(os.path.join(d, fd))
        except FileNotFoundError:
            continue
        n += 1
        m = re.match(r"socket:\[(\d+)\]$", target)
        if m:
            inodes.add(int(m.group(1)))
    return n, inodes


def connections(pid, port):
    """What is left of the clients' connections: (the server's own TCP
    sockets that are not listening, by state; the connections on `port`
    in ESTABLISHED/CLOSE_WAIT on this host; the server's fd count)."""
    n, inodes = fds(pid)
    table = tcp_table()
    own = {}
    for lport, state, inode in table:
        if inode in inodes and state != "LISTEN":
            own[state] = own.get(state, 0) + 1
    on_port = sum(1 for lport, state, inode in table
                  if lport == port and state in ("ESTABLISHED", "CLOSE_WAIT"))
    return own, on_port, n


def wait_closed(pid, port, fd_before, within=CLOSE_WITHIN):
    """Poll until the server holds no client connection and its fd count
    is back; (seconds it took or None, own, on_port, fd count)."""
    t0 = time.monotonic()
    while True:
        own, on_port, n = connections(pid, port)
        dt = time.monotonic() - t0
        if not own and not on_port and fd_before in (None, n):
            return dt, own, on_port, n
        if dt > within:
            return None, own, on_port, n
        time.sleep(0.05)


def fetch(port, path, timeout=10.0):
    """One request with ``Connection: close``: (request, status, body)."""
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close"
           "\r\n\r\n" % (path, port)).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(req)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    return req, status.decode(errors="replace"), body


class Server:
    """A server child process: start, wait for READY, stop, STATS."""

    def __init__(self, kind):
        self.kind = kind
        self.err = tempfile.TemporaryFile(mode="w+")
        self.cmd = [sys.executable, "-m", "tornado_cgen.check.load",
                    "--serve", kind]
        # This package first on the path, wherever the check was run from.
        pkg_parent = os.path.dirname(os.path.dirname(HERE))
        path = os.environ.get("PYTHONPATH")
        env = dict(os.environ, PYTHONPATH=pkg_parent + (
            os.pathsep + path if path else ""))
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, env=env)
        self.pid = self.proc.pid
        line = self._line(30)
        if not line.startswith("READY "):
            self.kill()
            raise RuntimeError("the %s server did not start: %r; stderr: %s"
                               % (kind, line, self.stderr()))
        _, port, _, self.loop = line.split(None, 3)
        self.port = int(port)

    def _line(self, timeout):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            return ""
        return self.proc.stdout.readline().strip()

    def stderr(self):
        self.err.seek(0)
        return self.err.read()[-2000:]

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=15):
        """Close stdin; (exit status or None on timeout, STATS dict)."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:  # pragma: no cover
            pass
        stats = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self._line(max(0.0, deadline - time.monotonic()))
            if line.startswith("STATS "):
                stats = json.loads(line[6:])
                break
            if not line and self.proc.poll() is not None:
                break
        try:
            rc = self.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            rc = None
        return rc, stats

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# RSS (and liveness) sampling period during a wrk run: several samples
# even in a 2-second run whose end races wrk's exit on a loaded machine.
SAMPLE_EVERY = 0.25


def run_wrk(server, seconds, env, close=False, sample=None):
    """wrk against `server` for `seconds`; (TCG-LOAD dict or None, wrk's
    output, the command, [(t, rss)] samples every SAMPLE_EVERY seconds)."""
    fd, script = tempfile.mkstemp(prefix="tcg-load-", suffix=".lua")
    with os.fdopen(fd, "w") as f:
        f.write(LUA)
    path = "/" if server.kind == "tornado" else "/echo"
    cmd = ["wrk", "-t1", "-c%d" % CONNECTIONS, "-d%ds" % seconds,
           "--timeout", WRK_TIMEOUT, "-s", script]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append("http://127.0.0.1:%d%s" % (server.port, path))
    out = tempfile.TemporaryFile(mode="w+")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                            env=dict(os.environ, **env))
    samples = []
    try:
        while proc.poll() is None:
            if not server.alive():
                break
            if sample is not None:
                samples.append((time.monotonic() - t0, rss(server.pid)))
            time.sleep(SAMPLE_EVERY - (time.monotonic() - t0) % SAMPLE_EVERY)
            if time.monotonic() - t0 > seconds + 30:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.unlink(script)
    out.seek(0)
    text = out.read()
    m = re.search(r"^TCG-LOAD (.*)$", text, re.M)
    result = None
    if m:
        result = {}
        for kv in m.group(1).split():
            k, _, v = kv.partition("=")
            result[k] = v if k == "first_bad" else int(v)
    shown = " ".join(c if " " not in c else repr(c) for c in cmd)
    return result, text, shown, samples


def _mib(n):
    return "%.1f MiB" % (n / (1 << 20))


def _errors_text(r):
    return "connect %d, read %d, write %d, timeout %d" % (
        r["connect"], r["read"], r["write"], r["timeout"])


def one_server(ctx, kind, env, seconds, warmup, churn):
    try:
        server = Server(kind)
    except RuntimeError as e:
        ctx.figure(kind + ": server starts", "no", "READY within 30 s",
                   False, str(e)[-1500:])
        return
    repro = "python -m tornado_cgen.check.load --serve %s" % kind
    served = []
    try:
        _measure(ctx, server, kind, env, seconds, warmup, churn, repro,
                 served)
    except (FileNotFoundError, ProcessLookupError) as e:
        # /proc/PID went away under us: the server died.
        ctx.figure(kind + ": server alive through the load", "died",
                   "alive", False, "%r; server: %s" % (e, repro))
    finally:
        if server.alive():
            rc, stats = server.stop()
        else:
            rc, stats = server.proc.wait(), {}
        server.kill()
    logged = stats.get("logged")
    note = "; ".join(stats.get("logged_first", []) +
                     stats.get("unexpected_first", []))
    if rc != 0 or not stats:
        note = (note + "; stderr: " + server.stderr()).strip("; ")
    bad = (logged or 0) + stats.get("unexpected", 0)
    ctx.figure("%s: server stops when told, logged at WARNING+" % kind,
               "%s, %s logged%s" % (
                   "exit %d" % rc if rc is not None else
                   "still running 15 s after, killed",
                   "?" if logged is None else count(logged),
                   ", %d unexpected exceptions" % stats["unexpected"]
                   if stats.get("unexpected") else ""),
               "exit 0, 0 logged",
               rc == 0 and logged == 0 and bad == 0, note[-1500:])
    core = stats.get("core")
    if core is None:
        return
    responses = sum(served)
    # tornado: /coroutine makes 4 coroutine calls (get and 3 parts), wrk
    # alternates it with /, so 2 per response; at least 1 is wanted.  echo:
    # no Tornado coroutines, the loop turns.
    need = responses if kind == "tornado" else 0
    ctx.figure("%s: the C code did the work" % kind,
               "%s coroutine calls, %s Runner steps, %s loop iterations "
               "for %s responses" % (
                   count(core["coroutine_calls"]), count(core["runner_steps"]),
                   count(core["loop_iterations"]), count(responses)),
               "coroutine calls >= responses, loop iterations > 0"
               if kind == "tornado" else "loop iterations > 0",
               core["coroutine_calls"] >= need and
               core["loop_iterations"] > 0 and
               (kind != "tornado" or core["runner_steps"] > 0))


def _check_run(ctx, server, label, result, text, cmd, fd_before, repro,
               served, busy):
    """The figures every wrk run has: responses, errors, closing."""
    if result is None:
        ctx.figure(label + ": wrk ran", "no summary from wrk", "a summary",
                   False, "%s; server alive: %s; wrk said: %s; server: %s" % (
                       cmd, server.alive(), text[-800:], repro))
        return False
    seen = result["ok"] + result["bad_status"] + result["bad_body"]
    served.append(seen)
    # wrk counts a request as timed out only once it is older than its
    # timeout: a server that stopped answering in the run's last seconds
    # would go unseen.  One more request, after.
    after = answers(server, "/", timeout=5.0)
    secs = result["duration_us"] / 1e6
    bad = result["bad_status"] + result["bad_body"]
    ctx.figure(label + ": responses not 200 with the right body",
               "%s of %s (%s/s, 99th percentile latency %.1f ms; %s); "
               "a request after wrk: %s" % (
                   count(bad), count(result["requests"]),
                   count(int(result["requests"] / secs)),
                   result["p99_us"] / 1e3, busy, after or "answered right"),
               "0, of more than 0; the one after answered",
               bad == 0 and result["status"] == 0 and result["ok"] > 0 and
               seen == result["requests"] and not after,
               ("first: %s; " % result["first_bad"] if bad else "") +
               ("" if seen == result["requests"] else
                "wrk counted %d, the script %d; " % (result["requests"],
                                                     seen)) + cmd)
    errors = (result["connect"] + result["read"] + result["write"] +
              result["timeout"])
    ctx.figure(label + ": wrk socket errors", _errors_text(result),
               "all 0", errors == 0,
               "" if errors == 0 else cmd + "; server: " + repro)
    took, own, on_port, n = wait_closed(server.pid, server.port, fd_before)
    left = sum(own.values())
    ctx.figure(label + ": connections left open after wrk exits",
               "%d%s (server fds %d -> %d)" % (
                   left, "" if took is None else
                   ", all closed %.2f s after wrk" % took, fd_before, n),
               "0 within %g s, fds back to %d" % (CLOSE_WITHIN, fd_before),
               took is not None,
               "" if took is not None else
               "the server's TCP sockets: %s; %d ESTABLISHED/CLOSE_WAIT on "
               "port %d; %s; server: %s" % (
                   ", ".join("%d %s" % (v, k) for k, v in sorted(own.items()))
                   or "none", on_port, server.port, cmd, repro))
    return True


def answers(server, path, timeout=10.0):
    """"" if `server` answers a request to `path` as it should, else what
    went wrong."""
    try:
        req, status, body = fetch(server.port, path, timeout)
    except OSError as e:
        return "%s: %r" % (path, e)
    want = req if server.kind == "echo" else BODY_TORNADO.encode()
    if not status.endswith(" 200 OK") or body != want:
        return "%s: %s %r" % (path, status, body[:100])
    return ""


def _measure(ctx, server, kind, env, seconds, warmup, churn, repro,
             served):
    # The server answers as it should, before any load.
    paths = ["/"] + (["/coroutine"] if kind == "tornado" else [])
    wrong = [w for w in (answers(server, p) for p in paths) if w]
    ctx.figure(kind + ": server and loop",
               "%s, one request each to %s: %s" % (
                   server.loop, ", ".join(paths),
                   "answered right" if not wrong else "WRONG"),
               "tornado_cgen's C loop%s, right answers" % (
                   ", install() on" if kind == "tornado" else ""),
               not wrong and "(C loop)" in server.loop and
               (kind != "tornado" or "install() on" in server.loop),
               "; ".join(wrong))
    if wrong or not server.alive():
        return
    # The fetches' connections gone, the fd count before the load.
    wait_closed(server.pid, server.port, None)
    own, on_port, fd_before = connections(server.pid, server.port)
    # Keep-alive at full load, RSS sampled as it runs.
    busy = Busy(server.pid)
    result, text, cmd, samples = run_wrk(server, seconds, env, sample=True)
    label = "%s keep-alive %d s" % (kind, seconds)
    if not _check_run(ctx, server, label, result, text, cmd, fd_before,
                      repro, served, busy.text()):
        return
    after = [(t, r) for t, r in samples if t >= warmup - 0.5]
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        # AddressSanitizer keeps freed memory in quarantine: RSS grows
        # with the work done whatever the code does.
        ctx.skip("%s: RSS after warm-up" % label,
                 "not measured under AddressSanitizer (its quarantine holds "
                 "freed memory)")
    elif len(after) >= 2:
        start, end = after[0][1], after[-1][1]
        growth = max(r for _, r in after) - start
        # Requests over the measured part, from the measured rate.
        rate = result["requests"] / (result["duration_us"] / 1e6)
        measured = rate * (after[-1][0] - after[0][0])
        ts = [t for t, _ in after]
        rs = [r for _, r in after]
        mt, mr = sum(ts) / len(ts), sum(rs) / len(rs)
        var = sum((t - mt) ** 2 for t in ts)
        slope = (sum((t - mt) * (r - mr) for t, r in after) / var
                 if var else 0.0)
        ctx.figure(
            "%s: RSS after %d s warm-up, over %.0f s" % (
                label, warmup, after[-1][0] - after[0][0]),
            "start %s, end %s, max growth %d KiB (trend %+.1f KiB/s)" % (
                _mib(start), _mib(end), growth // 1024, slope / 1024),
            "growth < %s" % _mib(RSS_BOUND), growth < RSS_BOUND,
            "the bound is %.1f bytes per request over %s requests; "
            "%s when wrk started" % (
                RSS_BOUND / measured if measured else 0,
                count(int(measured)), _mib(samples[0][1]))
            + ("" if ctx.soak else "; the fast run's bound is loose, "
               "--soak runs 60 s"))
    else:
        ctx.figure(label + ": RSS samples", "%d" % len(samples),
                   "at least 2 after warm-up", False, cmd)
    # Churn: a new connection per request.
    if not server.alive():
        return
    own, on_port, fd_before = connections(server.pid, server.port)
    busy = Busy(server.pid)
    result, text, cmd, _ = run_wrk(server, churn, env, close=True)
    _check_run(ctx, server, "%s churn (Connection: close) %d s" % (
        kind, churn), result, text, cmd, fd_before, repro, served,
        busy.text())


def serve(kind):
    if kind == "echo":
        serve_echo()
    elif kind == "tornado":
        serve_tornado()
    else:
        sys.exit("unknown server %r" % kind)
    return 0


def run(ctx):
    seconds, warmup, churn = (60, 10, 10) if ctx.soak else (10, 3, 3)
    if shutil.which("wrk") is None:
        ctx.skip("echo and Tornado servers under wrk",
                 "wrk is not installed (apt-get install wrk)")
        return
    if not os.path.exists("/proc/self/status"):  # pragma: no cover
        ctx.skip("echo and Tornado servers under wrk",
                 "needs /proc (Linux) to read RSS and fds")
        return
    one_server(ctx, "echo", {"TCG_LOAD_BODY": "@request",
                             "TCG_LOAD_PATHS": ""}, seconds, warmup, churn)
    from ._report import tornado_available
    if not tornado_available():
        ctx.skip("tornado server under wrk",
                 "Tornado 6.2 or newer is not installed")
        return
    one_server(ctx, "tornado", {"TCG_LOAD_BODY": BODY_TORNADO,
                                "TCG_LOAD_PATHS": "/,/coroutine"},
               seconds, warmup, churn)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        sys.exit(serve(sys.argv[2]))
    sys.exit(section_main("load", run))
