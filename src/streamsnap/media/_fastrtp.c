/*
 * The short way of the lean receive path (media/receiver.py), in C: one video stream's SRTP
 * datagrams, from the ICE socket's datagram callback to the complete frame, while nothing
 * unusual happens.
 *
 * A `Receiver` is "armed" by receiver.py with the state of one media SSRC (its statistics,
 * the highest sequence number, the frame being assembled) when that state is plain: no frame
 * waiting but the one being received in order (losses may be kept for NACKs: the packet at
 * which the oldest is forgotten goes to Python, which forgets it). Then each datagram of that
 * SSRC carrying the next sequence number is unprotected here (libsrtp's srtp_unprotect, the
 * one pylibsrtp carries, on the DTLS transport's own session: no second libsrtp is linked),
 * its header read, counted, and its payload appended to the frame; the marker bit hands the
 * frame's payloads to Python (`on_run(timestamp, payloads)`), once per frame.
 *
 * Anything else goes to Python untouched: a datagram that is not the armed stream's next
 * packet goes to `slow(data, addr)` before it is unprotected, and one whose content turns out
 * unusual (padding only, over a bound, a frame that cannot start here) goes to
 * `slow_rtp(packet)` once unprotected. receiver.py disarms first (`disarm()` gives the state
 * back) and handles it by the rules it states; the state here is only ever that state, moved.
 * Tests compare the two ways packet by packet (tests/unit/test_fastrtp.py).
 *
 * Bounds: a datagram larger than the buffer, shorter than an RTP header, or whose header
 * claims more than it holds is not read past; what the frame holds is bounded by the caps
 * receiver.py arms it with (packets per frame, bytes pending).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define BUFFER_SIZE 2048

typedef int (*unprotect_fn)(void *ctx, void *packet, int *length);

typedef struct {
    PyObject_HEAD
    PyObject *session;          /* the pylibsrtp Session that owns `ctx`, kept alive */
    void *ctx;                  /* its srtp_t */
    unprotect_fn unprotect;     /* srtp_unprotect */
    PyObject *slow;             /* unused here: each Handler has its own */
    PyObject *slow_rtp;         /* callable(packet: bytes) */
    PyObject *on_run;           /* callable(timestamp: int, payloads: list[bytes]) */
    long long packets;          /* RTP packets handled here */
    long long from_socket;      /* datagrams unprotected here */
    long long rejected;         /* refused by SRTP, or no RTP packet */
    /* the armed stream */
    int armed;
    uint32_t ssrc;
    int payload_type;
    double clockrate;
    long long received;
    int max_seq;
    long long cycles;
    long long last_timestamp;   /* -1: none */
    int has_transit;
    long long last_transit;
    long long jitter_q4;
    int expire_at;              /* the packet at which the oldest loss is forgotten (Python does it); -1: none */
    /* its frame assembler */
    PyObject *refused;          /* dict of timestamps given up for their size */
    PyObject *run;              /* payloads of the frame in order, or NULL */
    long long run_timestamp;
    int run_first;
    long long pending_bytes;
    long long max_pending_bytes;
    Py_ssize_t run_limit;
    int next_first;
    long long last_emitted;
    unsigned char buffer[BUFFER_SIZE];
} Receiver;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Receiver *receiver;
    PyObject *slow;             /* callable(data, addr): what this socket's datagram does not take here */
} Handler;

static PyTypeObject ReceiverType;
static PyTypeObject HandlerType;

static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline int be16(const unsigned char *p) {
    return (p[0] << 8) | p[1];
}

/* Whether RTP timestamp a is later than b (modulo 2**32), as receiver._newer. */
static inline int newer(uint32_t a, uint32_t b) {
    return a != b && (uint32_t)(a - b) < 0x80000000u;
}

