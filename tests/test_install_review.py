"""Review of install(): each test here failed before its fix.

Whatever a test installs it uninstalls: the rest of the suite runs on the
standalone package.
"""
import pytest

from conftest import run_program


# ---- the C module state after interpreter exit cleared it -----------------

# The collector may clear _core's state while code still runs (tcg.h, rule
# 3); m_clear, called through ctypes, does what it does.
_CLEAR_CORE = """
    import ctypes
    from tornado_cgen import _core

    class _Base(ctypes.Structure):
        _fields_ = [("ob_refcnt", ctypes.c_ssize_t), ("ob_type", ctypes.c_void_p),
                    ("m_init", ctypes.c_void_p), ("m_index", ctypes.c_ssize_t),
                    ("m_copy", ctypes.c_void_p)]

    class _Def(ctypes.Structure):
        _fields_ = [("m_base", _Base), ("m_name", ctypes.c_char_p),
                    ("m_doc", ctypes.c_char_p), ("m_size", ctypes.c_ssize_t),
                    ("m_methods", ctypes.c_void_p), ("m_slots", ctypes.c_void_p),
                    ("m_traverse", ctypes.c_void_p), ("m_clear", ctypes.c_void_p),
                    ("m_free", ctypes.c_void_p)]

    def clear_core():
        get_def = ctypes.pythonapi.PyModule_GetDef
        get_def.restype = ctypes.POINTER(_Def)
        get_def.argtypes = [ctypes.py_object]
        m_clear = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object)(
            get_def(_core).contents.m_clear)
        m_clear(_core)
"""


def test_setup_calls_refuse_a_cleared_state():
    # uninstall() in a finalizer at exit re-registered the gen objects into
    # the cleared state, and multi() then went on with its types gone (a
    # crash); the state stays cleared and both say so.
    out = run_program(_CLEAR_CORE + """
    import asyncio
    from tornado_cgen import gen

    loop = asyncio.new_event_loop()
    pending = loop.create_future()
    clear_core()
    for name, call in [
            ("_gen_setup", gen._setup_core),
            ("_set_future_factory",
             lambda: _core._set_future_factory(asyncio.Future)),
            ("multi", lambda: _core.multi([pending]))]:
        try:
            call()
        except RuntimeError as e:
            print(name, e)
        else:
            print(name, "went on")
    pending.cancel()
    loop.close()
    """)
    assert out.splitlines() == [
        "%s tornado_cgen._core has been cleared (interpreter exit)" % name
        for name in ("_gen_setup", "_set_future_factory", "multi")]


# ---- install() / uninstall(): all or nothing, one at a time ---------------

tornado = pytest.importorskip("tornado")


def _tornado_state():
    """What install() may change: every attribute it patches, the C
    Runner's objects, the future factory, the loop hook and the policy."""
    import asyncio
    import tornado.gen
    import tornado.httputil
    import tornado.ioloop
    import tornado.iostream
    import tornado.platform.asyncio
    from tornado_cgen import loop as tcg_loop
    attrs = {}
    for obj in (tornado.gen, tornado.platform.asyncio,
                tornado.platform.asyncio.BaseAsyncIOLoop,
                tornado.ioloop.IOLoop, tornado.iostream.BaseIOStream,
                tornado.iostream.IOStream, tornado.httputil):
        attrs.update({(obj.__name__, k): v for k, v in vars(obj).items()
                      if not k.startswith("__")})
    return attrs, tcg_loop._tornado_result_hook, \
        asyncio.events._event_loop_policy


def _runs_standalone():
    """The C Runner and multi() are tornado_cgen's own again: its
    BadYieldError, its Future."""
    import tornado_cgen
    from tornado_cgen import concurrent, gen

    @gen.coroutine
    def f():
        try:
            yield 42
        except gen.BadYieldError:
            return "ours"

    fut = f()
    return (type(fut) is concurrent.Future and fut.result() == "ours" and
            type(gen.multi([])) is concurrent.Future and
            not tornado_cgen.installed())


@pytest.fixture
def uninstalled():
    import tornado_cgen
    assert not tornado_cgen.installed()
    yield
    tornado_cgen.uninstall()


