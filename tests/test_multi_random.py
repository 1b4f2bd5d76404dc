"""gen.multi and ``yield`` of a list or dict with random children (finished,
pending, failed; asyncio futures, coroutines, nested lists) and random keys
(str, int, bool, str subclasses, objects that count their hash calls):
each implementation gives the trace upstream Tornado gives, the result or
the first failure in order, the records logged and the keys' hash and eq
calls."""
import asyncio
import gc
import logging
import random

import pytest

from conftest import _load_impl, run

SEEDS = range(200)


class Key:
    """A key whose hash and eq calls are part of the trace."""

    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def __hash__(self):
        self.calls.append(("hash", self.name))
        return hash(self.name)

    def __eq__(self, other):
        self.calls.append(("eq", self.name))
        return isinstance(other, Key) and other.name == self.name

    def __repr__(self):
        return "Key(%s)" % self.name


class S(str):
    pass


CHILD_KINDS = ["done", "done", "done", "pending", "failed", "pending_fail",
               "loop_done", "loop_pending", "coro", "nested", "same"]


def make_program(seed):
    rnd = random.Random(seed)
    n = rnd.choice([0, 1, 2, 3, 5, 8])
    # Mostly all finished with a result (the one-pass case), else a mix.
    if rnd.random() < 0.5:
        kinds = ["done"] * n
    else:
        kinds = [rnd.choice(CHILD_KINDS) for _ in range(n)]
    if kinds and "same" == kinds[0]:
        kinds[0] = "done"
    container = rnd.choice(["list", "list", "dict", "dict", "tuple"])
    keyset = rnd.choice(["str", "int", "mixed", "obj", "bool", "strsub"])
    how = rnd.choice(["multi", "yield", "await"])
    delays = [rnd.randint(0, 3) for _ in range(n)]
    return dict(kinds=kinds, container=container, keyset=keyset, how=how,
                delays=delays)


def make_key(keyset, i, calls):
    if keyset == "str":
        return "k%d" % (7 - i)
    if keyset == "int":
        return (i * 37) % 11 - 5
    if keyset == "bool":
        return [False, True][i] if i < 2 else i
    if keyset == "strsub":
        return S("s%d" % i)
    if keyset == "obj":
        return Key("o%d" % i, calls)
    return ["m", 3, "x" * i, -i, 2.5][i % 5] if i < 5 else "z%d" % i


def trace_of(impl, prog):
    trace = []
    calls = []
    gen, Future = impl.gen, impl.concurrent.Future

    class Handler(logging.Handler):
        def emit(self, record):
            exc = record.exc_info[1] if record.exc_info else None
            trace.append(("log", record.name, record.levelname,
                          record.getMessage().split("\n")[0], repr(exc)))

    handler = Handler(logging.DEBUG)
    loggers = [logging.getLogger("tornado"), logging.getLogger("asyncio")]
    for logger in loggers:
        logger.addHandler(handler)

    async def main():
        loop = asyncio.get_running_loop()

        def settle(f, delay, exc):
            def go(n):
                if n:
                    loop.call_soon(go, n - 1)
                elif exc is None:
                    f.set_result("late%d" % delay)
                else:
                    f.set_exception(exc)
            go(delay)

        def child(kind, i, previous):
            if kind == "same":
                return previous[-1]
            if kind == "done":
                f = Future()
                f.set_result(["r", i])
                return f
            if kind == "failed":
                f = Future()
                f.set_exception(ValueError("f%d" % i))
                return f
            if kind == "pending":
                f = Future()
                settle(f, prog["delays"][i], None)
                return f
            if kind == "pending_fail":
                f = Future()
                settle(f, prog["delays"][i], KeyError("p%d" % i))
                return f
            if kind == "loop_done":
                f = loop.create_future()
                f.set_result(i)
                return f
            if kind == "loop_pending":
                f = loop.create_future()
                settle(f, prog["delays"][i], None)
                return f
            if kind == "coro":
                @gen.coroutine
                def c():
                    trace.append(("coro", i))
                    return i * 2
                return c()
            assert kind == "nested"
            a, b = Future(), Future()
            a.set_result("a%d" % i)
            b.set_result("b%d" % i)
            return [a, b]

        made = []
        for i, kind in enumerate(prog["kinds"]):
            made.append(child(kind, i, made))
        if prog["container"] == "dict":
            children = {}
            for i, c in enumerate(made):
                children[make_key(prog["keyset"], i, calls)] = c
        elif prog["container"] == "tuple":
            children = tuple(made)
        else:
            children = made
        calls.append("built")
        trace.append(("calls", list(calls)))
        del calls[:]
        try:
            if prog["how"] == "multi":
                m = gen.multi(children)
                trace.append(("done at once", m.done()))
                res = await m
            elif prog["how"] == "await":
                res = await gen.convert_yielded(children)
            else:
                @gen.coroutine
                def y():
                    r = yield children
                    trace.append(("resumed",))
                    return r
                res = await y()
        except Exception as e:
            trace.append(("raised", type(e).__name__, str(e)))
        else:
            kind = type(res).__name__
            if isinstance(res, dict):
                res = [(repr(k), type(k).__name__, v) for k, v in res.items()]
            trace.append(("result", kind, res))
        trace.append(("calls", list(calls)))
        for _ in range(6):
            await asyncio.sleep(0)

    try:
        run(main)
        if any("fail" in k for k in prog["kinds"]):
            # What was never retrieved is logged when it goes.
            gc.collect()
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    return trace


@pytest.fixture(scope="module")
def oracle():
    pytest.importorskip("tornado", reason="upstream Tornado is the oracle")
    tornado = _load_impl("tornado")
    return {seed: trace_of(tornado, make_program(seed)) for seed in SEEDS}


def test_multi_random_children_as_tornado(impl, oracle):
    if impl.name == "tornado":
        pytest.skip("the oracle itself")
    bad = []
    for seed in SEEDS:
        prog = make_program(seed)
        got = trace_of(impl, prog)
        if got != oracle[seed]:
            bad.append((seed, prog, got, oracle[seed]))
    assert not bad, "%d of %d differ; first:\n%s\n%s\n%s\n%s" % (
        (len(bad), len(SEEDS)) + bad[0])
