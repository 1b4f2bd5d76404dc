"""Where the numbers come from: machine, interpreter, package versions, date."""
import datetime
import os
import platform
import subprocess
import sys
import sysconfig


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _version(module):
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return getattr(mod, "version", None) or getattr(mod, "__version__", "?")


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe():
    """A JSON-able description of this run's environment."""
    build = "debug" if sysconfig.get_config_var("Py_DEBUG") else "release"
    config = sysconfig.get_config_var("CONFIG_ARGS") or ""
    if "--enable-optimizations" in config:
        build += ", PGO"
    if "--with-lto" in config:
        build += ", LTO"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc)
                        .strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "kernel": "%s %s" % (platform.system(), platform.release()),
            "arch": platform.machine(),
            "loadavg_at_start": _loadavg(),
        },
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "build": build,
            "compiler": platform.python_compiler(),
            "executable": sys.executable,
        },
        "versions": {
            "tornado_cgen": _version("tornado_cgen"),
            "tornado_cgen_git": _git_commit(),
            "tornado": _version("tornado"),
            "uvloop": _version("uvloop"),
        },
    }


def finish(info):
    """Record what the machine looked like when the run ended."""
    info["machine"]["loadavg_at_end"] = _loadavg()
    return info


def _fmt_load(load):
    return "/".join("%.2f" % x for x in load) if load else "?"


def header_lines(info):
    m, p, v = info["machine"], info["python"], info["versions"]
    tcg = v["tornado_cgen"] or "?"
    if v.get("tornado_cgen_git"):
        tcg += " (git %s)" % v["tornado_cgen_git"]
    return [
        "date:     %s" % info["date"],
        "machine:  %s, %s cores, %s (%s); load average %s at start, %s at "
        "end" % (m["cpu"], m["cores"], m["kernel"], m["arch"],
                 _fmt_load(m.get("loadavg_at_start")),
                 _fmt_load(m.get("loadavg_at_end"))),
        "python:   %s %s, %s build, %s  [%s]" % (
            p["implementation"], p["version"], p["build"], p["compiler"],
            p["executable"]),
        "versions: tornado_cgen %s, tornado %s, uvloop %s" % (
            tcg, v["tornado"] or "-", v["uvloop"] or "-"),
    ]
