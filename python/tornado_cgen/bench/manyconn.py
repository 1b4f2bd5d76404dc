"""Case 12: one echo server, 100 concurrent connections, per round trip.

The worker process is the server and nothing else: ``loop.create_server``
with case 10's echo protocol (``native._Echo``) on 127.0.0.1, on the loop
under test.  The clients are one separate process, the same for every
implementation: a small C program (``CLIENT_SOURCE``, built with ``cc`` on
first use like the floor probe) that opens ``CONNECTIONS`` TCP connections
(TCP_NODELAY) and drives them from one epoll loop.  Each connection sends
1 KiB, waits for the 1 KiB to come back (checked byte for byte), and sends
the next as soon as it has; every connection makes one round trip before
the clock starts, then the program times N round trips in all (100 in
flight until the last hundred) and prints the elapsed nanoseconds.  ns/op
is that time over N: the inverse of the total round trips per second, so
lower is better; ``extra.rps`` holds the rate.

Why C for the clients: the figure is the server's throughput only while
the clients keep up with it, and they pay the same kernel work per round
trip as the server does (a read and a write of 1 KiB on loopback TCP, epoll
amortised over the ready connections) with no interpreter on top.  A
client in Python (selectors, or asyncio protocols on the default loop)
makes the same system calls with an interpreter on top, as much work per
round trip as the fastest servers or more, so it would set the pace and
the fast implementations would look alike.  The client waits in
``epoll_wait`` as any client would; one that polls without sleeping keeps
the server from ever waiting for it to wake, but then the client's own
kernel work sets the pace (a C echo server and the Python loops all come
out alike), so it does not.  Without a C compiler the case is n/a, as the
floor is.

With two CPUs or more the server is pinned to the first allowed CPU and
the client (by itself, ``sched_setaffinity``) to the second, so that they
never share a core; ``extra.pinning`` says what was done.  Where waking an
idle CPU is slow (a virtual machine's idle vCPU), how often each side
sleeps moves the round trips per second from run to run, for every
implementation alike: the report uses the median of the rounds, and puts
beside it the server's CPU time (user + system) per round trip,
``extra.server_cpu_ns_per_op``, which wake-up latency moves far less.
"""
import asyncio
import os
import resource
import subprocess

from . import floor
from .common import NotAvailable, check
from .native import _Echo, _run

CONNECTIONS = 100

CLIENT_SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#define SIZE 1024
/* No reply for this long: the server is stuck; fail instead of hanging. */
#define STALL_MS 30000

static void die(const char *what) { perror(what); exit(1); }
static void fail(const char *what) { fprintf(stderr, "%s\n", what); exit(1); }

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int *fds;
static size_t *got;
static char msg[SIZE], buf[SIZE];

static void send_msg(int fd) {
    if (write(fd, msg, SIZE) != SIZE) die("write");
}

/* Read what has come on connection i; 1 when its 1 KiB reply is complete. */
static int read_reply(int i) {
    for (;;) {
        ssize_t r = read(fds[i], buf + got[i], SIZE - got[i]);
        if (r > 0) {
            got[i] += (size_t)r;
            if (got[i] == SIZE) {
                got[i] = 0;
                if (memcmp(buf, msg, SIZE) != 0) fail("reply differs from the message");
                return 1;
            }
            continue;
        }
        if (r < 0 && errno == EAGAIN) return 0;
        if (r == 0) fail("the server closed a connection");
        die("read");
    }
}

/* total round trips over the connections, each keeping one message in
   flight until the total has been sent; returns when all have come back. */
