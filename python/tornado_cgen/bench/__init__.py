"""``python -m tornado_cgen bench``: tornado_cgen side by side with Tornado,
Tornado under ``install()``, asyncio and uvloop.

Running it
==========

    python -m tornado_cgen bench                  # all cases, 5 rounds (~4 min)
    python -m tornado_cgen bench --quick          # smoke run, seconds
    python -m tornado_cgen bench --cases 1,2,6 --impl tcg,uvloop --rounds 9
    python -m tornado_cgen bench --json out.json --plot out.png
    python -m tornado_cgen bench --callgrind --no-timing   # Ir/op, 1-10, 10s
    python -m tornado_cgen bench --syscalls --cases 6      # strace, syscalls/op
    python -m tornado_cgen bench --gc-off --cases 2        # diagnosis only
    python -m tornado_cgen bench --cases 11 --rounds 7     # HTTP, wrk
    python -m tornado_cgen bench --cases 10s,12 --impl tcg,asyncio,uvloop

Implementations (columns): ``tcg`` tornado_cgen (its ``gen.coroutine`` on
its own loop when that exists, else on asyncio's default loop; its
``IOLoop`` for the loop cases), ``tornado`` Tornado 6's pure-Python
``gen.coroutine`` on its IOLoop (asyncio's loop underneath),
``tornado+install`` (column ``t+install``) the very same Tornado code with
``tornado_cgen.install()`` called first in its worker process (Tornado's
gen on the C Runner, its IOLoop on the C loop), ``asyncio`` native ``async
def`` on asyncio's default loop, ``uvloop`` the same on uvloop.  Those not
installed are shown as n/a.  Cases 10s (asyncio streams) and 12 (an
asyncio protocol server under 100 connections) are asyncio code: they run
on asyncio, uvloop and tornado_cgen's loop (tcg), and Tornado's two columns
are n/a.  Cases 9 and 10 also get a
``floor`` column: the same ping-pong in C (``bench/floor.py``, built with
``cc`` on first use), which the targets of those cases refer to.

How to read the table
=====================

* Each number is **nanoseconds per operation** (the "op" is named in the
  case title: one yield, one call level, one callback, one round trip...),
  the **best of the rounds**; the median and every run are in ``--json``.
  Lower is better.  Cases 11 (hello-world) and 11c (a ``@gen.coroutine``
  handler) are ns per HTTP request under wrk, the **median** of the rounds;
  their own table below gives requests/s for Tornado on asyncio, on uvloop
  and under install(), and every run.  Case 12 is ns per round trip over
  100 connections (the inverse of the round trips per second over all of
  them), also the median; its table gives round trips/s, the server's CPU
  time per round trip and every run.
* **vs tornado / vs asyncio / vs uvloop** are *speed-ups of tornado_cgen*:
  that implementation's ns divided by tcg's ns, from the same run.  ``3.0x``
  means tornado_cgen does the operation in a third of the time; below
  ``1x`` it is slower.
* **target** is the project's goal for the case (``bench/cases.py``, and
  the README's table), followed by this run's value
  in the goal's own terms: "<= 0.6x native await: 0.54x" is a time ratio
  (tcg's ns / asyncio's ns), ">= 40x Tornado: 56x" a speed-up (Tornado's
  ns / tcg's ns).  **verdict**: PASS (every target met), MISS (one
  missed), n/a (tcg or the anchor has no number).
* **n/a** means the implementation cannot express the case (or a
  tornado_cgen feature has not landed yet); the reason is printed under
  the table and stored in the JSON.  **ERR** is a failure, with the
  traceback in the JSON: never a number.
* Lines under the table say exactly what each column ran for each case
  (e.g. case 10: asyncio protocols vs Tornado's IOStream).
* The **row T table** (cases 1-10 as Tornado code under
  install()) puts, for each case, tcg's speed-up over Tornado beside
  tornado+install's, and their ratio, the **share** (= tcg's ns /
  tornado+install's ns); the target is a share of at least 80% in cases
  1-8.  The **case 11 table** holds tornado+install's targets against
  Tornado on asyncio and on uvloop.
* ``--quick`` numbers are smoke-test output, not measurements.

How it measures (``reference/performance-notes.md`` section 6)
==============================================================

* Every (round, case, implementation) is a fresh subprocess of the same
  interpreter (``sys.executable``); rounds interleave the implementations
  and rotate which goes first.  Default 5 rounds; best reported (the
  median for the wrk cases and case 12).  ``install()`` happens only inside
  tornado+install's own workers; every other implementation refuses to
  run where it is in effect.
* Cases 11/11c: the server (the worker) is pinned to one CPU and wrk
  (``-t1 -c10``, through ``taskset``) to another when there are two.
  Case 12 likewise: the server to one CPU, its C client (``manyconn.py``;
  100 connections, one epoll loop, timing the round trips itself) to
  another.
* Inside the subprocess: a warm-up run of N/10, ``gc.collect()``, then N
  operations timed with ``perf_counter_ns`` inside the running loop (loop
  creation and start-up excluded), GC on.  Nothing is subtracted.
* Live objects stay bounded: batches (100 callbacks or timers, 10 calls
  per moment) and the loop drains between them.
* Every case checks that it did the work it timed (callback counts,
  results) and fails loudly otherwise.
* ``--callgrind`` / ``--syscalls``: the same worker under valgrind or
  ``strace -f -c`` at two sizes, ``(count(N2) - count(N1)) / (ops2 - ops1)``:
  deterministic instruction and syscall counts per op, which back the
  wall-clock figures on a noisy machine.

The JSON document (``--json``)
==============================

``{"date", "machine", "python", "versions", "settings", "implementations",
"cases": [{"id", "title", "unit", "notes", "results": {impl: {"status":
"ok", "best_ns_per_op", "median_ns_per_op", "runs_ns_per_op", "n", "ops",
"variant", "extra"?, "runs_extra"?} | {"status": "n/a", "reason"} |
{"status": "error", "error"}},
"stat": "best" | "median", "speedup_of_tcg": {anchor: float | null},
"speedup_of_tornado_install": {anchor: float | null}, "targets": [{"text",
"subject", "anchor", "kind", "factor", "measured", "met", "reference"?}],
"main_subject", "verdict", "verdicts": {subject: verdict}}], "callgrind"?:
{case: {impl: {"per_op", "totals", "ops"}}}, "strace"?: ...}``.  A target's
subject is tcg or tornado+install; ``verdict`` is the main subject's (the
main table's), ``verdicts`` every subject's.
"""
