/* module.c: the tornado_cgen._core module object.
 *
 * Owns: multi-phase initialisation (PEP 489), the shared part of the module
 * state (imported asyncio/logging objects, interned strings), GC of the
 * state, and the small helpers every part uses (finding the running loop,
 * logging an exception the way Tornado does, calling in a context).  Each
 * part's own types and objects are made by its tcg_<part>_exec().
 */
#include "tcg.h"
#include <stddef.h>   /* offsetof */
#include <stdio.h>    /* fprintf: the debug build's clear report */
#include <stdlib.h>   /* getenv */

#ifdef TCG_DEBUG
void
tcg_assert_failed(const char *cond, const char *file, int line,
                  const char *func)
{
    fprintf(stderr, "tornado_cgen %s:%d: %s: invariant failed: %s\n",
            file, line, func, cond);
    fflush(stderr);
    abort();
}
#endif

tcg_state *
tcg_state_gone(void)
{
    PyErr_SetString(PyExc_RuntimeError,
                    "tornado_cgen._core has been cleared (interpreter exit)");
    return NULL;
}

/* ---- shared helpers ---------------------------------------------------- */

int
tcg_check_noargs(const char *name, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", name);
        return -1;
    }
    if (nargs != 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes no arguments (%zd given)",
                     name, nargs);
        return -1;
    }
    return 0;
}

int
tcg_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames, const char *const *names, int n,
               int posonly, int maxpos, int required, PyObject **out)
{
    if (nargs > maxpos) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %d positional argument%s "
                     "(%zd given)", fname, maxpos, maxpos == 1 ? "" : "s",
                     nargs);
        return -1;
    }
    bool given[16] = {false};   /* our functions take a handful */
    if (n > 16) {
        PyErr_Format(PyExc_SystemError, "%s(): too many parameters", fname);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        out[i] = args[i];
        given[i] = true;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int i = posonly;
        while (i < n && PyUnicode_CompareWithASCIIString(key, names[i]) != 0) {
            i++;
        }
        if (i == n) {
            for (int j = 0; j < posonly; j++) {
                if (PyUnicode_CompareWithASCIIString(key, names[j]) == 0) {
                    PyErr_Format(PyExc_TypeError,
                                 "%s() got some positional-only arguments "
                                 "passed as keyword arguments: '%U'",
                                 fname, key);
                    return -1;
                }
            }
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected keyword argument '%U'",
                         fname, key);
            return -1;
        }
        if (given[i]) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got multiple values for argument '%s'",
                         fname, names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
        given[i] = true;
    }
    for (int i = 0; i < required; i++) {
        if (!given[i]) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing required argument '%s' (pos %d)",
                         fname, names[i], i + 1);
            return -1;
        }
    }
    return 0;
}

int
tcg_check_onearg(const char *name, Py_ssize_t nargs, PyObject *kwnames)
{
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", name);
        return -1;
    }
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes exactly one argument (%zd given)", name, nargs);
        return -1;
    }
    return 0;
}

PyObject *
tcg_running_loop(tcg_state *st)
{
    if (st->c.running_loop != NULL &&
        st->c.running_thread == PyThread_get_thread_ident()) {
        return st->c.running_loop;
    }
    PyObject *loop = PyObject_CallNoArgs(st->c.get_running_loop);
    if (loop == NULL) {
        return NULL;
    }
    /* The thread state keeps the running loop alive while it runs. */
    Py_DECREF(loop);
    if (loop == Py_None) {
        return NULL;
    }
    return loop;
}

