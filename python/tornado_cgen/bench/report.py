"""Turn measurements into the table, the verdicts and the JSON document."""
from . import cases as cases_mod
from . import machine

ANCHORS = ["tornado", "asyncio", "uvloop"]
INSTALL = cases_mod.INSTALL


def _value(results, name, stat="best"):
    """The figure of implementation ``name`` the targets use: the best of
    the rounds, or their median (``stat="median"``, the wrk cases)."""
    r = results.get(name)
    if r and r.get("status") == "ok":
        return r["median_ns_per_op" if stat == "median" else "best_ns_per_op"]
    return None


def speedups(results, subject="tcg", stat="best"):
    """``{anchor: anchor_ns / subject_ns}`` (> 1: the subject, tcg unless
    said, is faster) for the anchors and the floor that have a number;
    None where either side is missing."""
    mine = _value(results, subject, stat)
    out = {}
    for anchor in ANCHORS + (["floor"] if "floor" in results else []):
        if anchor == subject:
            continue
        a = _value(results, anchor, stat)
        out[anchor] = a / mine if (a is not None and mine is not None) else None
    return out


def main_subject(case):
    """Whose targets the main table shows for ``case``: tcg's, or the
    first target's subject where tcg has none (case 11: tornado+install)."""
    subjects = [t.subject for t in case.targets]
    if "tcg" in subjects or not subjects:
        return "tcg"
    return subjects[0]


def _verdict(targets):
    if any(t["met"] is False for t in targets):
        return "MISS"
    if targets and all(t["met"] for t in targets):
        return "PASS"
    return "n/a"


def evaluate(case, results, subject=None):
    """``(targets, verdict)`` for the targets of ``subject`` (default: the
    case's main subject, see :func:`main_subject`; ``"all"``: every
    target): each of the case's targets with ``met`` True, False or None (not
    measurable: a number is missing); the verdict is MISS if any target is
    missed, PASS if all are met, else n/a."""
    if subject is None:
        subject = main_subject(case)
    targets = []
    for t in case.targets:
        if subject != "all" and t.subject != subject:
            continue
        mine = _value(results, t.subject, case.stat)
        anchor = _value(results, t.anchor, case.stat)
        ref = (_value(results, t.reference, case.stat)
               if t.reference else None)
        measured, why = None, None
        needed = [(t.subject, mine), (t.anchor, anchor)]
        if t.reference:
            needed.append((t.reference, ref))
        missing = [name for name, v in needed if v is None]
        if missing:
            met = None
            why = "no %s number" % " or ".join(
                "tornado_cgen" if m == "tcg" else m for m in missing)
        elif t.kind == "time":
            measured = mine / anchor
            met = measured <= t.factor
        elif t.kind == "speed":
            measured = anchor / mine
            met = measured >= t.factor
        else:           # "share": (anchor/mine) / (anchor/ref)
            measured = ref / mine
            met = measured >= t.factor
        entry = {"text": t.text, "subject": t.subject, "anchor": t.anchor,
                 "kind": t.kind, "factor": t.factor, "measured": measured,
                 "met": met}
        if t.reference:
            entry["reference"] = t.reference
        if why:
            entry["why_not_measured"] = why
        targets.append(entry)
    return targets, _verdict(targets)


def build(info, settings, impl_info, measured, extra=None):
    """The JSON document (see ``bench/__init__.py`` for its shape)."""
    doc = dict(info)
    doc["tool"] = "python -m tornado_cgen bench"
    doc["schema"] = 1
    doc["settings"] = settings
    doc["implementations"] = impl_info
    doc["cases"] = []
    for cid, results in measured.items():
        case = cases_mod.BY_ID[cid]
        targets, _ = evaluate(case, results, "all")
        subjects = []
        for t in case.targets:
            if t.subject not in subjects:
                subjects.append(t.subject)
        verdicts = {s: evaluate(case, results, s)[1] for s in subjects}
        doc["cases"].append({
            "id": cid, "title": case.title, "unit": "ns per " + case.unit,
            "notes": case.notes, "stat": case.stat, "results": results,
            "speedup_of_tcg": speedups(results, "tcg", case.stat),
            "speedup_of_tornado_install": speedups(results, INSTALL,
                                                   case.stat),
            "targets": targets,
            "verdict": evaluate(case, results)[1],
            "main_subject": main_subject(case),
            "verdicts": verdicts,
        })
    if extra:
        doc.update(extra)
    return doc


