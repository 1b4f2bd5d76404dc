"""``python -m tornado_cgen check``: the reliability figures, measured.

Every figure on a line of its own, ``ok`` or ``FAIL``, with what it must
be.  The fast set runs in a few minutes; ``--soak`` adds the long ones.
Each section runs in a child process of its own (so a crash or a hang is a
failed figure, not the end of the run) on the build it needs:

  refleak      reference growth per cycle, on a debug interpreter
               (Debian's python3.11-dbg) with a debug build
  memory       freelists, leaks at exit (LeakSanitizer), RSS over a soak
  sanitizers   the test suite under ASan + UBSan, valgrind memcheck
  threads      add_callback / call_soon_threadsafe from threads
  differential random programs, tornado_cgen against upstream Tornado
  fuzz         the C entry points with bad input and re-entrant calls
  gc           cycles, cyclic garbage, very long chains
  faults       raising callbacks, signals, fork, closed fds, exit
  load         wrk against an echo server and a Tornado HTTP server

The debug and ASan builds are made from the source checkout this package
lives in (``--tree``), into ``--build-dir``, unless ``--debug-path`` /
``--asan-path`` name ones already built.  A figure that needs what this
machine lacks says ``skipped`` and why; ``--strict`` makes a skip a
failure (CI uses it).
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

from ._report import TAG, Figure

# name: (build it runs on, timeout in seconds: fast, soak)
SECTIONS = {
    "refleak": ("debug", 1500, 7200),
    "memory": ("release", 600, 7200),
    "sanitizers": ("release", 1500, 7200),
    "threads": ("release", 600, 3600),
    "differential": ("release", 900, 7200),
    "fuzz": ("release", 900, 3600),
    "gc": ("release", 600, 3600),
    "faults": ("release", 600, 3600),
    "load": ("release", 600, 3600),
}

HERE = os.path.dirname(os.path.abspath(__file__))


def find_tree():
    """The source checkout this package was imported from (python/
    tornado_cgen under a directory with setup.py and ext/), if any."""
    pkg = os.path.dirname(HERE)
    root = os.path.dirname(os.path.dirname(pkg))
    if all(os.path.exists(os.path.join(root, p))
           for p in ("setup.py", "ext", "tests")):
        return root
    cwd = os.getcwd()
    if all(os.path.exists(os.path.join(cwd, p))
           for p in ("setup.py", "ext", "tests")):
        return cwd
    return None


def _build(tree, python, out, env_extra, log):
    """Build the extension from `tree` with `python` into `out` (a copy of
    the package with the new _core beside it).  Returns `out`."""
    stamp = os.path.join(out, ".built-from")
    sources = sorted(os.path.join(tree, "ext", f)
                     for f in os.listdir(os.path.join(tree, "ext")))
    newest = max(os.path.getmtime(p) for p in sources)
    if os.path.exists(stamp) and os.path.getmtime(stamp) >= newest:
        _copy_python(tree, out)
        return out
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    _copy_python(tree, out)
    env = dict(os.environ, **env_extra)
    log("building %s with %s" % (os.path.basename(out), python))
    r = subprocess.run([python, "setup.py", "-q", "build_ext", "-b", out,
                        "-t", out + "-tmp"], cwd=tree, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode:
        raise RuntimeError("build of %s failed:\n%s" % (out, r.stdout))
    with open(stamp, "w") as f:
        f.write(tree)
    return out


def _copy_python(tree, out):
    src = os.path.join(tree, "python", "tornado_cgen")
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        rel = os.path.relpath(dirpath, src)
        dst = os.path.join(out, "tornado_cgen", rel)
        os.makedirs(dst, exist_ok=True)
        for fn in filenames:
            # The modules, and the type information beside them.
            if fn.endswith((".py", ".pyi")) or fn == "py.typed":
                shutil.copy2(os.path.join(dirpath, fn), os.path.join(dst, fn))


def asan_env(path):
    """The environment that runs the ASan/UBSan build at `path`."""
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"],
                             stdout=subprocess.PIPE, text=True).stdout.strip()
    return {"PYTHONPATH": _path_with(path), "PYTHONMALLOC": "malloc",
            "LD_PRELOAD": libasan,
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}


def _path_with(first):
    rest = os.environ.get("PYTHONPATH")
    return first + (os.pathsep + rest if rest else "")


def _site_packages():
    import site
    return [p for p in site.getsitepackages() if os.path.isdir(p)]


class Builds:
    """Where each build is, and how to run a child on it."""

    def __init__(self, args, log):
        self.args, self.log = args, log
        self.tree = args.tree or find_tree()
        self.release = None     # this interpreter, this import path
        self.debug = self.asan = None
        self.why_not = {}

    def prepare(self, needed):
        a = self.args
        cache = a.build_dir or (os.path.join(self.tree, "build", "check")
                                if self.tree else None)
        if "debug" in needed:
            dbg = a.debug_python or shutil.which("python3.11-dbg")
            if dbg and not _is_debug(dbg):
                dbg = None
            if a.debug_path and dbg:
                self.debug = (dbg, a.debug_path)
            elif dbg and self.tree:
                try:
                    path = _build(self.tree, dbg, os.path.join(cache, "dbg"),
                                  {}, self.log)
                    self.debug = (dbg, path)
                except RuntimeError as e:
                    self.why_not["debug"] = str(e)
            else:
                self.why_not["debug"] = (
                    "needs a debug interpreter (--debug-python; Debian: "
                    "apt-get install python3.11-dbg)" if not dbg else
                    "needs the source checkout (--tree) or --debug-path")
        if "asan" in needed:
            if a.asan_path:
                self.asan = a.asan_path
            elif self.tree:
                try:
                    self.asan = _build(self.tree, sys.executable,
                                       os.path.join(cache, "asan"),
                                       {"TCG_SANITIZE": "1"}, self.log)
                except RuntimeError as e:
                    self.why_not["asan"] = str(e)
            else:
                self.why_not["asan"] = ("needs the source checkout (--tree) "
                                        "or --asan-path")

    def child(self, build):
        """(python, environment additions) for a section on `build`."""
        env = {"TCG_CHECK_TREE": self.tree or ""}
        if self.asan:
            env["TCG_CHECK_ASAN"] = self.asan
        if self.debug:
            env["TCG_CHECK_DEBUG_PYTHON"] = self.debug[0]
            env["TCG_CHECK_DEBUG_PATH"] = self.debug[1]
        if build == "debug":
            if not self.debug:
                return None
            python, path = self.debug
            # The debug interpreter reads this interpreter's packages
            # (pytest, Tornado: Debian's debug build loads release
            # extensions), after the debug build of ours.
            env["PYTHONPATH"] = os.pathsep.join(
                [path] + _site_packages())
            return python, env
        pkg_parent = os.path.dirname(os.path.dirname(HERE))
        env["PYTHONPATH"] = _path_with(pkg_parent)
        return sys.executable, env


def _is_debug(python):
    r = subprocess.run([python, "-c", "import sys; "
                        "print(hasattr(sys, 'gettotalrefcount'))"],
                       stdout=subprocess.PIPE, text=True)
    return r.stdout.strip() == "True"


def run_section(name, builds, soak, out):
    build, fast_timeout, soak_timeout = SECTIONS[name]
    timeout = soak_timeout if soak else fast_timeout
    spec = builds.child(build)
    if spec is None:
        f = Figure(name, "section", "skipped: " + builds.why_not.get(
            build, "no %s build" % build), "", True)
        out.write(f.line() + "\n")
        return [f]
    python, env_extra = spec
    cmd = [python, "-m", "tornado_cgen.check." + name, "--child"]
    if soak:
        cmd.append("--soak")
    env = dict(os.environ, **env_extra)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True,
                            cwd=builds.tree or None)
    figures = []
    other = []
    import threading
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        for line in proc.stdout:
            if line.startswith(TAG):
                f = Figure.from_json(line[len(TAG):])
                figures.append(f)
                out.write(f.line() + "\n")
                out.flush()
            else:
                other.append(line)
        rc = proc.wait()
    finally:
        killer.cancel()
    dt = time.monotonic() - t0
    if rc != 0 and (rc < 0 or not any(not f.ok for f in figures)):
        what = ("killed after %d s (timeout)" % timeout
                if dt >= timeout else
                "died of signal %d" % -rc if rc < 0 else "exit status %d" % rc)
        f = Figure(name, "section", what, "exit 0", False,
                   "".join(other[-20:]).strip()[-2000:])
        figures.append(f)
        out.write(f.line() + "\n")
    elif other:
        sys.stderr.write("".join(other))
    return figures


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m tornado_cgen check",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--soak", action="store_true",
                   help="add the long runs (hours)")
    p.add_argument("--only", metavar="SECTION[,SECTION...]",
                   help="run these sections (%s)" % ", ".join(SECTIONS))
    p.add_argument("--skip", metavar="SECTION[,SECTION...]")
    p.add_argument("--strict", action="store_true",
                   help="a figure that cannot be measured here fails")
    p.add_argument("--tree", help="the source checkout (default: the one "
                   "this package is in, or the current directory)")
    p.add_argument("--build-dir", help="where to build the debug and ASan "
                   "variants (default: TREE/build/check)")
    p.add_argument("--debug-python", help="a debug interpreter "
                   "(default: python3.11-dbg)")
    p.add_argument("--debug-path", help="a debug build already made "
                   "(a directory holding tornado_cgen/)")
    p.add_argument("--asan-path", help="an ASan/UBSan build already made")
    args = p.parse_args(argv)
    names = list(SECTIONS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
    if args.skip:
        drop = {n.strip() for n in args.skip.split(",")}
        names = [n for n in names if n not in drop]
    bad = [n for n in names if n not in SECTIONS]
    if bad:
        p.error("unknown section(s): %s (there are: %s)"
                % (", ".join(bad), ", ".join(SECTIONS)))

    def log(text):
        sys.stderr.write("  [check] %s\n" % text)

    builds = Builds(args, log)
    needed = {SECTIONS[n][0] for n in names}
    if "sanitizers" in names or "memory" in names:
        needed.add("asan")
    builds.prepare(needed)
    out = sys.stdout
    import tornado_cgen
    out.write("tornado-cgen %s check%s: %s on CPython %s\n" % (
        tornado_cgen.__version__, " --soak" if args.soak else "",
        ", ".join(names), sys.version.split()[0]))
    out.flush()
    figures = []
    t0 = time.monotonic()
    for name in names:
        figures += run_section(name, builds, args.soak, out)
    failed = [f for f in figures if not f.ok]
    skipped = [f for f in figures if f.value.startswith("skipped")]
    out.write("\n%d figures: %d ok, %d failed, %d skipped, in %.0f s\n" % (
        len(figures), len(figures) - len(failed), len(failed), len(skipped),
        time.monotonic() - t0))
    for f in failed:
        out.write("  " + f.line() + "\n")
    if failed or (args.strict and skipped):
        return 1
    return 0