PyObject *
tcg_get_event_loop(tcg_state *st)
{
    PyObject *loop = tcg_running_loop(st);
    if (loop != NULL) {
        return Py_NewRef(loop);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    return PyObject_CallNoArgs(st->c.get_event_loop);
}

void
tcg_log_current_exception(tcg_state *st, PyObject *logger, const char *msg,
                          PyObject *arg)
{
    PyObject *exc_type, *exc, *tb;
    PyErr_Fetch(&exc_type, &exc, &tb);
    PyErr_NormalizeException(&exc_type, &exc, &tb);
    if (exc == NULL) {
        Py_XDECREF(exc_type);
        Py_XDECREF(tb);
        return;
    }
    if (tb != NULL) {
        PyException_SetTraceback(exc, tb);
    }
    PyObject *res = NULL;
    PyObject *pymsg = PyUnicode_FromString(msg);
    /* Strong: the hook may be replaced while it runs. */
    PyObject *hook = Py_XNewRef(st->c.log_hook);
    if (pymsg != NULL && hook != NULL) {
        /* hook(logger, msg, args, exc) */
        PyObject *args = arg != NULL ? PyTuple_Pack(1, arg)
                                     : Py_NewRef(st->c.empty_tuple);
        if (args != NULL) {
            res = PyObject_CallFunctionObjArgs(hook, logger, pymsg, args, exc,
                                               NULL);
            Py_DECREF(args);
        }
        Py_DECREF(pymsg);
    }
    else if (pymsg != NULL) {
        /* logger.error(msg[, arg], exc_info=exc) */
        PyObject *args[4] = {logger, pymsg, arg, exc};
        if (arg != NULL) {
            res = PyObject_VectorcallMethod(
                st->c.str_error, args,
                3 | PY_VECTORCALL_ARGUMENTS_OFFSET, st->c.kwnames_exc_info);
        }
        else {
            args[2] = exc;
            res = PyObject_VectorcallMethod(
                st->c.str_error, args,
                2 | PY_VECTORCALL_ARGUMENTS_OFFSET, st->c.kwnames_exc_info);
        }
        Py_DECREF(pymsg);
    }
    if (res == NULL) {
        PyErr_WriteUnraisable(logger);
    }
    Py_XDECREF(hook);
    Py_XDECREF(res);
    Py_XDECREF(exc_type);
    Py_XDECREF(exc);
    Py_XDECREF(tb);
}

PyObject *
tcg_call_in_context(PyObject *ctx, PyObject *fn, PyObject *arg)
{
    if (ctx == NULL) {
        return arg ? PyObject_CallOneArg(fn, arg) : PyObject_CallNoArgs(fn);
    }
    if (PyContext_Enter(ctx) < 0) {
        return NULL;
    }
    PyObject *res = arg ? PyObject_CallOneArg(fn, arg)
                        : PyObject_CallNoArgs(fn);
    if (PyContext_Exit(ctx) < 0) {
        Py_XDECREF(res);
        return NULL;
    }
    return res;
}

/* ---- module init ------------------------------------------------------- */

PyObject *
tcg_import_attr(const char *modname, const char *attr)
{
    PyObject *mod = PyImport_ImportModule(modname);
    if (mod == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_GetAttrString(mod, attr);
    Py_DECREF(mod);
    return res;
}

static PyObject *
get_logger(const char *name)
{
    PyObject *getLogger = tcg_import_attr("logging", "getLogger");
    if (getLogger == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_CallFunction(getLogger, "s", name);
    Py_DECREF(getLogger);
    return res;
}

#define INTERN(field, text)                                         \
    do {                                                            \
        if ((st->c.field = PyUnicode_InternFromString(text)) == NULL) \
            return -1;                                              \
    } while (0)

static int
common_exec(PyObject *m, tcg_state *st)
{
    tcg_common_state *c = &st->c;
    if ((c->asyncio = PyImport_ImportModule("asyncio")) == NULL ||
        (c->CancelledError =
             PyObject_GetAttrString(c->asyncio, "CancelledError")) == NULL ||
        (c->InvalidStateError =
             PyObject_GetAttrString(c->asyncio, "InvalidStateError")) == NULL ||
        (c->get_running_loop =
             PyObject_GetAttrString(c->asyncio, "_get_running_loop")) == NULL ||
        (c->asyncio_logger = get_logger("asyncio")) == NULL ||
        (c->app_log = get_logger("tornado.application")) == NULL ||
        (c->copy_context = tcg_import_attr("contextvars", "copy_context")) == NULL ||
        (c->empty_tuple = PyTuple_New(0)) == NULL) {
        return -1;
    }
    /* asyncio.Future() uses the private events._get_event_loop (it warns
     * with the right stack level); fall back to the public name. */
    c->get_event_loop = tcg_import_attr("asyncio.events", "_get_event_loop");
    if (c->get_event_loop == NULL) {
        PyErr_Clear();
        c->get_event_loop = PyObject_GetAttrString(c->asyncio, "get_event_loop");
        if (c->get_event_loop == NULL) {
            return -1;
        }
    }
    INTERN(str_call_soon, "call_soon");
    INTERN(str_call_exception_handler, "call_exception_handler");
    INTERN(str_get_debug, "get_debug");
    INTERN(str_context, "context");
    INTERN(str_error, "error");
    INTERN(str_exc_info, "exc_info");
    INTERN(str_message, "message");
    INTERN(str_exception, "exception");
    INTERN(str_future, "future");
    INTERN(str_source_traceback, "source_traceback");
    if ((c->kwnames_context = PyTuple_Pack(1, c->str_context)) == NULL ||
        (c->kwnames_exc_info = PyTuple_Pack(1, c->str_exc_info)) == NULL ||
        (c->str_loop = PyUnicode_InternFromString("loop")) == NULL ||
        (c->kwnames_loop = PyTuple_Pack(1, c->str_loop)) == NULL) {
        return -1;
    }
    c->running_loop = NULL;
    c->running_thread = 0;
    (void)m;
    return 0;
}

static int
common_traverse(tcg_common_state *c, visitproc visit, void *arg)
{
    Py_VISIT(c->asyncio);
    Py_VISIT(c->CancelledError);
    Py_VISIT(c->InvalidStateError);
    Py_VISIT(c->get_running_loop);
    Py_VISIT(c->get_event_loop);
    Py_VISIT(c->asyncio_logger);
    Py_VISIT(c->app_log);
    Py_VISIT(c->copy_context);
    Py_VISIT(c->future_factory);
    Py_VISIT(c->log_hook);
    /* interned strings and tuples of them hold no cycles */
    return 0;
}

static void
common_clear(tcg_common_state *c)
{
    Py_CLEAR(c->asyncio);
    Py_CLEAR(c->CancelledError);
    Py_CLEAR(c->InvalidStateError);
    Py_CLEAR(c->get_running_loop);
    Py_CLEAR(c->get_event_loop);
    Py_CLEAR(c->asyncio_logger);
    Py_CLEAR(c->app_log);
    Py_CLEAR(c->copy_context);
    Py_CLEAR(c->future_factory);
    Py_CLEAR(c->log_hook);
    Py_CLEAR(c->kwnames_loop);
    Py_CLEAR(c->str_loop);
    Py_CLEAR(c->empty_tuple);
    Py_CLEAR(c->str_call_soon);
    Py_CLEAR(c->str_call_exception_handler);
    Py_CLEAR(c->str_get_debug);
    Py_CLEAR(c->str_context);
    Py_CLEAR(c->kwnames_context);
    Py_CLEAR(c->str_error);
    Py_CLEAR(c->str_exc_info);
    Py_CLEAR(c->kwnames_exc_info);
    Py_CLEAR(c->str_message);
    Py_CLEAR(c->str_exception);
    Py_CLEAR(c->str_future);
    Py_CLEAR(c->str_source_traceback);
    c->running_loop = NULL;
}

static int
module_exec(PyObject *m)
{
    tcg_state *st = tcg_state_from_module(m);
    st->cleared = false;
    if (common_exec(m, st) < 0 ||
        tcg_future_exec(m, st) < 0 ||
        tcg_loop_exec(m, st) < 0 ||
        tcg_runner_exec(m, st) < 0 ||
        tcg_speedup_exec(m, st) < 0 ||
        tcg_transport_exec(m, st) < 0) {
        return -1;
    }
    return 0;
}

static int
module_traverse(PyObject *m, visitproc visit, void *arg)
{
    tcg_state *st = tcg_state_from_module(m);
    int r;
    if ((r = common_traverse(&st->c, visit, arg)) != 0 ||
        (r = tcg_future_traverse(st, visit, arg)) != 0 ||
        (r = tcg_loop_traverse(st, visit, arg)) != 0 ||
        (r = tcg_runner_traverse(st, visit, arg)) != 0 ||
        (r = tcg_speedup_traverse(st, visit, arg)) != 0 ||
        (r = tcg_transport_traverse(st, visit, arg)) != 0) {
        return r;
    }
    return 0;
}

static int
module_clear(PyObject *m)
{
    tcg_state *st = tcg_state_from_module(m);
#ifdef TCG_DEBUG
    /* A debug build says, if asked, what its freelists held when the
     * module went away (python -m tornado_cgen check: memory): the line
     * shows that the module was cleared, so the freelists were emptied. */
    const char *report = getenv("TCG_DEBUG_REPORT_CLEAR");
    if (!st->cleared && report != NULL && *report != '\0') {
        fprintf(stderr, "tcg: module cleared; freelists emptied: "
                "%d futures, %d handles, %d timer handles\n",
                st->fut.freelist.len, st->loop.handle.freelist[0].len,
                st->loop.handle.freelist[1].len);
    }
#endif
    st->cleared = true;
    tcg_transport_clear(st);
    tcg_speedup_clear(st);
    tcg_runner_clear(st);
    tcg_loop_clear(st);
    tcg_future_clear(st);
    common_clear(&st->c);
    return 0;
}

static void
module_free(void *m)
{
    module_clear((PyObject *)m);
}

/* _stats(): the activity counters (tcg.h's tcg_stats), and how many
 * objects each freelist holds, as a dict. */
static PyObject *
module_stats(PyObject *m, PyObject *Py_UNUSED(ignored))
{
    tcg_state *st = tcg_state_from_module(m);
    tcg_stats *s = &st->stats;
    return Py_BuildValue("{sKsKsKsKsKsKsOsnsnsn}",
                         "coroutine_calls", s->coroutine_calls,
                         "runner_steps", s->runner_steps,
                         "loop_iterations", s->loop_iterations,
                         "transport_reads", s->transport_reads,
                         "transport_writes", s->transport_writes,
                         "aio_future_reads", s->aio_future_reads,
                         "aio_layout_known",
                         st->run.aio_result_offset >= 0 ? Py_True : Py_False,
                         "future_freelist", (Py_ssize_t)st->fut.freelist.len,
                         "handle_freelist",
                         (Py_ssize_t)st->loop.handle.freelist[0].len,
                         "timer_handle_freelist",
                         (Py_ssize_t)st->loop.handle.freelist[1].len);
}

/* _clear_freelists(): free the dead Futures, Handles and TimerHandles kept
 * for reuse, as gc.collect() frees CPython's own freelists; returns how
 * many there were.  For leak hunts: a freelist filling up (up to
 * TCG_FREELIST_MAX objects each) looks like growth. */
static PyObject *
module_clear_freelists(PyObject *m, PyObject *Py_UNUSED(ignored))
{
    tcg_state *st = tcg_state_if_live(m);
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    tcg_freelist *lists[] = {&st->fut.freelist,
                             &st->loop.handle.freelist[0],
                             &st->loop.handle.freelist[1]};
    long n = 0;
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        n += lists[i]->len;
        tcg_freelist_clear(lists[i]);
    }
    return PyLong_FromLong(n);
}

/* What the two setters below share: store `value` (a callable, or None
 * for NULL) in the common state's field at `offset`.  Not into a cleared
 * state, whose fields must stay NULL. */
static PyObject *
set_common_callable(PyObject *m, size_t offset, PyObject *value,
                    const char *what)
{
    tcg_state *st = tcg_state_if_live(m);
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    if (value != Py_None && !PyCallable_Check(value)) {
        PyErr_Format(PyExc_TypeError, "the %s must be callable", what);
        return NULL;
    }
    PyObject **field = (PyObject **)((char *)&st->c + offset);
    Py_XSETREF(*field, value == Py_None ? NULL : Py_NewRef(value));
    Py_RETURN_NONE;
}

/* _set_future_factory(factory): install() makes coroutines, multi() and
 * our loops' create_future() hand out factory() / factory(loop=loop)
 * futures (asyncio.Future); None restores our Future. */
static PyObject *
module_set_future_factory(PyObject *m, PyObject *factory)
{
    return set_common_callable(m, offsetof(tcg_common_state, future_factory),
                               factory, "future factory");
}

/* _set_log_hook(hook): install() makes the C code's log calls go through
 * hook(logger, msg, args, exc) (tcg.h); None restores logger.error. */
static PyObject *
module_set_log_hook(PyObject *m, PyObject *hook)
{
    return set_common_callable(m, offsetof(tcg_common_state, log_hook), hook,
                               "log hook");
}

static PyMethodDef module_methods[] = {
    {"_set_future_factory", module_set_future_factory, METH_O,
     "Make coroutines, multi() and create_future() hand out factory() "
     "futures (None: our Future)."},
    {"_set_log_hook", module_set_log_hook, METH_O,
     "Make the C code log through hook(logger, msg, args, exc) (None: "
     "logger.error)."},
    {"_clear_freelists", module_clear_freelists, METH_NOARGS,
     "Free the Futures and Handles kept for reuse; returns how many."},
    {"_stats", module_stats, METH_NOARGS,
     "Counts of coroutine calls, Runner steps, loop iterations, "
     "transport reads and writes and asyncio.Future outcomes read from the "
     "struct made by the C code since import, whether that struct's layout "
     "is known, and the number of objects on each freelist."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_multiple_interpreters
    /* All state is per module, but the freelists, the running-loop cache
     * and the cross-thread ready ring rely on one GIL for every
     * interpreter that imports us: shared-GIL subinterpreters only. */
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_SUPPORTED},
#endif
#ifdef Py_mod_gil
    /* Free-threaded builds: we need the GIL (see above). */
    {Py_mod_gil, Py_MOD_GIL_USED},
#endif
    {0, NULL},
};

PyModuleDef tcg_moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tornado_cgen._core",
    .m_doc = "The C core of tornado-cgen: Future, Runner and event loop.",
    .m_size = sizeof(tcg_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&tcg_moduledef);
}
