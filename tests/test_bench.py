"""The benchmark harness works: every case runs and yields a number.

No test here asserts a timing; the numbers are only checked to be positive.
Cases run in-process with tiny counts; one test runs the real command line
end to end (subprocesses, JSON).
"""
import asyncio
import importlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from tornado_cgen.bench import cases, cli, counts, harness, httpcase, impls
from tornado_cgen.bench import manyconn, report, worker
from tornado_cgen.bench.common import NotAvailable

TINY = {"1": 50, "2": 100, "3": 20, "4": 20, "5": 50, "5d": 50, "6": 50,
        "7": 200, "8": 200, "9": 20, "10": 20, "10s": 20, "12": 200}

INSTALLED = [name for name in impls.IMPLS if impls.installed(name)[0]]


def test_every_case_has_a_tiny_size():
    assert set(TINY) | set(impls.HTTP_CASES) == set(cases.BY_ID)


@pytest.mark.parametrize("impl", INSTALLED)
@pytest.mark.parametrize("case_id", list(TINY))
def test_case_runs_and_gives_a_number(impl, case_id):
    allowed = os.sched_getaffinity(0)
    res = worker.run_one(impl, case_id, TINY[case_id], warmup=False)
    assert os.sched_getaffinity(0) == allowed       # case 12 unpins again
    assert res["status"] in ("ok", "n/a"), res.get("error")
    if res["status"] == "n/a":
        # Only tornado_cgen may lack a feature (while it is being written),
        # Tornado has no form of the asyncio-only cases, and either must say
        # why.
        if case_id == "12" and _no_client_program():
            pass                        # no C compiler for its client
        elif case_id in impls.ASYNCIO_ONLY_CASES and impl != "tcg":
            assert impl in ("tornado", impls.INSTALL), res
        else:
            assert impl == "tcg", res
        assert res["reason"]
        return
    assert impl not in ("tornado", impls.INSTALL) or \
        case_id not in impls.ASYNCIO_ONLY_CASES
    assert res["ops"] > 0
    assert res["ns"] > 0
    assert res["ns_per_op"] > 0
    assert res["variant"]
    if case_id == "12":
        assert res["ops"] == TINY[case_id]
        assert res["extra"]["connections"] == manyconn.CONNECTIONS
        assert res["extra"]["rps"] > 0 and res["extra"]["pinning"]
        assert "server_cpu_ns_per_op" in res["extra"]


def _no_client_program():
    try:
        manyconn.client_binary()
    except NotAvailable:
        return True
    return False


