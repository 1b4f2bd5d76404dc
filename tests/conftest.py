"""Shared fixtures.

``impl`` parametrises a test over tornado_cgen and upstream Tornado 6 (the
oracle), so a test that passes on both encodes Tornado's real behaviour,
and over "installed": upstream Tornado's own modules while
``tornado_cgen.install()`` is on, so the same test also checks Tornado code
running on our Runner and loop against the oracle's expectations.
``loop`` gives a fresh event loop: asyncio's default one, and tornado_cgen's
own once it exists.
"""
import asyncio
import contextlib
import gc
import importlib
import os
import re
import subprocess
import sys
import textwrap
import types

import pytest

# The three values of ``impl``.
IMPL_NAMES = ["tcg", "tornado", "installed"]


def _load_impl(name):
    """The namespace a test gets as ``impl``:

    * ``name``: "tcg", "tornado" or "installed";
    * ``tornado_api``: the modules are Tornado's own (``tornado.gen`` & co,
      with Tornado's classes, ``Return``, ``moment``, registry), true for
      "tornado" and "installed";
    * ``c_runner``: coroutines, ``multi`` and the loop are tornado_cgen's C
      code, so its documented differences from Tornado apply (README,
      "gen"), true for "tcg" and "installed";
    * ``concurrent``, ``gen``, ``ioloop``: the modules (None if missing).
    """
    pkg = "tornado_cgen" if name == "tcg" else "tornado"
    ns = types.SimpleNamespace(name=name, tornado_api=name != "tcg",
                               c_runner=name != "tornado")
    ns.concurrent = importlib.import_module(pkg + ".concurrent")
    for mod in ("gen", "ioloop"):
        try:
            setattr(ns, mod, importlib.import_module(pkg + "." + mod))
        except ImportError:
            setattr(ns, mod, None)
    return ns


@contextlib.contextmanager
def tornado_installed():
    """``tornado_cgen.install()`` for the block (skipping the test if
    Tornado is missing or too old for it), then ``uninstall()``."""
    pytest.importorskip("tornado", reason="upstream Tornado is not installed")
    import tornado_cgen
    from tornado_cgen import _speedup
    assert not tornado_cgen.installed(), "a test left install() on"
    try:
        tornado_cgen.install()
    except _speedup.TornadoVersionError as e:
        pytest.skip(str(e))
    # The fresh policy in the state every test leaves asyncio's in (no
    # loop set), so that get_event_loop() raises rather than warns (3.12+)
    # under both, whatever the order of the tests.
    asyncio.set_event_loop(None)
    try:
        yield
    finally:
        tornado_cgen.uninstall()


@pytest.fixture(params=["tornado", "installed"])
def mode(request):
    """"tornado": upstream Tornado alone, the oracle; "installed": the same
    Tornado code under ``install()``, undone afterwards.  A test that takes
    it makes the same assertions in both."""
    if request.param == "installed":
        with tornado_installed():
            yield request.param
    else:
        pytest.importorskip("tornado",
                            reason="upstream Tornado is not installed")
        yield request.param


@pytest.fixture
def pair():
    """A connected pair of non-blocking sockets, closed afterwards."""
    import socket
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture(params=IMPL_NAMES)
def impl(request):
    if request.param != "tcg":
        pytest.importorskip("tornado", reason="upstream Tornado (the oracle) "
                            "is not installed")
    if request.param == "installed":
        with tornado_installed():
            yield _load_impl(request.param)
    else:
        yield _load_impl(request.param)


def skip_tornado_before_6_6(impl, why="6.6 changed this", in_runner=False):
    """Skip for an oracle older than Tornado 6.6 (on Python 3.10 it is
    6.5, which 6.6 fixed in places): `why` says what 6.6 does.  The
    behaviour is Tornado's own Python code (with_timeout, chain_future,
    WaitIterator), which install() keeps: "installed" is skipped too;
    `in_runner`: it is the Runner's or multi's, which install() replaces
    with ours: only the oracle is skipped."""
    if impl.tornado_api and not (in_runner and impl.c_runner):
        import tornado
        if tornado.version_info < (6, 6):
            pytest.skip("Tornado %s: %s" % (tornado.version, why))


def _loop_factories():
    factories = [("asyncio", asyncio.new_event_loop)]
    try:
        import tornado_cgen
        if hasattr(tornado_cgen, "new_event_loop"):
            factories.append(("tcg", tornado_cgen.new_event_loop))
    except ImportError:
        pass
    return factories


@pytest.fixture(params=_loop_factories(), ids=lambda p: p[0])
def loop(request):
    loop = request.param[1]()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    if not loop.is_closed():
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    gc.collect()


