"""Interpreter exit with loops and handles still alive (issue 8).

At exit the collector clears our types (tp_mro, ht_module) and our module
(its state) in any order while handles and loops in reference cycles are
still alive; a handle deallocated then used to look its module up through
the MRO and crashed the process (exit 139).  Each program below leaves
such objects behind and must exit 0 with nothing on stderr, in a fresh
interpreter, in normal and in development mode (which also turns on
asyncio's debug mode, so handles carry source tracebacks).  Under the
ASan build they must also leak nothing of ours: a handle deallocated after
the module state was cleared is freed, not pushed onto a freelist that
nobody empties any more.

The second half loads a private instance of the extension, clears its
state as interpreter exit does (the module's m_clear) while its loop and
handles live on, and drives every loop and handle path: each must raise
or carry on, never crash.
"""
import ctypes
import gc
import importlib.util
import inspect
import os
import sys
import tracemalloc

import pytest

import tornado_cgen

from conftest import run_program

def test_child_imports_the_package_under_test():
    out = run_program("import tornado_cgen; print(tornado_cgen.__file__)")
    assert os.path.samefile(out.strip(), tornado_cgen.__file__)


PROGRAMS = {
    "call_soon_in_cycle": """
        import tornado_cgen
        loop = tornado_cgen.new_event_loop()
        class Holder: pass
        h = Holder(); h.self = h; h.handle = loop.call_soon(print)
        """,
    "call_later_in_cycle": """
        import tornado_cgen
        loop = tornado_cgen.new_event_loop()
        class Holder: pass
        h = Holder(); h.self = h; h.handle = loop.call_later(10, print)
        """,
    "bound_method_timer_after_run": """
        import asyncio, tornado_cgen
        class Conn:
            def __init__(self, loop):
                self.timer = loop.call_later(30, self.on_timeout)
            def on_timeout(self): pass
        async def main():
            global c
            c = Conn(asyncio.get_running_loop())
        tornado_cgen.run(main())
        """,
    # A loop never closed, in a cycle, holding live and cancelled timers
    # and ready handles when the final collection reaches it; it ran
    # first, so both freelists hold handles at exit.
    "unclosed_loop_with_timers_and_freelist": """
        import tornado_cgen
        loop = tornado_cgen.new_event_loop()
        for i in range(300):
            loop.call_soon(len, ())
            loop.call_later(0, len, ())
        loop.call_later(0.01, loop.stop)
        loop.run_forever()
        class App: pass
        app = App(); app.loop = loop; loop.app = app
        app.timers = [loop.call_later(100 + i, print) for i in range(50)]
        for t in app.timers[::2]:
            t.cancel()
        app.ready = [loop.call_soon(print, i, i) for i in range(50)]
        holders = []
        for i in range(100):
            h = App(); h.self = h
            h.t = loop.call_later(100, lambda h=h: h)
            h.s = loop.call_soon(lambda h=h: h)
            holders.append(h)
        """,
    "ioloop_never_closed": """
        from tornado_cgen import ioloop
        io = ioloop.IOLoop()
        class C:
            def __init__(self):
                self.io = io
                self.t = io.add_timeout(io.time() + 30, self.cb)
                self.t2 = io.call_later(5, self.cb, y=3)
                io.add_callback(self.cb)
                io.add_callback(self.cb, 1, x=2)
                io.spawn_callback(self.cb)
            def cb(self, *a, **k): pass
        c = C(); c.self = c
        """,
    # Readers and writers registered on a never-closed loop, their
    # callbacks bound methods of an object that holds the loop.
    "unclosed_loop_with_readers_in_cycle": """
        import os, tornado_cgen
        loop = tornado_cgen.new_event_loop()
        r, w = os.pipe()
        class Conn:
            def __init__(self):
                self.loop = loop
                loop.add_reader(r, self.on_read)
                loop.add_writer(w, self.on_write)
                self.t = loop.call_later(30, self.on_read)
            def on_read(self): pass
            def on_write(self): pass
        c = Conn(); c.self = c; loop.conn = c
        """,
    "reader_after_run": """
        import asyncio, os, tornado_cgen
        class Conn:
            def __init__(self, loop):
                self.r, self.w = os.pipe()
                loop.add_reader(self.r, self.on_read)
                self.timer = loop.call_later(30, self.on_read)
            def on_read(self): pass
        async def main():
            global c
            c = Conn(asyncio.get_running_loop())
            c.loop = asyncio.get_running_loop()
        tornado_cgen.run(main())
        """,
    # The bare C type, subclassed without the asyncio face: the module is
    # found through tp_base.
    "subclassed_core_loop": """
        from tornado_cgen import _core
        class L(_core.Loop): pass
        loop = L()
        class Holder: pass
        h = Holder(); h.self = h; h.loop = loop
        h.t = loop.call_later(10, print); h.s = loop.call_soon(print, 1)
        """,
    "debug_loop_cancelled_handles": """
        import tornado_cgen
        loop = tornado_cgen.new_event_loop()
        loop.set_debug(True)
        class Holder: pass
        h = Holder(); h.self = h
        h.t = loop.call_later(10, print); h.s = loop.call_soon(print)
        h.s.cancel()
        """,
}


