/* loop.h: the event loop (included from tcg.h). */
#ifndef TCG_LOOP_H
#define TCG_LOOP_H

typedef struct {
    PyTypeObject *LoopType;   /* NULL until the loop exists */
} tcg_loop_state;

/* Schedule fn(arg) in `ctx` on `loop`, an exact LoopType instance, without
 * building a Python handle where it can be avoided.  0 or -1. */
int tcg_loop_call_soon(tcg_state *st, PyObject *loop, PyObject *fn,
                       PyObject *arg, PyObject *ctx);

int tcg_loop_exec(PyObject *m, tcg_state *st);
int tcg_loop_traverse(tcg_state *st, visitproc visit, void *arg);
void tcg_loop_clear(tcg_state *st);

#endif /* TCG_LOOP_H */
