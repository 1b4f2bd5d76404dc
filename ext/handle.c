/* handle.c: Handle and TimerHandle, the loop's record of one callback.
 *
 * Owns: the two handle types (asyncio's face: cancel(), cancelled(),
 * when(), get_context(), the private attributes the stdlib's transports and
 * reprs read), their freelist, and tcg_handle_run(): calling the callback in
 * its context and reporting what it raises.  A handle scheduled by the
 * Tornado face (TCG_H_TORNADO) is run under IOLoop._run_callback's rules:
 * Exceptions are logged on tornado.application, CancelledError is dropped,
 * and a non-None result is handed to the loop's _tornado_callback_result.
 * Everything else follows asyncio's Handle._run.
 */
#include "tcg.h"


/* ---- construction ------------------------------------------------------ */

tcg_HandleObject *
tcg_handle_new(tcg_state *st, PyObject *loop, PyObject *callback,
               PyObject *const *args, Py_ssize_t nargs, PyObject *context,
               unsigned flags, double when)
{
    if (TCG_UNLIKELY(st->cleared)) {
        /* Interpreter exit cleared the module under a live loop. */
        tcg_state_gone();
        return NULL;
    }
    bool timer = (flags & TCG_H_TIMER) != 0;
    PyObject *argtuple = NULL;
    if (nargs >= 2) {
        argtuple = PyTuple_New(nargs);
        if (argtuple == NULL) {
            return NULL;
        }
        for (Py_ssize_t i = 0; i < nargs; i++) {
            PyTuple_SET_ITEM(argtuple, i, Py_NewRef(args[i]));
        }
    }
    if (context == NULL || context == Py_None) {
        context = PyContext_CopyCurrent();
        if (context == NULL) {
            Py_XDECREF(argtuple);
            return NULL;
        }
    }
    else {
        Py_INCREF(context);
    }

    tcg_HandleObject *h;
    tcg_handle_state *ls = &st->loop.handle;
    PyTypeObject *tp = timer ? ls->TimerHandleType : ls->HandleType;
    h = (tcg_HandleObject *)tcg_freelist_pop(&ls->freelist[timer], tp);
    if (h == NULL) {
        h = PyObject_GC_New(tcg_HandleObject, tp);
        if (h == NULL) {
            Py_XDECREF(argtuple);
            Py_DECREF(context);
            return NULL;
        }
    }
    h->callback = Py_NewRef(callback);
    h->arg1 = nargs == 1 ? Py_NewRef(args[0]) : NULL;
    h->args = argtuple;
    h->context = context;
    h->loop = Py_NewRef(loop);
    h->source_tb = NULL;
    h->repr = NULL;
    h->when = when;      /* callers pass 0.0 for plain handles */
    h->flags = flags;
    PyObject_GC_Track(h);
    return h;
}

int
tcg_handle_capture_source(tcg_state *st, tcg_HandleObject *h)
{
    /* No C frames: extract_stack() starts at our Python caller. */
    PyObject *tb = PyObject_CallNoArgs(st->loop.handle.extract_stack);
    if (tb == NULL) {
        return -1;
    }
    Py_XSETREF(h->source_tb, tb);
    return 0;
}

/* The arguments as a tuple (new reference).  Needs no module state. */
static PyObject *
handle_args_tuple(tcg_HandleObject *h)
{
    if (h->args != NULL) {
        return Py_NewRef(h->args);
    }
    if (h->arg1 != NULL) {
        return PyTuple_Pack(1, h->arg1);
    }
    if (h->callback == NULL) {
        Py_RETURN_NONE;   /* asyncio drops _args on cancel */
    }
    return PyTuple_New(0);   /* the empty tuple singleton */
}

static PyObject *handle_repr(tcg_HandleObject *h);

