"""Where one HTTP request's instructions go: callgrind on Tornado's server.

    python tools/profile_http.py [--impl tornado+install|tornado|uvloop]
                                 [--path /|/coroutine] [--from 100 --to 300]
                                 [--no-split] [--keep DIR]

The server is the application of bench cases 11 and 11c
(``tornado_cgen.bench.httpcase.make_app``) on 127.0.0.1, run under
``valgrind --tool=callgrind`` with the real interpreter; a client in this
process sends keep-alive GET requests over one connection, one at a time.
Counting starts when request ``--from`` has been logged and stops at
``--to``, so start-up and warm-up stay out: the figures are instructions
per request, over ``to - from`` requests (callgrind counts user space only;
the kernel's share of each syscall is invisible to it).

callgrind sees C functions; Python code shows up as the interpreter's
functions.  To split the interpreter's work by the Python file it ran, the
server installs a PEP 523 frame-evaluation hook (a small C helper built
with ``cc`` on first use) that knows which file each frame's code is from,
and tells callgrind to collect only while the innermost Python frame is
from one group of files; one server run per group.  The hook's own cost
is left out of the split.  The hook also stops CPython 3.11 from inlining
Python-to-Python calls, which costs some instructions per call: the
unhooked total is measured too (first run) and printed beside the sum of
the split.  About 10 minutes per handler.

Groups (by the file of the innermost Python frame; ``ROWS`` sums them into
the table):

* ``loop``: ``tornado_cgen/loop.py`` and what runs below the first Python
  frame that started after the server was up (the loop dispatching: our C
  loop, or uvloop's C code for ``--impl uvloop``);
* ``ioloop``: ``tornado/ioloop.py``, ``tornado/platform/asyncio.py``,
  ``tornado_cgen/_speedup.py`` (install()'s IOLoop methods),
  ``tornado_cgen/ioloop.py``;
* ``gen``: ``tornado/gen.py``, ``tornado/concurrent.py``,
  ``tornado_cgen/gen.py`` and ``concurrent.py``;
* ``iostream``: ``tornado/iostream.py`` (its ``memset``, the zeroed read
  buffers, gets a row of its own);
* ``http1connection``, ``web``, ``httputil``, ``httpserver`` (with
  ``routing``, ``tcpserver``, ``netutil``) and ``tornado`` (Tornado's other
  modules);
* ``asyncio``: the standard library's ``asyncio`` package;
* ``logging``, ``typing`` (typing, functools, abc, enum, collections...),
  ``time`` (email, time, datetime, calendar), ``text`` (urllib, re, http,
  string, encodings) and ``other``: the rest of the standard library and
  this tool.

The C extension's functions are put in rows by source file whatever group's
run they were counted in: ``ext/loop.c`` and ``handle.c`` (our C loop),
``runner.c`` and ``future.c`` (gen), ``module.c``.
"""
import argparse
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# One server run per group; "loop" must stay first (group 0 is also what
# runs below the first frame the hook saw).
GROUPS = ["loop", "ioloop", "gen", "iostream",
          "http1connection", "web", "httputil", "httpserver", "tornado",
          "asyncio", "logging", "typing", "time", "text", "other"]

_TORNADO = {
    "ioloop.py": "ioloop", "platform/asyncio.py": "ioloop",
    "gen.py": "gen", "concurrent.py": "gen",
    "iostream.py": "iostream",
    "http1connection.py": "http1connection",
    "web.py": "web",
    "httputil.py": "httputil",
    "httpserver.py": "httpserver", "routing.py": "httpserver",
    "tcpserver.py": "httpserver", "netutil.py": "httpserver",
}
_STDLIB = {
    "logging": "logging",
    "typing": "typing", "functools": "typing", "abc": "typing",
    "enum": "typing", "contextlib": "typing", "types": "typing",
    "collections": "typing", "weakref": "typing", "numbers": "typing",
    "_collections_abc": "typing", "inspect": "typing",
    "email": "time", "time": "time", "datetime": "time",
    "calendar": "time", "locale": "time", "_strptime": "time",
    "urllib": "text", "re": "text", "http": "text", "string": "text",
    "base64": "text", "hashlib": "text", "encodings": "text",
}


def group_of(filename):
    """The group of a code object's file."""
    f = filename.replace(os.sep, "/")
    if "/tornado_cgen/" in f:
        base = f.rsplit("/", 1)[1]
        if base == "loop.py":
            return "loop"
        if base in ("_speedup.py", "ioloop.py"):
            return "ioloop"
        if base in ("gen.py", "concurrent.py"):
            return "gen"
        return "other"
    if "/tornado/" in f:
        return _TORNADO.get(f.rsplit("/tornado/", 1)[1], "tornado")
    if "/asyncio/" in f:
        return "asyncio"
    parts = f.split("/")
    for k, part in enumerate(parts[:-1]):
        if part.startswith("python3.") and "site-packages" not in parts:
            top = parts[k + 1]
            top = top[:-3] if top.endswith(".py") else top
            return _STDLIB.get(top, "other")
    return "other"


