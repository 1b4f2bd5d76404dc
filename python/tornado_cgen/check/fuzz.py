"""fuzz: the C entry points with bad input, re-entrant calls and
misbehaving generators.

The C surface is found by introspection: every callable (and settable
attribute) of ``tornado_cgen._core``'s module and types, and of the Python
API that leads into it (the asyncio loop of ``new_event_loop()``,
``IOLoop``'s methods, ``gen.*``, ``concurrent.*``), so a method added later
is fuzzed without anyone listing it.  Each is called with a generated set of
bad arguments (wrong types, ``None``, huge, negative and NaN numbers,
closed and invalid fds, objects whose ``__eq__``/``__hash__``/``__index__``/
``__float__`` raise or mutate what is being called, callbacks raising
``BaseException``s, callbacks that call back into the same object, objects
whose ``__del__`` does), one bad argument in one position per case, in
child processes (batches, a watchdog per case): a crash or a hang is
attributed to the one call that did it, and the rest of the batch goes on
in a new child.

Where asyncio (``asyncio.new_event_loop()``, ``asyncio.Future``) or
upstream Tornado has the same callable, the same case runs on it in the
same child, and the outcomes are compared: what the call raised, what
escaped the loop run after it, and which exception types were reported
(exception handler, log, unraisable hook).

The misbehaving generators (``yield`` in ``finally`` on close, a generator
that closes or throws into itself, ``StopIteration`` raised explicitly,
yielding itself, futures whose methods raise, ...) run through
``tornado_cgen.gen.coroutine`` on our IOLoop and through
``tornado.gen.coroutine`` on Tornado's, and their outcomes are compared.

Where Tornado is installed, the cases of Tornado's API (``tornado.gen``,
``tornado.ioloop.IOLoop``, ``tornado.concurrent``, the generators) run once
more under ``tornado_cgen.install()`` (Tornado on the C Runner and loop,
through the ``TornadoMethod`` paths), compared with upstream Tornado alone.

``--soak`` adds cases with two or more bad arguments at once, drawn at
random (seeded: the same cases every run).

Run a single case from a report's note with
``python -m tornado_cgen.check.fuzz --case 'NAME' [--installed]``.
"""
import asyncio
import contextvars
import gc
import json
import logging
import math
import os
import random
import select
import socket
import subprocess
import sys
import time
import warnings

from ._report import Stopwatch, count, section_main

# ---------------------------------------------------------------------------
# The implementations being compared

TCG, REF = "tcg", "ref"

# "installed": the worker runs under tornado_cgen.install(), and the TCG
# side of a case is upstream Tornado's API (tornado.gen, tornado.ioloop,
# tornado.concurrent) on the C Runner and C loop; its REF side is the same
# case of a standalone worker (upstream Tornado on asyncio's loop).
MODE = ["standalone"]

# The families whose TCG side exists in installed mode.
INSTALLED_FAMILIES = {"ioloop", "gen", "concurrent", "coroutine", "multi",
                      "genprog"}


def _installed():
    return MODE[0] == "installed"


def _tornado():
    try:
        import tornado
        import tornado.gen
        import tornado.ioloop
        import tornado.concurrent
    except ImportError:
        return None
    return tornado


def noop(*args, **kwargs):
    return None


class Env:
    """One case's world for one implementation: the object whose callable
    is called (``obj``), the loop it lives on, what it reported."""

    def __init__(self, impl, family, state):
        self.impl, self.family, self.state = impl, family, state
        self.loop = None        # the asyncio face that drives the case
        self.ioloop = None
        self.obj = None
        self.fds = []
        self.cleanups = []
        self.reported = set()
        self.depth = 0
        self.call = None        # (callable, args, kwargs), for re-entry

    # -- re-entry: what a callback, an __eq__ or a __del__ does to the
    # object being called.  Bounded, and every error swallowed (it is
    # reported by the caller's outcome, not here).
    def reenter(self, again=True):
        if self.depth >= 2:
            return
        self.depth += 1
        try:
            if again and self.call is not None:
                fn, args, kwargs = self.call
                try:
                    fn(*args, **kwargs)
                except BaseException:
                    pass
            for action in self.reentry_actions():
                try:
                    action()
                except BaseException:
                    pass
        finally:
            self.depth -= 1

    def reentry_actions(self):
        obj, loop = self.obj, self.loop
        acts = []
        if self.family in ("future", "futiter"):
            fut = self.future
            acts += [lambda: fut.remove_done_callback(noop),
                     lambda: fut.add_done_callback(noop),
                     lambda: fut.set_result(2), lambda: fut.cancel()]
        elif self.family in ("handle", "timer"):
            acts += [lambda: obj.cancel()]
        elif self.family in ("runner",):
            acts += [lambda: self.future.set_result(3)]
        if loop is not None:
            acts += [lambda: loop.call_soon(noop), lambda: loop.stop(),
                     lambda: loop.run_until_complete(asyncio.sleep(0)),
                     lambda: loop.close()]
        return acts


def _mk_loop(env):
    if env.family in ("ioloop", "gen", "concurrent", "coroutine", "multi",
                      "genprog", "core", "runner"):
        if env.impl == TCG and not _installed():
            from tornado_cgen import ioloop
            io = ioloop.IOLoop(make_current=False)
        else:
            import tornado.ioloop
            io = tornado.ioloop.IOLoop(make_current=False)
        env.ioloop = io
        env.loop = io.asyncio_loop
    else:
        if env.impl == TCG:
            import tornado_cgen
            env.loop = tornado_cgen.new_event_loop()
        else:
            env.loop = asyncio.new_event_loop()
    loop = env.loop

    def handler(loop, context):
        exc = context.get("exception")
        env.reported.add("handler:" + (_tname(type(exc)) if exc is not None
                                       else "no exception"))
    loop.set_exception_handler(handler)
    asyncio.set_event_loop(loop)


def _close_env(env):
    for c in reversed(env.cleanups):
        try:
            c()
        except BaseException:
            pass
    loop = env.loop
    if loop is not None:
        for _ in range(3):
            try:
                if loop.is_running():
                    loop.stop()
                if env.ioloop is not None:
                    env.ioloop.close(all_fds=False)
                loop.close()
                break
            except BaseException:
                pass
    asyncio.set_event_loop(None)
    for fd in env.fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _future_cls(env):
    if env.impl == TCG and not _installed():
        from tornado_cgen import _core
        return _core.Future
    return asyncio.Future


def _make_future(env, state):
    fut = _future_cls(env)(loop=env.loop)
    cbs = (noop, env.cb_obj, noop)
    if state == "re-entrant callbacks":
        # Done callbacks that call back into the future (and its loop)
        # while the loop runs them.
        cbs = (noop, lambda f: env.reenter(), env.cb_obj,
               lambda f: env.reenter(), noop)
    for cb in cbs:
        fut.add_done_callback(cb)
    if state == "result":
        fut.set_result(1)
    elif state == "exception":
        fut.set_exception(ValueError("set"))
        env.cleanups.append(lambda: fut.exception() if not fut.cancelled()
                            else None)
    elif state == "cancelled":
        fut.cancel()
    return fut


class _CallbackObj:
    """A callable object registered as a done callback, so that an
    argument's ``__eq__`` runs against it."""

    def __call__(self, *args):
        return None


def make_env(impl, family, state):
    env = Env(impl, family, state)
    env.cb_obj = _CallbackObj()
    _mk_loop(env)
    loop = env.loop
    if family == "aloop":
        env.obj = loop
        if state == "closed":
            loop.close()
    elif family == "future":
        env.future = env.obj = _make_future(env, state)
    elif family == "futiter":
        env.future = _make_future(env, state)
        env.obj = env.future.__await__()
    elif family == "handle":
        if state == "re-entrant callback":
            # Its callback calls the method under test on its own handle.
            env.obj = loop.call_soon(lambda *a: env.reenter(), env.cb_obj)
        else:
            env.obj = loop.call_soon(noop, env.cb_obj)
        if state == "cancelled":
            env.obj.cancel()
    elif family == "timer":
        if state == "re-entrant callback":
            env.obj = loop.call_later(0, lambda *a: env.reenter(),
                                      env.cb_obj)
        else:
            env.obj = loop.call_later(3600, noop, env.cb_obj)
        if state == "cancelled":
            env.obj.cancel()
    elif family == "ioloop":
        env.obj = env.ioloop
        if state == "closed":
            env.ioloop.close()
    elif family == "gen":
        env.obj = _gen_module(impl)
    elif family == "concurrent":
        if impl == TCG and not _installed():
            from tornado_cgen import concurrent
            env.obj = concurrent
        else:
            import tornado.concurrent
            env.obj = tornado.concurrent
    elif family == "multi":
        env.obj = _gen_module(impl)
    elif family == "coroutine":
        g = _gen_module(impl)

        def body(*args, **kwargs):
            yield None
            return (len(args), sorted(kwargs))
        env.obj = g.coroutine(body)
    elif family == "core":
        from tornado_cgen import _core
        env.obj = _core
        env.cleanups.append(_restore_core)
    elif family == "coretype":
        from tornado_cgen import _core
        env.obj = getattr(_core, state)
    elif family == "runner":
        from tornado_cgen import _core, gen
        env.future = _core.Future(loop=loop)
        fut = env.future

        def body():
            yield fut
            return 1
        g = body()
        first = next(g)
        result = _core.Future(loop=loop)
        env.obj = gen.Runner(contextvars.copy_context().run, g, result,
                             first)
    elif family == "tornadomethod":
        from tornado_cgen import _core
        tornado = _tornado()
        env.obj = _core.TornadoMethod("add_callback", noop,
                                      tornado.ioloop.IOLoop)
    else:
        raise ValueError(family)
    return env


