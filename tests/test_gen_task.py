"""gen.Task and gen.Arguments: Tornado 4 API that Tornado 6 removed, so these
run on tornado_cgen only.  Each test states the Tornado 4.5 behaviour it
encodes (tornado/gen.py v4.5.3: ``Task``, ``_argument_adapter``).
"""
import asyncio

import pytest

from tornado_cgen import gen

from conftest import run


def later(callback, *args, **kwargs):
    asyncio.get_running_loop().call_soon(lambda: callback(*args, **kwargs))


def test_task_passes_args_kwargs_and_callback():
    # Tornado 4: func(*args, callback=adapter, **kwargs).
    seen = {}

    def func(a, b, *, key, callback):
        seen.update(a=a, b=b, key=key)
        later(callback, "r")

    @gen.coroutine
    def f():
        return (yield gen.Task(func, 1, 2, key=3))

    assert run(f) == "r"
    assert seen == {"a": 1, "b": 2, "key": 3}


@pytest.mark.parametrize("args, kwargs, expected", [
    # No argument: the yield gives None.
    ((), {}, None),
    # One positional argument: that argument.
    ((5,), {}, 5),
    # More than one: Arguments(args, kwargs).
    ((1, 2), {}, gen.Arguments((1, 2), {})),
    # Any keyword (even with one positional): Arguments(args, kwargs).
    ((1,), {"k": 2}, gen.Arguments((1,), {"k": 2})),
    ((), {"k": 2}, gen.Arguments((), {"k": 2})),
])
def test_callback_argument_adapter(args, kwargs, expected):
    def func(callback):
        later(callback, *args, **kwargs)

    @gen.coroutine
    def f():
        return (yield gen.Task(func))

    assert run(f) == expected


def test_arguments_is_a_namedtuple():
    # Tornado 4: collections.namedtuple('Arguments', ['args', 'kwargs']).
    a = gen.Arguments((1,), {"x": 2})
    assert a.args == (1,) and a.kwargs == {"x": 2}
    assert tuple(a) == ((1,), {"x": 2})
    assert gen.Arguments._fields == ("args", "kwargs")


def test_second_callback_call_is_ignored():
    # Tornado 4: set_result returns early once the future is done.
    def func(callback):
        callback(1)
        callback(2)
        later(callback, 3)

    @gen.coroutine
    def f():
        r = yield gen.Task(func)
        yield gen.moment
        return r

    assert run(f) == 1


def test_synchronous_callback_resolves_at_once():
    async def main():
        fut = gen.Task(lambda callback: callback("now"))
        assert fut.done() and fut.result() == "now"

    run(main)


def test_exception_raised_by_func_goes_into_future():
    # Tornado 4: ExceptionStackContext's handler puts it on the future.
    def func(callback):
        raise ValueError("sync")

    @gen.coroutine
    def f():
        fut = gen.Task(func)
        assert fut.done()
        try:
            yield fut
        except ValueError as e:
            return str(e)

    assert run(f) == "sync"


def test_exception_after_callback_is_raised_to_caller():
    # Tornado 4: with the future already done the handler returns False,
    # so the exception propagates out of Task().
    def func(callback):
        callback(1)
        raise KeyError("late")

    async def main():
        with pytest.raises(KeyError):
            gen.Task(func)

    run(main)


def test_task_future_type():
    from tornado_cgen.concurrent import Future

    async def main():
        fut = gen.Task(lambda callback: callback())
        assert isinstance(fut, Future)
        assert fut.result() is None

    run(main)
