"""What every check section shares: figures, the command line of a
section run on its own, and the modes.

A section is a module of this package with ``run(ctx)``, which measures
and calls ``ctx.figure(...)`` once per figure.  Run on its own
(``python -m tornado_cgen.check.threads [--soak]``) it prints its figures
as the whole command does; under ``python -m tornado_cgen check`` each
section runs in a child process of its own, so that a crash or a hang is a
failed figure, not the end of the run.
"""
import argparse
import json
import os
import sys
import time

#: Marks the lines a section's child process writes for the parent.
TAG = "@@tcg-figure "


class Figure:
    __slots__ = ("section", "name", "value", "want", "ok", "note")

    def __init__(self, section, name, value, want, ok, note=""):
        self.section, self.name, self.value = section, name, value
        self.want, self.ok, self.note = want, bool(ok), note

    def to_json(self):
        return json.dumps({k: getattr(self, k) for k in self.__slots__})

    @classmethod
    def from_json(cls, text):
        d = json.loads(text)
        return cls(**d)

    def line(self):
        mark = "ok  " if self.ok else "FAIL"
        text = "%s %s: %s: %s" % (mark, self.section, self.name, self.value)
        if self.want:
            text += "  [want %s]" % self.want
        if self.note:
            text += "  (%s)" % self.note
        return text


class Context:
    """What a section is given: ``soak`` (the long variants), ``modes``
    (``standalone`` and, where Tornado is installed, ``installed``), and
    ``figure()``/``skip()`` to report with."""

    def __init__(self, section, soak=False, child=False, out=None):
        self.section = section
        self.soak = soak
        self.child = child
        self.out = out if out is not None else sys.stdout
        self.figures = []

    @property
    def modes(self):
        return ["standalone", "installed"] if tornado_available() else \
            ["standalone"]

    def figure(self, name, value, want="", ok=True, note=""):
        f = Figure(self.section, name, str(value), str(want), ok, note)
        self.figures.append(f)
        if self.child:
            self.out.write(TAG + f.to_json() + "\n")
        else:
            self.out.write(f.line() + "\n")
        self.out.flush()
        return f

    def skip(self, name, why):
        """A figure that cannot be measured here: not a failure, and
        said."""
        return self.figure(name, "skipped: " + why, ok=True)

    def log(self, text):
        """Progress for the person running it (stderr, not a figure)."""
        sys.stderr.write("  [%s] %s\n" % (self.section, text))
        sys.stderr.flush()


def tornado_available():
    try:
        import tornado
    except ImportError:
        return False
    return tornado.version_info >= (6, 2)


def count(n):
    """``1,000,000``: figures are read by people."""
    return format(n, ",")


class Stopwatch:
    def __enter__(self):
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        return self

    def __exit__(self, *exc):
        self.elapsed = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.cpu0


def section_main(name, run, argv=None):
    """The command line of one section run on its own: ``--soak`` and
    ``--child`` (figures as tagged JSON lines for the parent)."""
    p = argparse.ArgumentParser(prog="python -m tornado_cgen.check." + name)
    p.add_argument("--soak", action="store_true")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    ctx = Context(name, soak=args.soak, child=args.child)
    run(ctx)
    failed = [f for f in ctx.figures if not f.ok]
    return 1 if failed else 0


def env_flag(name):
    return os.environ.get(name, "").lower() not in ("", "0", "no", "false")
