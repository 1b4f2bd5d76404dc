/* future.c: tornado_cgen.concurrent.Future and its await iterator.
 *
 * Owns: the Future type (asyncio.Future's rules and attributes, plus
 * Tornado 4's exc_info()/set_exc_info()), FutureIter (what __await__ and
 * __iter__ return), and the C API in future.h that the Runner and the loop
 * use on their fast paths.
 *
 * Ownership notes:
 * - Done callbacks are moved out of the future before any of them is
 *   scheduled, so a callback (or an __eq__, or a loop's call_soon) that
 *   re-enters the future never sees a half-consumed list.
 * - The loop is bound lazily for futures made from C (the Runner's result
 *   futures): a coroutine that finishes synchronously never looks its loop
 *   up.  Futures made from Python bind at construction as asyncio's do.
 */
#include "tcg.h"
#include <stddef.h>
#include <structmember.h>   /* T_PYSSIZET, READONLY (3.10, 3.11) */

static PyObject *future_repr(tcg_FutureObject *fut);

/* ---- loop binding and scheduling ---------------------------------------- */

PyObject *
tcg_future_loop(tcg_state *st, tcg_FutureObject *fut)
{
    if (fut->loop == NULL) {
        fut->loop = tcg_get_event_loop(st);
    }
    return fut->loop;
}

int
tcg_call_soon(tcg_state *st, PyObject *loop, PyObject *fn, PyObject *arg,
              PyObject *ctx)
{
    if (st->loop.LoopType != NULL && PyObject_TypeCheck(loop, st->loop.LoopType)) {
        return tcg_loop_call_soon(st, loop, fn, arg, ctx);
    }
    /* loop.call_soon(fn, arg, context=ctx) */
    PyObject *args[4] = {loop, fn, arg, ctx};
    PyObject *res;
    if (ctx != NULL) {
        res = PyObject_VectorcallMethod(st->c.str_call_soon, args,
                                        3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                        st->c.kwnames_context);
    }
    else {
        res = PyObject_VectorcallMethod(st->c.str_call_soon, args,
                                        3 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                        NULL);
    }
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* Schedule every registered callback (there is at least one) and forget
 * them.  The future holds no callbacks once this starts, whatever the
 * callbacks or the loop do. */
static int
future_schedule_each(tcg_state *st, tcg_FutureObject *fut)
{
    PyObject *cb0 = fut->callback0, *ctx0 = fut->context0;
    PyObject *list = fut->callbacks;
    fut->callback0 = fut->context0 = fut->callbacks = NULL;

    int rc = 0;
    PyObject *loop = tcg_future_loop(st, fut);
    if (loop == NULL) {
        rc = -1;
        goto done;
    }
    Py_INCREF(loop);   /* a callback could clear fut->loop via __init__ */
    if (cb0 != NULL && tcg_call_soon(st, loop, cb0, (PyObject *)fut, ctx0) < 0) {
        rc = -1;
    }
    if (rc == 0 && list != NULL) {
        /* `list` is ours alone now: nothing else can mutate it. */
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
            PyObject *item = PyList_GET_ITEM(list, i);
            if (tcg_call_soon(st, loop, PyTuple_GET_ITEM(item, 0),
                              (PyObject *)fut, PyTuple_GET_ITEM(item, 1)) < 0) {
                rc = -1;
                break;
            }
        }
    }
    Py_DECREF(loop);
done:
    Py_XDECREF(cb0);
    Py_XDECREF(ctx0);
    Py_XDECREF(list);
    return rc;
}

/* The usual future has no callbacks: that test inline, the work not. */
static inline int
future_schedule_callbacks(tcg_state *st, tcg_FutureObject *fut)
{
    if (fut->callback0 == NULL && fut->callbacks == NULL) {
        return 0;
    }
    return future_schedule_each(st, fut);
}

/* ---- construction ------------------------------------------------------- */

static void
future_reset(tcg_FutureObject *fut)
{
    Py_CLEAR(fut->loop);
    Py_CLEAR(fut->callback0);
    Py_CLEAR(fut->context0);
    Py_CLEAR(fut->callbacks);
    Py_CLEAR(fut->result);
    Py_CLEAR(fut->exception);
    Py_CLEAR(fut->exception_tb);
    Py_CLEAR(fut->cancel_msg);
    Py_CLEAR(fut->cancelled_exc);
    Py_CLEAR(fut->source_tb);
    fut->status = TCG_FUT_PENDING;
    fut->log_tb = 0;
    fut->blocking = 0;
    fut->initialized = 0;
}

tcg_FutureObject *
tcg_future_new(tcg_state *st, PyObject *loop)
{
    if (TCG_UNLIKELY(st->cleared)) {
        tcg_state_gone();
        return NULL;
    }
    PyTypeObject *tp = st->fut.FutureType;
    tcg_FutureObject *fut =
        (tcg_FutureObject *)tcg_freelist_pop(&st->fut.freelist, tp);
    if (fut != NULL) {
        /* A recycled future: dealloc left every field NULL or zero. */
        PyObject_GC_Track(fut);
    }
    else {
        fut = (tcg_FutureObject *)tp->tp_alloc(tp, 0);
        if (fut == NULL) {
            return NULL;
        }
    }
    fut->loop = Py_XNewRef(loop);
    fut->initialized = 1;
    return fut;
}

static int
future_record_source_traceback(tcg_state *st, tcg_FutureObject *fut)
{
    PyObject *debug = PyObject_CallMethodNoArgs(fut->loop, st->c.str_get_debug);
    if (debug == NULL) {
        return -1;
    }
    int on = PyObject_IsTrue(debug);
    Py_DECREF(debug);
    if (on <= 0) {
        return on;
    }
    /* format_helpers.extract_stack(sys._getframe(1)): the caller of
     * Future(), as asyncio records it.  We add no frame of our own. */
    PyFrameObject *frame = PyEval_GetFrame();
    PyObject *frame_arg = frame ? (PyObject *)frame : Py_None;
    Py_XSETREF(fut->source_tb,
               PyObject_CallOneArg(st->fut.extract_stack, frame_arg));
    return fut->source_tb == NULL ? -1 : 0;
}