static void run(int ep, int conns, long total) {
    struct epoll_event evs[256];
    long sent = 0, done = 0;
    for (int i = 0; i < conns && sent < total; i++, sent++) send_msg(fds[i]);
    while (done < total) {
        int k = epoll_wait(ep, evs, 256, STALL_MS);
        if (k < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        if (k == 0) fail("no reply from the server for 30 s");
        for (int j = 0; j < k; j++) {
            int i = (int)evs[j].data.u32;
            if (read_reply(i)) {
                done++;
                if (sent < total) { send_msg(fds[i]); sent++; }
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 5) fail("usage: manyconn PORT CONNECTIONS ROUND_TRIPS CPU|-1");
    int port = atoi(argv[1]), conns = atoi(argv[2]), cpu = atoi(argv[4]);
    long total = atol(argv[3]);
    if (conns < 1 || total < 1) fail("CONNECTIONS and ROUND_TRIPS must be >= 1");
    if (cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity");
    }
    memset(msg, 'x', SIZE);
    fds = calloc((size_t)conns, sizeof *fds);
    got = calloc((size_t)conns, sizeof *got);
    if (!fds || !got) fail("out of memory");
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ep = epoll_create1(0), one = 1;
    if (ep < 0) die("epoll_create1");
    for (int i = 0; i < conns; i++) {
        struct epoll_event ev;
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0) die("socket");
        if (connect(fds[i], (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
        if (setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
            die("setsockopt");
        if (fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK) < 0)
            die("fcntl");
        ev.events = EPOLLIN;
        ev.data.u32 = (unsigned)i;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) die("epoll_ctl");
    }
    run(ep, conns, conns);          /* every connection served once */
    long long t0 = now_ns();
    run(ep, conns, total);
    long long t1 = now_ns();
    for (int i = 0; i < conns; i++) {
        /* Nothing more than the replies came. */
        if (read(fds[i], buf, 1) != -1 || errno != EAGAIN)
            fail("more data than the replies");
        close(fds[i]);
    }
    printf("%lld %ld\n", t1 - t0, total);
    fflush(stdout);
    return 0;
}
"""


def client_binary():
    """Path of the compiled client, or raise NotAvailable."""
    path, why = floor.build(CLIENT_SOURCE, "manyconn", "case 12 client")
    if path is None:
        raise NotAvailable(why)
    return path


def cpus():
    """``(server_cpu, client_cpu)``, or None with fewer than two CPUs."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover
        return None
    if len(allowed) < 2:
        return None
    return allowed[0], allowed[1]


def case_12(new_loop, n):
    """Serve ``n`` round trips of the C client's ``CONNECTIONS``
    connections; ``(elapsed_ns, n, extra)`` as the client timed them."""
    exe = client_binary()
    n = max(n, 1)
    pin = cpus()
    if pin:
        # Put back afterwards: in-process callers (the tests) go on.
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {pin[0]})
        pinning = "server on CPU %d, clients on CPU %d" % pin
    else:
        pinning = "not pinned (fewer than 2 CPUs)"
    try:
        out = _run(new_loop, lambda: _serve(exe, n, pin[1] if pin else -1))
    finally:
        if pin:
            os.sched_setaffinity(0, allowed)
    elapsed, trips, cpu_ns = out
    check(trips == n, "the clients made %d round trips of %d" % (trips, n))
    extra = {"rps": n * 1e9 / elapsed, "connections": CONNECTIONS,
             "pinning": pinning,
             # What serving cost the worker (user + system time, from the
             # client's start to its end, over every round trip it made):
             # a figure the machine's wake-up latencies do not enter.
             "server_cpu_ns_per_op": cpu_ns / (n + CONNECTIONS)}
    return elapsed, n, extra


async def _serve(exe, n, client_cpu):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Echo, "127.0.0.1", 0,
                                      backlog=2 * CONNECTIONS)
    port = server.sockets[0].getsockname()[1]
    proc = subprocess.Popen([exe, str(port), str(CONNECTIONS), str(n),
                             str(client_cpu)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        # The client's one line of output (or its end) says it is done; the
        # loop meanwhile only serves.
        done = loop.create_future()
        fd = proc.stdout.fileno()
        loop.add_reader(fd, lambda: done.done() or done.set_result(None))
        try:
            await asyncio.wait_for(done, 120)
        finally:
            loop.remove_reader(fd)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    server.close()
    await server.wait_closed()
    check(proc.returncode == 0, "the client failed (exit %s): %s"
          % (proc.returncode, err.decode(errors="replace").strip()))
    elapsed, trips = (int(v) for v in out.split())
    cpu_ns = 1e9 * (cpu1.ru_utime + cpu1.ru_stime -
                    cpu0.ru_utime - cpu0.ru_stime)
    return elapsed, trips, cpu_ns
