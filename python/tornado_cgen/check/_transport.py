"""The socket transport's figures, each measured in a fresh interpreter:

* fds (``faults`` section): 10,000 connect/close cycles over loopback
  TCP on tornado_cgen's loop -- closed by the client, by the server, after
  a write, with ``write_eof``, aborted with data pending, reset (SO_LINGER
  0) from either end -- leave no file descriptor open (``/proc/self/fd``
  counted before and after) and every connection lost on both ends;
* faults (``faults`` section): a program whose protocol callbacks raise,
  whose peers reset in the middle of large writes, and which closes its
  loop with transports still open, exits 0; what reached its exception
  handler is what asyncio's own loop gives for the same program, and its
  stderr is empty (with ``-X dev``: the same warnings as asyncio's loop
  gives);
* memory (``memory`` section): a writer whose peer never reads.  Honouring
  ``pause_writing``, its transport's buffer stays under the high-water mark
  plus one write and the RSS stays flat; not honouring it, each round's
  RSS growth is what the buffer holds (no copy kept beside it) and the
  rounds after the first reuse the memory the first gave back.
"""
import json
import re
import subprocess
import sys

from ._report import count

# -- fds ----------------------------------------------------------------------

FDS = r'''
import asyncio, gc, json, os, socket, struct, sys
import tornado_cgen

N = int(sys.argv[1])
LINGER0 = struct.pack("ii", 1, 0)
HOWS = ("client close", "server close", "client write, close",
        "server write_eof, close", "client abort, data pending",
        "server abort, data pending", "client reset", "server reset")


def fds():
    return len(os.listdir("/proc/self/fd"))


class Side(asyncio.Protocol):
    def __init__(self, stats, loop):
        self.stats, self.loop = stats, loop
        self.kept = None
        self.made = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        pass

    def connection_lost(self, exc):
        key = "lost: " + (type(exc).__name__ if exc else "None")
        self.stats[key] = self.stats.get(key, 0) + 1
        self.lost.set_result(None)


def end(tr, how):
    if how.endswith("close"):
        if "write" in how:
            tr.write(b"x" * 1000)
        if "write_eof" in how:
            tr.write_eof()
        tr.close()
    elif "abort" in how:
        tr.write(b"x" * (1 << 20))
        tr.abort()
    else:
        tr.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        tr.abort()


async def cycles(loop, srv, n, stats, servers):
    addr = srv.sockets[0].getsockname()
    hung = 0
    for i in range(n):
        how = HOWS[i % len(HOWS)]
        tr, client = await loop.create_connection(
            lambda: Side(stats[0], loop), *addr)
        while not servers:
            await asyncio.sleep(0)
        server = servers.pop()
        await server.made
        by_client = how.startswith("client")
        end(tr if by_client else server.transport, how)
        # The other end sees it (an EOF, data then an EOF, a reset) and
        # its transport closes itself.
        other = server if by_client else client
        try:
            await asyncio.wait_for(asyncio.shield(other.lost), 10)
        except asyncio.TimeoutError:
            hung += 1
            other.transport.close()
        await client.lost
        await server.lost
    return hung


async def main(loop):
    stats = [{}]
    servers = []
    handled = []
    loop.set_exception_handler(
        lambda loop, ctx: handled.append(ctx["message"]))

    def factory():
        p = Side(stats[0], loop)
        servers.append(p)
        return p

    srv = await loop.create_server(factory, "127.0.0.1", 0)
    await cycles(loop, srv, min(N, 200), stats, servers)      # warm-up
    for _ in range(5):
        await asyncio.sleep(0)
    gc.collect()
    stats[0] = {}
    before = fds()
    hung = await cycles(loop, srv, N, stats, servers)
    for _ in range(5):
        await asyncio.sleep(0)
    gc.collect()
    after = fds()
    srv.close()
    await srv.wait_closed()
    return before, after, stats[0], handled, hung


start = fds()
loop = tornado_cgen.new_event_loop()
before, after, stats, handled, hung = loop.run_until_complete(main(loop))
loop.close()
gc.collect()
print(json.dumps({"before": before, "after": after, "stats": stats,
                  "handled": handled[:5], "n_handled": len(handled),
                  "hung": hung, "start": start, "at_exit": fds()}))
'''