/* Future(*, loop=None) */
static int
future_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    tcg_state *st = tcg_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        tcg_state_gone();
        return -1;
    }
    /* The only argument is keyword-only `loop`; parsed by hand because
     * PyArg_ParseTupleAndKeywords costs a third of the constructor. */
    PyObject *loop = Py_None;
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_Format(PyExc_TypeError,
                     "Future() takes no positional arguments (%zd given)",
                     PyTuple_GET_SIZE(args));
        return -1;
    }
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        loop = PyDict_GetItemWithError(kwds, st->fut.str_loop);
        if (loop == NULL && PyErr_Occurred()) {
            return -1;
        }
        if (loop == NULL || PyDict_GET_SIZE(kwds) != 1) {
            PyErr_SetString(PyExc_TypeError,
                            "Future() takes only the keyword argument 'loop'");
            return -1;
        }
    }
    tcg_FutureObject *fut = (tcg_FutureObject *)self;
    future_reset(fut);
    if (loop == Py_None) {
        fut->loop = tcg_get_event_loop(st);
        if (fut->loop == NULL) {
            return -1;
        }
    }
    else {
        fut->loop = Py_NewRef(loop);
    }
    if (future_record_source_traceback(st, fut) < 0) {
        return -1;
    }
    fut->initialized = 1;
    return 0;
}

static int
future_ensure_initialized(tcg_FutureObject *fut)
{
    if (TCG_UNLIKELY(!fut->initialized)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Future object is not initialized.");
        return -1;
    }
    return 0;
}

/* ---- state changes ------------------------------------------------------ */

/* As asyncio's C Future (the one Tornado uses) words it. */
static PyObject *
future_invalid_state(tcg_state *st)
{
    PyErr_SetString(st->c.InvalidStateError, "invalid state");
    return NULL;
}

int
tcg_future_set_result(tcg_state *st, tcg_FutureObject *fut, PyObject *res)
{
    if (future_ensure_initialized(fut) < 0) {
        return -1;
    }
    if (fut->status != TCG_FUT_PENDING) {
        future_invalid_state(st);
        return -1;
    }
    fut->result = Py_NewRef(res);
    fut->status = TCG_FUT_FINISHED;
    return future_schedule_callbacks(st, fut);
}

int
tcg_future_set_exception(tcg_state *st, tcg_FutureObject *fut, PyObject *exc)
{
    if (future_ensure_initialized(fut) < 0) {
        return -1;
    }
    if (fut->status != TCG_FUT_PENDING) {
        future_invalid_state(st);
        return -1;
    }
    PyObject *val;
    if (PyExceptionClass_Check(exc)) {
        val = PyObject_CallNoArgs(exc);
        if (val == NULL) {
            return -1;
        }
        if (fut->status != TCG_FUT_PENDING) {   /* the call re-entered */
            Py_DECREF(val);
            future_invalid_state(st);
            return -1;
        }
    }
    else {
        val = Py_NewRef(exc);
    }
    if (!PyExceptionInstance_Check(val)) {
        Py_DECREF(val);
        PyErr_SetString(PyExc_TypeError, "invalid exception object");
        return -1;
    }
#if PY_VERSION_HEX >= 0x030D0000
    if (PyObject_TypeCheck(val, (PyTypeObject *)PyExc_StopIteration)) {
        /* 3.13's asyncio sets a RuntimeError caused by it (or by a
         * subclass) instead. */
        PyObject *err = PyObject_CallFunction(
            PyExc_RuntimeError, "s",
            "StopIteration interacts badly with generators "
            "and cannot be raised into a Future");
        if (err == NULL) {
            Py_DECREF(val);
            return -1;
        }
        PyException_SetCause(err, val);                 /* steals val */
        PyException_SetContext(err, Py_NewRef(val));
        val = err;
    }
#else
    if (Py_IS_TYPE(val, (PyTypeObject *)PyExc_StopIteration)) {
        Py_DECREF(val);
        PyErr_SetString(PyExc_TypeError,
                        "StopIteration interacts badly with generators "
                        "and cannot be raised into a Future");
        return -1;
    }
#endif
    fut->exception = val;
    fut->exception_tb = PyException_GetTraceback(val);
    fut->status = TCG_FUT_FINISHED;
    /* Set before scheduling: if that fails, the exception is still
     * reported when the future is collected. */
    fut->log_tb = 1;
    return future_schedule_callbacks(st, fut);
}

int
tcg_future_cancel(tcg_state *st, tcg_FutureObject *fut, PyObject *msg)
{
    if (future_ensure_initialized(fut) < 0) {
        return -1;
    }
    fut->log_tb = 0;
    if (fut->status != TCG_FUT_PENDING) {
        return 0;
    }
    fut->status = TCG_FUT_CANCELLED;
    Py_XSETREF(fut->cancel_msg, Py_XNewRef(msg));
    if (future_schedule_callbacks(st, fut) < 0) {
        return -1;
    }
    return 1;
}

/* The CancelledError for a cancelled future (new reference). */
static PyObject *
future_make_cancelled_error(tcg_state *st, tcg_FutureObject *fut)
{
    if (fut->cancelled_exc != NULL) {
        PyObject *exc = fut->cancelled_exc;
        fut->cancelled_exc = NULL;
        return exc;
    }
    if (fut->cancel_msg == NULL || fut->cancel_msg == Py_None) {
        return PyObject_CallNoArgs(st->c.CancelledError);
    }
    return PyObject_CallOneArg(st->c.CancelledError, fut->cancel_msg);
}

static void
future_raise_cancelled(tcg_state *st, tcg_FutureObject *fut)
{
    PyObject *exc = future_make_cancelled_error(st, fut);
    if (exc != NULL) {
        PyErr_SetObject(st->c.CancelledError, exc);
        Py_DECREF(exc);
    }
}

PyObject *
tcg_future_result(tcg_state *st, tcg_FutureObject *fut)
{
    if (TCG_LIKELY(fut->status == TCG_FUT_FINISHED)) {
        fut->log_tb = 0;
        if (fut->exception == NULL) {
            return Py_NewRef(fut->result);
        }
        /* Restore the traceback as it was when set, so repeated result()
         * calls do not grow it. */
        PyException_SetTraceback(fut->exception,
                                 fut->exception_tb ? fut->exception_tb
                                                   : Py_None);
        PyErr_SetObject((PyObject *)Py_TYPE(fut->exception), fut->exception);
        return NULL;
    }
    if (fut->status == TCG_FUT_CANCELLED) {
        future_raise_cancelled(st, fut);
        return NULL;
    }
    PyErr_SetString(st->c.InvalidStateError, "Result is not ready.");
    return NULL;
}