static void frame_started(Receiver *r, uint32_t timestamp) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double seconds = (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
    long long transit = (long long)(seconds * r->clockrate) - (long long)timestamp;
    if (r->has_transit) {
        long long difference = transit - r->last_transit;
        if (difference < 0)
            difference = -difference;
        r->jitter_q4 += difference - ((r->jitter_q4 + 8) >> 4);
    }
    r->last_transit = transit;
    r->has_transit = 1;
    r->last_timestamp = timestamp;
}

/* Hand an unprotected packet to Python, which disarms and handles it. Returns 1, or -1 on error. */
static int to_slow_rtp(Receiver *r, int length) {
    PyObject *packet = PyBytes_FromStringAndSize((const char *)r->buffer, length);
    if (packet == NULL)
        return -1;
    PyObject *result = PyObject_CallOneArg(r->slow_rtp, packet);
    Py_DECREF(packet);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 1;
}

/* One datagram: 1 if it was taken here, 0 if it goes to the socket's slow handler untouched, -1 on error. */
static int receive(Receiver *r, PyObject *data) {
    if (!r->armed || !PyBytes_CheckExact(data))
        return 0;
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    /* The armed stream's next packet, as its header says in the clear (SRTP encrypts payloads only). */
    if (size < 12 || size > BUFFER_SIZE || (d[0] & 0xC0) != 0x80 || (d[1] & 0x7F) != r->payload_type
        || be32(d + 8) != r->ssrc || be16(d + 2) != ((r->max_seq + 1) & 0xFFFF) || be16(d + 2) == r->expire_at)
        return 0;
    memcpy(r->buffer, d, (size_t)size);
    int length = (int)size;
    if (r->unprotect(r->ctx, r->buffer, &length) != 0) {
        r->rejected++;  /* replayed or forged: dropped, as aiortc does */
        return 1;
    }
    r->from_socket++;
    const unsigned char *p = r->buffer;
    if (length < 12 || length > BUFFER_SIZE) {
        r->rejected++;
        return 1;
    }
    int start = 12 + 4 * (p[0] & 0x0F);
    int end = length;
    if (p[0] & 0x10) {
        if (end < start + 4) {
            r->rejected++;
            return 1;
        }
        start += 4 + 4 * be16(p + start + 2);
    }
    if (p[0] & 0x20) {
        int padding = p[length - 1];
        if (padding == 0 || padding > end - start) {
            r->rejected++;
            return 1;
        }
        end -= padding;
    }
    if (start > end) {
        r->rejected++;
        return 1;
    }
    int sequence = be16(p + 2);
    uint32_t timestamp = be32(p + 4);
    int marker = p[1] & 0x80;
    Py_ssize_t payload_size = end - start;
    if (payload_size == 0)
        return to_slow_rtp(r, length);  /* padding only */

    /* The frame assembler's short way (FrameAssembler.add), or Python's long one. */
    if (r->run != NULL) {
        if ((long long)timestamp != r->run_timestamp || sequence != ((r->run_first + PyList_GET_SIZE(r->run)) & 0xFFFF)
            || r->pending_bytes + payload_size > r->max_pending_bytes || PyList_GET_SIZE(r->run) >= r->run_limit)
            return to_slow_rtp(r, length);
    } else {
        if (sequence != r->next_first || !newer(timestamp, (uint32_t)r->last_emitted)
            || payload_size > r->max_pending_bytes || r->run_limit <= 0)
            return to_slow_rtp(r, length);
        PyObject *key = PyLong_FromUnsignedLong(timestamp);
        if (key == NULL)
            return -1;
        int refused = PyDict_Contains(r->refused, key);
        Py_DECREF(key);
        if (refused < 0)
            return -1;
        if (refused)
            return to_slow_rtp(r, length);
    }
    PyObject *payload = PyBytes_FromStringAndSize((const char *)p + start, payload_size);
    if (payload == NULL)
        return -1;
    if (r->run == NULL) {
        r->run = PyList_New(0);
        if (r->run == NULL) {
            Py_DECREF(payload);
            return -1;
        }
        r->run_timestamp = timestamp;
        r->run_first = sequence;
    }
    int appended = PyList_Append(r->run, payload);
    Py_DECREF(payload);
    if (appended < 0)
        return -1;

    /* Statistics (ReceiveStatistics.add), the highest sequence number (LossTracker.add). */
    r->packets++;
    r->received++;
    if (sequence == 0)
        r->cycles += 0x10000;
    r->max_seq = sequence;
    if ((long long)timestamp != r->last_timestamp)
        frame_started(r, timestamp);

    if (!marker) {
        r->pending_bytes += payload_size;
        return 1;
    }
    PyObject *run = r->run;
    r->run = NULL;
    r->run_timestamp = -1;
    r->pending_bytes = 0;
    r->next_first = (sequence + 1) & 0xFFFF;
    r->last_emitted = timestamp;
    PyObject *stamp = PyLong_FromUnsignedLong(timestamp);
    if (stamp == NULL) {
        Py_DECREF(run);
        return -1;
    }
    PyObject *result = PyObject_CallFunctionObjArgs(r->on_run, stamp, run, NULL);
    Py_DECREF(stamp);
    Py_DECREF(run);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 1;
}

