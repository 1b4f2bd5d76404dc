/* transport.c: the hot paths of the loop's socket transport, in C.
 *
 * loop.py's _SocketTransport is the stdlib's _SelectorSocketTransport:
 * every method, attribute and rule of it, with four methods replaced by
 * TransportMethod descriptors from here:
 *
 *   _read_ready                 what the loop runs when the socket is
 *                               readable: self._read_ready_cb(), done
 *                               inline when that is the method below;
 *   _read_ready__data_received  recv() into the module's buffer, and the
 *                               bytes that came to protocol.data_received();
 *   _read_ready__get_buffer     recv() into a BufferedProtocol's buffer, and
 *                               protocol.buffer_updated(n);
 *   write                       the first send() of a write when nothing
 *                               is queued.
 *
 * Each keeps the stdlib's function (its fallback) and calls it for all but
 * the common case: a plain socket.socket, bytes or a bytearray, nothing
 * queued, no EOF written, no sendfile in progress, the connection up.  A
 * write that is not sent whole goes to the fallback with what is left, to
 * be queued there (flow control, the writer callback: all the stdlib's).
 *
 * The state is the stdlib's own attributes on the transport (_conn_lost,
 * _eof, _buffer, _protocol, ...), read on every call: the stdlib's methods
 * set them, so both paths always agree.  Errors take the stdlib's course:
 * the same _fatal_error() call with the same message; SystemExit and
 * KeyboardInterrupt propagate.  An OSError made here has no Python frame
 * in its traceback, where the stdlib's would show its own line.
 *
 * The descriptor binds like a function (tp_descr_get, and
 * Py_TPFLAGS_METHOD_DESCRIPTOR so that transport.write(data) makes no bound
 * method) and introspects as the stdlib's function (__name__, __doc__,
 * __qualname__, __module__, inspect.signature()).
 */
#include "tcg.h"
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <structmember.h>   /* T_PYSSIZET, READONLY on 3.10 and 3.11 */

typedef enum {
    TR_READ_READY, TR_READ_DATA, TR_READ_BUFFER, TR_WRITE
} tr_kind;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    tr_kind kind;
    PyObject *fallback;     /* the stdlib's function */
    PyObject *module;       /* strong: st stays valid while we live */
    tcg_state *st;
} TransportMethodObject;

#define TM(op) ((TransportMethodObject *)(op))

/* ---- shared steps --------------------------------------------------------- */

/* With an exception set: as the stdlib's handlers, SystemExit and
 * KeyboardInterrupt propagate (NULL); anything else goes to
 * self._fatal_error(exc, msg) and the method returns None. */
static PyObject *
fatal_error(tcg_transport_state *ts, PyObject *self, PyObject *msg)
{
    if (msg == NULL ||   /* the state was cleared meanwhile (exit) */
        PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return NULL;
    }
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL && exc != NULL) {
        PyException_SetTraceback(exc, tb);
    }
    Py_XDECREF(type);
    if (exc == NULL) {
        /* Normalizing failed and left nothing: nothing to report. */
        Py_XDECREF(tb);
        Py_RETURN_NONE;
    }
    /* The stdlib calls _fatal_error() from its except clause, and its
     * debug-mode log line takes exc_info=True: the exception is the one
     * being handled while it runs, as there. */
    PyObject *prev_type, *prev_exc, *prev_tb;
    PyErr_GetExcInfo(&prev_type, &prev_exc, &prev_tb);
    PyErr_SetExcInfo(Py_NewRef((PyObject *)Py_TYPE(exc)), Py_NewRef(exc),
                     tb);   /* steals all three */
    PyObject *res = PyObject_CallMethodObjArgs(self, ts->str_fatal_error, exc,
                                               msg, NULL);
    PyErr_SetExcInfo(prev_type, prev_exc, prev_tb);
    Py_DECREF(exc);
    if (res == NULL) {
        return NULL;
    }
    Py_DECREF(res);
    Py_RETURN_NONE;
}

/* The hot attributes, in the order of slot_names below.  loop.py declares
 * them as __slots__ of a class of its own (registered with
 * _transport_slots()), so that they are read here as struct fields while
 * the stdlib's code keeps reading and setting them by name. */
enum {
    TR_SLOT_SOCK, TR_SLOT_SOCK_FD, TR_SLOT_PROTOCOL, TR_SLOT_CONN_LOST,
    TR_SLOT_EOF, TR_SLOT_EMPTY_WAITER, TR_SLOT_BUFFER, TR_SLOT_READ_READY_CB,
    TR_SLOT_MAX_SIZE
};

static const char *const slot_names[TCG_TRANSPORT_NSLOTS] = {
    "_sock", "_sock_fd", "_protocol", "_conn_lost",
    "_eof", "_empty_waiter", "_buffer", "_read_ready_cb", "_max_size",
};

/* Is `self` an instance of the registered slots class?  (Only then do the
 * offsets mean anything.) */
static inline bool
has_slots(tcg_transport_state *ts, PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    return ts->slots_type != NULL &&
           (tp->tp_base == ts->slots_type || tp == ts->slots_type ||
            PyType_IsSubtype(tp, ts->slots_type));
}

/* The slot's value, borrowed; NULL if it is unset (the stdlib's code would
 * meet an AttributeError there: the caller leaves it to that code). */
static inline PyObject *
slot(tcg_transport_state *ts, PyObject *self, int i)
{
    return *(PyObject **)((char *)self + ts->slot_offset[i]);
}

