"""The Runner and the coroutine wrapper (ext/runner.c) against upstream
Tornado: what must not be lost or diverge however a coroutine is driven."""
import asyncio
import contextvars

import pytest

from conftest import run_python


def run(main):
    return asyncio.run(main())


class EagerFuture(asyncio.Future):
    """Finishes inside its own add_done_callback and calls the callback
    there and then (as a future completed by another thread meanwhile
    may).  Upstream Tornado cannot take one: its resume re-enters the
    coroutine's context while it is entered ("cannot enter context"), so
    these tests are tornado_cgen's own: the wakeup must not be lost."""

    def add_done_callback(self, fn, *, context=None):
        if not self.done():
            self.set_result("eager")
        fn(self)


def test_coroutine_resumes_on_eager_future():
    from tornado_cgen import gen

    async def main():
        @gen.coroutine
        def c():
            x = yield EagerFuture()
            return x

        return await asyncio.wait_for(c(), 5)

    assert run(main) == "eager"


def test_python_built_runner_resumes_on_eager_future():
    # gen.Runner(ctx_run, gen, result_future, first_yielded), as code
    # that drives a generator itself builds it.
    async def main():
        def body():
            x = yield EagerFuture()
            y = yield EagerFuture()
            return (x, y)

        g = body()
        first = next(g)
        result = asyncio.get_running_loop().create_future()
        from tornado_cgen import gen
        gen.Runner(contextvars.copy_context().run, g, result, first)
        return await asyncio.wait_for(result, 5)

    assert run(main) == ("eager", "eager")


def test_coroutine_of_a_non_callable_fails_at_the_call(impl):
    # Tornado decorates anything; the call gives a failed Future.
    async def main():
        c = impl.gen.coroutine(None)
        f = c()
        assert isinstance(f.exception(), TypeError)
        f = impl.gen.coroutine(42)(1, x=2)
        assert isinstance(f.exception(), TypeError)

    run(main)


EXIT_PROGRAMS = {
    "suspended coroutine in a cycle, loop never closed": """
import tornado_cgen
from tornado_cgen import gen, ioloop
io = ioloop.IOLoop(make_current=False)
class Box: pass
box = Box(); box.box = box
@gen.coroutine
def waiter():
    box.never = io.asyncio_loop.create_future()
    yield box.never
async def main():
    box.coro = waiter()
io.run_sync(main)
""",
    "future holding itself through a callback": """
import tornado_cgen
loop = tornado_cgen.new_event_loop()
f = loop.create_future()
f.add_done_callback(lambda _f, f=f: None)
""",
    "python-built runner in a cycle": """
import contextvars, tornado_cgen
from tornado_cgen import gen
from tornado_cgen.concurrent import Future
loop = tornado_cgen.new_event_loop()
never = loop.create_future()
def body():
    yield never
g = body(); first = next(g)
result = loop.create_future()
r = gen.Runner(contextvars.copy_context().run, g, result, first)
never.runner = r if hasattr(never, "__dict__") else None
""",
    "asyncio loop with a gen coroutine pending": """
import asyncio
from tornado_cgen import gen
loop = asyncio.new_event_loop()
class Box: pass
b = Box(); b.b = b
@gen.coroutine
def c():
    yield b.f
async def main():
    b.f = loop.create_future()
    b.c = c()
loop.run_until_complete(main())
""",
}


@pytest.mark.parametrize("name", sorted(EXIT_PROGRAMS))
@pytest.mark.parametrize("dev", [False, True], ids=["", "devmode"])
def test_interpreter_exit_with_live_coroutines(name, dev):
    proc = run_python(EXIT_PROGRAMS[name],
                      options=("-X", "dev") if dev else ())
    assert proc.returncode == 0, proc.stderr
    # Dev mode warns about the unclosed loop (ResourceWarning), as asyncio
    # does; nothing else may appear.
    lines = [line for line in proc.stderr.splitlines()
             if "ResourceWarning" not in line and "unclosed event loop"
             not in line]
    assert lines == [], proc.stderr


def test_unretrieved_exception_at_exit_reported_like_asyncio():
    code = """
import asyncio, sys
import tornado_cgen
class H: pass
loop = (asyncio.new_event_loop() if sys.argv[1] == "asyncio"
        else tornado_cgen.new_event_loop())
f = loop.create_future(); f.set_exception(ValueError("x"))
h = H(); h.h = h; h.f = f
"""
    ours = run_python(code, "tcg")
    ref = run_python(code, "asyncio")
    assert ours.returncode == ref.returncode == 0
    assert "Future exception was never retrieved" in ref.stderr
    assert ours.stderr == ref.stderr
