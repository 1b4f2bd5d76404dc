/* loop.h: the event loop's C API (included from tcg.h).
 *
 * loop.c owns the Loop type: the ready ring, the timer heap, readiness (on
 * poller.h's epoll or poll), the waker and the run loop.  The handles it
 * schedules are handle.c's (handle.h); their state slice sits inside this
 * one.
 *
 * Self-contained: it needs only handle.h (and so Python.h).
 */
#ifndef TCG_LOOP_H
#define TCG_LOOP_H

#include "handle.h"

typedef struct tcg_state tcg_state;   /* tcg.h */

typedef struct {
    PyTypeObject *LoopType;
    PyObject *str_log_slow;         /* "_log_slow_callback" */
    /* add_reader() & co (loop.c, public_io) */
    PyObject *str_transports;       /* "_transports" */
    PyObject *str_data;             /* "data" */
    PyObject *str_ensure_fd;        /* "_ensure_fd_no_transport" */
    PyObject *stdlib_ensure_fd;     /* BaseSelectorEventLoop's function */
    PyObject *str_io[4];            /* "_add_reader", "_add_writer",
                                     * "_remove_reader", "_remove_writer" */
    tcg_handle_state handle;        /* handle.c's (handle.h) */
} tcg_loop_state;

/* Schedule fn(arg) in `ctx` on `loop`, an instance of LoopType, without
 * building a Python handle where it can be avoided.  0 or -1. */
int tcg_loop_call_soon(tcg_state *st, PyObject *loop, PyObject *fn,
                       PyObject *arg, PyObject *ctx);

/* Tornado's IOLoop.add_callback(callback, *args, **kwargs) on `loop`. */
PyObject *tcg_loop_tornado_add_callback(PyObject *loop, PyObject *const *args,
                                        size_t nargsf, PyObject *kwnames);

/* A Tornado timer `delay` seconds from now for
 * args[1](*args[2:], **kwnames) (args[0], the time argument, is not read):
 * what IOLoop.call_later/call_at do on `loop`.  A new TimerHandle. */
PyObject *tcg_loop_tornado_call_later(PyObject *loop, double delay,
                                      PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames);

/* For handle.c: a timer in `loop`'s heap was cancelled (lazy deletion
 * counts them). */
void tcg_loop_timer_cancelled(PyObject *loop);

/* For handle.c: the loop's debug flag (what its get_debug() returns). */
bool tcg_loop_debug(PyObject *loop);

int tcg_loop_exec(PyObject *m, tcg_state *st);
int tcg_loop_traverse(tcg_state *st, visitproc visit, void *arg);
void tcg_loop_clear(tcg_state *st);

#endif /* TCG_LOOP_H */
