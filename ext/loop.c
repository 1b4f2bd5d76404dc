/* loop.c: the event loop.
 *
 * Not written yet: this file only registers its (empty) slice of the
 * module state.
 */
#include "tcg.h"

int
tcg_loop_call_soon(tcg_state *st, PyObject *loop, PyObject *fn,
                   PyObject *arg, PyObject *ctx)
{
    (void)st; (void)loop; (void)fn; (void)arg; (void)ctx;
    PyErr_SetString(PyExc_RuntimeError, "the C loop is not built yet");
    return -1;
}

int
tcg_loop_exec(PyObject *m, tcg_state *st)
{
    (void)m;
    st->loop.LoopType = NULL;
    return 0;
}

int
tcg_loop_traverse(tcg_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->loop.LoopType);
    return 0;
}

void
tcg_loop_clear(tcg_state *st)
{
    Py_CLEAR(st->loop.LoopType);
}