# Rows of the table: (title, keys summed, indent).  The C extension's files
# and the hook get rows of their own whatever group's run they were in.
ROWS = [
    ("our C loop (ext/loop.c, handle.c)", ["c-loop"], 0),
    ("loop, the rest: dispatch outside callbacks, loop.py", ["loop"], 0),
    ("Tornado's IOLoop layer (ioloop.py, platform/asyncio.py, "
     "_speedup.py)", ["ioloop"], 0),
    ("gen: ext/runner.c, future.c + tornado/gen.py, concurrent.py",
     ["c-gen", "gen"], 0),
    ("ext/runner.c, future.c", ["c-gen"], 1),
    ("IOStream (tornado/iostream.py)", ["iostream", "memset"], 0),
    ("memset (its zeroed 64 KiB read buffers)", ["memset"], 1),
    ("HTTP: http1connection, web, httputil, httpserver, ...",
     ["http1connection", "web", "httputil", "httpserver", "tornado"], 0),
    ("http1connection.py", ["http1connection"], 1),
    ("web.py", ["web"], 1),
    ("httputil.py", ["httputil"], 1),
    ("httpserver.py, routing.py, tcpserver.py, netutil.py",
     ["httpserver"], 1),
    ("Tornado's other modules (escape, util, log, ...)", ["tornado"], 1),
    ("stdlib asyncio", ["asyncio"], 0),
    ("interpreter/other: the rest of the stdlib, this tool",
     ["logging", "typing", "time", "text", "other", "c-module"], 0),
    ("logging", ["logging"], 1),
    ("typing, functools, abc, enum, collections, ...", ["typing"], 1),
    ("email, time, datetime, calendar", ["time"], 1),
    ("urllib, re, http (stdlib), string, encodings", ["text"], 1),
    ("the rest (this tool's request counter, ...)", ["other"], 1),
    ("ext/module.c", ["c-module"], 1),
]


# ------------------------------------------------------------- the C hook

HOOK_SOURCE = r"""
#define PY_SSIZE_T_CLEAN
#define Py_BUILD_CORE
#include <Python.h>
#include "internal/pycore_frame.h"
#include <valgrind/callgrind.h>

static PyObject *categorize;       /* filename -> int */
static Py_ssize_t extra_index = -1;
static int target = -1;            /* group collected in this run */
static int cur = 0;                /* innermost tracked frame's group; 0
                                      ("loop") below the first one */
static int active = 0, collecting = 0, in_categorize = 0;
static int fallback = 0;           /* group when categorize() fails */

static void set_collect(int want) {
    if (want != collecting) {
        CALLGRIND_TOGGLE_COLLECT;
        collecting = want;
    }
}

static int group_of(PyCodeObject *co) {
    void *extra = NULL;
    if (_PyCode_GetExtra((PyObject *)co, extra_index, &extra) == 0 && extra)
        return (int)(intptr_t)extra - 1;
    int g = fallback;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    in_categorize = 1;
    PyObject *r = PyObject_CallOneArg(categorize, co->co_filename);
    in_categorize = 0;
    if (r) {
        g = (int)PyLong_AsLong(r);
        Py_DECREF(r);
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    _PyCode_SetExtra((PyObject *)co, extra_index, (void *)(intptr_t)(g + 1));
    return g;
}

static PyObject *
prof_eval(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    if (in_categorize)
        return _PyEval_EvalFrameDefault(ts, f, throwflag);
    int g = group_of(f->f_code);
    int parent = cur;
    cur = g;
    if (active) set_collect(g == target);
    PyObject *r = _PyEval_EvalFrameDefault(ts, f, throwflag);
    cur = parent;
    if (active) set_collect(parent == target);
    return r;
}

/* hook(categorize, target, fallback): install the hook; group `target`
   is collected once start() is called. */
static PyObject *hook(PyObject *self, PyObject *args) {
    PyObject *fn;
    if (!PyArg_ParseTuple(args, "Oii", &fn, &target, &fallback)) return NULL;
    Py_XSETREF(categorize, Py_NewRef(fn));
    if (extra_index < 0) extra_index = _PyEval_RequestCodeExtraIndex(NULL);
    cur = 0;
    _PyInterpreterState_SetEvalFrameFunc(PyInterpreterState_Get(), prof_eval);
    Py_RETURN_NONE;
}

/* start(hooked): zero the counts, collect from now on (everything, or
   only the target group when hooked). */
static PyObject *start(PyObject *self, PyObject *arg) {
    CALLGRIND_ZERO_STATS;
    if (PyObject_IsTrue(arg)) {
        active = 1;
        set_collect(cur == target);
    } else {
        set_collect(1);
    }
    Py_RETURN_NONE;
}

static PyObject *stop(PyObject *self, PyObject *unused) {
    active = 0;
    set_collect(0);
    CALLGRIND_DUMP_STATS;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"hook", hook, METH_VARARGS, NULL},
    {"start", start, METH_O, NULL},
    {"stop", stop, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_cgprof", NULL, -1,
                                 methods};

PyMODINIT_FUNC PyInit__cgprof(void) { return PyModule_Create(&def); }
"""


