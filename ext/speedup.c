/* speedup.c: the C side of install(): Tornado's IOLoop methods on our loop.
 *
 * Owns the TornadoMethod type.  install() puts one on Tornado's
 * BaseAsyncIOLoop for add_callback, call_at and remove_timeout, and one on
 * IOLoop for call_later, each keeping Tornado's own function.  Called on
 * an IOLoop whose asyncio_loop is one of ours, it goes straight to the
 * loop's Tornado entry point (loop.c; handle.c then runs the callback
 * under IOLoop._run_callback's rules); on any other IOLoop, on an IOLoop
 * class that overrides _run_callback (whose callbacks must go through it),
 * or with arguments the fast path does not take, it calls Tornado's
 * function, which also raises Tornado's errors.
 *
 * Tornado's arithmetic is kept: call_at(when) is a delay of
 * max(0, when - self.time()) (time() as the IOLoop's class defines it);
 * call_later(delay) is call_at(self.time() + delay), which is a delay of
 * max(0, delay) when neither time() nor call_at() is overridden and the
 * delay is a plain int or float;
 * remove_timeout(handle) is handle.cancel(), done in C for our handles.
 *
 * One more, IOLoop.current (a staticmethod around one of these): while one
 * of our loops runs in this thread, asyncio.get_event_loop() is that loop,
 * so the IOLoop Tornado keeps for it in IOLoop._ioloop_for_asyncio is the
 * answer, found without asyncio's lookup (and its getpid() on 3.11).  If
 * there is none yet, Tornado's function makes it.
 *
 * It binds like a function (tp_descr_get, and Py_TPFLAGS_METHOD_DESCRIPTOR
 * so that io_loop.add_callback(...) makes no bound method), and reads
 * like Tornado's function to introspection: __doc__, __name__,
 * __qualname__ and __module__ are that function's, __wrapped__ is the
 * function (inspect.signature follows it), and other attribute lookups it
 * does not have itself fall through to it.  It is not a Python function
 * object (inspect.isfunction() is false).
 */
#include "tcg.h"
#include <stddef.h>
#include <structmember.h>   /* T_PYSSIZET, READONLY on 3.10 and 3.11 */
#include <time.h>

typedef enum {
    TM_ADD_CALLBACK, TM_CALL_AT, TM_CALL_LATER, TM_REMOVE_TIMEOUT, TM_CURRENT
} tm_kind;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    tm_kind kind;
    PyObject *fallback;     /* Tornado's function */
    PyObject *ioloop_time;  /* IOLoop.time: time.time() unless overridden */
    PyObject *run_callback; /* IOLoop._run_callback: the C loop's rules */
    PyObject *ioloop_map;   /* IOLoop._ioloop_for_asyncio */
    PyObject *call_at;      /* call_later only: the routed call_at */
    PyObject *module;       /* strong: st stays valid while we live */
    tcg_state *st;
    /* What the class of the IOLoops last seen leaves as IOLoop's own
     * (OWN_* bits), and the version of that class it holds for. */
    unsigned int class_tag;
    unsigned int class_own;
} TornadoMethodObject;

/* The IOLoop methods whose overriding the fast paths must respect. */
enum { OWN_RUN_CALLBACK = 1, OWN_CALL_AT = 2, OWN_TIME = 4 };

/* time.time(), as IOLoop.time() returns it. */
static double
wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* 1 if the class attribute `name` of tp is `expected` (and tp's
 * metaclass has none to shadow it), else 0.  Runs no Python code. */
static int
class_keeps(PyTypeObject *tp, PyObject *name, PyObject *expected)
{
    return expected != NULL && _PyType_Lookup(Py_TYPE(tp), name) == NULL &&
           _PyType_Lookup(tp, name) == expected;
}

/* The OWN_* bits of the methods tp does not override: looked up once per
 * version of the class (the lookups give it a version tag if it can have
 * one), then read from the cache while the class stays unchanged. */
static unsigned int
class_own(TornadoMethodObject *m, PyTypeObject *tp)
{
    unsigned int tag = tcg_type_tag(tp);
    if (tag != 0 && tag == m->class_tag) {
        return m->class_own;
    }
    tcg_speedup_state *sp = &m->st->speedup;
    unsigned int own = 0;
    /* Tornado's code reads self.time and self._run_callback: a class with
     * its own __getattribute__ (or __getattr__) answers those lookups. */
    if (tp->tp_getattro != PyObject_GenericGetAttr) {
        m->class_tag = tcg_type_tag(tp);
        m->class_own = 0;
        return 0;
    }
    if (class_keeps(tp, sp->str_run_callback, m->run_callback)) {
        own |= OWN_RUN_CALLBACK;
    }
    if (class_keeps(tp, sp->str_call_at, m->call_at)) {
        own |= OWN_CALL_AT;
    }
    if (class_keeps(tp, sp->str_time, m->ioloop_time)) {
        own |= OWN_TIME;
    }
    m->class_tag = tcg_type_tag(tp);
    m->class_own = own;
    return own;
}