int
tcg_future_add_done_callback(tcg_state *st, tcg_FutureObject *fut,
                             PyObject *fn, PyObject *ctx)
{
    if (future_ensure_initialized(fut) < 0) {
        return -1;
    }
    if (fut->status != TCG_FUT_PENDING) {
        PyObject *loop = tcg_future_loop(st, fut);
        if (loop == NULL) {
            return -1;
        }
        /* call_soon may run Python code that re-initialises the future. */
        Py_INCREF(loop);
        int rc = tcg_call_soon(st, loop, fn, (PyObject *)fut, ctx);
        Py_DECREF(loop);
        return rc;
    }
    PyObject *owned_ctx = NULL;
    if (ctx == NULL) {
        ctx = owned_ctx = PyContext_CopyCurrent();
        if (ctx == NULL) {
            return -1;
        }
    }
    int rc = 0;
    if (fut->callback0 == NULL && fut->callbacks == NULL) {
        fut->callback0 = Py_NewRef(fn);
        fut->context0 = Py_NewRef(ctx);
    }
    else {
        PyObject *tup = PyTuple_Pack(2, fn, ctx);
        if (tup == NULL) {
            rc = -1;
        }
        else if (fut->callbacks == NULL) {
            fut->callbacks = PyList_New(1);
            if (fut->callbacks == NULL) {
                Py_DECREF(tup);
                rc = -1;
            }
            else {
                PyList_SET_ITEM(fut->callbacks, 0, tup);
            }
        }
        else {
            rc = PyList_Append(fut->callbacks, tup);
            Py_DECREF(tup);
        }
    }
    Py_XDECREF(owned_ctx);
    return rc;
}

void
tcg_future_forget_callback(tcg_FutureObject *fut, PyObject *fn)
{
    if (fut->callback0 == fn) {
        /* Cleared in this order: dropping the callback may drop the last
         * reference to whatever holds the future. */
        PyObject *cb = fut->callback0, *ctx = fut->context0;
        fut->callback0 = fut->context0 = NULL;
        Py_XDECREF(ctx);
        Py_DECREF(cb);
        return;
    }
    PyObject *list = fut->callbacks;
    if (list == NULL) {
        return;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        if (PyTuple_GET_ITEM(PyList_GET_ITEM(list, i), 0) == fn) {
            /* Deleting an item may run a destructor; the list stays ours.
             * Failing (no memory to shrink it) only keeps the keep-alive
             * until the future is done: reported, not raised. */
            Py_INCREF(list);
            if (PySequence_DelItem(list, i) < 0) {
                PyErr_WriteUnraisable((PyObject *)fut);
            }
            if (fut->callbacks == list && PyList_GET_SIZE(list) == 0) {
                Py_CLEAR(fut->callbacks);
            }
            Py_DECREF(list);
            return;
        }
    }
}

/* ---- Python methods ----------------------------------------------------- */

/* Rule 1 of tcg.h, for the METH_METHOD methods below. */
#define STATE_FROM_CLS(cls, st)                                    \
    tcg_state *st = tcg_state_from_cls(cls);                      \
    if (st == NULL) {                                              \
        return NULL;                                               \
    }

static PyObject *
Future_result(PyObject *self, PyTypeObject *cls, PyObject *const *args,
              Py_ssize_t nargs, PyObject *kwnames)
{
    if (TCG_UNLIKELY(nargs || kwnames) &&
        tcg_check_noargs("Future.result", nargs, kwnames) < 0) {
        return NULL;
    }
    tcg_FutureObject *fut = (tcg_FutureObject *)self;
    if (TCG_LIKELY(fut->status == TCG_FUT_FINISHED && fut->exception == NULL)) {
        fut->log_tb = 0;
        return Py_NewRef(fut->result);
    }
    STATE_FROM_CLS(cls, st);
    return tcg_future_result(st, fut);
}

static PyObject *
Future_exception(PyObject *self, PyTypeObject *cls, PyObject *const *args,
                 Py_ssize_t nargs, PyObject *kwnames)
{
    if (TCG_UNLIKELY(nargs || kwnames) &&
        tcg_check_noargs("Future.exception", nargs, kwnames) < 0) {
        return NULL;
    }
    tcg_FutureObject *fut = (tcg_FutureObject *)self;
    if (fut->status != TCG_FUT_FINISHED) {
        STATE_FROM_CLS(cls, st);
        if (fut->status == TCG_FUT_CANCELLED) {
            future_raise_cancelled(st, fut);
            return NULL;
        }
        PyErr_SetString(st->c.InvalidStateError, "Exception is not set.");
        return NULL;
    }
    fut->log_tb = 0;
    return Py_NewRef(fut->exception ? fut->exception : Py_None);
}