def reason_of(r):
    """One line saying why a result is n/a or an error."""
    if r.get("status") == "n/a":
        return r.get("reason", "")
    lines = (r.get("error") or "").strip().splitlines()
    return lines[-1] if lines else "error"


def status_cell(r):
    return "ERR" if r.get("status") == "error" else "n/a"


def _fmt_v(v):
    if v is None:
        return "-"
    return "{:,.0f}".format(v) if v >= 100 else "%.1f" % v


def _fmt_ns(r, stat="best"):
    if r is None:
        return "-"
    if r.get("status") != "ok":
        return status_cell(r)
    return _fmt_v(r["median_ns_per_op" if stat == "median"
                    else "best_ns_per_op"])


def _fmt_x(v):
    if v is None:
        return "-"
    if v >= 100:
        return "%.0fx" % v
    if v >= 10:
        return "%.1fx" % v
    return "%.2fx" % v


def _fmt_pct(v):
    return "-" if v is None else "%.0f%%" % (100 * v)


def _label(name):
    from .impls import label
    return label(name)


def _fmt_target(t):
    value = ""
    if t["measured"] is not None:
        value = ": " + (_fmt_pct(t["measured"]) if t["kind"] == "share"
                        else _fmt_x(t["measured"]))
    return t["text"] + value


def _grid(head, rows, right):
    """Aligned text rows; columns in ``right`` are right-justified."""
    widths = [max(len(str(r[i])) for r in [head] + rows)
              for i in range(len(head))]

    def fmt(row):
        return "  ".join(str(v).rjust(w) if i in right else str(v).ljust(w)
                         for i, (v, w) in enumerate(zip(row, widths))).rstrip()

    return [fmt(head), "  ".join("-" * w for w in widths)] + \
        [fmt(r) for r in rows]


def format_table(doc):
    impls = [i for i in doc["settings"]["impls"]]
    show_floor = any("floor" in c["results"] for c in doc["cases"])
    cols = impls + (["floor"] if show_floor else [])
    settings = doc["settings"]
    lines = ["tornado-cgen bench: ns per operation, best of %d round(s)%s%s%s"
             % (settings["rounds"],
                " (median for case%s %s)" % (
                    "s" if len(_median_ids(doc)) > 1 else "",
                    ", ".join(_median_ids(doc))) if _median_ids(doc) else "",
                " (--quick: smoke run, not a measurement)"
                if settings["quick"] else "",
                ", GC OFF (diagnosis)" if settings.get("gc") == "off" else "")]
    lines += machine.header_lines(doc)
    lines.append("")
    head = ["#", "case"] + [_label(c) for c in cols] + \
        ["vs " + a for a in ANCHORS] + \
        (["vs floor"] if show_floor else []) + ["target", "verdict"]
    rows = []
    notes = {}
    for c in doc["cases"]:
        res = c["results"]
        stat = c.get("stat", "best")
        row = [c["id"], c["title"]]
        for name in cols:
            r = res.get(name)
            cell = _fmt_ns(r, stat)
            if r and r.get("status") in ("n/a", "error"):
                notes.setdefault((_label(name), cell, reason_of(r)),
                                 []).append(c["id"])
            elif r and r.get("later_error"):
                cell += "!"
                notes.setdefault((_label(name), "! (best of the rounds that "
                                  "ran; a later round failed)",
                                  reason_of(r["later_error"])),
                                 []).append(c["id"])
            row.append(cell)
        sp = c["speedup_of_tcg"]
        row += [_fmt_x(sp.get(a)) for a in ANCHORS]
        if show_floor:
            row.append(_fmt_x(sp.get("floor")) if "floor" in res else "")
        main = c.get("main_subject", "tcg")
        row.append(("" if main == "tcg" else _label(main) + ": ") +
                   "; ".join(_fmt_target(t) for t in c["targets"]
                             if t.get("subject", "tcg") == main))
        row.append(c["verdict"])
        rows.append(row)
    lines += _grid(head, rows, set(range(2, len(head) - 2)))
    lines.append("")
    lines.append("vs X = X's ns / tcg's ns (above 1: tornado_cgen is faster). "
                 "Target: the project's goal and this run's value in the goal's "
                 "own terms")
    lines.append("(a time ratio tcg/X for \"<=\" goals, a speed-up X/tcg for "
                 "\">=\" goals). Verdict: every target met (PASS), one missed "
                 "(MISS), or not measurable (n/a).")
    if INSTALL in impls:
        lines.append("%s = %s: Tornado's own code (the tornado column's) "
                     "under tornado_cgen.install(); its targets are in the "
                     "tables below." % (_label(INSTALL), INSTALL))
    for (name, cell, reason), ids in notes.items():
        lines.append("%s %s in case%s %s: %s" % (
            name, cell, "s" if len(ids) > 1 else "", ",".join(ids), reason))
    variants = {}
    for c in doc["cases"]:
        for name in cols:
            r = c["results"].get(name)
            if r and r.get("status") == "ok":
                variants.setdefault((name, r.get("variant", "")), []).append(
                    c["id"])
    for (name, variant), ids in variants.items():
        lines.append("%s, case%s %s: %s" % (
            _label(name), "s" if len(ids) > 1 else "", ",".join(ids),
            variant))
    install = format_install_table(doc)
    if install:
        lines += [""] + install
    http = format_http_table(doc)
    if http:
        lines += [""] + http
    many = format_manyconn_table(doc)
    if many:
        lines += [""] + many
    return "\n".join(lines)