def _restore_core():
    from tornado_cgen import _core, gen
    _core._set_log_hook(None)
    _core._set_future_factory(None)
    _core._set_tornado_ioloop(None)
    _core._set_tornado_escapes(None)
    gen._setup_core()


def _gen_module(impl):
    if impl == TCG and not _installed():
        from tornado_cgen import gen
        return gen
    import tornado.gen
    return tornado.gen


# ---------------------------------------------------------------------------
# The bad values.  Each is made fresh per case and per implementation from
# the case's Env, so re-entrant ones can reach the object being called.

class _Raises(Exception):
    pass


class _Base(BaseException):
    pass


def _raiser(exc):
    def f(*args, **kwargs):
        raise exc
    return f


class IndexRaises:
    def __index__(self):
        raise _Raises("__index__")

    def __int__(self):
        raise _Raises("__int__")

    def __float__(self):
        raise _Raises("__float__")


class FloatNaN:
    def __float__(self):
        return math.nan


class IndexHuge:
    def __index__(self):
        return 2 ** 100

    def __float__(self):
        return 1e300


class EqRaises:
    def __eq__(self, other):
        raise _Raises("__eq__")

    def __hash__(self):
        return 1

    def __call__(self, *args):
        return None


class HashRaises:
    def __hash__(self):
        raise _Raises("__hash__")

    def __call__(self, *args):
        return None


class BoolRaises:
    def __bool__(self):
        raise _Raises("__bool__")


class EqMutates:
    def __init__(self, env):
        self.env = env

    def __eq__(self, other):
        self.env.reenter(again=False)
        return False

    def __hash__(self):
        return 2

    def __call__(self, *args):
        self.env.reenter(again=False)


class DelReenters:
    def __init__(self, env):
        self.env = env

    def __call__(self, *args):
        return None

    def __del__(self):
        # Only while its own case runs: one freed late (by a later case's
        # collection) must not be reported as that case's.
        if _current_env[0] is self.env:
            self.env.reenter()


class FilenoObj:
    def __init__(self, fn):
        self._fn = fn

    def fileno(self):
        return self._fn()


class FakeFuture:
    """Duck-typed as an asyncio future (``_asyncio_future_blocking``), with
    one method broken."""
    _asyncio_future_blocking = False

    def __init__(self, broken, exc):
        self._broken, self._exc = broken, exc

    def _maybe(self, name, value):
        if name == self._broken:
            raise self._exc
        return value

    def done(self):
        return self._maybe("done", True)

    def cancelled(self):
        return self._maybe("cancelled", False)

    def result(self):
        return self._maybe("result", 5)

    def exception(self):
        return self._maybe("exception", None)

    def add_done_callback(self, fn, context=None):
        self._maybe("add_done_callback", None)

    def remove_done_callback(self, fn):
        return self._maybe("remove_done_callback", 0)

    def get_loop(self):
        return self._maybe("get_loop", asyncio.get_event_loop())

    def cancel(self, msg=None):
        return self._maybe("cancel", False)

    def __await__(self):
        self._maybe("__await__", None)
        return (yield self)

    __iter__ = __await__


class MutatingDict(dict):
    """A dict subclass (read through keys()/values(), as Tornado reads
    one) that changes under the reader."""

    def __init__(self, env):
        super().__init__(a=_pending_future(env), b=_failed_future(env))
        self.env = env

    def keys(self):
        for k in list(super().keys()):
            self["z%d" % len(self)] = None
            yield k

    def values(self):
        self.clear()
        return []


class RaisingList(list):
    def __iter__(self):
        raise _Raises("__iter__")

    def __len__(self):
        raise _Raises("__len__")


def _closed_fd(env):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    return r


def _closed_sock(env):
    s = socket.socket()
    s.close()
    return s


def _fd_limit(env):
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _coro(env):
    async def c():
        return 1
    co = c()
    env.cleanups.append(co.close)
    return co


async def _coro_fn():
    return 1


def _other_future(env):
    other = asyncio.new_event_loop()
    env.cleanups.append(other.close)
    return _future_cls(env)(loop=other)


def _failed_future(env):
    f = _future_cls(env)(loop=env.loop)
    f.set_exception(_Raises("failed"))
    f.exception()
    return f


def _pending_future(env):
    return _future_cls(env)(loop=env.loop)


def _exc_init_raises(env):
    class E(Exception):
        def __init__(self, *args):
            raise _Raises("__init__")
    return E


def _self_list(env):
    x = []
    x.append(x)
    return x


BAD = {
    "None": lambda env: None,
    "True": lambda env: True,
    "str": lambda env: "x",
    "bytes": lambda env: b"\0x",
    "complex": lambda env: 1j,
    "object()": lambda env: object(),
    "[]": lambda env: [],
    "{}": lambda env: {},
    "(1,2,3)": lambda env: (1, 2, 3),
    "type int": lambda env: int,
    "0": lambda env: 0,
    "-1": lambda env: -1,
    "2**31": lambda env: 2 ** 31,
    "2**63": lambda env: 2 ** 63,
    "-2**63-1": lambda env: -2 ** 63 - 1,
    "2**64": lambda env: 2 ** 64,
    "2**1000": lambda env: 2 ** 1000,
    "-2**1000": lambda env: -2 ** 1000,
    "-1.0": lambda env: -1.0,
    "-0.0": lambda env: -0.0,
    "1e308": lambda env: 1e308,
    "nan": lambda env: math.nan,
    "inf": lambda env: math.inf,
    "-inf": lambda env: -math.inf,
    "__index__ raises": lambda env: IndexRaises(),
    "__float__ nan": lambda env: FloatNaN(),
    "__index__ 2**100": lambda env: IndexHuge(),
    "__eq__ raises": lambda env: EqRaises(),
    "__hash__ raises": lambda env: HashRaises(),
    "__bool__ raises": lambda env: BoolRaises(),
    "__eq__ re-enters": EqMutates,
    "__del__ re-enters": DelReenters,
    "closed fd": _closed_fd,
    "fd 10**6": lambda env: 10 ** 6,
    "fd = RLIMIT_NOFILE": _fd_limit,
    "closed socket": _closed_sock,
    "fileno() raises": lambda env: FilenoObj(_raiser(_Raises("fileno"))),
    "fileno() -> -1": lambda env: FilenoObj(lambda: -1),
    "fileno() -> 'x'": lambda env: FilenoObj(lambda: "x"),
    "cb raises ValueError": lambda env: _raiser(ValueError("cb")),
    "cb raises KeyboardInterrupt": lambda env: _raiser(KeyboardInterrupt()),
    "cb raises SystemExit": lambda env: _raiser(SystemExit(3)),
    "cb raises GeneratorExit": lambda env: _raiser(GeneratorExit()),
    "cb raises BaseException subclass": lambda env: _raiser(_Base("cb")),
    "cb re-enters": lambda env: (lambda *a, **k: env.reenter()),
    "async def fn": lambda env: _coro_fn,
    "coroutine object": _coro,
    "ValueError()": lambda env: ValueError("v"),
    "ValueError class": lambda env: ValueError,
    "StopIteration()": lambda env: StopIteration(7),
    "KeyboardInterrupt()": lambda env: KeyboardInterrupt(),
    "exception class whose __init__ raises": _exc_init_raises,
    "future of another loop": _other_future,
    "failed future": _failed_future,
    "pending future": _pending_future,
    "list containing itself": _self_list,
    "dict subclass whose keys() mutates it": lambda env: MutatingDict(env),
    "list subclass whose __iter__ raises": lambda env: RaisingList(),
    "list of a future and a failed future":
        lambda env: [_pending_future(env), _failed_future(env)],
    "tuple of non-exception classes": lambda env: (int, "x"),
    "fake future: done() raises": lambda env: FakeFuture("done", _Raises()),
    "fake future: result() raises KeyboardInterrupt":
        lambda env: FakeFuture("result", KeyboardInterrupt()),
    "fake future: add_done_callback raises":
        lambda env: FakeFuture("add_done_callback", _Raises()),
}

