/* runner.c: the coroutine Runner that drives @gen.coroutine generators.
 *
 * Owns: the Coroutine type (the callable gen.coroutine(func) returns), the
 * Runner type (one per coroutine that suspends), the yield dispatcher
 * (what a yielded object means: done future, pending future, moment, list
 * or dict, awaitable, anything through gen.convert_yielded), multi() with
 * its MultiWaiter type, ConvertYielded (gen.convert_yielded's fast paths
 * over its singledispatch registry), and the runner's slice of the module
 * state.
 *
 * How a call goes:
 *   1. Coroutine.__call__ makes the result future and copies the context
 *      once, enters it and calls the function; a generator is then driven
 *      by drive() straight away, on the C stack, with no Runner object.
 *   2. drive() sends and throws into the generator and resolves what it
 *      yields in a loop: done futures (ours read from the struct) resume
 *      it synchronously.  Only when it must wait does it move the
 *      generator into a Runner, register the Runner itself as the done
 *      callback of what it waits on (a wakeup allocates nothing), and
 *      return.
 *   3. The Runner is the result future's first done callback while it is
 *      suspended: the future keeps it alive (Tornado #1769) and drops it,
 *      breaking the cycle, when the coroutine finishes.  A call of the
 *      Runner with any object but the one it waits for (the result future
 *      being cancelled, say) is ignored.
 *
 *   4. Each call copies the context once (PyContext_CopyCurrent) and every
 *      step runs in that Context: entered around the call and first steps,
 *      and for wakeups passed as the callback's context= (the loop enters
 *      it); a wakeup that arrives in another context enters it itself.
 *
 * Exceptions are thrown in with one-argument throw() from C: nothing is
 * being handled here, so they get no stray __context__, and they keep
 * their tracebacks.
 *
 * Result futures are our exact Future, handled through its struct; every
 * operation on them also has a method-call path, so that a future_factory
 * (install() making asyncio.Future for Tornado) needs no other change.
 */
#include "tcg.h"
#include <stddef.h>
#include <structmember.h>   /* T_PYSSIZET, READONLY on 3.10 and 3.11 */

/* ---- small helpers ------------------------------------------------------ */

/* The current exception, normalised, with its traceback attached: a new
 * reference (never NULL when an exception is set). */
static PyObject *
fetch_exc(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Raise `exc` (an exception instance; the reference is stolen). */
static void
restore_exc(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyObject *tb = PyException_GetTraceback(exc);
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, tb);
#endif
}

/* Everything here needs the objects tornado_cgen.gen registers. */
static int
gen_not_ready(tcg_state *st)
{
    if (TCG_UNLIKELY(st->run.Return == NULL)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "tornado_cgen.gen is not imported yet");
        return 1;
    }
    return 0;
}

static inline int
is_exact_aio_future(tcg_state *st, PyObject *op)
{
    PyObject *tp = (PyObject *)Py_TYPE(op);
    return tp == st->run.AioFutureType || tp == st->run.AioTaskType;
}

/* gen.moment, or the other package's while install() has Tornado's. */
static inline int
is_moment(tcg_state *st, PyObject *op)
{
    return op == st->run.moment || op == st->run.alt_moment;
}

static inline int
is_null_future(tcg_state *st, PyObject *op)
{
    return op == st->run.null_future || op == st->run.alt_null_future;
}

/* Futures that take add_done_callback(fn, context=ctx). */
static int
takes_context(tcg_state *st, PyObject *op)
{
    return tcg_Future_Check(st, op) ||
           PyObject_TypeCheck(op, (PyTypeObject *)st->run.AioFutureType);
}

/* fut.<method>(*args[1:]), args[0] being fut (and args[-1] writable, as
 * PY_VECTORCALL_ARGUMENTS_OFFSET promises): asyncio's own method
 * descriptor for an exact asyncio Future or Task, else a lookup by name. */
static PyObject *
fut_call(tcg_state *st, tcg_aio_method which, PyObject *const *args,
         size_t nargs, PyObject *kwnames)
{
    PyObject *tp = (PyObject *)Py_TYPE(args[0]);
    PyObject *m = tp == st->run.AioFutureType ? st->run.aio_future_methods[which]
                : tp == st->run.AioTaskType ? st->run.aio_task_methods[which]
                : NULL;
    if (m != NULL) {
        return PyObject_Vectorcall(m, args, nargs, kwnames);
    }
    return PyObject_VectorcallMethod(st->run.aio_names[which], args,
                                     nargs | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                     kwnames);
}

static inline PyObject *
fut_call0(tcg_state *st, tcg_aio_method which, PyObject *fut)
{
    return fut_call(st, which, &fut, 1, NULL);
}

static inline PyObject *
fut_call1(tcg_state *st, tcg_aio_method which, PyObject *fut, PyObject *arg)
{
    PyObject *args[2] = {fut, arg};
    return fut_call(st, which, args, 2, NULL);
}

/* ---- asyncio.Future's outcome, read without a call ----------------------- *
 * Under install() every future is an asyncio.Future, and done() and
 * result() through their method descriptors cost about 170 instructions
 * each, where the answer is two words of _asyncio's struct.  CPython does
 * not publish that struct, so learn_aio_layout() finds the two words at
 * import from futures made and settled through asyncio's own API: the one
 * offset that holds the result in a finished future and NULL in a pending
 * and a cancelled one, and the one int that reads PENDING, FINISHED and
 * CANCELLED (0, 2, 1) in the three.  Each must be the only match, in two
 * rounds with different results; otherwise the offsets stay -1 and the
 * methods are called as before.  Only the outcome "finished with a
 * result" is read this way (both words must say so; result() would change
 * nothing on such a future), and "cancelled" for the Runner's own result
 * futures; nothing is ever written. */

enum { AIO_PENDING = 0, AIO_CANCELLED_STATE = 1, AIO_FINISHED = 2 };

static inline PyObject *
word_at(PyObject *op, Py_ssize_t offset)
{
    PyObject *w;
    memcpy(&w, (char *)op + offset, sizeof(w));
    return w;
}

static inline int
int_at(PyObject *op, Py_ssize_t offset)
{
    int v;
    memcpy(&v, (char *)op + offset, sizeof(v));
    return v;
}

/* Is f an exact asyncio.Future whose struct we can read? */
static inline int
aio_readable(tcg_state *st, PyObject *f)
{
    return st->run.aio_result_offset >= 0 &&
           (PyObject *)Py_TYPE(f) == st->run.AioFutureType;
}

/* The result of f (borrowed) if f is an exact asyncio.Future finished with
 * one and the layout is known; NULL otherwise (the caller asks f). */
static inline PyObject *
aio_finished_result(tcg_state *st, PyObject *f)
{
    if (!aio_readable(st, f) ||
        int_at(f, st->run.aio_state_offset) != AIO_FINISHED) {
        return NULL;
    }
    PyObject *r = word_at(f, st->run.aio_result_offset);
    st->stats.aio_future_reads += r != NULL;
    return r;
}

/* The one offset past the object header, a multiple of step (the width
 * of the field), where pred holds for ps[0..2] (a pending, a finished and
 * a cancelled future): -1 if none or more than one. */
static Py_ssize_t
only_offset(PyObject *const ps[3], PyObject *value, Py_ssize_t step,
            int (*pred)(PyObject *const ps[3], PyObject *value,
                        Py_ssize_t offset))
{
    Py_ssize_t size = Py_TYPE(ps[0])->tp_basicsize, found = -1;
    for (Py_ssize_t off = (Py_ssize_t)sizeof(PyObject);
         off + step <= size; off += step) {
        if (pred(ps, value, off)) {
            if (found >= 0) {
                return -1;
            }
            found = off;
        }
    }
    return found;
}

static int
holds_result(PyObject *const ps[3], PyObject *value, Py_ssize_t off)
{
    return word_at(ps[0], off) == NULL && word_at(ps[1], off) == value &&
           word_at(ps[2], off) == NULL;
}

static int
holds_state(PyObject *const ps[3], PyObject *value, Py_ssize_t off)
{
    (void)value;
    return int_at(ps[0], off) == AIO_PENDING &&
           int_at(ps[1], off) == AIO_FINISHED &&
           int_at(ps[2], off) == AIO_CANCELLED_STATE;
}

/* One round: three futures of a stand-in loop (asyncio.Future only asks
 * it get_debug()), one left pending, one given a fresh object as its
 * result, one cancelled.  0 with the offsets found (or -1s), -1 on error. */
static int
probe_aio_layout(tcg_state *st, PyObject *kwargs, Py_ssize_t *state_off,
                 Py_ssize_t *result_off)
{
    PyObject *ps[3] = {NULL, NULL, NULL};
    PyObject *value = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    int rc = -1;
    if (value == NULL) {
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        ps[i] = PyObject_Call(st->run.AioFutureType, st->c.empty_tuple,
                              kwargs);
        if (ps[i] == NULL) {
            goto done;
        }
    }
    PyObject *r = fut_call1(st, AIO_SET_RESULT, ps[1], value);
    if (r == NULL) {
        goto done;
    }
    Py_DECREF(r);
    if ((r = fut_call0(st, AIO_CANCEL, ps[2])) == NULL) {
        goto done;
    }
    Py_DECREF(r);
    *result_off = only_offset(ps, value, sizeof(PyObject *), holds_result);
    *state_off = only_offset(ps, value, sizeof(int), holds_state);
    rc = 0;
done:
    for (int i = 0; i < 3; i++) {
        Py_XDECREF(ps[i]);
    }
    Py_DECREF(value);
    return rc;
}

/* Learn the two offsets (see above); 0, or -1 with an exception set. */
static int
learn_aio_layout(tcg_state *st)
{
    st->run.aio_state_offset = st->run.aio_result_offset = -1;
    /* Only _asyncio's own Future: asyncio.Future replaced before our
     * import (a subclass with its own result(), the Python Future) shares
     * the struct, or not, but not the methods the read stands for. */
    PyObject *c_future = tcg_import_attr("_asyncio", "Future");
    if (c_future == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ImportError) &&
            !PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return -1;
        }
        PyErr_Clear();
        return 0;
    }
    int ours = c_future == st->run.AioFutureType;
    Py_DECREF(c_future);
    if (!ours) {
        return 0;
    }
    PyObject *ns = tcg_import_attr("types", "SimpleNamespace");
    if (ns == NULL) {
        return -1;
    }
    PyObject *kw = Py_BuildValue("{sO}", "get_debug", (PyObject *)&PyBool_Type);
    PyObject *loop = kw == NULL ? NULL
                   : PyObject_Call(ns, st->c.empty_tuple, kw);
    Py_DECREF(ns);
    Py_XDECREF(kw);
    kw = loop == NULL ? NULL : Py_BuildValue("{sO}", "loop", loop);
    Py_XDECREF(loop);
    if (kw == NULL) {
        return -1;
    }
    Py_ssize_t state[2] = {-1, -1}, result[2] = {-1, -1};
    int rc = 0;
    for (int round = 0; round < 2 && rc == 0; round++) {
        rc = probe_aio_layout(st, kw, &state[round], &result[round]);
    }
    Py_DECREF(kw);
    if (rc == 0 && state[0] >= 0 && result[0] >= 0 &&
        state[0] == state[1] && result[0] == result[1]) {
        st->run.aio_state_offset = state[0];
        st->run.aio_result_offset = result[0];
    }
    return rc;
}