/* Is the slot set and falsy, as the stdlib's `not self.<name>`?  1 if so;
 * 0 if it is truthy, unset, or of a type whose truth test could run Python
 * code (the fallback tests it, once); -1 with an exception set.  Known:
 * what the stdlib keeps there (ints, bools, None, a bytearray, a deque). */
static int
slot_false(tcg_transport_state *ts, PyObject *self, int i)
{
    PyObject *v = slot(ts, self, i);
    if (v == NULL) {
        return 0;
    }
    if (v == Py_False || v == Py_None || v == ts->zero) {
        return 1;
    }
    if (PyByteArray_CheckExact(v)) {
        return PyByteArray_GET_SIZE(v) == 0;
    }
    if (!PyLong_CheckExact(v) && !PyBool_Check(v) &&
        Py_TYPE(v) != (PyTypeObject *)ts->deque_type) {
        return 0;
    }
    int t = PyObject_IsTrue(v);
    return t < 0 ? -1 : !t;
}

/* Does socket.socket still leave recv, recv_into, send and fileno to
 * _socket.socket's C methods (nobody set them on the class)?  Checked
 * once per version of the class: its type version tag changes with any
 * change to its dict. */
static bool
socket_methods_plain(tcg_transport_state *ts)
{
    PyTypeObject *tp = (PyTypeObject *)ts->socket_type;
    if (ts->socket_tag != 0 && ts->socket_tag == tcg_type_tag(tp)) {
        return true;
    }
    PyObject *names[] = {ts->str_recv, ts->str_recv_into, ts->str_send,
                         ts->str_fileno, ts->str_gettimeout};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (PyDict_GetItemWithError(tp->tp_dict, names[i]) != NULL) {
            return false;
        }
        if (PyErr_Occurred()) {
            PyErr_Clear();
            return false;
        }
    }
    /* fileno and gettimeout are still the descriptors we call; the lookups
     * also give the class a version tag if it had none. */
    if (_PyType_Lookup(tp, ts->str_fileno) != ts->fileno_descr ||
        _PyType_Lookup(tp, ts->str_gettimeout) != ts->gettimeout_descr) {
        return false;
    }
    ts->socket_tag = tcg_type_tag(tp);
    return true;
}

/* The fd of sock, a plain socket.socket: _socket.socket.fileno(sock), C
 * that runs no Python code.  -1 (no exception set) if it has none. */
static int
socket_fd(tcg_transport_state *ts, PyObject *sock)
{
    PyObject *fdobj = PyObject_Vectorcall(ts->fileno_descr, &sock, 1, NULL);
    if (fdobj == NULL) {
        PyErr_Clear();    /* the fallback's own call meets it */
        return -1;
    }
    int overflow = 0;
    long fd = PyLong_Check(fdobj)
            ? PyLong_AsLongAndOverflow(fdobj, &overflow) : -1;
    Py_DECREF(fdobj);
    if (overflow || fd < 0 || fd > INT_MAX) {
        PyErr_Clear();
        return -1;
    }
    return (int)fd;
}

/* The fd the stdlib's self._sock.recv()/recv_into()/send() would use,
 * when self._sock is a plain socket.socket whose methods nobody replaced:
 * >= 0.  The socket's own fd, not self._sock_fd: a socket closed or
 * detached behind the transport's back has none (the stdlib's call fails
 * with EBADF), and its old number may belong to another file by now.
 * -1: the fallback must do the work. */
static int
plain_socket_fd(tcg_transport_state *ts, PyObject *self)
{
    PyObject *sock = slot(ts, self, TR_SLOT_SOCK);
    if (sock == NULL || Py_TYPE(sock) != (PyTypeObject *)ts->socket_type ||
        !socket_methods_plain(ts)) {
        return -1;
    }
    return socket_fd(ts, sock);
}