# The good value of each parameter, by the callable's name (a template
# shared by every type that has the name); a bad value replaces one of
# them per case.  Names not here get None for each required parameter.
CB, DELAY, WHEN, FD, EXC, FUT, FN, GENFN, READ, ONE, REGFD = (
    "cb", "delay", "when", "fd", "exc", "fut", "fn", "genfn", "read", "one",
    "regfd")

GOOD_VALUES = {
    CB: lambda env: noop,
    DELAY: lambda env: 0.0,
    WHEN: lambda env: env.loop.time(),
    FD: lambda env: _pipe_fd(env),
    REGFD: lambda env: _registered_fd(env),
    EXC: lambda env: ValueError("good"),
    FUT: lambda env: _pending_future(env),
    FN: lambda env: (lambda *a, **k: 1),
    GENFN: lambda env: _good_genfn,
    READ: lambda env: 1,
    ONE: lambda env: 1,
}


def _good_genfn(*args, **kwargs):
    yield None
    return 1


def _pipe_fd(env):
    r, w = os.pipe()
    env.fds += [r, w]
    return r


def _registered_fd(env):
    # update_handler's and remove_handler's fd: one add_handler was given
    # (it fails on a closed loop, and then the fd is just an fd).
    fd = _pipe_fd(env)
    try:
        env.ioloop.add_handler(fd, noop, 1)
    except Exception:
        pass
    return fd


TEMPLATES = {
    "call_soon": (CB,), "call_soon_threadsafe": (CB,),
    "call_later": (DELAY, CB), "call_at": (WHEN, CB),
    "_tornado_add_callback": (CB,), "add_callback": (CB,),
    "spawn_callback": (CB,), "add_callback_from_signal": (CB,),
    "_tornado_call_at": (WHEN, CB), "_tornado_call_later": (DELAY, CB),
    "add_timeout": (WHEN, CB),
    "_tornado_remove_timeout": (ONE,), "remove_timeout": (ONE,),
    "add_reader": (FD, CB), "add_writer": (FD, CB),
    "_add_reader": (FD, CB), "_add_writer": (FD, CB),
    "remove_reader": (FD,), "remove_writer": (FD,),
    "_remove_reader": (FD,), "_remove_writer": (FD,), "_fd_key": (FD,),
    "add_handler": (FD, CB, READ), "update_handler": (REGFD, READ),
    "remove_handler": (REGFD,), "split_fd": (FD,), "close_fd": (FD,),
    "set_result": (ONE,), "set_exception": (EXC,),
    "add_done_callback": (CB,), "remove_done_callback": (CB,),
    "set_exc_info": (EXC,),
    "run_until_complete": (FUT,), "run_sync": (FN,),
    "add_future": (FUT, CB), "run_in_executor": (ONE, FN),
    "create_task": (FUT,), "call_exception_handler": (ONE,),
    "set_exception_handler": (CB,), "set_task_factory": (CB,),
    "set_debug": (ONE,), "set_default_executor": (ONE,),
    "add_signal_handler": (ONE, CB), "remove_signal_handler": (ONE,),
    "default_exception_handler": (ONE,),
    "send": (ONE,), "throw": (EXC,),
    "__eq__": (ONE,), "__ne__": (ONE,), "__lt__": (ONE,), "__le__": (ONE,),
    "__gt__": (ONE,), "__ge__": (ONE,),
    "__getattribute__": (ONE,), "__get__": (ONE, ONE),
    "__class_getitem__": (ONE,),
    "sleep": (DELAY,), "with_timeout": (DELAY, FUT), "maybe_future": (ONE,),
    "multi": (ONE,), "Multi": (ONE,), "multi_future": (ONE,),
    "convert_yielded": (FUT,), "Task": (FN,), "WaitIterator": (FUT,),
    "coroutine": (GENFN,), "Return": (ONE,), "is_coroutine_function": (FN,),
    "is_future": (FUT,), "chain_future": (FUT, FUT),
    "future_set_result_unless_cancelled": (FUT, ONE),
    "future_set_exception_unless_cancelled": (FUT, EXC),
    "future_set_exc_info": (FUT, EXC), "future_add_done_callback": (FUT, CB),
    "run_on_executor": (FN,), "Future": (), "PeriodicCallback": (CB, ONE),
    "_set_future_factory": (FN,), "_set_log_hook": (FN,),
    "_set_tornado_ioloop": (ONE,), "_set_tornado_escapes": (ONE,),
    "Runner": (ONE, ONE, ONE, ONE), "Coroutine": (GENFN,),
    "ConvertYielded": (FN,), "TornadoMethod": (ONE, FN, ONE),
    "Arguments": (ONE, ONE), "BadYieldError": (ONE,),
    "TimeoutError": (ONE,), "DummyExecutor": (), "submit": (FN,),
}

# Optional parameters past the template's: each gets the full set of bad
# values too (those between filled with None).
OPTIONAL = {"throw": 2, "set_exc_info": 0, "__init__": 0}

# Keywords that take the full set of bad values, by callable name (every
# callable also gets `context` and an unknown keyword with a few).
KEYWORDS = {
    "multi": ("quiet_exceptions",), "Multi": ("quiet_exceptions",),
    "multi_future": ("quiet_exceptions",),
    "with_timeout": ("quiet_exceptions",),
    "cancel": ("msg",), "__init__": ("loop",), "Future": ("loop",),
    "close": ("all_fds",), "run_sync": ("timeout",),
    "add_done_callback": ("context",), "call_soon": ("context",),
    "call_later": ("context",), "call_at": ("context",),
    "call_soon_threadsafe": ("context",), "create_task": ("name",),
    "PeriodicCallback": ("jitter",), "Runner": ("first_yielded",),
}

# Callables not called at all, and why.
SKIP = {
    "_run_forever_core": "runs forever unless a callback stops the loop; "
                         "run_forever covers it",
    "_gen_setup": "replaces the Runner's registrations; the state it "
                  "leaves is restored by gen._setup_core()",
    "run_forever": "covered through run_until_complete",
    "start": "covered through run_sync",
    "shutdown_default_executor": "a coroutine",
    "register": "singledispatch's own (pure Python, process-global)",
    "close_fd": "would close fds the check itself uses",
    "instance": "deprecated global", "install": "deprecated global",
    "configure": "process-global configuration",
}


def _is_coroutine_function(obj):
    import inspect
    return inspect.iscoroutinefunction(obj)


def _template(name, obj):
    if name in TEMPLATES:
        return TEMPLATES[name]
    import inspect
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return (ONE,)
    n = 0
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and \
                p.default is p.empty and p.name not in ("self", "cls"):
            n += 1
    return (ONE,) * n


# ---------------------------------------------------------------------------
# Targets: (family, state, attribute, where) found by introspection.

class Target:
    __slots__ = ("family", "state", "attr", "where", "good", "compare",
                 "kind")

    def __init__(self, family, state, attr, where, good, compare,
                 kind="call"):
        self.family, self.state, self.attr = family, state, attr
        self.where, self.good, self.compare = where, good, compare
        self.kind = kind

    @property
    def name(self):
        state = "" if self.state is None else "[%s]" % self.state
        where = "" if self.where == "outside" else " (from a callback)"
        what = "%s = ..." % self.attr if self.kind == "set" else \
            "%s(...)" % self.attr
        return "%s%s.%s%s" % (self.family, state, what, where)


def _public(name):
    return not name.startswith("_")


def _dunder(name):
    return name.startswith("__") and name.endswith("__")


def _callables_of(cls, keep):
    """The names of cls's own callables (its __dict__), sorted."""
    out = []
    for name, v in sorted(vars(cls).items()):
        if not keep(name):
            continue
        if isinstance(v, (staticmethod, classmethod)) or callable(v) or \
                type(v).__name__ in ("method_descriptor",
                                     "wrapper_descriptor",
                                     "classmethod_descriptor"):
            out.append(name)
    return out


def _setters_of(cls):
    out = []
    for name, v in sorted(vars(cls).items()):
        if type(v).__name__ == "getset_descriptor" and not _dunder(name):
            out.append(name)
    return out


