"""Quick interleaved benchmark of DESIGN cases 1-5 (the Runner's share):
tornado_cgen vs Tornado 6 gen.coroutine vs native async def, on asyncio, on
uvloop and on tornado_cgen's C loop.  Not a test: ``python tests/bench_gen_quick.py [reps]``.

Each (implementation, loop, case) runs in its own process, interleaved,
best of `reps`; prints ns per op.  The real harness is
``python -m tornado_cgen bench``; this is the Runner author's check.
"""
import os
import subprocess
import sys

CASES = {
    1: ("yield a done future", 200_000),
    2: ("nested call chain, per level", 20_000),   # x 10 levels
    3: ("pending future resolved by a loop callback", 100_000),
    4: ("yield gen.moment / sleep(0)", 100_000),
    5: ("list of 10 done futures, per future", 20_000),  # x 10
    6: ("dict of 10 done futures, per future", 20_000),  # x 10
}
IMPLS = ["cgen", "tornado", "native"]
LOOPS = ["asyncio", "uvloop", "tcg"]

CHILD = r'''
import asyncio, gc, sys, time
impl, loopname, case, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if loopname == "uvloop":
    import uvloop
    loop = uvloop.new_event_loop()
elif loopname == "tcg":
    import tornado_cgen
    loop = tornado_cgen.new_event_loop()
else:
    loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
if impl == "cgen":
    from tornado_cgen import gen
    from tornado_cgen.concurrent import Future
elif impl == "tornado":
    from tornado import gen
    from tornado.concurrent import Future

if impl != "native":
    @gen.coroutine
    def chain(d):
        if d == 0:
            return 1
        return (yield chain(d - 1))

    @gen.coroutine
    def bench():
        lp = asyncio.get_running_loop()
        if case == 1:
            f = Future(); f.set_result(1)
            for _ in range(n):
                yield f
            return n
        if case == 2:
            for i in range(n):
                yield chain(10)
                if i % 10 == 0:
                    yield gen.moment
            return n * 10
        if case == 3:
            for _ in range(n):
                f = Future()
                lp.call_soon(f.set_result, None)
                yield f
            return n
        if case == 4:
            for _ in range(n):
                yield gen.moment
            return n
        futs = []
        for i in range(10):
            f = Future(); f.set_result(i); futs.append(f)
        if case == 5:
            for _ in range(n):
                yield futs
        else:
            d = dict(zip("abcdefghij", futs))
            for _ in range(n):
                yield d
        return n * 10
else:
    async def chain(d):
        if d == 0:
            return 1
        return await chain(d - 1)

    async def bench():
        lp = asyncio.get_running_loop()
        if case == 1:
            f = lp.create_future(); f.set_result(1)
            for _ in range(n):
                await f
            return n
        if case == 2:
            for i in range(n):
                await chain(10)
                if i % 10 == 0:
                    await asyncio.sleep(0)
            return n * 10
        if case == 3:
            for _ in range(n):
                f = lp.create_future()
                lp.call_soon(f.set_result, None)
                await f
            return n
        if case == 4:
            for _ in range(n):
                await asyncio.sleep(0)
            return n
        futs = []
        for i in range(10):
            f = lp.create_future(); f.set_result(i); futs.append(f)
        if case == 5:
            for _ in range(n):
                await asyncio.gather(*futs)
        else:
            keys = "abcdefghij"
            for _ in range(n):
                dict(zip(keys, await asyncio.gather(*futs)))
        return n * 10

async def main():
    return await bench()

gc.collect()
t0 = time.perf_counter()
ops = loop.run_until_complete(main())
t1 = time.perf_counter()
print((t1 - t0) * 1e9 / ops)
'''


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    env = dict(os.environ)
    here = os.path.dirname(os.path.abspath(__file__))
    env.setdefault("PYTHONPATH", os.path.join(here, "..", "python"))
    best = {}
    for _ in range(reps):
        for case, (_, n) in CASES.items():
            for loopname in LOOPS:
                for impl in IMPLS:
                    out = subprocess.run(
                        [sys.executable, "-c", CHILD, impl, loopname,
                         str(case), str(n)],
                        env=env, capture_output=True, text=True)
                    if out.returncode:
                        print(out.stderr, file=sys.stderr)
                        continue
                    ns = float(out.stdout.split()[-1])
                    key = (case, loopname, impl)
                    best[key] = min(best.get(key, ns), ns)
    print("ns per op, best of %d (ratios: native/cgen, tornado/cgen)" % reps)
    for case, (name, _) in CASES.items():
        for loopname in LOOPS:
            c, t, nat = (best.get((case, loopname, i)) for i in IMPLS)
            if None in (c, t, nat):
                continue
            print("%d %-44s %-7s cgen %8.1f  tornado %8.1f  native %8.1f"
                  "  native/cgen %5.2f  tornado/cgen %6.1f"
                  % (case, name, loopname, c, t, nat, nat / c, t / c))


if __name__ == "__main__":
    main()
