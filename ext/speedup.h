/* speedup.h: the C side of install() (included from tcg.h; speedup.c owns
 * everything declared here). */
#ifndef TCG_SPEEDUP_H
#define TCG_SPEEDUP_H

typedef struct tcg_state tcg_state;   /* tcg.h */

typedef struct {
    PyTypeObject *TornadoMethodType;  /* a routed IOLoop method */
    PyObject *str_asyncio_loop;
    PyObject *str_time;
    PyObject *str_call_at;
    PyObject *str_run_callback;
    PyObject *str_ioloop_map;
    PyObject *delegated;    /* attribute names read from Tornado's function */
} tcg_speedup_state;

int tcg_speedup_exec(PyObject *m, tcg_state *st);
int tcg_speedup_traverse(tcg_state *st, visitproc visit, void *arg);
void tcg_speedup_clear(tcg_state *st);

#endif /* TCG_SPEEDUP_H */
