/* future.h: the Future type and its C-level API (included from tcg.h).
 *
 * Other parts of the extension (the Runner, the loop, multi) read the struct
 * directly on exact-type fast paths and use the functions below instead of
 * calling methods through Python.
 */
#ifndef TCG_FUTURE_H
#define TCG_FUTURE_H

typedef enum {
    TCG_FUT_PENDING = 0,
    TCG_FUT_CANCELLED = 1,
    TCG_FUT_FINISHED = 2,
} tcg_fut_status;

typedef struct {
    PyObject_HEAD
    PyObject *loop;          /* NULL until bound; see tcg_future_loop() */
    PyObject *callback0;     /* first done callback, stored inline */
    PyObject *context0;      /* its context */
    PyObject *callbacks;     /* list of (callback, context) tuples, or NULL */
    PyObject *result;
    PyObject *exception;
    PyObject *exception_tb;  /* traceback at set_exception() time */
    PyObject *cancel_msg;
    PyObject *cancelled_exc;
    PyObject *source_tb;     /* creation stack in asyncio debug mode */
    PyObject *dict;
    PyObject *weakreflist;
    uint8_t status;          /* tcg_fut_status */
    uint8_t log_tb;          /* exception set and not yet retrieved */
    uint8_t blocking;        /* _asyncio_future_blocking */
    uint8_t initialized;     /* __init__ ran (or created from C) */
} tcg_FutureObject;

typedef struct {
    PyTypeObject *FutureType;
    PyTypeObject *FutureIterType;
    PyObject *future_repr;        /* asyncio.base_futures._future_repr */
    PyObject *future_repr_info;   /* asyncio.base_futures._future_repr_info */
    PyObject *extract_stack;      /* asyncio.format_helpers.extract_stack */
    tcg_freelist freelist;        /* recycled exact Futures */
    PyObject *str_loop;           /* "loop" */
    PyObject *str_pending;        /* "PENDING" */
    PyObject *str_cancelled;      /* "CANCELLED" */
    PyObject *str_finished;       /* "FINISHED" */
} tcg_future_state;

#define tcg_Future_CheckExact(st, op) Py_IS_TYPE((op), (st)->fut.FutureType)
#define tcg_Future_Check(st, op) PyObject_TypeCheck((op), (st)->fut.FutureType)

/* A new pending Future.  `loop` may be NULL: the future then binds to the
 * running (else current) loop the first time it needs one, so futures of
 * coroutines that finish synchronously never look a loop up. */
tcg_FutureObject *tcg_future_new(tcg_state *st, PyObject *loop);

/* Borrowed reference to the future's loop, binding it if needed. */
PyObject *tcg_future_loop(tcg_state *st, tcg_FutureObject *fut);

/* The asyncio rules (InvalidStateError when done); 0 or -1. */
int tcg_future_set_result(tcg_state *st, tcg_FutureObject *fut, PyObject *res);
int tcg_future_set_exception(tcg_state *st, tcg_FutureObject *fut,
                             PyObject *exc);
/* Returns 1 if cancelled now, 0 if it was already done, -1 on error. */
int tcg_future_cancel(tcg_state *st, tcg_FutureObject *fut, PyObject *msg);

/* New reference to the result; NULL with the exception (or CancelledError,
 * or InvalidStateError) set.  Marks an exception as retrieved. */
PyObject *tcg_future_result(tcg_state *st, tcg_FutureObject *fut);

/* Register fn(fut) to be scheduled on the loop in `ctx` when the future is
 * done (at once if it is).  `ctx` NULL copies the current context. */
int tcg_future_add_done_callback(tcg_state *st, tcg_FutureObject *fut,
                                 PyObject *fn, PyObject *ctx);

/* Forget the done callback `fn` (compared by identity, so no Python code
 * runs) if it is registered.  The Runner drops its keep-alive this way. */
void tcg_future_forget_callback(tcg_FutureObject *fut, PyObject *fn);

/* Schedule fn(arg) on `loop` in `ctx`: a C call for our loop, else
 * loop.call_soon(fn, arg, context=ctx). */
int tcg_call_soon(tcg_state *st, PyObject *loop, PyObject *fn, PyObject *arg,
                  PyObject *ctx);

int tcg_future_exec(PyObject *m, tcg_state *st);
int tcg_future_traverse(tcg_state *st, visitproc visit, void *arg);
void tcg_future_clear(tcg_state *st);

#endif /* TCG_FUTURE_H */
