/* handle.h: Handle and TimerHandle, the loop's record of one callback, and
 * their C API (included from loop.h; handle.c owns everything here).
 *
 * The struct is public so that the loop's hot paths read it without a
 * call, but only handle.c writes it: the loop changes a handle through the
 * functions and inline helpers below, never by assigning its fields.
 *
 * Self-contained: it needs only Python.h and a forward declaration of the
 * module state.
 */
#ifndef TCG_HANDLE_H
#define TCG_HANDLE_H

#ifndef PY_SSIZE_T_CLEAN
#  define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>
#include <stdbool.h>

typedef struct tcg_state tcg_state;   /* tcg.h */

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
    unsigned flags;
} tcg_HandleObject;

/* handle.c's slice of the module state (it sits in tcg_loop_state). */
typedef struct {
    PyTypeObject *HandleType;
    PyTypeObject *TimerHandleType;

    PyObject *partial;              /* functools.partial (the loop uses it too) */
    PyObject *format_cb_source;     /* asyncio.format_helpers._format_callback_source */
    PyObject *kwnames_debug;        /* ("debug",) if it takes debug= (3.13+),
                                     * else NULL */
    PyObject *extract_stack;        /* asyncio.format_helpers.extract_stack */
    PyObject *str_run_callback_result;  /* "_tornado_callback_result" */
    PyObject *str_handle;           /* "handle" */

    tcg_freelist freelist[2];     /* [0] Handles, [1] TimerHandles */
} tcg_handle_state;

/* A new handle for callback(*args); `args` borrowed, copied as needed.
 * `context` NULL (or None) copies the current context.  `flags`: TCG_H_TIMER
 * makes a TimerHandle due at `when` (0.0 for other handles); TCG_H_TORNADO;
 * no other flag.
 * RuntimeError once the module state is cleared (interpreter exit). */
tcg_HandleObject *tcg_handle_new(tcg_state *st, PyObject *loop,
                                 PyObject *callback, PyObject *const *args,
                                 Py_ssize_t nargs, PyObject *context,
                                 unsigned flags, double when);

/* Debug mode: record where the handle was created (asyncio's
 * _source_traceback).  0 or -1. */
int tcg_handle_capture_source(tcg_state *st, tcg_HandleObject *h);

/* Mark cancelled and drop the callback and its arguments; in debug mode
 * first keep the repr (as asyncio).  0, or -1 if that repr raised (the
 * handle is cancelled all the same). */
int tcg_handle_cancel(tcg_HandleObject *h);

/* Run the handle.  Ordinary exceptions are reported (through the loop's
 * exception handler, or Tornado's logger for TCG_H_TORNADO) and 0 is
 * returned; -1 means an exception that must propagate (KeyboardInterrupt,
 * SystemExit, or a failure while reporting one of those).  `st` must be
 * live (not cleared). */
int tcg_handle_run(tcg_state *st, tcg_HandleObject *h);

/* What tcg_handle_run() does, for a callback given by its parts (all
 * borrowed): callback(a1), callback(*args) or callback(), in `ctx` (NULL:
 * the current context), with TCG_H_TORNADO's rules if `flags` has it.
 * `h` is the handle being run, or NULL for a callback the loop keeps
 * without one (a handle is then made only to report a failure). */
int tcg_callback_run(tcg_state *st, PyObject *loop, PyObject *cb,
                     PyObject *a1, PyObject *args, PyObject *ctx,
                     unsigned flags, tcg_HandleObject *h);

/* ---- what the loop may read and change ------------------------------- */

static inline bool
tcg_handle_cancelled(const tcg_HandleObject *h)
{
    return (h->flags & TCG_H_CANCELLED) != 0;
}

/* The timer heap took (true) or gave back (false) its reference. */
static inline void
tcg_handle_set_scheduled(tcg_HandleObject *h, bool scheduled)
{
    if (scheduled) {
        h->flags |= TCG_H_SCHEDULED;
    }
    else {
        h->flags &= ~TCG_H_SCHEDULED;
    }
}

int tcg_handle_exec(PyObject *m, tcg_state *st);
int tcg_handle_traverse(tcg_state *st, visitproc visit, void *arg);
void tcg_handle_clear(tcg_state *st);

#endif /* TCG_HANDLE_H */
