"""``python -m tornado_cgen bench``: the command line."""
import argparse
import json
import sys

from . import cases as cases_mod
from . import harness, machine, report


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m tornado_cgen bench",
        description="Side-by-side benchmark of tornado_cgen against Tornado's "
                    "gen.coroutine, native asyncio and uvloop (ns per op).")
    p.add_argument("--cases", metavar="LIST",
                   help="comma-separated case ids or ranges, e.g. 1-8,11 (default: "
                        "all; 5 brings 5d, 10 brings 10s, 11 brings 11c, "
                        "also as the last case of a range)")
    p.add_argument("--impl", metavar="LIST",
                   help="comma-separated implementations among "
                        "tcg,tornado,tornado+install,asyncio,uvloop "
                        "(default: all installed)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run in seconds: tiny N, one round")
    p.add_argument("--rounds", type=int, metavar="N",
                   help="rounds (default 5, or 1 with --quick)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="write the results as JSON to FILE (or stdout; the "
                        "table then goes to stderr)")
    p.add_argument("--plot", metavar="FILE.png",
                   help="bar chart of the ratios (needs matplotlib)")
    p.add_argument("--callgrind", action="store_true",
                   help="also count instructions per op with valgrind's "
                        "callgrind at two sizes (cases 1-10 and 10s unless "
                        "--cases)")
    p.add_argument("--syscalls", action="store_true",
                   help="also count syscalls per op with strace -c at two "
                        "sizes (cases 1-10 and 10s unless --cases)")
    p.add_argument("--no-timing", action="store_true",
                   help="skip the wall-clock table (with --callgrind/--syscalls)")
    p.add_argument("--gc-off", action="store_true",
                   help="disable the garbage collector during the timed runs "
                        "(diagnosis only: the headline numbers keep GC on)")
    p.add_argument("--no-floor", action="store_true",
                   help="do not build and run the C floor probe (cases 9, 10)")
    p.add_argument("--list", action="store_true",
                   help="list the cases and exit")
    return p


def parse_args(argv):
    p = build_parser()
    args = p.parse_args(argv)
    try:
        args.case_ids = cases_mod.select(args.cases)
    except ValueError as e:
        p.error(str(e))
    args.impl_names = None
    if args.impl:
        args.impl_names = [s.strip() for s in args.impl.split(",") if s.strip()]
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.no_timing and not (args.callgrind or args.syscalls):
        p.error("--no-timing needs --callgrind or --syscalls")
    args.count_case_ids = (args.case_ids if args.cases
                           else list(cases_mod.DEFAULT_CALLGRIND_CASES))
    return args


def _progress(out):
    def timing(r, rounds, cid, impl, res):
        if res.get("status") == "ok":
            what = "%.1f ns/op" % res["ns_per_op"]
        else:
            what = res.get("status")
        print("  round %d/%d  case %-3s %-8s %s" % (r + 1, rounds, cid, impl,
                                                   what), file=out, flush=True)

    def counting(tool, cid, impl, res):
        what = ("%.1f/op" % res["per_op"]) if res.get("status") == "ok" \
            else res.get("status")
        print("  %s  case %-3s %-8s %s" % (tool, cid, impl, what), file=out,
              flush=True)
    return timing, counting


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        from .impls import label
        for c in cases_mod.CASES:
            print("%-3s %-56s N=%-8d %s" % (c.id, c.title, c.n, "; ".join(
                ("" if t.subject == "tcg" else label(t.subject) + " ") +
                t.text for t in c.targets)))
        return 0
    try:
        impl_names, impl_info = harness.available_impls(args.impl_names)
    except ValueError as e:
        build_parser().error(str(e))

    to_stdout_json = args.json == "-"
    out = sys.stderr if to_stdout_json else sys.stdout
    timing_progress, count_progress = _progress(sys.stderr)

    info = machine.describe()
    settings = {"cases": args.case_ids, "impls": impl_names,
                "rounds": args.rounds, "quick": args.quick,
                "gc": "off" if args.gc_off else "on",
                "sizes": {cid: harness.case_size(cases_mod.BY_ID[cid],
                                                 args.quick)
                          for cid in args.case_ids}}
    measured = {}
    if not args.no_timing:
        measured = harness.run(args.case_ids, impl_names, args.rounds,
                               quick=args.quick, progress=timing_progress,
                               floor=not args.no_floor, gc_off=args.gc_off)
    extra = {}
    from . import counts
    for tool, wanted in (("callgrind", args.callgrind),
                         ("strace", args.syscalls)):
        if wanted:
            extra[tool] = counts.run(tool, args.count_case_ids, impl_names,
                                     quick=args.quick,
                                     progress=count_progress)
    machine.finish(info)
    doc = report.build(info, settings, impl_info, measured, extra)

    if measured:
        print(report.format_table(doc), file=out)
    else:
        print("\n".join(machine.header_lines(doc)), file=out)
    for tool in ("callgrind", "strace"):
        if tool in extra:
            print("", file=out)
            print(counts.format_table(tool, extra[tool], impl_names), file=out)

    if args.json:
        text = json.dumps(doc, indent=2, sort_keys=False)
        if to_stdout_json:
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
            print("JSON written to %s" % args.json, file=out)
    status = 0
    if args.plot:
        from . import plot
        try:
            plot.plot(doc, args.plot)
            print("plot written to %s" % args.plot, file=out)
        except plot.PlotUnavailable as e:
            print("--plot: %s" % e, file=sys.stderr)
            status = 1
    return status