def enumerate_targets():
    from tornado_cgen import _core, concurrent, gen, ioloop, loop as tloop
    tornado = _tornado()
    targets = []
    dunders = {"__init__", "__del__", "__repr__", "__await__", "__iter__",
               "__next__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__",
               "__ge__", "__hash__", "__call__", "__get__", "__reduce__",
               "__getattribute__", "__class_getitem__"}

    def keep_c(name):
        return (not _dunder(name) or name in dunders) and name not in SKIP

    def add(family, states, names, owner, wheres=("outside",), ref=None,
            kind="call"):
        for state in states:
            for name in names:
                good = () if kind == "set" else \
                    _template(name, getattr(owner, name, None))
                compare = ref is not None and hasattr(ref, name) and (
                    _public(name) or name in dunders)
                for where in wheres:
                    if where == "inside" and state == "closed":
                        continue
                    targets.append(Target(family, state, name, where, good,
                                          compare, kind))

    # The C types, through instances in each state.
    fut_names = _callables_of(_core.Future, keep_c)
    add("future", ("pending", "result", "exception", "cancelled",
                   "re-entrant callbacks"),
        fut_names, _core.Future, ref=asyncio.Future)
    add("future", ("pending",), _setters_of(_core.Future), _core.Future,
        ref=asyncio.Future, kind="set")
    it = type(_core.Future().__await__())
    it_names = _callables_of(it, keep_c)
    add("futiter", ("pending", "result", "exception",
                    "re-entrant callbacks"), it_names, it,
        ref=_AioFutIterNames)
    loop_names = _callables_of(_core.Loop, keep_c)
    # The asyncio face's public methods (the stdlib's and ours), minus the
    # coroutine functions (they only make a coroutine).
    for name in sorted(dir(tloop.Loop)):
        v = getattr(tloop.Loop, name, None)
        if _public(name) and callable(v) and name not in loop_names and \
                name not in SKIP and not _is_coroutine_function(v):
            loop_names.append(name)
    add("aloop", ("open", "closed"), loop_names, tloop.Loop,
        wheres=("outside", "inside"), ref=asyncio.AbstractEventLoop)
    add("aloop", ("open",), _setters_of(_core.Loop), _core.Loop,
        kind="set")
    add("handle", ("pending", "cancelled", "re-entrant callback"),
        _callables_of(_core.Handle, keep_c), _core.Handle,
        ref=asyncio.Handle)
    add("timer", ("pending", "cancelled", "re-entrant callback"),
        _callables_of(_core.TimerHandle, keep_c) +
        [n for n in _callables_of(_core.Handle, keep_c) if n != "__repr__"],
        _core.TimerHandle, ref=asyncio.TimerHandle)
    add("handle", ("pending",), _setters_of(_core.Handle), _core.Handle,
        kind="set")
    add("runner", (None,), ["()"] + _callables_of(_core.Runner, keep_c),
        _core.Runner)
    add("coroutine", (None,), ["()"] + _callables_of(_core.Coroutine, keep_c),
        _core.Coroutine, wheres=("inside",),
        ref=_RefNames({"()"}))
    add("multi", (None,), ["multi"], gen, wheres=("inside",),
        ref=_RefNames({"multi"}))
    # The types' constructors.
    for tname in sorted(dir(_core)):
        t = getattr(_core, tname)
        if isinstance(t, type):
            if tname == "TornadoMethod" and tornado is None:
                continue
            good = TEMPLATES.get(tname, ())
            targets.append(Target("coretype", tname, "()", "outside", good,
                                  False))
    if tornado is not None:
        add("tornadomethod", (None,),
            ["()"] + _callables_of(_core.TornadoMethod, keep_c),
            _core.TornadoMethod)
    # Module functions.
    mod_names = [n for n in sorted(dir(_core))
                 if callable(getattr(_core, n)) and
                 not isinstance(getattr(_core, n), type) and
                 not _dunder(n) and n not in SKIP]
    add("core", (None,), mod_names, _core)

    # The Python API that leads into C.
    ref_ioloop = tornado.ioloop.IOLoop if tornado else None
    io_names = []
    for name in sorted(dir(ioloop.IOLoop)):
        v = getattr(ioloop.IOLoop, name, None)
        if _public(name) and callable(v) and name not in SKIP and \
                not isinstance(v, type) and not _is_coroutine_function(v):
            io_names.append(name)
    add("ioloop", ("open", "closed"), io_names, ioloop.IOLoop,
        wheres=("outside", "inside"), ref=ref_ioloop)
    gen_names = [n for n in gen.__all__ if callable(getattr(gen, n, None))
                 and n not in SKIP]
    add("gen", (None,), gen_names, gen, wheres=("inside",),
        ref=tornado.gen if tornado else None)
    conc_names = [n for n in concurrent.__all__
                  if callable(getattr(concurrent, n, None)) and
                  n not in SKIP]
    add("concurrent", (None,), conc_names, concurrent, wheres=("inside",),
        ref=tornado.concurrent if tornado else None)
    return targets


class _RefNames:
    """A stand-in 'reference' that has exactly these names."""

    def __init__(self, names):
        for n in names:
            setattr(self, n, True)


_AioFutIterNames = _RefNames({"send", "throw", "close", "__next__",
                              "__iter__"})

# ---------------------------------------------------------------------------
# Cases: one target, one set of arguments.

class Case:
    __slots__ = ("target", "bad")

    def __init__(self, target, bad):
        self.target = target
        self.bad = bad      # ((position or keyword, bad value name), ...)

    @property
    def name(self):
        args = ", ".join("%s=%s" % (p, b) if isinstance(p, str) else
                         "#%d=%s" % (p, b) for p, b in self.bad)
        return "%s <- %s" % (self.target.name, args or "good args")


KW_BAD = ("None", "cb raises KeyboardInterrupt", "object()", "__del__ re-enters")


def enumerate_cases(soak=False):
    targets = enumerate_targets()
    cases = []
    names = list(BAD)
    for t in targets:
        if t.kind == "set":
            for b in names:
                cases.append(Case(t, ((0, b),)))
            continue
        n = len(t.good)
        cases.append(Case(t, ()))
        for pos in range(n + 1):
            # One past the end: the extra argument (a few values only).
            for b in (names if pos < n else names[:3] + ["cb re-enters"]):
                cases.append(Case(t, ((pos, b),)))
        for pos in range(n + 1, n + 1 + OPTIONAL.get(t.attr, 0)):
            for b in names:
                cases.append(Case(t, ((pos, b),)))
        full = KEYWORDS.get(t.attr, ())
        for kw in full:
            for b in names:
                cases.append(Case(t, ((kw, b),)))
        for kw in ("context", "bogus"):
            if kw not in full:
                for b in KW_BAD:
                    cases.append(Case(t, ((kw, b),)))
    rnd = random.Random(1234)
    if soak:
        for t in targets:
            if t.kind == "set" or not t.good:
                continue
            n = len(t.good)
            for _ in range(60):
                picks = {}
                for _ in range(rnd.randint(2, max(2, n))):
                    picks[rnd.randrange(n)] = rnd.choice(names)
                cases.append(Case(t, tuple(sorted(picks.items()))))
    for name in sorted(GEN_PROGRAMS):
        cases.append(GenCase(name))
    return cases


# ---------------------------------------------------------------------------
# Running one case (in a worker)

def _tname(t):
    mod = getattr(t, "__module__", "builtins")
    qual = getattr(t, "__qualname__", repr(t))
    if mod == "builtins":
        return qual
    if mod.startswith("tornado_cgen"):
        mod = "tornado" + mod[len("tornado_cgen"):]
    if mod.startswith("asyncio.") or mod == "concurrent.futures._base":
        mod = mod.split(".")[0]
    return "%s.%s" % (mod, qual)


def _outcome(exc):
    if exc is None:
        return "returned"
    return _tname(type(exc))


_current_env = [None]


def _unraisable(u):
    env = _current_env[0]
    if env is not None and u.exc_type is not None:
        env.reported.add("unraisable:" + _tname(u.exc_type))


class _LogCatcher(logging.Handler):
    def emit(self, record):
        env = _current_env[0]
        if env is None:
            return
        if record.exc_info and record.exc_info[0] is not None:
            env.reported.add("log:" + _tname(record.exc_info[0]))
        else:
            env.reported.add("log:" + record.levelname)


def _drive(env):
    """Run the loop a few iterations so callbacks the call scheduled run;
    what escapes is the drive's outcome."""
    loop = env.loop
    if loop is None:
        return "no loop"
    for _ in range(3):
        if loop.is_closed():
            return "closed"
        if loop.is_running():
            return "still running"
        try:
            loop.call_soon(loop.stop)
            loop.run_forever()
        except BaseException as e:
            return _outcome(e)
    return "returned"


