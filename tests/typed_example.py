"""A program written against tornado_cgen's types.

``tests/test_typing.py`` runs ``mypy --strict`` over it (with the README's
examples) and runs it: what it returns is asserted there, so the stubs
describe code that works.
"""
import asyncio
import concurrent.futures
import datetime
from collections.abc import Generator
from typing import Any

import tornado_cgen
from tornado_cgen import concurrent as tcg_concurrent
from tornado_cgen import gen, ioloop, testing
from tornado_cgen.concurrent import Future


@gen.coroutine
def double(x: int) -> Generator[Any, Any, int]:
    yield gen.moment
    return 2 * x


@gen.coroutine
def total() -> Generator[Any, Any, int]:
    a, b = yield [double(1), double(2)]
    d = yield {"x": double(3)}
    yield gen.sleep(0.001)
    result: int = a + b + d["x"]
    return result


@gen.coroutine
def plain(x: int) -> int:
    return x + 1            # a plain function made a coroutine


async def native() -> int:
    first: int = await double(10)                # our Future is awaitable
    both = await gen.multi([double(1), plain(1)])
    named = await gen.multi({"a": double(2)})
    late = await gen.with_timeout(datetime.timedelta(seconds=5), double(4))
    done: Future[int] = Future()
    done.set_result(7)
    seven = await done
    assert done.done() and not done.cancelled() and done.exc_info() is None
    assert tcg_concurrent.is_future(done)
    result: int = first + sum(both) + named["a"] + late + seven
    return result


def callbacks(io_loop: ioloop.IOLoop) -> list[str]:
    seen: list[str] = []
    f: Future[str] = Future()

    def on_done(fut: Future[str]) -> None:
        seen.append(fut.result())
        io_loop.stop()

    io_loop.add_future(f, on_done)
    io_loop.add_callback(seen.append, "callback")
    handle = io_loop.call_later(0.001, f.set_result, "future")
    assert handle is not None
    timeout = io_loop.add_timeout(io_loop.time() + 60, seen.append, "never")
    io_loop.remove_timeout(timeout)
    io_loop.start()
    return seen


def executor_result() -> int:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        async def run() -> int:
            io_loop = ioloop.IOLoop.current()
            value: int = await io_loop.run_in_executor(pool, sum, [1, 2])
            return value
        return tornado_cgen.run(run())
    finally:
        pool.shutdown()


def standalone() -> tuple[int, int, list[str], int, int]:
    io_loop = ioloop.IOLoop()
    try:
        a: int = io_loop.run_sync(total)
        b: int = io_loop.run_sync(native)
        seen = callbacks(io_loop)
    finally:
        io_loop.close()
    loop = tornado_cgen.new_event_loop()
    try:
        c = loop.run_until_complete(native())
    finally:
        loop.close()
    assert gen.is_coroutine_function(double)
    assert testing.get_async_test_timeout() > 0
    return a, b, seen, c, executor_result()


def installed_mode() -> int:
    """Tornado's own API (typed by Tornado) on the C Runner and loop."""
    from tornado import gen as tornado_gen
    from tornado.ioloop import IOLoop

    tornado_cgen.install()
    try:
        assert tornado_cgen.installed()

        @tornado_gen.coroutine
        def triple(x: int) -> Generator[Any, Any, int]:
            yield tornado_gen.moment
            return 3 * x

        async def main() -> int:
            value: int = await triple(2)
            return value

        io_loop = IOLoop(make_current=False)
        try:
            one: int = io_loop.run_sync(lambda: triple(1))
        finally:
            io_loop.close()
        return asyncio.run(main()) + one
    finally:
        tornado_cgen.uninstall()


if __name__ == "__main__":
    print(standalone())
