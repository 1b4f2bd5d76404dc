/* poller_poll.c: poller.h on poll(2), woken through a self-pipe (macOS,
 * the BSDs; Linux with TCG_POLLER=poll).
 *
 * The pollfd array is kept as the interest changes, never rebuilt per
 * wait: `pos` finds an fd's slot, removal moves the last slot into the
 * hole.  Slot 0 is the pipe's read end.  The one exception is a change made
 * (by another thread) while a wait has the array: it goes to `mask` alone,
 * wakes the wait, and the next tcg_poller_enter rebuilds the array.
 *
 * poll itself accepts any fd and says POLLNVAL at wait time; registration
 * checks what epoll_ctl would refuse, so that both backends raise the same
 * errors: EBADF for a bad fd, EPERM for a regular file or a directory.
 */
#if defined(TCG_POLLER_POLL)

#if defined(__linux__) && !defined(_GNU_SOURCE)
#  define _GNU_SOURCE 1     /* pipe2 */
#endif
#include "poller.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define INITIAL_CAP 16

static short
poll_bits(unsigned mask)
{
    return (short)(((mask & TCG_POLLER_READ) ? POLLIN : 0) |
                   ((mask & TCG_POLLER_WRITE) ? POLLOUT : 0));
}

/* A non-blocking, close-on-exec pipe; atomically where pipe2 exists. */
static int
make_pipe(int fds[2])
{
#if defined(__APPLE__)
    if (pipe(fds) < 0) {
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if (fl < 0 || fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) < 0 ||
            fcntl(fds[i], F_SETFD, FD_CLOEXEC) < 0) {
            int err = errno;
            close(fds[0]);
            close(fds[1]);
            errno = err;
            return -1;
        }
    }
    return 0;
#else
    return pipe2(fds, O_NONBLOCK | O_CLOEXEC);
#endif
}

/* Room for `need` slots in pfds and events. */
static int
reserve(tcg_poller *p, size_t need)
{
    if (need <= p->cap) {
        return 0;
    }
    size_t n = p->cap ? p->cap : INITIAL_CAP;
    while (n < need) {
        n *= 2;
    }
    /* events first: the loop may be reading it (realloc keeps what it
     * reads); pfds is not in use, or we would not be here. */
    tcg_poller_event *ev = realloc(p->events, n * sizeof(*ev));
    if (ev == NULL) {
        errno = ENOMEM;
        return -1;
    }
    p->events = ev;
    struct pollfd *pf = realloc(p->pfds, n * sizeof(*pf));
    if (pf == NULL) {
        errno = ENOMEM;
        return -1;
    }
    p->pfds = pf;
    p->cap = n;
    return 0;
}

int
tcg_poller_open(tcg_poller *p)
{
    memset(p, 0, sizeof(*p));
    p->wake_r = p->wake_w = -1;
    int fds[2];
    if (reserve(p, INITIAL_CAP) < 0 || make_pipe(fds) < 0) {
        int err = errno;
        tcg_poller_close(p);
        errno = err;
        return -1;
    }
    p->wake_r = fds[0];
    p->wake_w = fds[1];
    p->pfds[0].fd = p->wake_r;
    p->pfds[0].events = POLLIN;
    p->pfds[0].revents = 0;
    p->npfds = 1;
    return 0;
}

void
tcg_poller_close(tcg_poller *p)
{
    if (p->wake_r >= 0) {
        close(p->wake_r);
    }
    if (p->wake_w >= 0) {
        close(p->wake_w);
    }
    free(p->mask);
    free(p->pos);
    free(p->pfds);
    free(p->events);
    memset(p, 0, sizeof(*p));
    p->wake_r = p->wake_w = -1;
}

static int
grow_table(tcg_poller *p, int fd)
{
    size_t n = p->nmask ? p->nmask : 64;
    while (n <= (size_t)fd) {
        n *= 2;
    }
    uint8_t *m = realloc(p->mask, n);
    if (m == NULL) {
        errno = ENOMEM;
        return -1;
    }
    memset(m + p->nmask, 0, n - p->nmask);
    p->mask = m;
    int32_t *pos = realloc(p->pos, n * sizeof(*pos));
    if (pos == NULL) {
        /* `mask` keeps its new zeroed tail; nmask says what both hold. */
        errno = ENOMEM;
        return -1;
    }
    memset(pos + p->nmask, 0, (n - p->nmask) * sizeof(*pos));
    p->pos = pos;
    p->nmask = n;
    return 0;
}

/* What epoll_ctl would refuse: 0, or an errno. */
static int
check_fd(int fd)
{
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        return errno;
    }
    if (S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode)) {
        return EPERM;
    }
    return 0;
}

void
tcg_poller_sync(tcg_poller *p)
{
    size_t need = 1;
    for (size_t fd = 0; fd < p->nmask; fd++) {
        need += p->mask[fd] != 0;
    }
    if (reserve(p, need) < 0) {
        return;     /* still stale: the old array is polled, and harmless */
    }
    p->npfds = 1;
    for (size_t fd = 0; fd < p->nmask; fd++) {
        p->pos[fd] = 0;
        p->mask[fd] &= (uint8_t)~TCG_POLLER_FRESH;
        if (p->mask[fd] != 0) {
            struct pollfd *s = &p->pfds[p->npfds++];
            s->fd = (int)fd;
            s->events = poll_bits(p->mask[fd]);
            s->revents = 0;
            p->pos[fd] = (int32_t)p->npfds;
        }
    }
    p->stale = false;
}

int
tcg_poller_update(tcg_poller *p, int fd, unsigned want, bool strict)
{
    unsigned have = tcg_poller_mask(p, fd);
    bool checked = false;
    if (want & ~have) {
        int err = check_fd(fd);
        if (err != 0) {
            if (strict) {
                errno = err;
                return -1;
            }
            want = 0;   /* gone: as epoll, which dropped it */
        }
        checked = err == 0;
    }
    if (want == have) {
        return 0;
    }
    if ((size_t)fd >= p->nmask && grow_table(p, fd) < 0) {
        return strict ? -1 : 0;   /* (want != 0 here, have == 0) */
    }
    if (p->waiting || p->stale) {
        unsigned fresh = checked ? TCG_POLLER_FRESH
                                 : p->mask[fd] & TCG_POLLER_FRESH;
        p->mask[fd] = (uint8_t)(want != 0 ? want | fresh : 0);
        p->stale = true;
        /* Once per wait, even one that polls an array that a failed
         * rebuild left stale: it does not watch this change. */
        if (p->waiting && !p->woken) {
            p->woken = true;
            tcg_poller_wake(p);
        }
        return 0;
    }
    if (have == 0) {
        if (reserve(p, p->npfds + 1) < 0) {
            return strict ? -1 : 0;
        }
        struct pollfd *s = &p->pfds[p->npfds++];
        s->fd = fd;
        s->events = poll_bits(want);
        s->revents = 0;
        p->pos[fd] = (int32_t)p->npfds;
    }
    else if (want == 0) {
        size_t i = (size_t)p->pos[fd] - 1, last = p->npfds - 1;
        if (i != last) {
            p->pfds[i] = p->pfds[last];
            p->pos[p->pfds[i].fd] = (int32_t)(i + 1);
        }
        p->npfds--;
        p->pos[fd] = 0;
    }
    else {
        p->pfds[p->pos[fd] - 1].events = poll_bits(want);
    }
    p->mask[fd] = (uint8_t)want;
    return 0;
}

void
tcg_poller_forget(tcg_poller *p, int fd)
{
    (void)tcg_poller_update(p, fd, 0, false);
}

#endif /* TCG_POLLER_POLL */
