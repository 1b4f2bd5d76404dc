/* transport.h: the C hot paths of the loop's socket transport (included
 * from tcg.h; transport.c owns everything declared here). */
#ifndef TCG_TRANSPORT_H
#define TCG_TRANSPORT_H

typedef struct tcg_state tcg_state;   /* tcg.h */

/* What one read may take: the stdlib transport's max_size. */
#define TCG_TRANSPORT_RECV_SIZE (256 * 1024)

/* The transport attributes transport.c reads as slots. */
#define TCG_TRANSPORT_NSLOTS 9

typedef struct {
    PyTypeObject *TransportMethodType;
    PyObject *socket_type;        /* socket.socket */
    PyObject *zero;               /* 0: _conn_lost's value while connected */
    /* The buffer reads land in before their bytes are copied out; one per
     * module, used only with the GIL held and no Python code running
     * between the recv() and the copy. */
    char *recv_buf;
    /* The transport's attributes (the stdlib's names) and the protocol's
     * method. */
    /* The class whose __slots__ hold the transport's hot attributes (loop.py
     * registers it with _transport_slots()), and where each slot sits in
     * its instances: transport.c's TR_SLOT_* order. */
    PyTypeObject *slots_type;
    PyTypeObject *slots_default;  /* whose max_size applies by default */
    Py_ssize_t slot_offset[TCG_TRANSPORT_NSLOTS];
    PyObject *str_fatal_error;
    PyObject *str_on_eof;
    PyObject *str_data_received;
    PyObject *str_get_buffer;
    PyObject *str_max_size;
    PyObject *str_buffer_updated;
    PyObject *str_recv_into;
    PyObject *str_recv;
    PyObject *str_send;
    PyObject *str_fileno;
    PyObject *fileno_descr;       /* socket.socket's fileno (_socket's) */
    PyObject *str_gettimeout;
    PyObject *gettimeout_descr;   /* and its gettimeout */
    unsigned int socket_tag;      /* socket.socket's version when checked */
    PyObject *str_protocol;
    PyObject *str_sock;
    PyObject *deque_type;         /* collections.deque: the 3.12+ _buffer */
    PyObject *minus_one;          /* get_buffer(-1) */
    /* _fatal_error()'s messages, the stdlib's words. */
    PyObject *msg_read_error;
    PyObject *msg_write_error;
    PyObject *msg_data_received;
    PyObject *msg_get_buffer;
    PyObject *msg_buffer_updated;
    PyObject *delegated;          /* names read from the stdlib's function */
} tcg_transport_state;

int tcg_transport_exec(PyObject *m, tcg_state *st);
int tcg_transport_traverse(tcg_state *st, visitproc visit, void *arg);
void tcg_transport_clear(tcg_state *st);

#endif /* TCG_TRANSPORT_H */
