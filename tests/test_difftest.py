"""A fixed, quick slice of the differential tester (tools/difftest.py).

Each case generates random coroutine programs from fixed seeds, runs them
on upstream Tornado, on tornado_cgen's own IOLoop and on tornado_cgen.gen
over asyncio's default loop, and asserts that the three traces agree.

Only program shapes that agree today are here.  Shapes with open
divergences run with those divergences' constructs left out
(``difftest.FOUND``, as ``--avoid-found`` does): ``cv`` (spawn-ctx),
``timeout`` (wt-abs-deadline), ``log`` and ``loop`` (task-keepalive,
runsync-base, base-child), ``all`` (all of them).  Known defects
(``difftest.KNOWN``) are never generated here.  The full tester:
``PYTHONPATH=python python tools/difftest.py --seed 0 --count 5000``.
"""
import importlib.util
import os

import pytest

tornado = pytest.importorskip("tornado", reason="upstream Tornado (the oracle) "
                              "is not installed")
if tornado.version_info < (6, 6):
    pytest.skip("the oracle semantics (cancellation) are Tornado 6.6's",
                allow_module_level=True)

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "tools", "difftest.py")
_spec = importlib.util.spec_from_file_location("difftest", _PATH)
difftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(difftest)

SEEDS = range(30)

AGREEING = ["basic", "kinds", "multi", "shared", "cancel", "waititer",
            "threads"]
AGREEING_AVOIDING_FOUND = ["cv", "timeout", "log", "loop", "all"]


@pytest.fixture
def avoid():
    saved = set(difftest.AVOID)
    yield difftest.AVOID
    difftest.AVOID.clear()
    difftest.AVOID.update(saved)


def _check(shape, avoid_names):
    bad = []
    for seed in SEEDS:
        prog = difftest.generate(seed, shape, avoid=avoid_names)
        traces = difftest.run_prog(prog)
        if difftest.diverges(traces):
            bad.append(seed)
    assert not bad, (
        "divergent seeds %s; see PYTHONPATH=python python tools/difftest.py "
        "--shape %s --show SEED%s" % (bad, shape,
                                      " --avoid-found" if avoid_names else ""))


@pytest.mark.parametrize("shape", AGREEING)
def test_shape_agrees(shape, avoid):
    avoid.clear()
    _check(shape, ())


@pytest.mark.parametrize("shape", AGREEING_AVOIDING_FOUND)
def test_shape_agrees_without_found_divergences(shape, avoid):
    avoid.clear()
    avoid.update(difftest.FOUND)
    _check(shape, tuple(difftest.FOUND))
