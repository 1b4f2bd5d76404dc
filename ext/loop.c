/* loop.c: the event loop's C core, tornado_cgen._core.Loop.
 *
 * Owns: the ready queue (a ring buffer of handles, and of callbacks kept
 * without one: see ready_entry), the timer heap (a binary
 * heap of (deadline, sequence, handle) with lazy deletion of cancelled
 * timers), readiness with one reader and one writer handle per fd (through
 * poller.h: epoll, or poll elsewhere), the waker that wakes a sleeping loop
 * from other threads, and the iteration itself.  The Python classes in
 * tornado_cgen/loop.py (asyncio's face) and tornado_cgen/ioloop.py
 * (Tornado's face) subclass this type and add the cold paths; everything a
 * loop does per callback, per timer and per ready fd happens here.
 *
 * One iteration (loop_run_once):
 *   1. poll: the wait, with timeout 0 if callbacks are ready, else until the
 *      next timer; the GIL is released only when the wait may block.  While
 *      callbacks are ready the poll is skipped altogether, but never for
 *      longer than TCG_POLL_INTERVAL: a busy loop still sees I/O every
 *      250 us (rloop's rule; asyncio and uvloop poll every iteration),
 *      and the first iteration of every run_forever() always polls.
 *      Ready fds append their reader/writer handles to the ring.
 *   2. timers whose deadline has passed move to the ring, in deadline order
 *      (ties in scheduling order).
 *   3. exactly the handles in the ring at this point run, FIFO; whatever they
 *      schedule runs in the next iteration.
 *
 * Threads.  The ring and heap are only touched with the GIL held, so other
 * threads may push (call_soon_threadsafe, IOLoop.add_callback) without a
 * lock.  The loop sets `sleeping` (with the GIL held, after a last look at
 * the ring) just before it releases the GIL to block in the wait; a push
 * that sees `sleeping` wakes the poller once (`wakeup_pending`).  A busy
 * loop therefore costs other threads no syscall at all.  This relies on the
 * GIL: free-threaded builds are not supported.
 */
#include "tcg.h"
#include "poller.h"
#include <limits.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TCG_POLL_INTERVAL 250e-6        /* seconds; see the file comment */
#define TCG_MAX_TIMEOUT (24 * 3600.0)   /* as asyncio's MAXIMUM_SELECT_TIMEOUT */
#define TCG_PURGE_MIN 100               /* as asyncio: purge cancelled timers */
#define TCG_KEEP_CAP 65536              /* ring capacity kept after a burst */

typedef struct {
    double when;
    uint64_t seq;
    tcg_HandleObject *h;   /* strong */
} timer_entry;

typedef struct {
    tcg_HandleObject *reader;   /* strong, or NULL */
    tcg_HandleObject *writer;   /* strong, or NULL */
} fd_entry;

/* One ready callback: a Handle, or a callback that nobody outside the
 * loop can see, kept inline without one.  The loop's own wakeups (a
 * future's done callbacks, a coroutine's moment) and Tornado's
 * add_callback (which returns nothing) never show their handle, so they
 * skip making, tracking and freeing one per callback; a failure report,
 * or asyncio's debug mode, makes the handle the entry would have had. */
typedef struct {
    tcg_HandleObject *handle;   /* strong; NULL for an inline entry */
    PyObject *callback;         /* inline: strong */
    PyObject *arg;              /* inline: the one argument (strong) or NULL */
    PyObject *context;          /* inline: strong */
    unsigned flags;             /* inline: 0 or TCG_H_TORNADO */
} ready_entry;

typedef struct {
    PyObject_HEAD
    PyObject *module;         /* strong: keeps `st` valid to the end, even
                               * when finalization clears types first */
    tcg_state *st;            /* the module's state */

    ready_entry *ring;        /* ready callbacks; capacity a power of 2 */
    size_t ring_cap, ring_head, ring_len;

    timer_entry *heap;
    size_t heap_len, heap_cap, heap_cancelled;
    uint64_t timer_seq;

    fd_entry *fds;            /* indexed by fd */
    size_t nfds;

    tcg_poller poller;        /* open from loop_new to close */
    double last_poll;
    uint64_t iterations;      /* run_once count, for tests */

    unsigned long thread_id;  /* valid while running */
    bool running, stopping, closed, debug;
    bool sleeping;            /* blocked (or about to block) in the wait */
    bool wakeup_pending;      /* the poller was woken and not yet drained */
} tcg_LoopObject;

#define LOOP(op) ((tcg_LoopObject *)(op))

/* ---- invariants (debug builds) -----------------------------------------
 *
 * With TCG_DEBUG (setup.py: TCG_DEBUG=1 or TCG_SANITIZE=1) the ring and
 * the heap are checked where they change: O(1) (or one sift path) on each
 * push and pop, the whole structure once per iteration, after a purge or a
 * growth, with tcg.h's TCG_ASSERT: a broken invariant aborts with the
 * condition and the line.  Release builds compile all of it away.
 */

