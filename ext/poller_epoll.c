/* poller_epoll.c: poller.h on epoll, woken through an eventfd (Linux).
 *
 * The kernel holds the interest set; `mask` is our record of it, which
 * differs from the kernel's when a registered fd was closed (epoll drops
 * a closed file by itself) or when a closed fd's file lives on elsewhere
 * (epoll keeps reporting a number we can no longer unregister: rebuild).
 */
#if defined(TCG_POLLER_EPOLL)

#if !defined(_GNU_SOURCE)
#  define _GNU_SOURCE 1     /* dup3 */
#endif
#include "poller.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>

static uint32_t
epoll_bits(unsigned mask)
{
    return ((mask & TCG_POLLER_READ) ? (uint32_t)EPOLLIN : 0) |
           ((mask & TCG_POLLER_WRITE) ? (uint32_t)EPOLLOUT : 0);
}

static int
epoll_op(int epfd, int op, int fd, uint32_t events)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.fd = fd;
    return epoll_ctl(epfd, op, fd, &ev);
}

int
tcg_poller_open(tcg_poller *p)
{
    p->mask = NULL;
    p->nmask = 0;
    p->wakefd = -1;
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd >= 0) {
        p->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
    if (p->epfd < 0 || p->wakefd < 0 ||
        epoll_op(p->epfd, EPOLL_CTL_ADD, p->wakefd, EPOLLIN) < 0) {
        int err = errno;
        tcg_poller_close(p);
        errno = err;
        return -1;
    }
    return 0;
}

void
tcg_poller_close(tcg_poller *p)
{
    if (p->epfd >= 0) {
        close(p->epfd);
    }
    if (p->wakefd >= 0) {
        close(p->wakefd);
    }
    p->epfd = p->wakefd = -1;
    free(p->mask);
    p->mask = NULL;
    p->nmask = 0;
}

static int
grow(tcg_poller *p, int fd)
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
    p->nmask = n;
    return 0;
}

int
tcg_poller_update(tcg_poller *p, int fd, unsigned want, bool strict)
{
    if ((size_t)fd >= p->nmask && grow(p, fd) < 0) {
        return strict ? -1 : 0;
    }
    unsigned have = p->mask[fd];
    int op = have == 0 ? EPOLL_CTL_ADD
           : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    int rc = epoll_op(p->epfd, op, fd, epoll_bits(want));
    if (rc < 0) {
        /* Our record and the kernel's differ when a registered fd was
         * closed (and perhaps its number reused): retry the other way. */
        if (op == EPOLL_CTL_ADD && errno == EEXIST) {
            rc = epoll_op(p->epfd, EPOLL_CTL_MOD, fd, epoll_bits(want));
        }
        else if (op == EPOLL_CTL_MOD && errno == ENOENT) {
            rc = epoll_op(p->epfd, EPOLL_CTL_ADD, fd, epoll_bits(want));
        }
    }
    if (rc < 0) {
        if (strict) {
            return -1;
        }
        want = 0;   /* the kernel no longer has it */
    }
    p->mask[fd] = (uint8_t)want;
    return 0;
}

/* Re-create the epoll set from our records.  Used when epoll reports an fd
 * that we cannot unregister (closed while its open file description lives
 * on elsewhere): without this the loop would spin on it forever. */
static void
rebuild(tcg_poller *p)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        return;
    }
    (void)epoll_op(ep, EPOLL_CTL_ADD, p->wakefd, EPOLLIN);
    for (size_t fd = 0; fd < p->nmask; fd++) {
        uint32_t bits = epoll_bits(p->mask[fd]);
        if (bits != 0 && epoll_op(ep, EPOLL_CTL_ADD, (int)fd, bits) < 0) {
            p->mask[fd] = 0;
        }
    }
    /* Keep the number: dup3 swaps the sets atomically. */
    if (dup3(ep, p->epfd, O_CLOEXEC) < 0) {
        close(p->epfd);
        p->epfd = ep;
        return;
    }
    close(ep);
}

void
tcg_poller_forget(tcg_poller *p, int fd)
{
    if (p->epfd < 0) {
        return;
    }
    if ((size_t)fd < p->nmask) {
        p->mask[fd] = 0;
    }
    if (epoll_op(p->epfd, EPOLL_CTL_DEL, fd, 0) < 0) {
        rebuild(p);
    }
}

#endif /* TCG_POLLER_EPOLL */