/* ---- what an IOLoop's __dict__ says -------------------------------------- *
 * Every routed call reads io.__dict__: its asyncio_loop, and whether it
 * shadows _run_callback, call_at or time (mock.patch.object sets them
 * there).  Up to 3.12 a dict carries PEP 509's version, which every change
 * to any dict replaces with a new value of one counter, so an unchanged
 * (dict, version) pair is an unchanged dict: the last reading of a dict
 * whose keys are all exact str is kept with the pair and taken again
 * while both match.  3.13 no longer gives a dict a new version on every
 * change, so there every call reads. */

#if PY_VERSION_HEX < 0x030D0000
#define TCG_DICT_VERSION 1

static inline uint64_t
dict_version(PyObject *dict)
{
    uint64_t v;
    _Py_COMP_DIAG_PUSH
    _Py_COMP_DIAG_IGNORE_DEPR_DECLS   /* deprecated (not gone) in 3.12 */
    v = ((PyDictObject *)dict)->ma_version_tag;
    _Py_COMP_DIAG_POP
    return v;
}

/* 1 if every key of dict is an exact str, whose comparisons with the
 * names run no Python code. */
static int
only_str_keys(PyObject *dict)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {
            return 0;
        }
    }
    return 1;
}
#endif

typedef struct {
    unsigned int free;  /* OWN_* bits of the names the dict does not hold */
    PyObject *loop;     /* its asyncio_loop (borrowed), or NULL */
} dict_reading;

/* Read dict for the names in `want` (all of them where the reading is
 * kept) and asyncio_loop.  0, or -1 with an exception set. */
static int
read_dict(tcg_speedup_state *sp, PyObject *dict, unsigned int want,
          dict_reading *r)
{
#ifdef TCG_DICT_VERSION
    uint64_t version = dict_version(dict);
    if (dict == sp->seen_dict && version == sp->seen_version) {
        r->free = sp->seen_free;
        r->loop = sp->seen_loop;
        return 0;
    }
    want = OWN_RUN_CALLBACK | OWN_CALL_AT | OWN_TIME;
#endif
    PyObject *const names[] = {sp->str_run_callback, sp->str_call_at,
                               sp->str_time};
    const unsigned int bits[] = {OWN_RUN_CALLBACK, OWN_CALL_AT, OWN_TIME};
    r->free = 0;
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        if (!(want & bits[i])) {
            continue;
        }
        if (PyDict_GetItemWithError(dict, names[i]) == NULL) {
            if (PyErr_Occurred()) {
                return -1;
            }
            r->free |= bits[i];
        }
    }
    r->loop = PyDict_GetItemWithError(dict, sp->str_asyncio_loop);
    if (r->loop == NULL && PyErr_Occurred()) {
        return -1;
    }
#ifdef TCG_DICT_VERSION
    /* Kept only if no lookup ran Python code: a key's __eq__ may change
     * the dict under the lookups, or answer another way next time with
     * the dict unchanged (Tornado's own lookups would ask it again). */
    if (dict_version(dict) == version && only_str_keys(dict)) {
        sp->seen_dict = dict;
        sp->seen_version = version;
        sp->seen_free = r->free;
        sp->seen_loop = r->loop;
    }
    else {
        sp->seen_dict = NULL;
    }
#endif
    return 0;
}

/* self.time(): the wall clock without a call when IOLoop.time it is
 * (`own`: the OWN_* bits neither io's class nor its __dict__ overrides).
 * A new reference. */
static PyObject *
ioloop_now(TornadoMethodObject *m, PyObject *io, unsigned int own)
{
    if (own & OWN_TIME) {
        return PyFloat_FromDouble(wall_now());
    }
    return PyObject_CallMethodNoArgs(io, m->st->speedup.str_time);
}

/* max(0, d) as a delay in seconds, or -1.0 with an exception set.  NaN is
 * left to the loop, which refuses it. */
