"""Run one case of one implementation and print the result as JSON.

    python -m tornado_cgen.bench.worker IMPL CASE N [--no-warmup] [--gc-off]

The harness starts one of these per (round, case, implementation), with the
same interpreter (``sys.executable``).  For ``tornado+install`` the process
calls ``tornado_cgen.install()`` before anything else (before Tornado is
imported); every other implementation refuses to run with install() in
effect.  A small warm-up run (N/10) comes first, then ``gc.collect()``, then
the timed run of N operations with GC on (``--gc-off``: disabled, for
diagnosis only).
The last line of stdout is one JSON object:

    {"status": "ok", "ns": ..., "ops": ..., "ns_per_op": ..., "variant": ...}
    {"status": "n/a", "reason": ...}
    {"status": "error", "error": ...}
"""
import gc
import json
import sys
import traceback

from . import impls
from .common import NotAvailable


def run_one(impl, case_id, n, warmup=True, gc_off=False):
    """Run the case in this process; return the result dict.  In a
    process that is not a worker (the tests), tornado+install installs
    for the duration of the call and uninstalls afterwards."""
    try:
        with impls.environment(impl):
            return _run_one(impl, case_id, n, warmup, gc_off)
    except NotAvailable as e:
        return {"status": "n/a", "reason": str(e)}


def _run_one(impl, case_id, n, warmup, gc_off):
    try:
        run, variant = impls.resolve(impl, case_id)
    except NotAvailable as e:
        return {"status": "n/a", "reason": str(e)}
    try:
        if case_id in impls.HTTP_CASES:
            warmup = False      # n is a duration; wrk runs are costly
        if warmup:
            run(max(1, n // 10))
        gc.collect()
        if gc_off:
            gc.disable()
        try:
            out = run(n)
        finally:
            gc.enable()
    except NotAvailable as e:
        return {"status": "n/a", "reason": str(e)}
    except Exception:
        return {"status": "error", "error": traceback.format_exc(limit=8)}
    elapsed, ops = out[0], out[1]
    result = {"status": "ok", "ns": int(elapsed), "ops": int(ops),
              "ns_per_op": elapsed / ops, "variant": variant}
    if len(out) > 2:
        result["extra"] = out[2]
    if elapsed <= 0 or ops <= 0:
        result = {"status": "error",
                  "error": "case reported %r ns for %r ops" % (elapsed, ops)}
    return result


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    warmup = "--no-warmup" not in argv
    gc_off = "--gc-off" in argv
    args = [a for a in argv if a not in ("--no-warmup", "--gc-off")]
    if len(args) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    impl, case_id, n = args[0], args[1], int(args[2])
    impls.prepare_process(impl)
    result = run_one(impl, case_id, n, warmup=warmup, gc_off=gc_off)
    sys.stdout.flush()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
