/* tcg.h: what every file of tornado_cgen._core shares.
 *
 * Owns: the module state struct (one per module object; no C globals), the
 * small compatibility layer for CPython 3.10 to 3.13 headers, and the helpers
 * that find the module state from a type or a module.
 *
 * Each part of the extension (future.c, runner.c, loop.c, ...) declares its
 * own slice of the state in its own header, included below, and exports
 * three functions that module.c calls: tcg_<part>_exec (create types, fill
 * the slice), tcg_<part>_traverse and tcg_<part>_clear.
 */
#ifndef TCG_H
#define TCG_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdbool.h>
#include <stdint.h>

#if PY_VERSION_HEX < 0x030A0000
#  error "tornado-cgen needs CPython 3.10 or newer"
#endif

/* ---- compatibility ----------------------------------------------------- */

/* Private CPython APIs, used here and nowhere else. */

/* A dict sized for `n` items, so filling it never resizes. */
static inline PyObject *
tcg_dict_presized(Py_ssize_t n)
{
    return _PyDict_NewPresized(n);
}

/* Is `ctx` the thread's current contextvars.Context?  (A struct read;
 * there is no public API short of copying the context.) */
static inline int
tcg_context_is_current(PyObject *ctx)
{
    return PyThreadState_Get()->context == ctx;
}

/* Invariant checks: on in debug builds (TCG_DEBUG=1 or TCG_SANITIZE=1 at
 * build time), where a broken one aborts naming the condition and the
 * line; compiled away otherwise. */
#ifdef TCG_DEBUG
_Noreturn void tcg_assert_failed(const char *cond, const char *file,
                                 int line, const char *func);
