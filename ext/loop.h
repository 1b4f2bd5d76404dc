/* loop.h: the event loop and its handles (included from tcg.h).
 *
 * handle.c owns the Handle/TimerHandle types (asyncio's face of a scheduled
 * callback) and how one is run; loop.c owns the Loop type: the ready ring,
 * the timer heap, epoll readiness, the eventfd waker and the run loop.
 */
#ifndef TCG_LOOP_H
#define TCG_LOOP_H

/* Handle flags. */
#define TCG_H_CANCELLED  0x01u
#define TCG_H_TIMER      0x02u  /* a TimerHandle: `when` is meaningful */
#define TCG_H_SCHEDULED  0x04u  /* a timer that sits in its loop's heap */
#define TCG_H_TORNADO    0x08u  /* run with IOLoop._run_callback's rules */

typedef struct {
    PyObject_HEAD
    PyObject *callback;   /* NULL once cancelled */
    PyObject *arg1;       /* the only argument, when there is exactly one */
    PyObject *args;       /* tuple of >= 2 arguments, else NULL */
    PyObject *context;    /* the contextvars.Context to run in */
    PyObject *loop;       /* strong: the loop it was scheduled on */
    PyObject *source_tb;  /* debug mode: where it was created */
    PyObject *repr;       /* debug mode: repr taken at cancel() time */
    double when;          /* timers: deadline on loop.time() */
    uint64_t seq;         /* timers: FIFO order among equal deadlines */
    unsigned flags;
} tcg_HandleObject;

typedef struct {
    PyTypeObject *LoopType;
    PyTypeObject *HandleType;
    PyTypeObject *TimerHandleType;

    PyObject *partial;              /* functools.partial */
    PyObject *format_cb_source;     /* asyncio.format_helpers._format_callback_source */
    PyObject *extract_stack;        /* asyncio.format_helpers.extract_stack */
    PyObject *str_run_callback_result;  /* "_tornado_callback_result" */
    PyObject *str_log_slow;         /* "_log_slow_callback" */
    PyObject *str_handle;           /* "handle" */

    /* LIFO freelists of Handle and TimerHandle objects (untracked,
     * refcount 0): [0] plain handles, [1] timers. */
    tcg_HandleObject *freelist[2][256];
    int nfree[2];
} tcg_loop_state;

/* Schedule fn(arg) in `ctx` on `loop`, an instance of LoopType, without
 * building a Python handle where it can be avoided.  0 or -1. */
int tcg_loop_call_soon(tcg_state *st, PyObject *loop, PyObject *fn,
                       PyObject *arg, PyObject *ctx);

/* ---- handle.c, for loop.c ------------------------------------------------ */

/* A new handle for callback(*args); `args` borrowed, copied as needed.
 * `context` NULL copies the current context.  `timer`: a TimerHandle. */
tcg_HandleObject *tcg_handle_new(tcg_state *st, PyObject *loop,
                                 PyObject *callback, PyObject *const *args,
                                 Py_ssize_t nargs, PyObject *context,
                                 bool timer);

/* Mark cancelled and drop the callback and its arguments. */
void tcg_handle_cancel(tcg_HandleObject *h);

/* Run the handle.  Ordinary exceptions are reported (through the loop's
 * exception handler, or Tornado's logger for TCG_H_TORNADO) and 0 is
 * returned; -1 means an exception that must propagate (KeyboardInterrupt,
 * SystemExit, or a failure while reporting one of those). */
int tcg_handle_run(tcg_state *st, tcg_HandleObject *h);

int tcg_handle_exec(PyObject *m, tcg_state *st);
void tcg_handle_clear(tcg_state *st);

/* loop.c: a cancelled timer still in the heap (for lazy deletion). */
void tcg_loop_timer_cancelled(PyObject *loop);

int tcg_loop_exec(PyObject *m, tcg_state *st);
int tcg_loop_traverse(tcg_state *st, visitproc visit, void *arg);
void tcg_loop_clear(tcg_state *st);

#endif /* TCG_LOOP_H */
