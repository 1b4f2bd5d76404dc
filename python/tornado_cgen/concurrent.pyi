import asyncio
import types
from collections.abc import Callable
from concurrent import futures
from typing import Any, TypeVar, overload

from ._core import Future as Future

__all__ = [
    "Future",
    "FUTURES",
    "is_future",
    "chain_future",
    "future_set_result_unless_cancelled",
    "future_set_exception_unless_cancelled",
    "future_set_exc_info",
    "future_add_done_callback",
    "run_on_executor",
    "DummyExecutor",
    "dummy_executor",
    "ReturnValueIgnoredError",
]

_T = TypeVar("_T")

# Whatever these functions take: our Future, asyncio's, concurrent's.
_AnyFuture = Future[_T] | asyncio.Future[_T] | futures.Future[_T]

FUTURES: tuple[type[Future[Any]], type[asyncio.Future[Any]],
               type[futures.Future[Any]]]


class ReturnValueIgnoredError(Exception): ...


def is_future(x: Any) -> bool: ...


class DummyExecutor(futures.Executor):
    def submit(  # type: ignore[override]
        self, fn: Callable[..., _T], *args: Any, **kwargs: Any
    ) -> futures.Future[_T]: ...
    def shutdown(self, wait: bool = True,
                 cancel_futures: bool = False) -> None: ...


dummy_executor: DummyExecutor


def run_on_executor(*args: Any, **kwargs: Any) -> Callable[..., Any]: ...
def chain_future(a: _AnyFuture[_T], b: _AnyFuture[_T]) -> None: ...
def future_set_result_unless_cancelled(future: _AnyFuture[_T],
                                       value: _T) -> None: ...
def future_set_exception_unless_cancelled(future: _AnyFuture[Any],
                                          exc: BaseException) -> None: ...
def future_set_exc_info(
    future: _AnyFuture[Any],
    exc_info: tuple[type | None, BaseException | None,
                    types.TracebackType | None],
) -> None: ...
@overload
def future_add_done_callback(
    future: futures.Future[_T],
    callback: Callable[[futures.Future[_T]], None]) -> None: ...
@overload
def future_add_done_callback(
    future: asyncio.Future[_T],
    callback: Callable[[asyncio.Future[_T]], None]) -> None: ...
@overload
def future_add_done_callback(
    future: Future[_T], callback: Callable[[Future[_T]], None]) -> None: ...
