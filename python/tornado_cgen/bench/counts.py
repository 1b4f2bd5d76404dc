"""Deterministic figures: instructions (callgrind) and syscalls (strace) per op.

Both run the same worker as the timing harness, without its warm-up, at two
sizes N1 < N2, and report ``(count(N2) - count(N1)) / (ops(N2) - ops(N1))``:
start-up, imports and loop creation cancel out; ``PYTHONHASHSEED=0`` keeps
dict probing the same from run to run.  Callgrind counts user-space
instructions (``Ir``) of the real interpreter binary (``sys.executable``,
never a shell shim); it cannot see the kernel, so ``strace -f -c`` gives the
syscalls per op beside it (0 -> 1 syscall per op is a ~1 us regression here
that callgrind does not show).
"""
import os
import re
import shutil
import subprocess
import tempfile

from . import cases as cases_mod
from . import harness, report


def _sizes(case, quick):
    n1, n2 = case.callgrind_sizes
    if quick:
        n1, n2 = max(10, n1 // 10), max(20, n2 // 10)
    return n1, n2


def _run_counted(tool_cmd, out_file, impl, case_id, n, timeout):
    cmd = tool_cmd + harness.worker_command(impl, case_id, n, warmup=False)
    env = harness.worker_env()
    # A fixed string-hash seed: dict probing (and so Ir) otherwise varies by
    # a few percent from run to run.
    env["PYTHONHASHSEED"] = "0"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": "timed out after %ss" % timeout}
    res = harness.parse_worker_output(proc.stdout, proc.stderr,
                                      proc.returncode)
    if res.get("status") == "ok" and not os.path.exists(out_file):
        return {"status": "error", "error": "no output file from %s:\n%s"
                % (tool_cmd[0], proc.stderr[-800:])}
    return res


def callgrind_total(path):
    """Total Ir from a callgrind output file."""
    with open(path) as f:
        text = f.read()
    m = re.search(r"^(?:totals|summary):\s+(\d+)", text, re.M)
    if not m:
        raise ValueError("no totals in %s" % path)
    return int(m.group(1))


def strace_total(path):
    """Total syscalls from an ``strace -c`` summary (strace 5/6 layout:
    ``% time, seconds, usecs/call, calls, [errors], syscall``)."""
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[-1] == "total":
                return int(parts[3])
    raise ValueError("no total line in %s" % path)


TOOLS = {
    "callgrind": {
        "exe": "valgrind",
        "cmd": lambda out: ["valgrind", "--tool=callgrind",
                            "--callgrind-out-file=" + out],
        "total": callgrind_total,
        "unit": "instructions",
    },
    "strace": {
        "exe": "strace",
        "cmd": lambda out: ["strace", "-f", "-c", "-o", out],
        "total": strace_total,
        "unit": "syscalls",
    },
}


# Cases with a fixed op count that are still not counted, and why.
NOT_COUNTED = {
    "12": "case 12's clients are a child process (strace -f would count "
          "their system calls with the server's), and how many round trips "
          "one loop iteration serves follows timing",
}


def measure(tool, impl, case_id, quick=False, timeout=1800):
    """Count per op for one (case, implementation): a result dict with
    ``per_op``, or ``status`` "n/a"/"error"."""
    spec = TOOLS[tool]
    if shutil.which(spec["exe"]) is None:
        return {"status": "n/a", "reason": "%s is not installed" % spec["exe"]}
    case = cases_mod.BY_ID[case_id]
    if not case.callgrind_sizes:
        return {"status": "n/a", "reason": NOT_COUNTED.get(
            case_id, "case %s has no fixed op count" % case_id)}
    totals, ops, variant = [], [], ""
    with tempfile.TemporaryDirectory(prefix="tcg-bench-") as tmp:
        for i, n in enumerate(_sizes(case, quick)):
            out = os.path.join(tmp, "%s.%d" % (tool, i))
            res = _run_counted(spec["cmd"](out), out, impl, case_id, n,
                               timeout)
            if res.get("status") != "ok":
                return res
            totals.append(spec["total"](out))
            ops.append(res["ops"])
            variant = res.get("variant", "")
    if ops[1] == ops[0]:
        return {"status": "error", "error": "both sizes gave %d ops" % ops[0]}
    return {"status": "ok", "per_op": (totals[1] - totals[0]) / (ops[1] - ops[0]),
            "totals": totals, "ops": ops, "unit": spec["unit"],
            "variant": variant}


def run(tool, case_ids, impl_names, quick=False, progress=None):
    out = {}
    for cid in case_ids:
        out[cid] = {}
        for impl in impl_names:
            res = measure(tool, impl, cid, quick=quick)
            if progress:
                progress(tool, cid, impl, res)
            out[cid][impl] = res
    return out


def format_table(tool, counts, impl_names):
    unit = TOOLS[tool]["unit"]
    lines = ["%s per op (%s; count(N2) - count(N1) over the op difference)"
             % (unit, tool)]
    from .impls import label
    head = ["#", "case"] + [label(i) for i in impl_names]
    rows = []
    notes = {}
    for cid, results in counts.items():
        row = [cid, cases_mod.BY_ID[cid].title]
        for impl in impl_names:
            r = results[impl]
            if r.get("status") == "ok":
                v = r["per_op"]
                row.append("{:,.0f}".format(v) if abs(v) >= 100 else "%.2f" % v)
            else:
                cell = report.status_cell(r)
                notes.setdefault((label(impl), cell, report.reason_of(r)),
                                 []).append(cid)
                row.append(cell)
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [head] + rows)
              for i in range(len(head))]

    def fmt(row):
        return "  ".join(str(v).rjust(w) if i >= 2 else str(v).ljust(w)
                         for i, (v, w) in enumerate(zip(row, widths))).rstrip()

    lines.append(fmt(head))
    lines.append("  ".join("-" * w for w in widths))
    lines += [fmt(r) for r in rows]
    for (impl, cell, why), ids in notes.items():
        lines.append("%s %s in case%s %s: %s" % (
            impl, cell, "s" if len(ids) > 1 else "", ",".join(ids), why))
    return "\n".join(lines)