int
tcg_handle_cancel(tcg_HandleObject *h)
{
    if (h->flags & TCG_H_CANCELLED) {
        return 0;
    }
    h->flags |= TCG_H_CANCELLED;
    if ((h->flags & TCG_H_SCHEDULED) && h->loop != NULL) {
        tcg_loop_timer_cancelled(h->loop);
    }
    int rc = 0;
    if (h->loop != NULL && TCG_UNLIKELY(tcg_loop_debug(h->loop)) &&
        h->repr == NULL) {
        /* As asyncio in debug mode: keep the repr, callback and all, for
         * "Executing <Handle cancelled cb(1)> took 2.5 seconds".  A repr
         * that fails is reported after the handle is cancelled anyway. */
        h->repr = handle_repr(h);
        rc = h->repr != NULL ? 0 : -1;
    }
    /* Drop the callback at once (as asyncio does) so cancelled timers in
     * the heap hold nothing big; these decrefs may run arbitrary code, so
     * the fields are emptied first. */
    PyObject *cb = h->callback, *a1 = h->arg1, *args = h->args;
    h->callback = h->arg1 = h->args = NULL;
    Py_XDECREF(cb);
    Py_XDECREF(a1);
    Py_XDECREF(args);
    return rc;
}

/* asyncio.format_helpers._format_callback_source(cb, args), with 3.13's
 * debug= keyword where the function takes it: the loop's debug flag, as
 * asyncio's Handle passes it (3.13 shows the arguments only when true). */
static PyObject *
format_callback_source(tcg_state *st, tcg_HandleObject *h, PyObject *cb,
                       PyObject *args)
{
    tcg_handle_state *ls = &st->loop.handle;
    if (ls->kwnames_debug == NULL) {
        return PyObject_CallFunctionObjArgs(ls->format_cb_source, cb, args,
                                            NULL);
    }
    bool debug = h->loop != NULL && tcg_loop_debug(h->loop);
    PyObject *argv[3] = {cb, args, debug ? Py_True : Py_False};
    return PyObject_Vectorcall(ls->format_cb_source, argv, 2,
                               ls->kwnames_debug);
}

/* ---- running ----------------------------------------------------------- */

static bool
is_fatal_exception(void)
{
    return PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
           PyErr_ExceptionMatches(PyExc_SystemExit);
}

/* Report the current exception asyncio's way: through
 * loop.call_exception_handler({'message', 'exception', 'handle',
 * ['source_traceback']}).  -1 if a fatal exception escapes the handler. */
static int
report_asyncio(tcg_state *st, tcg_HandleObject *h, PyObject *cb,
               PyObject *args)
{
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL && exc != NULL) {
        PyException_SetTraceback(exc, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);

    int rc = 0;
    PyObject *ctx = NULL, *src = NULL, *msg = NULL, *res = NULL;
    src = format_callback_source(st, h, cb, args);
    if (src == NULL) {
        goto error;
    }
    msg = PyUnicode_FromFormat("Exception in callback %U", src);
    if (msg == NULL || (ctx = PyDict_New()) == NULL ||
        PyDict_SetItem(ctx, st->c.str_message, msg) < 0 ||
        PyDict_SetItem(ctx, st->c.str_exception, exc ? exc : Py_None) < 0 ||
        PyDict_SetItem(ctx, st->loop.handle.str_handle, (PyObject *)h) < 0 ||
        (h->source_tb != NULL &&
         PyDict_SetItem(ctx, st->c.str_source_traceback, h->source_tb) < 0)) {
        goto error;
    }
    res = PyObject_CallMethodOneArg(h->loop, st->c.str_call_exception_handler,
                                    ctx);
    if (res == NULL) {
        goto error;
    }
    goto done;
error:
    if (is_fatal_exception()) {
        rc = -1;
    }
    else {
        PyErr_WriteUnraisable(h->loop);
    }
done:
    Py_XDECREF(exc);
    Py_XDECREF(src);
    Py_XDECREF(msg);
    Py_XDECREF(ctx);
    Py_XDECREF(res);
    return rc;
}

/* Tornado's _run_callback error path: log an Exception on
 * tornado.application as "Exception in callback %r" with the callback shown
 * as the functools.partial Tornado would have built. */
static void
report_tornado(tcg_state *st, PyObject *cb, PyObject *args)
{
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyObject *partial = NULL;
    PyObject *pargs = PyTuple_New(1 + PyTuple_GET_SIZE(args));
    if (pargs != NULL) {
        PyTuple_SET_ITEM(pargs, 0, Py_NewRef(cb));
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args); i++) {
            PyTuple_SET_ITEM(pargs, i + 1,
                             Py_NewRef(PyTuple_GET_ITEM(args, i)));
        }
        partial = PyObject_Call(st->loop.handle.partial, pargs, NULL);
        Py_DECREF(pargs);
    }
    if (partial == NULL) {
        PyErr_Clear();
    }
    PyErr_Restore(type, exc, tb);
    tcg_log_current_exception(st, st->c.app_log, "Exception in callback %r",
                              partial ? partial : cb);
    Py_XDECREF(partial);
}