static inline bool
would_block(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

/* ---- reading -------------------------------------------------------------- */

/* self._protocol, strong: the slot, or (unset) the attribute by name, with
 * the error or the value a lookup gives there. */
static PyObject *
get_protocol(tcg_transport_state *ts, PyObject *self)
{
    PyObject *protocol = slot(ts, self, TR_SLOT_PROTOCOL);
    if (protocol != NULL) {
        return Py_NewRef(protocol);
    }
    return PyObject_GetAttr(self, ts->str_protocol);
}

/* _read_ready__data_received(): the stdlib's steps, with the socket read
 * into the module's buffer (the stdlib's recv(max_size) allocates 256 KiB
 * per read, which glibc serves with mmap and munmap). */
static PyObject *
read_data(TransportMethodObject *m, PyObject *self)
{
    tcg_state *st = m->st;
    tcg_transport_state *ts = &st->transport;
    if (!has_slots(ts, self)) {
        return PyObject_CallOneArg(m->fallback, self);
    }
    /* if self._conn_lost: return */
    int up = slot_false(ts, self, TR_SLOT_CONN_LOST);
    if (up <= 0) {
        return up < 0 ? NULL : PyObject_CallOneArg(m->fallback, self);
    }
    /* recv(self.max_size): loop.py's max_size property keeps a value set
     * on the transport in the _max_size slot, else it is the stdlib
     * class's (256 KiB, or what a program set there), read through the
     * type cache.  One larger than our buffer, or not a plain int, is the
     * stdlib's to read. */
    PyObject *max = slot(ts, self, TR_SLOT_MAX_SIZE);
    if (max == NULL) {
        max = _PyType_Lookup(ts->slots_default, ts->str_max_size);
    }
    Py_ssize_t size = max != NULL && PyLong_CheckExact(max)
                      ? PyLong_AsSsize_t(max) : -1;
    if (size == -1) {
        PyErr_Clear();   /* too large for a size: the fallback's to read */
    }
    /* No Python code from here to the recv(): the fd stays the socket's. */
    int fd = size <= 0 || size > TCG_TRANSPORT_RECV_SIZE ? -1
           : plain_socket_fd(ts, self);
    if (fd < 0) {
        return PyObject_CallOneArg(m->fallback, self);
    }
    ssize_t n = recv(fd, ts->recv_buf, (size_t)size, 0);
    if (n < 0) {
        if (would_block(errno)) {
            Py_RETURN_NONE;
        }
        PyErr_SetFromErrno(PyExc_OSError);
        return fatal_error(ts, self, ts->msg_read_error);
    }
    if (n == 0) {
        PyObject *r = PyObject_CallMethodNoArgs(self, ts->str_on_eof);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    /* No Python code runs between the recv() and this copy, so no other
     * transport can reuse the buffer in between. */
    PyObject *data = PyBytes_FromStringAndSize(ts->recv_buf, n);
    if (data == NULL) {
        return fatal_error(ts, self, ts->msg_read_error);
    }
    st->stats.transport_reads++;
    PyObject *res = NULL;
    /* Strong: data_received may replace the transport's protocol. */
    PyObject *protocol = get_protocol(ts, self);
    if (protocol != NULL) {
        PyObject *args[3] = {NULL, protocol, data};
        res = PyObject_VectorcallMethod(ts->str_data_received, args + 1,
                                        2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                        NULL);
        Py_DECREF(protocol);
    }
    if (res == NULL) {
        res = fatal_error(ts, self, ts->msg_data_received);
    }
    else {
        Py_SETREF(res, Py_NewRef(Py_None));
    }
    Py_DECREF(data);
    return res;
}

/* _read_ready__get_buffer(): the stdlib's steps for a BufferedProtocol,
 * the socket read straight into the protocol's buffer. */
/* The rest of _read_ready__get_buffer() once get_buffer() gave `buf`:
 * nbytes = self._sock.recv_into(buf), then EOF or buffer_updated(nbytes).
 * `buf` is kept until the end, as the stdlib's local (a bytearray under a
 * memoryview stays exported meanwhile). */
static PyObject *
read_into(TransportMethodObject *m, PyObject *self, PyObject *buf)
{
    tcg_transport_state *ts = &m->st->transport;
    PyObject *nbytes = NULL;
    /* get_buffer() ran Python code: the socket is read again here.  The
     * recv() is made here only into a buffer whose export is C code (not
     * a heap type's, which may be a Python __buffer__) and a socket that
     * is still a plain one; anything else goes through the socket's own
     * recv_into(), with its errors. */
    int fd = PyType_HasFeature(Py_TYPE(buf), Py_TPFLAGS_HEAPTYPE) ? -1
           : plain_socket_fd(ts, self);
    Py_buffer view;
    if (fd >= 0 && PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) == 0) {
        if (PyBuffer_IsContiguous(&view, 'C')) {
            ssize_t n = recv(fd, view.buf, (size_t)view.len, 0);
            int err = errno;
            PyBuffer_Release(&view);
            if (n < 0 && would_block(err)) {
                Py_RETURN_NONE;
            }
            if (n < 0) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
                return fatal_error(ts, self, ts->msg_read_error);
            }
            nbytes = PyLong_FromSsize_t(n);
            if (nbytes == NULL) {
                return fatal_error(ts, self, ts->msg_read_error);
            }
        }
        else {
            PyBuffer_Release(&view);
        }
    }
    else if (fd >= 0) {
        PyErr_Clear();   /* recv_into() below raises it again */
    }
    if (nbytes == NULL) {
        PyObject *sock = PyObject_GetAttr(self, ts->str_sock);
        nbytes = sock == NULL ? NULL
               : PyObject_CallMethodOneArg(sock, ts->str_recv_into, buf);
        Py_XDECREF(sock);
        if (nbytes == NULL) {
            if (PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
                PyErr_ExceptionMatches(PyExc_InterruptedError)) {
                PyErr_Clear();
                Py_RETURN_NONE;
            }
            return fatal_error(ts, self, ts->msg_read_error);
        }
    }
    /* if not nbytes: self._read_ready__on_eof() */
    int t = PyObject_IsTrue(nbytes);
    if (t <= 0) {
        Py_DECREF(nbytes);
        if (t < 0) {
            return NULL;
        }
        PyObject *r = PyObject_CallMethodNoArgs(self, ts->str_on_eof);
        if (r == NULL) {
            return NULL;
        }
        Py_DECREF(r);
        Py_RETURN_NONE;
    }
    m->st->stats.transport_reads++;
    /* self._protocol.buffer_updated(nbytes): the protocol as it is now. */
    PyObject *protocol = get_protocol(ts, self);
    PyObject *res = protocol == NULL ? NULL
        : PyObject_CallMethodOneArg(protocol, ts->str_buffer_updated, nbytes);
    Py_XDECREF(protocol);
    Py_DECREF(nbytes);
    if (res == NULL) {
        return fatal_error(ts, self, ts->msg_buffer_updated);
    }
    Py_DECREF(res);
    Py_RETURN_NONE;
}

/* _read_ready__get_buffer(): the stdlib's steps for a BufferedProtocol,
 * the socket read straight into the protocol's buffer. */
