"""Shared fixtures.

``impl`` parametrises a test over tornado_cgen and upstream Tornado 6 (the
oracle), so a test that passes on both encodes Tornado's real behaviour.
``loop`` gives a fresh event loop: asyncio's default one, and tornado_cgen's
own once it exists.
"""
import asyncio
import gc
import importlib
import types

import pytest


def _load_impl(name):
    if name == "tcg":
        pkg = "tornado_cgen"
    else:
        pkg = "tornado"
    ns = types.SimpleNamespace(name=name)
    ns.concurrent = importlib.import_module(pkg + ".concurrent")
    for mod in ("gen", "ioloop"):
        try:
            setattr(ns, mod, importlib.import_module(pkg + "." + mod))
        except ImportError:
            setattr(ns, mod, None)
    return ns


@pytest.fixture(params=["tcg", "tornado"])
def impl(request):
    if request.param == "tornado":
        pytest.importorskip("tornado", reason="upstream Tornado (the oracle) "
                            "is not installed")
    return _load_impl(request.param)


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


def run_python(code, *argv, options=(), env=None, timeout=60):
    """Run ``code`` (with ``sys.argv[1:] == argv``) in a fresh interpreter
    started with ``options`` (``("-X", "dev")``...) that imports the
    tornado_cgen under test (the installed one, or the source tree's);
    returns the completed process (``returncode``, ``stdout``, ``stderr``
    as text)."""
    import os
    import subprocess
    import sys

    import tornado_cgen

    pkg_parent = os.path.dirname(os.path.dirname(tornado_cgen.__file__))
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [pkg_parent] + [p for p in sys.path if p and os.path.isdir(p)])
    full_env.update(env or {})
    return subprocess.run([sys.executable, *options, "-c", code, *argv],
                          capture_output=True, text=True, env=full_env,
                          timeout=timeout)
