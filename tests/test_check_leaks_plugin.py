"""The per-test leak check's pytest plugin (tornado_cgen.check.
_leaks_plugin), through real pytest runs (pytester, in a subprocess: the
plugin freezes the collector).  On a release interpreter it reads blocks
and fds only, which is enough to see a leak of objects."""
import json
import os
import sys

import pytest

import tornado_cgen

SUITE = """
import os, warnings
import pytest

KEEP = []
SETUPS = []


@pytest.fixture(scope="module")
def once_per_module():
    SETUPS.append(1)
    yield


def test_keeps_an_object_a_run():
    KEEP.append(object())


def test_keeps_an_fd_a_run():
    KEEP.append(os.open(os.devnull, os.O_RDONLY))


def test_clean(once_per_module, tmp_path):
    # Wider fixtures stay up between the runs; tmp_path (which leaves the
    # session's tmp_path_factory a finalizer each time) is no leak.
    assert len(SETUPS) == 1
    (tmp_path / "f").write_text("x")


def test_registers_a_class_of_its_own():
    from tornado_cgen import gen

    class Mine:
        pass

    @gen.convert_yielded.register(Mine)
    def _(m):
        return gen.moment


def test_warns_and_has_subtests(subtests):
    warnings.warn("a warning %d" % id(object()))
    for i in range(3):
        with subtests.test(i=i):
            assert i < 3


RUNS = []


def test_fails_on_its_third_run():
    RUNS.append(1)
    assert len(RUNS) < 3


@pytest.mark.skip(reason="not run")
def test_skipped():
    pass
"""


@pytest.fixture
def run_suite(pytester, monkeypatch):
    pkg_parent = os.path.dirname(os.path.dirname(
        os.path.abspath(tornado_cgen.__file__)))
    rest = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", pkg_parent + (
        os.pathsep + rest if rest else ""))
    pytester.makepyfile(test_suite=SUITE)

    def run(*args):
        result = pytester.runpytest_subprocess(
            "-q", "-p", "no:cacheprovider",
            "-p", "tornado_cgen.check._leaks_plugin",
            "--refleak-json=leaks.json", *args)
        with open(pytester.path / "leaks.json") as f:
            data = json.load(f)
        return result, data, {r["nodeid"].split("::")[-1]: r
                              for r in data["results"]}
    return run


# sys.getallocatedblocks() counts pymalloc's blocks: with PYTHONMALLOC=malloc
# (the ASan run) it is always 0, and the blocks readings say nothing.
PYMALLOC = pytest.mark.skipif(
    os.environ.get("PYTHONMALLOC", "").startswith("malloc"),
    reason="the blocks readings need pymalloc (PYTHONMALLOC=malloc here)")


@PYMALLOC
@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11),
    reason="the check runs the plugin on CPython 3.11 (Debian's debug "
    "build); 3.10's and 3.12's allocators keep a block between runs of a "
    "clean test")
def test_leaks_found_and_only_they(run_suite):
    result, data, by_name = run_suite("--refleak=2:3")
    assert by_name["test_keeps_an_object_a_run"]["leaks"][-1] == "blocks"
    assert by_name["test_keeps_an_object_a_run"]["deltas"]["blocks"] == [
        1, 1, 1]
    assert "fds" in by_name["test_keeps_an_fd_a_run"]["leaks"]
    for name in ("test_clean", "test_registers_a_class_of_its_own",
                 "test_warns_and_has_subtests"):
        assert by_name[name]["status"] == "checked"
        assert by_name[name]["leaks"] == [], by_name[name]
    summary = data["summary"]
    assert summary["checked"] == 5
    assert sorted(n.split("::")[-1] for n in summary["leaking"]) == [
        "test_keeps_an_fd_a_run", "test_keeps_an_object_a_run"]
    assert by_name["test_skipped"]["status"] == "not repeated: skipped"
    # Only the last run's outcome is reported: the subtests and the
    # warning once, the test that breaks on a later run as failed.
    assert by_name["test_fails_on_its_third_run"]["status"] == (
        "unstable: failed on run 3")
    result.assert_outcomes(passed=5, failed=1, skipped=1, warnings=1)
    result.stdout.fnmatch_lines([
        "LEAK test_suite.py::test_keeps_an_object_a_run: *blocks [[]1, 1, 1]",
        "*7 tests: 5 checked*2 leaking, 1 unstable*",
        "1 failed, 5 passed, 1 skipped, 1 warning, 3 subtests passed*"])