def run(fn, *args, loop_factory=None):
    """``await fn(*args)`` on a fresh event loop (``loop_factory()``, else
    asyncio's default kind), set as the thread's loop while it runs, then
    cancel what is left, shut it down and close it, as asyncio.run does
    (spelled out so that 3.10 and any loop factory behave the same)."""
    async def main():
        return await fn(*args)

    loop = (loop_factory or asyncio.new_event_loop)()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main())
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(
                    asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


@pytest.fixture
def tcg_loop():
    """A fresh tornado_cgen loop, closed after the test."""
    import tornado_cgen
    loop = tornado_cgen.new_event_loop()
    yield loop
    loop.close()


def run_briefly(loop, n=1):
    """Run `n` loop iterations."""
    for _ in range(n):
        loop.run_until_complete(asyncio.sleep(0))


# ---- programs in a fresh interpreter ---------------------------------------

# The default warning filters of a release build (a debug build has none),
# in -W order: the last one wins.
_RELEASE_WARNING_FILTERS = (
    "ignore::DeprecationWarning", "ignore::PendingDeprecationWarning",
    "ignore::ImportWarning", "ignore::ResourceWarning",
    "default::DeprecationWarning:__main__")


def _child_env(devmode):
    # The package under test, wherever it is installed (source tree or
    # site-packages), then whatever else this interpreter can import.
    import tornado_cgen
    pkg_parent = os.path.dirname(os.path.dirname(
        os.path.abspath(tornado_cgen.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_parent] + [p for p in sys.path if p and os.path.isdir(p)])
    env.pop("PYTHONDEVMODE", None)
    env.pop("PYTHONASYNCIODEBUG", None)
    if devmode:
        env["PYTHONDEVMODE"] = "1"
    elif hasattr(sys, "gettotalrefcount") and "PYTHONWARNINGS" not in env:
        # A debug interpreter starts with no warning filters, so it shows
        # ResourceWarning (an unclosed loop at exit) as development mode
        # does: outside it, the filters a release build starts with.
        env["PYTHONWARNINGS"] = ",".join(_RELEASE_WARNING_FILTERS)
    if _asan_loaded():
        # Leak checking on; a leak report does not set the exit status
        # (3.12 and 3.13 leak objects of their own at exit): the reports
        # are read instead, and only those of ours fail the test.
        opts = [o for o in env.get("ASAN_OPTIONS", "").split(":")
                if o and not o.startswith("detect_leaks=")]
        env["ASAN_OPTIONS"] = ":".join(opts + ["detect_leaks=1"])
        lsan = [o for o in env.get("LSAN_OPTIONS", "").split(":")
                if o and not o.startswith("exitcode=")]
        env["LSAN_OPTIONS"] = ":".join(lsan + ["exitcode=0"])
    return env


def _asan_loaded():
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


# Development mode makes asyncio warn about a loop that is never closed,
# for its own loops as for ours: the one line allowed on stderr.
_UNCLOSED = re.compile(r"^\S*: ResourceWarning: unclosed event loop <.*>$")
# asyncio's debug mode (on under -X dev) reports a callback that ran over
# 0.1 s: a timing, not an exit problem, and one a slow build (the debug
# interpreter of the per-test leak check, ASan) on a busy machine can
# print for any program, upstream Tornado's included.
_SLOW_CALLBACK = re.compile(r"^Executing <.*> took \d+\.\d+ seconds$")


def _our_leaks(stderr):
    """LeakSanitizer reports whose allocation stack passes through us."""
    blocks = re.split(r"\n(?=(?:Direct|Indirect) leak of )", stderr)
    return [b for b in blocks if re.match(r"(Direct|Indirect) leak of ", b)
            and ("_core." in b or "tcg_" in b)]


def run_program(source, devmode=False):
    """Run ``source`` in a fresh interpreter on the package under test and
    require a clean exit: status 0 and nothing on stderr (in development
    mode, but for asyncio's "unclosed event loop" warning; under ASan, no
    leak of ours).  Returns what it printed."""
    source = textwrap.dedent(source)
    proc = subprocess.run(
        [sys.executable, "-c", source], env=_child_env(devmode),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        timeout=120)
    stderr = proc.stderr
    if _asan_loaded():
        if "LeakSanitizer has encountered a fatal error" in stderr:
            pytest.skip("LeakSanitizer cannot run here")
        leaks = _our_leaks(stderr)
        assert not leaks, "\n".join(leaks)
        stderr = re.sub(r"(?s)\n?=+\n==\d+==ERROR: LeakSanitizer.*", "",
                        stderr)
    lines = [ln for ln in stderr.splitlines()
             if not (devmode and (_UNCLOSED.match(ln) or
                                  _SLOW_CALLBACK.match(ln)))]
    assert proc.returncode == 0 and not lines, (
        "exit status %d, stderr:\n%s" % (proc.returncode, stderr))
    return proc.stdout



def run_python(code, *argv, options=()):
    """Run ``code`` (``sys.argv[1:] == argv``) in a fresh interpreter
    started with ``options`` on the package under test; returns the
    completed process (text output), whatever its outcome."""
    return subprocess.run([sys.executable, *options, "-c", code, *argv],
                          env=_child_env(False), capture_output=True,
                          text=True, timeout=120)