static PyObject *handler_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Handler *self = (Handler *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "datagram_received(data, addr)");
        return NULL;
    }
    int taken = receive(self->receiver, args[0]);
    if (taken < 0) {
        /* Out of memory, or a callback raised (receiver.py's catch everything): reported, not raised, as an event
         * loop closes the socket of a protocol whose callback raises. */
        PyErr_WriteUnraisable(callable);
        Py_RETURN_NONE;
    }
    if (taken == 0)
        return PyObject_Vectorcall(self->slow, args, 2, NULL);
    Py_RETURN_NONE;
}

static int handler_traverse(Handler *self, visitproc visit, void *arg) {
    Py_VISIT(self->receiver);
    Py_VISIT(self->slow);
    return 0;
}

static int handler_clear(Handler *self) {
    Py_CLEAR(self->receiver);
    Py_CLEAR(self->slow);
    return 0;
}

static void handler_dealloc(Handler *self) {
    PyObject_GC_UnTrack(self);
    handler_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject HandlerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streamsnap.media._fastrtp.Handler",
    .tp_doc = "datagram_received(data, addr) of one ICE socket: the receiver's short way, else `slow`.",
    .tp_basicsize = sizeof(Handler),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Handler, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_traverse = (traverseproc)handler_traverse,
    .tp_clear = (inquiry)handler_clear,
    .tp_dealloc = (destructor)handler_dealloc,
};

static int receiver_init(Receiver *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"session", "srtp", "unprotect", "slow_rtp", "on_run", NULL};
    PyObject *session, *slow_rtp, *on_run;
    unsigned long long srtp, unprotect;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OKKOO", keywords, &session, &srtp, &unprotect, &slow_rtp,
                                     &on_run))
        return -1;
    if (srtp == 0 || unprotect == 0 || !PyCallable_Check(slow_rtp) || !PyCallable_Check(on_run)) {
        PyErr_SetString(PyExc_ValueError, "a session, srtp_unprotect and two callables are needed");
        return -1;
    }
    Py_INCREF(session);
    Py_XSETREF(self->session, session);
    Py_INCREF(slow_rtp);
    Py_XSETREF(self->slow_rtp, slow_rtp);
    Py_INCREF(on_run);
    Py_XSETREF(self->on_run, on_run);
    self->ctx = (void *)(uintptr_t)srtp;
    self->unprotect = (unprotect_fn)(uintptr_t)unprotect;
    self->armed = 0;
    self->run_timestamp = -1;
    return 0;
}

static PyObject *receiver_handler(Receiver *self, PyObject *slow) {
    if (!PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "slow must be callable");
        return NULL;
    }
    Handler *handler = PyObject_GC_New(Handler, &HandlerType);
    if (handler == NULL)
        return NULL;
    handler->vectorcall = handler_vectorcall;
    Py_INCREF(self);
    handler->receiver = self;
    Py_INCREF(slow);
    handler->slow = slow;
    PyObject_GC_Track(handler);
    return (PyObject *)handler;
}