def test_install_failing_halfway_changes_nothing(uninstalled, monkeypatch):
    # It used to leave Tornado patched and the C Runner on Tornado's
    # objects, with installed() False and uninstall() doing nothing.
    import tornado_cgen
    from tornado_cgen import loop as tcg_loop

    before = _tornado_state()

    class Failing:
        def __init__(self):
            raise MemoryError("the last step of install() fails")

    monkeypatch.setattr(tcg_loop, "EventLoopPolicy", Failing)
    with pytest.raises(MemoryError):
        tornado_cgen.install()
    assert _tornado_state() == before
    assert _runs_standalone()


def test_install_from_two_threads_at_once(uninstalled, monkeypatch):
    # Both calls saw "not installed"; the later one saved the earlier one's
    # replacements as Tornado's originals, which uninstall() then put back.
    import threading
    import tornado_cgen
    from tornado_cgen import _speedup

    before = _tornado_state()
    real, first, second_done = _speedup._tornado, [], threading.Event()

    def slow_tornado():
        if not first:
            first.append(1)
            second_done.wait(0.5)   # the other call runs meanwhile (if it can)
        return real()

    monkeypatch.setattr(_speedup, "_tornado", slow_tornado)
    t = threading.Thread(target=tornado_cgen.install)
    t.start()
    while not first:
        pass
    tornado_cgen.install()
    second_done.set()
    t.join()
    assert tornado_cgen.installed()
    tornado_cgen.uninstall()
    assert _tornado_state() == before
    assert _runs_standalone()


def test_uninstall_keeps_what_the_program_changed_since(uninstalled):
    # uninstall() put Tornado's function and the old policy back over the
    # program's own, set after install().
    import asyncio
    import tornado.gen
    import tornado.iostream
    import tornado_cgen

    tornado_read = tornado.iostream.BaseIOStream._read_to_buffer
    tornado_coroutine = tornado.gen.coroutine
    before = asyncio.events._event_loop_policy
    tornado_cgen.install()

    def program_coroutine(func):
        return func

    class ProgramPolicy(asyncio.DefaultEventLoopPolicy):
        pass

    policy = ProgramPolicy()
    try:
        tornado.gen.coroutine = program_coroutine
        asyncio.set_event_loop_policy(policy)
        tornado_cgen.uninstall()
        assert tornado.gen.coroutine is program_coroutine
        assert asyncio.events._event_loop_policy is policy
        # What the program left alone is Tornado's again.
        assert tornado.iostream.BaseIOStream._read_to_buffer is tornado_read
    finally:
        tornado_cgen.uninstall()
        tornado.gen.coroutine = tornado_coroutine
        asyncio.set_event_loop_policy(before)


# ---- the IOLoop methods install() replaces ------------------------------

@pytest.fixture
def installed():
    import tornado_cgen
    assert not tornado_cgen.installed()
    tornado_cgen.install()
    yield
    tornado_cgen.uninstall()


def test_call_later_of_an_ioloop_of_its_own(installed):
    # IOLoop.call_later is self.call_at(self.time() + delay); it read
    # self.asyncio_loop first, which an IOLoop that is not a
    # BaseAsyncIOLoop does not have (AttributeError).
    from tornado.ioloop import IOLoop

    class TimerOnly(IOLoop):
        def call_at(self, when, callback, *args, **kwargs):
            self.calls.append((when, callback))
            return "handle"

        def time(self):
            return 1000.0

    io_loop = object.__new__(TimerOnly)   # no Configurable initialize()
    io_loop.calls = []
    assert IOLoop.call_later(io_loop, 5, print) == "handle"
    assert io_loop.calls == [(1005.0, print)]


def test_call_later_honours_instance_overrides(installed):
    # Only the class was checked for call_at/time overrides: one set on the
    # instance (mock.patch.object(io_loop, "call_at")) was bypassed.
    from unittest import mock
    from tornado.platform.asyncio import AsyncIOLoop

    io_loop = AsyncIOLoop(make_current=False)
    try:
        with mock.patch.object(io_loop, "call_at", return_value="mocked") as m:
            assert io_loop.call_later(5, print) == "mocked"
        assert m.call_args[0][1] is print
        with mock.patch.object(io_loop, "time", return_value=100.0):
            with mock.patch.object(io_loop, "call_at") as m:
                io_loop.call_later(5, print)
            assert m.call_args[0][0] == 105.0
    finally:
        io_loop.close()


