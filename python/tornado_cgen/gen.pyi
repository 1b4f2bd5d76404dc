import asyncio
import concurrent.futures
import datetime
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar, overload

from . import _core
from ._core import Runner as Runner
from .concurrent import Future

__all__ = [
    "coroutine",
    "is_coroutine_function",
    "Return",
    "Task",
    "Arguments",
    "multi",
    "Multi",
    "multi_future",
    "maybe_future",
    "with_timeout",
    "sleep",
    "moment",
    "WaitIterator",
    "convert_yielded",
    "BadYieldError",
    "TimeoutError",
    "Runner",
]

_T = TypeVar("_T")

# What a coroutine may yield (as in Tornado).
_Yieldable = (None | Awaitable[Any] | list[Awaitable[Any]]
              | dict[Any, Awaitable[Any]] | concurrent.futures.Future[Any])
_Quiet = type[Exception] | tuple[type[Exception], ...]


class BadYieldError(Exception): ...


TimeoutError = asyncio.TimeoutError


class Return(Exception):
    value: Any
    def __init__(self, value: Any = None) -> None: ...


class Arguments(NamedTuple):
    """Tornado 4: the positional and keyword arguments of a callback
    given to ``gen.Task``, when there were several."""
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@overload
def coroutine(
    func: Callable[..., Generator[Any, Any, _T]],
) -> Callable[..., Future[_T]]: ...
@overload
def coroutine(func: Callable[..., _T]) -> Callable[..., Future[_T]]: ...


def is_coroutine_function(func: Any) -> bool: ...


convert_yielded: _core.ConvertYielded


@overload
def multi(children: Sequence[_Yieldable],
          quiet_exceptions: _Quiet = ()) -> Future[list[Any]]: ...
@overload
def multi(children: Mapping[Any, _Yieldable],
          quiet_exceptions: _Quiet = ()) -> Future[dict[Any, Any]]: ...


Multi = multi


@overload
def multi_future(children: Sequence[_Yieldable],
                 quiet_exceptions: _Quiet = ()) -> Future[list[Any]]: ...
@overload
def multi_future(children: Mapping[Any, _Yieldable],
                 quiet_exceptions: _Quiet = ()) -> Future[dict[Any, Any]]: ...


def maybe_future(x: Any) -> Future[Any]: ...
def sleep(duration: float) -> Future[None]: ...
def with_timeout(
    timeout: float | datetime.timedelta,
    future: _Yieldable,
    quiet_exceptions: _Quiet = (),
    *,
    message: str | Callable[[], str] | None = None,
) -> Future[Any]: ...


# One loop iteration when yielded (Tornado types it as a Future too).
moment: Future[None]
_null_future: Future[None]


class WaitIterator:
    current_index: Any
    current_future: Any
    def __init__(self, *args: Awaitable[Any] | concurrent.futures.Future[Any],
                 **kwargs: Awaitable[Any] | concurrent.futures.Future[Any]
                 ) -> None: ...
    def done(self) -> bool: ...
    def next(self) -> Future[Any]: ...
    def __aiter__(self) -> WaitIterator: ...
    def __anext__(self) -> Future[Any]: ...


def Task(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]: ...
