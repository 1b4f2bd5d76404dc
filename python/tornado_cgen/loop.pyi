import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from . import _core

__all__ = ["Loop", "new_event_loop", "EventLoopPolicy", "run"]

_T = TypeVar("_T")


# The C core under the stdlib's selector loop: an asyncio event loop whose
# scheduling, timers and readiness dispatch are C.  Its call_soon,
# call_later and call_at hand out _core.Handle and _core.TimerHandle,
# which have asyncio.Handle's and asyncio.TimerHandle's interface.
class Loop(asyncio.SelectorEventLoop):
    @property
    def _ready_count(self) -> int: ...
    @property
    def _timer_count(self) -> int: ...
    @property
    def _iterations(self) -> int: ...
    def __init__(self) -> None: ...


def new_event_loop() -> Loop: ...


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy): ...


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None,
        **run_kwargs: Any) -> _T: ...
