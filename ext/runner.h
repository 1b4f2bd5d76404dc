/* runner.h: the coroutine Runner and gen helpers (included from tcg.h). */
#ifndef TCG_RUNNER_H
#define TCG_RUNNER_H

typedef struct {
    PyTypeObject *RunnerType;
} tcg_runner_state;

int tcg_runner_exec(PyObject *m, tcg_state *st);
int tcg_runner_traverse(tcg_state *st, visitproc visit, void *arg);
void tcg_runner_clear(tcg_state *st);

#endif /* TCG_RUNNER_H */