static PyObject *
read_buffer(TransportMethodObject *m, PyObject *self)
{
    tcg_transport_state *ts = &m->st->transport;
    if (!has_slots(ts, self)) {
        return PyObject_CallOneArg(m->fallback, self);
    }
    int up = slot_false(ts, self, TR_SLOT_CONN_LOST);
    if (up <= 0) {
        return up < 0 ? NULL : PyObject_CallOneArg(m->fallback, self);
    }
    if (plain_socket_fd(ts, self) < 0) {
        return PyObject_CallOneArg(m->fallback, self);
    }
    /* buf = self._protocol.get_buffer(-1); if not len(buf): raise */
    PyObject *protocol = get_protocol(ts, self);
    PyObject *buf = protocol == NULL ? NULL
        : PyObject_CallMethodOneArg(protocol, ts->str_get_buffer,
                                    ts->minus_one);
    Py_XDECREF(protocol);
    Py_ssize_t len = buf == NULL ? -1 : PyObject_Size(buf);
    if (len == 0) {
        PyErr_SetString(PyExc_RuntimeError,
                        "get_buffer() returned an empty buffer");
    }
    PyObject *res = len <= 0 ? fatal_error(ts, self, ts->msg_get_buffer)
                             : read_into(m, self, buf);
    Py_XDECREF(buf);
    return res;
}

/* _read_ready(): self._read_ready_cb(), which set_protocol() made one of
 * our bound methods. */
static PyObject *
read_ready(TransportMethodObject *m, PyObject *self)
{
    tcg_transport_state *ts = &m->st->transport;
    if (!has_slots(ts, self) ||
        slot(ts, self, TR_SLOT_READ_READY_CB) == NULL) {
        return PyObject_CallOneArg(m->fallback, self);
    }
    /* Strong: the call may replace it (set_protocol). */
    PyObject *cb = Py_NewRef(slot(ts, self, TR_SLOT_READ_READY_CB));
    PyObject *res;
    PyObject *func = PyMethod_Check(cb) ? PyMethod_GET_FUNCTION(cb) : NULL;
    if (func != NULL && (PyMethod_GET_SELF(cb) != self ||
                         Py_TYPE(func) != Py_TYPE(m) ||
                         TM(func)->fallback == NULL)) {
        func = NULL;   /* not one of ours bound to self: call it */
    }
    if (func != NULL && TM(func)->kind == TR_READ_DATA) {
        res = read_data(TM(func), self);
    }
    else if (func != NULL && TM(func)->kind == TR_READ_BUFFER) {
        res = read_buffer(TM(func), self);
    }
    else if (Py_EnterRecursiveCall(" in the transport's _read_ready")) {
        /* A vectorcall to C has no depth check of its own: a callback
         * that is _read_ready itself recurses as the stdlib's does, to a
         * RecursionError. */
        res = NULL;
    }
    else {
        res = PyObject_CallNoArgs(cb);
        Py_LeaveRecursiveCall();
    }
    Py_DECREF(cb);
    return res;
}

/* ---- writing -------------------------------------------------------------- */

/* May write(data) send at once, here?  The stdlib's checks in its order:
 * no EOF written, no sendfile waiting, the connection not lost, nothing
 * queued; and a plain socket.  The fd (>= 0) if so; -1 if the fallback
 * must take it; -2 with an exception set. */
static int
write_now_fd(tcg_transport_state *ts, PyObject *self)
{
    if (!has_slots(ts, self) ||
        slot(ts, self, TR_SLOT_EOF) != Py_False ||
        slot(ts, self, TR_SLOT_EMPTY_WAITER) != Py_None) {
        return -1;
    }
    int t = slot_false(ts, self, TR_SLOT_CONN_LOST);
    if (t <= 0) {
        return t < 0 ? -2 : -1;
    }
    t = slot_false(ts, self, TR_SLOT_BUFFER);
    if (t <= 0) {
        return t < 0 ? -2 : -1;
    }
    return plain_socket_fd(ts, self);
}

