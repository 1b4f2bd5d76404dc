/* poller.h: the event loop's readiness backend and its cross-thread waker.
 *
 * One small interface, two implementations chosen at build time (setup.py
 * defines exactly one of the macros):
 *
 *   TCG_POLLER_EPOLL  epoll + an eventfd waker (poller_epoll.c; Linux)
 *   TCG_POLLER_POLL   poll(2) + a non-blocking close-on-exec self-pipe
 *                     (poller_poll.c; everywhere else, and on Linux with
 *                     TCG_POLLER=poll)
 *
 * The poller records, per fd, the interest it has registered (a mask of
 * TCG_POLLER_READ and TCG_POLLER_WRITE).  What runs per iteration (the
 * wait, reading the events, the waker) is inline here: the epoll loop
 * costs no call and no syscall more than epoll_wait itself.  What changes
 * the interest set is in the backend's .c file, behind an inline test
 * that skips it when nothing changes.
 *
 * Both behave as epoll does, which is what the loop promises:
 *   - registering a bad fd fails with EBADF, a regular file or a
 *     directory with EPERM (epoll_ctl's answers; poll is told by fstat);
 *   - errors and hang-ups report the fd ready for reading and writing;
 *   - a closed fd is forgotten silently (epoll drops a closed file; poll's
 *     POLLNVAL makes tcg_poller_event_invalid() true, and the loop then
 *     calls tcg_poller_forget), but a registration made since the wait
 *     (another thread opened a new file under the number) stays;
 *   - the set may change from another thread (holding the GIL) while the
 *     loop waits without it; the change takes effect at once (epoll) or the
 *     waker ends the wait so the next one sees it (poll).
 *
 * The loop's use: tcg_poller_open; tcg_poller_set per interest change;
 * per iteration tcg_poller_enter, tcg_poller_wait (the GIL released when
 * it may block), tcg_poller_leave, then per event tcg_poller_event_fd,
 * _invalid, _ready (tcg_poller_is_waker: tcg_poller_drain instead);
 * tcg_poller_wake from any thread; tcg_poller_close.  Neither backend
 * does anything at fork: with epoll the child shares the parent's set,
 * with poll it has a copy of it; the waker is shared with both.
 *
 * Every function that can fail returns -1 with errno set, and touches no
 * Python object: the caller turns errno into an exception.
 */
#ifndef TCG_POLLER_H
#define TCG_POLLER_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#define TCG_POLLER_READ 1u
#define TCG_POLLER_WRITE 2u

#if defined(TCG_POLLER_EPOLL) + defined(TCG_POLLER_POLL) != 1
#  error "define exactly one of TCG_POLLER_EPOLL, TCG_POLLER_POLL (setup.py)"
#endif

#if defined(TCG_POLLER_EPOLL)
/* ---- epoll + eventfd ---------------------------------------------------- */
#include <sys/epoll.h>

#define TCG_POLLER_NAME "epoll"
#define TCG_POLLER_MAX_EVENTS 256

typedef struct epoll_event tcg_poller_event;

typedef struct {
    int epfd, wakefd;
    uint8_t *mask;      /* registered interest, indexed by fd */
    size_t nmask;
    struct epoll_event events[TCG_POLLER_MAX_EVENTS];
} tcg_poller;

/* Wait up to `ms` milliseconds (-1: no limit) and fill the events; their
 * number, or -1 with errno (EINTR included).  Called with or without the
 * GIL, between tcg_poller_enter and tcg_poller_leave. */
static inline int
tcg_poller_wait(tcg_poller *p, int ms)
{
    return epoll_wait(p->epfd, p->events, TCG_POLLER_MAX_EVENTS, ms);
}

static inline void tcg_poller_enter(tcg_poller *p) { (void)p; }
static inline void tcg_poller_leave(tcg_poller *p) { (void)p; }

static inline int
tcg_poller_event_fd(const tcg_poller *p, int i)
{
    return p->events[i].data.fd;
}

/* Event `i` says its fd is no longer valid (never, with epoll, which
 * forgets a closed file by itself): the loop calls tcg_poller_forget. */
static inline bool
tcg_poller_event_invalid(const tcg_poller *p, int i)
{
    (void)p;
    (void)i;
    return false;
}

/* Whom event `i` wakes: TCG_POLLER_READ and/or TCG_POLLER_WRITE; errors
 * and hang-ups wake both, as selectors do. */
static inline unsigned
tcg_poller_event_ready(const tcg_poller *p, int i)
{
    uint32_t ev = p->events[i].events;
    return ((ev & ~(uint32_t)EPOLLOUT) ? TCG_POLLER_READ : 0) |
           ((ev & ~(uint32_t)EPOLLIN) ? TCG_POLLER_WRITE : 0);
}

static inline bool
tcg_poller_is_waker(const tcg_poller *p, int fd)
{
    return fd == p->wakefd;
}

/* Wake a wait from any thread (or before it starts).  Async-signal-safe;
 * a full counter means a wake-up is pending already. */
static inline void
tcg_poller_wake(tcg_poller *p)
{
    if (p->wakefd < 0) {
        return;
    }
    uint64_t one = 1;
    ssize_t r;
    do {
        r = write(p->wakefd, &one, sizeof(one));
    } while (r < 0 && errno == EINTR);
}

/* Consume the wake-ups, after the waker's fd was reported. */
static inline void
tcg_poller_drain(tcg_poller *p)
{
    uint64_t v;
    while (read(p->wakefd, &v, sizeof(v)) < 0 && errno == EINTR) {
    }
}

static inline unsigned
tcg_poller_mask(const tcg_poller *p, int fd)
{
    return (size_t)fd < p->nmask ? p->mask[fd] : 0;
}

