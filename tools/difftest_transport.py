"""Differential random testing of the socket transport: random programs of
transport operations run on asyncio's loop and on tornado_cgen's, the
observable records compared.

    python tools/difftest_transport.py [--programs N] [--seed S] [-v]

A program drives one transport (connect_accepted_socket over a
socketpair) and the raw peer socket: writes of random sizes and types
(bytes, bytearray, memoryview, and non-buffers), write_eof, pause and
resume, close and abort at random points, the peer sending, shutting down,
closing, set_protocol switches between a plain and a buffered protocol
(buffers of random sizes, fresh memoryviews or one bytearray), protocols
raising (Exception and BaseException subclasses) in data_received,
get_buffer, buffer_updated and eof_received, and max_size changes.  The
record: every protocol callback with its arguments (data merged per
protocol), what each operation returned or raised, the exception
handler's (message, exception type, handled exception type), what the
peer received and whether it saw EOF, and what propagated out of the loop.
Exit status 1 if any program's records differ.
"""
import argparse
import asyncio
import random
import socket
import sys
import time
import zlib


class Boom(Exception):
    pass


class BaseBoom(BaseException):
    pass


RAISES = (None, None, None, None, Boom, BaseBoom, KeyboardInterrupt)


def gen_program(rng):
    """A random program: its protocol settings and operations."""
    def protocol_spec():
        return {
            "buffered": rng.random() < 0.4,
            "bufsize": rng.choice((1, 7, 64, 1024, 65536)),
            "fresh_view": rng.random() < 0.3,
            "raise_at": rng.randrange(1, 6),
            "raise": rng.choice(RAISES),
            "raise_in": rng.choice(("data", "get_buffer", "eof")),
            "keep_open": rng.random() < 0.5,
            "echo": rng.random() < 0.2,
        }
    ops = []
    for _ in range(rng.randrange(3, 25)):
        r = rng.random()
        if r < 0.25:
            ops.append(("write", rng.choice(("bytes", "bytearray",
                                             "memoryview", "bytes", "str",
                                             "int")),
                        rng.choice((0, 1, 5, 100, 4096, 70000,
                                    300000, 2000000))))
        elif r < 0.45:
            ops.append(("peer_send", rng.choice((1, 10, 1000, 65536,
                                                 300000))))
        elif r < 0.55:
            ops.append(("sleep",))
        elif r < 0.6:
            ops.append(("peer_drain",))
        elif r < 0.65:
            ops.append(("pause",))
        elif r < 0.7:
            ops.append(("resume",))
        elif r < 0.75:
            ops.append(("set_protocol", protocol_spec()))
        elif r < 0.78:
            ops.append(("write_eof",))
        elif r < 0.81:
            ops.append(("peer_shut_wr",))
        elif r < 0.84:
            ops.append(("max_size", rng.choice((1, 10, 4096, 1 << 20))))
        elif r < 0.87:
            ops.append(("close",))
        elif r < 0.9:
            ops.append(("abort",))
        elif r < 0.92:
            ops.append(("peer_close",))
        else:
            ops.append(("state",))
    return {"protocol": protocol_spec(), "ops": ops}