static PyObject *
write_data(TransportMethodObject *m, PyObject *self, PyObject *data)
{
    tcg_state *st = m->st;
    tcg_transport_state *ts = &st->transport;
    if ((!PyBytes_CheckExact(data) && !PyByteArray_CheckExact(data)) ||
        Py_SIZE(data) == 0) {
        /* Other buffers, the TypeError for what is none, empty data. */
        return PyObject_CallFunctionObjArgs(m->fallback, self, data, NULL);
    }
    int fd = write_now_fd(ts, self);
    if (fd < 0) {
        return fd == -1
            ? PyObject_CallFunctionObjArgs(m->fallback, self, data, NULL)
            : NULL;
    }
    /* The data as it is now, as the stdlib's send(data) reads it (no Python
     * code runs in the checks above, but that is theirs to keep). */
    const char *buf = PyBytes_CheckExact(data) ? PyBytes_AS_STRING(data)
                                               : PyByteArray_AS_STRING(data);
    Py_ssize_t len = Py_SIZE(data);
    ssize_t n = send(fd, buf, (size_t)len, 0);
    if (n == len) {
        st->stats.transport_writes++;
        Py_RETURN_NONE;
    }
    if (n < 0) {
        if (would_block(errno)) {
            return PyObject_CallFunctionObjArgs(m->fallback, self, data,
                                                NULL);
        }
        PyErr_SetFromErrno(PyExc_OSError);
        return fatal_error(ts, self, ts->msg_write_error);
    }
    /* Part went: the stdlib's code queues the rest, given as the stdlib
     * makes it, memoryview(data)[n:] (3.12+ keeps that view in its buffer,
     * so the caller's bytearray stays exported until it is sent; before
     * 3.12 the buffer copies it). */
    PyObject *view = PyMemoryView_FromObject(data);
    PyObject *rest = view == NULL ? NULL
                   : PySequence_GetSlice(view, n, len);
    Py_XDECREF(view);
    if (rest == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_CallFunctionObjArgs(m->fallback, self, rest,
                                                 NULL);
    Py_DECREF(rest);
    return res;
}

/* ---- the descriptor ------------------------------------------------------- */

static PyObject *
trm_call(PyObject *callable, PyObject *const *args, size_t nargsf,
         PyObject *kwnames)
{
    TransportMethodObject *m = TM(callable);
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (m->fallback == NULL) {
        /* Cleared by the collector (a class torn down at exit). */
        PyErr_SetString(PyExc_RuntimeError,
                        "transport method called after it was cleared");
        return NULL;
    }
    if (!m->st->cleared && kwnames == NULL) {
        switch (m->kind) {
        case TR_WRITE:
            if (nargs == 2) {
                return write_data(m, args[0], args[1]);
            }
            break;
        case TR_READ_DATA:
            if (nargs == 1) {
                return read_data(m, args[0]);
            }
            break;
        case TR_READ_BUFFER:
            if (nargs == 1) {
                return read_buffer(m, args[0]);
            }
            break;
        case TR_READ_READY:
            if (nargs == 1) {
                return read_ready(m, args[0]);
            }
            break;
        }
    }
    /* Keywords, wrong counts (the stdlib's TypeError), interpreter exit. */
    return PyObject_Vectorcall(m->fallback, args, nargsf, kwnames);
}

static PyObject *
trm_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)type;
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

/* The stdlib's function's names and docs. */
static PyObject *
trm_getattro(PyObject *self, PyObject *name)
{
    TransportMethodObject *m = TM(self);
    if (!m->st->cleared && m->fallback != NULL) {
        int own = PySequence_Contains(m->st->transport.delegated, name);
        if (own < 0) {
            return NULL;
        }
        if (own) {
            return PyObject_GetAttr(m->fallback, name);
        }
        int sig = PyUnicode_Check(name)
                ? PyUnicode_CompareWithASCIIString(name, "__signature__") : 1;
        if (sig == 0) {
            /* inspect.signature(): the stdlib's function's. */
            PyObject *inspect = PyImport_ImportModule("inspect");
            PyObject *res = inspect == NULL ? NULL
                : PyObject_CallMethod(inspect, "signature", "O", m->fallback);
            Py_XDECREF(inspect);
            return res;
        }
    }
    return PyObject_GenericGetAttr(self, name);
}

static PyObject *
trm_repr(PyObject *self)
{
    TransportMethodObject *m = TM(self);
    if (m->fallback == NULL) {
        return PyUnicode_FromString("<TransportMethod (cleared)>");
    }
    return PyUnicode_FromFormat("<TransportMethod over %R>", m->fallback);
}

static int
trm_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(TM(self)->fallback);
    Py_VISIT(TM(self)->module);
    return 0;
}

static int
trm_clear(PyObject *self)
{
    Py_CLEAR(TM(self)->fallback);
    /* The module (and `st`) stay until dealloc. */
    return 0;
}

static void
trm_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    trm_clear(self);
    PyObject *module = TM(self)->module;
    tp->tp_free(self);
    Py_DECREF(tp);
    Py_XDECREF(module);   /* last: the state may go with it */
}

/* TransportMethod(name, fallback): name is "_read_ready",
 * "_read_ready__data_received", "_read_ready__get_buffer" or "write";
 * fallback the stdlib's
 * _SelectorSocketTransport function of that name. */
static PyObject *
trm_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "fallback", NULL};
    const char *name;
    PyObject *fallback;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sO:TransportMethod", kwlist,
                                     &name, &fallback)) {
        return NULL;
    }
    tr_kind k;
    if (strcmp(name, "_read_ready") == 0) {
        k = TR_READ_READY;
    }
    else if (strcmp(name, "_read_ready__data_received") == 0) {
        k = TR_READ_DATA;
    }
    else if (strcmp(name, "_read_ready__get_buffer") == 0) {
        k = TR_READ_BUFFER;
    }
    else if (strcmp(name, "write") == 0) {
        k = TR_WRITE;
    }
    else {
        PyErr_Format(PyExc_ValueError, "unknown TransportMethod name %R",
                     PyTuple_GET_ITEM(args, 0));
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    PyObject *module = tcg_module_from_type(type);
    tcg_state *st = tcg_state_if_live(module);
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    TransportMethodObject *m = (TransportMethodObject *)type->tp_alloc(type, 0);
    if (m == NULL) {
        return NULL;
    }
    m->vectorcall = trm_call;
    m->kind = k;
    m->fallback = Py_NewRef(fallback);
    m->module = Py_NewRef(module);
    m->st = st;
    return (PyObject *)m;
}

/* TransportMethod.register_slots(cls, defaults): cls is the class whose
 * __slots__ hold the attributes of slot_names (each a plain object slot of
 * cls itself); the methods read them as struct fields on instances of it.
 * defaults is the class whose max_size applies when none was set on the
 * transport (the stdlib's transport class).  Once per module: loop.py's
 * _SocketTransport's base. */
