"""``--plot FILE.png``: a bar chart of the run, with matplotlib (optional).

One group of bars per case; each bar is an implementation's speed relative
to native asyncio in the same run (asyncio's ns / the implementation's ns,
log scale: above 1 is faster than asyncio).  tornado_cgen's ratio to each
anchor is the ratio of its bar to that anchor's bar.  Cases without an
asyncio number (11: asyncio has no HTTP server) are left out of the chart.
"""

ORDER = ["tcg", "tornado", "tornado+install", "asyncio", "uvloop", "floor"]


class PlotUnavailable(Exception):
    pass


def plot(doc, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib, an optional extra: pip install matplotlib")

    cases = []
    for c in doc["cases"]:
        res = c["results"]
        base = res.get("asyncio", {})
        if base.get("status") != "ok":
            continue
        bars = {}
        for name in ORDER:
            r = res.get(name)
            if r and r.get("status") == "ok":
                bars[name] = base["best_ns_per_op"] / r["best_ns_per_op"]
        cases.append((c["id"], c["verdict"], bars))
    if not cases:
        raise PlotUnavailable("nothing to plot: no case has an asyncio number "
                              "to compare with")
    names = [n for n in ORDER if any(n in b for _, _, b in cases)]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(cases)), 5))
    for k, name in enumerate(names):
        xs = [i + (k - (len(names) - 1) / 2) * width
              for i, (_, _, b) in enumerate(cases) if name in b]
        ys = [b[name] for _, _, b in cases if name in b]
        ax.bar(xs, ys, width, label=name)
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels(["%s\n%s" % (cid, verdict) for cid, verdict, _ in cases])
    ax.set_xlabel("case (verdict for tornado_cgen against its targets)")
    ax.set_ylabel("speed vs native asyncio (asyncio ns / ns), log")
    ax.set_title("tornado-cgen bench, %s, Python %s"
                 % (doc["date"], doc["python"]["version"]))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