@pytest.mark.parametrize("delay", [None, "1", __import__("decimal").Decimal(1)])
def test_call_later_bad_delay_fails_as_tornado(installed, delay):
    # max(0, delay) came first: another TypeError than Tornado's
    # (time() + delay), and a Decimal Tornado refuses was taken.
    import time
    from tornado.platform.asyncio import AsyncIOLoop

    io_loop = AsyncIOLoop(make_current=False)
    try:
        with pytest.raises(TypeError) as got:
            io_loop.call_later(delay, print)
        with pytest.raises(TypeError) as want:
            time.time() + delay
        assert str(got.value) == str(want.value)
    finally:
        io_loop.close()


def test_run_callback_of_a_subclass_is_honoured(installed):
    # Tornado runs every add_callback/call_at/call_later (add_timeout,
    # spawn_callback) callback through self._run_callback; the C loop
    # applied IOLoop's rules itself and skipped a subclass's override.
    from tornado.platform.asyncio import AsyncIOLoop

    class Counting(AsyncIOLoop):
        def _run_callback(self, callback):
            self.seen.append(callback.func)
            return super()._run_callback(callback)

    io_loop = Counting(make_current=False)
    io_loop.seen = []
    try:
        def a():
            pass

        def b():
            pass

        def c():
            pass

        io_loop.add_callback(a)
        io_loop.call_at(io_loop.time(), b)
        io_loop.call_later(0, c)
        io_loop.call_later(0.05, io_loop.stop)
        io_loop.start()
        assert sorted(f.__name__ for f in io_loop.seen[:3]) == ["a", "b", "c"]
    finally:
        io_loop.close()


def _run_briefly(io_loop):
    io_loop.call_later(0.05, io_loop.stop)
    io_loop.start()


def test_overrides_made_after_the_first_calls_are_honoured(mode):
    # The routed methods remember, per version of an IOLoop class, that it
    # overrides none of _run_callback, call_at and time: a class changed
    # after that (a subclass's attribute set, IOLoop.time patched on the
    # base class) must be seen on the very next call.
    from unittest import mock
    from tornado.ioloop import IOLoop
    from tornado.platform.asyncio import AsyncIOLoop

    class Sub(AsyncIOLoop):
        pass

    seen = []
    io_loop = Sub(make_current=False)
    try:
        def first():
            seen.append("first")

        io_loop.add_callback(first)
        io_loop.call_later(0, first)
        io_loop.call_at(io_loop.time(), first)
        _run_briefly(io_loop)
        assert seen == ["first"] * 3

        def counting(self, callback):
            seen.append("counted")
            return AsyncIOLoop._run_callback(self, callback)

        Sub._run_callback = counting
        del seen[:]
        io_loop.add_callback(first)
        io_loop.call_later(0, first)
        _run_briefly(io_loop)
        assert seen.count("counted") >= 3 and seen.count("first") == 2
        del Sub._run_callback

        with mock.patch.object(IOLoop, "time", return_value=1000.0):
            with mock.patch.object(Sub, "call_at", return_value="h") as m:
                assert io_loop.call_later(5, first) == "h"
            assert m.call_args[0][0] == 1005.0
        # And back: the class as it was routes (or runs) as before.
        del seen[:]
        io_loop.call_later(0, first)
        _run_briefly(io_loop)
        assert seen == ["first"]
    finally:
        io_loop.close()


def test_call_at_reads_a_time_patched_on_the_class_later(mode):
    # call_at(when) is a delay of when - self.time(): a time() set on the
    # class after calls were made decides the delay of the next one.
    from tornado.platform.asyncio import AsyncIOLoop

    class Sub(AsyncIOLoop):
        pass

    io_loop = Sub(make_current=False)
    try:
        fired = []
        io_loop.call_at(io_loop.time(), fired.append, 1)
        _run_briefly(io_loop)
        # A clock 100 s behind: call_at(real now) is then 100 s away.
        real = AsyncIOLoop.time
        Sub.time = lambda self: real(self) - 100.0
        io_loop.call_at(real(io_loop), fired.append, 2)
        _run_briefly(io_loop)
        assert fired == [1]
    finally:
        io_loop.close()