def build_hook():
    """Directory holding the compiled ``_cgprof`` helper (cached by source
    and interpreter)."""
    if sys.version_info[:2] != (3, 11):
        sys.exit("profile_http.py's frame hook is written for CPython 3.11")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not os.path.exists("/usr/include/valgrind/callgrind.h"):
        sys.exit("needs a C compiler and valgrind's callgrind.h")
    key = hashlib.sha256((HOOK_SOURCE + sys.version).encode()).hexdigest()[:16]
    d = os.path.join(tempfile.gettempdir(), "tcg-cgprof-" + key)
    so = os.path.join(d, "_cgprof" + sysconfig.get_config_var("EXT_SUFFIX"))
    if not os.path.exists(so):
        os.makedirs(d, exist_ok=True)
        # Per-process names: two profiles may start at once.
        src = os.path.join(d, "_cgprof.%d.c" % os.getpid())
        with open(src, "w") as f:
            f.write(HOOK_SOURCE)
        tmp = "%s.%d.tmp" % (so, os.getpid())
        subprocess.run([cc, "-O2", "-shared", "-fPIC",
                        "-I" + sysconfig.get_paths()["include"],
                        src, "-o", tmp], check=True)
        os.replace(tmp, so)
        os.unlink(src)
    return d


# ------------------------------------------------------------- the server

def serve(args):
    """Runs under valgrind: the bench's application, counting requests."""
    if args.impl == "tornado+install":
        import tornado_cgen
        tornado_cgen.install()
    import asyncio
    sys.path.insert(0, args.hookdir)
    import _cgprof
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets
    from tornado_cgen.bench import httpcase

    app = httpcase.make_app()
    done = []
    count = [0]
    hooked = args.group is not None
    log_request = type(app).log_request

    def counted(self, handler):
        log_request(self, handler)       # Tornado's own, then count
        count[0] += 1
        if count[0] == args.first:
            _cgprof.start(hooked)
        elif count[0] == args.last:
            _cgprof.stop()
            done[0].set_result(None)

    type(app).log_request = counted

    async def main():
        done.append(asyncio.get_running_loop().create_future())
        if hooked:
            # Installed from inside the loop's run, so the frames below
            # (the loop dispatching) are untracked: they count as "loop".
            _cgprof.hook(lambda fn: GROUPS.index(group_of(fn)),
                         GROUPS.index(args.group), GROUPS.index("other"))
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(app)
        server.add_sockets(sockets)
        print("PORT %d" % sockets[0].getsockname()[1], flush=True)
        await done[0]
        server.stop()
        await asyncio.sleep(1)      # let the last response go out

    if args.impl == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(main())