/* obj.name() with no arguments. */
static inline PyObject *
call_method0(PyObject *obj, PyObject *name)
{
    return PyObject_VectorcallMethod(name, &obj,
                                     1 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static inline PyObject *
call_method1(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *args[2] = {obj, arg};
    return PyObject_VectorcallMethod(name, args,
                                     2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* The value a StopIteration or gen.Return carries, as Tornado reads it:
 * `.value`, else `.args[0]`, else None.  New reference. */
static PyObject *
value_from_stop(tcg_state *st, PyObject *exc)
{
    if (PyErr_GivenExceptionMatches(exc, PyExc_StopIteration)) {
        /* NULL for one made with StopIteration.__new__ alone. */
        PyObject *v = ((PyStopIterationObject *)exc)->value;
        return Py_NewRef(v ? v : Py_None);
    }
    PyObject *v = PyObject_GetAttr(exc, st->run.str_value);
    if (v != NULL) {
        return v;
    }
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return NULL;
    }
    PyErr_Clear();
    PyObject *args = ((PyBaseExceptionObject *)exc)->args;
    if (args != NULL && PyTuple_Check(args) && PyTuple_GET_SIZE(args) > 0) {
        return Py_NewRef(PyTuple_GET_ITEM(args, 0));
    }
    Py_RETURN_NONE;
}

/* Send `value` or throw `exc` (exactly one is non-NULL) into `gen`.
 * Returns like PyIter_Send: on PYGEN_RETURN *out is the return value, on
 * PYGEN_ERROR an exception is set. */
static PySendResult
gen_resume(tcg_state *st, PyObject *gen, PyObject *value, PyObject *exc,
           PyObject **out)
{
    if (exc == NULL) {
        /* A generator's own am_send, which PyIter_Send would look up. */
        return PyGen_CheckExact(gen)
                   ? Py_TYPE(gen)->tp_as_async->am_send(gen, value, out)
                   : PyIter_Send(gen, value, out);
    }
    PyObject *res = call_method1(gen, st->run.str_throw, exc);
    if (res != NULL) {
        *out = res;
        return PYGEN_NEXT;
    }
    *out = NULL;
    if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
        PyObject *stop = fetch_exc();
        *out = value_from_stop(st, stop);
        Py_DECREF(stop);
        return *out != NULL ? PYGEN_RETURN : PYGEN_ERROR;
    }
    return PYGEN_ERROR;
}

/* The running loop, else the current one (new reference, or NULL with an
 * exception set). */
static PyObject *
current_loop(tcg_state *st)
{
    PyObject *loop = tcg_running_loop(st);
    if (loop != NULL) {
        return Py_NewRef(loop);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    return tcg_get_event_loop(st);
}

/* ---- result futures ----------------------------------------------------- *
 * Our exact Future is handled through its struct; anything else (an
 * install()ed factory's asyncio.Future) through its methods. */

/* factory() as Tornado's Future() would make it: asyncio.Future() takes
 * the running loop, so when that is one of ours running in this thread
 * (the module's one-entry cache) it is passed as loop=, which spares
 * asyncio's own lookup (and its getpid() on 3.11); otherwise factory()
 * asks asyncio itself, with its rules and warnings. */
static PyObject *
factory_future_new(tcg_state *st, PyObject *factory)
{
    PyObject *loop = st->c.running_loop;
    if (loop != NULL && st->c.running_thread == PyThread_get_thread_ident()) {
        return PyObject_Vectorcall(factory, &loop, 0, st->c.kwnames_loop);
    }
    return PyObject_CallNoArgs(factory);
}

static PyObject *
result_future_new(tcg_state *st)
{
    if (st->c.future_factory != NULL) {
        return factory_future_new(st, st->c.future_factory);
    }
    return (PyObject *)tcg_future_new(st, NULL);
}

/* 0 if the future was cancelled (the outcome is dropped, as Tornado's
 * future_set_*_unless_cancelled drop it), else 1.  A future someone else
 * finished is not cancelled: setting it raises InvalidStateError, which
 * escapes the Runner as it escapes Tornado's. */
static int
result_future_open(tcg_state *st, PyObject *fut)
{
    if (tcg_Future_CheckExact(st, fut)) {
        return ((tcg_FutureObject *)fut)->status != TCG_FUT_CANCELLED;
    }
    if (aio_readable(st, fut)) {
        /* cancelled() is this state (and a live loop, which a future
         * that reached CANCELLED has). */
        return int_at(fut, st->run.aio_state_offset) != AIO_CANCELLED_STATE;
    }
    PyObject *c = fut_call0(st, AIO_CANCELLED, fut);
    if (c == NULL) {
        return -1;
    }
    int r = PyObject_IsTrue(c);
    Py_DECREF(c);
    return r < 0 ? -1 : !r;
}

/* Make `runner` the future's keep-alive done callback. */
static int
result_future_hold(tcg_state *st, PyObject *fut, PyObject *runner,
                   PyObject *ctx)
{
    if (tcg_Future_CheckExact(st, fut)) {
        return tcg_future_add_done_callback(st, (tcg_FutureObject *)fut,
                                            runner, ctx);
    }
    PyObject *r = fut_call1(st, AIO_ADD_DONE_CALLBACK, fut, runner);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* Drop the keep-alive again.  The caller holds its own reference to the
 * runner: this may release the future's. */
static int
result_future_release(tcg_state *st, PyObject *fut, PyObject *runner)
{
    if (tcg_Future_CheckExact(st, fut)) {
        tcg_future_forget_callback((tcg_FutureObject *)fut, runner);
        return 0;
    }
    PyObject *r = fut_call1(st, AIO_REMOVE_DONE_CALLBACK, fut, runner);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static int
result_future_set_result(tcg_state *st, PyObject *fut, PyObject *value)
{
    int open = result_future_open(st, fut);
    if (open <= 0) {
        return open;   /* cancelled: the outcome is dropped */
    }
    if (tcg_Future_CheckExact(st, fut)) {
        return tcg_future_set_result(st, (tcg_FutureObject *)fut, value);
    }
    PyObject *r = fut_call1(st, AIO_SET_RESULT, fut, value);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* Sets `exc` (borrowed) on the future, or logs it if the future was
 * cancelled ("Exception after Future was cancelled", as Tornado). */
static int
result_future_set_exception(tcg_state *st, PyObject *fut, PyObject *exc)
{
    int open = result_future_open(st, fut);
    if (open < 0) {
        return -1;
    }
    if (!open) {
        restore_exc(Py_NewRef(exc));
        tcg_log_current_exception(st, st->c.app_log,
                                  "Exception after Future was cancelled",
                                  NULL);
        return 0;
    }
    if (tcg_Future_CheckExact(st, fut)) {
        return tcg_future_set_exception(st, (tcg_FutureObject *)fut, exc);
    }
    PyObject *r = fut_call1(st, AIO_SET_EXCEPTION, fut, exc);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static int
result_future_cancel(tcg_state *st, PyObject *fut)
{
    if (tcg_Future_CheckExact(st, fut)) {
        return tcg_future_cancel(st, (tcg_FutureObject *)fut, NULL) < 0 ? -1
                                                                        : 0;
    }
    PyObject *r = fut_call0(st, AIO_CANCEL, fut);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* ---- yielded futures ---------------------------------------------------- */

/* 1 if the future (or moment) is done, 0 if not, -1 on error. */
static int
future_is_done(tcg_state *st, PyObject *f)
{
    if (tcg_Future_CheckExact(st, f)) {
        return ((tcg_FutureObject *)f)->status != TCG_FUT_PENDING;
    }
    if (is_moment(st, f) || is_null_future(st, f) ||
        aio_finished_result(st, f) != NULL) {
        return 1;
    }
    PyObject *d = fut_call0(st, AIO_DONE, f);
    if (d == NULL) {
        return -1;
    }
    int r = PyObject_IsTrue(d);
    Py_DECREF(d);
    return r;
}

/* The result of a done future: a new reference, or NULL with its
 * exception (or CancelledError) set. */
static PyObject *
future_get_result(tcg_state *st, PyObject *f)
{
    if (tcg_Future_CheckExact(st, f)) {
        return tcg_future_result(st, (tcg_FutureObject *)f);
    }
    if (is_moment(st, f) || is_null_future(st, f)) {
        Py_RETURN_NONE;
    }
    PyObject *r = aio_finished_result(st, f);
    if (r != NULL) {
        return Py_NewRef(r);
    }
    return fut_call0(st, AIO_RESULT, f);
}

/* A pending concurrent.futures.Future resumes us on the loop thread: wrap
 * it in an asyncio future of the running loop.  A done one is used as it
 * is, as Tornado does (it resumes at once, and counts as done in multi).
 * Other objects pass through.  New reference. */
static PyObject *
wrap_if_concurrent(tcg_state *st, PyObject *f)
{
    if (!tcg_Future_CheckExact(st, f) && !is_exact_aio_future(st, f) &&
        !is_moment(st, f) && !is_null_future(st, f)) {
        int r = PyObject_IsInstance(f, st->run.ConcurrentFutureType);
        if (r > 0) {
            r = future_is_done(st, f);
            if (r == 0) {
                return PyObject_CallOneArg(st->run.wrap_concurrent, f);
            }
        }
        if (r < 0) {
            return NULL;
        }
    }
    return Py_NewRef(f);
}

/* What gen.convert_yielded makes of `y`, for anything that is not on a
 * fast path, made ready to wait on.  New reference or NULL. */
static PyObject *
convert_slow(tcg_state *st, PyObject *y)
{
    /* A native coroutine: what convert_yielded's default does with it,
     * without the dispatch (gen._wrap_awaitable: a Task made in the
     * current context, which is the coroutine's, and held by the IOLoop
     * until done, as Tornado holds it). */
    PyObject *conv = PyObject_CallOneArg(PyCoro_CheckExact(y)
                                             ? st->run.wrap_awaitable
                                             : st->run.convert_yielded, y);
    if (conv == NULL) {
        return NULL;
    }
    PyObject *res = wrap_if_concurrent(st, conv);
    Py_DECREF(conv);
    return res;
}

/* ---- multi -------------------------------------------------------------- */

enum { MULTI_DONE = 0, MULTI_FAILED = 1, MULTI_PENDING = 2 };

static int multi_collect(tcg_state *st, PyObject *children, PyObject *quiet,
                         PyObject **out);

/* A new result future already holding the outcome of a multi_collect()
 * that did not pend: `rc` MULTI_DONE with `value`, or MULTI_FAILED with
 * the exception set. */
static PyObject *
done_future_from(tcg_state *st, int rc, PyObject *value)
{
    PyObject *exc = rc == MULTI_DONE ? NULL : fetch_exc();
    PyObject *fut = result_future_new(st);
    if (fut == NULL) {
        Py_XDECREF(exc);
        return NULL;
    }
    int r = exc == NULL ? result_future_set_result(st, fut, value)
                        : result_future_set_exception(st, fut, exc);
    Py_XDECREF(exc);
    if (r < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

/* One child of a multi, converted to something with a result: a future
 * or moment.  New reference or NULL. */
static PyObject *
multi_convert_child(tcg_state *st, PyObject *c)
{
    if (tcg_Future_CheckExact(st, c) || is_exact_aio_future(st, c) ||
        is_moment(st, c) || is_null_future(st, c)) {
        return Py_NewRef(c);
    }
    if (c == Py_None) {
        return Py_NewRef(st->run.moment);   /* done, no loop trip */
    }
    if (PyList_CheckExact(c) || PyDict_CheckExact(c)) {
        /* Nested: its own multi with no quiet exceptions, as Tornado.
         * (Subclasses go through convert_yielded's registry.) */
        PyObject *out = NULL;
        int rc = multi_collect(st, c, st->c.empty_tuple, &out);
        if (rc < 0) {
            return NULL;
        }
        if (rc == MULTI_PENDING) {
            return out;
        }
        PyObject *fut = done_future_from(st, rc, out);
        Py_XDECREF(out);
        return fut;
    }
    return convert_slow(st, c);
}

/* The value of a multi: the results list, or a dict of keys to results
 * (zip's rule if the lengths differ).  New reference. */
static PyObject *
multi_value(PyObject *results, PyObject *keys)
{
    if (keys == NULL) {
        return Py_NewRef(results);
    }
    Py_ssize_t n = Py_MIN(PyList_GET_SIZE(keys), PyList_GET_SIZE(results));
    PyObject *dict = tcg_dict_presized(n);
    if (dict == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyDict_SetItem(dict, PyList_GET_ITEM(keys, i),
                           PyList_GET_ITEM(results, i)) < 0) {
            Py_DECREF(dict);
            return NULL;
        }
    }
    return dict;
}

/* All children are done: read their results in input order, as Tornado's
 * multi_future does.  The first failure (an Exception or a CancelledError)
 * is the outcome: set on `target` at once if there is one, else returned.
 * A failure after that, or once `target` is done (cancelled), is logged
 * ("Multiple exceptions in yield list") unless it is a CancelledError or a
 * `quiet` one.
 *
 * Without a target: MULTI_DONE with the value in *out, or MULTI_FAILED
 * with the exception set.  With one: MULTI_DONE once it is resolved (left
 * alone if it was cancelled).  -1 if something escaped: a BaseException
 * from a result(), an error from isinstance(exc, quiet) (a bad
 * quiet_exceptions: the target already has its outcome then, as in
 * Tornado), or a failure to resolve the target. */
static int
multi_results(tcg_state *st, PyObject *futs, PyObject *keys, PyObject *quiet,
              PyObject *target, PyObject **out)
{
    Py_ssize_t n = PyList_GET_SIZE(futs);
    /* The outcome, when there is no target, with its traceback as it was
     * then: a later child failing with the same instance rewrites it
     * (Tornado has set it on the result by then). */
    PyObject *first_exc = NULL, *first_tb = NULL;
    PyObject *results = PyList_New(n);
    if (results == NULL) {
        return -1;
    }
    /* Hidden from the collector until full: a result() call runs Python
     * code, which must not reach (gc.get_objects()) a list holding NULLs. */
    PyObject_GC_UnTrack(results);
    for (Py_ssize_t i = 0; i < n; i++) {
        /* Strong: a result() call may run code that mutates the list. */
        PyObject *f = Py_NewRef(PyList_GET_ITEM(futs, i));
        PyObject *r = future_get_result(st, f);
        Py_DECREF(f);
        if (r != NULL) {
            PyList_SET_ITEM(results, i, r);
            continue;
        }
        PyList_SET_ITEM(results, i, Py_NewRef(Py_None));
        int cancelled = PyErr_ExceptionMatches(st->c.CancelledError);
        if (!cancelled && !PyErr_ExceptionMatches(PyExc_Exception)) {
            goto error;
        }
        PyObject *exc = fetch_exc();
        int taken = target ? future_is_done(st, target) : first_exc != NULL;
        if (taken == 0) {
            if (target == NULL) {
                first_exc = exc;
                first_tb = PyException_GetTraceback(exc);
                continue;
            }
            int rc = result_future_set_exception(st, target, exc);
            Py_DECREF(exc);
            if (rc < 0) {
                goto error;
            }
            continue;
        }
        if (taken < 0) {
            Py_DECREF(exc);
            goto error;
        }
        int quiet_one = cancelled ? 1 : PyObject_IsInstance(exc, quiet);
        if (quiet_one < 0) {
            /* A bad quiet_exceptions: the TypeError, raised while `exc`
             * was being handled, as in Tornado. */
            PyObject *err = fetch_exc();
            PyException_SetContext(err, exc);   /* steals exc */
            restore_exc(err);
            goto error;
        }
        if (quiet_one) {
            Py_DECREF(exc);
            continue;
        }
        restore_exc(exc);
        tcg_log_current_exception(st, st->c.app_log,
                                  "Multiple exceptions in yield list", NULL);
    }
    PyObject_GC_Track(results);
    if (first_exc != NULL) {
        Py_DECREF(results);
        PyException_SetTraceback(first_exc, first_tb ? first_tb : Py_None);
        Py_XDECREF(first_tb);
        restore_exc(first_exc);
        return MULTI_FAILED;
    }
    int open = 1;
    if (target != NULL) {
        int done = future_is_done(st, target);
        open = done < 0 ? -1 : !done;
    }
    PyObject *value = NULL;
    if (open < 0 || (open && (value = multi_value(results, keys)) == NULL)) {
        goto error;
    }
    Py_DECREF(results);
    if (target == NULL) {
        *out = value;
        return MULTI_DONE;
    }
    int rc = open ? result_future_set_result(st, target, value) : 0;
    Py_XDECREF(value);
    return rc < 0 ? -1 : MULTI_DONE;

error:
    Py_XDECREF(first_exc);
    Py_XDECREF(first_tb);
    Py_DECREF(results);
    return -1;
}

/* MultiWaiter: the done callback of every distinct pending child of a
 * multi; resolves `future` once the last one finishes. */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *children;     /* list of converted children */
    PyObject *keys;         /* list of dict keys, or NULL for a list */
    PyObject *quiet;        /* quiet_exceptions */
    PyObject *unfinished;   /* set of the children not done yet */
    PyObject *future;       /* the result future; NULL once resolved */
} MultiWaiterObject;

static PyObject *
multi_waiter_call(PyObject *self, PyObject *const *args, size_t nargsf,
                  PyObject *kwnames)
{
    MultiWaiterObject *w = (MultiWaiterObject *)self;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "MultiWaiter takes exactly one argument");
        return NULL;
    }
    if (w->future == NULL || w->unfinished == NULL) {
        Py_RETURN_NONE;
    }
    /* Discarding may run a child's __hash__/__eq__, which could re-enter
     * us: hold the set, and re-check the waiter afterwards. */
    PyObject *unfinished = Py_NewRef(w->unfinished);
    int discarded = PySet_Discard(unfinished, args[0]);
    Py_ssize_t left = PySet_GET_SIZE(unfinished);
    Py_DECREF(unfinished);
    if (discarded < 0) {
        return NULL;
    }
    if (left != 0 || w->future == NULL || w->unfinished == NULL) {
        Py_RETURN_NONE;
    }
    tcg_state *st = tcg_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    /* Take everything out first: nothing below can run us twice. */
    PyObject *fut = w->future, *children = w->children, *keys = w->keys;
    PyObject *quiet = w->quiet;
    w->future = w->children = w->keys = w->quiet = NULL;
    Py_CLEAR(w->unfinished);

    int r = multi_results(st, children, keys, quiet, fut, NULL);
    Py_DECREF(fut);
    Py_DECREF(children);
    Py_XDECREF(keys);
    Py_DECREF(quiet);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
multi_waiter_traverse(MultiWaiterObject *w, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(w));
    Py_VISIT(w->children);
    Py_VISIT(w->keys);
    Py_VISIT(w->quiet);
    Py_VISIT(w->unfinished);
    Py_VISIT(w->future);
    return 0;
}

static int
multi_waiter_clear(MultiWaiterObject *w)
{
    Py_CLEAR(w->children);
    Py_CLEAR(w->keys);
    Py_CLEAR(w->quiet);
    Py_CLEAR(w->unfinished);
    Py_CLEAR(w->future);
    return 0;
}

static void
multi_waiter_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_TRASHCAN_BEGIN(self, multi_waiter_dealloc)   /* long chains: see future_dealloc */
    multi_waiter_clear((MultiWaiterObject *)self);
    tp->tp_free(self);
    Py_DECREF(tp);
    Py_TRASHCAN_END
}

static PyMemberDef MultiWaiter_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET,
     offsetof(MultiWaiterObject, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot MultiWaiter_slots[] = {
    {Py_tp_dealloc, multi_waiter_dealloc},
    {Py_tp_traverse, multi_waiter_traverse},
    {Py_tp_clear, multi_waiter_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_members, MultiWaiter_members},
    {0, NULL},
};

static PyType_Spec MultiWaiter_spec = {
    .name = "tornado_cgen._core.MultiWaiter",
    .basicsize = sizeof(MultiWaiterObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = MultiWaiter_slots,
};

/* Some children pend: a MultiWaiter on each distinct pending one, and a
 * new Future for the result (new reference). */
static PyObject *
multi_wait(tcg_state *st, PyObject *futs, PyObject *keys, PyObject *quiet)
{
    PyTypeObject *tp = st->run.MultiWaiterType;
    MultiWaiterObject *w = PyObject_GC_New(MultiWaiterObject, tp);
    if (w == NULL) {
        return NULL;
    }
    w->vectorcall = multi_waiter_call;
    w->children = Py_NewRef(futs);
    w->keys = Py_XNewRef(keys);
    w->quiet = Py_NewRef(quiet);
    w->unfinished = PySet_New(NULL);
    w->future = w->unfinished ? result_future_new(st) : NULL;
    PyObject_GC_Track(w);
    if (w->unfinished == NULL || w->future == NULL) {
        goto fail;
    }
    PyObject *fut = Py_NewRef(w->future);
    /* Collect the distinct pending children first, then register: our
     * futures and asyncio's schedule the waiter, but a duck-typed child may
     * call it from its add_done_callback, so the set is complete before
     * any registration. */
    Py_ssize_t n = PyList_GET_SIZE(futs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyList_GET_ITEM(futs, i);
        int done = future_is_done(st, f);
        if (done < 0 || (!done && PySet_Add(w->unfinished, f) < 0)) {
            Py_DECREF(fut);
            goto fail;
        }
    }
    if (PySet_GET_SIZE(w->unfinished) == 0) {
        /* A duck-typed child finished while we looked: resolve now. */
        PyObject *none = Py_None;
        PyObject *res = multi_waiter_call((PyObject *)w, &none, 1, NULL);
        Py_XDECREF(res);
        Py_DECREF(w);
        if (res == NULL) {
            Py_DECREF(fut);
            return NULL;
        }
        return fut;
    }
    PyObject *pending = PySequence_List(w->unfinished);
    if (pending == NULL) {
        Py_DECREF(fut);
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(pending); i++) {
        PyObject *f = PyList_GET_ITEM(pending, i);
        int r;
        if (tcg_Future_CheckExact(st, f)) {
            r = tcg_future_add_done_callback(st, (tcg_FutureObject *)f,
                                             (PyObject *)w, NULL);
        }
        else {
            PyObject *res = fut_call1(st, AIO_ADD_DONE_CALLBACK, f,
                                      (PyObject *)w);
            Py_XDECREF(res);
            r = res == NULL ? -1 : 0;
        }
        if (r < 0) {
            Py_DECREF(pending);
            Py_DECREF(fut);
            goto fail;
        }
    }
    Py_DECREF(pending);
    Py_DECREF(w);
    return fut;

fail:
    Py_DECREF(w);
    return NULL;
}

/* The result (borrowed) of a child the fast path below takes: a finished
 * Future of ours with a result, or such an asyncio.Future (install()),
 * read from its struct.  NULL for any other child. */
static inline PyObject *
multi_child_result(tcg_state *st, PyObject *c)
{
    if (tcg_Future_CheckExact(st, c)) {
        tcg_FutureObject *f = (tcg_FutureObject *)c;
        return f->status == TCG_FUT_FINISHED && f->exception == NULL
                   ? f->result : NULL;
    }
    return aio_finished_result(st, c);
}

/* The common case of multi_collect() in one pass: an exact list or dict
 * whose children are all finished Futures of ours with a result.  Nothing
 * needs converting and no Python code runs, so the outcome is the results
 * (a dict, keyed by str or int, keeps the children's keys in their order:
 * Tornado's dict(zip(keys, results))).  Returns that value, or NULL: with
 * an exception set on failure, without one when the children are not all
 * like that, and then nothing has changed (reading a result has no side
 * effect for a future without an exception) and the general path does
 * everything. */
static PyObject *
multi_all_finished(tcg_state *st, PyObject *children)
{
    if (PyList_CheckExact(children)) {
        Py_ssize_t n = PyList_GET_SIZE(children);
        for (Py_ssize_t i = 0; i < n; i++) {
            if (multi_child_result(st, PyList_GET_ITEM(children, i)) == NULL) {
                return NULL;
            }
        }
        PyObject *results = PyList_New(n);
        if (results == NULL) {
            return NULL;
        }
        /* Making the list may have collected garbage, whose finalizers
         * can change `children`: look again, in a loop that allocates
         * nothing. */
        if (PyList_GET_SIZE(children) != n) {
            Py_DECREF(results);
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *r = multi_child_result(st, PyList_GET_ITEM(children, i));
            if (r == NULL) {
                /* Dropping the filled slots frees nothing: their futures
                 * hold the results too. */
                Py_DECREF(results);
                return NULL;
            }
            PyList_SET_ITEM(results, i, Py_NewRef(r));
        }
        return results;
    }
    if (!PyDict_CheckExact(children)) {
        return NULL;
    }
    PyObject *results = tcg_dict_presized(PyDict_GET_SIZE(children));
    if (results == NULL) {
        return NULL;
    }
    /* A str or int key's hash is no Python call, and inserting allocates
     * no object the collector counts, so no code runs in the loop (any
     * collection ran when `results` was made, before it) and PyDict_Next
     * allows the inserts (into another dict). */
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(children, &pos, &k, &v)) {
        PyObject *r = multi_child_result(st, v);
        if (r == NULL || !(PyUnicode_CheckExact(k) || PyLong_CheckExact(k))) {
            Py_DECREF(results);
            return NULL;
        }
        if (PyDict_SetItem(results, k, r) < 0) {
            Py_DECREF(results);
            return NULL;
        }
    }
    return results;
}

/* Convert `children` (a dict, or any sequence) and gather them.  Returns
 * MULTI_DONE with the results in *out, MULTI_FAILED with the first failure
 * set, MULTI_PENDING with a pending Future in *out, or -1 if a child could
 * not be converted (BadYieldError...). */
static int
multi_collect(tcg_state *st, PyObject *children, PyObject *quiet,
              PyObject **out)
{
    PyObject *keys = NULL, *seq;
    *out = multi_all_finished(st, children);
    if (*out != NULL) {
        return MULTI_DONE;
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    /* Lists and dicts nest (and may contain themselves): bounded like
     * Python recursion, as Tornado's RecursionError is. */
    if (Py_EnterRecursiveCall(" in multi()")) {
        return -1;
    }
    if (PyDict_CheckExact(children)) {
        /* One pass for keys and values; PyDict_Next runs no Python code,
         * so the size holds. */
        Py_ssize_t size = PyDict_GET_SIZE(children), pos = 0, i = 0;
        PyObject *k, *v;
        keys = PyList_New(size);
        seq = keys ? PyList_New(size) : NULL;
        while (seq != NULL && PyDict_Next(children, &pos, &k, &v)) {
            PyList_SET_ITEM(keys, i, Py_NewRef(k));
            PyList_SET_ITEM(seq, i, Py_NewRef(v));
            i++;
        }
    }
    else if (PyDict_Check(children)) {
        /* A subclass is read through its own keys() and values(). */
        seq = NULL;
        PyObject *k = call_method0(children, st->run.str_keys);
        keys = k ? PySequence_List(k) : NULL;
        Py_XDECREF(k);
        PyObject *v = keys ? call_method0(children, st->run.str_values) : NULL;
        seq = v ? PySequence_List(v) : NULL;
        Py_XDECREF(v);
    }
    else {
        seq = PySequence_List(children);
    }
    if (seq == NULL) {
        Py_XDECREF(keys);
        Py_LeaveRecursiveCall();
        return -1;
    }
    /* `seq` is our own list: convert in place. */
    int rc = -1, all_done = 1;
    Py_ssize_t n = PyList_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *c = multi_convert_child(st, PyList_GET_ITEM(seq, i));
        if (c == NULL) {
            goto done;
        }
        PyList_SetItem(seq, i, c);   /* steals c, drops the original */
    }
    /* Only now: converting a child runs code that may finish another. */
    for (Py_ssize_t i = 0; i < n && all_done; i++) {
        all_done = future_is_done(st, PyList_GET_ITEM(seq, i));
        if (all_done < 0) {
            goto done;
        }
    }
    if (all_done) {
        rc = multi_results(st, seq, keys, quiet, NULL, out);
    }
    else {
        *out = multi_wait(st, seq, keys, quiet);
        rc = *out ? MULTI_PENDING : -1;
    }
done:
    Py_XDECREF(keys);
    Py_DECREF(seq);
    Py_LeaveRecursiveCall();
    return rc;
}

/* _core.multi(children, quiet_exceptions=()) -> Future */
static PyObject *
gen_multi(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
          PyObject *kwnames)
{
    static const char *const names[] = {"children", "quiet_exceptions"};
    tcg_state *st = tcg_state_if_live(module);
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    if (gen_not_ready(st)) {
        return NULL;
    }
    PyObject *argv[2] = {NULL, st->c.empty_tuple};
    if (tcg_parse_args("multi", args, nargs, kwnames, names, 2, 0, 2, 1,
                       argv) < 0) {
        return NULL;
    }
    PyObject *children = argv[0], *quiet = argv[1];
    PyObject *out = NULL;
    int rc = multi_collect(st, children, quiet, &out);
    if (rc < 0) {
        return NULL;
    }
    if (rc == MULTI_PENDING) {
        return out;
    }
    PyObject *fut = done_future_from(st, rc, out);
    Py_XDECREF(out);
    return fut;
}

/* ---- the driving loop --------------------------------------------------- */

/* What drive() needs of a coroutine.  Lives on the C stack during the
 * first, synchronous part of a call and moves into a Runner the first time
 * the coroutine has to wait. */
typedef struct {
    PyObject *gen;      /* the generator; NULL once it finished */
    PyObject *ctx;      /* the contextvars.Context of this call */
    PyObject *result;   /* the result future; NULL once resolved */
    PyObject *loop;     /* the loop moments go to (looked up once), or NULL */
} tcg_core;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    tcg_core core;
    PyObject *waiting;  /* what we wait for: a pending future or moment */
    int running;        /* drive() is on the stack for this runner */
    int woken;          /* `waiting` called us while drive() registered */
} RunnerObject;

/* What a yielded object resolved to. */
typedef enum {
    Y_SEND,   /* send *out (a value) */
    Y_THROW,  /* throw *out (an exception instance) */
    Y_WAIT,   /* wait for *out (a pending future, or moment) */
    Y_ESCAPE, /* leave the generator where it is and propagate the current
               * exception (install(): see conversion_failed) */
} yield_kind;

/* The outcome of a done future as the next thing to send or throw.  Any
 * exception its result() raises is thrown in, CancelledError included. */
static yield_kind
outcome_of(tcg_state *st, PyObject *f, PyObject **out)
{
    PyObject *r = future_get_result(st, f);
    if (r != NULL) {
        *out = r;
        return Y_SEND;
    }
    *out = fetch_exc();
    return Y_THROW;
}

/* Tornado's Runner rules, where they differ from the standalone ones:
 * on while install() is (it hands over Tornado's BadYieldError). */
static inline int
tornado_rules(tcg_state *st)
{
    return st->run.tornado_bad_yield != NULL;
}

/* Converting a yielded object failed (the exception is set).  Standalone,
 * the failure is thrown into the generator, which can catch it.  Under
 * install(), as in Tornado's Runner.handle_yield, only a BadYieldError is;
 * anything else (a registered converter's own error, say) escapes the
 * Runner with the generator left suspended: out of the coroutine call at
 * its first yield, out of the IOLoop callback that resumed it later (see
 * runner_wakeup), and the coroutine never finishes. */
static yield_kind
conversion_failed(tcg_state *st, PyObject **out)
{
    if (tornado_rules(st) &&
        !PyErr_ExceptionMatches(st->run.tornado_bad_yield)) {
        *out = NULL;
        return Y_ESCAPE;
    }
    *out = fetch_exc();
    return Y_THROW;
}

/* A future (or moment) that is not one of ours: done or not. */
static yield_kind
classify_future(tcg_state *st, PyObject *f, PyObject **out)
{
    if (is_moment(st, f)) {
        *out = Py_NewRef(st->run.moment);
        return Y_WAIT;
    }
    int done = future_is_done(st, f);
    if (done < 0) {
        /* Tornado's handle_yield asks done() outside any try. */
        if (tornado_rules(st)) {
            *out = NULL;
            return Y_ESCAPE;
        }
        *out = fetch_exc();
        return Y_THROW;
    }
    if (!done) {
        *out = Py_NewRef(f);
        return Y_WAIT;
    }
    return outcome_of(st, f, out);
}

/* Resolve one yielded object (borrowed).  The fast paths come first and
 * in this order: our Future, asyncio's, moment/None, list/dict; then
 * native coroutines and, last, the convert_yielded registry.  A failure to
 * convert is thrown into the generator (BadYieldError for unknown
 * objects), so the coroutine can catch it. */
static yield_kind
classify(tcg_state *st, PyObject *y, PyObject **out)
{
    if (tcg_Future_CheckExact(st, y)) {
        if (((tcg_FutureObject *)y)->status == TCG_FUT_PENDING) {
            *out = Py_NewRef(y);
            return Y_WAIT;
        }
        return outcome_of(st, y, out);
    }
    if (is_exact_aio_future(st, y)) {
        return classify_future(st, y, out);
    }
    if (y == Py_None || is_moment(st, y)) {
        *out = Py_NewRef(st->run.moment);
        return Y_WAIT;
    }
    if (PyList_CheckExact(y) || PyDict_CheckExact(y)) {
        int rc = multi_collect(st, y, st->c.empty_tuple, out);
        if (rc == MULTI_DONE) {
            return Y_SEND;
        }
        if (rc == MULTI_PENDING) {
            return Y_WAIT;
        }
        if (rc < 0) {
            return conversion_failed(st, out);   /* a child's */
        }
        *out = fetch_exc();
        return Y_THROW;
    }
    if (is_null_future(st, y)) {
        *out = Py_NewRef(Py_None);
        return Y_SEND;
    }
    PyObject *conv = convert_slow(st, y);
    if (conv == NULL) {
        return conversion_failed(st, out);
    }
    yield_kind k = tcg_Future_CheckExact(st, conv)
                       ? classify(st, conv, out)   /* one level at most */
                       : classify_future(st, conv, out);
    Py_DECREF(conv);
    return k;
}

/* The loop moments are scheduled on (borrowed; looked up once). */
static PyObject *
core_loop(tcg_state *st, tcg_core *core)
{
    if (core->loop == NULL) {
        core->loop = current_loop(st);
    }
    return core->loop;
}

/* Wait for `w` (a pending future, or moment): register the runner itself
 * as what wakes it, in the coroutine's context. */
static int
runner_wait(tcg_state *st, RunnerObject *r, PyObject *w)
{
    PyObject *self = (PyObject *)r;
    PyObject *ctx = r->core.ctx;
    int rc;
    TCG_ASSERT(r->waiting == NULL);
    r->waiting = Py_NewRef(w);
    if (w == st->run.moment) {
        PyObject *loop = core_loop(st, &r->core);
        rc = loop ? tcg_call_soon(st, loop, self, w, ctx) : -1;
    }
    else if (tcg_Future_CheckExact(st, w)) {
        rc = tcg_future_add_done_callback(st, (tcg_FutureObject *)w, self,
                                          ctx);
    }
    else {
        PyObject *args[3] = {w, self, ctx};
        PyObject *res = fut_call(st, AIO_ADD_DONE_CALLBACK, args, 2,
                                 takes_context(st, w) ? st->c.kwnames_context
                                                      : NULL);
        Py_XDECREF(res);
        rc = res == NULL ? -1 : 0;
    }
    if (rc < 0) {
        Py_CLEAR(r->waiting);
    }
    return rc;
}

static RunnerObject *runner_new(tcg_state *st, tcg_core *core);

/* install(): what Tornado's Runner.__init__ does first, at a coroutine's
 * first yield, is IOLoop.current().  That gives the asyncio loop an IOLoop
 * (AsyncIOMainLoop) if it has none, kept in IOLoop._ioloop_for_asyncio,
 * which programs see: IOLoop.current(instance=False) finds it, and the
 * loop stays alive (an unclosed one is never collected with a
 * ResourceWarning).  The C Runner has no use for the IOLoop but keeps that
 * effect.  A running loop that has an IOLoop costs a dict lookup;
 * otherwise Tornado's IOLoop.current() itself runs. */
static int
tornado_ioloop_current(tcg_state *st)
{
    if (st->run.tornado_ioloop == NULL) {
        return 0;   /* uninstall()ed since drive() began */
    }
    PyObject *loop = tcg_running_loop(st);   /* borrowed */
    if (loop != NULL) {
        PyObject *map = Py_NewRef(st->run.tornado_ioloop_map);
        int found = PyDict_GetItemWithError(map, loop) != NULL;
        Py_DECREF(map);
        if (found) {
            return 0;
        }
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    PyObject *io = PyObject_CallMethod(st->run.tornado_ioloop, "current",
                                       NULL);
    Py_XDECREF(io);
    return io != NULL ? 0 : -1;
}

/* The coroutine is over: forget the generator and take the result future
 * out of the core (returned, a new reference), dropping the runner's
 * keep-alive on it. */
static PyObject *
core_take_result(tcg_state *st, tcg_core *core, RunnerObject *runner)
{
    PyObject *fut = core->result;
    core->result = NULL;
    Py_CLEAR(core->gen);
    if (runner != NULL && fut != NULL &&
        result_future_release(st, fut, (PyObject *)runner) < 0) {
        /* Only an install()ed future's remove_done_callback can fail; the
         * outcome matters more than the keep-alive. */
        PyErr_WriteUnraisable(fut);
    }
    return fut;
}

/* The generator (or the plain function) returned `value` (stolen). */
static int
core_finish(tcg_state *st, tcg_core *core, RunnerObject *runner,
            PyObject *value)
{
    PyObject *fut = core_take_result(st, core, runner);
    int r = result_future_set_result(st, fut, value);
    Py_DECREF(value);
    Py_DECREF(fut);
    return r;
}

/* The generator raised (the exception is set).  gen.Return and
 * StopIteration give a result, CancelledError cancels the result future,
 * any other Exception goes on it; a BaseException propagates. */
static int
core_fail(tcg_state *st, tcg_core *core, RunnerObject *runner)
{
    PyObject *exc = fetch_exc();
    if (PyErr_GivenExceptionMatches(exc, st->run.Return) ||
        PyErr_GivenExceptionMatches(exc, PyExc_StopIteration)) {
        PyObject *value = value_from_stop(st, exc);
        Py_DECREF(exc);
        if (value != NULL) {
            return core_finish(st, core, runner, value);
        }
        exc = fetch_exc();   /* reading the value failed: fail with that */
    }
    PyObject *fut = core_take_result(st, core, runner);
    int r;
    if (PyErr_GivenExceptionMatches(exc, st->c.CancelledError)) {
        r = result_future_cancel(st, fut);
        Py_DECREF(exc);
    }
    else if (PyErr_GivenExceptionMatches(exc, PyExc_Exception)) {
        r = result_future_set_exception(st, fut, exc);
        Py_DECREF(exc);
    }
    else {
        /* KeyboardInterrupt, SystemExit...: to the caller (or the loop);
         * the result future never resolves, as in Tornado. */
        restore_exc(exc);
        r = -1;
    }
    Py_DECREF(fut);
    return r;
}

/* Drive the generator of `core` until it finishes or must wait, starting
 * from exactly one of (all stolen): `value` to send, `exc` to throw, or
 * `yielded`, what the generator has just yielded (a Runner built from
 * Python starts there).  `*runner_p` is the core's Runner, or NULL while
 * the core is on the stack: it is then created, and the core moved into
 * it, the first time the generator has to wait.  This is the one place
 * that waits: a wakeup that arrives while it registers is taken here.
 * Returns 0, or -1 with an exception to propagate (a BaseException from
 * the generator, or a failure of our own). */
static int
drive(tcg_state *st, tcg_core *core, RunnerObject **runner_p,
      PyObject *value, PyObject *exc, PyObject *yielded)
{
    TCG_ASSERT((value != NULL) + (exc != NULL) + (yielded != NULL) == 1);
    /* install(), a call's first resume: where Tornado makes its Runner. */
    int first = *runner_p == NULL && st->run.tornado_ioloop != NULL;
    if (yielded != NULL) {
        goto resolve;   /* the loop's second half: no test on the hot path */
    }
    for (;;) {
        /* Strong: the generator runs arbitrary code. */
        PyObject *gen = Py_NewRef(core->gen);
        st->stats.runner_steps++;
        PySendResult sr = gen_resume(st, gen, value, exc, &yielded);
        Py_DECREF(gen);
        Py_XDECREF(value);
        Py_XDECREF(exc);
        value = exc = NULL;
        if (sr == PYGEN_RETURN) {
            return core_finish(st, core, *runner_p, yielded);
        }
        if (sr == PYGEN_ERROR) {
            return core_fail(st, core, *runner_p);
        }
        if (first) {
            first = 0;
            if (tornado_ioloop_current(st) < 0) {
                /* As from Tornado's Runner(): to the caller, with the
                 * generator left where it is. */
                Py_DECREF(yielded);
                return -1;
            }
        }
        /* The hottest case inline: a finished Future of ours. */
        if (tcg_Future_CheckExact(st, yielded)) {
            tcg_FutureObject *f = (tcg_FutureObject *)yielded;
            if (f->status == TCG_FUT_FINISHED && f->exception == NULL) {
                value = Py_NewRef(f->result);
                Py_DECREF(yielded);
                continue;
            }
        }
        /* And a done asyncio Future or Task (every future, under
         * install()): its own done() and result(), as classify() would,
         * without the way through it. */
        else if (is_exact_aio_future(st, yielded)) {
            PyObject *r = aio_finished_result(st, yielded);
            if (r != NULL) {             /* read from its struct */
                value = Py_NewRef(r);
                Py_DECREF(yielded);
                continue;
            }
            int done = future_is_done(st, yielded);
            if (done < 0 && tornado_rules(st)) {
                Py_DECREF(yielded);
                return -1;               /* escapes, as classify() says */
            }
            if (done != 0) {
                value = done > 0 ? future_get_result(st, yielded) : NULL;
                Py_DECREF(yielded);
                if (value == NULL) {
                    exc = fetch_exc();   /* thrown in, as classify() does */
                }
                continue;
            }
        }
    resolve:;
        PyObject *out;
        yield_kind k = classify(st, yielded, &out);
        Py_DECREF(yielded);
        if (k == Y_SEND) {
            value = out;
            continue;
        }
        if (k == Y_THROW) {
            exc = out;
            continue;
        }
        if (k == Y_ESCAPE) {
            return -1;
        }
        /* Y_WAIT */
        if (*runner_p == NULL) {
            RunnerObject *r = runner_new(st, core);
            if (r == NULL) {
                Py_DECREF(out);
                return -1;
            }
            *runner_p = r;
            core = &r->core;
        }
        RunnerObject *r = *runner_p;
        TCG_ASSERT(r->running && r->waiting == NULL);
        r->woken = 0;
        int rc = runner_wait(st, r, out);
        int is_moment_wait = out == st->run.moment;
        Py_DECREF(out);
        if (rc < 0 && tornado_rules(st)) {
            /* install(): Tornado's Runner waits for a moment through
             * IOLoop.add_callback, which swallows these ("Event loop is
             * closed"): the coroutine never resumes.  Anything else that
             * fails to register (a future's own add_done_callback, in
             * IOLoop.add_future) escapes its handle_yield, as a conversion
             * failure does (see conversion_failed). */
            if (is_moment_wait &&
                (PyErr_ExceptionMatches(PyExc_RuntimeError) ||
                 PyErr_ExceptionMatches(PyExc_AttributeError))) {
                PyErr_Clear();
                return 0;
            }
            return -1;
        }
        if (rc < 0) {
            exc = fetch_exc();   /* e.g. the loop is closed: throw it in */
            continue;
        }
        if (!r->woken) {
            return 0;            /* suspended until the wakeup */
        }
        /* What we wait for called us back while we registered (a
         * duck-typed future finishing on another thread, or in its own
         * add_done_callback): its call was not lost, go on now. */
        r->woken = 0;
        PyObject *w = r->waiting;
        r->waiting = NULL;
        k = outcome_of(st, w, &out);
        Py_DECREF(w);
        if (k == Y_SEND) {
            value = out;
        }
        else {
            exc = out;
        }
    }
}

/* ---- Runner ------------------------------------------------------------- */

static PyObject *runner_wakeup(PyObject *self, PyObject *const *args,
                               size_t nargsf, PyObject *kwnames);

/* Move a stack core into a new Runner, which the result future then holds.
 * The core's fields are NULL afterwards; on failure they are untouched. */
static RunnerObject *
runner_new(tcg_state *st, tcg_core *core)
{
    if (TCG_UNLIKELY(st->cleared)) {
        tcg_state_gone();
        return NULL;
    }
    RunnerObject *r = PyObject_GC_New(RunnerObject, st->run.RunnerType);
    if (r == NULL) {
        return NULL;
    }
    r->vectorcall = runner_wakeup;
    r->core = *core;
    memset(core, 0, sizeof(*core));
    r->waiting = NULL;
    r->running = 1;   /* drive() is on the stack */
    r->woken = 0;
    PyObject_GC_Track(r);
    if (result_future_hold(st, r->core.result, (PyObject *)r, r->core.ctx) < 0) {
        /* Hand the core back: on failure the caller still owns it. */
        *core = r->core;
        memset(&r->core, 0, sizeof(r->core));
        Py_DECREF(r);
        return NULL;
    }
    return r;
}

/* runner(fut): what the awaited future (or the loop, for a moment) calls
 * when it is done.  Calls with anything else are stale and ignored. */
static PyObject *
runner_wakeup(PyObject *self, PyObject *const *args, size_t nargsf,
              PyObject *kwnames)
{
    RunnerObject *r = (RunnerObject *)self;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "Runner takes exactly one argument");
        return NULL;
    }
    TCG_ASSERT(!r->woken || (r->running && r->waiting != NULL));
    if (r->waiting == NULL || args[0] != r->waiting) {
        Py_RETURN_NONE;   /* stale */
    }
    if (r->running) {
        r->woken = 1;     /* drive() is registering us: it goes on itself */
        Py_RETURN_NONE;
    }
    tcg_state *st = tcg_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    TCG_ASSERT(!r->woken && r->core.gen != NULL);
    Py_INCREF(self);   /* finishing drops the result future's reference */
    PyObject *w = r->waiting;   /* owned from here */
    r->waiting = NULL;
    r->running = 1;

    /* Our loop and asyncio's run us in the coroutine's context already;
     * callbacks registered without one (duck-typed futures) do not. */
    PyObject *ctx = Py_NewRef(r->core.ctx);
    int entered = 0, rc = 0;
    if (!tcg_context_is_current(ctx)) {
        if (PyContext_Enter(ctx) < 0) {
            rc = -1;
        }
        else {
            entered = 1;
        }
    }
    if (rc == 0) {
        PyObject *out;
        yield_kind k = outcome_of(st, w, &out);
        /* Released before drive(): while `running` is set, a wakeup is
         * only taken while drive() registers, so nothing that could run
         * Python code (a destructor) may come between drive() returning
         * and `running` being cleared. */
        Py_CLEAR(w);
        RunnerObject *rp = r;
        rc = drive(st, &r->core, &rp, k == Y_SEND ? out : NULL,
                   k == Y_THROW ? out : NULL, NULL);
    }
    r->running = 0;
    Py_XDECREF(w);
    if (entered && PyContext_Exit(ctx) < 0) {
        rc = -1;
    }
    Py_DECREF(ctx);
    if (rc < 0 && tornado_rules(st)) {
        /* install(): Tornado resumes its Runner from an IOLoop callback,
         * whose _run_callback drops a CancelledError (a converter's, say:
         * see conversion_failed) without a word and logs an Exception; any
         * other BaseException goes on to the loop. */
        if (PyErr_ExceptionMatches(st->c.CancelledError)) {
            PyErr_Clear();
            rc = 0;
        }
        else if (PyErr_ExceptionMatches(PyExc_Exception)) {
            tcg_log_current_exception(st, st->c.app_log,
                                      "Exception in callback %r", self);
            rc = 0;
        }
    }
    Py_DECREF(self);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
runner_traverse(RunnerObject *r, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(r));
    Py_VISIT(r->core.gen);
    Py_VISIT(r->core.ctx);
    Py_VISIT(r->core.result);
    Py_VISIT(r->core.loop);
    Py_VISIT(r->waiting);
    return 0;
}

static int
runner_clear(RunnerObject *r)
{
    Py_CLEAR(r->core.gen);
    Py_CLEAR(r->core.ctx);
    Py_CLEAR(r->core.result);
    Py_CLEAR(r->core.loop);
    Py_CLEAR(r->waiting);
    return 0;
}

static void
runner_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Py_TRASHCAN_BEGIN(self, runner_dealloc)   /* long chains: see future_dealloc */
    runner_clear((RunnerObject *)self);
    tp->tp_free(self);
    Py_DECREF(tp);
    Py_TRASHCAN_END
}

static PyObject *
runner_repr(PyObject *self)
{
    RunnerObject *r = (RunnerObject *)self;
    if (r->core.gen == NULL) {
        return PyUnicode_FromString("<Runner finished>");
    }
    return PyUnicode_FromFormat("<Runner for %R>", r->core.gen);
}

static PyObject *
runner_get_finished(PyObject *self, void *closure)
{
    return PyBool_FromLong(((RunnerObject *)self)->core.gen == NULL);
}

static PyObject *
runner_get_gen(PyObject *self, void *closure)
{
    PyObject *gen = ((RunnerObject *)self)->core.gen;
    return Py_NewRef(gen ? gen : Py_None);
}

static PyObject *
runner_get_result_future(PyObject *self, void *closure)
{
    PyObject *fut = ((RunnerObject *)self)->core.result;
    return Py_NewRef(fut ? fut : Py_None);
}

static PyObject *
runner_get_future(PyObject *self, void *closure)
{
    PyObject *w = ((RunnerObject *)self)->waiting;
    return Py_NewRef(w ? w : Py_None);
}

/* Runner(ctx_run, gen, result_future, first_yielded): Tornado 6's
 * signature, for code that builds a Runner itself.  `ctx_run` is a
 * Context's run method (or a Context); the generator has already yielded
 * `first_yielded`.  Returns the Runner even if it finished at once. */
static PyObject *
runner_py_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *ctx_run, *gen, *fut, *first;
    static char *kwlist[] = {"ctx_run", "gen", "result_future",
                             "first_yielded", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO:Runner", kwlist,
                                     &ctx_run, &gen, &fut, &first)) {
        return NULL;
    }
    tcg_state *st = tcg_state_from_type(type);
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    if (gen_not_ready(st)) {
        return NULL;
    }
    PyObject *ctx;
    if (PyContext_CheckExact(ctx_run)) {
        ctx = Py_NewRef(ctx_run);
    }
    else if (PyCFunction_Check(ctx_run) &&
             PyCFunction_GET_SELF(ctx_run) != NULL &&
             PyContext_CheckExact(PyCFunction_GET_SELF(ctx_run))) {
        ctx = Py_NewRef(PyCFunction_GET_SELF(ctx_run));
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "Runner: ctx_run must be a contextvars.Context or "
                        "its run method");
        return NULL;
    }
    tcg_core core = {Py_NewRef(gen), ctx, Py_NewRef(fut), NULL};
    RunnerObject *r = runner_new(st, &core);
    if (r == NULL) {
        Py_DECREF(gen);
        Py_DECREF(ctx);
        Py_DECREF(fut);
        return NULL;
    }
    int entered = !tcg_context_is_current(ctx);
    if (entered && PyContext_Enter(ctx) < 0) {
        r->running = 0;
        Py_DECREF(r);
        return NULL;
    }
    /* The same path as a call's: resolve what was yielded, wait, resume. */
    RunnerObject *rp = r;
    int rc = drive(st, &r->core, &rp, NULL, NULL, Py_NewRef(first));
    r->running = 0;
    if (entered && PyContext_Exit(ctx) < 0) {
        rc = -1;
    }
    if (rc < 0) {
        Py_DECREF(r);
        return NULL;
    }
    return (PyObject *)r;
}

