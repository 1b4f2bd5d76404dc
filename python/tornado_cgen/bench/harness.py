"""Run the cases: one subprocess per (round, case, implementation).

Every measurement runs in a fresh process of the same interpreter
(``sys.executable -m tornado_cgen.bench.worker``), so implementations never
share a heap, a loop or warmed caches.  Rounds interleave the
implementations (A B C D, then B C D A, ...: the start rotates so no
implementation always runs first); the best of the rounds is the headline,
the median and every run go into the JSON.  An implementation that says
"n/a" (or fails) for a case is not asked again in later rounds.
"""
import json
import os
import statistics
import subprocess
import sys

import tornado_cgen

from . import cases as cases_mod
from . import impls as impls_mod

# Where the tornado_cgen package that is running lives, so that the worker
# processes import this very one (an in-place build, not some installed copy).
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(
    tornado_cgen.__file__)))


def worker_env():
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + path if path else "")
    return env


def worker_command(impl, case_id, n, warmup=True, gc_off=False):
    cmd = [sys.executable, "-m", "tornado_cgen.bench.worker", impl, case_id,
           str(n)]
    if not warmup:
        cmd.append("--no-warmup")
    if gc_off:
        cmd.append("--gc-off")
    return cmd


def parse_worker_output(stdout, stderr, returncode):
    lines = [line for line in stdout.splitlines() if line.strip()]
    if lines:
        try:
            return json.loads(lines[-1])
        except ValueError:
            pass
    tail = (stderr or stdout or "").strip().splitlines()[-12:]
    return {"status": "error",
            "error": "worker exited %s without a result:\n%s"
                     % (returncode, "\n".join(tail))}


def run_worker(impl, case_id, n, timeout=300, warmup=True, gc_off=False):
    """Run one measurement in a subprocess; the worker's result dict."""
    try:
        proc = subprocess.run(worker_command(impl, case_id, n, warmup, gc_off),
                              capture_output=True, text=True, timeout=timeout,
                              env=worker_env())
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": "timed out after %ss" % timeout}
    return parse_worker_output(proc.stdout, proc.stderr, proc.returncode)


def case_size(case, quick):
    return case.quick_n if quick else case.n


def run(case_ids, impl_names, rounds, quick=False, progress=None,
        timeout=None, floor=True, gc_off=False):
    """Measure; returns ``{case_id: {impl: summary}}``.

    A summary is ``{"status": "ok", "best_ns_per_op", "median_ns_per_op",
    "runs_ns_per_op", "n", "variant", ...}`` or ``{"status": "n/a" |
    "error", "reason" | "error"}``.  ``floor`` adds the pure-C probe for the
    cases that have one (9, 10) when a C compiler is there.
    """
    if timeout is None:
        timeout = 60 if quick else 240
    from . import floor as floor_mod
    runs = {cid: {impl: [] for impl in impl_names + ["floor"]}
            for cid in case_ids}
    settled = {}          # (case, impl) -> final n/a or error summary
    for impl in impl_names:
        ok, why = impls_mod.installed(impl)
        if not ok:
            for cid in case_ids:
                settled[(cid, impl)] = {"status": "n/a", "reason": why}
    for r in range(rounds):
        k = r % len(impl_names) if impl_names else 0
        order = impl_names[k:] + impl_names[:k]
        for cid in case_ids:
            case = cases_mod.BY_ID[cid]
            extra = ["floor"] if floor and cid in floor_mod.CASES else []
            for impl in order + extra:
                if (cid, impl) in settled:
                    continue
                n = case_size(case, quick)
                if impl == "floor":
                    res = floor_mod.run_once(cid, n)
                else:
                    res = run_worker(impl, cid, n, timeout=timeout,
                                     gc_off=gc_off)
                if progress:
                    progress(r, rounds, cid, impl, res)
                if res.get("status") == "ok":
                    res["n"] = n
                    runs[cid][impl].append(res)
                else:
                    settled[(cid, impl)] = res
    out = {}
    for cid in case_ids:
        out[cid] = {}
        with_floor = floor and cid in floor_mod.CASES
        for impl in impl_names + (["floor"] if with_floor else []):
            if (cid, impl) in settled and not runs[cid][impl]:
                out[cid][impl] = settled[(cid, impl)]
            elif runs[cid][impl]:
                out[cid][impl] = summarize(runs[cid][impl])
                if (cid, impl) in settled:     # failed in a later round
                    out[cid][impl]["later_error"] = settled[(cid, impl)]
            else:
                out[cid][impl] = {"status": "n/a", "reason": "not run"}
    return out


def summarize(results):
    per_op = [r["ns_per_op"] for r in results]
    best = min(results, key=lambda r: r["ns_per_op"])
    summary = {
        "status": "ok",
        "best_ns_per_op": best["ns_per_op"],
        "median_ns_per_op": statistics.median(per_op),
        "runs_ns_per_op": per_op,
        "n": best["n"],
        "ops": best["ops"],
        "variant": best.get("variant", ""),
    }
    if "extra" in best:
        summary["extra"] = best["extra"]
        summary["runs_extra"] = [r.get("extra") for r in results]
    return summary


def available_impls(requested=None):
    """``(names, info)``: the implementations to run (installed ones among
    ``requested``, all by default) and ``{name: {"installed", ...}}``."""
    names = requested or impls_mod.IMPLS
    info = {}
    chosen = []
    for name in names:
        if name not in impls_mod.IMPLS:
            raise ValueError("unknown implementation %r (known: %s)"
                             % (name, ", ".join(impls_mod.IMPLS)))
        ok, detail = impls_mod.installed(name)
        info[name] = {"installed": ok,
                      "description": impls_mod.DESCRIPTIONS[name]}
        info[name]["version" if ok else "reason"] = detail
        chosen.append(name)
    return chosen, info