static double
delay_from(PyObject *d)
{
    double v = PyFloat_AsDouble(d);
    if (v == -1.0 && PyErr_Occurred()) {
        return -1.0;
    }
    return v < 0 ? 0.0 : v;
}

static PyObject *
tm_fast(TornadoMethodObject *m, PyObject *loop, PyObject *io, unsigned int own,
        PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (m->kind == TM_ADD_CALLBACK) {
        return tcg_loop_tornado_add_callback(loop, args, (size_t)nargs,
                                             kwnames);
    }
    /* call_at(when, callback, ...) / call_later(delay, callback, ...):
     * args[0] is the time argument, args[1] the callback. */
    double delay;
    if (m->kind == TM_CALL_AT) {
        PyObject *now = ioloop_now(m, io, own);
        if (now == NULL) {
            return NULL;
        }
        PyObject *d = PyNumber_Subtract(args[0], now);
        Py_DECREF(now);
        if (d == NULL) {
            return NULL;
        }
        delay = delay_from(d);
        Py_DECREF(d);
    }
    else {
        delay = delay_from(args[0]);
    }
    if (delay == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    return tcg_loop_tornado_call_later(loop, delay, args, nargs, kwnames);
}

/* The fast path, if it applies to `io` (*routed set to 1; the result, or
 * NULL with an exception): io's __dict__ holds an asyncio_loop of ours,
 * and neither io nor its class overrides _run_callback (nor, for
 * call_later, call_at or time, and the delay is a plain number).
 * Otherwise *routed stays 0 and no exception is set. */
static PyObject *
tm_route(TornadoMethodObject *m, PyObject *io, PyObject *const *args,
         Py_ssize_t nargs, PyObject *kwnames, int *routed)
{
    PyObject *dict = PyObject_GenericGetDict(io, NULL);
    if (dict == NULL || !PyDict_Check(dict)) {
        Py_XDECREF(dict);
        PyErr_Clear();   /* no __dict__: not one of Tornado's IOLoops */
        return NULL;
    }
    unsigned int want = m->kind == TM_CALL_LATER
                            ? OWN_RUN_CALLBACK | OWN_CALL_AT | OWN_TIME
                      : m->kind == TM_CALL_AT ? OWN_RUN_CALLBACK | OWN_TIME
                                              : OWN_RUN_CALLBACK;
    dict_reading r;
    if (read_dict(&m->st->speedup, dict, want, &r) < 0) {
        PyErr_Clear();   /* a failed lookup: Tornado's function decides */
        Py_DECREF(dict);
        return NULL;
    }
    unsigned int own = class_own(m, Py_TYPE(io)) & r.free;
    int route = (own & OWN_RUN_CALLBACK) && r.loop != NULL &&
                PyObject_TypeCheck(r.loop, m->st->loop.LoopType);
    if (route && m->kind == TM_CALL_LATER) {
        route = (PyFloat_CheckExact(args[0]) || PyLong_CheckExact(args[0])) &&
                (own & OWN_CALL_AT) && (own & OWN_TIME);
    }
    PyObject *res = NULL;
    if (route) {
        /* Strong: time() (call_at) may run Python code that rebinds it. */
        PyObject *loop = Py_NewRef(r.loop);
        *routed = 1;
        res = tm_fast(m, loop, io, own, args, nargs, kwnames);
        Py_DECREF(loop);
    }
    Py_DECREF(dict);
    return res;
}

static PyObject *
tm_call(PyObject *self, PyObject *const *args, size_t nargsf,
        PyObject *kwnames)
{
    TornadoMethodObject *m = (TornadoMethodObject *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    tcg_state *st = m->st;
    if (TCG_UNLIKELY(m->fallback == NULL)) {
        /* Cleared by the collector while a finalizer still reaches us. */
        PyErr_SetString(PyExc_RuntimeError,
                        "this TornadoMethod has been cleared");
        return NULL;
    }
    /* The fast path wants (io_loop, callback, ...) or (io_loop, time,
     * callback, ...), and the module alive. */
    if (m->kind == TM_CURRENT) {
        /* current(), current(b) or current(instance=b): found, the answer
         * is the same whatever b is. */
        Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
        PyObject *loop = st->c.running_loop;
        if (nargs + nkw <= 1 && !st->cleared && loop != NULL &&
            st->c.running_thread == PyThread_get_thread_ident() &&
            PyDict_CheckExact(m->ioloop_map) &&
            (nkw == 0 || PyUnicode_CompareWithASCIIString(
                             PyTuple_GET_ITEM(kwnames, 0), "instance") == 0)) {
            PyObject *io = PyDict_GetItemWithError(m->ioloop_map, loop);
            if (io != NULL) {
                return Py_NewRef(io);
            }
            if (PyErr_Occurred()) {
                return NULL;
            }
        }
        return PyObject_Vectorcall(m->fallback, args, nargsf, kwnames);
    }
    if (m->kind == TM_REMOVE_TIMEOUT) {
        /* Exactly our handles: a subclass may have its own cancel(). */
        if (nargs == 2 && kwnames == NULL && !st->cleared &&
            (Py_IS_TYPE(args[1], st->loop.handle.TimerHandleType) ||
             Py_IS_TYPE(args[1], st->loop.handle.HandleType))) {
            if (tcg_handle_cancel((tcg_HandleObject *)args[1]) < 0) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
        return PyObject_Vectorcall(m->fallback, args, nargsf, kwnames);
    }
    Py_ssize_t needed = m->kind == TM_ADD_CALLBACK ? 2 : 3;
    if (nargs >= needed && !st->cleared) {
        int routed = 0;
        PyObject *res = tm_route(m, args[0], args + 1, nargs - 1, kwnames,
                                 &routed);
        if (routed) {
            return res;
        }
    }
    return PyObject_Vectorcall(m->fallback, args, nargsf, kwnames);
}

static PyObject *
tm_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)type;
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

/* Tornado's function's names and docs, and everything we do not have
 * ourselves. */
static PyObject *
tm_getattro(PyObject *self, PyObject *name)
{
    TornadoMethodObject *m = (TornadoMethodObject *)self;
    if (!m->st->cleared && m->fallback != NULL) {
        int own = PySequence_Contains(m->st->speedup.delegated, name);
        if (own < 0) {
            return NULL;
        }
        if (own) {
            return PyObject_GetAttr(m->fallback, name);
        }
    }
    PyObject *res = PyObject_GenericGetAttr(self, name);
    if (res == NULL && m->fallback != NULL &&
        PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        res = PyObject_GetAttr(m->fallback, name);
    }
    return res;
}

static PyObject *
tm_repr(PyObject *self)
{
    return PyObject_Repr(((TornadoMethodObject *)self)->fallback);
}

static int
tm_traverse(TornadoMethodObject *m, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(m));
    Py_VISIT(m->fallback);
    Py_VISIT(m->ioloop_time);
    Py_VISIT(m->run_callback);
    Py_VISIT(m->ioloop_map);
    Py_VISIT(m->call_at);
    Py_VISIT(m->module);
    return 0;
}

static int
tm_clear(TornadoMethodObject *m)
{
    Py_CLEAR(m->fallback);
    Py_CLEAR(m->ioloop_time);
    Py_CLEAR(m->run_callback);
    Py_CLEAR(m->ioloop_map);
    Py_CLEAR(m->call_at);
    m->class_tag = 0;
    /* The module (and `st`) stay until dealloc. */
    return 0;
}

static void
tm_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    tm_clear((TornadoMethodObject *)self);
    PyObject *module = ((TornadoMethodObject *)self)->module;
    tp->tp_free(self);
    Py_DECREF(tp);
    Py_XDECREF(module);   /* last: the state may go with it */
}

