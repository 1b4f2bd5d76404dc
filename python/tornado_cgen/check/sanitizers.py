"""The ``sanitizers`` section.

* The whole test suite (install-mode tests included) on the ASan + UBSan
  build: every memory error and every undefined behaviour aborts the
  process, so a clean run is zero of each.
* The C-facing checks of this command (``gc``, ``fuzz``) on the same
  build, where a memory error that does not crash a release build shows.
* valgrind memcheck over a chosen subset of the suite on the release
  build: zero errors (leaks are the ``memory`` section's).

All need the source checkout (its ``tests/``) and, for ASan, the build the
check command makes from it.
"""
import os
import re
import shutil
import subprocess
import sys
import time

from ._report import count, section_main

# The subset valgrind runs (about 50 times slower than the release build):
# the Future, the Handle, the Runner, multi and the loop's core, where the
# C is.
VALGRIND_FAST = ["tests/test_future.py", "tests/test_handle.py",
                 "tests/test_runner.py", "tests/test_multi.py"]
VALGRIND_SOAK = VALGRIND_FAST + ["tests/test_gen.py", "tests/test_loop_core.py",
                                 "tests/test_ioloop.py", "tests/test_install.py",
                                 "tests/test_timeouts.py"]


def _pytest_counts(text):
    """{'passed': n, 'failed': n, ...} from pytest's last summary line."""
    counts = {}
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines[-5:]):
        found = re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|"
                           r"xpassed|deselected)", line)
        if found:
            for n, what in found:
                counts[what.rstrip("s") if what.startswith("error")
                       else what] = int(n)
            break
    return counts


def _summary(counts):
    return ", ".join("%s %s" % (count(v), k) for k, v in counts.items()) \
        or "no summary"


def check_asan_suite(ctx, tree, asan):
    from . import asan_env
    env = dict(os.environ, **asan_env(asan))
    env.pop("TCG_CHECK_TREE", None)
    t0 = time.monotonic()
    # The fast set runs the C-facing files, as the per-test leak check
    # does: the files it leaves out drive tools and pytest sessions in
    # other processes, which run next to none of the C code in the process
    # ASan watches.  --soak runs every file.
    from .suite_leaks import LEFT_OUT
    left_out = sorted(LEFT_OUT)
    skip = [] if ctx.soak else ["--ignore=tests/" + f for f in left_out]
    r = subprocess.run([sys.executable, "-m", "pytest", "-q",
                        "-p", "no:cacheprovider"] + skip, cwd=tree, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=3600)
    counts = _pytest_counts(r.stdout)
    errors = [ln for ln in r.stdout.splitlines()
              if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln]
    bad = counts.get("failed", 0) + counts.get("error", 0)
    ctx.figure("the whole suite on the ASan + UBSan build" if ctx.soak else
               "the C-facing suite on the ASan + UBSan build (all but %s: "
               "tools and pytest sessions in other processes)"
               % ", ".join(left_out),
               "%s; memory errors and undefined behaviour: %d" % (
                   _summary(counts), len(errors)),
               want="0 failed, 0 errors",
               ok=r.returncode == 0 and not bad and not errors
               and counts.get("passed", 0) >= 1000,
               note=("in %.0f s" % (time.monotonic() - t0)) if r.returncode == 0
               else "exit status %d: %s" % (r.returncode,
                                           "\n".join(errors[:3]) or
                                           r.stdout[-1500:]))


def check_sections_on_asan(ctx, asan):
    from . import asan_env
    env = dict(os.environ, **asan_env(asan))
    for name in ("gc", "fuzz"):
        if not os.path.exists(os.path.join(os.path.dirname(__file__),
                                           name + ".py")):
            continue
        r = subprocess.run([sys.executable, "-m", "tornado_cgen.check." + name]
                           + (["--soak"] if ctx.soak else []), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=3600)
        lines = r.stdout.splitlines()
        oks = sum(ln.startswith("ok ") for ln in lines)
        fails = [ln for ln in lines if ln.startswith("FAIL")]
        errors = [ln for ln in lines
                  if "ERROR: AddressSanitizer" in ln or "runtime error:" in ln]
        ctx.figure("the %s section on the ASan + UBSan build" % name,
                   "%d figures ok, %d failed; memory errors and undefined "
                   "behaviour: %d" % (oks, len(fails), len(errors)),
                   want="0 failed, 0 errors",
                   ok=r.returncode == 0 and not fails and not errors and oks,
                   note="; ".join((errors + fails)[:3])[-1500:] if
                   r.returncode else "")


def check_valgrind(ctx, tree):
    valgrind = shutil.which("valgrind")
    if not valgrind:
        ctx.skip("valgrind memcheck", "valgrind is not installed "
                 "(Debian: apt-get install valgrind)")
        return
    files = VALGRIND_SOAK if ctx.soak else VALGRIND_FAST
    env = dict(os.environ, PYTHONMALLOC="malloc")
    env.pop("TCG_CHECK_TREE", None)
    log = os.path.join(tree, "build", "check", "valgrind.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    t0 = time.monotonic()
    r = subprocess.run([valgrind, "--tool=memcheck",
                        "--errors-for-leak-kinds=none", "--leak-check=no",
                        "--track-origins=no", "--log-file=" + log,
                        sys.executable, "-m", "pytest", "-q", "-x",
                        "-p", "no:cacheprovider"] + files,
                       cwd=tree, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=5400)
    with open(log) as f:
        vlog = f.read()
    m = re.search(r"ERROR SUMMARY: (\d+) errors from (\d+) contexts", vlog)
    total = int(m.group(1)) if m else -1
    # valgrind reports CPython's own reads it cannot follow (int.from_bytes
    # over bytes from getrandom(), frames popped by the eval loop); an
    # error is ours when a frame of its stack is in our extension.
    blocks = re.split(r"\n==\d+== \n", vlog)
    ours = [b for b in blocks
            if re.search(r"==\d+== (Invalid|Conditional|Use of|Syscall|"
                         r"Mismatched|Source and destination)", b)
            and "tornado_cgen/_core" in b]
    counts = _pytest_counts(r.stdout)
    ctx.figure("valgrind memcheck over %s: errors in tornado_cgen's code"
               % ", ".join(os.path.basename(f) for f in files),
               "%s; tests: %s" % (count(len(ours)), _summary(counts)),
               want="0 errors, 0 failed",
               ok=m is not None and not ours and counts.get("passed", 0) > 0
               and not counts.get("failed") and not counts.get("error"),
               note="in %.0f s; errors elsewhere (CPython's, none with a "
               "frame of ours): %s in %s contexts%s" % (
                   time.monotonic() - t0, m.group(1) if m else "?",
                   m.group(2) if m else "?",
                   "" if not ours else "; first of ours: " + ours[0][-1200:]))


def run(ctx):
    tree = os.environ.get("TCG_CHECK_TREE")
    asan = os.environ.get("TCG_CHECK_ASAN")
    if not tree or not os.path.isdir(os.path.join(tree, "tests")):
        ctx.skip("sanitizers and valgrind", "need the source checkout "
                 "(its tests/)")
        return
    if asan:
        check_asan_suite(ctx, tree, asan)
        check_sections_on_asan(ctx, asan)
    else:
        ctx.skip("the suite on the ASan + UBSan build",
                 "no ASan build (see python -m tornado_cgen check --help)")
    check_valgrind(ctx, tree)


if __name__ == "__main__":
    sys.exit(section_main("sanitizers", run))