@pytest.mark.parametrize("devmode", [False, True], ids=["normal", "devmode"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_exit_with_live_handles(name, devmode):
    run_program(PROGRAMS[name], devmode=devmode)


# -- after the module state is cleared ------------------------------------

def _fresh_core():
    """A private instance of tornado_cgen._core, with its own state."""
    spec = importlib.util.find_spec("tornado_cgen._core")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod is not tornado_cgen._core
    return mod


class _PyModuleDef(ctypes.Structure):
    # PyModuleDef_Base is PyObject_HEAD plus m_init, m_index, m_copy.
    _fields_ = ([("_ob_next", ctypes.c_void_p), ("_ob_prev", ctypes.c_void_p)]
                if hasattr(sys, "getobjects") else []) + [
        ("ob_refcnt", ctypes.c_ssize_t),
        ("ob_type", ctypes.c_void_p),
        ("m_init", ctypes.c_void_p),
        ("m_index", ctypes.c_ssize_t),
        ("m_copy", ctypes.c_void_p),
        ("m_name", ctypes.c_char_p),
        ("m_doc", ctypes.c_char_p),
        ("m_size", ctypes.c_ssize_t),
        ("m_methods", ctypes.c_void_p),
        ("m_slots", ctypes.c_void_p),
        ("m_traverse", ctypes.c_void_p),
        ("m_clear", ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object)),
        ("m_free", ctypes.c_void_p),
    ]


def _clear_state(mod):
    """Run the module's m_clear, as the collector does at exit."""
    get_def = ctypes.pythonapi.PyModule_GetDef
    get_def.argtypes = [ctypes.py_object]
    get_def.restype = ctypes.POINTER(_PyModuleDef)
    mdef = get_def(mod).contents
    if mdef.m_name != b"tornado_cgen._core":
        pytest.skip("unexpected PyModuleDef layout")
    assert mdef.m_clear(mod) == 0


@pytest.fixture
def cleared():
    """(module, loop, handles) with the module state cleared under them."""
    mod = _fresh_core()
    loop = mod.Loop()
    handles = [loop.call_soon(print, 1), loop.call_later(10, print, 1, 2),
               loop._tornado_call_later(5, print)]
    _clear_state(mod)
    yield mod, loop, handles
    loop._close_core()


GONE = "cleared"


def test_scheduling_after_clear_raises(cleared):
    mod, loop, handles = cleared
    with pytest.raises(RuntimeError, match=GONE):
        loop.call_soon(print)
    with pytest.raises(RuntimeError, match=GONE):
        loop.call_soon_threadsafe(print)
    with pytest.raises(RuntimeError, match=GONE):
        loop.call_later(1, print)
    with pytest.raises(RuntimeError, match=GONE):
        loop.call_at(1, print)
    with pytest.raises(RuntimeError, match=GONE):
        loop._tornado_call_later(1, print, x=1)
    with pytest.raises(RuntimeError, match=GONE):
        loop._tornado_call_at(1, print)
    with pytest.raises(RuntimeError, match=GONE):
        loop.create_future()
    r, w = os.pipe()
    try:
        with pytest.raises(RuntimeError, match=GONE):
            loop._add_reader(r, print)
        assert loop._remove_reader(r) is False
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(RuntimeError, match=GONE):
        loop._run_once()
    with pytest.raises(RuntimeError, match=GONE):
        loop._run_forever_core()


def test_tornado_add_callback_after_clear_is_dropped(cleared):
    # IOLoop.add_callback never raises for a dead loop (it drops the
    # callback once the loop is closed); one whose module is gone is dead.
    mod, loop, handles = cleared
    assert loop._tornado_add_callback(print) is None
    assert loop._tornado_add_callback(print, 1, end="") is None
    assert loop._ready_count == 1


def test_handles_after_clear(cleared):
    mod, loop, handles = cleared
    soon, timer, tornado_timer = handles
    assert loop._tornado_remove_timeout(tornado_timer) is None
    assert tornado_timer.cancelled()
    for h in handles:
        assert h._args is not None or h.cancelled()
        h.get_context()
        with pytest.raises(RuntimeError, match=GONE):
            repr(h)
        with pytest.raises(RuntimeError, match=GONE):
            h._run()
    assert timer.when() > 0
    timer.cancel()
    assert timer.cancelled() and timer._args is None
    assert loop._timer_cancelled_count == 2
    assert soon._args == (1,)


def test_loop_closes_and_frees_after_clear():
    mod = _fresh_core()
    loop = mod.Loop()
    r, w = os.pipe()
    try:
        loop._add_reader(r, print)
        loop.call_soon(print)
        loop.call_later(10, print)
        _clear_state(mod)
        assert loop._close_core() is None
        assert loop.is_closed()
    finally:
        os.close(r)
        os.close(w)
    del loop
    gc.collect()


def test_handles_released_after_clear_are_freed():
    # Handles deallocated once the state is cleared go back to the
    # allocator: no freelist is filled that nobody would empty again.
    mod = _fresh_core()
    loop = mod.Loop()
    # Fill both freelists first: the state has some to free at clear.
    hs = [loop.call_soon(len, ()) for _ in range(300)]
    hs += [loop.call_later(100, len, ()) for _ in range(300)]
    for h in hs:
        h.cancel()
    loop._run_once()
    del hs
    tracemalloc.start(1)
    try:
        keep = _make_handles(loop)
        before = _traced_here()
        assert before > 0
        _clear_state(mod)
        loop._close_core()   # the loop's references go
        del keep             # and the last ones: each handle is freed
        gc.collect()
        after = _traced_here()
    finally:
        tracemalloc.stop()
    assert after == 0, (before, after)


def _make_handles(loop):
    # More than a freelist holds, so that most are fresh allocations.
    # (No comprehension: 3.10 keeps its frame allocated, in the code.)
    hs = []
    for _ in range(600):
        hs.append(loop.call_soon(len, ()))
        hs.append(loop.call_later(100, len, ()))
    return hs


def _traced_here():
    """Blocks still allocated by _make_handles()."""
    src, first = inspect.getsourcelines(_make_handles)
    lines = range(first, first + len(src))
    snap = tracemalloc.take_snapshot()
    total = 0
    for stat in snap.statistics("lineno"):
        fr = stat.traceback[0]
        if fr.filename == __file__ and fr.lineno in lines:
            total += stat.count
    return total


# -- a loop's own end -------------------------------------------------------

def test_closing_releases_a_timer_that_cancels_another():
    # close() drops each timer of the heap; one whose callback's __del__
    # cancels a timer not yet dropped must not count it against the now
    # empty heap (the count stayed 1 with no timers; debug builds stopped
    # on the invariant).
    loop = tornado_cgen.new_event_loop()
    counts = []
    other = loop.call_later(100, print)

    class Bomb:
        def __call__(self):
            pass

        def __del__(self):
            other.cancel()
            counts.append(loop._timer_cancelled_count)

    loop.call_later(50, Bomb())   # the earlier deadline: dropped first
    loop.close()
    assert counts == [0] and other.cancelled()
    assert loop._timer_cancelled_count == 0 and loop._timer_count == 0