def make_protocol(spec, record, name):
    loop = asyncio.get_running_loop()

    def maybe_raise(where, count):
        if (spec["raise"] is not None and spec["raise_in"] == where and
                count == spec["raise_at"]):
            raise spec["raise"](where)

    class Base:
        def connection_made(self, transport):
            self.transport = transport
            record.append((name, "made"))

        def eof_received(self):
            record.append((name, "eof"))
            maybe_raise("eof", 1)
            return spec["keep_open"]

        def connection_lost(self, exc):
            record.append((name, "lost", type(exc).__name__))

        def pause_writing(self):
            record.append((name, "pause_writing"))

        def resume_writing(self):
            record.append((name, "resume_writing"))

        def got(self, data):
            # (length, crc32) of what came, merged per protocol.
            if record and record[-1][:2] == (name, "data"):
                _, _, size, crc = record[-1]
                record[-1] = (name, "data", size + len(data),
                              zlib.crc32(data, crc))
            else:
                record.append((name, "data", len(data), zlib.crc32(data)))
            if spec["echo"] and not self.transport.is_closing():
                try:
                    self.transport.write(bytes(data[:100]))
                except Exception as e:
                    record.append((name, "echo", type(e).__name__, str(e)))

    if spec["buffered"]:
        class P(Base, asyncio.BufferedProtocol):
            def __init__(self):
                self.buf = bytearray(spec["bufsize"])
                self.calls = 0

            def get_buffer(self, hint):
                self.calls += 1
                maybe_raise("get_buffer", self.calls)
                if spec["fresh_view"]:
                    return memoryview(self.buf)
                return self.buf

            def buffer_updated(self, n):
                self.got(self.buf[:n])
                maybe_raise("data", self.calls)
                if spec["fresh_view"] and self.calls % 3 == 0:
                    self.buf.append(0)    # BufferError while exported
    else:
        class P(Base, asyncio.Protocol):
            def __init__(self):
                self.calls = 0

            def data_received(self, data):
                self.calls += 1
                if type(data) is not bytes:
                    record.append((name, "data type", type(data).__name__))
                self.got(data)
                maybe_raise("data", self.calls)
    del loop
    return P()