def _median_ids(doc):
    return [c["id"] for c in doc["cases"] if c.get("stat") == "median"]


def _ok_value(results, name, stat):
    r = results.get(name)
    return _value(results, name, stat) if r else None


def format_install_table(doc):
    """Row T: Tornado's code under install() against standalone
    tornado_cgen, both as speed-ups over Tornado (cases that are not HTTP
    cases and have a tornado+install number)."""
    from .impls import HTTP_CASES
    if INSTALL not in doc["settings"]["impls"]:
        return []
    rows = []
    for c in doc["cases"]:
        res, stat = c["results"], c.get("stat", "best")
        if c["id"] in HTTP_CASES or INSTALL not in res:
            continue
        if all(res.get(name, {}).get("status") == "n/a"
               for name in ("tornado", INSTALL)):
            continue        # asyncio code only (10s, 12)
        tornado = _ok_value(res, "tornado", stat)
        tcg = _ok_value(res, "tcg", stat)
        mine = _ok_value(res, INSTALL, stat)
        share = [t for t in c["targets"] if t.get("subject") == INSTALL and
                 t["kind"] == "share"]
        sp_tcg = tornado / tcg if tornado and tcg else None
        sp_mine = tornado / mine if tornado and mine else None
        rows.append([
            c["id"], c["title"], _fmt_v(tornado), _fmt_v(tcg), _fmt_v(mine),
            _fmt_x(sp_tcg), _fmt_x(sp_mine),
            _fmt_pct(share[0]["measured"]) if share else "-",
            ">= %.0f%%" % (100 * share[0]["factor"]) if share else "-",
            c.get("verdicts", {}).get(INSTALL, "-") if share else "-"])
    if not rows:
        return []
    lab = _label(INSTALL)
    head = ["#", "case", "tornado", "tcg", lab, "tcg vs tornado",
            lab + " vs tornado", "share", "target", "verdict"]
    lines = ["Row T, Tornado's code under install(), ns per op, best "
             "of the rounds: %s's speed-up over Tornado as a share of "
             "tcg's" % lab]
    lines += _grid(head, rows, set(range(2, len(head) - 1)))
    lines.append("share = (tornado / %s) / (tornado / tcg) = tcg's ns / %s's "
                 "ns; the target is >= 80%% in cases 1-8. Case 10: tcg runs "
                 "asyncio protocols, tornado and %s Tornado's IOStream."
                 % (lab, lab, lab))
    return lines


