"""Measurements run in a process of their own: the modes and the workers.

A section that needs a fresh interpreter per measurement (``install()`` is
process-global; a crash, a hang or a signal must not take the section
with it) runs it as a *worker*: ``python -m tornado_cgen.check.<section>
--worker NAME --mode MODE --args JSON`` calls the section's ``w_NAME(m,
**args)`` with ``m`` the mode's namespace (`setup_mode`) and prints what
it returns, a dict, as one tagged JSON line.  `run_worker` starts one with
a timeout and returns that dict, or an `Outcome` saying what went wrong
and how to reproduce it.
"""
import json
import os
import shlex
import subprocess
import sys
import time
import types

RESULT_TAG = "@@tcg-result "


def setup_mode(mode):
    """What a measurement uses in `mode`: ``IOLoop``, ``gen``, ``Future``
    (the future a coroutine waits on), ``new_loop`` (a plain asyncio loop),
    ``app_logger`` (where a failing IOLoop callback is logged) and
    ``mode``.  Installed: ``tornado_cgen.install()`` then upstream
    Tornado's own modules."""
    import tornado_cgen
    m = types.SimpleNamespace(mode=mode)
    if mode == "standalone":
        from tornado_cgen import concurrent, gen, ioloop
        m.IOLoop = ioloop.IOLoop
        m.gen = gen
        m.Future = concurrent.Future
        m.new_loop = tornado_cgen.new_event_loop
    elif mode == "installed":
        tornado_cgen.install()
        import asyncio
        from tornado import concurrent, gen, ioloop
        m.IOLoop = ioloop.IOLoop
        m.gen = gen
        m.Future = concurrent.Future
        m.new_loop = asyncio.new_event_loop
    else:
        raise ValueError("unknown mode %r" % (mode,))
    m.app_logger = "tornado.application"
    return m


def on_our_loop(io):
    """Whether an IOLoop runs on tornado_cgen's C loop (what a figure
    measures must be ours, in both modes)."""
    from tornado_cgen import _core
    return isinstance(io.asyncio_loop, _core.Loop)


class Outcome:
    """A worker that did not return a result: why, and how to rerun it."""

    def __init__(self, what, detail, command):
        self.what, self.detail, self.command = what, detail, command

    def note(self):
        text = "reproduce: " + self.command
        if self.detail:
            text += "; " + self.detail
        return text


def command_line(section, name, mode, args, soak=False):
    cmd = [sys.executable, "-m", "tornado_cgen.check." + section,
           "--worker", name, "--mode", mode,
           "--args", json.dumps(args or {}, sort_keys=True)]
    if soak:
        cmd.append("--soak")
    return cmd


def shown(cmd):
    path = os.environ.get("PYTHONPATH")
    env = "PYTHONPATH=%s " % shlex.quote(path) if path else ""
    return env + " ".join(shlex.quote(c) for c in cmd)


def run_worker(section, name, mode, args=None, timeout=120, stdin=None,
               env=None):
    """Run ``w_<name>`` of `section` in `mode` in a fresh interpreter.
    Returns (dict, None) or (None, Outcome)."""
    cmd = command_line(section, name, mode, args)
    full_env = dict(os.environ, **(env or {}))
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout, env=full_env,
                           input=stdin)
    except subprocess.TimeoutExpired as e:
        err = e.stderr or ""
        if isinstance(err, bytes):
            err = err.decode("utf-8", "replace")
        return None, Outcome("hung: killed after %d s" % timeout,
                             tail(err), shown(cmd))
    result = None
    for line in r.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
    if r.returncode != 0 or result is None:
        what = ("died of signal %d" % -r.returncode if r.returncode < 0 else
                "exit status %d" % r.returncode if r.returncode else
                "no result")
        return None, Outcome(what, tail(r.stderr), shown(cmd))
    result.setdefault("_stderr", r.stderr)
    result.setdefault("_elapsed", time.monotonic() - t0)
    return result, None


def tail(text, n=600):
    text = (text or "").strip()
    if len(text) > n:
        text = "..." + text[-n:]
    return " | ".join(text.splitlines())


def worker_main(namespace, argv=None):
    """The ``--worker`` command line of a section module."""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--worker", required=True)
    p.add_argument("--mode", required=True)
    p.add_argument("--args", default="{}")
    p.add_argument("--soak", action="store_true")
    a = p.parse_args(argv)
    fn = namespace["w_" + a.worker]
    m = setup_mode(a.mode)
    result = fn(m, **json.loads(a.args))
    sys.stdout.write(RESULT_TAG + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def is_worker(argv=None):
    return "--worker" in (sys.argv if argv is None else argv)


def failed(ctx, name, outcome):
    """The figure of a measurement whose worker gave no result."""
    return ctx.figure(name, outcome.what, want="a result", ok=False,
                      note=outcome.note())


def ms(seconds):
    """A duration for people: microseconds below a millisecond."""
    if seconds is None:
        return "none"
    if abs(seconds) < 1e-3:
        return "%.0f us" % (seconds * 1e6)
    return "%.1f ms" % (seconds * 1e3)
