"""tornado-cgen: Tornado's coroutine machinery (gen, Future, IOLoop) in C.

Standalone use::

    from tornado_cgen import gen, ioloop, concurrent

The C extension ``tornado_cgen._core`` is required; there is no pure-Python
fallback.
"""
from . import _core  # noqa: F401  (fails loudly if the extension is missing)

from .loop import EventLoopPolicy, new_event_loop, run  # noqa: E402
from ._speedup import install, installed, uninstall  # noqa: E402

# The top layer: importing it registers the IOLoop with the layers below
# (loop, concurrent, gen), so whichever module a program imports, the whole
# package is in place before its first call.
from . import ioloop  # noqa: E402,F401

from ._version import __version__  # noqa: E402

__all__ = ["__version__", "new_event_loop", "EventLoopPolicy", "run",
           "install", "uninstall", "installed"]