BLOCKING = {"run_until_complete", "_run_once", "run_sync", "run_forever",
            "start"}


def _args_for(case, env):
    t = case.target
    args = [GOOD_VALUES[g](env) for g in t.good]
    kwargs = {}
    for pos, bname in case.bad:
        v = BAD[bname](env)
        if isinstance(pos, str):
            kwargs[pos] = v
        elif pos < len(args):
            args[pos] = v
        else:
            while len(args) < pos:
                args.append(None)
            args.append(v)
    return args, kwargs


def run_case(case, impl):
    """One implementation of one case: {"call", "drive", "rep"}."""
    t = case.target
    env = make_env(impl, t.family, t.state)
    _current_env[0] = env
    res = {}
    try:
        obj = env.obj
        args, kwargs = _args_for(case, env)
        if t.kind == "set":
            def fn(v):
                setattr(obj, t.attr, v)
        elif t.attr == "()":
            fn = obj
        else:
            fn = getattr(obj, t.attr)
        env.call = (fn, args, kwargs)
        holder = []

        def call():
            try:
                fn(*args, **kwargs)
            except BaseException as e:
                holder.append(_outcome(e))
            else:
                holder.append("returned")
        if t.attr in BLOCKING and env.loop is not None and \
                not env.loop.is_closed():
            # They run the loop until something that may never happen:
            # stopped by this if nothing else stops them (on both sides).
            env.loop.call_later(0.1, env.loop.stop)
        if t.where == "inside":
            env.loop.call_soon(call)
        else:
            call()
        del args, kwargs
        env.call = None
        if any(b == "__del__ re-enters" for _, b in case.bad):
            # Its __del__ runs now, in this case, whatever cycle holds it.
            gc.collect()
        res["drive"] = _drive(env)
        res["call"] = holder[0] if holder else "never called"
    finally:
        _close_env(env)
        env.obj = env.future = env.call = None
        _current_env[0] = env
    res["rep"] = sorted(env.reported)
    _current_env[0] = None
    return res


# ---------------------------------------------------------------------------
# Misbehaving generators, run through gen.coroutine on each implementation.

def _prog_yield_in_finally_on_close(g, F, holder):
    def body():
        try:
            yield F()
        finally:
            yield None
    return body, "drop"


def _prog_close_self(g, F, holder):
    def body():
        yield None
        holder[0].close()
        return 1
    return body, None


def _prog_throw_self(g, F, holder):
    def body():
        yield None
        holder[0].throw(ValueError("self"))
        return 1
    return body, None


def _prog_send_self(g, F, holder):
    def body():
        yield None
        holder[0].send(None)
        return 1
    return body, None


def _prog_next_self_first(g, F, holder):
    def body():
        next(holder[0])
        yield None
    return body, None


def _prog_raise_stopiteration(g, F, holder):
    def body():
        yield None
        raise StopIteration(5)
    return body, None


def _prog_raise_stopiteration_first(g, F, holder):
    def body():
        raise StopIteration(5)
        yield None
    return body, None


def _prog_yield_self(g, F, holder):
    def body():
        try:
            yield holder[0]
        except Exception as e:
            return type(e).__name__
    return body, None


def _prog_yield_after_throw(g, F, holder):
    def body():
        f = F()
        f.set_exception(ValueError("in"))
        try:
            yield f
        except ValueError:
            yield None
            yield g.moment
        return 2
    return body, None


def _prog_catch_and_raise_base(g, F, holder):
    def body():
        f = F()
        f.set_exception(ValueError("in"))
        try:
            yield f
        except ValueError:
            raise KeyboardInterrupt()
    return body, None


def _prog_raise_systemexit(g, F, holder):
    def body():
        yield None
        raise SystemExit(4)
    return body, None


def _prog_raise_base_subclass(g, F, holder):
    def body():
        yield None
        raise _Base("gen")
    return body, None


def _prog_generatorexit_raised(g, F, holder):
    def body():
        yield None
        raise GeneratorExit()
    return body, None


def _prog_return_in_finally_on_close(g, F, holder):
    def body():
        try:
            yield F()
        finally:
            return 3
    return body, "drop"


def _prog_close_from_callback(g, F, holder):
    def body():
        f = F()
        g_loop = asyncio.get_event_loop()
        g_loop.call_soon(lambda: holder[0].close())
        g_loop.call_later(0.01, lambda: f.set_result(1))
        yield f
        return 1
    return body, None


def _prog_throw_from_callback(g, F, holder):
    def body():
        f = F()
        loop = asyncio.get_event_loop()

        def cb():
            try:
                holder[0].throw(ValueError("cb"))
            except BaseException:
                pass
            f.set_result(1)
        loop.call_soon(cb)
        try:
            yield f
        except ValueError:
            yield None
        return 1
    return body, None


def _prog_send_from_callback(g, F, holder):
    def body():
        f = F()
        loop = asyncio.get_event_loop()

        def cb():
            try:
                holder[0].send(None)
            except BaseException:
                pass
            f.set_result(1)
        loop.call_soon(cb)
        yield f
        yield f
        return 1
    return body, None


def _prog_throw_after_return(g, F, holder):
    def body():
        f = F()
        asyncio.get_event_loop().call_soon(f.set_result, 1)
        yield f
        raise g.Return(9)
    return body, None


def _prog_return_in_generatorexit(g, F, holder):
    def body():
        try:
            yield F()
        except GeneratorExit:
            raise g.Return(4)
    return body, "drop"


def _prog_yield_bad_then_catch(g, F, holder):
    def body():
        try:
            yield object()
        except g.BadYieldError:
            return "caught"
    return body, None


def _prog_yield_self_list(g, F, holder):
    def body():
        x = []
        x.append(x)
        try:
            yield x
        except RecursionError:
            return "recursion"
    return body, None


def _prog_fake_future(broken, exc):
    def prog(g, F, holder):
        def body():
            r = yield FakeFuture(broken, exc)
            return r
        return body, None
    return prog


def _prog_awaitable_raises(g, F, holder):
    class A:
        def __await__(self):
            raise _Raises("await")

    def body():
        try:
            yield A()
        except _Raises:
            return "caught"
    return body, None


def _prog_awaitable_bad_iter(g, F, holder):
    class A:
        def __await__(self):
            return 5

    def body():
        try:
            yield A()
        except TypeError:
            return "caught"
    return body, None


def _prog_native_raises_stopiteration(g, F, holder):
    async def c():
        raise StopIteration(1)

    def body():
        try:
            yield c()
        except RuntimeError:
            return "caught"
    return body, None


def _prog_deep_sync_recursion(g, F, holder):
    def body():
        @g.coroutine
        def down(n):
            if n:
                yield down(n - 1)
            return n
        try:
            r = yield down(5000)
        except RecursionError:
            return "recursion"
        return r
    return body, None


def _prog_returns_exhausted_generator(g, F, holder):
    def inner():
        yield None
    it = inner()
    for _ in it:
        pass
    return (lambda: it), "raw"


def _prog_returns_started_generator(g, F, holder):
    def inner():
        x = yield None
        yield None
        return x
    it = inner()
    next(it)
    return (lambda: it), "raw"


def _prog_yield_in_finally_thrown(g, F, holder):
    def body():
        f = F()
        f.set_exception(ValueError("in"))
        try:
            yield f
        finally:
            yield g.moment
    return body, None


def _prog_cancelled_future(g, F, holder):
    def body():
        f = F()
        f.cancel()
        yield f
    return body, None


def _prog_many_yields_moment_stop(g, F, holder):
    def body():
        for _ in range(200):
            yield g.moment
        return 200
    return body, None


def _prog_callback_raises_in_multi(g, F, holder):
    def body():
        a, b = F(), F()
        loop = asyncio.get_event_loop()
        loop.call_soon(a.set_exception, ValueError("a"))
        loop.call_soon(b.set_exception, KeyError("b"))
        yield [a, b]
    return body, None


def _prog_yield_own_future(g, F, holder):
    def body():
        yield None
        yield holder[1]
    return body, None


def _prog_cancel_own_future(g, F, holder):
    def body():
        yield None
        holder[1].cancel()
        yield None
        return 1
    return body, None


def _prog_set_own_result(g, F, holder):
    def body():
        yield None
        holder[1].set_result("early")
        return "late"
    return body, None


def _prog_set_own_exception(g, F, holder):
    def body():
        yield None
        holder[1].set_exception(KeyError("early"))
        raise ValueError("late")
    return body, None


def _prog_own_future_in_list(g, F, holder):
    def body():
        yield None
        yield [holder[1], g.moment]
    return body, None