def test_manyconn_client_fails_loudly():
    # The clients' program, pointed at a port nobody listens on, exits
    # non-zero and says why (the case then reports an error, never a
    # number).
    import socket
    try:
        exe = manyconn.client_binary()
    except NotAvailable as e:
        assert "compiler" in str(e) or "failed" in str(e)
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]           # bound, not listening
        proc = subprocess.run([exe, str(port), "3", "10", "-1"],
                              capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "connect" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
@pytest.mark.parametrize("impl", [i for i in INSTALLED
                                  if i not in ("asyncio", "tcg")])
@pytest.mark.parametrize("case_id", impls.HTTP_CASES)
def test_http_case_with_wrk(impl, case_id):
    # The worker checked one response's body before wrk started.
    allowed = os.sched_getaffinity(0)
    res = worker.run_one(impl, case_id, 1)
    assert os.sched_getaffinity(0) == allowed       # unpinned again
    if "tornado" not in INSTALLED:
        assert res["status"] == "n/a" and res["reason"]
        return
    assert res["status"] == "ok", res.get("error")
    assert res["ns_per_op"] > 0 and res["extra"]["rps"] > 0
    assert res["extra"]["path"] == httpcase.PATHS[case_id]
    assert res["extra"]["pinning"]
    assert ("install()" in res["variant"]) == (impl == impls.INSTALL)


@pytest.mark.parametrize("impl", ["asyncio", "tcg"])
@pytest.mark.parametrize("case_id", impls.HTTP_CASES)
def test_http_asyncio_and_tcg_are_na(impl, case_id):
    res = worker.run_one(impl, case_id, 1)
    assert res["status"] == "n/a" and res["reason"]


def test_http_app_answers_both_handlers():
    # The same application the worker serves, driven by Tornado's own
    # client on Tornado's loop, then under install().
    pytest.importorskip("tornado")
    import tornado_cgen

    def fetch_both():
        from tornado.httpclient import AsyncHTTPClient
        from tornado.httpserver import HTTPServer
        from tornado.ioloop import IOLoop
        from tornado.netutil import bind_sockets

        async def main():
            sockets = bind_sockets(0, "127.0.0.1")
            server = HTTPServer(httpcase.make_app())
            server.add_sockets(sockets)
            port = sockets[0].getsockname()[1]
            client = AsyncHTTPClient()
            bodies = []
            for path in httpcase.PATHS.values():
                r = await client.fetch("http://127.0.0.1:%d%s" % (port, path))
                bodies.append(r.body)
            client.close()
            server.stop()
            return bodies

        io = IOLoop()
        try:
            return io.run_sync(main)
        finally:
            io.close()

    assert fetch_both() == [httpcase.BODY] * 2
    tornado_cgen.install()
    try:
        # install()'s policy has no loop set for this thread yet: say so,
        # or IOLoop() asking get_event_loop() warns on 3.12+.
        asyncio.set_event_loop(None)
        assert fetch_both() == [httpcase.BODY] * 2
    finally:
        tornado_cgen.uninstall()


def test_parse_wrk_prefers_the_rate():
    # "in 1.01s" is rounded to 10 ms; Requests/sec is not.
    text = ("  2000 requests in 1.01s, 470.00KB read\n"
            "Requests/sec:   1984.13\n")
    assert httpcase.parse_wrk(text) == (2000, pytest.approx(2000 / 1984.13
                                                            * 1e9))
    assert httpcase.parse_wrk("  2000 requests in 1.01s, 470KB read\n") == \
        (2000, pytest.approx(1.01e9))


def test_cpus_for_pinning():
    pin = httpcase.cpus()
    if len(os.sched_getaffinity(0)) < 2 or shutil.which("taskset") is None:
        assert pin is None
    else:
        server, client = pin
        assert server != client
        assert {server, client} <= os.sched_getaffinity(0)


# ------------------------------------------------------- tornado+install

def _tornado_is_pristine():
    import asyncio
    import tornado.gen
    import tornado_cgen
    from tornado_cgen import loop as tcg_loop
    return (not tornado_cgen.installed() and
            tornado.gen.coroutine.__module__ == "tornado.gen" and
            not isinstance(asyncio.get_event_loop_policy(),
                           tcg_loop.EventLoopPolicy))


@pytest.mark.skipif(impls.INSTALL not in INSTALLED,
                    reason="tornado+install cannot run here")
def test_install_does_not_leak_out_of_run_one():
    assert _tornado_is_pristine()
    res = worker.run_one(impls.INSTALL, "6", 50, warmup=False)
    assert res["status"] == "ok", res.get("error")
    assert "install()" in res["variant"]
    assert _tornado_is_pristine()
    res = worker.run_one("tornado", "6", 50, warmup=False)
    assert res["status"] == "ok" and "install()" not in res["variant"]


@pytest.mark.skipif(impls.INSTALL not in INSTALLED,
                    reason="tornado+install cannot run here")
def test_other_impls_refuse_to_run_under_install():
    import tornado_cgen
    tornado_cgen.install()
    asyncio.set_event_loop(None)   # as above: no implicit loop, no warning
    try:
        for impl in ("tornado", "tcg", "asyncio"):
            res = worker.run_one(impl, "1", 10, warmup=False)
            assert res["status"] == "n/a" and "install()" in res["reason"]
        # Already installed: run_one leaves it so.
        res = worker.run_one(impls.INSTALL, "1", 10, warmup=False)
        assert res["status"] == "ok" and tornado_cgen.installed()
    finally:
        tornado_cgen.uninstall()


@pytest.mark.skipif(impls.INSTALL not in INSTALLED,
                    reason="tornado+install cannot run here")
def test_flavour_checks_its_setup():
    # A tornado+install run without install() fails loudly, never
    # measures plain Tornado under the wrong name.
    run, variant = impls.resolve(impls.INSTALL, "1")
    with pytest.raises(AssertionError, match="install"):
        run(10)


@pytest.mark.skipif(impls.INSTALL not in INSTALLED,
                    reason="tornado+install cannot run here")
def test_worker_process_installs_first():
    # In a worker process install() comes before Tornado is imported, so
    # the cases' coroutines (decorated when they run) are the C Runner's.
    code = ("import sys\n"
            "from tornado_cgen.bench import impls\n"
            "assert 'tornado' not in sys.modules\n"
            "impls.prepare_process(%r)\n"
            "import tornado.gen, tornado_cgen\n"
            "@tornado.gen.coroutine\n"
            "def f():\n"
            "    pass\n"
            "print(tornado_cgen.installed(), type(f).__module__)\n")
    for impl, expect in ((impls.INSTALL, "True tornado_cgen._core"),
                         ("tornado", "False builtins")):
        proc = subprocess.run([sys.executable, "-c", code % impl],
                              capture_output=True, text=True,
                              env=harness.worker_env(), timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == expect.split(), (impl, proc.stdout)
    res = harness.run_worker(impls.INSTALL, "1", 100)
    assert res["status"] == "ok" and "install()" in res["variant"]


def test_parse_wrk():
    text = ("Running 1s test @ http://127.0.0.1:1/\n"
            "  1 threads and 10 connections\n"
            "  2345 requests in 1.01s, 470.00KB read\n"
            "Requests/sec:   2321.78\n")
    assert httpcase.parse_wrk(text) == (2345, pytest.approx(1.01e9))
    with pytest.raises(ValueError):
        httpcase.parse_wrk("nothing here")


# ---------------------------------------------------------------- n/a path

def test_not_available_becomes_na(monkeypatch):
    def resolve(impl, case_id):
        raise NotAvailable("feature X is not there yet")
    monkeypatch.setattr(impls, "resolve", resolve)
    assert worker.run_one("tcg", "1", 10) == {
        "status": "n/a", "reason": "feature X is not there yet"}


def test_failure_is_an_error_not_na(monkeypatch):
    def run(n):
        raise RuntimeError("boom")
    monkeypatch.setattr(impls, "resolve", lambda impl, cid: (run, "v"))
    res = worker.run_one("tcg", "1", 10)
    assert res["status"] == "error" and "boom" in res["error"]


def test_missing_implementation_is_na(monkeypatch):
    real_import = importlib.import_module

    def fake_import(name, *a, **k):
        if name == "uvloop":
            raise ImportError("No module named 'uvloop'")
        return real_import(name, *a, **k)
    monkeypatch.setattr(importlib, "import_module", fake_import)
    ok, why = impls.installed("uvloop")
    assert not ok and "not installed" in why
    res = worker.run_one("uvloop", "1", 10)
    assert res["status"] == "n/a" and "not installed" in res["reason"]


def test_tcg_features_are_detected_at_run_time():
    # Whatever has landed: each tcg case either runs or says what is missing.
    for cid in TINY:
        try:
            run, variant = impls.resolve("tcg", cid)
        except NotAvailable as e:
            assert str(e)
        else:
            assert callable(run) and variant


# ------------------------------------------------------------ option parsing

def test_options_defaults():
    a = cli.parse_args([])
    assert a.case_ids == [c.id for c in cases.CASES]
    assert a.rounds == 5 and not a.quick and a.json is None
    assert a.impl_names is None
    assert a.count_case_ids == [c.id for c in cases.CASES if c.callgrind_sizes]
    assert {"1", "2", "3", "4", "5", "5d", "6", "7", "8"} <= set(a.count_case_ids)


def test_companion_cases():
    assert cases.select("5") == ["5", "5d"]
    assert cases.select("11") == ["11", "11c"]
    assert cases.select("11c") == ["11c"]
    assert cases.select("1-8") == ["1", "2", "3", "4", "5", "5d", "6", "7",
                                   "8"]
    # 10s comes with 10, also as the end of a range, and alone on its own.
    assert cases.select("10") == ["10", "10s"]
    assert cases.select("10s") == ["10s"]
    assert cases.select("9-10,2") == ["2", "9", "10", "10s"]
    assert cases.select("10s,12") == ["10s", "12"]
    assert cases.select("11-12") == ["11", "11c", "12"]
    assert cases.select("1-10")[-3:] == ["9", "10", "10s"]
    assert "10s" in cases.DEFAULT_CALLGRIND_CASES
    assert "12" not in cases.DEFAULT_CALLGRIND_CASES
    with pytest.raises(ValueError):
        cases.select("1-99")


def test_options_cases_impl_quick_json():
    a = cli.parse_args(["--cases", "1,5,10", "--impl", "tcg, asyncio",
                        "--quick", "--json"])
    assert a.case_ids == ["1", "5", "5d", "10", "10s"]
    assert a.impl_names == ["tcg", "asyncio"]
    assert a.rounds == 1 and a.json == "-"
    assert a.count_case_ids == ["1", "5", "5d", "10", "10s"]
    a = cli.parse_args(["--rounds", "7", "--json", "out.json",
                        "--plot", "x.png", "--callgrind"])
    assert a.rounds == 7 and a.json == "out.json" and a.plot == "x.png"
    assert a.callgrind


@pytest.mark.parametrize("argv", [["--cases", "99"], ["--rounds", "0"],
                                  ["--no-timing"], ["--bogus"]])
def test_options_errors(argv, capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(argv)


def test_unknown_impl_is_rejected():
    with pytest.raises(ValueError):
        harness.available_impls(["nodejs"])


# ------------------------------------------------------- verdicts and JSON

def _ok(ns):
    return {"status": "ok", "best_ns_per_op": ns, "median_ns_per_op": ns,
            "runs_ns_per_op": [ns], "n": 1, "ops": 1, "variant": "v"}


def test_verdicts():
    case1 = cases.BY_ID["1"]      # <= 0.6x asyncio; >= 40x tornado
    fast = {"tcg": _ok(10), "asyncio": _ok(30), "tornado": _ok(600),
            "uvloop": _ok(30)}
    targets, verdict = report.evaluate(case1, fast)
    assert verdict == "PASS" and all(t["met"] for t in targets)
    slow = dict(fast, tcg=_ok(25))
    assert report.evaluate(case1, slow)[1] == "MISS"
    na = dict(fast, tcg={"status": "n/a", "reason": "later"})
    targets, verdict = report.evaluate(case1, na)
    assert verdict == "n/a" and all(t["met"] is None for t in targets)
    assert report.speedups(fast)["tornado"] == pytest.approx(60)
    assert report.speedups(na)["tornado"] is None


def test_install_share_target():
    case1 = cases.BY_ID["1"]
    res = {"tcg": _ok(10), "asyncio": _ok(30), "tornado": _ok(600),
           "uvloop": _ok(30), impls.INSTALL: _ok(12)}
    (share,), verdict = report.evaluate(case1, res, impls.INSTALL)
    # speed-ups 50x and 60x: 83% of standalone's
    assert share["kind"] == "share" and share["reference"] == "tcg"
    assert share["measured"] == pytest.approx(50 / 60)
    assert share["met"] and verdict == "PASS"
    res[impls.INSTALL] = _ok(13)      # 46x: 77%
    assert report.evaluate(case1, res, impls.INSTALL)[1] == "MISS"
    # The main verdict is tcg's and ignores tornado+install.
    assert report.evaluate(case1, res)[1] == "PASS"
    del res["tcg"]
    targets, verdict = report.evaluate(case1, res, impls.INSTALL)
    assert verdict == "n/a" and "tornado_cgen" in targets[0][
        "why_not_measured"]
    for cid in ("1", "2", "3", "4", "5", "5d", "6", "7", "8"):
        assert [t.subject for t in cases.BY_ID[cid].targets].count(
            impls.INSTALL) == 1


def test_http_targets_use_the_median():
    case11 = cases.BY_ID["11c"]
    def runs(*ns):
        r = _ok(min(ns))
        r["median_ns_per_op"] = sorted(ns)[len(ns) // 2]
        r["runs_ns_per_op"] = list(ns)
        return r
    res = {"tornado": runs(300, 310, 320), "uvloop": runs(270, 280, 290),
           impls.INSTALL: runs(150, 200, 400),
           "tcg": {"status": "n/a", "reason": "no HTTP server"}}
    targets, verdict = report.evaluate(case11, res)
    assert [t["subject"] for t in targets] == [impls.INSTALL] * 2
    assert targets[0]["measured"] == pytest.approx(310 / 200)
    assert targets[1]["measured"] == pytest.approx(280 / 200)
    assert verdict == "PASS"


def test_table_and_plot(tmp_path):
    doc = report.build(
        {"date": "d", "machine": {"cpu": "c", "cores": 2, "kernel": "k",
                                  "arch": "a"},
         "python": {"version": "3", "implementation": "CPython",
                    "build": "release", "compiler": "gcc", "executable": "p"},
         "versions": {"tornado_cgen": "0", "tornado": "6", "uvloop": "0"}},
        {"cases": ["1", "9"], "impls": impls.IMPLS, "rounds": 1,
         "quick": True},
        {},
        {"1": {"tcg": {"status": "n/a", "reason": "Runner not there yet"},
               "tornado": _ok(600), "asyncio": _ok(30), "uvloop": _ok(31)},
         "9": {"tcg": _ok(11000), "tornado": _ok(19000),
               "asyncio": _ok(18000), "uvloop": _ok(13000),
               "floor": _ok(9600)}})
    text = report.format_table(doc)
    assert "Runner not there yet" in text and "n/a" in text
    assert "PASS" in text                       # 11000 <= 1.2 * 9600
    assert impls.label(impls.INSTALL) in text
    json.dumps(doc)
    pytest.importorskip("matplotlib")
    from tornado_cgen.bench import plot
    out = tmp_path / "bench.png"
    plot.plot(doc, str(out))
    assert out.stat().st_size > 0


def _info():
    return {"date": "d", "machine": {"cpu": "c", "cores": 2, "kernel": "k",
                                     "arch": "a"},
            "python": {"version": "3", "implementation": "CPython",
                       "build": "release", "compiler": "gcc",
                       "executable": "p"},
            "versions": {"tornado_cgen": "0", "tornado": "6", "uvloop": "0"}}


def test_install_and_http_tables():
    def http(ns, runs):
        r = _ok(min(runs))
        r["median_ns_per_op"] = ns
        r["runs_ns_per_op"] = runs
        r["extra"] = {"rps": 1e9 / ns, "pinning": "server on CPU 0, wrk on "
                      "CPU 1"}
        return r
    na = {"status": "n/a", "reason": "no HTTP server of its own"}
    doc = report.build(
        _info(), {"cases": ["1", "3", "11", "11c"], "impls": impls.IMPLS,
                  "rounds": 3, "quick": False},
        {},
        {"1": {"tcg": _ok(40), "tornado": _ok(2000), "asyncio": _ok(70),
               "uvloop": _ok(70), impls.INSTALL: _ok(45)},
         "3": {"tcg": _ok(1000), "tornado": _ok(20000), "asyncio": _ok(9000),
               "uvloop": _ok(4000), impls.INSTALL: _ok(2000)},
         "11": {"tcg": na, "asyncio": na,
                "tornado": http(200000, [210000, 200000, 190000]),
                "uvloop": http(180000, [180000, 175000, 185000]),
                impls.INSTALL: http(125000, [125000, 120000, 130000])},
         "11c": {"tcg": na, "asyncio": na,
                 "tornado": http(250000, [250000] * 3),
                 "uvloop": http(220000, [220000] * 3),
                 impls.INSTALL: http(200000, [200000] * 3)}})
    by_id = {c["id"]: c for c in doc["cases"]}
    assert by_id["1"]["verdicts"] == {"tcg": "PASS", impls.INSTALL: "PASS"}
    assert by_id["3"]["verdicts"][impls.INSTALL] == "MISS"     # 50%
    assert by_id["11"]["verdict"] == "PASS"         # 1.6x and 1.44x
    assert by_id["11c"]["verdict"] == "MISS"        # 1.25x
    assert by_id["11"]["speedup_of_tornado_install"]["uvloop"] == \
        pytest.approx(1.44)
    text = report.format_table(doc)
    assert "Row T" in text and "89%" in text and "50%" in text
    assert "Case 11" in text and "5,000" in text      # 1e9 / 200000 req/s
    assert "server on CPU 0, wrk on CPU 1" in text
    assert "median for cases 11, 11c" in text
    json.dumps(doc)


def test_plot_without_matplotlib(monkeypatch, tmp_path):
    from tornado_cgen.bench import plot
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(plot.PlotUnavailable, match="pip install matplotlib"):
        plot.plot({"cases": []}, str(tmp_path / "x.png"))


def test_count_parsers(tmp_path):
    cg = tmp_path / "cg"
    cg.write_text("events: Ir\nfn=main\n1 5\nsummary: 123456\ntotals: 123456\n")
    assert counts.callgrind_total(str(cg)) == 123456
    st = tmp_path / "st"
    st.write_text(
        "% time     seconds  usecs/call     calls    errors syscall\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        " 60.00    0.000600           2       300           epoll_wait\n"
        "------ ----------- ----------- --------- --------- ----------------\n"
        "100.00    0.001000           2       500        12 total\n")
    assert counts.strace_total(str(st)) == 500


def test_command_line_json_end_to_end():
    env = harness.worker_env()
    proc = subprocess.run(
        [sys.executable, "-m", "tornado_cgen", "bench", "--quick",
         "--cases", "1", "--impl", "asyncio,tcg", "--json"],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    for key in ("date", "machine", "python", "versions", "settings",
                "implementations", "cases", "schema"):
        assert key in doc
    assert doc["settings"]["impls"] == ["asyncio", "tcg"]
    (case,) = doc["cases"]
    assert case["id"] == "1" and case["verdict"] in ("PASS", "MISS", "n/a")
    a = case["results"]["asyncio"]
    assert a["status"] == "ok" and a["best_ns_per_op"] > 0
    assert a["median_ns_per_op"] > 0 and len(a["runs_ns_per_op"]) == 1
    assert case["results"]["tcg"]["status"] in ("ok", "n/a")
    assert set(case["speedup_of_tcg"]) == {"tornado", "asyncio", "uvloop"}
    assert "ns per" in case["unit"]
    assert "tornado-cgen bench" in proc.stderr     # the table went to stderr


def test_python_m_tornado_cgen_help():
    proc = subprocess.run([sys.executable, "-m", "tornado_cgen", "--help"],
                          capture_output=True, text=True,
                          env=harness.worker_env(), timeout=60)
    assert proc.returncode == 0 and "bench" in proc.stdout


def test_worker_env_points_at_this_package():
    assert harness.PACKAGE_ROOT in harness.worker_env()["PYTHONPATH"].split(
        os.pathsep)


def test_gc_off_option_runs():
    a = cli.parse_args(["--gc-off"])
    assert a.gc_off
    res = worker.run_one("asyncio", "6", 50, warmup=False, gc_off=True)
    assert res["status"] == "ok" and res["ns_per_op"] > 0
    import gc
    assert gc.isenabled()


def test_floor_probe_runs_or_says_why():
    from tornado_cgen.bench import floor
    for cid in floor.CASES:
        res = floor.run_once(cid, 20)
        assert res["status"] in ("ok", "n/a"), res
        if res["status"] == "ok":
            assert res["ns_per_op"] > 0 and res["ops"] == 20
        else:
            assert res["reason"]


@pytest.mark.skipif(shutil.which("strace") is None,
                    reason="strace is not installed")
def test_syscall_count_runs():
    res = counts.measure("strace", "asyncio", "6", quick=True)
    assert res["status"] == "ok", res
    assert res["ops"][1] > res["ops"][0] and res["per_op"] >= 0


def test_a_failed_later_round_is_flagged():
    ok = _ok(100)
    ok["later_error"] = {"status": "error", "error": "Traceback\nBoom: x"}
    doc = report.build(
        {"date": "d", "machine": {"cpu": "c", "cores": 2, "kernel": "k",
                                  "arch": "a"},
         "python": {"version": "3", "implementation": "CPython",
                    "build": "release", "compiler": "gcc", "executable": "p"},
         "versions": {"tornado_cgen": "0", "tornado": "6", "uvloop": "0"}},
        {"cases": ["6"], "impls": ["tcg", "uvloop"], "rounds": 2,
         "quick": False}, {}, {"6": {"tcg": ok, "uvloop": _ok(300)}})
    text = report.format_table(doc)
    assert "100!" in text and "Boom: x" in text


def test_manyconn_table_uses_the_medians():
    def runs(*ns):
        r = _ok(min(ns))
        r["median_ns_per_op"] = sorted(ns)[len(ns) // 2]
        r["runs_ns_per_op"] = list(ns)
        r["extra"] = {"pinning": "server on CPU 0, clients on CPU 1"}
        r["runs_extra"] = [{"server_cpu_ns_per_op": v / 2} for v in ns]
        return r
    na = {"status": "n/a", "reason": "asyncio code with no Tornado form"}
    doc = report.build(
        _info(), {"cases": ["12"], "impls": impls.IMPLS, "rounds": 3,
                  "quick": False}, {},
        {"12": {"tcg": runs(5000, 4000, 90000), "tornado": na,
                impls.INSTALL: na, "asyncio": runs(10000, 9000, 11000),
                "uvloop": runs(6000, 6500, 7000)}})
    (case,) = doc["cases"]
    assert case["stat"] == "median"
    # The median (5,000 ns), not the best (4,000): 6,500 / 5,000.
    assert case["targets"][0]["measured"] == pytest.approx(1.3)
    assert case["verdict"] == "PASS"
    text = report.format_table(doc)
    assert "median for case 12" in text
    assert "Case 12" in text and "200,000" in text     # 1e9 / 5000 per s
    assert "2,500" in text                   # the median server CPU figure
    assert "server on CPU 0, clients on CPU 1" in text
    assert "Case 11" not in text and "Row T" not in text