static PyObject *
trm_register_slots(PyObject *type, PyObject *args)
{
    PyObject *cls, *defaults;
    if (!PyArg_ParseTuple(args, "O!O!:register_slots", &PyType_Type, &cls,
                          &PyType_Type, &defaults)) {
        return NULL;
    }
    /* A class method: `type` is TransportMethod (or a subclass). */
    tcg_state *st = tcg_state_from_type((PyTypeObject *)type);
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    tcg_transport_state *ts = &st->transport;
    if (!PyType_Check(cls)) {
        PyErr_Format(PyExc_TypeError, "register_slots() needs a class, not %.100s",
                     Py_TYPE(cls)->tp_name);
        return NULL;
    }
    if (ts->slots_type != NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "the transport's slots class is already registered");
        return NULL;
    }
    PyObject *dict = ((PyTypeObject *)cls)->tp_dict;
    Py_ssize_t offsets[TCG_TRANSPORT_NSLOTS];
    for (int i = 0; i < TCG_TRANSPORT_NSLOTS; i++) {
        PyObject *d = dict == NULL ? NULL
                    : PyDict_GetItemString(dict, slot_names[i]);
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type) ||
            ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX ||
            (((PyMemberDescrObject *)d)->d_member->flags & READONLY)) {
            PyErr_Format(PyExc_TypeError,
                         "%.100s has no writable __slots__ entry %s",
                         ((PyTypeObject *)cls)->tp_name, slot_names[i]);
            return NULL;
        }
        offsets[i] = ((PyMemberDescrObject *)d)->d_member->offset;
    }
    memcpy(ts->slot_offset, offsets, sizeof(offsets));
    ts->slots_type = (PyTypeObject *)Py_NewRef(cls);
    ts->slots_default = (PyTypeObject *)Py_NewRef(defaults);
    Py_RETURN_NONE;
}

static PyMethodDef trm_methods[] = {
    {"register_slots", trm_register_slots, METH_VARARGS | METH_CLASS,
     "Register the class whose __slots__ hold the transport attributes "
     "the C methods read."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef trm_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET,
     offsetof(TransportMethodObject, vectorcall), READONLY, NULL},
    /* Not __wrapped__: asyncio would follow that to a function and name
     * its source in every repr of a handle running it, as it does not for
     * the stdlib's method. */
    {"fallback", T_OBJECT, offsetof(TransportMethodObject, fallback),
     READONLY, "The stdlib's function, which this one takes the common "
               "case of."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot trm_slots[] = {
    {Py_tp_doc, (void *)"A socket transport method of the stdlib's, with "
                        "its common case in C."},
    {Py_tp_new, trm_new},
    {Py_tp_dealloc, trm_dealloc},
    {Py_tp_traverse, trm_traverse},
    {Py_tp_clear, trm_clear},
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_descr_get, trm_descr_get},
    {Py_tp_getattro, trm_getattro},
    {Py_tp_repr, trm_repr},
    {Py_tp_members, trm_members},
    {Py_tp_methods, trm_methods},
    {0, NULL},
};

static PyType_Spec trm_spec = {
    .name = "tornado_cgen._core.TransportMethod",
    .basicsize = sizeof(TransportMethodObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC |
             Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE |
             Py_TPFLAGS_METHOD_DESCRIPTOR,
    .slots = trm_slots,
};

/* ---- module state ---------------------------------------------------------- */

/* ---- the loop's sock_recv(), sock_recv_into() and sock_sendall() ------- *
 * The stdlib's coroutines try the socket call first and wait for readiness
 * only when it raises BlockingIOError (or InterruptedError): an exception
 * for every wait.  _sock_recv, _sock_recv_into and _sock_send make that
 * first call and return None where it would have raised; loop.py does the
 * rest as the stdlib does.  A plain socket.socket in non-blocking mode is
 * read and written here; anything else (a subclass, a socket with a
 * timeout, which the call would wait out, arguments the socket module
 * would refuse) gets its own method, its errors included. */

/* The fd of sock if it is a plain socket.socket in non-blocking mode
 * (gettimeout() is 0.0), else -1 with no exception set. */
static int
nonblocking_socket_fd(tcg_transport_state *ts, PyObject *sock)
{
    if (Py_TYPE(sock) != (PyTypeObject *)ts->socket_type ||
        !socket_methods_plain(ts)) {
        return -1;
    }
    PyObject *t = PyObject_Vectorcall(ts->gettimeout_descr, &sock, 1, NULL);
    if (t == NULL) {
        PyErr_Clear();   /* the method's own call meets it */
        return -1;
    }
    int nonblocking = PyFloat_CheckExact(t) && PyFloat_AS_DOUBLE(t) == 0.0;
    Py_DECREF(t);
    return nonblocking ? socket_fd(ts, sock) : -1;
}

/* What a call of sock's own method returned: None in place of a
 * BlockingIOError or InterruptedError. */
static PyObject *
unless_would_block(PyObject *res)
{
    if (res == NULL && (PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
                        PyErr_ExceptionMatches(PyExc_InterruptedError))) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return res;
}

/* The result of a recv()/send() on a non-blocking fd, the socket module's
 * way: an EINTR runs the signal handlers and tries again (PEP 475).
 * >= 0, or -1 with the OSError set, or -2 if it would block. */
static Py_ssize_t
io_result(ssize_t n, int *retry)
{
    *retry = 0;
    if (n >= 0) {
        return (Py_ssize_t)n;
    }
    if (errno == EINTR) {
        if (PyErr_CheckSignals() < 0) {
            return -1;
        }
        *retry = 1;
        return -1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return -2;
    }
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

static tcg_transport_state *
sock_call_state(PyObject *module, const char *name, Py_ssize_t nargs,
                Py_ssize_t want)
{
    tcg_state *st = tcg_state_if_live(module);
    if (st == NULL) {
        tcg_state_gone();
        return NULL;
    }
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)",
                     name, want, nargs);
        return NULL;
    }
    return &st->transport;
}

