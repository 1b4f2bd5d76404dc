"""The worker processes of ``python -m tornado_cgen check``'s threads and
faults sections: each measurement runs in a fresh interpreter, in each
mode, and a worker that fails or hangs is reported with the command that
reproduces it, never taken for a result."""
import os
import subprocess

import pytest

import tornado_cgen
from tornado_cgen.check import _child, _transport, faults
from tornado_cgen.check._report import Context, tornado_available

MODES = ["standalone"] + (["installed"] if tornado_available() else [])
ENV = {"PYTHONPATH": os.path.dirname(os.path.dirname(tornado_cgen.__file__))}


def work(section, name, mode, args, timeout=120):
    return _child.run_worker(section, name, mode, args, timeout=timeout,
                             env=ENV)


@pytest.mark.parametrize("mode", MODES)
def test_threads_stress_worker(mode):
    res, bad = work("threads", "stress", mode,
                    {"api": "add_callback", "nthreads": 2, "per": 1000})
    assert bad is None, bad and bad.note()
    assert res["got"] == res["total"] == 2000
    assert res["in_order"] == 2 and res["on_loop_thread"] == 2


@pytest.mark.parametrize("mode", MODES)
def test_faults_raising_worker_counts_each_record(mode):
    res, bad = work("faults", "raising", mode, {"n": 50})
    assert bad is None, bad and bad.note()
    for path in ("add_callback", "call_later", "call_soon"):
        assert res[path] == {"records": 50, "wrong_logger": 0,
                             "after": ["callback", "timer"]}
    assert res["other"] == []


def test_failing_worker_is_an_outcome_with_its_command():
    res, bad = work("threads", "no_such_worker", "standalone", {})
    assert res is None
    assert bad.what == "exit status 1"
    assert "--worker no_such_worker" in bad.note()
    assert "KeyError" in bad.detail


def test_hung_worker_is_killed():
    res, bad = work("threads", "idle", "standalone",
                    {"api": "add_callback", "rounds": 10000, "gap": 0.01},
                    timeout=2)
    assert res is None and bad.what.startswith("hung")


def test_failed_worker_is_a_failed_figure():
    lines = []

    class Out:
        def write(self, text):
            lines.append(text)

        def flush(self):
            pass

    ctx = Context("threads", out=Out())
    f = _child.failed(ctx, "x", _child.Outcome("died of signal 11", "",
                                                "python -m ..."))
    assert not f.ok and lines and lines[0].startswith("FAIL")


@pytest.mark.parametrize("mode", MODES)
def test_exit_program_runs_cleanly(mode):
    cmd = faults._exit_command("suspended coroutines", mode, True, False)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120, env=dict(os.environ, **ENV))
    assert (r.returncode, r.stderr) == (0, "")


def test_transport_fds_figure_sees_a_leak(tmp_path):
    ctx = Context("faults", out=open(tmp_path / "out", "w"))
    _transport.check_fds(ctx, n=40)
    leaky = _transport.FDS.replace(
        "        await client.lost\n",
        "        LEAK.append(os.dup(0))\n        await client.lost\n").replace(
        "N = int(sys.argv[1])\n", "N = int(sys.argv[1])\nLEAK = []\n")
    assert leaky.count("LEAK") == 2
    _transport.check_fds(ctx, n=40, program=leaky)
    ctx.out.close()
    ok, leaked = ctx.figures
    assert ok.ok and ok.value == "0", ok.line()
    assert not leaked.ok and leaked.value == "40", leaked.line()


def test_transport_faults_figures(tmp_path):
    ctx = Context("faults", out=open(tmp_path / "out", "w"))
    _transport.check_faults(ctx, n=2)
    ctx.out.close()
    assert [f.ok for f in ctx.figures] == [True, True], [
        f.line() for f in ctx.figures]
    assert all(f.value.startswith("exit 0, 10 handler calls, 12 "
                                  "connections lost") for f in ctx.figures)