static PyObject *receiver_arm(Receiver *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"ssrc", "payload_type", "clockrate", "received", "max_seq", "cycles",
                               "last_timestamp", "last_transit", "jitter_q4", "expire_at", "refused", "run",
                               "run_timestamp", "run_first", "pending_bytes", "max_pending_bytes", "run_limit",
                               "next_first", "last_emitted", NULL};
    unsigned long ssrc;
    int payload_type, max_seq, expire_at, run_first, next_first;
    double clockrate;
    long long received, cycles, last_timestamp, jitter_q4, run_timestamp, pending_bytes, max_pending_bytes,
        last_emitted;
    PyObject *last_transit, *refused, *run;
    Py_ssize_t run_limit;
    if (self->armed) {
        PyErr_SetString(PyExc_RuntimeError, "already armed");
        return NULL;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "kidLiLLOLiO!OLiLLniL", keywords, &ssrc, &payload_type,
                                     &clockrate, &received, &max_seq, &cycles, &last_timestamp, &last_transit,
                                     &jitter_q4, &expire_at, &PyDict_Type, &refused, &run, &run_timestamp,
                                     &run_first, &pending_bytes, &max_pending_bytes, &run_limit, &next_first,
                                     &last_emitted))
        return NULL;
    if (run != Py_None && !PyList_CheckExact(run)) {
        PyErr_SetString(PyExc_TypeError, "run must be a list or None");
        return NULL;
    }
    if (ssrc > 0xFFFFFFFFul || payload_type < 0 || payload_type > 127 || max_seq < 0 || max_seq > 0xFFFF
        || next_first < 0 || next_first > 0xFFFF || run_first < 0 || run_first > 0xFFFF || expire_at < -1
        || expire_at > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "out of range");
        return NULL;
    }
    self->has_transit = last_transit != Py_None;
    if (self->has_transit) {
        self->last_transit = PyLong_AsLongLong(last_transit);
        if (self->last_transit == -1 && PyErr_Occurred())
            return NULL;
    }
    self->ssrc = (uint32_t)ssrc;
    self->payload_type = payload_type;
    self->clockrate = clockrate;
    self->received = received;
    self->max_seq = max_seq;
    self->cycles = cycles;
    self->last_timestamp = last_timestamp;
    self->jitter_q4 = jitter_q4;
    self->expire_at = expire_at;
    Py_INCREF(refused);
    Py_XSETREF(self->refused, refused);
    if (run == Py_None) {
        Py_CLEAR(self->run);
        self->run_timestamp = -1;
    } else {
        Py_INCREF(run);
        Py_XSETREF(self->run, run);
        self->run_timestamp = run_timestamp;
    }
    self->run_first = run_first;
    self->pending_bytes = pending_bytes;
    self->max_pending_bytes = max_pending_bytes;
    self->run_limit = run_limit;
    self->next_first = next_first;
    self->last_emitted = last_emitted;
    self->armed = 1;
    Py_RETURN_NONE;
}

static PyObject *transit_or_none(Receiver *self) {
    if (self->has_transit)
        return PyLong_FromLongLong(self->last_transit);
    Py_RETURN_NONE;
}

static PyObject *receiver_disarm(Receiver *self, PyObject *unused) {
    if (!self->armed) {
        PyErr_SetString(PyExc_RuntimeError, "not armed");
        return NULL;
    }
    PyObject *transit = transit_or_none(self);
    if (transit == NULL)
        return NULL;
    PyObject *run = self->run != NULL ? self->run : Py_None;
    PyObject *state = Py_BuildValue("{s:L,s:i,s:L,s:L,s:N,s:L,s:O,s:L,s:i,s:L,s:i,s:L}",
                                    "received", self->received, "max_seq", self->max_seq, "cycles", self->cycles,
                                    "last_timestamp", self->last_timestamp, "last_transit", transit,
                                    "jitter_q4", self->jitter_q4, "run", run, "run_timestamp", self->run_timestamp,
                                    "run_first", self->run_first, "pending_bytes", self->pending_bytes,
                                    "next_first", self->next_first, "last_emitted", self->last_emitted);
    if (state == NULL)
        return NULL;
    self->armed = 0;
    Py_CLEAR(self->run);
    Py_CLEAR(self->refused);
    self->run_timestamp = -1;
    self->pending_bytes = 0;
    return state;
}