static inline double
monotonic_now(void)
{
    /* Computed as CPython's time.monotonic(), so the two agree exactly. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    return (double)ns / 1e9;
}

static int
check_closed(tcg_LoopObject *lp)
{
    if (TCG_UNLIKELY(lp->closed)) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    return 0;
}

/* ---- waking ------------------------------------------------------------ */

static void
loop_wakeup(tcg_LoopObject *lp)
{
    if (lp->wakeup_pending || lp->closed) {
        return;
    }
    lp->wakeup_pending = true;
    tcg_poller_wake(&lp->poller);
}

/* ---- the ready ring ---------------------------------------------------- */

/* Slot `i` of the live region (0 = the head). */
#define RING_AT(lp, i) ((lp)->ring[((lp)->ring_head + (i)) & ((lp)->ring_cap - 1)])

/* Whether a slot holds an entry (debug builds empty the slots they pop). */
static inline bool
entry_used(const ready_entry *e)
{
    return e->handle != NULL || e->callback != NULL;
}

/* Drop an entry's references (it is out of the ring: this may run code). */
static inline void
entry_release(ready_entry *e)
{
    Py_XDECREF(e->handle);
    Py_XDECREF(e->callback);
    Py_XDECREF(e->arg);
    Py_XDECREF(e->context);
}

#ifdef TCG_DEBUG
/* The ring's shape, and: every live slot holds a handle or a whole inline
 * entry, and the free slots on either side of the live region are empty
 * (debug builds clear what they pop), so head and length agree with the
 * contents. */
static void
ring_check(tcg_LoopObject *lp)
{
    if (lp->ring_cap == 0) {
        TCG_ASSERT(lp->ring == NULL);
        TCG_ASSERT(lp->ring_head == 0 && lp->ring_len == 0);
        return;
    }
    TCG_ASSERT(lp->ring != NULL);
    TCG_ASSERT((lp->ring_cap & (lp->ring_cap - 1)) == 0);
    TCG_ASSERT(lp->ring_head < lp->ring_cap);
    TCG_ASSERT(lp->ring_len <= lp->ring_cap);
    for (size_t i = 0; i < lp->ring_len; i++) {
        const ready_entry *e = &RING_AT(lp, i);
        if (e->handle != NULL) {
            TCG_ASSERT(e->callback == NULL && e->arg == NULL &&
                       e->context == NULL);
            TCG_ASSERT(Py_REFCNT(e->handle) > 0);
        }
        else {
            TCG_ASSERT(e->callback != NULL && e->context != NULL);
            TCG_ASSERT((e->flags & ~TCG_H_TORNADO) == 0);
        }
    }
    if (lp->ring_len < lp->ring_cap) {
        TCG_ASSERT(!entry_used(&RING_AT(lp, lp->ring_len)));   /* the tail */
        TCG_ASSERT(!entry_used(&RING_AT(lp, lp->ring_cap - 1)));
    }
}
#else
#  define ring_check(lp) ((void)0)
#endif

static int
ring_grow(tcg_LoopObject *lp)
{
    size_t cap = lp->ring_cap ? lp->ring_cap * 2 : 64;
    ready_entry *ring = PyMem_Malloc(cap * sizeof(*ring));
    if (ring == NULL) {
        PyErr_NoMemory();
        return -1;
    }
#ifdef TCG_DEBUG
    memset(ring, 0, cap * sizeof(*ring));
#endif
    for (size_t i = 0; i < lp->ring_len; i++) {
        ring[i] = RING_AT(lp, i);
    }
    PyMem_Free(lp->ring);
    lp->ring = ring;
    lp->ring_cap = cap;
    lp->ring_head = 0;
    ring_check(lp);
    return 0;
}

/* Append `e`, stealing its references (released on failure too). */
static inline int
ring_push_entry(tcg_LoopObject *lp, ready_entry e)
{
    if (TCG_UNLIKELY(lp->ring_len == lp->ring_cap) && ring_grow(lp) < 0) {
        entry_release(&e);
        return -1;
    }
    TCG_ASSERT(!entry_used(&RING_AT(lp, lp->ring_len)));
    RING_AT(lp, lp->ring_len) = e;
    lp->ring_len++;
    if (TCG_UNLIKELY(lp->sleeping)) {
        loop_wakeup(lp);
    }
    return 0;
}

/* Append `h`, stealing the reference (released on failure too). */
static inline int
ring_push(tcg_LoopObject *lp, tcg_HandleObject *h)
{
    TCG_ASSERT(h != NULL);
    ready_entry e = {h, NULL, NULL, NULL, 0};
    return ring_push_entry(lp, e);
}

/* Append callback(arg) (arg may be NULL) to run in `ctx`, stealing the
 * three references (released on failure too). */
static inline int
ring_push_inline(tcg_LoopObject *lp, PyObject *callback, PyObject *arg,
                 PyObject *ctx, unsigned flags)
{
    TCG_ASSERT(callback != NULL && ctx != NULL);
    ready_entry e = {NULL, callback, arg, ctx, flags};
    return ring_push_entry(lp, e);
}

/* The head entry, taken out: the caller owns its references. */
static inline ready_entry
ring_pop(tcg_LoopObject *lp)
{
    TCG_ASSERT(lp->ring_len > 0 && lp->ring_head < lp->ring_cap);
    ready_entry e = lp->ring[lp->ring_head];
    TCG_ASSERT(entry_used(&e));
#ifdef TCG_DEBUG
    memset(&lp->ring[lp->ring_head], 0, sizeof(e));   /* see ring_check() */
#endif
    lp->ring_head = (lp->ring_head + 1) & (lp->ring_cap - 1);
    lp->ring_len--;
    return e;
}

/* ---- the timer heap ---------------------------------------------------- */

static inline bool
timer_before(const timer_entry *a, const timer_entry *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

#ifdef TCG_DEBUG
/* Entry i against its parent, and the entry against its handle. */
static void
heap_check_entry(tcg_LoopObject *lp, size_t i)
{
    const timer_entry *e = &lp->heap[i];
    TCG_ASSERT(e->h != NULL && Py_REFCNT(e->h) > 0);
    TCG_ASSERT(e->h->flags & TCG_H_SCHEDULED);
    TCG_ASSERT(e->h->flags & TCG_H_TIMER);
    TCG_ASSERT(e->when == e->h->when || (isnan(e->when) && isnan(e->h->when)));
    TCG_ASSERT(e->seq < lp->timer_seq);
    TCG_ASSERT(i == 0 || !timer_before(e, &lp->heap[(i - 1) / 2]));
}

/* The heap's shape and order, and its count of cancelled timers. */
static void
heap_check(tcg_LoopObject *lp)
{
    TCG_ASSERT(lp->heap_len <= lp->heap_cap);
    TCG_ASSERT(lp->heap_cap == 0 || lp->heap != NULL);
    size_t cancelled = 0;
    for (size_t i = 0; i < lp->heap_len; i++) {
        heap_check_entry(lp, i);
        cancelled += tcg_handle_cancelled(lp->heap[i].h);
    }
    TCG_ASSERT(cancelled == lp->heap_cancelled);
}

/* After a sift: the path from i to the root is in order. */
static void
heap_check_path(tcg_LoopObject *lp, size_t i)
{
    TCG_ASSERT(lp->heap_cancelled <= lp->heap_len);
    if (lp->heap_len == 0) {
        return;
    }
    for (;;) {
        heap_check_entry(lp, i);
        if (i == 0) {
            break;
        }
        i = (i - 1) / 2;
    }
}
#else
#  define heap_check(lp) ((void)0)
#  define heap_check_path(lp, i) ((void)0)
#endif

static void
heap_sift_up(timer_entry *heap, size_t i)
{
    timer_entry item = heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(&item, &heap[parent])) {
            break;
        }
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = item;
}

static void
heap_sift_down(timer_entry *heap, size_t len, size_t i)
{
    timer_entry item = heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= len) {
            break;
        }
        if (child + 1 < len && timer_before(&heap[child + 1], &heap[child])) {
            child++;
        }
        if (!timer_before(&heap[child], &item)) {
            break;
        }
        heap[i] = heap[child];
        i = child;
    }
    heap[i] = item;
}

/* Insert `h` (borrowed; the heap takes its own reference). */
static int
heap_push(tcg_LoopObject *lp, tcg_HandleObject *h)
{
    if (lp->heap_len == lp->heap_cap) {
        size_t cap = lp->heap_cap ? lp->heap_cap * 2 : 64;
        timer_entry *heap = PyMem_Realloc(lp->heap, cap * sizeof(*heap));
        if (heap == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        lp->heap = heap;
        lp->heap_cap = cap;
    }
    TCG_ASSERT(!(h->flags & TCG_H_SCHEDULED) && (h->flags & TCG_H_TIMER));
    tcg_handle_set_scheduled(h, true);
    lp->heap[lp->heap_len] = (timer_entry){h->when, lp->timer_seq++, h};
    Py_INCREF(h);
    heap_sift_up(lp->heap, lp->heap_len++);
    heap_check_path(lp, lp->heap_len - 1);
    if (TCG_UNLIKELY(lp->sleeping) && lp->heap[0].h == h) {
        loop_wakeup(lp);   /* scheduled from another thread: new deadline */
    }
    return 0;
}

/* Remove the earliest timer; returns it (strong), no longer SCHEDULED. */
static tcg_HandleObject *
heap_pop(tcg_LoopObject *lp)
{
    TCG_ASSERT(lp->heap_len > 0);
    tcg_HandleObject *h = lp->heap[0].h;
    lp->heap[0] = lp->heap[--lp->heap_len];
    if (lp->heap_len > 0) {
        heap_sift_down(lp->heap, lp->heap_len, 0);
    }
    tcg_handle_set_scheduled(h, false);
    if (tcg_handle_cancelled(h)) {
        TCG_ASSERT(lp->heap_cancelled > 0);
        lp->heap_cancelled--;
    }
#ifdef TCG_DEBUG
    /* The new root against its children. */
    for (size_t c = 1; c <= 2 && c < lp->heap_len; c++) {
        heap_check_entry(lp, c);
    }
    heap_check_path(lp, 0);
#endif
    return h;
}

bool
tcg_loop_debug(PyObject *loop)
{
    return LOOP(loop)->debug;
}

void
tcg_loop_timer_cancelled(PyObject *loop)
{
    tcg_LoopObject *lp = LOOP(loop);
    lp->heap_cancelled++;
    TCG_ASSERT(lp->heap_cancelled <= lp->heap_len);
}

/* Drop cancelled timers when they are many and most of the heap.  The heap
 * is rebuilt first and the handles released after, since a release may run
 * code that schedules timers. */
static int
heap_purge(tcg_LoopObject *lp)
{
    size_t n = lp->heap_cancelled;
    tcg_HandleObject **dead = PyMem_Malloc(n * sizeof(*dead));
    if (dead == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t j = 0, k = 0;
    for (size_t i = 0; i < lp->heap_len; i++) {
        timer_entry *e = &lp->heap[i];
        if (tcg_handle_cancelled(e->h) && k < n) {
            tcg_handle_set_scheduled(e->h, false);
            dead[k++] = e->h;
        }
        else {
            lp->heap[j++] = *e;
        }
    }
    lp->heap_len = j;
    lp->heap_cancelled -= k;
    for (size_t i = j / 2; i-- > 0;) {
        heap_sift_down(lp->heap, lp->heap_len, i);
    }
    heap_check(lp);
    for (size_t i = 0; i < k; i++) {
        Py_DECREF(dead[i]);
    }
    PyMem_Free(dead);
    return 0;
}

/* ---- file descriptors -------------------------------------------------- */

/* selectors._fileobj_to_fd: an int, or int(obj.fileno()).  A negative
 * number is a ValueError, as there; one larger than a C int holds gives
 * FD_TOO_BIG with no error set, for the caller to say what it means (epoll
 * would raise OverflowError; nothing that large is registered). */
#define FD_TOO_BIG (-2)

static int
fileobj_to_fd(PyObject *obj)
{
    PyObject *num;
    if (PyLong_Check(obj)) {
        num = Py_NewRef(obj);
    }
    else {
        PyObject *r = PyObject_CallMethod(obj, "fileno", NULL);
        num = r != NULL ? PyNumber_Long(r) : NULL;
        Py_XDECREF(r);
        if (num == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError) &&
                !PyErr_ExceptionMatches(PyExc_TypeError) &&
                !PyErr_ExceptionMatches(PyExc_ValueError)) {
                return -1;
            }
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "Invalid file object: %R", obj);
            return -1;
        }
    }
    int overflow;
    long fd = PyLong_AsLongAndOverflow(num, &overflow);
    if (fd == -1 && PyErr_Occurred()) {
        Py_DECREF(num);
        return -1;
    }
    if (overflow < 0 || (overflow == 0 && fd < 0)) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %R", num);
        Py_DECREF(num);
        return -1;
    }
    Py_DECREF(num);
    if (overflow > 0 || fd > INT_MAX) {
        return FD_TOO_BIG;
    }
    return (int)fd;
}

