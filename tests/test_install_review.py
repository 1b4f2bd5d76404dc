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