static PyGetSetDef Runner_getset[] = {
    {"finished", runner_get_finished, NULL, "The generator has finished.",
     NULL},
    {"gen", runner_get_gen, NULL, "The generator (None once finished).",
     NULL},
    {"result_future", runner_get_result_future, NULL,
     "The coroutine's Future (None once resolved).", NULL},
    {"future", runner_get_future, NULL, "What the generator waits for.",
     NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Runner_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(RunnerObject, vectorcall),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Runner_slots[] = {
    {Py_tp_doc, (void *)
     "Drives one suspended @gen.coroutine generator.\n\n"
     "The coroutine's Future holds it while the generator waits; calling\n"
     "it with the awaited future resumes the generator."},
    {Py_tp_new, runner_py_new},
    {Py_tp_dealloc, runner_dealloc},
    {Py_tp_traverse, runner_traverse},
    {Py_tp_clear, runner_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_repr, runner_repr},
    {Py_tp_getset, Runner_getset},
    {Py_tp_members, Runner_members},
    {0, NULL},
};

static PyType_Spec Runner_spec = {
    .name = "tornado_cgen._core.Runner",
    .basicsize = sizeof(RunnerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Runner_slots,
};

/* ---- Coroutine: the gen.coroutine wrapper ------------------------------- */

/* Coroutine and ConvertYielded share one layout and its lifetime slots: a
 * C callable (vectorcall) over one Python callable, with a __dict__ for
 * functools.wraps attributes and weak reference support.  A call is a hot
 * path, so the wrapper keeps the module (and so its state) alive itself
 * and reads the state from its own field (tcg.h's rule 2). */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *func;          /* what is wrapped */
    /* Coroutine only: what its calls return (factory()), fixed when it
     * was made; NULL for the module's choice (result_future_new).
     * install()'s tornado.gen.coroutine fixes asyncio.Future, so that a
     * function decorated while installed still returns what Tornado's
     * is_future() accepts after uninstall(). */
    PyObject *factory;
    PyObject *module;        /* strong: st stays valid while we live */
    tcg_state *st;
    PyObject *dict;
    PyObject *weakreflist;
} WrapperObject;

/* The wrapper's live state, or NULL with RuntimeError set: at exit, once
 * the module or the wrapper itself (tp_clear) has been cleared. */
static inline tcg_state *
wrapper_state(PyObject *self)
{
    WrapperObject *w = (WrapperObject *)self;
    return TCG_LIKELY(!w->st->cleared && w->func != NULL) ? w->st
                                                         : tcg_state_gone();
}

typedef WrapperObject CoroutineObject;   /* func: the decorated function */
typedef WrapperObject ConvertObject;     /* func: the singledispatch one */

static int
wrapper_traverse(WrapperObject *w, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(w));
    Py_VISIT(w->func);
    Py_VISIT(w->factory);
    Py_VISIT(w->module);
    Py_VISIT(w->dict);
    return 0;
}

static int
wrapper_clear(WrapperObject *w)
{
    Py_CLEAR(w->func);
    Py_CLEAR(w->factory);
    Py_CLEAR(w->dict);
    /* The module (and `st`) are kept until dealloc: a cleared wrapper
     * that is still called says it is gone (wrapper_state). */
    return 0;
}

static void
wrapper_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (((WrapperObject *)self)->weakreflist != NULL) {
        PyObject_ClearWeakRefs(self);
    }
    wrapper_clear((WrapperObject *)self);
    PyObject *module = ((WrapperObject *)self)->module;
    tp->tp_free(self);
    Py_DECREF(tp);
    Py_XDECREF(module);   /* last: the state may go with it */
}