#else
/* ---- poll + self-pipe --------------------------------------------------- */
#include <poll.h>

#define TCG_POLLER_NAME "poll"

typedef struct {
    int fd;
    short revents;
} tcg_poller_event;

typedef struct {
    uint8_t *mask;           /* registered interest, indexed by fd */
    int32_t *pos;            /* fd -> its index in pfds + 1, or 0 */
    size_t nmask;            /* the length of both */
    struct pollfd *pfds;     /* [0] is the waker; the rest in no order */
    size_t npfds, cap;       /* `events` has room for `cap` too */
    tcg_poller_event *events;
    int wake_r, wake_w;      /* the self-pipe */
    bool waiting;            /* a wait uses pfds (without the GIL) */
    bool stale;              /* pfds lags `mask`: rebuild before a wait */
    bool woken;              /* this wait was woken for a change already */
} tcg_poller;

/* In `mask`, beside the interest: a change that went to `mask` alone (a
 * wait had pfds, or has had it since the last rebuild) registered the file
 * that has the number now, checked open; the rebuild clears the bit. */
#define TCG_POLLER_FRESH 0x80u

void tcg_poller_sync(tcg_poller *p);   /* poller_poll.c */

/* With the GIL held, just before a wait: from here to tcg_poller_leave,
 * a change (from another thread) goes to `mask` only and wakes the wait;
 * changes go there too until the next enter, which rebuilds pfds.  If
 * that rebuild cannot get memory, the old array is polled once more (a
 * change during that wait ends it too): an event for an fd no longer
 * watched is forgotten, as any stale one. */
static inline void
tcg_poller_enter(tcg_poller *p)
{
    if (p->stale) {
        tcg_poller_sync(p);
    }
    p->woken = false;
    p->waiting = true;
}

static inline void
tcg_poller_leave(tcg_poller *p)
{
    p->waiting = false;
}

static inline int
tcg_poller_wait(tcg_poller *p, int ms)
{
    int n = poll(p->pfds, (nfds_t)p->npfds, ms);
    if (n <= 0) {
        return n;
    }
    /* Collect the ready ones: what the loop does with them may change
     * `pfds` (and n <= npfds <= cap, the room in `events`). */
    int k = 0;
    for (size_t i = 0; i < p->npfds && k < n; i++) {
        short re = p->pfds[i].revents;
        if (re != 0) {
            p->events[k].fd = p->pfds[i].fd;
            p->events[k].revents = re;
            k++;
        }
    }
    return k;
}

static inline int
tcg_poller_event_fd(const tcg_poller *p, int i)
{
    return p->events[i].fd;
}

/* POLLNVAL: the fd was closed at the wait.  If it has been registered
 * since (another thread, holding the GIL while the loop waited for it,
 * closed it, opened a new file under the number and registered that),
 * the event speaks of the old file: the registration stays, and the event
 * wakes nobody (tcg_poller_event_ready is 0). */
static inline bool
tcg_poller_event_invalid(const tcg_poller *p, int i)
{
    int fd = p->events[i].fd;
    return (p->events[i].revents & POLLNVAL) != 0 &&
           !((size_t)fd < p->nmask && (p->mask[fd] & TCG_POLLER_FRESH));
}

static inline unsigned
tcg_poller_event_ready(const tcg_poller *p, int i)
{
    short ev = p->events[i].revents;
    if (ev & POLLNVAL) {
        return 0;
    }
    return ((ev & ~POLLOUT) ? TCG_POLLER_READ : 0) |
           ((ev & ~POLLIN) ? TCG_POLLER_WRITE : 0);
}

static inline bool
tcg_poller_is_waker(const tcg_poller *p, int fd)
{
    return fd == p->wake_r;
}

static inline void
tcg_poller_wake(tcg_poller *p)
{
    if (p->wake_w < 0) {
        return;
    }
    char one = 1;
    ssize_t r;
    do {
        r = write(p->wake_w, &one, 1);
    } while (r < 0 && errno == EINTR);
    /* EAGAIN: the pipe is full, so the wait ends anyway. */
}

static inline void
tcg_poller_drain(tcg_poller *p)
{
    char buf[64];
    ssize_t r;
    do {
        r = read(p->wake_r, buf, sizeof(buf));
    } while (r == (ssize_t)sizeof(buf) || (r < 0 && errno == EINTR));
}

static inline unsigned
tcg_poller_mask(const tcg_poller *p, int fd)
{
    return (size_t)fd < p->nmask
               ? p->mask[fd] & (TCG_POLLER_READ | TCG_POLLER_WRITE) : 0;
}
#endif

/* ---- both -------------------------------------------------------------- */

/* Create the set and the waker (watched for reading), or -1. */
int tcg_poller_open(tcg_poller *p);

/* Release both; idempotent.  Whatever was registered is forgotten. */
void tcg_poller_close(tcg_poller *p);

/* The slow half of tcg_poller_set. */
int tcg_poller_update(tcg_poller *p, int fd, unsigned want, bool strict);

/* Register `want` (0: nothing) for `fd`.  strict: a failure returns -1
 * and leaves the registration as it was; otherwise a failure (the fd was
 * closed) leaves nothing registered and returns 0. */
static inline int
tcg_poller_set(tcg_poller *p, int fd, unsigned want, bool strict)
{
    if (tcg_poller_mask(p, fd) == want) {
        return 0;
    }
    return tcg_poller_update(p, fd, want, strict);
}

/* An event came for an fd the loop no longer watches, or for one that is
 * no longer valid: make sure it does not come again. */
void tcg_poller_forget(tcg_poller *p, int fd);

#endif /* TCG_POLLER_H */
