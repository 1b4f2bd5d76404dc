/* runner.c: the coroutine Runner that drives @gen.coroutine generators.
 *
 * Not written yet: this file only registers its (empty) slice of the
 * module state.
 */
#include "tcg.h"

int
tcg_runner_exec(PyObject *m, tcg_state *st)
{
    (void)m;
    st->run.RunnerType = NULL;
    return 0;
}

int
tcg_runner_traverse(tcg_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->run.RunnerType);
    return 0;
}

void
tcg_runner_clear(tcg_state *st)
{
    Py_CLEAR(st->run.RunnerType);
}
