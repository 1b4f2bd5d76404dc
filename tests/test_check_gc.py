"""The check's gc section (python -m tornado_cgen check --only gc), run as
tests: long chains freed without a stack overflow (a regression: a
future chain of results overflowed the C stack before the deallocators
used the trashcan), cycles through each field of each C type collected,
and no cyclic garbage on a request-like path."""
import os

import pytest

from tornado_cgen.check import gc as gc_check
from tornado_cgen.check._report import Context


class Recorder(Context):
    def __init__(self):
        super().__init__("gc", out=open("/dev/null", "w"))


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="under ASan the check runs its gc section itself "
                    "(python -m tornado_cgen check: sanitizers)")
@pytest.mark.parametrize("name", sorted(gc_check.CHAINS))
def test_long_chain_is_freed(name):
    # The result chain, the one that overflowed, at the check's million
    # (200,000 do not overflow even asyncio's C Future, which has no
    # trashcan); the others at
    # 200,000 links.
    n = "1000000" if "result" in name else "200000"
    outcome, err = gc_check._child(gc_check.CHAINS[name], [n], 300)
    assert outcome == "freed", err


def test_cycles_through_every_field_are_collected():
    ctx = Recorder()
    gc_check.check_cycles(ctx)
    [fig] = ctx.figures
    assert fig.ok, fig.line()


def test_a_cycle_the_collector_cannot_see_fails_the_figure(monkeypatch):
    # The figure can fail: a builder whose object stays referenced from
    # outside (as a field the traverse function missed would) is reported.
    kept = []
    builders = gc_check._cycle_builders()
    name, build = next(iter(builders.items()))

    def leaky(s):
        obj = build(s)
        kept.append(obj)
        return obj

    monkeypatch.setattr(gc_check, "_cycle_builders", lambda: {name: leaky})
    ctx = Recorder()
    gc_check.check_cycles(ctx)
    [fig] = ctx.figures
    assert not fig.ok and name in fig.note


def test_no_cyclic_garbage_on_a_request_like_path():
    ctx = Recorder()
    gc_check.check_no_cyclic_garbage(ctx)
    assert ctx.figures and all(f.ok for f in ctx.figures), \
        [f.line() for f in ctx.figures]