/* TornadoMethod(kind, fallback, ioloop_class, call_at=None): kind is
 * "add_callback", "call_at", "remove_timeout", "current" or "call_later"
 * (which needs call_at, the routed call_at it may shortcut); ioloop_class
 * is Tornado's IOLoop, whose time and _run_callback mean "not overridden"
 * and whose _ioloop_for_asyncio current() reads. */
static PyObject *
tm_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"kind", "fallback", "ioloop_class", "call_at",
                             NULL};
    const char *kind;
    PyObject *fallback, *ioloop_class, *call_at = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sOO|O:TornadoMethod",
                                     kwlist, &kind, &fallback, &ioloop_class,
                                     &call_at)) {
        return NULL;
    }
    tm_kind k;
    if (strcmp(kind, "add_callback") == 0) {
        k = TM_ADD_CALLBACK;
    }
    else if (strcmp(kind, "call_at") == 0) {
        k = TM_CALL_AT;
    }
    else if (strcmp(kind, "call_later") == 0) {
        k = TM_CALL_LATER;
    }
    else if (strcmp(kind, "remove_timeout") == 0) {
        k = TM_REMOVE_TIMEOUT;
    }
    else if (strcmp(kind, "current") == 0) {
        k = TM_CURRENT;
    }
    else {
        PyErr_Format(PyExc_ValueError, "unknown TornadoMethod kind %R",
                     PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    if (k == TM_CALL_LATER && call_at == Py_None) {
        PyErr_SetString(PyExc_TypeError, "call_later needs call_at");
        return NULL;
    }
    PyObject *module = tcg_module_from_type(type);
    tcg_state *st = tcg_state_if_live(module);
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    PyObject *ioloop_time = PyObject_GetAttr(ioloop_class, st->speedup.str_time);
    PyObject *run_callback = ioloop_time == NULL ? NULL
        : PyObject_GetAttr(ioloop_class, st->speedup.str_run_callback);
    PyObject *ioloop_map = run_callback == NULL ? NULL
        : PyObject_GetAttr(ioloop_class, st->speedup.str_ioloop_map);
    TornadoMethodObject *m = ioloop_map == NULL ? NULL
        : (TornadoMethodObject *)type->tp_alloc(type, 0);
    if (m == NULL) {
        Py_XDECREF(ioloop_time);
        Py_XDECREF(run_callback);
        Py_XDECREF(ioloop_map);
        return NULL;
    }
    m->vectorcall = tm_call;
    m->kind = k;
    m->fallback = Py_NewRef(fallback);
    m->ioloop_time = ioloop_time;       /* owned */
    m->run_callback = run_callback;     /* owned */
    m->ioloop_map = ioloop_map;         /* owned */
    m->call_at = call_at == Py_None ? NULL : Py_NewRef(call_at);
    m->module = Py_NewRef(module);
    m->st = st;
    m->class_tag = 0;
    m->class_own = 0;
    return (PyObject *)m;
}

static PyMemberDef tm_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET,
     offsetof(TornadoMethodObject, vectorcall), READONLY, NULL},
    {"__wrapped__", T_OBJECT, offsetof(TornadoMethodObject, fallback),
     READONLY, "Tornado's function, which this one routes around."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot tm_slots[] = {
    {Py_tp_doc, (void *)"An IOLoop method of Tornado's that install() "
                        "routes to tornado_cgen's loop."},
    {Py_tp_new, tm_new},
    {Py_tp_dealloc, tm_dealloc},
    {Py_tp_traverse, tm_traverse},
    {Py_tp_clear, tm_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_descr_get, tm_descr_get},
    {Py_tp_getattro, tm_getattro},
    {Py_tp_repr, tm_repr},
    {Py_tp_members, tm_members},
    {0, NULL},
};

static PyType_Spec tm_spec = {
    .name = "tornado_cgen._core.TornadoMethod",
    .basicsize = sizeof(TornadoMethodObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_METHOD_DESCRIPTOR,
    .slots = tm_slots,
};

#define SPEEDUP_INTERN(field, text)                                          \
    do {                                                                     \
        if ((st->speedup.field = PyUnicode_InternFromString(text)) == NULL)  \
            return -1;                                                       \
    } while (0)

int
tcg_speedup_exec(PyObject *m, tcg_state *st)
{
    st->speedup.TornadoMethodType =
        (PyTypeObject *)PyType_FromModuleAndSpec(m, &tm_spec, NULL);
    if (st->speedup.TornadoMethodType == NULL ||
        PyModule_AddType(m, st->speedup.TornadoMethodType) < 0) {
        return -1;
    }
    SPEEDUP_INTERN(str_asyncio_loop, "asyncio_loop");
    SPEEDUP_INTERN(str_time, "time");
    SPEEDUP_INTERN(str_call_at, "call_at");
    SPEEDUP_INTERN(str_run_callback, "_run_callback");
    SPEEDUP_INTERN(str_ioloop_map, "_ioloop_for_asyncio");
    st->speedup.delegated = Py_BuildValue("(ssss)", "__doc__", "__name__",
                                          "__qualname__", "__module__");
    return st->speedup.delegated == NULL ? -1 : 0;
}

int
tcg_speedup_traverse(tcg_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->speedup.TornadoMethodType);
    return 0;
}

void
tcg_speedup_clear(tcg_state *st)
{
    Py_CLEAR(st->speedup.TornadoMethodType);
    Py_CLEAR(st->speedup.str_asyncio_loop);
    Py_CLEAR(st->speedup.str_time);
    Py_CLEAR(st->speedup.str_call_at);
    Py_CLEAR(st->speedup.str_run_callback);
    Py_CLEAR(st->speedup.str_ioloop_map);
    Py_CLEAR(st->speedup.delegated);
    st->speedup.seen_dict = NULL;
    st->speedup.seen_loop = NULL;
}