static PyObject *
Future_set_result(PyObject *self, PyTypeObject *cls, PyObject *const *args,
                  Py_ssize_t nargs, PyObject *kwnames)
{
    if (TCG_UNLIKELY(nargs != 1 || kwnames) &&
        tcg_check_onearg("Future.set_result", nargs, kwnames) < 0) {
        return NULL;
    }
    STATE_FROM_CLS(cls, st);
    if (tcg_future_set_result(st, (tcg_FutureObject *)self, args[0]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Future_set_exception(PyObject *self, PyTypeObject *cls, PyObject *const *args,
                     Py_ssize_t nargs, PyObject *kwnames)
{
    if (TCG_UNLIKELY(nargs != 1 || kwnames) &&
        tcg_check_onearg("Future.set_exception", nargs, kwnames) < 0) {
        return NULL;
    }
    STATE_FROM_CLS(cls, st);
    if (tcg_future_set_exception(st, (tcg_FutureObject *)self, args[0]) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* cancel(msg=None) */
static PyObject *
Future_cancel(PyObject *self, PyTypeObject *cls, PyObject *const *args,
              Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"msg"};
    PyObject *msg = Py_None;
    if ((nargs || kwnames) &&
        tcg_parse_args("cancel", args, nargs, kwnames, names, 1, 0, 1, 0,
                       &msg) < 0) {
        return NULL;
    }
    STATE_FROM_CLS(cls, st);
    int r = tcg_future_cancel(st, (tcg_FutureObject *)self, msg);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyObject *
Future_cancelled(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(
        ((tcg_FutureObject *)self)->status == TCG_FUT_CANCELLED);
}

static PyObject *
Future_done(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(
        ((tcg_FutureObject *)self)->status != TCG_FUT_PENDING);
}

static PyObject *
Future_get_loop(PyObject *self, PyTypeObject *cls, PyObject *const *args,
                Py_ssize_t nargs, PyObject *kwnames)
{
    if (tcg_check_noargs("Future.get_loop", nargs, kwnames) < 0) {
        return NULL;
    }
    tcg_FutureObject *fut = (tcg_FutureObject *)self;
    if (future_ensure_initialized(fut) < 0) {
        return NULL;
    }
    STATE_FROM_CLS(cls, st);
    return Py_XNewRef(tcg_future_loop(st, fut));
}

/* add_done_callback(fn, *, context=None) */
static PyObject *
Future_add_done_callback(PyObject *self, PyTypeObject *cls,
                         PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    /* (fn, /, *, context=None), as asyncio's. */
    static const char *const names[] = {"fn", "context"};
    PyObject *argv[2] = {NULL, NULL};
    if (tcg_parse_args("add_done_callback", args, nargs, kwnames, names, 2,
                       1, 1, 1, argv) < 0) {
        return NULL;
    }
    PyObject *fn = argv[0], *ctx = argv[1];
    if (ctx == Py_None) {
        ctx = NULL;
    }
    STATE_FROM_CLS(cls, st);
    if (tcg_future_add_done_callback(st, (tcg_FutureObject *)self, fn, ctx) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Future_remove_done_callback(PyObject *self, PyObject *fn)
{
    tcg_FutureObject *fut = (tcg_FutureObject *)self;
    if (future_ensure_initialized(fut) < 0) {
        return NULL;
    }
    Py_ssize_t removed = 0;
    if (fut->callback0 != NULL) {
        PyObject *cb0 = Py_NewRef(fut->callback0);
        int cmp = PyObject_RichCompareBool(cb0, fn, Py_EQ);
        if (cmp < 0) {
            Py_DECREF(cb0);
            return NULL;
        }
        /* Only clear it if the comparison left it in place. */
        if (cmp == 1 && fut->callback0 == cb0) {
            Py_CLEAR(fut->callback0);
            Py_CLEAR(fut->context0);
            removed++;
        }
        Py_DECREF(cb0);
    }
    if (fut->callbacks == NULL) {
        return PyLong_FromSsize_t(removed);
    }
    /* Walk the live list, re-reading it at every step: an __eq__ may add
     * or remove callbacks, or replace the list.  Callbacks added meanwhile
     * are compared too, and kept unless they match. */
    PyObject *list = Py_NewRef(fut->callbacks);
    PyObject *kept = PyList_New(0);
    if (kept == NULL) {
        Py_DECREF(list);
        return NULL;
    }
    for (Py_ssize_t i = 0;
         fut->callbacks == list && i < PyList_GET_SIZE(list); i++) {
        PyObject *item = Py_NewRef(PyList_GET_ITEM(list, i));
        int cmp = PyObject_RichCompareBool(PyTuple_GET_ITEM(item, 0), fn,
                                           Py_EQ);
        if (cmp == 0) {
            cmp = PyList_Append(kept, item);
        }
        else if (cmp == 1) {
            removed++;
            cmp = 0;
        }
        Py_DECREF(item);
        if (cmp < 0) {
            Py_DECREF(list);
            Py_DECREF(kept);
            return NULL;
        }
    }
    int rc = 0;
    if (fut->callbacks == list) {   /* else it was replaced: leave it be */
        if (PyList_GET_SIZE(kept) == 0) {
            Py_CLEAR(fut->callbacks);
        }
        else {
            rc = PyList_SetSlice(list, 0, PY_SSIZE_T_MAX, kept);
        }
    }
    Py_DECREF(list);
    Py_DECREF(kept);
    if (rc < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(removed);
}

static PyObject *
Future_make_cancelled_error(PyObject *self, PyTypeObject *cls,
                            PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    if (tcg_check_noargs("Future._make_cancelled_error", nargs, kwnames) < 0) {
        return NULL;
    }
    STATE_FROM_CLS(cls, st);
    return future_make_cancelled_error(st, (tcg_FutureObject *)self);
}

static PyObject *
Future_repr_info(PyObject *self, PyTypeObject *cls, PyObject *const *args,
                 Py_ssize_t nargs, PyObject *kwnames)
{
    if (tcg_check_noargs("Future._repr_info", nargs, kwnames) < 0) {
        return NULL;
    }
    STATE_FROM_CLS(cls, st);
    return PyObject_CallOneArg(st->fut.future_repr_info, self);
}

/* Tornado 4: exc_info() -> (type, value, traceback) or None.  None while
 * pending or with a result; a cancelled future raises CancelledError, as
 * exception() does. */
static PyObject *
Future_exc_info(PyObject *self, PyTypeObject *cls, PyObject *const *args,
                Py_ssize_t nargs, PyObject *kwnames)
{
    if (tcg_check_noargs("Future.exc_info", nargs, kwnames) < 0) {
        return NULL;
    }
    tcg_FutureObject *fut = (tcg_FutureObject *)self;
    if (fut->status == TCG_FUT_CANCELLED) {
        STATE_FROM_CLS(cls, st);
        future_raise_cancelled(st, fut);
        return NULL;
    }
    if (fut->status == TCG_FUT_PENDING) {
        Py_RETURN_NONE;
    }
    fut->log_tb = 0;
    if (fut->exception == NULL) {
        Py_RETURN_NONE;
    }
    return PyTuple_Pack(3, (PyObject *)Py_TYPE(fut->exception), fut->exception,
                        fut->exception_tb ? fut->exception_tb : Py_None);
}

/* Tornado 4: set_exc_info((type, value, traceback)). */
static PyObject *
Future_set_exc_info(PyObject *self, PyTypeObject *cls, PyObject *const *args,
                    Py_ssize_t nargs, PyObject *kwnames)
{
    if (tcg_check_onearg("Future.set_exc_info", nargs, kwnames) < 0) {
        return NULL;
    }
    PyObject *info = args[0];
    if (!PyTuple_Check(info) || PyTuple_GET_SIZE(info) != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "set_exc_info() expects a (type, value, traceback) "
                        "tuple");
        return NULL;
    }
    PyObject *exc = PyTuple_GET_ITEM(info, 1);
    PyObject *tb = PyTuple_GET_ITEM(info, 2);
    if (!PyExceptionInstance_Check(exc)) {
        PyErr_SetString(PyExc_TypeError,
                        "set_exc_info() needs an exception instance");
        return NULL;
    }
    if (tb != Py_None && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError,
                        "set_exc_info() needs a traceback or None");
        return NULL;
    }
    if (PyException_SetTraceback(exc, tb) < 0) {
        return NULL;
    }
    STATE_FROM_CLS(cls, st);
    if (tcg_future_set_exception(st, (tcg_FutureObject *)self, exc) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *future_iter_new(tcg_state *st, tcg_FutureObject *fut);

static PyObject *
Future_await(PyObject *self)
{
    tcg_FutureObject *fut = (tcg_FutureObject *)self;
    if (future_ensure_initialized(fut) < 0) {
        return NULL;
    }
    tcg_state *st = tcg_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    return future_iter_new(st, fut);
}

/* ---- attributes --------------------------------------------------------- */

static PyObject *
Future_get_blocking(tcg_FutureObject *fut, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(fut->blocking);
}

static int
Future_set_blocking(tcg_FutureObject *fut, PyObject *val,
                    void *Py_UNUSED(closure))
{
    if (val == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    int on = PyObject_IsTrue(val);
    if (on < 0) {
        return -1;
    }
    fut->blocking = (uint8_t)on;
    return 0;
}

static PyObject *
Future_get_log_traceback(tcg_FutureObject *fut, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(fut->log_tb);
}

static int
Future_set_log_traceback(tcg_FutureObject *fut, PyObject *val,
                         void *Py_UNUSED(closure))
{
    if (val == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    int on = PyObject_IsTrue(val);
    if (on < 0) {
        return -1;
    }
    if (on) {
        PyErr_SetString(PyExc_ValueError,
                        "_log_traceback can only be set to False");
        return -1;
    }
    fut->log_tb = 0;
    return 0;
}

static PyObject *
Future_get_loop_attr(tcg_FutureObject *fut, void *Py_UNUSED(closure))
{
    if (!fut->initialized) {
        Py_RETURN_NONE;
    }
    tcg_state *st = tcg_state_from_type(Py_TYPE(fut));
    if (st == NULL) {
        Py_RETURN_NONE;   /* interpreter exit */
    }
    PyObject *loop = tcg_future_loop(st, fut);
    if (loop == NULL) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return Py_NewRef(loop);
}

static PyObject *
Future_get_callbacks(tcg_FutureObject *fut, void *Py_UNUSED(closure))
{
    /* Always a new list: the internal one must only hold our tuples. */
    if (fut->callback0 == NULL) {
        if (fut->callbacks == NULL) {
            Py_RETURN_NONE;
        }
        return PyList_GetSlice(fut->callbacks, 0, PY_SSIZE_T_MAX);
    }
    Py_ssize_t n = fut->callbacks ? PyList_GET_SIZE(fut->callbacks) : 0;
    PyObject *res = PyList_New(n + 1);
    if (res == NULL) {
        return NULL;
    }
    PyObject *tup = PyTuple_Pack(2, fut->callback0, fut->context0);
    if (tup == NULL) {
        Py_DECREF(res);
        return NULL;
    }
    PyList_SET_ITEM(res, 0, tup);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyList_SET_ITEM(res, i + 1,
                        Py_NewRef(PyList_GET_ITEM(fut->callbacks, i)));
    }
    return res;
}

static PyObject *
Future_get_result_attr(tcg_FutureObject *fut, void *Py_UNUSED(closure))
{
    return Py_NewRef(fut->result ? fut->result : Py_None);
}

static PyObject *
Future_get_exception_attr(tcg_FutureObject *fut, void *Py_UNUSED(closure))
{
    return Py_NewRef(fut->exception ? fut->exception : Py_None);
}

static PyObject *
Future_get_source_traceback(tcg_FutureObject *fut, void *Py_UNUSED(closure))
{
    return Py_NewRef(fut->source_tb ? fut->source_tb : Py_None);
}

static PyObject *
Future_get_cancel_message(tcg_FutureObject *fut, void *Py_UNUSED(closure))
{
    return Py_NewRef(fut->cancel_msg ? fut->cancel_msg : Py_None);
}

static int
Future_set_cancel_message(tcg_FutureObject *fut, PyObject *val,
                          void *Py_UNUSED(closure))
{
    if (val == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    Py_XSETREF(fut->cancel_msg, Py_NewRef(val));
    return 0;
}

static PyObject *
Future_get_state(tcg_FutureObject *fut, void *Py_UNUSED(closure))
{
    static const char *const names[] = {"PENDING", "CANCELLED", "FINISHED"};
    tcg_state *st = tcg_state_from_type(Py_TYPE(fut));
    if (st == NULL) {
        return PyUnicode_FromString(names[fut->status]);
    }
    switch (fut->status) {
    case TCG_FUT_CANCELLED:
        return Py_NewRef(st->fut.str_cancelled);
    case TCG_FUT_FINISHED:
        return Py_NewRef(st->fut.str_finished);
    default:
        return Py_NewRef(st->fut.str_pending);
    }
}

/* ---- lifetime ----------------------------------------------------------- */

static PyObject *
future_repr(tcg_FutureObject *fut)
{
    tcg_state *st = tcg_state_from_type(Py_TYPE(fut));
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    if (st->fut.future_repr != NULL) {
        return PyObject_CallOneArg(st->fut.future_repr, (PyObject *)fut);
    }
    /* "<Name info info ...>", as asyncio's own repr. */
    PyObject *info = PyObject_CallOneArg(st->fut.future_repr_info,
                                         (PyObject *)fut);
    if (info == NULL) {
        return NULL;
    }
    PyObject *res = NULL, *sep = PyUnicode_FromString(" ");
    PyObject *joined = sep ? PyUnicode_Join(sep, info) : NULL;
    PyObject *name = PyObject_GetAttrString((PyObject *)Py_TYPE(fut),
                                            "__name__");
    if (joined != NULL && name != NULL) {
        res = PyUnicode_FromFormat("<%U %U>", name, joined);
    }
    Py_XDECREF(name);
    Py_XDECREF(joined);
    Py_XDECREF(sep);
    Py_DECREF(info);
    return res;
}

/* Log an exception nobody retrieved, once, the way asyncio does:
 * loop.call_exception_handler({...}).  A future whose loop was never bound
 * uses the running loop if there is one, else asyncio's logger. */
static void
future_finalize(PyObject *self)
{
    tcg_FutureObject *fut = (tcg_FutureObject *)self;
    if (!fut->log_tb || fut->exception == NULL) {
        return;
    }
    fut->log_tb = 0;
    PyObject *err_type, *err_val, *err_tb;
    PyErr_Fetch(&err_type, &err_val, &err_tb);
    tcg_state *st = tcg_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        /* Interpreter exit: the module (its loggers) is gone. */
        PyErr_Restore(err_type, err_val, err_tb);
        return;
    }

    PyObject *context = NULL, *message = NULL, *res = NULL;
    PyObject *loop = fut->loop;
    if (loop == NULL) {
        loop = tcg_running_loop(st);
        if (loop == NULL) {
            PyErr_Clear();
        }
    }
    PyObject *name = PyObject_GetAttrString((PyObject *)Py_TYPE(self),
                                            "__name__");
    if (name == NULL) {
        goto done;
    }
    message = PyUnicode_FromFormat("%U exception was never retrieved", name);
    Py_DECREF(name);
    if (message == NULL) {
        goto done;
    }
    if (loop != NULL) {
        context = PyDict_New();
        if (context == NULL ||
            PyDict_SetItem(context, st->c.str_message, message) < 0 ||
            PyDict_SetItem(context, st->c.str_exception, fut->exception) < 0 ||
            PyDict_SetItem(context, st->c.str_future, self) < 0 ||
            (fut->source_tb != NULL &&
             PyDict_SetItem(context, st->c.str_source_traceback,
                            fut->source_tb) < 0)) {
            goto done;
        }
        res = PyObject_CallMethodOneArg(loop, st->c.str_call_exception_handler,
                                        context);
    }
    else {
        /* asyncio's default handler's format: "%s\nfuture: %r" */
        PyObject *fmt = PyUnicode_FromString("%s\nfuture: %r");
        if (fmt == NULL) {
            goto done;
        }
        PyObject *args[5] = {st->c.asyncio_logger, fmt, message, self,
                             fut->exception};
        res = PyObject_VectorcallMethod(st->c.str_error, args,
                                        4 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                        st->c.kwnames_exc_info);
        Py_DECREF(fmt);
    }
done:
    if (res == NULL && PyErr_Occurred()) {
        PyErr_WriteUnraisable(self);
    }
    Py_XDECREF(res);
    Py_XDECREF(context);
    Py_XDECREF(message);
    PyErr_Restore(err_type, err_val, err_tb);
}

static int
future_traverse(tcg_FutureObject *fut, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(fut));
    Py_VISIT(fut->loop);
    Py_VISIT(fut->callback0);
    Py_VISIT(fut->context0);
    Py_VISIT(fut->callbacks);
    Py_VISIT(fut->result);
    Py_VISIT(fut->exception);
    Py_VISIT(fut->exception_tb);
    Py_VISIT(fut->cancel_msg);
    Py_VISIT(fut->cancelled_exc);
    Py_VISIT(fut->source_tb);
    Py_VISIT(fut->dict);
    return 0;
}

static int
future_clear(tcg_FutureObject *fut)
{
    Py_CLEAR(fut->loop);
    Py_CLEAR(fut->callback0);
    Py_CLEAR(fut->context0);
    Py_CLEAR(fut->callbacks);
    Py_CLEAR(fut->result);
    Py_CLEAR(fut->exception);
    Py_CLEAR(fut->exception_tb);
    Py_CLEAR(fut->cancel_msg);
    Py_CLEAR(fut->cancelled_exc);
    Py_CLEAR(fut->source_tb);
    Py_CLEAR(fut->dict);
    /* A cleared future is an uninitialised one: no state refers to the
     * fields just emptied. */
    fut->status = TCG_FUT_PENDING;
    fut->log_tb = fut->blocking = fut->initialized = 0;
    return 0;
}

static void
future_dealloc(PyObject *self)
{
    tcg_FutureObject *fut = (tcg_FutureObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    /* The finalizer only reports an unretrieved exception, so it is called
     * only then.  (A Python subclass's finalizer, __del__ included, has
     * already been called by the subclass's dealloc.)  Still tracked here,
     * so a future the exception handler resurrects stays collectable. */
    if (fut->log_tb && fut->exception != NULL) {
        if (PyObject_CallFinalizerFromDealloc(self) < 0) {
            return;   /* resurrected by the finalizer */
        }
    }
    PyObject_GC_UnTrack(self);
    /* A future whose result is a future whose result is a future ...:
     * freeing the head frees the chain.  The trashcan defers the deeper
     * levels so that a million-long chain does not overflow the C stack
     * (a deferred future comes back here, its finalizer already run). */
    Py_TRASHCAN_BEGIN(self, future_dealloc)
    if (fut->weakreflist != NULL) {
        PyObject_ClearWeakRefs(self);
        fut->weakreflist = NULL;
    }
    future_clear(fut);

    /* Recycle exact Futures.  One whose finalizer ever ran keeps the GC's
     * "finalized" mark, which the API cannot reset, so it is freed
     * instead.  At interpreter exit (no state) nothing is recycled: the
     * freelist has been emptied for good. */
    tcg_state *st = tcg_state_from_type(tp);
    if (st == NULL || tp != st->fut.FutureType ||
        PyObject_GC_IsFinalized(self) ||
        !tcg_freelist_push(&st->fut.freelist, self)) {
        tp->tp_free(self);
    }
    Py_DECREF(tp);
    Py_TRASHCAN_END
}

/* ---- type --------------------------------------------------------------- */

#define METH_CLS (METH_METHOD | METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef Future_methods[] = {
    {"result", (PyCFunction)(void (*)(void))Future_result, METH_CLS,
     "Return the result, or raise the exception, of a done future."},
    {"exception", (PyCFunction)(void (*)(void))Future_exception, METH_CLS,
     "Return the exception (or None) of a done future."},
    {"set_result", (PyCFunction)(void (*)(void))Future_set_result, METH_CLS,
     "Mark the future done with a result and schedule its callbacks."},
    {"set_exception", (PyCFunction)(void (*)(void))Future_set_exception,
     METH_CLS,
     "Mark the future done with an exception and schedule its callbacks."},
    {"cancel", (PyCFunction)(void (*)(void))Future_cancel, METH_CLS,
     "cancel(msg=None): cancel a pending future; True if it was pending."},
    {"cancelled", Future_cancelled, METH_NOARGS,
     "True if the future was cancelled."},
    {"done", Future_done, METH_NOARGS,
     "True if the future has a result, an exception, or was cancelled."},
    {"get_loop", (PyCFunction)(void (*)(void))Future_get_loop, METH_CLS,
     "Return the event loop the future is bound to."},
    {"add_done_callback", (PyCFunction)(void (*)(void))Future_add_done_callback,
     METH_CLS,
     "add_done_callback(fn, *, context=None): schedule fn(future) on the "
     "loop when done."},
    {"remove_done_callback", Future_remove_done_callback, METH_O,
     "Remove every registration of fn; return how many were removed."},
    {"_make_cancelled_error",
     (PyCFunction)(void (*)(void))Future_make_cancelled_error, METH_CLS, NULL},
    {"_repr_info", (PyCFunction)(void (*)(void))Future_repr_info, METH_CLS,
     NULL},
    {"exc_info", (PyCFunction)(void (*)(void))Future_exc_info, METH_CLS,
     "Tornado 4: the exception as a (type, value, traceback) tuple, or None."},
    {"set_exc_info", (PyCFunction)(void (*)(void))Future_set_exc_info,
     METH_CLS,
     "Tornado 4: set the exception from a (type, value, traceback) tuple."},
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS,
     "See PEP 585."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Future_getset[] = {
    {"_asyncio_future_blocking", (getter)Future_get_blocking,
     (setter)Future_set_blocking, NULL, NULL},
    {"_log_traceback", (getter)Future_get_log_traceback,
     (setter)Future_set_log_traceback, NULL, NULL},
    {"_loop", (getter)Future_get_loop_attr, NULL, NULL, NULL},
    {"_callbacks", (getter)Future_get_callbacks, NULL, NULL, NULL},
    {"_result", (getter)Future_get_result_attr, NULL, NULL, NULL},
    {"_exception", (getter)Future_get_exception_attr, NULL, NULL, NULL},
    {"_source_traceback", (getter)Future_get_source_traceback, NULL, NULL,
     NULL},
    {"_cancel_message", (getter)Future_get_cancel_message,
     (setter)Future_set_cancel_message, NULL, NULL},
    {"_state", (getter)Future_get_state, NULL, NULL, NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Future_members[] = {
    {"__weaklistoffset__", T_PYSSIZET,
     offsetof(tcg_FutureObject, weakreflist), READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(tcg_FutureObject, dict),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(Future_doc,
"Future(*, loop=None)\n--\n\n"
"The result of an asynchronous operation, with asyncio.Future's rules\n"
"and Tornado 4's exc_info()/set_exc_info().");

static PyType_Slot Future_slots[] = {
    {Py_tp_doc, (void *)Future_doc},
    {Py_tp_init, future_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_dealloc, future_dealloc},
    {Py_tp_finalize, future_finalize},
    {Py_tp_traverse, future_traverse},
    {Py_tp_clear, future_clear},
    {Py_tp_repr, future_repr},
    {Py_tp_iter, Future_await},
    {Py_am_await, Future_await},
    {Py_tp_methods, Future_methods},
    {Py_tp_getset, Future_getset},
    {Py_tp_members, Future_members},
    {0, NULL},
};

static PyType_Spec Future_spec = {
    .name = "tornado_cgen.concurrent.Future",
    .basicsize = sizeof(tcg_FutureObject),
    /* Immutable, as _asyncio.Future: the Runner and the await iterator
     * read the struct of exact Futures, so patching a method on the type
     * would change f.result() but not `yield f`. */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Future_slots,
};

/* ---- FutureIter: what `await fut` and `yield from fut` drive ------------ */

typedef struct {
    PyObject_HEAD
    tcg_FutureObject *future;   /* NULL once exhausted */
} FutureIterObject;

static PyObject *
future_iter_new(tcg_state *st, tcg_FutureObject *fut)
{
    FutureIterObject *it = PyObject_GC_New(FutureIterObject,
                                           st->fut.FutureIterType);
    if (it == NULL) {
        return NULL;
    }
    it->future = (tcg_FutureObject *)Py_NewRef(fut);
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static PySendResult
FutureIter_am_send(PyObject *self, PyObject *Py_UNUSED(arg), PyObject **result)
{
    FutureIterObject *it = (FutureIterObject *)self;
    tcg_FutureObject *fut = it->future;
    *result = NULL;
    if (fut == NULL) {
        return PYGEN_ERROR;   /* exhausted: a bare StopIteration */
    }
    if (fut->status == TCG_FUT_PENDING) {
        if (!fut->blocking) {
            fut->blocking = 1;
            *result = Py_NewRef(fut);
            return PYGEN_NEXT;
        }
        PyErr_SetString(PyExc_RuntimeError, "await wasn't used with future");
        return PYGEN_ERROR;
    }
    it->future = NULL;
    tcg_state *st = tcg_state_from_type(Py_TYPE(self));
    PyObject *res = st ? tcg_future_result(st, fut)
                       : (tcg_state_gone(), NULL);
    Py_DECREF(fut);
    if (res == NULL) {
        return PYGEN_ERROR;
    }
    *result = res;
    return PYGEN_RETURN;
}

/* Raise StopIteration(value) so that a tuple value is not taken as args. */
static void
set_stop_iteration(PyObject *value)
{
    if (value == Py_None) {
        PyErr_SetNone(PyExc_StopIteration);
        return;
    }
    PyObject *exc = PyObject_CallOneArg(PyExc_StopIteration, value);
    if (exc != NULL) {
        PyErr_SetObject(PyExc_StopIteration, exc);
        Py_DECREF(exc);
    }
}

static PyObject *
FutureIter_iternext(PyObject *self)
{
    PyObject *res;
    switch (FutureIter_am_send(self, Py_None, &res)) {
    case PYGEN_NEXT:
        return res;
    case PYGEN_RETURN:
        set_stop_iteration(res);
        Py_DECREF(res);
        return NULL;
    default:
        return NULL;
    }
}

static PyObject *
FutureIter_send(PyObject *self, PyObject *unused)
{
    /* Futures ignore the sent value, as asyncio's do. */
    return FutureIter_iternext(self);
}

static PyObject *
FutureIter_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_Format(PyExc_TypeError,
                     "throw expected at least 1 argument, got %zd", nargs);
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (nargs > 1 &&
        PyErr_WarnEx(PyExc_DeprecationWarning,
                     "the (type, exc, tb) signature of throw() is deprecated, "
                     "use the single-arg signature instead.", 1) < 0) {
        return NULL;
    }
#endif
    PyObject *type = args[0];
    PyObject *val = nargs > 1 && args[1] != Py_None ? args[1] : NULL;
    PyObject *tb = nargs > 2 && args[2] != Py_None ? args[2] : NULL;
    if (tb != NULL && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError,
                        "throw() third argument must be a traceback");
        return NULL;
    }
    Py_INCREF(type);
    Py_XINCREF(val);
    Py_XINCREF(tb);
    if (PyExceptionClass_Check(type)) {
        PyErr_NormalizeException(&type, &val, &tb);
    }
    else if (PyExceptionInstance_Check(type)) {
        if (val != NULL) {
            PyErr_SetString(PyExc_TypeError,
                            "instance exception may not have a separate value");
            goto fail;
        }
        val = type;
        type = Py_NewRef(PyExceptionInstance_Class(val));
        if (tb == NULL) {
            tb = PyException_GetTraceback(val);
        }
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes deriving BaseException or "
                        "instances of such a class");
        goto fail;
    }
    FutureIterObject *it = (FutureIterObject *)self;
    Py_CLEAR(it->future);
    PyErr_Restore(type, val, tb);
    return NULL;
fail:
    Py_DECREF(type);
    Py_XDECREF(val);
    Py_XDECREF(tb);
    return NULL;
}

static PyObject *
FutureIter_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    Py_CLEAR(((FutureIterObject *)self)->future);
    Py_RETURN_NONE;
}

static int
FutureIter_traverse(FutureIterObject *it, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(it));
    Py_VISIT(it->future);
    return 0;
}

static int
FutureIter_clear(FutureIterObject *it)
{
    Py_CLEAR(it->future);
    return 0;
}

static void
FutureIter_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    FutureIter_clear((FutureIterObject *)self);
    PyObject_GC_Del(self);
    Py_DECREF(tp);
}

static PyMethodDef FutureIter_methods[] = {
    {"send", FutureIter_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))FutureIter_throw, METH_FASTCALL,
     NULL},
    {"close", FutureIter_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot FutureIter_slots[] = {
    {Py_tp_dealloc, FutureIter_dealloc},
    {Py_tp_traverse, FutureIter_traverse},
    {Py_tp_clear, FutureIter_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, FutureIter_iternext},
    {Py_am_send, FutureIter_am_send},
    {Py_tp_methods, FutureIter_methods},
    {0, NULL},
};

static PyType_Spec FutureIter_spec = {
    .name = "tornado_cgen._core.FutureIter",
    .basicsize = sizeof(FutureIterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = FutureIter_slots,
};

/* ---- module part -------------------------------------------------------- */

int
tcg_future_exec(PyObject *m, tcg_state *st)
{
    tcg_future_state *fs = &st->fut;
    fs->FutureType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &Future_spec,
                                                              NULL);
    if (fs->FutureType == NULL ||
        PyModule_AddType(m, fs->FutureType) < 0) {
        return -1;
    }
    fs->FutureIterType = (PyTypeObject *)PyType_FromModuleAndSpec(
        m, &FutureIter_spec, NULL);
    if (fs->FutureIterType == NULL) {
        return -1;
    }
    /* base_futures._future_repr is 3.11+; 3.10 builds the repr from
     * _future_repr_info (future_repr() below). */
    fs->future_repr = tcg_import_attr("asyncio.base_futures", "_future_repr");
    if (fs->future_repr == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return -1;
        }
        PyErr_Clear();
    }
    if ((fs->future_repr_info = tcg_import_attr("asyncio.base_futures",
                                            "_future_repr_info")) == NULL ||
        (fs->extract_stack = tcg_import_attr("asyncio.format_helpers",
                                         "extract_stack")) == NULL ||
        (fs->str_loop = PyUnicode_InternFromString("loop")) == NULL ||
        (fs->str_pending = PyUnicode_InternFromString("PENDING")) == NULL ||
        (fs->str_cancelled = PyUnicode_InternFromString("CANCELLED")) == NULL ||
        (fs->str_finished = PyUnicode_InternFromString("FINISHED")) == NULL) {
        return -1;
    }
    return 0;
}

int
tcg_future_traverse(tcg_state *st, visitproc visit, void *arg)
{
    tcg_future_state *fs = &st->fut;
    Py_VISIT(fs->FutureType);
    Py_VISIT(fs->FutureIterType);
    Py_VISIT(fs->future_repr);
    Py_VISIT(fs->future_repr_info);
    Py_VISIT(fs->extract_stack);
    return 0;
}

void
tcg_future_clear(tcg_state *st)
{
    tcg_future_state *fs = &st->fut;
    tcg_freelist_clear(&fs->freelist);
    Py_CLEAR(fs->FutureType);
    Py_CLEAR(fs->FutureIterType);
    Py_CLEAR(fs->future_repr);
    Py_CLEAR(fs->future_repr_info);
    Py_CLEAR(fs->extract_stack);
    Py_CLEAR(fs->str_loop);
    Py_CLEAR(fs->str_pending);
    Py_CLEAR(fs->str_cancelled);
    Py_CLEAR(fs->str_finished);
}