def payload(kind, size, i):
    chunk = bytes([(i * 7 + j) % 251 for j in range(min(size, 251))])
    data = (chunk * (size // max(len(chunk), 1) + 1))[:size]
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    if kind == "str":
        return "text"
    return 12


async def settle(peer=None, received=None):
    for _ in range(3):
        await asyncio.sleep(0.002)


async def run_program(prog, record, peer_got):
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    b.setblocking(False)
    state = {"peer_open": True, "n": 0}
    transport, proto = await loop.connect_accepted_socket(
        lambda: make_protocol(prog["protocol"], record, "p0"), a)
    await settle()

    def drain():
        if not state["peer_open"]:
            return
        while True:
            try:
                d = b.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                peer_got.append(("peer error", type(e).__name__))
                return
            if not d:
                if not peer_got or peer_got[-1] != ("peer eof",):
                    peer_got.append(("peer eof",))
                return
            if peer_got and peer_got[-1][0] == "peer data":
                _, size, crc = peer_got[-1]
                peer_got[-1] = ("peer data", size + len(d),
                                zlib.crc32(d, crc))
            else:
                peer_got.append(("peer data", len(d), zlib.crc32(d)))

    for i, op in enumerate(prog["ops"]):
        kind = op[0]
        try:
            if kind == "write":
                r = transport.write(payload(op[1], op[2], i))
                record.append(("op", i, kind, repr(r),
                               transport.get_write_buffer_size() > 0))
            elif kind == "peer_send":
                if state["peer_open"]:
                    try:
                        b.send(payload("bytes", op[1], i))
                    except OSError as e:
                        record.append(("op", i, "peer send",
                                       type(e).__name__))
                await settle()
            elif kind == "sleep":
                await settle()
            elif kind == "peer_drain":
                await settle()
                drain()
                await settle()
            elif kind == "pause":
                record.append(("op", i, kind,
                               repr(transport.pause_reading())))
            elif kind == "resume":
                record.append(("op", i, kind,
                               repr(transport.resume_reading())))
            elif kind == "set_protocol":
                state["n"] += 1
                name = "p%d" % state["n"]
                p = make_protocol(op[1], record, name)
                p.transport = transport
                transport.set_protocol(p)
                record.append(("op", i, kind, name))
            elif kind == "write_eof":
                record.append(("op", i, kind, repr(transport.write_eof())))
            elif kind == "peer_shut_wr":
                if state["peer_open"]:
                    b.shutdown(socket.SHUT_WR)
                await settle()
            elif kind == "max_size":
                transport.max_size = op[1]
            elif kind == "close":
                record.append(("op", i, kind, repr(transport.close())))
            elif kind == "abort":
                record.append(("op", i, kind, repr(transport.abort())))
            elif kind == "peer_close":
                drain()
                if state["peer_open"]:
                    b.close()
                    state["peer_open"] = False
                await settle()
            elif kind == "state":
                record.append(("op", i, kind, transport.is_closing(),
                               transport.is_reading()))
        except (Exception, BaseBoom) as e:
            record.append(("op", i, kind, "raised", type(e).__name__,
                           str(e)))
    await settle()
    drain()
    try:
        transport.abort()
    except Exception as e:     # the stdlib's, after a close that flushed
        record.append(("final abort", type(e).__name__))
    await settle()
    drain()
    if state["peer_open"]:
        b.close()
    await settle()


def run_on(make_loop, prog):
    record, peer_got, handler = [], [], []
    loop = make_loop()

    def on_error(loop, ctx):
        handled = sys.exc_info()[0]
        handler.append((ctx["message"].split(" at ")[0],
                        type(ctx.get("exception")).__name__,
                        handled.__name__ if handled else None))
    loop.set_exception_handler(on_error)
    out = None
    try:
        loop.run_until_complete(
            asyncio.wait_for(run_program(prog, record, peer_got), 30))
    except KeyboardInterrupt:
        out = "KeyboardInterrupt"
    except asyncio.TimeoutError:
        out = "timeout"
    finally:
        # What a propagated exception left running.
        for t in asyncio.all_tasks(loop):
            t.cancel()
        try:
            loop.run_until_complete(asyncio.sleep(0.01))
        except BaseException:
            pass
        loop.close()
    return {"record": record, "peer": peer_got, "handler": handler,
            "out": out}


def loops():
    import tornado_cgen
    return asyncio.new_event_loop, tornado_cgen.new_event_loop


def compare(prog):
    mk_asyncio, mk_tcg = loops()
    want = run_on(mk_asyncio, prog)
    got = run_on(mk_tcg, prog)
    return want, got


RETRIES = 2


def judge(prog):
    """("same", want, got), ("timing", want, again) or ("differs", want,
    got).

    How much arrives between two sleeps is timing, and so can differ
    between two runs on one loop: a program differs only if asyncio's loop
    gives one record in 1 + RETRIES runs and ours never gives it.  Any
    record the two loops share is a match.
    """
    mk_asyncio, mk_tcg = loops()
    want, got = compare(prog)
    for _ in range(RETRIES):
        if want == got:
            break
        again = run_on(mk_asyncio, prog)
        if again != want:
            return "timing", want, again
        got = run_on(mk_tcg, prog)
    return ("same" if want == got else "differs"), want, got


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--programs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args(argv)
    from tornado_cgen import _core
    before = _core._stats()
    t0 = time.monotonic()
    bad = 0
    for n in range(a.programs):
        rng = random.Random("%d-%d" % (a.seed, n))
        prog = gen_program(rng)
        verdict, want, got = judge(prog)
        if verdict == "timing":
            if a.v:
                print("program %d: asyncio not repeatable, skipped" % n)
                for k in want:
                    if want[k] != got[k]:
                        print(("  %s 1: %r" % (k, want[k]))[:600])
                        print(("  %s 2: %r" % (k, got[k]))[:600])
            continue
        if verdict == "differs":
            bad += 1
            print("program %d (seed %d) differs:" % (n, a.seed))
            print("  ops:", prog)
            for k in want:
                if want[k] != got[k]:
                    print(("  %s asyncio: %r" % (k, want[k]))[:3000])
                    print(("  %s tcg:     %r" % (k, got[k]))[:3000])
    after = _core._stats()
    print("%d programs, %d differing, %.1f s; C reads %d, C writes %d" % (
        a.programs, bad, time.monotonic() - t0,
        after["transport_reads"] - before["transport_reads"],
        after["transport_writes"] - before["transport_writes"]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