static fd_entry *
fd_slot(tcg_LoopObject *lp, int fd)
{
    if ((size_t)fd >= lp->nfds) {
        size_t n = lp->nfds ? lp->nfds : 64;
        while (n <= (size_t)fd) {
            n *= 2;
        }
        fd_entry *fds = PyMem_Realloc(lp->fds, n * sizeof(*fds));
        if (fds == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        memset(fds + lp->nfds, 0, (n - lp->nfds) * sizeof(*fds));
        lp->fds = fds;
        lp->nfds = n;
    }
    return &lp->fds[fd];
}

/* Make the poller's registration of `fd` match its reader/writer.  When
 * adding, failures raise OSError; when removing they cannot (the fd may be
 * closed already, which unregistered it). */
static int
fd_update(tcg_LoopObject *lp, int fd, bool adding)
{
    fd_entry *e = &lp->fds[fd];
    unsigned want = (e->reader ? TCG_POLLER_READ : 0) |
                    (e->writer ? TCG_POLLER_WRITE : 0);
    if (tcg_poller_set(&lp->poller, fd, want, adding) < 0) {
        if (errno == ENOMEM) {
            PyErr_NoMemory();
        }
        else {
            PyErr_SetFromErrno(PyExc_OSError);
        }
        return -1;
    }
    return 0;
}

/* ---- scheduling -------------------------------------------------------- */

/* Debug mode: the checks asyncio makes in call_soon/call_at. */
static int
debug_checks(tcg_LoopObject *lp, PyObject *callback, const char *method)
{
    PyObject *r = PyObject_CallMethod((PyObject *)lp, "_check_thread", NULL);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    r = PyObject_CallMethod((PyObject *)lp, "_check_callback", "Os",
                            callback, method);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Parse (callback, *args, context=None) from a fastcall vector that starts
 * at args[skip]. */
static int
parse_callback_args(PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames, Py_ssize_t skip, const char *method,
                    PyObject **callback, PyObject **context)
{
    *context = NULL;
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nkw; i++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, i);
            if (!PyUnicode_Check(name) ||
                PyUnicode_CompareWithASCIIString(name, "context") != 0) {
                PyErr_Format(PyExc_TypeError,
                             "%s() got an unexpected keyword argument '%S'",
                             method, name);
                return -1;
            }
            *context = args[nargs + i];
        }
    }
    if (nargs <= skip) {
        PyErr_Format(PyExc_TypeError, "%s() missing a callback argument",
                     method);
        return -1;
    }
    *callback = args[skip];
    return 0;
}