/* type(func[, factory]): `func` may be anything (as Tornado, a
 * non-callable fails when called); `factory` (Coroutine only, when
 * `with_factory`) a callable or None. */
static PyObject *
wrapper_new(PyTypeObject *type, PyObject *args, PyObject *kwds,
            vectorcallfunc call, int with_factory)
{
    PyObject *module = tcg_module_from_type(type);
    tcg_state *st = tcg_state_if_live(module);
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    PyObject *func, *factory = Py_None;
    if ((kwds != NULL && PyDict_GET_SIZE(kwds) != 0) ||
        !PyArg_UnpackTuple(args, type->tp_name, 1, with_factory ? 2 : 1,
                           &func, &factory)) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError,
                         "%s() takes no keyword arguments", type->tp_name);
        }
        return NULL;
    }
    if (factory != Py_None && !PyCallable_Check(factory)) {
        PyErr_SetString(PyExc_TypeError, "the future factory must be callable");
        return NULL;
    }
    WrapperObject *w = (WrapperObject *)type->tp_alloc(type, 0);
    if (w == NULL) {
        return NULL;
    }
    w->vectorcall = call;
    w->func = Py_NewRef(func);
    w->factory = factory == Py_None ? NULL : Py_NewRef(factory);
    w->module = Py_NewRef(module);
    w->st = st;
    return (PyObject *)w;
}

