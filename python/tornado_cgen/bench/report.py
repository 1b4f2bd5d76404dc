"""Turn measurements into the table, the verdicts and the JSON document."""
from . import cases as cases_mod
from . import machine

ANCHORS = ["tornado", "asyncio", "uvloop"]


def _best(results, name):
    r = results.get(name)
    if r and r.get("status") == "ok":
        return r["best_ns_per_op"]
    return None


def speedups(results):
    """``{anchor: anchor_ns / tcg_ns}`` (> 1: tcg is faster) for the anchors
    and the floor that have a number; None where either side is missing."""
    tcg = _best(results, "tcg")
    out = {}
    for anchor in ANCHORS + (["floor"] if "floor" in results else []):
        a = _best(results, anchor)
        out[anchor] = a / tcg if (a is not None and tcg is not None) else None
    return out


def evaluate(case, results):
    """``(targets, verdict)``: each DESIGN target with ``met`` True, False
    or None (not measurable: tcg or the anchor has no number); the verdict
    is MISS if any target is missed, PASS if all are met, else n/a."""
    tcg = _best(results, "tcg")
    targets = []
    for t in case.targets:
        anchor = _best(results, t.anchor)
        measured = None
        if tcg is None or anchor is None:
            met, why = None, ("no tornado_cgen number" if tcg is None
                              else "no %s number" % t.anchor)
        elif t.kind == "time":
            measured = tcg / anchor
            met, why = measured <= t.factor, None
        else:
            measured = anchor / tcg
            met, why = measured >= t.factor, None
        entry = {"text": t.text, "anchor": t.anchor, "kind": t.kind,
                 "factor": t.factor, "measured": measured, "met": met}
        if why:
            entry["why_not_measured"] = why
        targets.append(entry)
    if any(t["met"] is False for t in targets):
        verdict = "MISS"
    elif targets and all(t["met"] for t in targets):
        verdict = "PASS"
    else:
        verdict = "n/a"
    return targets, verdict


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
        targets, verdict = evaluate(case, results)
        doc["cases"].append({
            "id": cid, "title": case.title, "unit": "ns per " + case.unit,
            "notes": case.notes, "results": results,
            "speedup_of_tcg": speedups(results),
            "targets": targets, "verdict": verdict,
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


def _fmt_ns(r):
    if r is None:
        return "-"
    if r.get("status") != "ok":
        return status_cell(r)
    v = r["best_ns_per_op"]
    return "{:,.0f}".format(v) if v >= 100 else "%.1f" % v


def _fmt_x(v):
    if v is None:
        return "-"
    if v >= 100:
        return "%.0fx" % v
    if v >= 10:
        return "%.1fx" % v
    return "%.2fx" % v


def format_table(doc):
    impls = [i for i in doc["settings"]["impls"]]
    show_floor = any("floor" in c["results"] for c in doc["cases"])
    cols = impls + (["floor"] if show_floor else [])
    settings = doc["settings"]
    lines = ["tornado-cgen bench: ns per operation, best of %d round(s)%s%s"
             % (settings["rounds"],
                " (--quick: smoke run, not a measurement)"
                if settings["quick"] else "",
                ", GC OFF (diagnosis)" if settings.get("gc") == "off" else "")]
    lines += machine.header_lines(doc)
    lines.append("")
    head = ["#", "case"] + cols + ["vs " + a for a in ANCHORS] + \
        (["vs floor"] if show_floor else []) + ["target", "verdict"]
    rows = []
    notes = {}
    for c in doc["cases"]:
        res = c["results"]
        row = [c["id"], c["title"]]
        for name in cols:
            r = res.get(name)
            cell = _fmt_ns(r)
            if r and r.get("status") in ("n/a", "error"):
                notes.setdefault((name, cell, reason_of(r)), []).append(
                    c["id"])
            elif r and r.get("later_error"):
                cell += "!"
                notes.setdefault((name, "! (best of the rounds that ran; a "
                                  "later round failed)",
                                  reason_of(r["later_error"])),
                                 []).append(c["id"])
            row.append(cell)
        sp = c["speedup_of_tcg"]
        row += [_fmt_x(sp.get(a)) for a in ANCHORS]
        if show_floor:
            row.append(_fmt_x(sp.get("floor")) if "floor" in res else "")
        row.append("; ".join(
            t["text"] + ("" if t["measured"] is None
                         else ": " + _fmt_x(t["measured"]))
            for t in c["targets"]))
        row.append(c["verdict"])
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [head] + rows)
              for i in range(len(head))]
    right = set(range(2, len(head) - 2))

    def fmt(row):
        return "  ".join(str(v).rjust(w) if i in right else str(v).ljust(w)
                         for i, (v, w) in enumerate(zip(row, widths))).rstrip()

    lines.append(fmt(head))
    lines.append("  ".join("-" * w for w in widths))
    lines += [fmt(r) for r in rows]
    lines.append("")
    lines.append("vs X = X's ns / tcg's ns (above 1: tornado_cgen is faster). "
                 "Target: the DESIGN goal and this run's value in the goal's "
                 "own terms")
    lines.append("(a time ratio tcg/X for \"<=\" goals, a speed-up X/tcg for "
                 "\">=\" goals). Verdict: every target met (PASS), one missed "
                 "(MISS), or not measurable (n/a).")
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
            name, "s" if len(ids) > 1 else "", ",".join(ids), variant))
    for c in doc["cases"]:
        r = c["results"]
        for name in cols:
            e = r.get(name, {}).get("extra")
            if e and "rps" in e:
                lines.append("case %s %s: %.0f requests/s (wrk %s)"
                             % (c["id"], name, e["rps"], e.get("wrk", "")))
    return "\n".join(lines)