static PyObject *
schedule_soon(tcg_LoopObject *lp, PyObject *callback, PyObject *const *args,
              Py_ssize_t nargs, PyObject *context, unsigned flags)
{
    tcg_HandleObject *h = tcg_handle_new(lp->st, (PyObject *)lp, callback,
                                         args, nargs, context, flags, 0.0);
    if (h == NULL) {
        return NULL;
    }
    if (TCG_UNLIKELY(lp->debug) && tcg_handle_capture_source(lp->st, h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    Py_INCREF(h);
    if (ring_push(lp, h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

static PyObject *
schedule_at(tcg_LoopObject *lp, double when, PyObject *callback,
            PyObject *const *args, Py_ssize_t nargs, PyObject *context,
            unsigned flags)
{
    tcg_HandleObject *h = tcg_handle_new(lp->st, (PyObject *)lp, callback,
                                         args, nargs, context,
                                         flags | TCG_H_TIMER, when);
    if (h == NULL) {
        return NULL;
    }
    if ((TCG_UNLIKELY(lp->debug) &&
         tcg_handle_capture_source(lp->st, h) < 0) ||
        heap_push(lp, h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

int
tcg_loop_call_soon(tcg_state *st, PyObject *loop, PyObject *fn,
                   PyObject *arg, PyObject *ctx)
{
    tcg_LoopObject *lp = LOOP(loop);
    if (check_closed(lp) < 0) {
        return -1;
    }
    if (TCG_UNLIKELY(lp->debug)) {
        /* asyncio's debug mode: the handle records where it was made,
         * which its failure report shows. */
        PyObject *h = schedule_soon(lp, fn, arg != NULL ? &arg : NULL,
                                    arg != NULL, ctx, 0);
        if (h == NULL) {
            return -1;
        }
        Py_DECREF(h);
        return 0;
    }
    if (TCG_UNLIKELY(st->cleared)) {
        tcg_state_gone();   /* as tcg_handle_new() says it */
        return -1;
    }
    /* No handle: nobody sees it (see ready_entry). */
    ctx = ctx != NULL && ctx != Py_None ? Py_NewRef(ctx)
                                        : PyContext_CopyCurrent();
    if (ctx == NULL) {
        return -1;
    }
    return ring_push_inline(lp, Py_NewRef(fn), Py_XNewRef(arg), ctx, 0);
}

/* call_soon(callback, *args, context=None) */
static PyObject *
loop_call_soon(PyObject *self, PyObject *const *args, size_t nargsf,
               PyObject *kwnames)
{
    tcg_LoopObject *lp = LOOP(self);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *callback, *context;
    if (parse_callback_args(args, nargs, kwnames, 0, "call_soon", &callback,
                            &context) < 0 ||
        check_closed(lp) < 0 ||
        (TCG_UNLIKELY(lp->debug) &&
         debug_checks(lp, callback, "call_soon") < 0)) {
        return NULL;
    }
    return schedule_soon(lp, callback, args + 1, nargs - 1, context, 0);
}

/* call_soon_threadsafe(callback, *args, context=None): the same push; the
 * push itself wakes a sleeping loop. */
static PyObject *
loop_call_soon_threadsafe(PyObject *self, PyObject *const *args,
                          size_t nargsf, PyObject *kwnames)
{
    tcg_LoopObject *lp = LOOP(self);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *callback, *context;
    if (parse_callback_args(args, nargs, kwnames, 0, "call_soon_threadsafe",
                            &callback, &context) < 0 ||
        check_closed(lp) < 0) {
        return NULL;
    }
    if (TCG_UNLIKELY(lp->debug)) {
        PyObject *r = PyObject_CallMethod(self, "_check_callback", "Os",
                                          callback, "call_soon_threadsafe");
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
    }
    return schedule_soon(lp, callback, args + 1, nargs - 1, context, 0);
}

/* A time argument read as asyncio and Tornado read theirs, by arithmetic
 * with the loop's float clock (`loop.time() + delay`, `when -
 * loop.time()`): what is not a real number is the TypeError (or
 * OverflowError) that arithmetic raises.  None has its own message.  The
 * NaN check is apart (check_nan_time), after the closed check, since
 * theirs fail on a closed loop before anything looks at the value. */
static int
get_time_arg(PyObject *obj, const char *none_msg, tcg_LoopObject *closed,
             double *out)
{
    if (obj == Py_None) {
        PyErr_SetString(PyExc_TypeError, none_msg);
        return -1;
    }
    if (PyFloat_CheckExact(obj)) {
        *out = PyFloat_AS_DOUBLE(obj);
        return closed != NULL ? check_closed(closed) : 0;
    }
    if (PyLong_CheckExact(obj)) {
        *out = PyLong_AsDouble(obj);
        if (*out == -1.0 && PyErr_Occurred()) {
            return -1;
        }
        return closed != NULL ? check_closed(closed) : 0;
    }
    PyObject *zero = PyFloat_FromDouble(0.0);
    if (zero == NULL) {
        return -1;
    }
    PyObject *sum = PyNumber_Add(zero, obj);
    Py_DECREF(zero);
    if (sum == NULL) {
        return -1;
    }
    /* `closed`: the closed check between the arithmetic and the rest, as
     * call_later(delay) = call_at(time() + delay) makes it. */
    if (closed != NULL && check_closed(closed) < 0) {
        Py_DECREF(sum);
        return -1;
    }
    *out = PyFloat_AsDouble(sum);
    Py_DECREF(sum);
    if (*out == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    return 0;
}

/* A NaN deadline compares false with every other: in the heap it would
 * hide every timer behind it.  (Infinity is fine: never.) */
static int
check_nan_time(double t)
{
    if (isnan(t)) {
        PyErr_SetString(PyExc_ValueError, "a time cannot be NaN");
        return -1;
    }
    return 0;
}

/* call_at(when, callback, *args, context=None) */
static PyObject *
loop_call_at(PyObject *self, PyObject *const *args, size_t nargsf,
             PyObject *kwnames)
{
    tcg_LoopObject *lp = LOOP(self);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *callback, *context;
    double when;
    /* asyncio's order: None, closed, then the value.  The value's
     * arithmetic may run Python code (__radd__, __float__) that closes the
     * loop: get_time_arg checks again after it. */
    if (parse_callback_args(args, nargs, kwnames, 1, "call_at", &callback,
                            &context) < 0) {
        return NULL;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "when cannot be None");
        return NULL;
    }
    if (check_closed(lp) < 0 ||
        get_time_arg(args[0], "when cannot be None", lp, &when) < 0 ||
        check_nan_time(when) < 0 ||
        (TCG_UNLIKELY(lp->debug) &&
         debug_checks(lp, callback, "call_at") < 0)) {
        return NULL;
    }
    return schedule_at(lp, when, callback, args + 2, nargs - 2, context, 0);
}

/* call_later(delay, callback, *args, context=None) */
static PyObject *
loop_call_later(PyObject *self, PyObject *const *args, size_t nargsf,
                PyObject *kwnames)
{
    tcg_LoopObject *lp = LOOP(self);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *callback, *context;
    double delay;
    if (parse_callback_args(args, nargs, kwnames, 1, "call_later", &callback,
                            &context) < 0 ||
        get_time_arg(args[0], "delay must not be None", lp, &delay) < 0 ||
        check_nan_time(delay) < 0 ||
        (TCG_UNLIKELY(lp->debug) &&
         debug_checks(lp, callback, "call_at") < 0)) {
        return NULL;
    }
    return schedule_at(lp, monotonic_now() + delay, callback, args + 2,
                       nargs - 2, context, 0);
}

/* Tornado binds every callback with functools.partial(callback, ...)
 * before it schedules it, so a non-callable fails at once, even on a
 * closed loop, with partial's message. */
static inline int
check_tornado_callable(PyObject *callback)
{
    /* PyCallable_Check() without the call: callback is never NULL. */
    if (TCG_UNLIKELY(Py_TYPE(callback)->tp_call == NULL)) {
        PyErr_SetString(PyExc_TypeError, "the first argument must be callable");
        return -1;
    }
    return 0;
}

/* Tornado's IOLoop.add_callback(callback, *args, **kwargs): safe from any
 * thread; run under _run_callback's rules; dropped quietly once the loop is
 * closed (Tornado swallows that RuntimeError). */
PyObject *
tcg_loop_tornado_add_callback(PyObject *self, PyObject *const *args,
                              size_t nargsf, PyObject *kwnames)
{
    tcg_LoopObject *lp = LOOP(self);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1) {
        PyErr_SetString(PyExc_TypeError,
                        "add_callback() missing a callback argument");
        return NULL;
    }
    if (check_tornado_callable(args[0]) < 0) {
        return NULL;
    }
    if (lp->closed) {
        Py_RETURN_NONE;
    }
    PyObject *res;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0) {
        if (TCG_UNLIKELY(lp->st->cleared)) {
            Py_RETURN_NONE;   /* see below; and functools.partial is gone */
        }
        /* Cold: bind the keywords with functools.partial, as Tornado does. */
        PyObject *p = PyObject_Vectorcall(lp->st->loop.handle.partial, args,
                                          nargs, kwnames);
        if (p == NULL) {
            return NULL;
        }
        res = schedule_soon(lp, p, NULL, 0, NULL, TCG_H_TORNADO);
        Py_DECREF(p);
    }
    else if (nargs <= 2 && !lp->debug) {
        /* The usual call: no handle, since add_callback returns nothing
         * (see ready_entry).  Debug mode keeps handles: they record where
         * they were made. */
        if (TCG_UNLIKELY(lp->st->cleared)) {
            Py_RETURN_NONE;   /* see below */
        }
        PyObject *ctx = PyContext_CopyCurrent();
        if (ctx == NULL ||
            ring_push_inline(lp, Py_NewRef(args[0]),
                             nargs == 2 ? Py_NewRef(args[1]) : NULL, ctx,
                             TCG_H_TORNADO) < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    else {
        res = schedule_soon(lp, args[0], args + 1, nargs - 1, NULL,
                            TCG_H_TORNADO);
    }
    if (res == NULL) {
        if (lp->st->cleared) {
            /* Interpreter exit cleared the module: a loop that can no
             * longer make handles is as good as closed, and Tornado drops
             * callbacks for a closed loop quietly. */
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return NULL;
    }
    Py_DECREF(res);
    Py_RETURN_NONE;
}

/* A Tornado timer at `when` for args[1](*args[2:], **kwargs): run under
 * _run_callback's rules; a deadline in the past means "now" (Tornado turns
 * it into call_later(max(0, when - now))).  `now` is the loop time the
 * caller read. */
static PyObject *
tornado_timer(tcg_LoopObject *lp, double when, double now,
              PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (check_tornado_callable(args[1]) < 0 || check_closed(lp) < 0 ||
        check_nan_time(when) < 0) {
        return NULL;
    }
    if (TCG_UNLIKELY(lp->st->cleared)) {
        tcg_state_gone();   /* before functools.partial, which is gone too */
        return NULL;
    }
    if (!(when > now)) {
        when = now;
    }
    if (kwnames == NULL || PyTuple_GET_SIZE(kwnames) == 0) {
        return schedule_at(lp, when, args[1], args + 2, nargs - 2, NULL,
                           TCG_H_TORNADO);
    }
    /* Cold: bind the keywords with functools.partial, as Tornado does. */
    PyObject *p = PyObject_Vectorcall(lp->st->loop.handle.partial, args + 1,
                                      nargs - 1, kwnames);
    if (p == NULL) {
        return NULL;
    }
    PyObject *res = schedule_at(lp, when, p, NULL, 0, NULL, TCG_H_TORNADO);
    Py_DECREF(p);
    return res;
}

/* IOLoop.call_at(when, callback, *args, **kwargs) */
static PyObject *
loop_tornado_call_at(PyObject *self, PyObject *const *args, size_t nargsf,
                     PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    double when;
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError,
                        "call_at(when, callback, *args, **kwargs)");
        return NULL;
    }
    if (get_time_arg(args[0], "when cannot be None", NULL, &when) < 0) {
        return NULL;
    }
    return tornado_timer(LOOP(self), when, monotonic_now(), args, nargs,
                         kwnames);
}

/* IOLoop.call_later(delay, callback, *args, **kwargs) */
static PyObject *
loop_tornado_call_later(PyObject *self, PyObject *const *args, size_t nargsf,
                        PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    double delay;
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError,
                        "call_later(delay, callback, *args, **kwargs)");
        return NULL;
    }
    if (get_time_arg(args[0], "delay must not be None", NULL, &delay) < 0) {
        return NULL;
    }
    double now = monotonic_now();
    return tornado_timer(LOOP(self), now + delay, now, args, nargs, kwnames);
}

PyObject *
tcg_loop_tornado_call_later(PyObject *self, double delay,
                            PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    double now = monotonic_now();
    return tornado_timer(LOOP(self), now + delay, now, args, nargs, kwnames);
}

/* IOLoop.remove_timeout(handle): cancel; safe after it ran. */
static PyObject *
loop_remove_timeout(PyObject *self, PyObject *handle)
{
    tcg_state *st = LOOP(self)->st;
    if (!st->cleared &&
        PyObject_TypeCheck(handle, st->loop.handle.HandleType)) {
        if (tcg_handle_cancel((tcg_HandleObject *)handle) < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    return PyObject_CallMethod(handle, "cancel", NULL);
}

static PyObject *
loop_time(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(monotonic_now());
}

/* BaseEventLoop.get_debug() in C: asyncio.Future() asks it of its loop
 * every time one is made (install() makes every future an asyncio one). */
static PyObject *
loop_get_debug(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(LOOP(self)->debug);
}

static PyObject *
loop_create_future(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    tcg_state *st = LOOP(self)->st;
    if (TCG_UNLIKELY(st->cleared)) {
        tcg_state_gone();   /* tcg_future_new() needs the live state */
        return NULL;
    }
    if (st->c.future_factory != NULL) {   /* install(): asyncio.Future */
        return PyObject_Vectorcall(st->c.future_factory, &self, 0,
                                   st->c.kwnames_loop);
    }
    return (PyObject *)tcg_future_new(st, self);
}

static PyObject *
loop_stop(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    tcg_LoopObject *lp = LOOP(self);
    lp->stopping = true;
    if (lp->sleeping) {
        loop_wakeup(lp);   /* stop() from another thread */
    }
    Py_RETURN_NONE;
}

static PyObject *
loop_is_running(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(LOOP(self)->running);
}

static PyObject *
loop_is_closed(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(LOOP(self)->closed);
}

static PyObject *
loop_wakeup_meth(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    loop_wakeup(LOOP(self));
    Py_RETURN_NONE;
}

/* ---- readers and writers ----------------------------------------------- */

static PyObject *
add_io(tcg_LoopObject *lp, PyObject *const *args, Py_ssize_t nargs,
       bool writer, const char *method)
{
    if (nargs < 2) {
        PyErr_Format(PyExc_TypeError, "%s(fd, callback, *args)", method);
        return NULL;
    }
    /* Closed first, as asyncio's _add_reader; then the fd, as its
     * selector reads it (epoll.register's OverflowError for a huge one). */
    if (check_closed(lp) < 0) {
        return NULL;
    }
    int fd = fileobj_to_fd(args[0]);
    if (fd == FD_TOO_BIG) {
        PyErr_SetString(PyExc_OverflowError,
                        "Python int too large to convert to C int");
        return NULL;
    }
    if (fd < 0) {
        return NULL;
    }
    /* The handle first: allocating may run the GC, and finalizers may
     * add or remove fds (moving the table). */
    tcg_HandleObject *h = tcg_handle_new(lp->st, (PyObject *)lp, args[1],
                                         args + 2, nargs - 2, NULL, 0, 0.0);
    if (h == NULL) {
        return NULL;
    }
    /* Grow the fd table only for a real fd: a bogus huge number would
     * otherwise allocate a table that large before the poller said no. */
    if ((size_t)fd >= lp->nfds && fcntl(fd, F_GETFD) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(h);
        return NULL;
    }
    fd_entry *e = check_closed(lp) < 0 ? NULL : fd_slot(lp, fd);
    if (e == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    tcg_HandleObject **slot = writer ? &e->writer : &e->reader;
    tcg_HandleObject *old = *slot;
    *slot = h;
    if (fd_update(lp, fd, true) < 0) {
        *slot = old;
        Py_DECREF(h);
        return NULL;
    }
    if (old != NULL) {
        /* As asyncio's _add_reader: the new handle is registered even if
         * cancelling the old one raises (debug mode's repr). */
        int rc = tcg_handle_cancel(old);
        Py_DECREF(old);
        if (rc < 0) {
            return NULL;
        }
    }
    return Py_NewRef(h);
}

static PyObject *
remove_io(tcg_LoopObject *lp, PyObject *fdobj, bool writer)
{
    if (lp->closed) {
        Py_RETURN_FALSE;
    }
    int fd = fileobj_to_fd(fdobj);
    if (fd == FD_TOO_BIG) {
        Py_RETURN_FALSE;    /* never registered */
    }
    if (fd < 0) {
        return NULL;
    }
    if ((size_t)fd >= lp->nfds) {
        Py_RETURN_FALSE;
    }
    fd_entry *e = &lp->fds[fd];
    tcg_HandleObject **slot = writer ? &e->writer : &e->reader;
    tcg_HandleObject *old = *slot;
    *slot = NULL;
    (void)fd_update(lp, fd, false);
    if (old == NULL) {
        Py_RETURN_FALSE;
    }
    int rc = tcg_handle_cancel(old);
    Py_DECREF(old);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *
loop_add_reader(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return add_io(LOOP(self), args, nargs, false, "_add_reader");
}

static PyObject *
loop_add_writer(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return add_io(LOOP(self), args, nargs, true, "_add_writer");
}

static PyObject *
loop_remove_reader(PyObject *self, PyObject *fd)
{
    return remove_io(LOOP(self), fd, false);
}

static PyObject *
loop_remove_writer(PyObject *self, PyObject *fd)
{
    return remove_io(LOOP(self), fd, true);
}

/* ---- add_reader() and co: asyncio's public face ------------------------ */

enum { IO_ADD_READER, IO_ADD_WRITER, IO_REMOVE_READER, IO_REMOVE_WRITER };

/* The stdlib's BaseSelectorEventLoop.add_reader(fd, ...) and the three
 * others are `self._ensure_fd_no_transport(fd)` and then the underscore
 * method, two Python frames a call (Tornado's IOStreams change their
 * readers through them every request).  The stdlib's check can only fail
 * for a loop that has a transport on that fd at all: with an int fd and no
 * transport (the stdlib's _transports, a WeakValueDictionary, with
 * nothing in its data), it is skipped; otherwise it runs.  A check of the
 * loop's own (a subclass's, a mock on the instance) always runs: it may
 * do anything with any fd. */
static int
public_io_check(tcg_LoopObject *lp, PyObject *fd)
{
    tcg_loop_state *ls = &lp->st->loop;
    PyObject *self = (PyObject *)lp;
    PyObject *check = PyObject_GetAttr(self, ls->str_ensure_fd);
    if (check == NULL) {
        return -1;
    }
    if (PyLong_CheckExact(fd) && PyMethod_Check(check) &&
        PyMethod_GET_FUNCTION(check) == ls->stdlib_ensure_fd &&
        PyMethod_GET_SELF(check) == self) {
        PyObject *tr = PyObject_GetAttr(self, ls->str_transports);
        if (tr == NULL) {
            Py_DECREF(check);
            return -1;
        }
        PyObject *data = PyObject_GetAttr(tr, ls->str_data);
        Py_DECREF(tr);
        if (data == NULL) {
            PyErr_Clear();   /* not a WeakValueDictionary: ask the method */
        }
        else {
            int none = PyDict_CheckExact(data) && PyDict_GET_SIZE(data) == 0;
            Py_DECREF(data);
            if (none) {
                Py_DECREF(check);
                return 0;
            }
        }
    }
    PyObject *res = PyObject_CallOneArg(check, fd);
    Py_DECREF(check);
    Py_XDECREF(res);
    return res != NULL ? 0 : -1;
}

/* Then the underscore method: ours straight away, unless the instance or
 * a subclass put another in its place (tests mock it). */
static const char *const public_io_names[4] = {
    "add_reader", "add_writer", "remove_reader", "remove_writer"};

static PyCFunction
own_io_method(int which)
{
    switch (which) {
    case IO_ADD_READER:
        return (PyCFunction)(void (*)(void))loop_add_reader;
    case IO_ADD_WRITER:
        return (PyCFunction)(void (*)(void))loop_add_writer;
    case IO_REMOVE_READER:
        return loop_remove_reader;
    default:
        return loop_remove_writer;
    }
}

/* asyncio's take fd and callback by name too (add_reader(fd,
 * callback=cb)): put them where a positional call has them, in `pos`
 * (borrowed from the caller's vector). */
static int
public_io_keywords(PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames, int which, PyObject **pos)
{
    static const char *const params[2] = {"fd", "callback"};
    const char *name = public_io_names[which];
    Py_ssize_t nparams = which == IO_ADD_READER || which == IO_ADD_WRITER
                             ? 2 : 1;
    if (nargs > nparams) {
        /* Every parameter given by position: any keyword is too many. */
        PyErr_Format(PyExc_TypeError,
                     "%s() got an unexpected keyword argument '%U'", name,
                     PyTuple_GET_ITEM(kwnames, 0));
        return -1;
    }
    for (Py_ssize_t i = 0; i < nparams; i++) {
        pos[i] = i < nargs ? args[i] : NULL;
    }
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t i = 0;
        while (i < nparams &&
               PyUnicode_CompareWithASCIIString(key, params[i]) != 0) {
            i++;
        }
        if (i == nparams) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected keyword argument '%U'",
                         name, key);
            return -1;
        }
        if (pos[i] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got multiple values for argument '%s'", name,
                         params[i]);
            return -1;
        }
        pos[i] = args[nargs + k];
    }
    for (Py_ssize_t i = 0; i < nparams; i++) {
        if (pos[i] == NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing required argument '%s'", name,
                         params[i]);
            return -1;
        }
    }
    return 0;
}

static PyObject *
public_io(PyObject *self, PyObject *const *args, size_t nargsf,
          PyObject *kwnames, int which)
{
    tcg_LoopObject *lp = LOOP(self);
    bool adding = which == IO_ADD_READER || which == IO_ADD_WRITER;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *pos[2];
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        if (public_io_keywords(args, nargs, kwnames, which, pos) < 0) {
            return NULL;
        }
        args = pos;
        nargs = adding ? 2 : 1;
    }
    if (adding ? nargs < 2 : nargs != 1) {
        PyErr_Format(PyExc_TypeError, adding ? "%s(fd, callback, *args)"
                                             : "%s(fd)",
                     public_io_names[which]);
        return NULL;
    }
    if (public_io_check(lp, args[0]) < 0) {
        return NULL;
    }
    PyObject *meth = PyObject_GetAttr(self, lp->st->loop.str_io[which]);
    if (meth == NULL) {
        return NULL;
    }
    PyObject *res;
    if (PyCFunction_Check(meth) && PyCFunction_GET_SELF(meth) == self &&
        PyCFunction_GET_FUNCTION(meth) == own_io_method(which)) {
        bool writer = which == IO_ADD_WRITER || which == IO_REMOVE_WRITER;
        res = adding ? add_io(lp, args, nargs, writer,
                              writer ? "_add_writer" : "_add_reader")
                     : remove_io(lp, args[0], writer);
    }
    else {
        res = PyObject_Vectorcall(meth, args, nargs, NULL);
    }
    Py_DECREF(meth);
    if (adding && res != NULL) {
        Py_SETREF(res, Py_NewRef(Py_None));   /* asyncio's return nothing */
    }
    return res;
}

static PyObject *
loop_public_add_reader(PyObject *self, PyObject *const *args,
                       size_t nargsf, PyObject *kwnames)
{
    return public_io(self, args, nargsf, kwnames, IO_ADD_READER);
}

static PyObject *
loop_public_add_writer(PyObject *self, PyObject *const *args,
                       size_t nargsf, PyObject *kwnames)
{
    return public_io(self, args, nargsf, kwnames, IO_ADD_WRITER);
}

static PyObject *
loop_public_remove_reader(PyObject *self, PyObject *const *args,
                          size_t nargsf, PyObject *kwnames)
{
    return public_io(self, args, nargsf, kwnames, IO_REMOVE_READER);
}

static PyObject *
loop_public_remove_writer(PyObject *self, PyObject *const *args,
                          size_t nargsf, PyObject *kwnames)
{
    return public_io(self, args, nargsf, kwnames, IO_REMOVE_WRITER);
}

/* _fd_key(fd) -> (events, reader, writer) with selectors' EVENT_READ = 1
 * and EVENT_WRITE = 2, or None: what the stdlib's reprs ask a selector. */
static PyObject *
loop_fd_key(PyObject *self, PyObject *fdobj)
{
    tcg_LoopObject *lp = LOOP(self);
    int fd = fileobj_to_fd(fdobj);
    if (fd == FD_TOO_BIG) {
        Py_RETURN_NONE;
    }
    if (fd < 0) {
        return NULL;
    }
    if ((size_t)fd >= lp->nfds ||
        (lp->fds[fd].reader == NULL && lp->fds[fd].writer == NULL)) {
        Py_RETURN_NONE;
    }
    fd_entry *e = &lp->fds[fd];
    return Py_BuildValue("(iOO)", (e->reader ? 1 : 0) | (e->writer ? 2 : 0),
                         e->reader ? (PyObject *)e->reader : Py_None,
                         e->writer ? (PyObject *)e->writer : Py_None);
}

/* ---- running ----------------------------------------------------------- */

/* Queue the handles of the fds the poller reported. */
static int
dispatch_events(tcg_LoopObject *lp, int n)
{
    tcg_poller *p = &lp->poller;
    for (int i = 0; i < n; i++) {
        int fd = tcg_poller_event_fd(p, i);
        if (tcg_poller_is_waker(p, fd)) {
            tcg_poller_drain(p);
            lp->wakeup_pending = false;
            continue;
        }
        /* A closed fd is not reported, as epoll forgets a closed file. */
        if (TCG_UNLIKELY(tcg_poller_event_invalid(p, i)) ||
            (size_t)fd >= lp->nfds ||
            (lp->fds[fd].reader == NULL && lp->fds[fd].writer == NULL)) {
            tcg_poller_forget(p, fd);
            continue;
        }
        fd_entry *e = &lp->fds[fd];
        unsigned ready = tcg_poller_event_ready(p, i);
        /* As selectors: errors and hang-ups wake readers and writers (the
         * poller reports them as both).  Own both first: releasing one may
         * run code that changes `e`. */
        tcg_HandleObject *todo[2] = {
            (ready & TCG_POLLER_READ) ? e->reader : NULL,
            (ready & TCG_POLLER_WRITE) ? e->writer : NULL,
        };
        Py_XINCREF(todo[0]);
        Py_XINCREF(todo[1]);
        int rc = 0;
        for (int k = 0; k < 2; k++) {
            tcg_HandleObject *h = todo[k];
            if (h == NULL) {
                continue;
            }
            todo[k] = NULL;
            if (tcg_handle_cancelled(h)) {
                /* Cancelled through its handle: unregister, as asyncio.
                 * Releasing the other handle may have run code that closed
                 * the loop (emptying the table): look again. */
                if ((size_t)fd >= lp->nfds) {
                    Py_DECREF(h);
                    continue;
                }
                e = &lp->fds[fd];
                tcg_HandleObject **slot = k ? &e->writer : &e->reader;
                if (*slot == h) {
                    *slot = NULL;
                    (void)fd_update(lp, fd, false);
                    Py_DECREF(h);   /* the slot's reference */
                }
                Py_DECREF(h);
            }
            else if (rc == 0) {
                rc = ring_push(lp, h);   /* steals */
            }
            else {
                Py_DECREF(h);
            }
        }
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* Wait up to `timeout` seconds (0: just look; < 0: no limit) from `now`
 * and queue what is ready.  Sets lp->last_poll to the time after the poll:
 * `now` itself if it did not block, so a busy iteration reads the clock
 * once. */
static int
loop_poll(tcg_LoopObject *lp, double now, double timeout)
{
    int n;
    bool waited = false;
    double left = timeout;
    for (;;) {
        int ms;
        if (timeout == 0.0) {
            ms = 0;
        }
        else {
            /* Python signal handlers that are due run first: they may
             * schedule callbacks or raise KeyboardInterrupt. */
            if (PyErr_CheckSignals() < 0) {
                return -1;
            }
            /* From here to the wait no Python code runs: a push from
             * another thread either came before this look at the ring, or
             * sees `sleeping` and wakes the poller. */
            lp->sleeping = true;
            if (lp->ring_len > 0 || lp->stopping) {
                ms = 0;
            }
            else if (timeout < 0) {
                ms = -1;
            }
            else {
                /* Round up: waking before the deadline would spin.  A
                 * far-off deadline (call_at(inf)) waits INT_MAX ms at a
                 * time; the negated test also takes a NaN as "now". */
                double msd = !(left > 0) ? 0.0 : ceil(left * 1e3);
                ms = msd >= (double)INT_MAX ? INT_MAX : (int)msd;
            }
        }
        tcg_poller *p = &lp->poller;
        tcg_poller_enter(p);
        if (ms == 0) {
            n = tcg_poller_wait(p, 0);
        }
        else {
            waited = true;
            Py_BEGIN_ALLOW_THREADS
            n = tcg_poller_wait(p, ms);
            Py_END_ALLOW_THREADS
        }
        tcg_poller_leave(p);
        lp->sleeping = false;
        if (n >= 0) {
            break;
        }
        if (errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        /* EINTR: run the signal handlers, then wait for what is left. */
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        if (timeout > 0) {
            left = now + timeout - monotonic_now();
        }
    }
    lp->last_poll = waited ? monotonic_now() : now;
    return dispatch_events(lp, n);
}

static int
run_handle_debug(tcg_LoopObject *lp, tcg_HandleObject *h)
{
    PyObject *r = PyObject_CallMethodOneArg((PyObject *)lp,
                                            lp->st->loop.str_log_slow,
                                            (PyObject *)h);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Run a popped entry (the caller releases it). */
static inline int
run_entry(tcg_LoopObject *lp, ready_entry *e)
{
    tcg_state *st = lp->st;
    if (TCG_LIKELY(e->handle == NULL) && !lp->debug) {
        return tcg_callback_run(st, (PyObject *)lp, e->callback, e->arg,
                                NULL, e->context, e->flags, NULL);
    }
    if (e->handle == NULL) {
        /* Debug mode, switched on after the entry was queued: the slow
         * callback check reports a handle, so it gets one. */
        PyObject *arg = e->arg;
        e->handle = tcg_handle_new(st, (PyObject *)lp, e->callback, &arg,
                                   arg != NULL, e->context, e->flags, 0.0);
        if (e->handle == NULL) {
            return -1;
        }
    }
    if (tcg_handle_cancelled(e->handle)) {
        return 0;
    }
    return TCG_UNLIKELY(lp->debug) ? run_handle_debug(lp, e->handle)
                                   : tcg_handle_run(st, e->handle);
}

static int
loop_run_once(tcg_LoopObject *lp)
{
    tcg_state *st = lp->st;
    double now = monotonic_now();
    lp->iterations++;
    st->stats.loop_iterations++;
    ring_check(lp);
    heap_check(lp);

    /* Purge when most timers are cancelled (asyncio's rule), and when all
     * of them are (timeouts that were all called off): one pass then
     * beats popping each from the head below, a sift per timer. */
    if ((lp->heap_cancelled > TCG_PURGE_MIN &&
         lp->heap_cancelled * 2 > lp->heap_len) ||
        (lp->heap_cancelled > 1 && lp->heap_cancelled == lp->heap_len)) {
        if (heap_purge(lp) < 0) {
            return -1;
        }
    }
    /* Drop cancelled timers at the head so they do not set the timeout. */
    while (lp->heap_len > 0 && tcg_handle_cancelled(lp->heap[0].h)) {
        Py_DECREF(heap_pop(lp));
    }

    if (lp->ring_len > 0 || lp->stopping) {
        if (lp->stopping || now - lp->last_poll >= TCG_POLL_INTERVAL) {
            if (loop_poll(lp, now, 0.0) < 0) {
                return -1;
            }
            now = lp->last_poll;
        }
    }
    else {
        double timeout = -1.0;
        if (lp->heap_len > 0) {
            timeout = lp->heap[0].when - now;
            if (timeout < 0) {
                timeout = 0;
            }
            else if (timeout > TCG_MAX_TIMEOUT) {
                timeout = TCG_MAX_TIMEOUT;
            }
        }
        if (loop_poll(lp, now, timeout) < 0) {
            return -1;
        }
        now = lp->last_poll;
    }

    /* Timers due (1 ns: the monotonic clock's resolution). */
    double end = now + 1e-9;
    while (lp->heap_len > 0 && lp->heap[0].when <= end) {
        tcg_HandleObject *h = heap_pop(lp);
        if (tcg_handle_cancelled(h)) {
            Py_DECREF(h);
            continue;
        }
        if (ring_push(lp, h) < 0) {
            return -1;
        }
    }

    /* Run what is ready now; what they schedule waits for the next turn. */
    ring_check(lp);
    heap_check(lp);
    size_t ntodo = lp->ring_len;
    for (size_t i = 0; i < ntodo && lp->ring_len > 0; i++) {
        ready_entry e = ring_pop(lp);
        int rc = run_entry(lp, &e);
        entry_release(&e);
        if (rc < 0) {
            return -1;
        }
    }
    if (TCG_UNLIKELY(lp->ring_cap > TCG_KEEP_CAP) && lp->ring_len == 0) {
        /* Give back what a burst took. */
        PyMem_Free(lp->ring);
        lp->ring = NULL;
        lp->ring_cap = lp->ring_head = 0;
    }
    return 0;
}

static void
set_running_cache(tcg_LoopObject *lp)
{
    tcg_common_state *c = &lp->st->c;
    if (c->running_loop != (PyObject *)lp || c->running_thread != lp->thread_id) {
        c->running_loop = (PyObject *)lp;
        c->running_thread = lp->thread_id;
    }
}

static int
begin_running(tcg_LoopObject *lp)
{
    if (check_closed(lp) < 0) {
        return -1;
    }
    if (lp->running) {
        PyErr_SetString(PyExc_RuntimeError,
                        "This event loop is already running");
        return -1;
    }
    /* Once per run: a running loop keeps its module alive (it is on the
     * stack), so the state cannot be cleared under an iteration. */
    if (TCG_UNLIKELY(lp->st->cleared)) {
        tcg_state_gone();
        return -1;
    }
    lp->running = true;
    lp->thread_id = PyThread_get_thread_ident();
    /* Every run starts with a look at I/O, whatever is ready: code that
     * runs the loop "briefly" expects pending I/O events to be seen. */
    lp->last_poll = -INFINITY;
    return 0;
}

static void
end_running(tcg_LoopObject *lp)
{
    lp->running = false;
    lp->stopping = false;
    if (lp->st->c.running_loop == (PyObject *)lp) {
        lp->st->c.running_loop = NULL;
        lp->st->c.running_thread = 0;
    }
}

/* _run_forever_core(): iterate until stop().  The Python face wraps this
 * with what asyncio does once per run (asyncgen hooks, the running-loop
 * thread state, coroutine origin tracking). */
static PyObject *
loop_run_forever_core(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    tcg_LoopObject *lp = LOOP(self);
    if (begin_running(lp) < 0) {
        return NULL;
    }
    Py_INCREF(self);   /* a callback may drop the last other reference */
    int rc = 0;
    for (;;) {
        set_running_cache(lp);
        if (loop_run_once(lp) < 0) {
            rc = -1;
            break;
        }
        if (lp->stopping) {
            break;
        }
    }
    end_running(lp);
    Py_DECREF(self);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _run_once(): one iteration of a loop that is not running, for tests and
 * embedding. */
static PyObject *
loop_run_once_meth(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    tcg_LoopObject *lp = LOOP(self);
    if (begin_running(lp) < 0) {
        return NULL;
    }
    set_running_cache(lp);
    Py_INCREF(self);
    int rc = loop_run_once(lp);
    end_running(lp);
    Py_DECREF(self);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- closing and GC ---------------------------------------------------- */

/* Release every handle and (if `fds`) our descriptors.  The structures are
 * emptied before any reference is dropped: a release may run code. */
static void
loop_release(tcg_LoopObject *lp, bool fds)
{
    ready_entry *ring = lp->ring;
    size_t ring_cap = lp->ring_cap, ring_head = lp->ring_head;
    size_t ring_len = lp->ring_len;
    timer_entry *heap = lp->heap;
    size_t heap_len = lp->heap_len;
    fd_entry *fdtab = lp->fds;
    size_t nfds = lp->nfds;

    lp->ring = NULL;
    lp->ring_cap = lp->ring_head = lp->ring_len = 0;
    lp->heap = NULL;
    lp->heap_len = lp->heap_cap = lp->heap_cancelled = 0;
    lp->fds = NULL;
    lp->nfds = 0;
    if (fds) {
        tcg_poller_close(&lp->poller);
    }

    for (size_t i = 0; i < ring_len; i++) {
        ready_entry *e = &ring[(ring_head + i) & (ring_cap - 1)];
        TCG_ASSERT(entry_used(e));
        entry_release(e);
    }
    /* Every timer leaves the heap before any is released: a release may
     * run code that cancels another, which must not count it as a
     * cancelled timer of (what is now) an empty heap. */
    for (size_t i = 0; i < heap_len; i++) {
        tcg_handle_set_scheduled(heap[i].h, false);
    }
    for (size_t i = 0; i < heap_len; i++) {
        Py_DECREF(heap[i].h);
    }
    for (size_t i = 0; i < nfds; i++) {
        Py_XDECREF(fdtab[i].reader);
        Py_XDECREF(fdtab[i].writer);
    }
    PyMem_Free(ring);
    PyMem_Free(heap);
    PyMem_Free(fdtab);
}

/* _close_core(): the C half of close(); idempotent. */
static PyObject *
loop_close_core(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    tcg_LoopObject *lp = LOOP(self);
    if (lp->running) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Cannot close a running event loop");
        return NULL;
    }
    lp->closed = true;
    loop_release(lp, true);
    Py_RETURN_NONE;
}

static int
loop_traverse(PyObject *self, visitproc visit, void *arg)
{
    tcg_LoopObject *lp = LOOP(self);
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(lp->module);
    for (size_t i = 0; i < lp->ring_len; i++) {
        const ready_entry *e = &RING_AT(lp, i);
        Py_VISIT(e->handle);
        Py_VISIT(e->callback);
        Py_VISIT(e->arg);
        Py_VISIT(e->context);
    }
    for (size_t i = 0; i < lp->heap_len; i++) {
        Py_VISIT(lp->heap[i].h);
    }
    for (size_t i = 0; i < lp->nfds; i++) {
        Py_VISIT(lp->fds[i].reader);
        Py_VISIT(lp->fds[i].writer);
    }
    return 0;
}

static int
loop_clear(PyObject *self)
{
    loop_release(LOOP(self), false);
    return 0;
}

static void
loop_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    tcg_LoopObject *lp = LOOP(self);
    if (lp->st->c.running_loop == self) {
        lp->st->c.running_loop = NULL;
    }
    loop_release(lp, true);
    PyObject *module = lp->module;
    tp->tp_free(self);
    Py_DECREF(tp);
    Py_XDECREF(module);   /* last: the state may go with it */
}

static PyObject *
loop_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    /* Arguments belong to the Python subclasses' __init__. */
    PyObject *module = tcg_module_from_type(type);
    tcg_state *st = tcg_state_if_live(module);
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    tcg_LoopObject *lp = (tcg_LoopObject *)type->tp_alloc(type, 0);
    if (lp == NULL) {
        return NULL;
    }
    lp->module = Py_NewRef(module);
    lp->st = st;
    if (tcg_poller_open(&lp->poller) < 0) {
        if (errno == ENOMEM) {
            PyErr_NoMemory();
        }
        else {
            PyErr_SetFromErrno(PyExc_OSError);
        }
        Py_DECREF(lp);
        return NULL;
    }
    return (PyObject *)lp;
}

/* ---- attributes asyncio's BaseEventLoop reads and writes --------------- */

static PyObject *
get_thread_id(PyObject *self, void *c)
{
    tcg_LoopObject *lp = LOOP(self);
    if (!lp->running) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLong(lp->thread_id);
}

static int
set_thread_id(PyObject *self, PyObject *v, void *c)
{
    /* BaseEventLoop.__init__ writes None; the C core keeps the truth. */
    return 0;
}

#define BOOL_ATTR(name)                                               \
    static PyObject *get_##name(PyObject *self, void *c)              \
    {                                                                 \
        return PyBool_FromLong(LOOP(self)->name);                     \
    }                                                                 \
    static int set_##name(PyObject *self, PyObject *v, void *c)       \
    {                                                                 \
        if (v == NULL) {                                              \
            PyErr_SetString(PyExc_AttributeError, "cannot delete");   \
            return -1;                                                \
        }                                                             \
        int t = PyObject_IsTrue(v);                                   \
        if (t < 0) {                                                  \
            return -1;                                                \
        }                                                             \
        LOOP(self)->name = t;                                         \
        return 0;                                                     \
    }

BOOL_ATTR(closed)
BOOL_ATTR(stopping)
BOOL_ATTR(debug)

static PyObject *
get_ready_count(PyObject *self, void *c)
{
    return PyLong_FromSize_t(LOOP(self)->ring_len);
}

static PyObject *
get_timer_count(PyObject *self, void *c)
{
    return PyLong_FromSize_t(LOOP(self)->heap_len);
}

static PyObject *
get_timer_cancelled_count(PyObject *self, void *c)
{
    return PyLong_FromSize_t(LOOP(self)->heap_cancelled);
}

static PyObject *
get_iterations(PyObject *self, void *c)
{
    return PyLong_FromUnsignedLongLong(LOOP(self)->iterations);
}

static int
set_ignored(PyObject *self, PyObject *v, void *c)
{
    return 0;
}

static PyGetSetDef loop_getset[] = {
    {"_thread_id", get_thread_id, set_thread_id, NULL, NULL},
    {"_closed", get_closed, set_closed, NULL, NULL},
    {"_stopping", get_stopping, set_stopping, NULL, NULL},
    {"_debug", get_debug, set_debug, NULL, NULL},
    {"_ready_count", get_ready_count, NULL,
     "Number of handles in the ready queue.", NULL},
    {"_timer_count", get_timer_count, NULL,
     "Number of timers in the heap (cancelled ones included).", NULL},
    {"_iterations", get_iterations, NULL,
     "Number of iterations run so far.", NULL},
    {"_timer_cancelled_count", get_timer_cancelled_count, set_ignored,
     NULL, NULL},
    {NULL},
};

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef loop_methods[] = {
    {"call_soon", (PyCFunction)(void (*)(void))loop_call_soon, FASTKW, NULL},
    {"call_soon_threadsafe",
     (PyCFunction)(void (*)(void))loop_call_soon_threadsafe, FASTKW, NULL},
    {"call_later", (PyCFunction)(void (*)(void))loop_call_later, FASTKW, NULL},
    {"call_at", (PyCFunction)(void (*)(void))loop_call_at, FASTKW, NULL},
    {"_tornado_add_callback",
     (PyCFunction)(void (*)(void))tcg_loop_tornado_add_callback,
     FASTKW, "IOLoop.add_callback: safe from any thread."},
    {"_tornado_call_at", (PyCFunction)(void (*)(void))loop_tornado_call_at,
     FASTKW, "IOLoop.call_at"},
    {"_tornado_call_later",
     (PyCFunction)(void (*)(void))loop_tornado_call_later, FASTKW,
     "IOLoop.call_later"},
    {"_tornado_remove_timeout", loop_remove_timeout, METH_O,
     "IOLoop.remove_timeout"},
    {"time", loop_time, METH_NOARGS, "The loop's monotonic clock."},
    {"create_future", loop_create_future, METH_NOARGS, NULL},
    {"get_debug", loop_get_debug, METH_NOARGS, NULL},
    {"stop", loop_stop, METH_NOARGS, NULL},
    {"is_running", loop_is_running, METH_NOARGS, NULL},
    {"is_closed", loop_is_closed, METH_NOARGS, NULL},
    {"_add_reader", (PyCFunction)(void (*)(void))loop_add_reader,
     METH_FASTCALL, NULL},
    {"_add_writer", (PyCFunction)(void (*)(void))loop_add_writer,
     METH_FASTCALL, NULL},
    {"_remove_reader", loop_remove_reader, METH_O, NULL},
    {"_remove_writer", loop_remove_writer, METH_O, NULL},
    {"add_reader", (PyCFunction)(void (*)(void))loop_public_add_reader,
     METH_FASTCALL | METH_KEYWORDS,
     "add_reader(fd, callback, *args): as asyncio's."},
    {"add_writer", (PyCFunction)(void (*)(void))loop_public_add_writer,
     METH_FASTCALL | METH_KEYWORDS,
     "add_writer(fd, callback, *args): as asyncio's."},
    {"remove_reader", (PyCFunction)(void (*)(void))loop_public_remove_reader,
     METH_FASTCALL | METH_KEYWORDS,
     "remove_reader(fd): as asyncio's."},
    {"remove_writer", (PyCFunction)(void (*)(void))loop_public_remove_writer,
     METH_FASTCALL | METH_KEYWORDS,
     "remove_writer(fd): as asyncio's."},
    {"_fd_key", loop_fd_key, METH_O, NULL},
    {"_wakeup", loop_wakeup_meth, METH_NOARGS, NULL},
    {"_run_forever_core", loop_run_forever_core, METH_NOARGS, NULL},
    {"_run_once", loop_run_once_meth, METH_NOARGS, NULL},
    {"_close_core", loop_close_core, METH_NOARGS, NULL},
    {NULL},
};

static PyType_Slot loop_slots[] = {
    {Py_tp_doc, "The C core of tornado_cgen's event loop (use "
                "tornado_cgen.new_event_loop() or IOLoop())."},
    {Py_tp_new, loop_new},
    {Py_tp_dealloc, loop_dealloc},
    {Py_tp_traverse, loop_traverse},
    {Py_tp_clear, loop_clear},
    {Py_tp_methods, loop_methods},
    {Py_tp_getset, loop_getset},
    {0, NULL},
};

static PyType_Spec loop_spec = {
    .name = "tornado_cgen._core.Loop",
    .basicsize = sizeof(tcg_LoopObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = loop_slots,
};

/* The stdlib's BaseSelectorEventLoop._ensure_fd_no_transport (the
 * function; see public_io_check).  New reference or NULL. */
static PyObject *
stdlib_ensure_fd(void)
{
    PyObject *base = tcg_import_attr("asyncio.selector_events",
                                     "BaseSelectorEventLoop");
    if (base == NULL) {
        return NULL;
    }
    PyObject *fn = PyObject_GetAttrString(base, "_ensure_fd_no_transport");
    Py_DECREF(base);
    return fn;
}

int
tcg_loop_exec(PyObject *m, tcg_state *st)
{
    if (tcg_handle_exec(m, st) < 0) {
        return -1;
    }
    static const char *const io_names[4] = {
        "_add_reader", "_add_writer", "_remove_reader", "_remove_writer"};
    for (int i = 0; i < 4; i++) {
        if ((st->loop.str_io[i] = PyUnicode_InternFromString(io_names[i])) ==
            NULL) {
            return -1;
        }
    }
    st->loop.LoopType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &loop_spec,
                                                                 NULL);
    if (st->loop.LoopType == NULL ||
        (st->loop.str_log_slow =
             PyUnicode_InternFromString("_log_slow_callback")) == NULL ||
        (st->loop.str_transports =
             PyUnicode_InternFromString("_transports")) == NULL ||
        (st->loop.str_data = PyUnicode_InternFromString("data")) == NULL ||
        (st->loop.str_ensure_fd =
             PyUnicode_InternFromString("_ensure_fd_no_transport")) == NULL ||
        (st->loop.stdlib_ensure_fd = stdlib_ensure_fd()) == NULL ||
        PyModule_AddType(m, st->loop.LoopType) < 0 ||
        PyModule_AddStringConstant(m, "POLLER", TCG_POLLER_NAME) < 0) {
        return -1;
    }
    return 0;
}

int
tcg_loop_traverse(tcg_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->loop.LoopType);
    Py_VISIT(st->loop.stdlib_ensure_fd);
    return tcg_handle_traverse(st, visit, arg);
}

void
tcg_loop_clear(tcg_state *st)
{
    Py_CLEAR(st->loop.LoopType);
    Py_CLEAR(st->loop.str_log_slow);
    Py_CLEAR(st->loop.str_transports);
    Py_CLEAR(st->loop.str_data);
    Py_CLEAR(st->loop.str_ensure_fd);
    Py_CLEAR(st->loop.stdlib_ensure_fd);
    for (int i = 0; i < 4; i++) {
        Py_CLEAR(st->loop.str_io[i]);
    }
    tcg_handle_clear(st);
}