def _rps(ns):
    return "-" if not ns else "{:,.0f}".format(1e9 / ns)


def format_http_table(doc):
    """Case 11 (11, 11c): requests/s, the median of the interleaved wrk
    runs, for Tornado on asyncio, on uvloop and under install()."""
    impls = doc["settings"]["impls"]
    order = [n for n in ("tornado", "uvloop", INSTALL) if n in impls]
    rows, spread, pinning = [], [], None
    from .impls import HTTP_CASES
    for c in doc["cases"]:
        if c["id"] not in HTTP_CASES:
            continue
        res = c["results"]
        row = [c["id"], c["title"].split(", per request")[0]]
        for name in order:
            row.append(_rps(_ok_value(res, name, "median")))
            r = res.get(name, {})
            runs = r.get("runs_ns_per_op") if r.get("status") == "ok" else None
            if runs:
                spread.append("%s %s: %s req/s" % (
                    c["id"], _label(name), " ".join(
                        "{:,.0f}".format(1e9 / v) for v in runs)))
            pinning = pinning or r.get("extra", {}).get("pinning")
        sp = c.get("speedup_of_tornado_install", {})
        row += [_fmt_x(sp.get("tornado")), _fmt_x(sp.get("uvloop"))]
        row.append("; ".join(_fmt_target(t) for t in c["targets"]
                             if t.get("subject") == INSTALL))
        row.append(c.get("verdicts", {}).get(INSTALL, "n/a"))
        rows.append(row)
    if not rows:
        return []
    lab = _label(INSTALL)
    head = ["#", "handler"] + ["Tornado on asyncio" if n == "tornado" else
                               "Tornado on uvloop" if n == "uvloop" else
                               "Tornado under install()" for n in order] + \
        [lab + " vs asyncio", lab + " vs uvloop", "target", "verdict"]
    lines = ["Case 11, Tornado's HTTP server under wrk: requests/s, median of "
             "the interleaved rounds%s" % (" (%s)" % pinning if pinning
                                           else "")]
    lines += _grid(head, rows, set(range(2, len(head) - 2)))
    lines.append("every run, in round order:")
    lines += ["  " + s for s in spread]
    return lines


def format_manyconn_table(doc):
    """Case 12: round trips/s over the 100 connections (the median of the
    rounds) and what serving them cost the server process in CPU time per
    round trip (the median of the rounds' figures), with every run."""
    impls = [n for n in doc["settings"]["impls"] if n not in ("tornado",
                                                              INSTALL)]
    for c in doc["cases"]:
        if c["id"] == "12":
            break
    else:
        return []
    res = c["results"]
    rows, spread, pinning = [], [], None
    for name in impls:
        r = res.get(name, {})
        if r.get("status") != "ok":
            continue
        cpu = [e["server_cpu_ns_per_op"] for e in r.get("runs_extra") or []
               if e and "server_cpu_ns_per_op" in e]
        cpu.sort()
        rows.append([_label(name), _rps(r["median_ns_per_op"]),
                     _fmt_v(r["median_ns_per_op"]),
                     _fmt_v(cpu[len(cpu) // 2]) if cpu else "-"])
        spread.append("%s: %s round trips/s" % (_label(name), " ".join(
            "{:,.0f}".format(1e9 / v) for v in r["runs_ns_per_op"])))
        pinning = pinning or r.get("extra", {}).get("pinning")
    if not rows:
        return []
    lines = ["Case 12, 100 connections from a C client in another process: "
             "medians of the rounds%s" % (" (%s)" % pinning if pinning
                                          else "")]
    lines += _grid(["impl", "round trips/s", "ns per round trip",
                    "server CPU ns per round trip"], rows, {1, 2, 3})
    lines.append("server CPU = the server process's user + system time "
                 "while the client ran, over its round trips (lower is "
                 "better); every run, in round order:")
    lines += ["  " + s for s in spread]
    return lines