/* A context that is not a contextvars.Context (asyncio's Handle takes
 * anything): what asyncio does with it, context.run(callback, *args). */
static PyObject *
run_in_foreign_context(PyObject *ctx, PyObject *cb, PyObject *a1,
                       PyObject *args)
{
    PyObject *run = PyObject_GetAttrString(ctx, "run");
    if (run == NULL) {
        return NULL;
    }
    PyObject *res;
    if (args != NULL) {
        Py_ssize_t n = PyTuple_GET_SIZE(args);
        PyObject *full = PyTuple_New(n + 1);
        if (full == NULL) {
            Py_DECREF(run);
            return NULL;
        }
        PyTuple_SET_ITEM(full, 0, Py_NewRef(cb));
        for (Py_ssize_t i = 0; i < n; i++) {
            PyTuple_SET_ITEM(full, i + 1,
                             Py_NewRef(PyTuple_GET_ITEM(args, i)));
        }
        res = PyObject_Call(run, full, NULL);
        Py_DECREF(full);
    }
    else if (a1 != NULL) {
        res = PyObject_CallFunctionObjArgs(run, cb, a1, NULL);
    }
    else {
        res = PyObject_CallOneArg(run, cb);
    }
    Py_DECREF(run);
    return res;
}

/* The handle to report a failure of `cb` with: `h`, or for a loop's
 * inline entry (h NULL) one made now, as the entry's handle would have
 * been.  New reference, or NULL with the exception set. */
static tcg_HandleObject *
handle_for_report(tcg_state *st, tcg_HandleObject *h, PyObject *loop,
                  PyObject *cb, PyObject *a1, PyObject *ctx, unsigned flags)
{
    if (h != NULL) {
        return (tcg_HandleObject *)Py_NewRef(h);
    }
    return tcg_handle_new(st, loop, cb, a1 ? &a1 : NULL, a1 != NULL, ctx,
                          flags & TCG_H_TORNADO, 0.0);
}

int
tcg_callback_run(tcg_state *st, PyObject *loop, PyObject *cb, PyObject *a1,
                 PyObject *args, PyObject *ctx, unsigned flags,
                 tcg_HandleObject *h)
{
    bool tornado = (flags & TCG_H_TORNADO) != 0;
    int rc = 0;

    PyObject *res;
    if (ctx != NULL && !PyContext_CheckExact(ctx)) {
        res = run_in_foreign_context(ctx, cb, a1, args);
    }
    else if (ctx != NULL && PyContext_Enter(ctx) < 0) {
        res = NULL;
    }
    else {
        if (args != NULL) {
            res = tcg_call(cb, &PyTuple_GET_ITEM(args, 0),
                           PyTuple_GET_SIZE(args), NULL);
        }
        else if (a1 != NULL) {
            PyObject *argv[2] = {NULL, a1};
            res = tcg_call(cb, argv + 1, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                           NULL);
        }
        else {
            res = tcg_call(cb, NULL, 0, NULL);
        }
        if (res != NULL && tornado && res != Py_None) {
            /* Tornado: a returned awaitable is awaited, its failure
             * logged; still in the callback's context, so that the Task
             * a native coroutine becomes runs in it too. */
            PyObject *r2 = PyObject_CallMethodOneArg(
                loop, st->loop.handle.str_run_callback_result, res);
            Py_DECREF(res);
            res = r2;
        }
        if (ctx != NULL && PyContext_Exit(ctx) < 0) {
            Py_CLEAR(res);
        }
    }

    if (res == NULL) {
        if (is_fatal_exception()) {
            rc = -1;
        }
        else if (tornado && PyErr_ExceptionMatches(st->c.CancelledError)) {
            PyErr_Clear();
        }
        else {
            PyObject *argt = args ? Py_NewRef(args)
                           : a1 ? PyTuple_Pack(1, a1)
                           : Py_NewRef(st->c.empty_tuple);
            if (argt == NULL) {
                rc = -1;
            }
            else if (tornado && PyErr_ExceptionMatches(PyExc_Exception)) {
                report_tornado(st, cb, argt);
            }
            else {
                /* The callback's exception is kept aside while the
                 * handle is made: making it may fail too. */
                PyObject *type, *value, *tb;
                PyErr_Fetch(&type, &value, &tb);
                tcg_HandleObject *eh = handle_for_report(st, h, loop, cb, a1,
                                                         ctx, flags);
                if (eh == NULL) {
                    /* The new error is reported instead. */
                    Py_XDECREF(type);
                    Py_XDECREF(value);
                    Py_XDECREF(tb);
                    rc = is_fatal_exception() ? -1 : 0;
                    if (rc == 0) {
                        PyErr_WriteUnraisable(loop);
                    }
                }
                else {
                    PyErr_Restore(type, value, tb);
                    rc = report_asyncio(st, eh, cb, argt);
                    Py_DECREF(eh);
                }
            }
            Py_XDECREF(argt);
        }
    }
    Py_XDECREF(res);
    return rc;
}