static PyGetSetDef Wrapper_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef Wrapper_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(WrapperObject, vectorcall),
     READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(WrapperObject, dict), READONLY,
     NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(WrapperObject, weakreflist),
     READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static int
is_generator(tcg_state *st, PyObject *res)
{
    if (PyGen_CheckExact(res)) {
        return 1;
    }
    if (res == Py_None || PyCoro_CheckExact(res) || PyLong_CheckExact(res) ||
        PyUnicode_CheckExact(res) || tcg_Future_CheckExact(st, res)) {
        return 0;
    }
    /* Cython generators and other collections.abc.Generator types. */
    return PyObject_IsInstance(res, st->run.GeneratorABC);
}

/* One call of a decorated function: see the top of the file. */
static PyObject *
coroutine_call(PyObject *self, PyObject *const *args, size_t nargsf,
               PyObject *kwnames)
{
    CoroutineObject *co = (CoroutineObject *)self;
    tcg_state *st = wrapper_state(self);
    if (st == NULL) {
        return NULL;
    }
    st->stats.coroutine_calls++;
    PyObject *fut = co->factory != NULL ? factory_future_new(st, co->factory)
                                        : result_future_new(st);
    if (fut == NULL) {
        return NULL;
    }
    PyObject *ctx = PyContext_CopyCurrent();
    if (ctx == NULL) {
        Py_DECREF(fut);
        return NULL;
    }
    if (PyContext_Enter(ctx) < 0) {
        Py_DECREF(ctx);
        Py_DECREF(fut);
        return NULL;
    }
    /* The core owns one reference to each; we keep our own to `fut` (to
     * return) and to `ctx` (to exit it). */
    tcg_core core = {NULL, Py_NewRef(ctx), Py_NewRef(fut), NULL};
    RunnerObject *runner = NULL;
    int rc;
    PyObject *res = tcg_call(co->func, args, nargsf, kwnames);
    if (res == NULL) {
        rc = core_fail(st, &core, NULL);
    }
    else {
        int isgen = is_generator(st, res);
        if (isgen < 0) {
            Py_DECREF(res);
            rc = core_fail(st, &core, NULL);
        }
        else if (isgen) {
            core.gen = res;
            rc = drive(st, &core, &runner, Py_NewRef(Py_None), NULL, NULL);
        }
        else {
            rc = core_finish(st, &core, NULL, res);
        }
    }
    if (runner != NULL) {
        runner->running = 0;
        Py_DECREF(runner);   /* the result future and the awaited hold it */
    }
    /* Whatever is left in the stack core (nothing if it moved). */
    Py_XDECREF(core.gen);
    Py_XDECREF(core.ctx);
    Py_XDECREF(core.result);
    Py_XDECREF(core.loop);
    if (PyContext_Exit(ctx) < 0) {
        rc = -1;
    }
    Py_DECREF(ctx);
    if (rc < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return fut;
}

static PyObject *
coroutine_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static PyObject *
coroutine_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<tornado_cgen coroutine %R>",
                                ((CoroutineObject *)self)->func);
}