def _prog_returns_generator_like(g, F, holder):
    class NotAGenerator:
        def send(self, v):
            raise StopIteration(1)

        def throw(self, *a):
            raise StopIteration(2)

        def __iter__(self):
            return self

        def __next__(self):
            raise StopIteration(3)
    obj = NotAGenerator()
    return (lambda: obj), "raw"


def _prog_done_callback_kbi(g, F, holder):
    def body():
        yield None
        holder[1].add_done_callback(_raiser(KeyboardInterrupt()))
        return 1
    return body, None


def _prog_return_a_future(g, F, holder):
    def body():
        yield None
        f = F()
        f.set_result(2)
        raise g.Return(f)
    return body, None


def _prog_other_loop_future(done):
    def prog(g, F, holder):
        def body():
            other = asyncio.new_event_loop()
            try:
                f = F(loop=other)
                if done:
                    f.set_result(3)
                r = yield f
                return r
            finally:
                other.close()
        return body, None
    return prog


GEN_PROGRAMS = {
    "a done callback of its result future raises KeyboardInterrupt":
        _prog_done_callback_kbi,
    "gen.Return(a future)": _prog_return_a_future,
    "yield a done future of another loop": _prog_other_loop_future(True),
    "yield a pending future of another loop": _prog_other_loop_future(False),
    "yield its own result future": _prog_yield_own_future,
    "cancel its own result future, then return": _prog_cancel_own_future,
    "set its own result future's result, then return another":
        _prog_set_own_result,
    "set its own result future's exception, then raise another":
        _prog_set_own_exception,
    "yield a list holding its own result future": _prog_own_future_in_list,
    "function returns a generator-like object, not a generator":
        _prog_returns_generator_like,
    "yield in finally when closed": _prog_yield_in_finally_on_close,
    "return in finally when closed": _prog_return_in_finally_on_close,
    "gen.Return on GeneratorExit": _prog_return_in_generatorexit,
    "close() itself from inside": _prog_close_self,
    "throw() into itself from inside": _prog_throw_self,
    "send() to itself from inside": _prog_send_self,
    "next() of itself before its first yield": _prog_next_self_first,
    "raise StopIteration after a yield": _prog_raise_stopiteration,
    "raise StopIteration before its first yield":
        _prog_raise_stopiteration_first,
    "yield itself": _prog_yield_self,
    "yield after being thrown into": _prog_yield_after_throw,
    "yield in finally after being thrown into": _prog_yield_in_finally_thrown,
    "KeyboardInterrupt while handling a thrown exception":
        _prog_catch_and_raise_base,
    "raise SystemExit": _prog_raise_systemexit,
    "raise a BaseException subclass": _prog_raise_base_subclass,
    "raise GeneratorExit": _prog_generatorexit_raised,
    "close()d by a callback while waiting": _prog_close_from_callback,
    "throw()n into by a callback while waiting": _prog_throw_from_callback,
    "send() to by a callback while waiting": _prog_send_from_callback,
    "gen.Return after a yield": _prog_throw_after_return,
    "yield object(), catch BadYieldError": _prog_yield_bad_then_catch,
    "yield a list containing itself": _prog_yield_self_list,
    "yield a fake future whose done() raises":
        _prog_fake_future("done", _Raises("done")),
    "yield a fake future whose result() raises KeyboardInterrupt":
        _prog_fake_future("result", KeyboardInterrupt()),
    "yield a fake future whose add_done_callback raises":
        _prog_fake_future("add_done_callback", _Raises("adc")),
    "yield an awaitable whose __await__ raises": _prog_awaitable_raises,
    "yield an awaitable whose __await__ returns 5": _prog_awaitable_bad_iter,
    "yield a native coroutine raising StopIteration":
        _prog_native_raises_stopiteration,
    "5000 nested synchronous coroutines": _prog_deep_sync_recursion,
    "function returns an exhausted generator":
        _prog_returns_exhausted_generator,
    "function returns a started generator": _prog_returns_started_generator,
    "yield a cancelled future": _prog_cancelled_future,
    "200 x yield gen.moment": _prog_many_yields_moment_stop,
    "two failures in a yielded list": _prog_callback_raises_in_multi,
}


# Where Tornado lets a failure escape its Runner (out of the coroutine
# call) and tornado_cgen throws it into the generator (README, gen).
GEN_CONVERT_ESCAPES = {
    "yield a fake future whose done() raises",
    "yield a fake future whose add_done_callback raises",
    "yield a list containing itself",
}

# Programs whose reports are not compared, and why: Tornado's Python
# frames run into the recursion limit in its own callbacks too (a
# RecursionError reported to the loop); the outcome is still compared.
GEN_NO_REP = {"5000 nested synchronous coroutines"}


class GenTarget:
    family = "genprog"
    compare = True

    def __init__(self, name):
        self.name_ = name

    @property
    def name(self):
        return "generator: " + self.name_


class GenCase:
    __slots__ = ("target", "prog")

    def __init__(self, prog):
        self.prog = prog
        self.target = GenTarget(prog)

    @property
    def name(self):
        return self.target.name


def _describe_future(f):
    if not f.done():
        return "pending"
    if f.cancelled():
        return "cancelled"
    e = f.exception()
    if e is not None:
        return "raised " + _tname(type(e))
    r = f.result()
    if asyncio.isfuture(r):
        return "result: a future"    # each side's own Future type
    if isinstance(r, (int, str, type(None), tuple)):
        return "result %r" % (r,)
    return "result of type " + _tname(type(r))


def run_gen_case(case, impl):
    env = Env(impl, "genprog", None)
    _mk_loop(env)
    _current_env[0] = env
    g = _gen_module(impl)
    F = _future_cls(env)
    holder = []
    res = {}
    try:
        fn, mode = GEN_PROGRAMS[case.prog](g, F, holder)
        if mode == "raw":
            func = fn
        else:
            def func():
                it = fn()
                holder.append(it)
                return it
        coro = g.coroutine(func)
        loop = env.loop
        out = []

        def start():
            try:
                fut = coro()
            except BaseException as e:
                out.append("call raised " + _outcome(e))
                loop.stop()
                return
            out.append(fut)
            # The coroutine's own result future, for the programs that
            # touch it from inside (holder[1]).
            holder.append(fut)
            try:
                fut.add_done_callback(lambda f: loop.stop())
            except BaseException as e:
                out.append("add_done_callback raised " + _outcome(e))
        loop.call_soon(start)
        deadline = loop.call_later(0.3, loop.stop)
        try:
            loop.run_forever()
            res["drive"] = "returned"
        except BaseException as e:
            res["drive"] = _outcome(e)
        deadline.cancel()
        if out and not isinstance(out[0], str):
            fut = out[0]
            if mode == "drop" and not fut.done():
                res["call"] = "pending (dropped)"
                del out[:], fut
                holder.clear()
                gc.collect()
                for _ in range(2):
                    try:
                        loop.call_soon(loop.stop)
                        loop.run_forever()
                    except BaseException:
                        pass
                gc.collect()
            else:
                res["call"] = _describe_future(fut)
                if res["call"].startswith("raised"):
                    fut.exception()
        else:
            res["call"] = out[0] if out else "never started"
        del out[:]
        holder.clear()
    finally:
        _close_env(env)
    gc.collect()
    res["rep"] = sorted(env.reported)
    _current_env[0] = None
    return res


# ---------------------------------------------------------------------------
# The worker: runs cases [start, end) and reports each on its pipe.

def worker(argv):
    fd, start, end, soak = int(argv[0]), int(argv[1]), int(argv[2]), \
        argv[3] == "1"
    MODE[0] = argv[4] if len(argv) > 4 else "standalone"
    out = os.fdopen(fd, "w", buffering=1)
    if _installed():
        import tornado_cgen
        tornado_cgen.install()
    sys.unraisablehook = _unraisable
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_LogCatcher(logging.ERROR))
    root.setLevel(logging.ERROR)
    warnings.simplefilter("ignore")
    tornado = _tornado()
    cases = enumerate_cases(soak)
    # The harness's own test: a crash and a hang at these case numbers.
    crash_at = int(os.environ.get("TCG_FUZZ_SELFTEST_CRASH", "-1"))
    hang_at = int(os.environ.get("TCG_FUZZ_SELFTEST_HANG", "-1"))
    for i in range(start, min(end, len(cases))):
        case = cases[i]
        if _installed() and (case.target.family not in INSTALLED_FAMILIES
                             or not case.target.compare):
            continue    # not in upstream Tornado's API
        out.write("S %d tcg\n" % i)
        if i == crash_at:
            os.abort()
        if i == hang_at:
            time.sleep(3600)
        try:
            if isinstance(case, GenCase):
                a = run_gen_case(case, TCG)
            else:
                a = run_case(case, TCG)
            b = None
            if case.target.compare and tornado is not None and \
                    not _installed():
                out.write("S %d ref\n" % i)
                b = run_gen_case(case, REF) if isinstance(case, GenCase) \
                    else run_case(case, REF)
        except BaseException as e:
            # The case could not be set up or torn down: not a crash, but
            # not a result either (the figure counts it as not run).
            out.write("X %d %s\n" % (i, json.dumps(
                "%s: %s" % (_tname(type(e)), str(e)[:200]))))
            continue
        if i % 20 == 19:
            out.write("S %d gc\n" % i)
            gc.collect()
        out.write("R %d %s\n" % (i, json.dumps([a, b])))
    out.write("E\n")
    out.close()
    os._exit(0)