int
tcg_handle_run(tcg_state *st, tcg_HandleObject *h)
{
    if (h->callback == NULL) {
        return 0;   /* cancelled */
    }
    /* Own everything we use: the callback may cancel its own handle. */
    PyObject *cb = Py_NewRef(h->callback);
    PyObject *a1 = Py_XNewRef(h->arg1);
    PyObject *args = Py_XNewRef(h->args);
    PyObject *ctx = Py_XNewRef(h->context);
    int rc = tcg_callback_run(st, h->loop, cb, a1, args, ctx, h->flags, h);
    Py_DECREF(cb);
    Py_XDECREF(a1);
    Py_XDECREF(args);
    Py_XDECREF(ctx);
    return rc;
}

/* ---- the types --------------------------------------------------------- */

static int
handle_traverse(tcg_HandleObject *h, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(h));
    Py_VISIT(h->callback);
    Py_VISIT(h->arg1);
    Py_VISIT(h->args);
    Py_VISIT(h->context);
    Py_VISIT(h->loop);
    Py_VISIT(h->source_tb);
    Py_VISIT(h->repr);
    return 0;
}

static int
handle_clear(tcg_HandleObject *h)
{
    Py_CLEAR(h->callback);
    Py_CLEAR(h->arg1);
    Py_CLEAR(h->args);
    Py_CLEAR(h->context);
    Py_CLEAR(h->loop);
    Py_CLEAR(h->source_tb);
    Py_CLEAR(h->repr);
    return 0;
}

static void
handle_dealloc(tcg_HandleObject *h)
{
    PyTypeObject *tp = Py_TYPE(h);
    PyObject_GC_UnTrack(h);
    /* The trashcan: a handle whose arguments hold a handle whose ... is
     * freed without a C frame per link (see future_dealloc). */
    Py_TRASHCAN_BEGIN(h, handle_dealloc)
    handle_clear(h);
    /* NULL at interpreter exit, once the collector has cleared our types
     * or the module: then the handle is freed, never put on a freelist
     * that nobody would empty any more. */
    tcg_state *st = tcg_state_from_type(tp);
    tcg_handle_state *ls = st ? &st->loop.handle : NULL;
    int kind = ls == NULL ? -1
             : tp == ls->HandleType ? 0
             : tp == ls->TimerHandleType ? 1 : -1;
    if (kind < 0 || !tcg_freelist_push(&ls->freelist[kind], (PyObject *)h)) {
        tp->tp_free((PyObject *)h);
    }
    Py_DECREF(tp);
    Py_TRASHCAN_END
}

/* Methods are METH_METHOD (tcg.h's rule 1): `cls`, the defining class,
 * gives the state to those that need it, at the price of a field read;
 * the others take the same signature so that any of them can.  None takes
 * arguments; the check is Argument Clinic's for such a function. */