static PyObject *receiver_statistics(Receiver *self, PyObject *unused) {
    PyObject *transit = transit_or_none(self);
    if (transit == NULL)
        return NULL;
    return Py_BuildValue("{s:L,s:i,s:L,s:L,s:N,s:L}", "received", self->received, "max_seq", self->max_seq,
                         "cycles", self->cycles, "last_timestamp", self->last_timestamp, "last_transit", transit,
                         "jitter_q4", self->jitter_q4);
}

static int receiver_traverse(Receiver *self, visitproc visit, void *arg) {
    Py_VISIT(self->session);
    Py_VISIT(self->slow_rtp);
    Py_VISIT(self->on_run);
    Py_VISIT(self->refused);
    Py_VISIT(self->run);
    return 0;
}

static int receiver_clear(Receiver *self) {
    self->armed = 0;
    Py_CLEAR(self->session);
    Py_CLEAR(self->slow_rtp);
    Py_CLEAR(self->on_run);
    Py_CLEAR(self->refused);
    Py_CLEAR(self->run);
    return 0;
}

static void receiver_dealloc(Receiver *self) {
    PyObject_GC_UnTrack(self);
    receiver_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef receiver_methods[] = {
    {"handler", (PyCFunction)receiver_handler, METH_O,
     "handler(slow) -> datagram_received for one ICE socket; what it does not take goes to slow(data, addr)."},
    {"arm", (PyCFunction)(void (*)(void))receiver_arm, METH_VARARGS | METH_KEYWORDS,
     "Take over one media SSRC's plain state (see receiver.py)."},
    {"disarm", (PyCFunction)receiver_disarm, METH_NOARGS, "Give the state back, as a dict."},
    {"statistics", (PyCFunction)receiver_statistics, METH_NOARGS, "The armed stream's statistics now, as a dict."},
    {NULL},
};

static PyMemberDef receiver_members[] = {
    {"armed", T_INT, offsetof(Receiver, armed), READONLY, "Whether a stream's state is here."},
    {"ssrc", T_UINT, offsetof(Receiver, ssrc), READONLY, "The armed stream's SSRC."},
    {"packets", T_LONGLONG, offsetof(Receiver, packets), READONLY, "RTP packets handled here."},
    {"from_socket", T_LONGLONG, offsetof(Receiver, from_socket), READONLY, "Datagrams unprotected here."},
    {"rejected", T_LONGLONG, offsetof(Receiver, rejected), READONLY, "Datagrams refused here."},
    {"pending_bytes", T_LONGLONG, offsetof(Receiver, pending_bytes), READONLY, "Bytes of the frame held here."},
    {NULL},
};

static PyTypeObject ReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streamsnap.media._fastrtp.Receiver",
    .tp_doc = "Receiver(session, srtp, unprotect, slow_rtp, on_run): the short way of one video receive path.",
    .tp_basicsize = sizeof(Receiver),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)receiver_init,
    .tp_traverse = (traverseproc)receiver_traverse,
    .tp_clear = (inquiry)receiver_clear,
    .tp_dealloc = (destructor)receiver_dealloc,
    .tp_methods = receiver_methods,
    .tp_members = receiver_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "streamsnap.media._fastrtp",
    .m_doc = "The short way of the lean receive path, in C (see streamsnap/media/receiver.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__fastrtp(void) {
    if (PyType_Ready(&ReceiverType) < 0 || PyType_Ready(&HandlerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ReceiverType);
    if (PyModule_AddObject(m, "Receiver", (PyObject *)&ReceiverType) < 0) {
        Py_DECREF(&ReceiverType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