# ---------------------------------------------------------------------------
# The parent: batches, watchdog, attribution.

def _ranges(indices):
    """Contiguous (start, end) runs of sorted case numbers."""
    out = []
    for i in indices:
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return [tuple(r) for r in out]


def run_batches(indices, soak, batch_size, stall, env_extra=None,
                mode="standalone"):
    """Run these cases in workers, batch_size to a worker.  Returns
    (results, crashes, hangs): results[i] = [tcg, ref]; crashes/hangs:
    (i, phase, detail)."""
    results = {}
    errors = {}
    crashes, hangs = [], []
    queue = []
    for start, end in _ranges(sorted(indices)):
        for s in range(start, end, batch_size):
            queue.append((s, min(s + batch_size, end)))
    running = []
    maxpar = 2
    env = dict(os.environ, **(env_extra or {}))
    import tempfile

    def spawn(s, e):
        r, w = os.pipe()
        err = tempfile.TemporaryFile()
        p = subprocess.Popen(
            [sys.executable, "-c",
             "import sys; from tornado_cgen.check import fuzz; "
             "fuzz.worker(sys.argv[1:])", str(w), str(s), str(e),
             "1" if soak else "0", mode],
            pass_fds=(w,), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=err, env=env)
        os.close(w)
        return {"p": p, "fd": r, "buf": b"", "cur": None, "s": s, "e": e,
                "err": err, "last": time.monotonic(), "done": False}

    while queue or running:
        while queue and len(running) < maxpar:
            s, e = queue.pop(0)
            running.append(spawn(s, e))
        rl = [w["fd"] for w in running]
        ready, _, _ = select.select(rl, [], [], 0.5)
        now = time.monotonic()
        for w in list(running):
            if w["fd"] in ready:
                data = os.read(w["fd"], 65536)
                w["last"] = now
                if data:
                    w["buf"] += data
                    *lines, w["buf"] = w["buf"].split(b"\n")
                    for line in lines:
                        parts = line.decode().split(" ", 2)
                        if parts[0] == "S":
                            w["cur"] = (int(parts[1]), parts[2])
                        elif parts[0] == "R":
                            results[int(parts[1])] = json.loads(parts[2])
                            w["cur"] = None
                        elif parts[0] == "X":
                            errors[int(parts[1])] = json.loads(parts[2])
                            w["cur"] = None
                        elif parts[0] == "E":
                            w["done"] = True
                    continue
                # EOF: the worker ended.
                rc = w["p"].wait()
                _finish(w, rc, None, crashes, hangs, queue, results)
                running.remove(w)
            elif now - w["last"] > stall:
                w["p"].kill()
                w["p"].wait()
                _finish(w, None, "hang", crashes, hangs, queue, results)
                running.remove(w)
    return results, crashes, hangs, errors


def _finish(w, rc, why, crashes, hangs, queue, results):
    os.close(w["fd"])
    w["err"].seek(0)
    text = w["err"].read().decode("utf-8", "replace")
    w["err"].close()
    # The sanitizers' first lines say what the error was: kept however
    # long the report behind them is.
    key = [ln for ln in text.splitlines()
           if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln]
    tail = "\n".join(key[:5] + [text[-3000:]])
    if w["done"] and rc == 0:
        return
    cur = w["cur"]
    if cur is None:
        # Died between cases (or at start): the case after the last one
        # reported.
        done = [i for i in results if w["s"] <= i < w["e"]]
        if w["done"]:
            cur = (max(done) if done else w["s"], "at worker exit")
        else:
            cur = ((max(done) + 1) if done else w["s"], "between cases")
    i, phase = cur
    detail = {"rc": rc, "phase": phase, "stderr": tail}
    (hangs if why == "hang" else crashes).append((i, phase, detail))
    if i + 1 < w["e"]:
        queue.insert(0, (i + 1, w["e"]))


# ---------------------------------------------------------------------------
# Comparison, with the deviations the project chose on purpose.

def _documented(case, a, b):
    """Why a difference from asyncio/Tornado is a choice the project made
    on purpose (README, "Choices"), or None."""
    t = case.target
    vals = {v for _, v in getattr(case, "bad", ())}
    if t.family in ("aloop", "ioloop") and \
            t.attr in ("call_later", "call_at", "add_timeout", "run_sync",
                       "_tornado_call_later", "_tornado_call_at") and \
            vals & {"nan"} and a["call"] == "ValueError":
        return "a NaN time is a ValueError (README: The event loop)"
    if t.family == "genprog" and t.name_ in GEN_CONVERT_ESCAPES and \
            b["call"].startswith("call raised ") and \
            a["call"] in ("raised " + b["call"][len("call raised "):],
                          "result 'recursion'"):
        return ("what Tornado lets escape its Runner when it handles a "
                "yielded object is thrown into the generator (README: gen)")
    if t.family == "aloop" and t.attr == "set_debug" and \
            vals & {"__bool__ raises", "list subclass whose __iter__ raises"} \
            and b["call"] == "returned":
        return ("set_debug() reads the flag's truth at once (the C loop "
                "keeps a C flag); asyncio stores the object and fails at "
                "its first `if self._debug`")
    if t.family == "ioloop" and t.state == "closed" and t.attr == "close" \
            and b["call"] == "KeyError" and a["call"] == "returned":
        return ("a second IOLoop.close() is a no-op, as asyncio's; "
                "Tornado's raises KeyError from its own bookkeeping")
    return None


def _stricter(a, b):
    """tornado_cgen raised at the call what the reference accepted and then
    failed on with the same exception type when the loop ran it."""
    if b["call"] != "returned" or a["call"] in ("returned", "never called"):
        return False
    later = {b["drive"]} | {r.split(":", 1)[1] for r in b["rep"]}
    return a["call"] in later


def _lifetime_only(case, a, b):
    """Only when a ``__del__`` ran differs (an argument kept or dropped at
    once): not an exception type."""
    vals = {v for _, v in getattr(case, "bad", ())}
    return "__del__ re-enters" in vals and a["call"] == b["call"]


def _reported(r):
    """What was reported, by exception type: the loop's exception handler
    and a log record count as one channel (Tornado logs what asyncio hands
    its handler: "Exception in callback"); the unraisable hook is its own."""
    return sorted({x.split(":", 1)[1] if x.startswith(("handler:", "log:"))
                   else x for x in r["rep"]})


def compare(cases, results):
    compared = 0
    diffs, rep_diffs, documented, stricter, lifetime = [], [], [], [], []
    for i, (a, b) in sorted(results.items()):
        if b is None:
            continue
        compared += 1
        case = cases[i]
        if a["call"] != b["call"] or a["drive"] != b["drive"]:
            why = _documented(case, a, b)
            if why:
                documented.append((case, why))
            elif _stricter(a, b):
                stricter.append((case, a, b))
            elif _lifetime_only(case, a, b):
                lifetime.append((case, a, b))
            else:
                diffs.append((case, a, b))
        elif _reported(a) != _reported(b) and not (
                isinstance(case, GenCase) and case.prog in GEN_NO_REP):
            rep_diffs.append((case, a, b))
    return compared, diffs, rep_diffs, documented, stricter, lifetime


def _fmt_diff(case, a, b):
    return "%s: tornado_cgen %s/%s %s, reference %s/%s %s" % (
        case.name, a["call"], a["drive"], a["rep"], b["call"], b["drive"],
        b["rep"])


# ---------------------------------------------------------------------------