#define METH_CLS (METH_METHOD | METH_FASTCALL | METH_KEYWORDS)
#define NOARGS_METHOD(fn)                                               \
    static PyObject *fn##_impl(tcg_HandleObject *h, PyTypeObject *cls); \
    static PyObject *fn(tcg_HandleObject *h, PyTypeObject *cls,         \
                        PyObject *const *args, Py_ssize_t nargs,        \
                        PyObject *kwnames)                              \
    {                                                                   \
        if (TCG_UNLIKELY(nargs != 0 || (kwnames != NULL &&              \
                                        PyTuple_GET_SIZE(kwnames)))) {  \
            return no_arguments(#fn, nargs, kwnames);                   \
        }                                                               \
        return fn##_impl(h, cls);                                       \
    }                                                                   \
    static PyObject *fn##_impl(tcg_HandleObject *h, PyTypeObject *cls)

static PyObject *
no_arguments(const char *fn, Py_ssize_t nargs, PyObject *kwnames)
{
    /* fn is "handle_<name>": the error names the method. */
    (void)tcg_check_noargs(fn + sizeof("handle_") - 1, nargs, kwnames);
    return NULL;
}

NOARGS_METHOD(handle_cancel)
{
    if (tcg_handle_cancel(h) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

NOARGS_METHOD(handle_cancelled)
{
    return PyBool_FromLong(h->flags & TCG_H_CANCELLED);
}

NOARGS_METHOD(handle_get_context)
{
    return Py_NewRef(h->context ? h->context : Py_None);
}

NOARGS_METHOD(handle__run)
{
    tcg_state *st = tcg_state_from_cls(cls);
    if (st == NULL || tcg_handle_run(st, h) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

NOARGS_METHOD(handle_when)
{
    return PyFloat_FromDouble(h->when);
}

static PyObject *
handle_repr(tcg_HandleObject *h)
{
    if (h->repr != NULL) {
        return Py_NewRef(h->repr);
    }
    tcg_state *st = tcg_state_from_type(Py_TYPE(h));
    if (st == NULL) {
        tcg_state_gone();   /* interpreter exit: no format helpers left */
        return NULL;
    }
    PyObject *parts = PyList_New(0), *item = NULL, *res = NULL;
    if (parts == NULL) {
        return NULL;
    }
    item = PyUnicode_FromString((h->flags & TCG_H_TIMER) ? "TimerHandle"
                                                        : "Handle");
    if (item == NULL || PyList_Append(parts, item) < 0) {
        goto done;
    }
    Py_CLEAR(item);
    if (h->flags & TCG_H_CANCELLED) {
        item = PyUnicode_FromString("cancelled");
        if (item == NULL || PyList_Append(parts, item) < 0) {
            goto done;
        }
        Py_CLEAR(item);
    }
    if (h->flags & TCG_H_TIMER) {
        PyObject *w = PyFloat_FromDouble(h->when);
        if (w == NULL) {
            goto done;
        }
        item = PyUnicode_FromFormat("when=%R", w);
        Py_DECREF(w);
        if (item == NULL || PyList_Append(parts, item) < 0) {
            goto done;
        }
        Py_CLEAR(item);
    }
    if (h->callback != NULL) {
        PyObject *args = handle_args_tuple(h);
        if (args == NULL) {
            goto done;
        }
        item = format_callback_source(st, h, h->callback, args);
        Py_DECREF(args);
        if (item == NULL || PyList_Append(parts, item) < 0) {
            goto done;
        }
        Py_CLEAR(item);
    }
    if (h->source_tb != NULL && PyList_Check(h->source_tb) &&
        PyList_GET_SIZE(h->source_tb) > 0) {
        PyObject *frame = PyList_GET_ITEM(h->source_tb,
                                          PyList_GET_SIZE(h->source_tb) - 1);
        PyObject *fn = PySequence_GetItem(frame, 0);
        PyObject *ln = fn ? PySequence_GetItem(frame, 1) : NULL;
        if (ln != NULL) {
            item = PyUnicode_FromFormat("created at %S:%S", fn, ln);
        }
        Py_XDECREF(fn);
        Py_XDECREF(ln);
        if (item == NULL || PyList_Append(parts, item) < 0) {
            goto done;
        }
        Py_CLEAR(item);
    }
    PyObject *sep = PyUnicode_FromString(" ");
    if (sep != NULL) {
        PyObject *joined = PyUnicode_Join(sep, parts);
        Py_DECREF(sep);
        if (joined != NULL) {
            res = PyUnicode_FromFormat("<%U>", joined);
            Py_DECREF(joined);
        }
    }
done:
    Py_XDECREF(item);
    Py_DECREF(parts);
    return res;
}

static PyObject *
timer_richcompare(PyObject *a, PyObject *b, int op)
{
    if (Py_TYPE(a) != Py_TYPE(b)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    tcg_HandleObject *x = (tcg_HandleObject *)a, *y = (tcg_HandleObject *)b;
    if (op == Py_EQ || op == Py_NE) {
        bool eq = a == b ||
                  (x->when == y->when && x->callback == y->callback &&
                   x->arg1 == y->arg1 && x->args == y->args &&
                   (x->flags & TCG_H_CANCELLED) == (y->flags & TCG_H_CANCELLED));
        return PyBool_FromLong(op == Py_EQ ? eq : !eq);
    }
    Py_RETURN_RICHCOMPARE(x->when, y->when, op);
}

static Py_hash_t
timer_hash(PyObject *a)
{
    PyObject *w = PyFloat_FromDouble(((tcg_HandleObject *)a)->when);
    if (w == NULL) {
        return -1;
    }
    Py_hash_t hash = PyObject_Hash(w);
    Py_DECREF(w);
    return hash;
}

/* Attributes the stdlib reads on handles (reprs, transports, tests). */
static PyObject *
get_callback(tcg_HandleObject *h, void *c)
{
    return Py_NewRef(h->callback ? h->callback : Py_None);
}

static PyObject *
get_args(tcg_HandleObject *h, void *c)
{
    return handle_args_tuple(h);
}

static PyObject *
get_cancelled(tcg_HandleObject *h, void *c)
{
    return PyBool_FromLong(h->flags & TCG_H_CANCELLED);
}

static PyObject *
get_scheduled(tcg_HandleObject *h, void *c)
{
    return PyBool_FromLong(h->flags & TCG_H_SCHEDULED);
}

static PyObject *
get_loop(tcg_HandleObject *h, void *c)
{
    return Py_NewRef(h->loop ? h->loop : Py_None);
}

static PyObject *
get_source_tb(tcg_HandleObject *h, void *c)
{
    return Py_NewRef(h->source_tb ? h->source_tb : Py_None);
}

static int
set_source_tb(tcg_HandleObject *h, PyObject *v, void *c)
{
    Py_XSETREF(h->source_tb, v == Py_None ? NULL : Py_XNewRef(v));
    return 0;
}

static PyObject *
get_context(tcg_HandleObject *h, void *c)
{
    return Py_NewRef(h->context ? h->context : Py_None);
}

static PyGetSetDef handle_getset[] = {
    {"_callback", (getter)get_callback, NULL, NULL, NULL},
    {"_args", (getter)get_args, NULL, NULL, NULL},
    {"_cancelled", (getter)get_cancelled, NULL, NULL, NULL},
    {"_scheduled", (getter)get_scheduled, NULL, NULL, NULL},
    {"_loop", (getter)get_loop, NULL, NULL, NULL},
    {"_context", (getter)get_context, NULL, NULL, NULL},
    {"_source_traceback", (getter)get_source_tb, (setter)set_source_tb,
     NULL, NULL},
    {NULL},
};

#define CLS_METHOD(name, fn, doc) \
    {name, (PyCFunction)(void (*)(void))(fn), METH_CLS, doc}

static PyMethodDef handle_methods[] = {
    CLS_METHOD("cancel", handle_cancel, "Cancel the callback."),
    CLS_METHOD("cancelled", handle_cancelled,
               "True if the callback was cancelled."),
    CLS_METHOD("get_context", handle_get_context,
               "The contextvars.Context the callback runs in."),
    CLS_METHOD("_run", handle__run, NULL),
    {NULL},
};

static PyObject *
get_when(tcg_HandleObject *h, void *c)
{
    return PyFloat_FromDouble(h->when);
}

static PyGetSetDef timer_getset[] = {
    {"_when", (getter)get_when, NULL, NULL, NULL},
    {NULL},
};

static PyMethodDef timer_methods[] = {
    CLS_METHOD("when", handle_when,
               "The scheduled time, on the loop's time() clock."),
    {NULL},
};

static PyType_Slot handle_slots[] = {
    {Py_tp_doc, "A callback scheduled on a tornado_cgen loop "
                "(asyncio.Handle's interface)."},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_repr, handle_repr},
    {Py_tp_methods, handle_methods},
    {Py_tp_getset, handle_getset},
    {0, NULL},
};

static PyType_Spec handle_spec = {
    .name = "tornado_cgen._core.Handle",
    .basicsize = sizeof(tcg_HandleObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE
#if PY_VERSION_HEX >= 0x030A0000
             | Py_TPFLAGS_DISALLOW_INSTANTIATION
#endif
    ,
    .slots = handle_slots,
};

static PyType_Slot timer_slots[] = {
    {Py_tp_doc, "A timed callback (asyncio.TimerHandle's interface)."},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_richcompare, timer_richcompare},
    {Py_tp_hash, timer_hash},
    {Py_tp_methods, timer_methods},
    {Py_tp_getset, timer_getset},
    {0, NULL},
};

static PyType_Spec timer_spec = {
    .name = "tornado_cgen._core.TimerHandle",
    .basicsize = sizeof(tcg_HandleObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = timer_slots,
};

int
tcg_handle_exec(PyObject *m, tcg_state *st)
{
    tcg_handle_state *ls = &st->loop.handle;
    ls->HandleType = (PyTypeObject *)PyType_FromModuleAndSpec(m, &handle_spec,
                                                              NULL);
    if (ls->HandleType == NULL) {
        return -1;
    }
    ls->TimerHandleType = (PyTypeObject *)PyType_FromModuleAndSpec(
        m, &timer_spec, (PyObject *)ls->HandleType);
    if (ls->TimerHandleType == NULL) {
        return -1;
    }
    if (PyModule_AddType(m, ls->HandleType) < 0 ||
        PyModule_AddType(m, ls->TimerHandleType) < 0) {
        return -1;
    }
    PyObject *fh = PyImport_ImportModule("asyncio.format_helpers");
    if (fh == NULL) {
        return -1;
    }
    ls->format_cb_source = PyObject_GetAttrString(fh, "_format_callback_source");
    ls->extract_stack = PyObject_GetAttrString(fh, "extract_stack");
    Py_DECREF(fh);
    if (ls->format_cb_source == NULL || ls->extract_stack == NULL) {
        return -1;
    }
    /* 3.13: _format_callback_source(func, args, *, debug=False).  Ask the
     * function itself rather than the version number. */
    PyObject *kwdefaults = PyObject_GetAttrString(ls->format_cb_source,
                                                  "__kwdefaults__");
    if (kwdefaults == NULL) {
        PyErr_Clear();
    }
    else {
        int takes_debug = PyDict_Check(kwdefaults)
            ? PyDict_GetItemString(kwdefaults, "debug") != NULL : 0;
        Py_DECREF(kwdefaults);
        if (takes_debug &&
            (ls->kwnames_debug = Py_BuildValue("(s)", "debug")) == NULL) {
            return -1;
        }
    }
    PyObject *ft = PyImport_ImportModule("functools");
    if (ft == NULL) {
        return -1;
    }
    ls->partial = PyObject_GetAttrString(ft, "partial");
    Py_DECREF(ft);
    if (ls->partial == NULL ||
        (ls->str_run_callback_result =
             PyUnicode_InternFromString("_tornado_callback_result")) == NULL ||
        (ls->str_handle = PyUnicode_InternFromString("handle")) == NULL) {
        return -1;
    }
    return 0;
}

int
tcg_handle_traverse(tcg_state *st, visitproc visit, void *arg)
{
    tcg_handle_state *ls = &st->loop.handle;
    Py_VISIT(ls->HandleType);
    Py_VISIT(ls->TimerHandleType);
    Py_VISIT(ls->partial);
    Py_VISIT(ls->format_cb_source);
    Py_VISIT(ls->extract_stack);
    return 0;
}

void
tcg_handle_clear(tcg_state *st)
{
    tcg_handle_state *ls = &st->loop.handle;
    for (int kind = 0; kind < 2; kind++) {
        tcg_freelist_clear(&ls->freelist[kind]);
    }
    Py_CLEAR(ls->HandleType);
    Py_CLEAR(ls->TimerHandleType);
    Py_CLEAR(ls->partial);
    Py_CLEAR(ls->format_cb_source);
    Py_CLEAR(ls->kwnames_debug);
    Py_CLEAR(ls->extract_stack);
    Py_CLEAR(ls->str_run_callback_result);
    Py_CLEAR(ls->str_handle);
}