#  define TCG_ASSERT(cond)                                               \
    ((cond) ? (void)0                                                    \
            : tcg_assert_failed(#cond, __FILE__, __LINE__, __func__))
#else
#  define TCG_ASSERT(cond) ((void)0)
#endif

/* Branch hints for the hot paths. */
#define TCG_LIKELY(x) __builtin_expect(!!(x), 1)
#define TCG_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- calls on the hot paths --------------------------------------------
 *
 * callable(*args) where a call per coroutine or per callback is paid.  A
 * Python function is called through its own vectorcall slot: the same
 * call PyObject_Vectorcall makes, without looking the slot up through the
 * type and without the result check, which only catches C functions that
 * return a value with an exception set (or NULL without one); the
 * interpreter never does.  Anything else goes through PyObject_Vectorcall.
 */
static inline PyObject *
tcg_call(PyObject *callable, PyObject *const *args, size_t nargsf,
         PyObject *kwnames)
{
    if (PyFunction_Check(callable)) {
        return ((PyFunctionObject *)callable)->vectorcall(callable, args,
                                                         nargsf, kwnames);
    }
    return PyObject_Vectorcall(callable, args, nargsf, kwnames);
}

/* ---- freelists ----------------------------------------------------------
 *
 * A LIFO stack of dead objects of one exact GC type, kept for reuse (the
 * Future, Handle and TimerHandle types each have one in the module
 * state).  An entry is untracked, has refcount 0 and NULL object fields,
 * and holds no reference to its type.  The deallocator pushes (only while
 * the state is live: at interpreter exit objects are freed), the
 * constructor pops and revives, the module's clear frees what is left.
 */
#define TCG_FREELIST_MAX 256

typedef struct {
    int len;
    PyObject *items[TCG_FREELIST_MAX];
} tcg_freelist;

/* A dead object of `tp`, revived (refcount 1, a reference to `tp`, not yet
 * tracked: the caller fills its fields, then tracks it), or NULL if the
 * list is empty. */
static inline PyObject *
tcg_freelist_pop(tcg_freelist *fl, PyTypeObject *tp)
{
    if (fl->len == 0) {
        return NULL;
    }
    return PyObject_Init(fl->items[--fl->len], tp);
}

/* Keep `op` (untracked, cleared) if there is room: true if kept, else the
 * caller frees it. */
static inline bool
tcg_freelist_push(tcg_freelist *fl, PyObject *op)
{
    if (fl->len == TCG_FREELIST_MAX) {
        return false;
    }
    fl->items[fl->len++] = op;
    return true;
}

/* Free every object kept (module clear). */
static inline void
tcg_freelist_clear(tcg_freelist *fl)
{
    while (fl->len > 0) {
        PyObject_GC_Del(fl->items[--fl->len]);
    }
}

/* ---- type version tags ------------------------------------------------- */

/* tp's version tag, or 0 if it has no valid one.  CPython gives every
 * version of a class a tag of its own, never reused, and any change to the
 * class or to one of its bases drops it: a verdict about a class's
 * attributes holds while its tag is the one it was reached under.  A
 * lookup with _PyType_Lookup() assigns a tag if the class can have one. */
static inline unsigned int
tcg_type_tag(PyTypeObject *tp)
{
    return PyType_HasFeature(tp, Py_TPFLAGS_VALID_VERSION_TAG)
               ? tp->tp_version_tag : 0;
}

/* ---- module state ------------------------------------------------------ */

typedef struct tcg_state tcg_state;

/* Objects and strings used by more than one part. */
typedef struct {
    PyObject *asyncio;            /* the asyncio package */
    PyObject *CancelledError;     /* asyncio.CancelledError */
    PyObject *InvalidStateError;  /* asyncio.InvalidStateError */
    PyObject *get_running_loop;   /* asyncio._get_running_loop (None if none) */
    PyObject *get_event_loop;     /* asyncio.events._get_event_loop */
    PyObject *asyncio_logger;     /* logging.getLogger("asyncio") */
    PyObject *app_log;            /* logging.getLogger("tornado.application") */
    PyObject *copy_context;       /* contextvars.copy_context */

    /* The futures coroutines, multi() and loop.create_future() hand out:
     * NULL is our C Future (standalone mode); install() sets asyncio.Future
     * (called as factory() and factory(loop=loop)).  Everything that
     * touches such a future has a generic, method-call path. */
    PyObject *future_factory;
    PyObject *str_loop;
    PyObject *kwnames_loop;       /* ("loop",) */

    /* NULL, or what tcg_log_current_exception() calls instead of
     * logger.error: hook(logger, msg, args, exc).  install() sets one that
     * makes the record Tornado's own code would make, placed (pathname,
     * lineno, funcName) at the Tornado line that logs the same message. */
    PyObject *log_hook;
    PyObject *empty_tuple;

    /* Interned attribute and keyword names. */
    PyObject *str_call_soon;
    PyObject *str_call_exception_handler;
    PyObject *str_get_debug;
    PyObject *str_context;        /* also the 1-tuple kwnames below */
    PyObject *kwnames_context;    /* ("context",) */
    PyObject *str_error;
    PyObject *str_exc_info;
    PyObject *kwnames_exc_info;   /* ("exc_info",) */
    PyObject *str_message;
    PyObject *str_exception;
    PyObject *str_future;
    PyObject *str_source_traceback;

    /* A one-entry cache of the running loop: set by our own loop while it
     * runs on `running_thread`.  Borrowed; the loop clears it on exit.
     * Anything else (other threads, other loops) takes the slow path. */
    PyObject *running_loop;
    unsigned long running_thread;
} tcg_common_state;

#include "future.h"
#include "runner.h"
#include "loop.h"
#include "speedup.h"
#include "transport.h"

/* Activity counters, read by _core._stats(): the proof that a run went
 * through the C code (install() under Tornado's suite).  Plain counters:
 * the GIL serialises every update. */
typedef struct {
    unsigned long long coroutine_calls;   /* gen.coroutine wrapper calls */
    unsigned long long runner_steps;      /* generator sends and throws */
    unsigned long long loop_iterations;   /* iterations of any of our loops */
    unsigned long long transport_reads;   /* reads delivered by transport.c */
    unsigned long long transport_writes;  /* writes sent whole by transport.c */
    unsigned long long aio_future_reads;  /* asyncio.Future outcomes read
                                           * from its struct (runner.c) */
} tcg_stats;

struct tcg_state {
    bool cleared;              /* module_clear ran: every field is NULL */
    tcg_stats stats;
    tcg_common_state c;
    tcg_future_state fut;
    tcg_runner_state run;
    tcg_loop_state loop;
    tcg_speedup_state speedup;
    tcg_transport_state transport;
};

extern PyModuleDef tcg_moduledef;

/* ---- finding the module state: one rule --------------------------------
 *
 * 1. Methods are METH_METHOD and take the state from their defining class:
 *    tcg_state_from_cls(cls), one field read.
 * 2. Slots (tp_init, tp_repr, am_send, tp_finalize, ...) and deallocators
 *    take it from the type they were given: tcg_state_from_type(tp) reads
 *    tp's own module, or walks tp_base (never tp_mro) for a Python subclass
 *    of one of our types.  Objects that outlive calls (the loop) keep a
 *    strong reference to the module and a pointer to its state.
 * 3. Nothing walks the MRO, and nothing assumes the state is there: at
 *    interpreter exit the collector clears types (tp_mro, ht_module) and
 *    the module (module_clear) in any order while our objects are still
 *    alive.  Both helpers then return NULL; tcg_state_from_cls() raises
 *    RuntimeError, tcg_state_from_type() sets no exception, and the caller
 *    skips what needed the state (a freelist, a log line) or raises.
 */

static inline tcg_state *
tcg_state_from_module(PyObject *module)
{
    return (tcg_state *)PyModule_GetState(module);
}

/* The live state behind `module` (a module of ours), else NULL. */
static inline tcg_state *
tcg_state_if_live(PyObject *module)
{
    if (module == NULL) {
        return NULL;
    }
    tcg_state *st = tcg_state_from_module(module);
    return st->cleared ? NULL : st;
}

/* Our module behind `tp`: its own, or that of the nearest type of ours on
 * its tp_base chain (a Python subclass has none of its own).  Borrowed;
 * NULL, no exception set, if there is none any more (interpreter exit). */
static inline PyObject *
tcg_module_from_type(PyTypeObject *tp)
{
    for (; tp != NULL && (tp->tp_flags & Py_TPFLAGS_HEAPTYPE);
         tp = tp->tp_base) {
        PyObject *mod = ((PyHeapTypeObject *)tp)->ht_module;
        if (mod != NULL && PyModule_GetDef(mod) == &tcg_moduledef) {
            return mod;
        }
    }
    return NULL;   /* static types (object, ...) are never ours */
}

/* Rule 2: the live state behind `tp`, else NULL with no exception set. */
static inline tcg_state *
tcg_state_from_type(PyTypeObject *tp)
{
    return tcg_state_if_live(tcg_module_from_type(tp));
}

/* Raise the error for "the module is gone" and return NULL. */
tcg_state *tcg_state_gone(void);

/* Rule 1: for METH_METHOD functions, `cls` is the defining class, a heap
 * type of ours.  NULL with RuntimeError set once cleared at exit. */
static inline tcg_state *
tcg_state_from_cls(PyTypeObject *cls)
{
    tcg_state *st = tcg_state_if_live(((PyHeapTypeObject *)cls)->ht_module);
    return TCG_LIKELY(st != NULL) ? st : tcg_state_gone();
}

/* Argument checks for METH_METHOD | METH_FASTCALL | METH_KEYWORDS methods
 * that take nothing, or exactly one positional argument; the errors read
 * as CPython's for METH_NOARGS and METH_O ("Future.result() takes no
 * arguments (1 given)").  0, or -1 with TypeError set. */
int tcg_check_noargs(const char *name, Py_ssize_t nargs, PyObject *kwnames);
int tcg_check_onearg(const char *name, Py_ssize_t nargs, PyObject *kwnames);

/* The argument parser of our METH_FASTCALL | METH_KEYWORDS functions that
 * take more than nothing or one argument (PyArg_ParseTupleAndKeywords
 * costs more than the call).  `names` lists the n parameters: the first
 * `posonly` are positional-only, those before `maxpos` may also come
 * positionally, the rest are keyword-only; the first `required` must be
 * given.  out[i] is set to the argument for names[i] (borrowed), or left
 * as the caller initialised it (its default).  0, or -1 with TypeError set,
 * worded as CPython words it. */
int tcg_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                   PyObject *kwnames, const char *const *names, int n,
                   int posonly, int maxpos, int required, PyObject **out);

/* Returns a borrowed reference to the running loop, or NULL with no
 * exception set if none runs in this thread, or NULL with an exception. */
PyObject *tcg_running_loop(tcg_state *st);

/* Returns a new reference to the running loop, else the thread's current
 * loop as asyncio.Future() would find it (may raise RuntimeError). */
PyObject *tcg_get_event_loop(tcg_state *st);

/* Log the current exception (which is cleared) through `logger.error(msg,
 * exc_info=True)` (or the common state's log_hook); `msg` is used as a
 * %-format with `arg` when arg is not NULL.  Never raises: a failure to
 * log is written as unraisable. */
void tcg_log_current_exception(tcg_state *st, PyObject *logger,
                               const char *msg, PyObject *arg);

/* getattr(import_module(modname), attr): a new reference. */
PyObject *tcg_import_attr(const char *modname, const char *attr);

/* Call fn(arg) in `ctx` (may be NULL: the current context). New reference. */
PyObject *tcg_call_in_context(PyObject *ctx, PyObject *fn, PyObject *arg);

#endif /* TCG_H */
