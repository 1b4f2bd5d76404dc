"""The per-test leak check: the C-facing part of the test suite on the
debug interpreter, each test run again and again in the manner of
CPython's ``regrtest -R 3:3`` (``_leaks_plugin``), a test leaking when its
references, allocated blocks or open fds grew in every measured run.

Called by the ``refleak`` section (``run_suite_leaks``), or on its own:

    PYTHONPATH=DEBUG_BUILD:SITE_PACKAGES python3.11-dbg \\
        -m tornado_cgen.check.suite_leaks [--soak]

(``TCG_CHECK_TREE``: the checkout whose tests run; ``TCG_CHECK_LEAKS_JSON``:
a file to keep every test's readings in.)

The fast set: ``-R 3:3`` over the C-facing files but CPython's asyncio
suites, a test whose first run takes longer than half a second (the
programs run in a fresh interpreter, mostly, whose references are not this
process's) run once.  The soak: ``-R 3:3`` over every C-facing file, every
test repeated.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from ._report import count, section_main

#: Test files that are not C-facing, and why they are left out.
LEFT_OUT = {
    "test_pytest_plugin.py": "runs pytest inside pytest (pytester): a "
    "repeated test measures pytest's own sessions, not our C code",
    "test_bench.py": "the benchmark drivers, mostly in subprocesses",
    "test_difftest.py": "the differential tester's driver; its programs "
    "run in helper processes (the differential section runs it)",
    "test_layering.py": "reads the package's Python sources; imports no C",
    "test_check_leaks_plugin.py": "tests this check's plugin, through "
    "pytest sessions in subprocesses (pytester)",
    "test_check_workers.py": "the threads/faults sections' workers, each "
    "in a fresh interpreter",
    "test_check_load.py": "wrk against servers in other processes",
    "test_typing.py": "mypy and stubtest in other processes, over the "
    "stubs",
    "test_packaging.py": "the version and the shipped files; the version "
    "command in fresh interpreters",
}

#: CPython's asyncio suites run on our loop, and the transport's
#: record-against-record scenarios on both loops: C-facing, but most of the
#: time of a run, so in the soak only.  (The transport's C paths stay in the
#: fast set through test_transport_c.py and test_transport_semantics.py,
#: and the refleak section's tools/refleak_transport.py.)
SOAK_ONLY = ("test_loop_conformance.py", "test_loop_stdlib.py",
             "test_transport.py")

#: Tests whose growth is known and not ours: measured and said, not
#: counted as leaking.
KNOWN = {
    "tests/test_testing.py::test_http_test_case_without_get_app[tornado]":
        "upstream Tornado's AsyncHTTPTestCase (the oracle) leaves its "
        "client and listening socket open when get_app() raises in setUp; "
        "ours closes them",
}

#: Node ids with these in them are judged on blocks and fds only: uvloop is
#: a release-ABI extension, whose Py_INCREF/Py_DECREF the debug
#: interpreter's total reference count does not see, so it drifts by ~100
#: a run on a uvloop loop, leak or not.
BLOCKS_ONLY = ("uvloop",)

FAST = {"spec": "3:3", "budget": 0.5, "timeout": 600}
SOAK = {"spec": "3:3", "budget": None, "timeout": 5400}

#: Fewer tests checked than this and the figure fails (a collection that
#: went wrong must not pass as "0 leaking").
MIN_CHECKED = 800


def c_facing_files(tree, soak):
    tests = os.path.join(tree, "tests")
    names = sorted(n for n in os.listdir(tests)
                   if n.startswith("test_") and n.endswith(".py")
                   and n not in LEFT_OUT and (soak or n not in SOAK_ONLY))
    return [os.path.join("tests", n) for n in names]


def _interpreter_name(python):
    r = subprocess.run([python, "-c", "import sys; print('python%d.%d%s' % "
                        "(sys.version_info[:2] + ('-dbg' if hasattr(sys, "
                        "'gettotalrefcount') else '',)))"],
                       stdout=subprocess.PIPE, text=True)
    return r.stdout.strip() or os.path.basename(python)


def run_suite_leaks(ctx, tree, python, env=None, soak=None):
    """Run the check with `python` (a debug interpreter) over `tree`'s
    suite, in a child process, and report one figure."""
    soak = ctx.soak if soak is None else soak
    cfg = SOAK if soak else FAST
    interp = _interpreter_name(python)
    name = "per-test leak check (-R %s) on %s" % (cfg["spec"], interp)
    if not interp.endswith("-dbg"):
        ctx.skip(name, "%s is not a debug interpreter (no "
                 "sys.gettotalrefcount)" % python)
        return None
    if not tree or not os.path.isdir(os.path.join(tree, "tests")):
        ctx.skip(name, "needs the source checkout's tests/ (--tree)")
        return None
    files = c_facing_files(tree, soak)
    # TCG_CHECK_LEAKS_JSON: where to keep every test's readings.
    keep = os.environ.get("TCG_CHECK_LEAKS_JSON")
    if keep:
        json_path = os.path.abspath(keep)
    else:
        fd, json_path = tempfile.mkstemp(prefix="tcg-leaks-", suffix=".json")
        os.close(fd)
    if os.path.exists(json_path):
        os.unlink(json_path)
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           "-p", "tornado_cgen.check._leaks_plugin",
           "--refleak=" + cfg["spec"], "--refleak-json=" + json_path,
           "--refleak-blocks-only=" + ",".join(BLOCKS_ONLY)]
    if cfg["budget"] is not None:
        cmd.append("--refleak-budget=%g" % cfg["budget"])
    cmd += files
    ctx.log("%s over %d files%s" % (name, len(files),
                                    "" if soak else " (the fast set)"))
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=cfg["timeout"])
        what = None
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        what = "killed after %d s (timeout)" % cfg["timeout"]
    elapsed = time.monotonic() - t0
    rc = proc.returncode
    try:
        with open(json_path) as f:
            data = json.load(f)
        if not keep:
            os.unlink(json_path)
    except (OSError, ValueError):
        data = None
    if data is None:
        if what is None:
            what = ("died of signal %d" % -rc if rc < 0 else
                    "exit status %d, no measurements" % rc)
        return ctx.figure(name, what, want="0 leaking", ok=False,
                          note="%s\n%s" % (" ".join(cmd),
                                           _tail(out)))
    return _report(ctx, name, cfg, soak, data, rc, elapsed, out, what)


def _tail(text, lines=25):
    return "\n".join(text.strip().splitlines()[-lines:])[-3000:]


def _report(ctx, name, cfg, soak, data, rc, elapsed, out, killed):
    s = data["summary"]
    results = data["results"]
    leaking = [r for r in results if r["leaks"] and r["nodeid"] not in KNOWN]
    known = [r for r in results if r["leaks"] and r["nodeid"] in KNOWN]
    failed = sorted(n for n, why in s["not_passed"].items()
                    if why == "not repeated: failed")
    unstable = sorted(s["unstable"])
    # The tests ran on a debug build of ours (a release one loads too).
    core = s.get("core") or ""
    debug_core = ".cpython-%d%dd-" % sys.version_info[:2] in core
    ok = (not leaking and not failed and not unstable and killed is None
          and rc in (0, 1) and s["checked"] >= MIN_CHECKED and debug_core)
    value = "%s tests, %d leaking" % (count(s["checked"]), len(leaking))
    if failed or unstable:
        value += ", %d failed, %d unstable" % (len(failed), len(unstable))
    if killed:
        value += " (%s)" % killed
    want = "0 leaking, >= %s tests" % count(MIN_CHECKED)
    notes = []
    for r in leaking:
        notes.append("LEAK %s: %s" % (r["nodeid"], ", ".join(
            "%s %s" % (k, r["deltas"][k]) for k in r["leaks"])))
    if leaking:
        notes.append("reproduce: %s -m pytest -p tornado_cgen.check."
                     "_leaks_plugin --refleak=%s --refleak-types NODEID"
                     % (os.path.basename(sys.executable), cfg["spec"]))
    notes += ["FAILED " + n for n in failed]
    if failed:
        # What the failures said (pytest's "E" lines), to tell a timing
        # from a defect without a rerun.
        said = [ln for ln in out.splitlines() if ln.startswith("E ")]
        notes.append("\n".join(said[:20])[-2000:])
    notes += ["UNSTABLE %s: %s" % (n, s["unstable"][n]) for n in unstable]
    for r in known:
        notes.append("known, not ours: %s (%s)" % (r["nodeid"],
                                                   KNOWN[r["nodeid"]]))
    runs = sum(int(x) for x in s["spec"].split(":"))
    skipped = len(s["not_passed"]) - len(failed)
    what = ["%s tests run %d times each" % (count(s["checked"]), runs)]
    if s["refs_not_judged"]:
        what.append("%s of them judged on blocks and fds only (uvloop)"
                    % count(s["refs_not_judged"]))
    if cfg["budget"] is not None:
        what.append("%s run once (first run > %g s)"
                    % (count(len(s["slow"])), cfg["budget"]))
    what.append("%s skipped" % count(skipped))
    what.append("every C-facing file" if soak else
                "C-facing files but %s (soak only)" % ", ".join(SOAK_ONLY))
    what.append("on " + (os.path.basename(core) if core else
                         "no tornado_cgen._core (not imported)"))
    what.append("%.0f s" % elapsed)
    notes.append(", ".join(what))
    if not ok and not (leaking or failed or unstable):
        notes.append(_tail(out, 15))
    return ctx.figure(name, value, want=want, ok=ok, note="; ".join(notes))


def run(ctx):
    from . import find_tree
    tree = os.environ.get("TCG_CHECK_TREE") or find_tree()
    run_suite_leaks(ctx, tree, sys.executable, None, ctx.soak)


if __name__ == "__main__":
    sys.exit(section_main("refleak", run))