/* _sock_recv(sock, n): sock.recv(n), or None if it would block. */
static PyObject *
sock_try_recv(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    tcg_transport_state *ts = sock_call_state(module, "_sock_recv", nargs, 2);
    if (ts == NULL) {
        return NULL;
    }
    PyObject *sock = args[0], *nobj = args[1];
    Py_ssize_t size = PyLong_CheckExact(nobj) ? PyLong_AsSsize_t(nobj) : -1;
    if (size == -1) {
        PyErr_Clear();   /* too large, or not an int: the method's to say */
    }
    int fd = size > 0 && size <= TCG_TRANSPORT_RECV_SIZE
             ? nonblocking_socket_fd(ts, sock) : -1;
    if (fd < 0) {
        return unless_would_block(
            PyObject_CallMethodOneArg(sock, ts->str_recv, nobj));
    }
    /* No Python code runs between the recv() and the copy (a signal
     * handler runs only when no byte came). */
    Py_ssize_t n;
    int retry;
    do {
        n = io_result(recv(fd, ts->recv_buf, (size_t)size, 0), &retry);
    } while (retry);
    if (n == -2) {
        Py_RETURN_NONE;
    }
    return n < 0 ? NULL : PyBytes_FromStringAndSize(ts->recv_buf, n);
}

/* _sock_recv_into(sock, buf) and _sock_send(sock, data): sock.recv_into(buf)
 * and sock.send(data), or None if they would block. */
typedef enum { SOCK_RECV_INTO, SOCK_SEND } sock_buffer_op;

static PyObject *
sock_try_buffer(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                sock_buffer_op op)
{
    bool send_op = op == SOCK_SEND;
    tcg_transport_state *ts = sock_call_state(
        module, send_op ? "_sock_send" : "_sock_recv_into", nargs, 2);
    if (ts == NULL) {
        return NULL;
    }
    PyObject *sock = args[0], *buf = args[1];
    Py_buffer view;
    /* The buffer first: getting it may run Python code (a __buffer__),
     * which could close the socket; from the fd on, none runs.  An empty
     * buffer to read into is the method's (recv_into reads len(buf)
     * bytes, and none is no read). */
    int fd = -1;
    if (Py_TYPE(sock) != (PyTypeObject *)ts->socket_type) {
        /* not ours: the method */
    }
    else if (PyObject_GetBuffer(buf, &view,
                                send_op ? PyBUF_SIMPLE : PyBUF_WRITABLE) < 0) {
        PyErr_Clear();   /* not a buffer it takes: the method's to say */
    }
    else if ((!send_op && view.len == 0) ||
             (fd = nonblocking_socket_fd(ts, sock)) < 0) {
        PyBuffer_Release(&view);
        fd = -1;
    }
    if (fd < 0) {
        return unless_would_block(PyObject_CallMethodOneArg(
            sock, send_op ? ts->str_send : ts->str_recv_into, buf));
    }
    Py_ssize_t n;
    int retry;
    do {
        ssize_t r = send_op ? send(fd, view.buf, (size_t)view.len, 0)
                            : recv(fd, view.buf, (size_t)view.len, 0);
        n = io_result(r, &retry);
    } while (retry);
    PyBuffer_Release(&view);
    if (n == -2) {
        Py_RETURN_NONE;
    }
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

static PyObject *
sock_try_recv_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return sock_try_buffer(module, args, nargs, SOCK_RECV_INTO);
}

static PyObject *
sock_try_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return sock_try_buffer(module, args, nargs, SOCK_SEND);
}

static PyMethodDef transport_functions[] = {
    {"_sock_recv", (PyCFunction)(void (*)(void))sock_try_recv, METH_FASTCALL,
     "sock.recv(n), or None where it would raise BlockingIOError."},
    {"_sock_recv_into", (PyCFunction)(void (*)(void))sock_try_recv_into,
     METH_FASTCALL,
     "sock.recv_into(buf), or None where it would raise BlockingIOError."},
    {"_sock_send", (PyCFunction)(void (*)(void))sock_try_send, METH_FASTCALL,
     "sock.send(data), or None where it would raise BlockingIOError."},
    {NULL, NULL, 0, NULL},
};

#define TR_STRING(field, text, make)                                         \
    do {                                                                     \
        if ((ts->field = make(text)) == NULL)                                \
            return -1;                                                       \
    } while (0)