def _warm(io_loop, fired):
    # Routed calls of each kind, so that whatever they keep of this
    # IOLoop's __dict__ is kept before the change under test.
    del fired[:]
    for _ in range(3):
        io_loop.add_callback(fired.append, "warm")
        io_loop.call_later(0, fired.append, "warm")
        io_loop.call_at(io_loop.time(), fired.append, "warm")
    _run_briefly(io_loop)
    assert fired == ["warm"] * 9, fired
    del fired[:]


@pytest.mark.parametrize("how", ["setattr", "vars", "new_dict"])
def test_instance_dict_changes_after_calls_are_seen(mode, how):
    # The routed methods may keep what they read in an IOLoop's __dict__
    # (its asyncio_loop; no _run_callback, call_at or time of its own)
    # while the dict is unchanged: a change made after calls, however it
    # is made, decides the very next call, and undoing it routes again.
    import asyncio
    from tornado.platform.asyncio import AsyncIOLoop

    io_loop = AsyncIOLoop(make_current=False)
    other = asyncio.new_event_loop()

    def put(name, value):
        if how == "setattr":
            setattr(io_loop, name, value)
        elif how == "vars":
            vars(io_loop)[name] = value
        else:
            io_loop.__dict__ = dict(io_loop.__dict__, **{name: value})

    def drop(name):
        if how == "setattr":
            delattr(io_loop, name)
        elif how == "vars":
            del vars(io_loop)[name]
        else:
            d = dict(io_loop.__dict__)
            del d[name]
            io_loop.__dict__ = d

    fired = []
    try:
        _warm(io_loop, fired)
        # _run_callback of the instance's own.
        put("_run_callback",
            lambda cb: (fired.append("counted"),
                        AsyncIOLoop._run_callback(io_loop, cb)))
        io_loop.add_callback(fired.append, "cb")
        _run_briefly(io_loop)
        # (The second: _run_briefly's call_later of stop.)
        assert fired == ["counted", "cb", "counted"]
        drop("_run_callback")
        _warm(io_loop, fired)

        # call_at of the instance's own, asked by call_later.
        put("call_at", lambda when, cb, *a: ("mocked", cb, a))
        assert io_loop.call_later(5, print, 1) == ("mocked", print, (1,))
        drop("call_at")
        _warm(io_loop, fired)

        # A clock 100 s behind: call_at(real now) is then 100 s away;
        # call_later(0) is call_at(time() + 0), due at once.
        real = AsyncIOLoop.time
        put("time", lambda: real(io_loop) - 100.0)
        io_loop.call_at(real(io_loop), fired.append, "at")
        io_loop.call_later(0, fired.append, "later")
        _run_briefly(io_loop)
        assert fired == ["later"]
        drop("time")
        _warm(io_loop, fired)

        # Another asyncio loop: the callback goes there.
        own = io_loop.asyncio_loop
        put("asyncio_loop", other)
        io_loop.add_callback(fired.append, "elsewhere")
        put("asyncio_loop", own)
        _run_briefly(io_loop)
        assert fired == []
        other.run_until_complete(asyncio.sleep(0.01))
        assert fired == ["elsewhere"]
        _warm(io_loop, fired)
    finally:
        io_loop.close(all_fds=False)
        other.close()


