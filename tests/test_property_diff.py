"""The differential properties of ``python -m tornado_cgen check``
(tornado_cgen.check.differential), with few examples.

Random coroutine programs (tools/difftest.py's generator, drawn by
hypothesis) must give the same trace on upstream Tornado, on tornado_cgen's
loop, on tornado_cgen over asyncio's loop and under install(); programs
with cancelled futures must do what README documents.  The check runs
thousands; ``--soak`` tens of thousands.
"""
import os

import pytest

pytest.importorskip("hypothesis", reason="the properties are hypothesis's")
tornado = pytest.importorskip("tornado", reason="upstream Tornado (the "
                              "oracle) is not installed")
if tornado.version_info < (6, 6):
    pytest.skip("the oracle semantics (cancellation) are Tornado 6.6's",
                allow_module_level=True)

from tornado_cgen.check import differential as D  # noqa: E402

# The tester of this checkout (the tests are always run from one).
dt = D.load_difftest(os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
    "difftest.py"))


@pytest.fixture(autouse=True)
def _avoid():
    saved = set(dt.AVOID)
    yield
    dt.AVOID.clear()
    dt.AVOID.update(saved)


def test_random_programs_agree():
    stats = D.Stats()
    res = D.random_property(dt, 20, 1, stats)
    assert res is None, "%s\n%s" % (res[3], dt.render(res[0]))
    assert stats["programs"] >= 10    # (distinct programs)
    assert stats["differ"] == {}


def test_cancelled_future_as_documented():
    stats = D.Stats()
    res = D.cancel_property(dt, 20, 1, stats)
    assert res is None, "%s\n%s" % (res[2], res[0])
    assert stats["cancel_programs"] >= 10
    assert stats["cancel_tornado_bad"] == 0


def test_model_of_a_cancelled_future():
    # README, gen: a cancelled future throws CancelledError in; multi's
    # first failure in order is its result, later ones are logged unless
    # cancelled or quiet; an escaping CancelledError cancels the
    # coroutine; a BaseException is thrown in.
    p = {"kind": "gen", "last": ["bare", ["sub", "gen", ["soon_cancel"]]],
         "steps": [
             ["try", ["list", [["soonfail", "ValueError"],
                               ["fail", "KeyError"], ["cancelled", None],
                               ["soon_cancel"], ["done"]]]],
             ["try", ["multi", "dict", [["done"], ["fail", "KeyError"],
                                        ["fail", "ValueError"]],
                      "ValueError"]],
             ["try", ["cancelled", "m"]],
             ["boom", "child"],
             ["try", ["dict", [["done"], ["sub", "async", ["later"]]]]]]}
    src, numbered = D.render_cancel(p)
    events, logs = D.expected_trace(numbered)
    assert events == [
        [0, "exc", ["ValueError", "e1"]],
        [1, "exc", ["KeyError", "'e5'"]],
        [2, "cancelled"],
        [3, "boom", ["Boom", "b7"]],
        [4, "ok", ["D", ["k0", 8], ["k1", ["s", 9]]]],
        ["STATE", "cancelled"], ["RESULT", "end"], ["AFTER", [], []],
        ["DRAINED", [], []]]
    assert logs == ['["LOG", "tornado.application", "ERROR", "Multiple '
                    'exceptions in yield list", ["KeyError", "\'e2\'"]]']
    for impl in ("tcg", "tcg-asyncio", "installed"):
        assert D.split_trace(dt.run_source(impl, src)) == (events, logs), \
            impl
    # Tornado lets the BaseException escape its Runner: the coroutine
    # never finishes.
    got = D.split_trace(dt.run_source("tornado", src, hang=0.01))[0]
    assert [3, "boom", ["Boom", "b7"]] not in got


def test_a_planted_difference_is_found_and_shrunk(monkeypatch):
    # The property must be able to fail: here "tcg" loses the exceptions
    # its coroutines catch; hypothesis shrinks the counterexample and
    # difftest's minimiser takes it down to a coroutine that catches the
    # failure of one it calls.
    real = dt.run_source

    def run_source(impl, body, *args, **kw):
        trace = real(impl, body, *args, **kw)
        if impl == "tcg":
            trace = [e for e in trace if "exc" not in e]
        return trace
    monkeypatch.setattr(dt, "run_source", run_source)
    res = D.random_property(dt, 100, 3, D.Stats(), impls=("tornado", "tcg"),
                            shapes=["basic"], shrink_budget=60)
    assert res is not None
    prog, bad, traces, err = res
    assert bad == ["tcg"]
    assert "differ from Tornado" in err
    assert any("exc" in e for e in traces["tornado"])
    prog = D.minimise(dt, prog, bad, impls=("tornado", "tcg"))
    assert len(prog["coros"]) <= 2, dt.render(prog)
    assert sum(len(c["steps"]) for c in prog["coros"]) <= 2, dt.render(prog)
