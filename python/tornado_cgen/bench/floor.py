"""The C floor for the I/O cases (9 and 10), measured on this machine.

The targets of cases 9 and 10 are "<= 1.1x the C floor": the same
ping-pong done by a small C program with epoll (level-triggered, one thread,
both ends in one loop, as the Python loops do).  It is compiled with the
system C compiler on first use (cached in the temp directory by source
hash) and run as its own process; without a compiler the floor is "n/a".

Per round trip the socketpair probe makes 6 syscalls (write, epoll_wait,
read, write, epoll_wait, read); the TCP probe the same with 1 KiB messages
and TCP_NODELAY.
"""
import hashlib
import os
import shutil
import subprocess
import tempfile

CASES = {"9": "socketpair", "10": "tcp"}

SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

static void die(const char *what) { perror(what); exit(1); }

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void nonblock(int fd) {
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
}

static void make_pair(int tcp, int *a, int *b) {
    if (!tcp) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) die("socketpair");
        *a = sv[0]; *b = sv[1];
    } else {
        struct sockaddr_in sa;
        socklen_t len = sizeof sa;
        int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(l, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
        if (listen(l, 1) < 0) die("listen");
        if (getsockname(l, (struct sockaddr *)&sa, &len) < 0) die("getsockname");
        *a = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(*a, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
        *b = accept(l, NULL, NULL);
        if (*b < 0) die("accept");
        close(l);
        setsockopt(*a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(*b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    nonblock(*a);
    nonblock(*b);
}

/* Read until `size` bytes have arrived in total (got tracks them). */
static int read_msg(int fd, char *buf, size_t size, size_t *got) {
    for (;;) {
        ssize_t r = read(fd, buf + *got, size - *got);
        if (r > 0) {
            *got += (size_t)r;
            if (*got == size) { *got = 0; return 1; }
            continue;
        }
        if (r < 0 && errno == EAGAIN) return 0;
        die("read");
    }
}

static void write_msg(int fd, const char *buf, size_t size) {
    if (write(fd, buf, size) != (ssize_t)size) die("write");
}

static double pingpong(int tcp, long n) {
    size_t size = tcp ? 1024 : 1;
    char buf[1024], msg[1024];
    size_t got_a = 0, got_b = 0;
    int a, b, ep = epoll_create1(0);
    struct epoll_event ev, evs[4];
    long done = 0;
    long long t0, t1;
    memset(msg, 'x', sizeof msg);
    make_pair(tcp, &a, &b);
    ev.events = EPOLLIN; ev.data.fd = a;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev) < 0) die("epoll_ctl");
    ev.events = EPOLLIN; ev.data.fd = b;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev) < 0) die("epoll_ctl");
    t0 = now_ns();
    write_msg(a, msg, size);
    while (done < n) {
        int k = epoll_wait(ep, evs, 4, -1);
        if (k < 0) { if (errno == EINTR) continue; die("epoll_wait"); }
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            if (fd == b) {
                if (read_msg(b, buf, size, &got_b)) write_msg(b, buf, size);
            } else if (read_msg(a, buf, size, &got_a)) {
                if (++done < n) write_msg(a, msg, size);
            }
        }
    }
    t1 = now_ns();
    close(a); close(b); close(ep);
    return (double)(t1 - t0) / n;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: floor socketpair|tcp N\n"); return 2; }
    int tcp = strcmp(argv[1], "tcp") == 0;
    long n = atol(argv[2]);
    pingpong(tcp, n / 10 + 1);              /* warm-up */
    printf("%.3f\n", pingpong(tcp, n));
    return 0;
}
"""


def _compiler():
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def build(source, stem, what):
    """``(path, None)`` for the program compiled from C ``source`` (built
    on first use, cached in the temp directory under ``stem`` and the
    source's hash), or ``(None, reason)`` without a C compiler or when the
    build fails; ``what`` names the program in the reason."""
    cc = _compiler()
    if cc is None:
        return None, "no C compiler (cc) to build the %s" % what
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), "tornado_cgen_bench_%s_%s_%d"
                        % (stem, digest, os.getuid()))
    if os.path.exists(path):
        return path, None
    tmp = path + ".tmp%d" % os.getpid()
    src = tmp + ".c"
    with open(src, "w") as f:
        f.write(source)
    try:
        proc = subprocess.run([cc, "-O2", "-o", tmp, src],
                              capture_output=True, text=True)
    finally:
        os.unlink(src)
    if proc.returncode != 0:
        return None, "building the %s failed: %s" % (what,
                                                     proc.stderr[-500:])
    os.replace(tmp, path)
    return path, None


def binary():
    """Path of the compiled probe, building it if needed; None without a C
    compiler (or if the build fails; the reason is in ``binary.error``)."""
    path, binary.error = build(SOURCE, "floor", "floor probe")
    return path


binary.error = None


def run_once(case_id, n):
    """One run of the C probe for case 9 or 10, as a worker-style result."""
    exe = binary()
    if exe is None:
        return {"status": "n/a", "reason": binary.error}
    try:
        proc = subprocess.run([exe, CASES[case_id], str(n)],
                              capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": "floor probe timed out"}
    if proc.returncode != 0:
        return {"status": "error", "error": proc.stderr.strip()}
    per_op = float(proc.stdout.strip())
    return {"status": "ok", "ns": int(per_op * n), "ops": n, "ns_per_op": per_op,
            "variant": "C, epoll, one thread, %s" % CASES[case_id]}
