from . import concurrent as concurrent, gen as gen, ioloop as ioloop
from . import loop as loop, log as log
from .loop import EventLoopPolicy as EventLoopPolicy
from .loop import new_event_loop as new_event_loop
from .loop import run as run

__all__ = ["__version__", "new_event_loop", "EventLoopPolicy", "run",
           "install", "uninstall", "installed"]

__version__: str


def install() -> None: ...
def uninstall() -> None: ...
def installed() -> bool: ...