def check_fds(ctx, n=None, program=FDS):
    if n is None:
        n = 100000 if ctx.soak else 10000
    name = ("transport: %s connect/close cycles over TCP (closed, "
            "aborted, reset, from either end): fds left open" % count(n))
    r = subprocess.run([sys.executable, "-c", program, str(n)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=600)
    if r.returncode or r.stderr.strip():
        ctx.figure(name, "exit status %d" % r.returncode,
                   want="exit 0, empty stderr", ok=False,
                   note=r.stderr.strip()[-1500:])
        return
    res = json.loads(r.stdout)
    lost = sum(res["stats"].values())
    leaked = res["after"] - res["before"]
    ctx.figure(name, str(leaked), want="0 (and 0 once the server and the "
               "loop are closed), every connection lost on both ends, on "
               "its own, nothing through the exception handler",
               ok=(leaked == 0 and res["at_exit"] == res["start"] and
                   lost == 2 * n and not res["n_handled"] and
                   not res["hung"]),
               note="fds before %d, after %d (at the start %d, at the end "
               "%d); %d not lost within 10 s; connection_lost: %s%s" % (
                   res["before"], res["after"], res["start"],
                   res["at_exit"], res["hung"],
                   ", ".join("%s %s" % (k[6:], count(v)) for k, v in
                             sorted(res["stats"].items())),
                   "; exception handler: %d (%s)" % (
                       res["n_handled"], "; ".join(res["handled"]))
                   if res["n_handled"] else ""))


# -- faults -------------------------------------------------------------------

FAULTS = r'''
import asyncio, collections, json, re, socket, struct, sys

WHICH, N = sys.argv[1], int(sys.argv[2])
if WHICH == "tcg":
    import tornado_cgen
    loop = tornado_cgen.new_event_loop()
else:
    loop = asyncio.new_event_loop()
loop.slow_callback_duration = 60
LINGER0 = struct.pack("ii", 1, 0)
handled = {}
lost = {}
kept = []       # transports the program leaves open


def handler(loop, ctx):
    exc = ctx.get("exception")
    msg = re.sub(r"^(Exception in callback [\w.]+)\(.*", r"\1",
                 ctx["message"], flags=re.S)
    key = "%s [%s]" % (msg, type(exc).__name__ if exc else None)
    handled[key] = handled.get(key, 0) + 1


loop.set_exception_handler(handler)


class Failing(asyncio.BufferedProtocol):
    """Raises in the callback the connection's first byte names."""

    def __init__(self):
        self.buf = bytearray(64)
        self.mode = None

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        if self.mode == b"g":
            raise ValueError("get_buffer")
        return self.buf

    def buffer_updated(self, n):
        if self.mode is None:
            self.mode = bytes(self.buf[:1])
            if n > 1:
                self.buffer_updated_rest(n)
            if self.mode == b"k":
                kept.append(self.transport)
            return
        self.buffer_updated_rest(n)

    def buffer_updated_rest(self, n):
        if self.mode == b"b":
            raise ValueError("buffer_updated")

    def eof_received(self):
        if self.mode == b"e":
            raise ValueError("eof_received")

    def connection_lost(self, exc):
        key = type(exc).__name__ if exc else "None"
        lost[key] = lost.get(key, 0) + 1


class Plain(asyncio.Protocol):
    def __init__(self, how):
        self.how = how

    def connection_made(self, transport):
        self.transport = transport
        if self.how == "made":
            raise ValueError("connection_made")
        if self.how == "big write":
            transport.write(b"x" * (4 << 20))

    def data_received(self, data):
        if self.how == "data":
            raise ValueError("data_received")

    def connection_lost(self, exc):
        key = type(exc).__name__ if exc else "None"
        lost[key] = lost.get(key, 0) + 1


async def main():
    plain_how = collections.deque()     # accepted in the order connected
    srv = await loop.create_server(Failing, "127.0.0.1", 0)
    psrv = await loop.create_server(lambda: Plain(plain_how.popleft()),
                                    "127.0.0.1", 0)
    addr, paddr = srv.sockets[0].getsockname(), psrv.sockets[0].getsockname()

    async def raw(address, first, then=None):
        s = socket.socket()
        s.setblocking(False)
        await loop.sock_connect(s, address)
        if first:
            await loop.sock_sendall(s, first)
        if then == "eof":
            s.shutdown(socket.SHUT_WR)
        return s

    socks = []
    for i in range(N):
        # buffer_updated raises, get_buffer raises (on the read after the
        # first), eof_received raises.
        for mode in (b"b", b"g", b"e"):
            s = await raw(addr, mode, then="eof" if mode == b"e" else None)
            if mode != b"e":
                await asyncio.sleep(0)
                await loop.sock_sendall(s, b"more")
            socks.append(s)
        for how in ("data", "made"):
            plain_how.append(how)
            s = await raw(paddr, b"x")
            socks.append(s)
        # The peer resets in the middle of a 4 MiB write.
        plain_how.append("big write")
        s = await raw(paddr, None)
        await loop.sock_recv(s, 1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        s.close()
        # A connection the program never closes.
        peers_kept.append(await raw(addr, b"k"))
        for _ in range(3):
            await asyncio.sleep(0)
    # The rest close when their peers do (the get_buffer ones raise on
    # the read that finds the EOF, if "more" came with the first byte).
    for s in socks:
        s.close()
    for _ in range(500):
        if sum(lost.values()) >= 6 * N:
            break
        await asyncio.sleep(0.01)
    srv.close()
    psrv.close()

peers_kept = []
loop.run_until_complete(main())
print(json.dumps({"handled": handled, "lost": lost, "open": len(kept)}))
sys.stdout.flush()
# Closed with transports still open, and the program exits.
loop.close()
for s in peers_kept:
    s.close()
'''


def _norm_stderr(text):
    """Lines of a program's stderr that say something: the warnings'
    text without the file and line that emitted them (which differ
    between a Python and a C transport), addresses and fds taken out."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith((" ", "\t")):
            continue
        line = re.sub(r"^.*?:\d+: (\w+Warning)", r"\1", line)
        line = re.sub(r"0x[0-9a-fA-F]+", "0x?", line)
        line = re.sub(r"fd=-?\d+", "fd=?", line)
        line = re.sub(r"<\w+( closed| closing)? fd=", r"<Transport\1 fd=",
                      line)
        line = re.sub(r"\d+", "N", line)
        out.append(line)
    return sorted(out)


def check_faults(ctx, n=None):
    if n is None:
        n = 200 if ctx.soak else 40
    runs = {}
    for which in ("asyncio", "tcg"):
        for dev in (False, True):
            cmd = [sys.executable] + (["-X", "dev"] if dev else []) + [
                "-c", FAULTS, which, str(n)]
            try:
                r = subprocess.run(cmd, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True,
                                   timeout=300)
            except subprocess.TimeoutExpired:
                runs[which, dev] = (None, "hung (killed after 300 s)", "")
                continue
            res = None
            if r.returncode == 0:
                try:
                    res = json.loads(r.stdout.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    pass
            runs[which, dev] = (res, r.returncode, r.stderr)
    label = ("transport: %s rounds of raising protocol callbacks, peers "
             "resetting mid-write, the loop closed with transports open"
             % count(n))
    want = {
        "Fatal error: protocol.buffer_updated() call failed. [ValueError]": n,
        "Fatal error: protocol.get_buffer() call failed. [ValueError]": n,
        "Fatal error: protocol.eof_received() call failed. [ValueError]": n,
        "Fatal error: protocol.data_received() call failed. [ValueError]": n,
        "Exception in callback Plain.connection_made [ValueError]": n,
    }
    for dev in (False, True):
        mode = " (-X dev)" if dev else ""
        ours, base = runs["tcg", dev], runs["asyncio", dev]
        res, rc, err = ours
        if res is None:
            ctx.figure(label + mode, "exit status %s" % rc, want="exit 0",
                       ok=False, note=(err or "").strip()[-1500:])
            continue
        problems = []
        if base[0] is None:
            problems.append("asyncio's loop: exit status %s: %s"
                            % (base[1], (base[2] or "").strip()[-300:]))
        elif (res["handled"], res["lost"]) != (base[0]["handled"],
                                               base[0]["lost"]):
            problems.append("asyncio's loop saw %s" % json.dumps(base[0]))
        if res["handled"] != want:
            problems.append("exception handler: %s" %
                            json.dumps(res["handled"]))
        if res["lost"].get("ConnectionResetError", 0) < n:
            problems.append("resets seen by connection_lost: %s"
                            % res["lost"])
        if not dev and err.strip():
            problems.append("stderr: " + err.strip()[-600:])
        if dev and base[0] is not None and \
                _norm_stderr(err) != _norm_stderr(base[2]):
            problems.append("stderr differs from asyncio's loop's: ours %r"
                            ", asyncio's %r" % (_norm_stderr(err)[:6],
                                                _norm_stderr(base[2])[:6]))
        ctx.figure(label + mode,
                   "exit 0, %s handler calls, %s connections lost" % (
                       count(sum(res["handled"].values())),
                       count(sum(res["lost"].values()))),
                   want="exit 0; as on asyncio's loop; stderr %s" % (
                       "as asyncio's loop's" if dev else "empty"),
                   ok=not problems, note="; ".join(problems)[-1500:] or
                   "connection_lost: %s; %d left open" % (
                       ", ".join("%s %s" % kv for kv in
                                 sorted(res["lost"].items())), res["open"]))


# -- memory -------------------------------------------------------------------

WRITER = r'''
import asyncio, gc, json, socket, sys
import tornado_cgen

HONOUR = sys.argv[1] != "ignore"
SLOW = sys.argv[1] == "slow reader"
CHUNK, HIGH = 65536, 1 << 20
ROUNDS, STEPS = int(sys.argv[2]), int(sys.argv[3])


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


class Writer(asyncio.Protocol):
    paused = False

    def connection_made(self, transport):
        self.transport = transport

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False


async def one_round(loop, lsock, chunk):
    peer = loop.create_task(loop.sock_accept(lsock))
    tr, w = await loop.create_connection(Writer, *lsock.getsockname())
    tr.set_write_buffer_limits(high=HIGH)
    s, _ = await peer      # never read from (SLOW: a little at a time)
    s.setblocking(False)
    resumed = 0
    start = rss_kib()
    peak_rss, peak_buf, writes = start, 0, 0
    at_pause = None
    for i in range(STEPS):
        if not (HONOUR and w.paused):
            # A fresh object each time (3.12 and later keep a view of
            # what they are given, not a copy).
            tr.write(chunk * 1)
            writes += 1
        if w.paused and at_pause is None:
            at_pause = rss_kib()
        if SLOW:
            try:
                s.recv(16384)
            except BlockingIOError:
                pass
        peak_buf = max(peak_buf, tr.get_write_buffer_size())
        if i % 64 == 0:
            peak_rss = max(peak_rss, rss_kib())
        await asyncio.sleep(0)
    peak_rss = max(peak_rss, rss_kib())
    tr.abort()
    s.close()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gc.collect()
    return {"start": start, "peak": peak_rss, "end": rss_kib(),
            "at_pause": at_pause, "peak_buffer": peak_buf, "writes": writes}


async def main(loop):
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.setblocking(False)
    chunk = bytearray(b"w" * CHUNK)
    rounds = [await one_round(loop, lsock, chunk) for _ in range(ROUNDS)]
    lsock.close()
    return rounds


loop = tornado_cgen.new_event_loop()
rounds = loop.run_until_complete(main(loop))
loop.close()
print(json.dumps({"rounds": rounds, "chunk": CHUNK, "high": HIGH}))
'''


def _writer(ctx, how, rounds, steps):
    r = subprocess.run([sys.executable, "-c", WRITER, how, str(rounds),
                        str(steps)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=600)
    if r.returncode or r.stderr.strip():
        return None, "exit status %d: %s" % (r.returncode,
                                             r.stderr.strip()[-1500:])
    return json.loads(r.stdout), None


def check_memory(ctx):
    steps = 20000 if ctx.soak else 4000
    name = ("transport: a writer honouring pause_writing, its peer never "
            "reading, %s loop iterations: RSS growth once paused"
            % count(steps))
    res, bad = _writer(ctx, "honour", 2, steps)
    if bad:
        ctx.figure(name, "failed", want="< 256 KiB", ok=False, note=bad)
    else:
        # The second round: the first warms the allocator up.
        last = res["rounds"][-1]
        end = max(last["peak"], last["end"])
        flat = end - (last["at_pause"] or 0)
        total = end - last["start"]
        bound = res["high"] + res["chunk"]
        peak_buf = max(r["peak_buffer"] for r in res["rounds"])
        ctx.figure(name, "%d KiB" % flat,
                   want="< 256 KiB; from the start <= high-water mark + "
                   "one write + 1 MiB; buffer <= high-water mark + one write",
                   ok=(last["at_pause"] is not None and flat < 256 and
                       total * 1024 <= bound + (1 << 20) and
                       peak_buf <= bound),
                   note="from the start %d KiB; buffer at most %s bytes "
                   "(bound %s); %s writes" % (
                       total, count(peak_buf), count(bound),
                       count(last["writes"])))
    name = ("transport: a writer honouring pause_writing, its peer "
            "reading 16 KiB an iteration, %s loop iterations: RSS growth "
            "once paused" % count(steps))
    res, bad = _writer(ctx, "slow reader", 2, steps)
    if bad:
        ctx.figure(name, "failed", want="< 256 KiB", ok=False, note=bad)
    else:
        # The second round, from when its buffer first filled.
        last = res["rounds"][-1]
        growth = max(last["peak"], last["end"]) - (last["at_pause"] or 0)
        bound = res["high"] + res["chunk"]
        peak_buf = max(r["peak_buffer"] for r in res["rounds"])
        ctx.figure(name, "%d KiB" % growth,
                   want="< 256 KiB once the buffer first filled, buffer "
                   "<= high-water mark + one write",
                   ok=(last["at_pause"] is not None and growth < 256 and
                       peak_buf <= bound),
                   note="buffer at most %s bytes (bound %s); %s writes" % (
                       count(peak_buf), count(bound),
                       count(last["writes"])))
    steps = 2000 if ctx.soak else 500
    name = ("transport: a writer ignoring pause_writing, its peer never "
            "reading, %s writes of 64 KiB a round, 3 rounds" % count(steps))
    res, bad = _writer(ctx, "ignore", 3, steps)
    if bad:
        ctx.figure(name, "failed", want="bounded", ok=False, note=bad)
        return
    rounds = res["rounds"]
    held = [r["writes"] * res["chunk"] // 1024 for r in rounds]
    grew = [r["peak"] - rounds[0]["start"] for r in rounds]
    own = [r["peak"] - r["start"] for r in rounds]
    # Each round holds what it buffered (and no copy of it beside it); the
    # later rounds fit in what the first gave back.
    ok = (all(g <= 1.25 * h + 4096 for g, h in zip(own, held)) and
          grew[-1] <= grew[0] + 4096)
    ctx.figure(name, "peak RSS over the start %s KiB" % "/".join(
        str(g) for g in grew),
        want="each round <= 1.25 x what it buffered + 4 MiB; the last "
        "no higher than the first + 4 MiB", ok=ok,
        note="buffered %s KiB a round" % "/".join(str(h) for h in held))