def test_a_key_whose_eq_changes_its_answer_is_asked_each_call(mode):
    # A key of a str subclass in an IOLoop's __dict__ is compared with
    # Python code on each lookup of a name it hashes like, and may answer
    # otherwise while the dict stays unchanged: Tornado asks it on every
    # call, and so must the routed methods.
    from tornado.platform.asyncio import AsyncIOLoop

    matches = [False]

    class Key(str):
        __hash__ = str.__hash__

        def __eq__(self, other):
            return matches[0] and str.__eq__(self, other)

    io_loop = AsyncIOLoop(make_current=False)
    fired = []
    try:
        def counting(cb):
            fired.append("patched")
            return AsyncIOLoop._run_callback(io_loop, cb)

        vars(io_loop)[Key("_run_callback")] = counting
        for answer in (False, True):
            matches[0] = answer
            io_loop.add_callback(fired.append, answer)
        matches[0] = False
        _run_briefly(io_loop)
        assert fired == [False, "patched", True]
    finally:
        io_loop.close()


def test_a_subclass_getattribute_sees_the_methods_looked_up(mode):
    # Tornado's methods look up self.time and self._run_callback on the
    # instance: a class with its own __getattribute__ is asked for them.
    from tornado.platform.asyncio import AsyncIOLoop

    asked = []

    class Watched(AsyncIOLoop):
        def __getattribute__(self, name):
            if name in ("time", "_run_callback"):
                asked.append(name)
            return super().__getattribute__(name)

    io_loop = Watched(make_current=False)
    try:
        fired = []
        io_loop.add_callback(fired.append, 1)
        assert asked == ["_run_callback"]
        del asked[:]
        io_loop.call_at(AsyncIOLoop.time(io_loop), fired.append, 2)
        assert asked == ["time", "_run_callback"]
        del asked[:]
        io_loop.call_later(0, fired.append, 3)
        assert asked == ["time", "time", "_run_callback"]
        _run_briefly(io_loop)
        assert sorted(fired) == [1, 2, 3]
    finally:
        io_loop.close()


def test_ioloop_methods_introspect_as_tornado():
    # Unlike install()'s other replacements they had no functools.wraps:
    # _ioloop_methods.<locals>.add_callback in tracebacks and error
    # messages, and IOLoop.call_later without its documentation.
    import tornado_cgen
    from tornado.ioloop import IOLoop
    from tornado.platform.asyncio import AsyncIOLoop, BaseAsyncIOLoop

    methods = [(BaseAsyncIOLoop, "add_callback"), (BaseAsyncIOLoop, "call_at"),
               (IOLoop, "call_later")]
    want = {(c, n): (vars(c)[n].__qualname__, vars(c)[n].__doc__)
            for c, n in methods}
    tornado_cgen.install()
    try:
        got = {(c, n): (vars(c)[n].__qualname__, vars(c)[n].__doc__)
               for c, n in methods}
        io_loop = AsyncIOLoop(make_current=False)
        try:
            with pytest.raises(TypeError, match=r"^BaseAsyncIOLoop\.add_callback\(\)"):
                io_loop.add_callback()
        finally:
            io_loop.close()
    finally:
        tornado_cgen.uninstall()
    assert got == want


@pytest.mark.parametrize("mode", ["upstream", "installed"])
def test_ioloop_current_on_a_running_loop(mode):
    # install() answers IOLoop.current() from C while our loop runs: the
    # same IOLoop as Tornado's lookup, None with instance=False before one
    # exists, one made (AsyncIOMainLoop) otherwise, and a fresh one per
    # asyncio loop.
    import asyncio
    import tornado_cgen
    if mode == "installed":
        tornado_cgen.install()
    try:
        from tornado.ioloop import IOLoop
        from tornado.platform.asyncio import AsyncIOMainLoop

        async def main():
            first = IOLoop.current(instance=False)
            made = IOLoop.current()
            again = [IOLoop.current(), IOLoop.current(True),
                     IOLoop.current(instance=False), IOLoop.instance()]
            return first, made, again, asyncio.get_running_loop()

        for _ in range(2):
            first, made, again, aloop = asyncio.run(main())
            assert first is None
            assert type(made) is AsyncIOMainLoop
            assert made.asyncio_loop is aloop
            assert all(io is made for io in again)
            assert (type(aloop).__module__ == "tornado_cgen.loop") == (
                mode == "installed")
        with pytest.raises(TypeError):
            asyncio.run(_call(IOLoop.current, bogus=1))
    finally:
        tornado_cgen.uninstall()


async def _call(fn, **kwargs):
    return fn(**kwargs)
