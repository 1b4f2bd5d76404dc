"""The benchmark cases: what each one measures, its sizes and its targets.

The case code lives with each implementation (``native.py`` for asyncio and
uvloop, ``genstyle.py`` for the two ``gen.coroutine`` implementations,
``httpcase.py`` for case 11); this module only describes the cases, so the
harness, the report and the tests agree on them.

Case ids follow the performance table of the README; ``5d`` is the dict
form of case 5 (``--cases 5`` selects both), ``10s`` case 10 through
asyncio streams (``--cases 10`` selects both), ``11c`` the coroutine
handler of case 11 (``--cases 11`` selects both).  Row T (cases 1-10 as
Tornado code under ``install()``) is not a case of its own: it is the
``tornado+install`` implementation, with a "share" target in cases 1-8.
"""
from collections import namedtuple

# A target is "a subject against one anchor"; the subject is tcg unless
# said otherwise (tornado+install: Tornado's own code under install()):
#   kind "time"  -> subject_ns <= factor * anchor_ns   ("<= 0.7x native await")
#   kind "speed" -> anchor_ns >= factor * subject_ns   (">= 30x Tornado")
#   kind "share" -> the subject's speed-up over the anchor is at least
#                   factor times the reference's speed-up over it:
#                   (anchor_ns / subject_ns) >= factor * (anchor_ns /
#                   reference_ns), i.e. reference_ns / subject_ns >= factor
#                   (row T: tornado+install keeps >= 80% of tcg's
#                   speed-up over Tornado).
# anchor "floor" is the pure-C probe (cases 9 and 10), when it could be built.
Target = namedtuple("Target", "anchor kind factor text subject reference",
                    defaults=("tcg", None))

# stat: which figure of the rounds the targets and the table use: "best"
# (the timing cases) or "median" (the cases with a client in another
# process, wrk's or case 12's, whose runs spread widely).
Case = namedtuple("Case", "id title unit n quick_n callgrind_sizes targets "
                          "notes stat", defaults=("best",))

INSTALL = "tornado+install"


def _speed(anchor, factor, text, subject="tcg"):
    return Target(anchor, "speed", factor, text, subject)


def _time(anchor, factor, text):
    return Target(anchor, "time", factor, text)


# Row T, for cases 1-8.
_T = Target("tornado", "share", 0.8, ">= 80% of tcg's speed-up over Tornado",
            INSTALL, "tcg")


