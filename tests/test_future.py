"""The Future (ext/future.c): what is tornado_cgen's own beyond asyncio's
rules (CPython's Future tests run on it in test_future_conformance.py),
and programs that once crashed, leaked or lost a call in its C code."""
import asyncio
import gc
import weakref

import pytest

import tornado_cgen
from tornado_cgen.concurrent import Future

from conftest import run_program, run_python


@pytest.fixture(params=["tcg", "asyncio"])
def future_type(request):
    """Our Future and asyncio's: where both must behave the same."""
    return Future if request.param == "tcg" else asyncio.Future


def test_type_is_immutable(future_type):
    # The Runner and the await iterator read exact Futures' struct, so
    # patching a method must not be possible (as on _asyncio.Future).
    with pytest.raises(TypeError):
        future_type.result = lambda self: "patched"
    with pytest.raises(TypeError):
        future_type.extra = 1


def test_subclass_can_override(tcg_loop):
    class Sub(Future):
        def result(self):
            return "sub"

    f = Sub(loop=tcg_loop)
    f.set_result(1)
    assert f.result() == "sub"


def test_add_done_callback_fn_is_positional_only(future_type, tcg_loop):
    f = future_type(loop=tcg_loop)
    with pytest.raises(TypeError):
        f.add_done_callback(fn=print)
    with pytest.raises(TypeError):
        f.add_done_callback()
    with pytest.raises(TypeError):
        f.add_done_callback(print, context=None, extra=1)
    f.add_done_callback(print, context=None)
    assert f.remove_done_callback(print) == 1


@pytest.mark.parametrize("call", [
    lambda f: f.result(1),
    lambda f: f.exception(1),
    lambda f: f.set_result(),
    lambda f: f.set_result(1, 2),
    lambda f: f.set_exception(),
    lambda f: f.cancel(1, 2),
    lambda f: f.cancel(msg=1, other=2),
    lambda f: f.get_loop(1),
    lambda f: f.done(1),
    lambda f: f.cancelled(1),
])
def test_bad_arguments_are_type_errors(future_type, tcg_loop, call):
    f = future_type(loop=tcg_loop)
    with pytest.raises(TypeError):
        call(f)
    assert not f.done()


def test_cancel_message_by_keyword(tcg_loop):
    f = Future(loop=tcg_loop)
    assert f.cancel(msg="why")
    with pytest.raises(asyncio.CancelledError, match="why"):
        f.result()


EXIT_PROGRAMS = {
    "pending future in a cycle": """
import tornado_cgen
from tornado_cgen.concurrent import Future
loop = tornado_cgen.new_event_loop()
f = Future(loop=loop)
f.me = f
""",
    "done future of a subclass in a cycle": """
import tornado_cgen
from tornado_cgen.concurrent import Future
class Sub(Future):
    pass
loop = tornado_cgen.new_event_loop()
f = Sub(loop=loop)
f.set_result(f)
""",
    "retrieved exception in a cycle, loop in it too": """
import tornado_cgen
from tornado_cgen.concurrent import Future
loop = tornado_cgen.new_event_loop()
f = Future(loop=loop)
f.set_exception(ValueError("x"))
f.exception()
f.loop_ref = loop
loop.f = f
""",
}


@pytest.mark.parametrize("name", sorted(EXIT_PROGRAMS))
@pytest.mark.parametrize("devmode", [False, True], ids=["", "devmode"])
def test_interpreter_exit_with_live_futures(name, devmode):
    run_program(EXIT_PROGRAMS[name], devmode=devmode)


def test_unretrieved_exception_at_exit_reported_like_asyncio():
    code = """
import asyncio, sys
import tornado_cgen
class H: pass
loop = (asyncio.new_event_loop() if sys.argv[1] == "asyncio"
        else tornado_cgen.new_event_loop())
f = loop.create_future(); f.set_exception(ValueError("x"))
h = H(); h.h = h; h.f = f
"""
    ours = run_python(code, "tcg")
    ref = run_python(code, "asyncio")
    assert ours.returncode == ref.returncode == 0
    assert "Future exception was never retrieved" in ref.stderr
    assert ours.stderr == ref.stderr


# ---- programs that once crashed, leaked or lost a call ----------------------

class TestFutureEdges:
    def test_callbacks_attribute_is_a_copy(self, tcg_loop):
        f = Future(loop=tcg_loop)
        seen = []
        f.add_done_callback(print)
        f.add_done_callback(seen.append)
        f.remove_done_callback(print)     # the rest now lives in a list
        f._callbacks.append(42)           # must not reach the future
        f._callbacks.clear()
        f.set_result(1)
        tcg_loop.run_until_complete(asyncio.sleep(0))
        assert seen == [f]

    def test_remove_keeps_callbacks_added_by_eq(self, tcg_loop):
        f = Future(loop=tcg_loop)
        late = []

        class AddsOnCompare:
            def __call__(self, fut):
                pass

            def __eq__(self, other):
                f.add_done_callback(lambda fut: late.append("late"))
                return False

            __hash__ = object.__hash__

        f.add_done_callback(lambda fut: None)
        f.add_done_callback(AddsOnCompare())
        assert f.remove_done_callback(print) == 0
        f.set_result(1)
        tcg_loop.run_until_complete(asyncio.sleep(0))
        assert late == ["late"]

    def test_future_resurrected_by_exception_handler_stays_collectable(
            self, tcg_loop):
        kept = []
        tcg_loop.set_exception_handler(lambda loop, ctx: kept.append(ctx["future"]))
        f = Future(loop=tcg_loop)
        f.set_exception(ValueError("never retrieved"))
        del f
        gc.collect()
        fut = kept.pop()
        assert gc.is_tracked(fut)

        class Node:
            pass

        node = Node()
        node.fut, fut.node = fut, node    # a cycle through the future
        ref = weakref.ref(node)
        del node, fut
        gc.collect()
        assert ref() is None

    def test_instance_dict(self, tcg_loop):
        f = Future(loop=tcg_loop)
        f.note = "x"
        assert vars(f) == {"note": "x"}


def test_invalid_state_error_as_asyncio_words_it(tcg_loop):
    ours = Future(loop=tcg_loop)
    theirs = asyncio.Future(loop=tcg_loop)
    for f in (ours, theirs):
        f.set_result(1)
    messages = []
    for f in (ours, theirs):
        for call in (lambda: f.set_result(2),
                     lambda: f.set_exception(ValueError())):
            with pytest.raises(asyncio.InvalidStateError) as info:
                call()
            messages.append(str(info.value))
    assert messages[:2] == messages[2:]


def test_clear_freelists_frees_recycled_futures_and_handles(tcg_loop):
    # For leak hunts (tornado_cgen.check's per-test check): the dead
    # objects kept for reuse are freed, and creating more still works.
    from tornado_cgen import _core
    _core._clear_freelists()
    futures = [Future(loop=tcg_loop) for _ in range(10)]
    handles = [tcg_loop.call_soon(print) for _ in range(10)]
    timers = [tcg_loop.call_later(60, print) for _ in range(10)]
    for h in handles + timers:
        h.cancel()
    tcg_loop.run_until_complete(asyncio.sleep(0))
    del futures, handles, timers, h
    gc.collect()
    assert _core._clear_freelists() >= 30
    assert _core._clear_freelists() == 0
    f = tcg_loop.create_future()
    tcg_loop.call_soon(f.set_result, 1)
    assert tcg_loop.run_until_complete(f) == 1