@PYMALLOC
def test_budget_and_blocks_only(run_suite):
    _, data, by_name = run_suite("--refleak=1:2", "--refleak-budget=0",
                                 "-k", "object")
    assert by_name["test_keeps_an_object_a_run"]["status"] == (
        "not repeated: slow")
    _, data, by_name = run_suite("--refleak=1:2",
                                 "--refleak-blocks-only=object", "-k",
                                 "object")
    r = by_name["test_keeps_an_object_a_run"]
    assert r["refs_not_judged"] and r["leaks"] == ["blocks"]


def test_bad_spec_is_a_usage_error(pytester):
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest_subprocess(
        "-p", "tornado_cgen.check._leaks_plugin", "--refleak=3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


# ---- the figure (tornado_cgen.check.suite_leaks) ---------------------------

class FakeContext:
    soak = False

    def __init__(self):
        self.figures = []

    def figure(self, name, value, want="", ok=True, note=""):
        self.figures.append((name, value, want, ok, note))

    def skip(self, name, why):
        self.figure(name, "skipped: " + why)

    def log(self, text):
        pass


_ABI = "%d%d" % sys.version_info[:2]


def _data(leaks=(), n=900, core="/x/_core.cpython-%sd-x86_64-linux-gnu.so"
          % _ABI, failed=()):
    results = [{"nodeid": "tests/test_a.py::test_%d" % i,
                "status": "checked", "leaks": [],
                "deltas": {"refs": [0, 0, 0], "blocks": [0, 0, 0],
                           "fds": [0, 0, 0]}} for i in range(n)]
    for i in leaks:
        results[i]["leaks"] = ["refs"]
        results[i]["deltas"]["refs"] = [3, 3, 3]
    summary = {"spec": "3:3", "checked": n, "refs_not_judged": 0,
               "leaking": [results[i]["nodeid"] for i in leaks],
               "slow": [], "unstable": {}, "core": core,
               "not_passed": {f: "not repeated: failed" for f in failed}}
    return {"summary": summary, "results": results}


def test_figure_fails_on_a_leak_a_failure_or_too_few_tests():
    from tornado_cgen.check import suite_leaks as sl

    def figure(data, rc=0):
        ctx = FakeContext()
        sl._report(ctx, "leaks", sl.FAST, False, data, rc, 1.0, "", None)
        (name, value, want, ok, note), = ctx.figures
        return value, ok, note

    value, ok, _ = figure(_data())
    assert ok and value == "900 tests, 0 leaking"
    value, ok, note = figure(_data(leaks=[7]), rc=0)
    assert not ok and value == "900 tests, 1 leaking"
    assert "LEAK tests/test_a.py::test_7: refs [3, 3, 3]" in note
    assert not figure(_data(failed=["tests/test_b.py::t"]), rc=1)[1]
    assert not figure(_data(n=10))[1]
    # A release build of ours would load into the debug interpreter too.
    assert not figure(_data(core="/x/_core.cpython-%s-x86_64-linux-gnu.so"
                            % _ABI))[1]


def test_c_facing_files(tmp_path):
    from tornado_cgen.check import suite_leaks as sl
    (tmp_path / "tests").mkdir()
    for name in ("test_future.py", "test_loop_stdlib.py", "test_bench.py",
                 "conftest.py", "test_check_leaks_plugin.py"):
        (tmp_path / "tests" / name).write_text("")
    assert sl.c_facing_files(str(tmp_path), soak=False) == [
        os.path.join("tests", "test_future.py")]
    assert sl.c_facing_files(str(tmp_path), soak=True) == [
        os.path.join("tests", "test_future.py"),
        os.path.join("tests", "test_loop_stdlib.py")]