def client(port, path, count):
    """``count`` keep-alive GETs, one at a time, over one connection."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode()
    buf = b""
    for _ in range(count):
        s.sendall(req)
        while True:
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"Content-Length: (\d+)", head)
                n = int(m.group(1))
                if len(rest) >= n:
                    if not head.startswith(b"HTTP/1.1 200"):
                        raise RuntimeError(head.decode())
                    buf = rest[n:]
                    break
            data = s.recv(65536)
            if not data:
                raise RuntimeError("server closed the connection")
            buf += data
    s.close()


def run_server(args, group, out):
    cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no",
           "--callgrind-out-file=" + out, sys.executable, __file__,
           "--serve", "--impl", args.impl, "--hookdir", args.hookdir,
           "--first", str(args.first), "--last", str(args.last)]
    if group:
        cmd += ["--group", group]
    env = dict(os.environ, PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        sys.exit("server did not start: %r" % line)
    client(int(line.split()[1]), args.path, args.last)
    proc.wait(timeout=600)
    dumps = sorted(f for f in os.listdir(os.path.dirname(out))
                   if f.startswith(os.path.basename(out) + "."))
    if not dumps:
        sys.exit("no callgrind dump in %s" % out)
    return os.path.join(os.path.dirname(out), dumps[0])


# ------------------------------------------------------------- the counts

def self_costs(path):
    """``[(Ir, "file:function", object)]``, self cost of every function in
    a callgrind output file, most expensive first (read directly: the
    format is simple, and callgrind_annotate 3.19 misreads dumps made by a
    client request)."""
    names = {"ob": {}, "fl": {}, "fn": {}}
    costs = {}
    ob = fl = fn = None
    after_calls = False

    def name(kind, text):
        m = re.match(r"\((\d+)\)(?: (.*))?$", text)
        if not m:
            return text
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), text)

    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if after_calls:          # the inclusive cost of a call
                    after_calls = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    key = (fl, fn, ob)
                    costs[key] = costs.get(key, 0) + int(parts[1])
                continue
            key, _, value = line.partition("=")
            if key == "ob":
                ob = name("ob", value)
            elif key == "fl":
                fl = name("fl", value)
            elif key in ("fi", "fe"):
                name("fl", value)
            elif key == "fn":
                fn = name("fn", value)
            elif key in ("cob", "cfi", "cfl"):
                name("ob" if key == "cob" else "fl", value)
            elif key == "cfn":
                name("fn", value)
            elif key == "calls":
                after_calls = True
    rows = [(ir, "%s:%s" % (fl, fn), ob or "") for (fl, fn, ob), ir
            in costs.items()]
    rows.sort(reverse=True)
    return rows


def total(path):
    with open(path) as f:
        m = re.search(r"^(?:totals|summary):\s+(\d+)", f.read(), re.M)
    return int(m.group(1))


def row_of(fn, obj, group):
    """The table row of one function's self cost in ``group``'s run."""
    where = fn.split(":", 1)[0]
    base = os.path.basename(where)
    if "_cgprof" in obj or "_cgprof" in where:
        return "hook"
    if "tornado_cgen" in obj and "_core" in obj:
        if base in ("loop.c", "handle.c"):
            return "c-loop"
        if base in ("runner.c", "future.c"):
            return "c-gen"
        return "c-module"
    if group == "iostream" and "memset" in fn:
        return "memset"
    return group


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", default="tornado+install",
                   choices=["tornado+install", "tornado", "uvloop"])
    p.add_argument("--path", default="/")
    p.add_argument("--from", dest="first", type=int, default=100)
    p.add_argument("--to", dest="last", type=int, default=300)
    p.add_argument("--no-split", action="store_true",
                   help="only the unhooked total and its top functions")
    p.add_argument("--keep", metavar="DIR", help="keep callgrind files here")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--group", help=argparse.SUPPRESS)
    p.add_argument("--hookdir", help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, help=argparse.SUPPRESS)
    p.add_argument("--last", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        return serve(args)
    if shutil.which("valgrind") is None:
        sys.exit("needs valgrind")
    args.hookdir = build_hook()
    n = args.last - args.first
    tmp = args.keep or tempfile.mkdtemp(prefix="tcg-profile-http-")
    os.makedirs(tmp, exist_ok=True)
    t0 = time.time()
    base = run_server(args, None, os.path.join(tmp, "callgrind.plain"))
    plain = total(base) / n
    print("%s, GET %s: %s instructions per request (unhooked; requests %d-%d)"
          % (args.impl, args.path, "{:,.0f}".format(plain), args.first,
             args.last))
    top = self_costs(base)[:25]
    print("top functions by self cost, per request:")
    for ir, fn, obj in top:
        where, _, func = fn.rpartition(":")
        print("  %10s  %s:%s  [%s]" % ("{:,.0f}".format(ir / n),
                                       os.path.basename(where), func,
                                       os.path.basename(obj)))
    if args.no_split:
        return
    sums = {k: 0 for _, keys, _ in ROWS for k in keys}
    sums["hook"] = 0
    for group in GROUPS:
        out = run_server(args, group, os.path.join(tmp, "callgrind." + group))
        for ir, fn, obj in self_costs(out):
            sums[row_of(fn, obj, group)] += ir
        print("  ran group %-8s (%.0f s)" % (group, time.time() - t0),
              file=sys.stderr)
    hooked = sum(v for k, v in sums.items() if k != "hook")
    print()
    print("%s, GET %s: split by the file of the innermost Python frame "
          "(hooked runs), instructions per request" % (args.impl, args.path))
    for title, keys, indent in ROWS:
        v = sum(sums[key] for key in keys)
        print("  %-66s %10s  %5.1f%%" % ("  " * indent + title,
                                        "{:,.0f}".format(v / n),
                                        100 * v / hooked))
    print("  %-66s %10s" % ("sum of the split", "{:,.0f}".format(hooked / n)))
    print("  %-66s %10s" % ("unhooked total (the hook stops call inlining)",
                            "{:,.0f}".format(plain)))
    print("  %-66s %10s" % ("the hook itself (in neither)",
                            "{:,.0f}".format(sums["hook"] / n)))
    print("Python rows include the interpreter running that file's code and "
          "the C it calls (socket, re, _asyncio, malloc, ...).")


if __name__ == "__main__":
    main()