def run(ctx):
    from ._report import tornado_available
    cases = enumerate_cases(ctx.soak)
    n = len(cases)
    api = [c for c in cases if not isinstance(c, GenCase)]
    gens = [c for c in cases if isinstance(c, GenCase)]
    targets = {c.target.name for c in api}
    ctx.log("%s cases (%s callables/states, %d generator programs)" % (
        count(n), count(len(targets)), len(gens)))
    stall = int(os.environ.get("TCG_FUZZ_STALL", "0")) or \
        (60 if ctx.soak else 30)
    with Stopwatch() as sw:
        results, crashes, hangs, errors = run_batches(range(n), ctx.soak,
                                                      400, stall)
    ctx.log("ran in %.1f s" % sw.elapsed)
    dump = os.environ.get("TCG_FUZZ_DUMP")
    if dump:
        with open(dump, "w") as f:
            json.dump({"names": [c.name for c in cases],
                       "results": results,
                       "crashes": crashes, "hangs": hangs}, f)
    _report(ctx, cases, results, crashes, hangs, tornado_available(), "",
            errors=errors)
    if "installed" not in ctx.modes:
        ctx.skip("installed mode", "needs Tornado >= 6.2 installed")
        return
    # Installed mode: upstream Tornado's API on the C Runner and loop,
    # against the standalone run's reference (upstream Tornado alone).
    idx = [i for i, c in enumerate(cases)
           if c.target.family in INSTALLED_FAMILIES and c.target.compare]
    with Stopwatch() as sw:
        inst, icrashes, ihangs, ierrors = run_batches(
            idx, ctx.soak, 400, stall, mode="installed")
    ctx.log("installed mode: ran in %.1f s" % sw.elapsed)
    merged = {}
    for i, r in inst.items():
        ref = results.get(i)
        if r is not None and r[0] is not None:
            merged[i] = [r[0], ref[1] if ref and cases[i].target.compare
                         else None]
    _report(ctx, cases, merged, icrashes, ihangs, True, " (installed)",
            only=set(idx), errors=ierrors)


def _report(ctx, cases, results, crashes, hangs, have_ref, suffix,
            only=None, errors=None):
    errors = errors or {}
    for i, msg in sorted(errors.items()):
        ctx.log("could not run %s: %s" % (cases[i].name, msg))
    api_idx = [i for i, c in enumerate(cases) if not isinstance(c, GenCase)
               and (only is None or i in only)]
    gen_idx = [i for i, c in enumerate(cases) if isinstance(c, GenCase)]
    api_set = set(api_idx)
    targets = {cases[i].target.name for i in api_idx}
    callables = {(cases[i].target.family, cases[i].target.attr)
                 for i in api_idx}

    def note_of(items, limit=3):
        parts = []
        for i, phase, d in items[:limit]:
            parts.append("%s [%s, %s]%s" % (
                cases[i].name, phase,
                "exit %s" % d["rc"] if d["rc"] is not None else "killed",
                (": " + d["stderr"].strip().splitlines()[-1][:200])
                if d["stderr"].strip() else ""))
        more = len(items) - limit
        return "; ".join(parts) + (" (+%d more)" % more if more > 0 else "")

    for what, items in (("crashes", crashes), ("hangs", hangs)):
        for i, phase, d in items:
            ctx.log("%s: %s [%s]\n%s" % (what[:-1] if what != "crashes"
                                          else "crash", cases[i].name, phase,
                                          d["stderr"][-1500:]))
    api_crash = [x for x in crashes if x[0] in api_set]
    api_hang = [x for x in hangs if x[0] in api_set]
    missing = [i for i in api_idx if i not in results and
               i not in {x[0] for x in crashes + hangs}]
    ctx.figure("C entry points called%s" % suffix,
               "%s callables (%s with their states), up to %s bad values "
               "per argument: %s calls, crashes %d, hangs %d" % (
                   count(len(callables)), count(len(targets)),
                   count(len(BAD)), count(len(api_idx)), len(api_crash),
                   len(api_hang)),
               want="crashes 0, hangs 0",
               ok=not api_crash and not api_hang and not missing,
               note="; ".join(x for x in (
                   note_of(api_crash + api_hang),
                   "%d cases could not be run (%s)" % (
                       len(missing), "; ".join(
                           "%s: %s" % (cases[i].name, errors.get(i, "?"))
                           for i in missing[:2])) if missing else "")
                   if x))
    if not have_ref:
        ctx.skip("exception types differing from asyncio/Tornado" +
                 suffix,
                 "needs Tornado >= 6.2 installed")
    else:
        compared, diffs, rep_diffs, documented, stricter, lifetime = \
            compare(cases, {i: r for i, r in results.items()
                            if i in api_set})
        for case, a, b in diffs:
            ctx.log("differs: " + _fmt_diff(case, a, b))
        for case, a, b in rep_diffs:
            ctx.log("reported differently: " + _fmt_diff(case, a, b))
        if os.environ.get("TCG_FUZZ_VERBOSE"):
            # The accepted differences, one per case (the figures count
            # them and say why they are accepted).
            for case, a, b in stricter:
                ctx.log("stricter: " + _fmt_diff(case, a, b))
            for case, a, b in lifetime:
                ctx.log("__del__ timing: " + _fmt_diff(case, a, b))
        notes = []
        if diffs:
            notes.append("; ".join(_fmt_diff(*d) for d in diffs[:3]))
        if documented:
            notes.append("documented choices: %d (%s)" % (
                len(documented),
                "; ".join(sorted({w for _, w in documented}))))
        if stricter:
            notes.append(
                "raised at the call where the reference accepts and "
                "fails later with the same type: %d (%s)" % (
                    len(stricter), ", ".join(sorted(
                        {c.target.attr for c, _, _ in stricter}))))
        if lifetime:
            notes.append("only a __del__'s timing differs: %d" %
                         len(lifetime))
        ctx.figure("exception types differing from asyncio/Tornado" +
                   suffix,
                   "%d (of %s cases compared)" % (len(diffs),
                                                   count(compared)),
                   want="0", ok=not diffs, note="; ".join(notes))
        ctx.figure("errors reported (by type: loop handler or log; "
                   "unraisable) differing from asyncio/Tornado" + suffix,
                   "%d (of %s cases compared)" % (len(rep_diffs),
                                                   count(compared)),
                   want="0", ok=not rep_diffs,
                   note="; ".join(_fmt_diff(*d) for d in rep_diffs[:3]))
    gen_crash = [x for x in crashes if x[0] not in api_set]
    gen_hang = [x for x in hangs if x[0] not in api_set]
    gen_missing = [i for i in gen_idx if i not in results and
                   i not in {x[0] for x in crashes + hangs}]
    gdiff, gdoc = [], []
    if have_ref:
        for i in gen_idx:
            r = results.get(i)
            if not r or r[1] is None:
                continue
            a, b = r
            case = cases[i]
            same = a["call"] == b["call"] and a["drive"] == b["drive"] and \
                (_reported(a) == _reported(b) or case.prog in GEN_NO_REP)
            if same:
                continue
            why = _documented(case, a, b)
            if why:
                gdoc.append(why)
                continue
            gdiff.append(i)
            ctx.log("generator differs: " + _fmt_diff(case, a, b))
    ctx.figure("misbehaving generators%s" % suffix,
               "%d cases, crashes %d, hangs %d, outcome differing from "
               "Tornado: %s" % (len(gen_idx), len(gen_crash), len(gen_hang),
                                len(gdiff) if have_ref else "not compared"),
               want="crashes 0, hangs 0, differing 0",
               ok=not gen_crash and not gen_hang and not gdiff and
               not gen_missing,
               note="; ".join(x for x in (
                   note_of(gen_crash + gen_hang),
                   "%d could not be run (%s)" % (len(gen_missing), "; ".join(
                       "%s: %s" % (cases[i].name, errors.get(i, "?"))
                       for i in gen_missing[:2])) if gen_missing else "",
                   "; ".join(_fmt_diff(cases[i], *results[i])
                             for i in gdiff[:3]),
                   "documented choices: %d (%s)" % (
                       len(gdoc), "; ".join(sorted(set(gdoc))))
                   if gdoc else "") if x))


def run_one(name, soak=False, installed=False):
    """Run one case by name in this process, printing both outcomes (with
    ``installed``: the installed-mode outcome only)."""
    if installed:
        import tornado_cgen
        MODE[0] = "installed"
        tornado_cgen.install()
    sys.unraisablehook = _unraisable
    logging.getLogger().addHandler(_LogCatcher(logging.ERROR))
    for case in enumerate_cases(soak):
        if case.name == name:
            print("tornado_cgen:", (run_gen_case if isinstance(case, GenCase)
                                    else run_case)(case, TCG))
            if case.target.compare and _tornado() and not installed:
                print("reference:   ", (run_gen_case if isinstance(
                    case, GenCase) else run_case)(case, REF))
            return 0
    print("no case named %r" % name)
    return 2


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--case":
        sys.exit(run_one(sys.argv[2], "--soak" in sys.argv,
                         "--installed" in sys.argv))
    sys.exit(section_main("fuzz", run))
