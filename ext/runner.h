/* runner.h: the coroutine Runner, the gen.coroutine wrapper and multi
 * (included from tcg.h).  runner.c owns everything declared here. */
#ifndef TCG_RUNNER_H
#define TCG_RUNNER_H

/* The future methods the Runner calls on futures that are not ours. */
typedef enum {
    AIO_DONE, AIO_RESULT, AIO_CANCELLED, AIO_CANCEL, AIO_SET_RESULT,
    AIO_SET_EXCEPTION, AIO_ADD_DONE_CALLBACK, AIO_REMOVE_DONE_CALLBACK,
    AIO_NMETHODS
} tcg_aio_method;

typedef struct {
    PyTypeObject *RunnerType;        /* drives one suspended generator */
    PyTypeObject *CoroutineType;     /* what gen.coroutine(func) returns */
    PyTypeObject *MultiWaiterType;   /* collects a pending multi() */
    PyTypeObject *ConvertType;       /* gen.convert_yielded's type */

    /* Set by tornado_cgen.gen through _core._gen_setup(); NULL before,
     * and then the coroutine wrapper refuses to run.  install() sets
     * Tornado's own objects here (and uninstall() ours again), keeping
     * ours in the alt_ fields so that both are recognised meanwhile. */
    PyObject *Return;            /* gen.Return (or a tuple of classes) */
    PyObject *moment;            /* gen.moment */
    PyObject *null_future;       /* gen._null_future */
    PyObject *alt_moment;        /* another moment, or NULL */
    PyObject *alt_null_future;   /* another _null_future, or NULL */
    PyObject *convert_yielded;   /* convert_yielded's singledispatch */
    PyObject *wrap_concurrent;   /* concurrent.futures.Future -> asyncio */
    PyObject *wrap_awaitable;    /* native coroutine -> a Task the IOLoop holds */

    /* Set by install() through _core._set_tornado_ioloop(): Tornado's
     * IOLoop class and its _ioloop_for_asyncio dict; NULL otherwise. */
    PyObject *tornado_ioloop;
    PyObject *tornado_ioloop_map;
    /* Set by install() through _core._set_tornado_escapes(): Tornado's
     * BadYieldError, the one conversion failure its Runner throws into the
     * generator (every other one escapes the Runner); NULL otherwise.
     * Set, it turns on the other rules of Tornado's Runner (runner.c,
     * tornado_rules). */
    PyObject *tornado_bad_yield;

    PyObject *GeneratorABC;      /* collections.abc.Generator */
    PyObject *AioFutureType;     /* asyncio.Future (_asyncio's) */
    PyObject *AioTaskType;       /* asyncio.Task */
    PyObject *ConcurrentFutureType; /* concurrent.futures.Future */

    /* Their names, and asyncio.Future's and asyncio.Task's own method
     * descriptors, called directly on exact instances of the two (no
     * attribute lookup): install() makes every future an asyncio one. */
    PyObject *aio_names[AIO_NMETHODS];
    PyObject *aio_future_methods[AIO_NMETHODS];
    PyObject *aio_task_methods[AIO_NMETHODS];
    /* Where an exact asyncio.Future keeps its state and its result, as
     * learned at import (runner.c, learn_aio_layout); -1 if unknown. */
    Py_ssize_t aio_state_offset;
    Py_ssize_t aio_result_offset;

    PyObject *str_throw;
    PyObject *str_value;
    PyObject *str_keys;
    PyObject *str_values;
} tcg_runner_state;

int tcg_runner_exec(PyObject *m, tcg_state *st);
int tcg_runner_traverse(tcg_state *st, visitproc visit, void *arg);
void tcg_runner_clear(tcg_state *st);

#endif /* TCG_RUNNER_H */