int
tcg_transport_exec(PyObject *m, tcg_state *st)
{
    tcg_transport_state *ts = &st->transport;
    ts->TransportMethodType =
        (PyTypeObject *)PyType_FromModuleAndSpec(m, &trm_spec, NULL);
    if (ts->TransportMethodType == NULL ||
        PyModule_AddType(m, ts->TransportMethodType) < 0) {
        return -1;
    }
    PyObject *socket_mod = PyImport_ImportModule("socket");
    if (socket_mod == NULL) {
        return -1;
    }
    ts->socket_type = PyObject_GetAttrString(socket_mod, "socket");
    Py_DECREF(socket_mod);
    if (ts->socket_type == NULL) {
        return -1;
    }
    if (!PyType_Check(ts->socket_type)) {
        PyErr_SetString(PyExc_TypeError, "socket.socket is not a type");
        return -1;
    }
    if ((ts->zero = PyLong_FromLong(0)) == NULL ||
        (ts->minus_one = PyLong_FromLong(-1)) == NULL) {
        return -1;
    }
    ts->recv_buf = PyMem_RawMalloc(TCG_TRANSPORT_RECV_SIZE);
    if (ts->recv_buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    TR_STRING(str_fatal_error, "_fatal_error", PyUnicode_InternFromString);
    TR_STRING(str_on_eof, "_read_ready__on_eof", PyUnicode_InternFromString);
    TR_STRING(str_data_received, "data_received", PyUnicode_InternFromString);
    TR_STRING(str_get_buffer, "get_buffer", PyUnicode_InternFromString);
    TR_STRING(str_max_size, "max_size", PyUnicode_InternFromString);
    TR_STRING(str_buffer_updated, "buffer_updated", PyUnicode_InternFromString);
    TR_STRING(str_recv_into, "recv_into", PyUnicode_InternFromString);
    TR_STRING(str_recv, "recv", PyUnicode_InternFromString);
    TR_STRING(str_send, "send", PyUnicode_InternFromString);
    TR_STRING(str_fileno, "fileno", PyUnicode_InternFromString);
    TR_STRING(str_gettimeout, "gettimeout", PyUnicode_InternFromString);
    ts->fileno_descr = Py_XNewRef(
        _PyType_Lookup((PyTypeObject *)ts->socket_type, ts->str_fileno));
    ts->gettimeout_descr = Py_XNewRef(
        _PyType_Lookup((PyTypeObject *)ts->socket_type, ts->str_gettimeout));
    if (ts->fileno_descr == NULL || ts->gettimeout_descr == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "socket.socket has no fileno or gettimeout");
        return -1;
    }
    TR_STRING(str_protocol, "_protocol", PyUnicode_InternFromString);
    TR_STRING(str_sock, "_sock", PyUnicode_InternFromString);
    PyObject *collections = PyImport_ImportModule("collections");
    if (collections == NULL) {
        return -1;
    }
    ts->deque_type = PyObject_GetAttrString(collections, "deque");
    Py_DECREF(collections);
    if (ts->deque_type == NULL) {
        return -1;
    }
    TR_STRING(msg_get_buffer, "Fatal error: protocol.get_buffer() call failed.",
              PyUnicode_FromString);
    TR_STRING(msg_buffer_updated,
              "Fatal error: protocol.buffer_updated() call failed.",
              PyUnicode_FromString);
    TR_STRING(msg_read_error, "Fatal read error on socket transport",
              PyUnicode_FromString);
    TR_STRING(msg_write_error, "Fatal write error on socket transport",
              PyUnicode_FromString);
    TR_STRING(msg_data_received,
              "Fatal error: protocol.data_received() call failed.",
              PyUnicode_FromString);
    ts->delegated = Py_BuildValue("(ssss)", "__doc__", "__name__",
                                  "__qualname__", "__module__");
    if (ts->delegated == NULL) {
        return -1;
    }
    return PyModule_AddFunctions(m, transport_functions);
}

int
tcg_transport_traverse(tcg_state *st, visitproc visit, void *arg)
{
    Py_VISIT(st->transport.TransportMethodType);
    Py_VISIT(st->transport.socket_type);
    Py_VISIT(st->transport.slots_type);
    Py_VISIT(st->transport.slots_default);
    Py_VISIT(st->transport.deque_type);
    Py_VISIT(st->transport.fileno_descr);
    Py_VISIT(st->transport.gettimeout_descr);
    return 0;
}

void
tcg_transport_clear(tcg_state *st)
{
    tcg_transport_state *ts = &st->transport;
    Py_CLEAR(ts->TransportMethodType);
    Py_CLEAR(ts->socket_type);
    Py_CLEAR(ts->slots_type);
    Py_CLEAR(ts->slots_default);
    Py_CLEAR(ts->zero);
    PyMem_RawFree(ts->recv_buf);
    ts->recv_buf = NULL;
    Py_CLEAR(ts->str_fatal_error);
    Py_CLEAR(ts->str_on_eof);
    Py_CLEAR(ts->str_data_received);
    Py_CLEAR(ts->str_get_buffer);
    Py_CLEAR(ts->str_max_size);
    Py_CLEAR(ts->str_buffer_updated);
    Py_CLEAR(ts->str_recv_into);
    Py_CLEAR(ts->str_recv);
    Py_CLEAR(ts->str_send);
    Py_CLEAR(ts->str_fileno);
    Py_CLEAR(ts->fileno_descr);
    Py_CLEAR(ts->str_gettimeout);
    Py_CLEAR(ts->gettimeout_descr);
    ts->socket_tag = 0;
    Py_CLEAR(ts->str_protocol);
    Py_CLEAR(ts->str_sock);
    Py_CLEAR(ts->deque_type);
    Py_CLEAR(ts->msg_get_buffer);
    Py_CLEAR(ts->msg_buffer_updated);
    Py_CLEAR(ts->minus_one);
    Py_CLEAR(ts->msg_read_error);
    Py_CLEAR(ts->msg_write_error);
    Py_CLEAR(ts->msg_data_received);
    Py_CLEAR(ts->delegated);
}
