"""A fixed, quick slice of the transport's differential tester
(tools/difftest_transport.py): random programs of transport operations on
asyncio's loop and on ours, their records compared.  The long runs are
``PYTHONPATH=python python tools/difftest_transport.py --programs 2500``.
"""
import importlib.util
import os
import random

import pytest

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "tools", "difftest_transport.py")
_spec = importlib.util.spec_from_file_location("difftest_transport", _PATH)
difftest_transport = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(difftest_transport)

BATCHES = 2
PER_BATCH = 30


@pytest.mark.parametrize("batch", range(BATCHES))
def test_random_transport_programs(batch):
    differing = []
    compared = 0
    for n in range(batch * PER_BATCH, (batch + 1) * PER_BATCH):
        prog = difftest_transport.gen_program(random.Random("pytest-%d" % n))
        # judge() runs a program again before it calls it different or
        # timing (asyncio's loop not repeating itself): see its docstring.
        verdict, want, got = difftest_transport.judge(prog)
        if verdict == "timing":
            continue
        compared += 1
        if verdict == "differs":
            differing.append((n, prog, want, got))
    assert not differing, differing[0]
    assert compared >= PER_BATCH // 2     # most programs are repeatable