CASES = [
    Case("1", "yield an already-done future", "yield",
         500_000, 5_000, (10_000, 30_000),
         [_time("asyncio", 0.6, "<= 0.6x native await"),
          _speed("tornado", 40, ">= 40x Tornado"),
          _T],
         "the yield/await statement is unrolled 10 times per loop iteration"),
    Case("2", "nested call chain (depth 10), per level", "level",
         100_000, 1_000, (2_000, 6_000),
         [_time("asyncio", 1.0, "<= 1.0x native"),
          _T],
         "leaf returns at once; one moment/sleep(0) per 10 top-level calls"),
    Case("3", "pending future resolved by a loop callback", "future",
         50_000, 500, (2_000, 6_000),
         [_speed("uvloop", 5, ">= 5x uvloop native"),
          _T],
         "new future, set_result scheduled with add_callback/call_soon, then "
         "yielded/awaited"),
    Case("4", "yield gen.moment / await asyncio.sleep(0)", "moment",
         50_000, 500, (2_000, 6_000),
         [_speed("uvloop", 12, ">= 12x uvloop sleep(0)"),
          _T],
         ""),
    Case("5", "yield a list of 10 done futures, per future", "future",
         200_000, 2_000, (5_000, 15_000),
         [_speed("tornado", 60, ">= 60x Tornado"),
          _T],
         "native: asyncio.gather(*futures); the same 10 done futures each time"),
    Case("5d", "yield a dict of 10 done futures, per future", "future",
         200_000, 2_000, (5_000, 15_000),
         [_speed("tornado", 40, ">= 40x Tornado"),
          _T],
         "native: dict(zip(keys, await gather(*values)))"),
    Case("6", "callback chain, each schedules the next", "callback",
         100_000, 1_000, (5_000, 15_000),
         [_speed("uvloop", 6, ">= 6x uvloop"),
          _T],
         "add_callback / call_soon; one callback pending at a time"),
    Case("7", "callback batch (100 then one moment), per callback", "callback",
         200_000, 2_000, (5_000, 15_000),
         [_speed("uvloop", 2.5, ">= 2.5x uvloop"),
          _T],
         "a coroutine schedules 100 no-op callbacks, then yields one moment"),
    Case("8", "call_later(1.0) + cancel, batches of 100, per pair", "pair",
         200_000, 2_000, (5_000, 15_000),
         [_speed("uvloop", 5, ">= 5x uvloop"),
          _T],
         "call_later + remove_timeout/cancel; each batch runs in its own "
         "callback, the next batch is scheduled with add_callback/call_soon"),
    Case("9", "socketpair 1-byte ping-pong, per round trip", "round trip",
         30_000, 300, (1_000, 3_000),
         [_time("floor", 1.1, "<= 1.1x the C floor")],
         "AF_UNIX socketpair, both ends in one loop; add_handler/add_reader"),
    Case("10", "TCP 1 KiB ping-pong on loopback, per round trip", "round trip",
         20_000, 200, (1_000, 3_000),
         [_time("floor", 1.1, "<= 1.1x the C floor")],
         "client and server in one loop; asyncio protocols (asyncio, uvloop, "
         "tcg), IOStream + gen.coroutine (tornado); TCP_NODELAY"),
    Case("10s", "TCP 1 KiB ping-pong, asyncio streams, per round trip",
         "round trip", 20_000, 200, (1_000, 3_000),
         [_speed("uvloop", 1.15, ">= 1.15x uvloop")],
         "case 10 through asyncio.start_server (readexactly, write, drain) "
         "and open_connection (write, readexactly); client and server in one "
         "loop; TCP_NODELAY; asyncio, uvloop and tcg only"),
    Case("11", "Tornado HTTP hello-world, per request (wrk)", "request",
         3, 1, None,
         [_speed("tornado", 1.3, ">= 1.3x Tornado on asyncio", INSTALL),
          _speed("uvloop", 1.2, ">= 1.2x Tornado on uvloop", INSTALL)],
         "needs wrk; n is the wrk duration in seconds; wrk -t1 -c10 on "
         "127.0.0.1, server and wrk pinned to different cores; columns: "
         "tornado = Tornado on asyncio's loop, uvloop = Tornado on uvloop, "
         "tornado+install = Tornado under tornado_cgen.install()",
         "median"),
    Case("11c", "Tornado HTTP @gen.coroutine handler, per request (wrk)",
         "request", 3, 1, None,
         [_speed("tornado", 1.5, ">= 1.5x Tornado on asyncio", INSTALL),
          _speed("uvloop", 1.35, ">= 1.35x Tornado on uvloop", INSTALL)],
         "as 11; the handler's get() is a @gen.coroutine that yields a "
         "sub-coroutine, a list of two and gen.sleep(0) before it writes",
         "median"),
    Case("12", "100 connections, 1 KiB echo round trips, per round trip",
         "round trip", 100_000, 2_000, None,
         [_speed("uvloop", 1.2, ">= 1.2x uvloop")],
         "an asyncio.Protocol echo server (case 10's, loop.create_server) "
         "serving 100 connections of a C epoll client in another process; "
         "ns per round trip = 1 / (round trips per second over all "
         "connections), lower is better; server and client pinned to "
         "different cores; n is the round trips in all; asyncio, uvloop and "
         "tcg only",
         "median"),
]

BY_ID = {c.id: c for c in CASES}
# "--cases 5" brings 5d, "--cases 10" 10s, "--cases 11" 11c.
COMPANIONS = {"5": ["5d"], "10": ["10s"], "11": ["11c"]}
# --callgrind/--syscalls without --cases: every case with a fixed op count.
DEFAULT_CALLGRIND_CASES = [c.id for c in CASES if c.callgrind_sizes]


def select(spec):
    """Case ids from a ``--cases`` value like ``"1,2,6"`` or ``"1-8,11"``
    (``"5"`` brings ``"5d"`` along, ``"10"`` ``"10s"``, ``"11"``
    ``"11c"``, also as the last case of a range: ``"9-10"`` is 9, 10 and
    10s; a range runs in table order).  ``None`` or ``"all"`` selects
    every case."""
    if spec is None or spec.strip().lower() == "all":
        return [c.id for c in CASES]
    wanted = []
    order = [c.id for c in CASES]
    for part in spec.split(","):
        part = part.strip().lower()
        if not part:
            continue
        first, dash, last = part.partition("-")
        if dash and first in BY_ID and last in BY_ID:
            # A range in table order: "1-8" is 1, 2, 3, 4, 5, 5d, 6, 7, 8;
            # its last case brings its companions, as when named alone.
            wanted += order[order.index(first):order.index(last) + 1]
            wanted += COMPANIONS.get(last, [])
            continue
        if part not in BY_ID:
            raise ValueError("unknown case %r (known: %s)"
                             % (part, ", ".join(BY_ID)))
        wanted.append(part)
        wanted += COMPANIONS.get(part, [])
    return [c.id for c in CASES if c.id in wanted]
