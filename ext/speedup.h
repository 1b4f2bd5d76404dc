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
    /* The last IOLoop __dict__ the routed methods read, as of one version
     * of it, and what they read there (speedup.c, read_dict()).  The two
     * pointers are compared with a live dict's, never followed on their
     * own, so they are not owned. */
    PyObject *seen_dict;
    PyObject *seen_loop;        /* its asyncio_loop, or NULL */
    uint64_t seen_version;
    unsigned int seen_free;     /* the OWN_* names it does not shadow */
} tcg_speedup_state;

int tcg_speedup_exec(PyObject *m, tcg_state *st);
int tcg_speedup_traverse(tcg_state *st, visitproc visit, void *arg);
void tcg_speedup_clear(tcg_state *st);

#endif /* TCG_SPEEDUP_H */