/* Coroutine(func[, future_factory]): the bare wrapper; gen.coroutine adds
 * functools.wraps attributes and __tornado_coroutine__. */
static PyObject *
coroutine_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    tcg_state *st = tcg_state_from_type(type);
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    if (gen_not_ready(st)) {
        return NULL;
    }
    return wrapper_new(type, args, kwds, coroutine_call, 1);
}

/* Pickled (and copied) by reference, like the function it wraps. */
static PyObject *
coroutine_reduce(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyObject_GetAttrString(self, "__qualname__");
}

static PyMethodDef Coroutine_methods[] = {
    {"__reduce__", coroutine_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot Coroutine_slots[] = {
    {Py_tp_doc, (void *)"A function decorated with gen.coroutine."},
    {Py_tp_new, coroutine_new},
    {Py_tp_dealloc, wrapper_dealloc},
    {Py_tp_traverse, wrapper_traverse},
    {Py_tp_clear, wrapper_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_descr_get, coroutine_descr_get},
    {Py_tp_repr, coroutine_repr},
    {Py_tp_getset, Wrapper_getset},
    {Py_tp_members, Wrapper_members},
    {Py_tp_methods, Coroutine_methods},
    {0, NULL},
};

static PyType_Spec Coroutine_spec = {
    .name = "tornado_cgen._core.Coroutine",
    .basicsize = sizeof(CoroutineObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_METHOD_DESCRIPTOR,
    .slots = Coroutine_slots,
};

/* ---- ConvertYielded: gen.convert_yielded ------------------------------- */

/* The public convert_yielded: exact-type fast paths in C, everything else
 * through the functools.singledispatch function it wraps (so .register,
 * .dispatch and .registry work: attribute lookups fall through to it).
 * Registering one of the exact fast-path types (list, dict, NoneType, our
 * Future, asyncio.Future, native coroutines) has no effect; subclasses
 * dispatch normally. */

static PyObject *
convert_call(PyObject *self, PyObject *const *args, size_t nargsf,
             PyObject *kwnames)
{
    ConvertObject *cv = (ConvertObject *)self;
    tcg_state *st = wrapper_state(self);
    if (st == NULL) {
        return NULL;
    }
    if (PyVectorcall_NARGS(nargsf) == 1 && kwnames == NULL &&
        !gen_not_ready(st)) {
        PyObject *y = args[0];
        if (tcg_Future_CheckExact(st, y) || is_exact_aio_future(st, y) ||
            is_null_future(st, y)) {
            return Py_NewRef(y);
        }
        if (y == Py_None || is_moment(st, y)) {
            return Py_NewRef(st->run.moment);
        }
        if (PyCoro_CheckExact(y)) {
            return convert_slow(st, y);   /* as the Runner: no dispatch */
        }
        if (PyList_CheckExact(y) || PyDict_CheckExact(y)) {
            PyObject *out = NULL;
            int rc = multi_collect(st, y, st->c.empty_tuple, &out);
            if (rc < 0 || rc == MULTI_PENDING) {
                return out;
            }
            PyObject *fut = done_future_from(st, rc, out);
            Py_XDECREF(out);
            return fut;
        }
    }
    PyErr_Clear();   /* gen_not_ready: let the dispatcher say what fails */
    return PyObject_Vectorcall(cv->func, args, nargsf, kwnames);
}

static PyObject *
convert_getattro(PyObject *self, PyObject *name)
{
    PyObject *res = PyObject_GenericGetAttr(self, name);
    if (res != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return res;
    }
    PyErr_Clear();
    if (wrapper_state(self) == NULL) {
        return NULL;
    }
    return PyObject_GetAttr(((ConvertObject *)self)->func, name);
}

static PyObject *
convert_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return wrapper_new(type, args, kwds, convert_call, 0);
}

static PyType_Slot Convert_slots[] = {
    {Py_tp_doc, (void *)"gen.convert_yielded: C fast paths over a "
                        "singledispatch function."},
    {Py_tp_new, convert_new},
    {Py_tp_dealloc, wrapper_dealloc},
    {Py_tp_traverse, wrapper_traverse},
    {Py_tp_clear, wrapper_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_getattro, convert_getattro},
    {Py_tp_getset, Wrapper_getset},
    {Py_tp_members, Wrapper_members},
    {0, NULL},
};

static PyType_Spec Convert_spec = {
    .name = "tornado_cgen._core.ConvertYielded",
    .basicsize = sizeof(ConvertObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Convert_slots,
};

/* ---- module functions --------------------------------------------------- */

/* _gen_setup(Return, moment, null_future, convert_yielded,
 *            wrap_concurrent, wrap_awaitable[, alt_moment,
 *            alt_null_future]): tornado_cgen.gen hands over its objects;
 *            install() Tornado's, with ours as the alternatives. */
static PyObject *
gen_setup(PyObject *module, PyObject *args)
{
    PyObject *ret, *moment, *null_future, *convert, *wrap, *wrap_aw;
    PyObject *alt_moment = NULL, *alt_null = NULL;
    if (!PyArg_UnpackTuple(args, "_gen_setup", 6, 8, &ret, &moment,
                           &null_future, &convert, &wrap, &wrap_aw,
                           &alt_moment, &alt_null)) {
        return NULL;
    }
    if (!PyCallable_Check(convert) || !PyCallable_Check(wrap) ||
        !PyCallable_Check(wrap_aw)) {
        PyErr_SetString(PyExc_TypeError,
                        "_gen_setup: the converters must be callable");
        return NULL;
    }
    /* Not into a cleared state (interpreter exit: uninstall() from a
     * finalizer): the fields must stay NULL, and the rest of the state
     * (the types) is gone. */
    tcg_state *st = tcg_state_if_live(module);
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    Py_XSETREF(st->run.Return, Py_NewRef(ret));
    Py_XSETREF(st->run.moment, Py_NewRef(moment));
    Py_XSETREF(st->run.null_future, Py_NewRef(null_future));
    Py_XSETREF(st->run.alt_moment, Py_XNewRef(alt_moment));
    Py_XSETREF(st->run.alt_null_future, Py_XNewRef(alt_null));
    Py_XSETREF(st->run.convert_yielded, Py_NewRef(convert));
    Py_XSETREF(st->run.wrap_concurrent, Py_NewRef(wrap));
    Py_XSETREF(st->run.wrap_awaitable, Py_NewRef(wrap_aw));
    Py_RETURN_NONE;
}

/* _set_tornado_ioloop(IOLoop): install() hands over Tornado's IOLoop class,
 * whose current() a coroutine's first yield calls as Tornado's Runner does
 * (see tornado_ioloop_current); None (uninstall()) stops that. */
static PyObject *
set_tornado_ioloop(PyObject *module, PyObject *ioloop)
{
    tcg_state *st = tcg_state_if_live(module);   /* as _gen_setup */
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    PyObject *map = NULL;
    if (ioloop != Py_None) {
        map = PyObject_GetAttrString(ioloop, "_ioloop_for_asyncio");
        if (map == NULL) {
            return NULL;
        }
        if (!PyDict_Check(map)) {
            Py_DECREF(map);
            PyErr_SetString(PyExc_TypeError,
                            "_set_tornado_ioloop: IOLoop._ioloop_for_asyncio "
                            "is not a dict");
            return NULL;
        }
    }
    Py_XSETREF(st->run.tornado_ioloop_map, map);
    Py_XSETREF(st->run.tornado_ioloop,
               ioloop == Py_None ? NULL : Py_NewRef(ioloop));
    Py_RETURN_NONE;
}

/* _set_tornado_escapes(BadYieldError): install() hands over Tornado's
 * BadYieldError, and the C Runner then lets every other conversion failure
 * escape as Tornado's does (see conversion_failed); None (uninstall())
 * throws every one in again. */
static PyObject *
set_tornado_escapes(PyObject *module, PyObject *bad_yield)
{
    tcg_state *st = tcg_state_if_live(module);   /* as _gen_setup */
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    if (bad_yield != Py_None &&
        !(PyType_Check(bad_yield) &&
          PyType_IsSubtype((PyTypeObject *)bad_yield,
                           (PyTypeObject *)PyExc_Exception))) {
        PyErr_SetString(PyExc_TypeError,
                        "_set_tornado_escapes: an Exception class or None");
        return NULL;
    }
    Py_XSETREF(st->run.tornado_bad_yield,
               bad_yield == Py_None ? NULL : Py_NewRef(bad_yield));
    Py_RETURN_NONE;
}

static PyMethodDef runner_functions[] = {
    {"_gen_setup", gen_setup, METH_VARARGS,
     "Used once by tornado_cgen.gen: register Return, moment, "
     "_null_future, convert_yielded and the wrappers of concurrent futures "
     "and awaitables."},
    {"_set_tornado_ioloop", set_tornado_ioloop, METH_O,
     "install(): call Tornado's IOLoop.current() at a coroutine's first "
     "yield, as Tornado's Runner does (None: stop)."},
    {"_set_tornado_escapes", set_tornado_escapes, METH_O,
     "install(): let conversion failures other than this BadYieldError "
     "class escape the Runner, as Tornado's do (None: throw all in)."},
    {"multi", (PyCFunction)(void (*)(void))gen_multi,
     METH_FASTCALL | METH_KEYWORDS,
     "multi($module, /, children, quiet_exceptions=())\n--\n\n"
     "A Future for the results of every child of a list or dict (nested\n"
     "too), in input order.  Done children resolve it at once; the first\n"
     "failure in input order wins, later ones are logged unless they are\n"
     "quiet_exceptions."},
    {NULL, NULL, 0, NULL},
};

/* ---- state -------------------------------------------------------------- */

#define RUN_INTERN(field, text)                                          \
    do {                                                                 \
        if ((st->run.field = PyUnicode_InternFromString(text)) == NULL)  \
            return -1;                                                   \
    } while (0)

int
tcg_runner_exec(PyObject *m, tcg_state *st)
{
    tcg_runner_state *rs = &st->run;
    memset(rs, 0, sizeof(*rs));
    rs->RunnerType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &Runner_spec,
                                                              NULL);
    if (rs->RunnerType == NULL ||
        PyModule_AddType(m, rs->RunnerType) < 0) {
        return -1;
    }
    rs->CoroutineType = (PyTypeObject *)PyType_FromModuleAndSpec(
        m, &Coroutine_spec, NULL);
    if (rs->CoroutineType == NULL ||
        PyModule_AddType(m, rs->CoroutineType) < 0) {
        return -1;
    }
    rs->MultiWaiterType = (PyTypeObject *)PyType_FromModuleAndSpec(
        m, &MultiWaiter_spec, NULL);
    if (rs->MultiWaiterType == NULL) {
        return -1;
    }
    rs->ConvertType = (PyTypeObject *)PyType_FromModuleAndSpec(
        m, &Convert_spec, NULL);
    if (rs->ConvertType == NULL ||
        PyModule_AddType(m, rs->ConvertType) < 0) {
        return -1;
    }
    if ((rs->GeneratorABC = tcg_import_attr("collections.abc", "Generator")) ==
            NULL ||
        (rs->AioFutureType = PyObject_GetAttrString(st->c.asyncio, "Future")) ==
            NULL ||
        (rs->AioTaskType = PyObject_GetAttrString(st->c.asyncio, "Task")) ==
            NULL ||
        (rs->ConcurrentFutureType =
             tcg_import_attr("concurrent.futures", "Future")) == NULL) {
        return -1;
    }
    RUN_INTERN(str_throw, "throw");
    static const char *const aio_names[AIO_NMETHODS] = {
        [AIO_DONE] = "done", [AIO_RESULT] = "result",
        [AIO_CANCELLED] = "cancelled", [AIO_CANCEL] = "cancel",
        [AIO_SET_RESULT] = "set_result", [AIO_SET_EXCEPTION] = "set_exception",
        [AIO_ADD_DONE_CALLBACK] = "add_done_callback",
        [AIO_REMOVE_DONE_CALLBACK] = "remove_done_callback",
    };
    for (int i = 0; i < AIO_NMETHODS; i++) {
        if ((rs->aio_names[i] = PyUnicode_InternFromString(aio_names[i])) ==
                NULL ||
            (rs->aio_future_methods[i] =
                 PyObject_GetAttr(rs->AioFutureType, rs->aio_names[i])) ==
                NULL ||
            (rs->aio_task_methods[i] =
                 PyObject_GetAttr(rs->AioTaskType, rs->aio_names[i])) ==
                NULL) {
            return -1;
        }
    }
    RUN_INTERN(str_value, "value");
    RUN_INTERN(str_keys, "keys");
    RUN_INTERN(str_values, "values");
    if (learn_aio_layout(st) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(m, runner_functions);
}

int
tcg_runner_traverse(tcg_state *st, visitproc visit, void *arg)
{
    tcg_runner_state *rs = &st->run;
    Py_VISIT(rs->RunnerType);
    Py_VISIT(rs->CoroutineType);
    Py_VISIT(rs->MultiWaiterType);
    Py_VISIT(rs->ConvertType);
    Py_VISIT(rs->Return);
    Py_VISIT(rs->moment);
    Py_VISIT(rs->null_future);
    Py_VISIT(rs->alt_moment);
    Py_VISIT(rs->alt_null_future);
    Py_VISIT(rs->convert_yielded);
    Py_VISIT(rs->wrap_concurrent);
    Py_VISIT(rs->wrap_awaitable);
    Py_VISIT(rs->tornado_ioloop);
    Py_VISIT(rs->tornado_ioloop_map);
    Py_VISIT(rs->tornado_bad_yield);
    Py_VISIT(rs->GeneratorABC);
    Py_VISIT(rs->AioFutureType);
    Py_VISIT(rs->AioTaskType);
    Py_VISIT(rs->ConcurrentFutureType);
    for (int i = 0; i < AIO_NMETHODS; i++) {
        Py_VISIT(rs->aio_future_methods[i]);
        Py_VISIT(rs->aio_task_methods[i]);
    }
    return 0;
}

void
tcg_runner_clear(tcg_state *st)
{
    tcg_runner_state *rs = &st->run;
    Py_CLEAR(rs->RunnerType);
    Py_CLEAR(rs->CoroutineType);
    Py_CLEAR(rs->MultiWaiterType);
    Py_CLEAR(rs->ConvertType);
    Py_CLEAR(rs->Return);
    Py_CLEAR(rs->moment);
    Py_CLEAR(rs->null_future);
    Py_CLEAR(rs->alt_moment);
    Py_CLEAR(rs->alt_null_future);
    Py_CLEAR(rs->convert_yielded);
    Py_CLEAR(rs->wrap_concurrent);
    Py_CLEAR(rs->wrap_awaitable);
    Py_CLEAR(rs->tornado_ioloop);
    Py_CLEAR(rs->tornado_ioloop_map);
    Py_CLEAR(rs->tornado_bad_yield);
    Py_CLEAR(rs->GeneratorABC);
    Py_CLEAR(rs->AioFutureType);
    Py_CLEAR(rs->AioTaskType);
    Py_CLEAR(rs->ConcurrentFutureType);
    Py_CLEAR(rs->str_throw);
    for (int i = 0; i < AIO_NMETHODS; i++) {
        Py_CLEAR(rs->aio_names[i]);
        Py_CLEAR(rs->aio_future_methods[i]);
        Py_CLEAR(rs->aio_task_methods[i]);
    }
    Py_CLEAR(rs->str_value);
    Py_CLEAR(rs->str_keys);
    Py_CLEAR(rs->str_values);
}
