/* model.c - the deployment runtime: load a bundle, plan its arena for a batch size, run it.
 *
 * The bundle layout is described in cnnc/deploy/_format.py (the writer); this file is the reader and
 * trusts nothing in it: every count, id, offset and shape is checked before use, and the memory plan
 * stored in the bundle must equal the plan this file computes (the same greedy-by-size algorithm). */
#include "internal.h"
#include "winograd.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define BUNDLE_MAGIC "CNNCBNDL"
#define BUNDLE_VERSION 1u
#define FLAG_EXTERNAL_CONSTS 1u  /* header flags: the weights section is empty, runs supply constants */
#define HEADER_SIZE 80
#define VALUE_SIZE 96
#define MAX_RANK 8
#define MAX_VALUES (1 << 20)
#define MAX_OPS (1 << 20)
#define MAX_IO 1024
#define MAX_NAME 4096
#define MAX_ATTRS 64
#define MAX_INT_ATTRS (1 << 20)  /* gather indices travel as int attributes */
#define MAX_WINDOW ((int64_t)1 << 31)  /* kernel, stride, dilation, padding: keeps window arithmetic in range */

enum { V_ARENA = 0, V_INPUT, V_OUTPUT, V_CONST, V_ALIAS };
enum {
    OP_CONV = 1, OP_MAXPOOL, OP_AVGPOOL, OP_GAVGPOOL, OP_GMAXPOOL, OP_DENSE, OP_ACT, OP_SOFTMAX,
    OP_AFFINE, OP_BINARY, OP_CONCAT, OP_TRANSPOSE, OP_PAD, OP_LRN, OP_COPY, OP_MATMUL, OP_GATHER, OP_UNARY, OP_LAST
};
/* BIN_MAX / BIN_MIN propagate NaN from either operand */
enum { BIN_ADD = 0, BIN_SUB, BIN_MUL, BIN_DIV, BIN_PRELU, BIN_MAX, BIN_MIN, BIN_LAST };
enum { UN_SQRT = 0, UN_LAST };
enum { PAD_CONSTANT = 0, PAD_REFLECT, PAD_EDGE };

typedef struct {
    int32_t kind, index, rank, bdim;
    int64_t dims[MAX_RANK];
    int64_t offset;  /* const: byte offset into the weights; arena: planned offset at plan_batch */
    int32_t root;    /* the value whose memory this one uses (itself unless an alias) */
    int32_t cidx;    /* const: its number among the constants (the order of the value table) */
} value_t;

typedef struct {
    int32_t code, n_in, n_out, n_i, n_f;
    const int32_t *in, *out;  /* value ids; -1 = absent optional input */
    const int64_t *ia;
    const float *fa;
} op_t;

struct cnnc_model {
    unsigned char *buf;      /* aligned copy of the bundle */
    void *buf_raw;
    int64_t len;
    int32_t n_values, n_ops, n_inputs, n_outputs;
    int64_t fixed_batch, plan_batch;
    value_t *values;
    op_t *ops;
    int32_t *input_ids, *output_ids;
    const char **input_names, **output_names;
    char *names;             /* NUL-terminated copies */
    const unsigned char *weights;
    int64_t weights_size;
    int32_t n_consts;
    int external;            /* the constants are not in the bundle: every run supplies them */
    /* per prepared batch */
    int64_t *offsets;        /* arena offset per value (arena roots only) */
    int32_t *first, *last;   /* lifetimes (op indices) of arena roots; scratch for planning */
    int32_t *order;          /* planning scratch */
    int32_t *into;           /* a concatenation's input computed in place: the concatenation's output, or -1 */
    int64_t *into_off;       /* ... at this byte offset in it */
    int32_t *reads;          /* planning scratch: reads of each value */
    int64_t *sizes;          /* bytes per value at the prepared batch */
    int64_t batch;           /* 0: not prepared */
    int64_t plan_bytes, ws_bytes;
    cnnc_ctx ctx;            /* ctx.pool: own_pool, or the caller's (cnnc_model_set_pool) */
    cnnc_pool *own_pool;     /* created by cnnc_model_arena_size when ctx.nthreads > 1 */
    int borrowed;            /* ctx.pool is the caller's */
    /* weights packed once (cnnc_model_prepack): per op, its convolution's packed weights or NULL */
    float **packed;
    unsigned char *packed_wg; /* per op: its packed weights are Winograd's (the algorithm depends on the batch) */
    int64_t packed_bytes, packed_mr, packed_nr;
};

/* ---- small helpers ------------------------------------------------------------------------------- */

static int fail(char *msg, int64_t msg_size, int code, const char *fmt, ...) {
    if (msg && msg_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, (size_t)msg_size, fmt, ap);
        va_end(ap);
    }
    return code;
}

static uint32_t rd_u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd_u64(const unsigned char *p) { return (uint64_t)rd_u32(p) | ((uint64_t)rd_u32(p + 4) << 32); }
static int64_t rd_i64(const unsigned char *p) { return (int64_t)rd_u64(p); }
static int32_t rd_i32(const unsigned char *p) { return (int32_t)rd_u32(p); }

static uint32_t crc32_of(const unsigned char *p, int64_t n) {
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    uint32_t crc = 0xFFFFFFFFu;
    for (int64_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

/* A reader over the bundle that fails (instead of reading past the end) on truncation. */
typedef struct {
    const unsigned char *p;
    int64_t pos, len;
} cursor;

static int take(cursor *c, int64_t n, const unsigned char **out) {
    if (n < 0 || n > c->len - c->pos) return 0;
    *out = c->p + c->pos;
    c->pos += n;
    return 1;
}

static int align8(cursor *c) {
    int64_t pad = (8 - (c->pos & 7)) & 7;
    const unsigned char *dummy;
    return take(c, pad, &dummy);
}

/* Dims of value v at batch b (returns 0 on overflow). */
static int value_dims(const value_t *v, int64_t b, int64_t *dims) {
    for (int i = 0; i < v->rank; ++i) {
        dims[i] = v->dims[i];
        if (i == v->bdim) {
            dims[i] = cnnc_mul_ok(dims[i], b);
            if (dims[i] < 0) return 0;
        }
    }
    return 1;
}

static int64_t numel_of(const int64_t *dims, int rank) {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) {
        n = cnnc_mul_ok(n, dims[i]);
        if (n < 0) return -1;
    }
    return n;
}

static int same_dims(const int64_t *a, const int64_t *b, int rank) {
    for (int i = 0; i < rank; ++i)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* ---- load ---------------------------------------------------------------------------------------- */

static int op_arity_ok(const op_t *o) {
    switch (o->code) {
    case OP_CONV: /* 13 ints: a max pool fused (pool kh, kw), no residual */
        return (o->n_in == 3 || o->n_in == 4) && o->n_out == 1 && (o->n_i == 11 || (o->n_i == 13 && o->n_in == 3)) &&
               o->n_f == 2;
    case OP_MAXPOOL: return o->n_in == 1 && o->n_out == 1 && o->n_i == 12 && o->n_f == 0;
    case OP_AVGPOOL: return o->n_in == 1 && o->n_out == 1 && o->n_i == 13 && o->n_f == 0;
    case OP_GAVGPOOL:
    case OP_GMAXPOOL: return o->n_in == 1 && o->n_out == 1 && o->n_i == 1 && o->n_f == 0;
    case OP_COPY: return o->n_in == 1 && o->n_out == 1 && o->n_i == 0 && o->n_f == 0;
    case OP_MATMUL: return o->n_in == 2 && o->n_out == 1 && o->n_i == 0 && o->n_f == 0;
    case OP_UNARY: return o->n_in == 1 && o->n_out == 1 && o->n_i == 1 && o->n_f == 0;
    case OP_GATHER: return o->n_in == 1 && o->n_out == 1 && o->n_i >= 1 && o->n_f == 0;
    case OP_DENSE: return o->n_in == 3 && o->n_out == 1 && o->n_i == 1 && o->n_f == 2;
    case OP_ACT: return o->n_in == 1 && o->n_out == 1 && o->n_i == 1 && o->n_f == 2;
    case OP_SOFTMAX: return o->n_in == 1 && o->n_out == 1 && o->n_i == 2 && o->n_f == 0;
    case OP_AFFINE: return o->n_in == 3 && o->n_out == 1 && o->n_i == 1 && o->n_f == 0;
    case OP_BINARY: return o->n_in == 2 && o->n_out == 1 && o->n_i == 1 && o->n_f == 0;
    case OP_CONCAT: return o->n_in >= 1 && o->n_out == 1 && o->n_i == 1 && o->n_f == 0;
    case OP_TRANSPOSE: return o->n_in == 1 && o->n_out == 1 && o->n_i >= 0 && o->n_i <= MAX_RANK && o->n_f == 0;
    case OP_PAD: return o->n_in == 1 && o->n_out == 1 && o->n_i >= 1 && o->n_i <= 1 + 2 * MAX_RANK && o->n_f == 1;
    case OP_LRN: return o->n_in == 1 && o->n_out == 1 && o->n_i == 1 && o->n_f == 3;
    default: return 0;
    }
}

/* Inputs that may be absent (-1): the conv and dense bias. */
static int optional_input(const op_t *o, int i) {
    return (o->code == OP_CONV || o->code == OP_DENSE) && i == 2;
}

static int plan_batch(cnnc_model *m, int64_t batch, char *msg, int64_t msg_size);

static int parse(cnnc_model *m, char *msg, int64_t msg_size) {
    const unsigned char *b = m->buf;
    const int64_t len = m->len;
    if (len < HEADER_SIZE) return fail(msg, msg_size, CNNC_EFORMAT, "bundle too short (%lld bytes)", (long long)len);
    if (memcmp(b, BUNDLE_MAGIC, 8) != 0) return fail(msg, msg_size, CNNC_EFORMAT, "not a cnnc bundle (bad magic)");
    uint32_t version = rd_u32(b + 8);
    if (version != BUNDLE_VERSION)
        return fail(msg, msg_size, CNNC_EVERSION, "bundle format version %u; this library reads version %u",
                    version, BUNDLE_VERSION);
    if (rd_u32(b + 12) != HEADER_SIZE) return fail(msg, msg_size, CNNC_EFORMAT, "bad header size");
    if ((int64_t)rd_u64(b + 16) != len)
        return fail(msg, msg_size, CNNC_EFORMAT, "bundle is %lld bytes but its header says %llu (truncated?)",
                    (long long)len, (unsigned long long)rd_u64(b + 16));
    if (crc32_of(b + 32, len - 32) != rd_u32(b + 24))
        return fail(msg, msg_size, CNNC_EFORMAT, "checksum mismatch: the bundle is corrupted");
    if (rd_u32(b + 28) & ~FLAG_EXTERNAL_CONSTS) /* a corrupted or future bundle must not pass */
        return fail(msg, msg_size, CNNC_EFORMAT, "unknown header flags 0x%x", (unsigned)rd_u32(b + 28));
    m->external = (rd_u32(b + 28) & FLAG_EXTERNAL_CONSTS) != 0;
    uint32_t nv = rd_u32(b + 32), no = rd_u32(b + 36), ni = rd_u32(b + 40), nout = rd_u32(b + 44);
    if (nv < 1 || nv > MAX_VALUES || no > MAX_OPS || ni < 1 || ni > MAX_IO || nout < 1 || nout > MAX_IO)
        return fail(msg, msg_size, CNNC_EFORMAT, "absurd counts: %u values, %u ops, %u inputs, %u outputs",
                    nv, no, ni, nout);
    if ((int64_t)nv * VALUE_SIZE > len - HEADER_SIZE)  /* before allocating anything for them */
        return fail(msg, msg_size, CNNC_EFORMAT, "%u values do not fit in %lld bytes", nv, (long long)len);
    m->n_values = (int32_t)nv; m->n_ops = (int32_t)no; m->n_inputs = (int32_t)ni; m->n_outputs = (int32_t)nout;
    m->fixed_batch = rd_i64(b + 48);
    m->plan_batch = rd_i64(b + 56);
    int64_t woff = rd_i64(b + 64), wsize = rd_i64(b + 72);
    if (m->fixed_batch < 0 || m->plan_batch < 1 || (m->fixed_batch && m->plan_batch != m->fixed_batch))
        return fail(msg, msg_size, CNNC_EFORMAT, "bad batch fields");
    if (woff < HEADER_SIZE || wsize < 0 || woff > len || wsize > len - woff || (woff & 63) ||
        (m->external && wsize != 0))
        return fail(msg, msg_size, CNNC_EFORMAT, "weights section out of range");
    m->weights = b + woff;
    m->weights_size = wsize;

    m->values = calloc(nv, sizeof(value_t));
    m->ops = calloc(no ? no : 1, sizeof(op_t));
    m->input_ids = calloc(ni, sizeof(int32_t));
    m->output_ids = calloc(nout, sizeof(int32_t));
    m->input_names = calloc(ni, sizeof(char *));
    m->output_names = calloc(nout, sizeof(char *));
    m->offsets = calloc(nv, sizeof(int64_t));
    m->sizes = calloc(nv, sizeof(int64_t));
    m->first = calloc(nv, sizeof(int32_t));
    m->last = calloc(nv, sizeof(int32_t));
    m->order = calloc(nv, sizeof(int32_t));
    m->into = calloc(nv, sizeof(int32_t));
    m->into_off = calloc(nv, sizeof(int64_t));
    m->reads = calloc(nv, sizeof(int32_t));
    m->names = malloc((size_t)(ni + nout) * (MAX_NAME + 1));
    if (!m->values || !m->ops || !m->input_ids || !m->output_ids || !m->input_names || !m->output_names ||
        !m->offsets || !m->sizes || !m->first || !m->last || !m->order || !m->into || !m->into_off ||
        !m->reads || !m->names)
        return fail(msg, msg_size, CNNC_ENOMEM, "out of memory");

    cursor c = {b, HEADER_SIZE, woff};  /* everything but the weights lies before them */
    const unsigned char *p;
    /* values */
    for (uint32_t i = 0; i < nv; ++i) {
        if (!take(&c, VALUE_SIZE, &p)) return fail(msg, msg_size, CNNC_EFORMAT, "truncated value table");
        value_t *v = &m->values[i];
        v->kind = rd_i32(p); v->index = rd_i32(p + 4); v->rank = rd_i32(p + 8); v->bdim = rd_i32(p + 12);
        for (int d = 0; d < MAX_RANK; ++d) v->dims[d] = rd_i64(p + 16 + 8 * d);
        v->offset = rd_i64(p + 80);
        v->root = (int32_t)i;
        if (v->kind < V_ARENA || v->kind > V_ALIAS || v->rank < 0 || v->rank > MAX_RANK || v->bdim < -1 ||
            v->bdim >= (v->rank ? v->rank : 1) || (v->rank == 0 && v->bdim != -1))
            return fail(msg, msg_size, CNNC_EFORMAT, "value %u: bad kind/rank/batch axis", i);
        for (int d = 0; d < MAX_RANK; ++d)
            if (v->dims[d] < 0 || (d >= v->rank && v->dims[d] != 0))
                return fail(msg, msg_size, CNNC_EFORMAT, "value %u: bad dimension", i);
        /* fields a kind does not use must be zero */
        if (rd_i64(p + 88) != 0 || ((v->kind == V_ARENA || v->kind == V_CONST) && v->index != 0) ||
            ((v->kind == V_INPUT || v->kind == V_OUTPUT || v->kind == V_ALIAS) && v->offset != 0))
            return fail(msg, msg_size, CNNC_EFORMAT, "value %u: unused fields are not zero", i);
        if (m->fixed_batch && v->bdim != -1)
            return fail(msg, msg_size, CNNC_EFORMAT, "value %u: batch axis in a fixed-batch model", i);
        int64_t n = numel_of(v->dims, v->rank);
        if (n < 0) return fail(msg, msg_size, CNNC_EOVERFLOW, "value %u: size overflows", i);
        switch (v->kind) {
        case V_INPUT:
            if (v->index < 0 || v->index >= (int32_t)ni) return fail(msg, msg_size, CNNC_EFORMAT, "value %u: bad input index", i);
            break;
        case V_OUTPUT:
            if (v->index < 0 || v->index >= (int32_t)nout) return fail(msg, msg_size, CNNC_EFORMAT, "value %u: bad output index", i);
            break;
        case V_CONST:
            if (m->external ? (v->bdim != -1 || v->offset != 0)
                            : (v->bdim != -1 || v->offset < 0 || (v->offset & 3) || n > (wsize - v->offset) / 4 ||
                               v->offset > wsize))
                return fail(msg, msg_size, CNNC_EFORMAT, "value %u: constant out of the weights section", i);
            v->cidx = m->n_consts++;
            break;
        case V_ALIAS:
            if (v->index < 0 || (uint32_t)v->index >= i)
                return fail(msg, msg_size, CNNC_EFORMAT, "value %u: alias of a later value", i);
            v->root = m->values[v->index].root;
            break;
        default: break;
        }
    }
    /* inputs and outputs: value id + name */
    int64_t name_pos = 0;
    for (uint32_t k = 0; k < ni + nout; ++k) {
        if (!take(&c, 8, &p)) return fail(msg, msg_size, CNNC_EFORMAT, "truncated input/output table");
        int32_t id = rd_i32(p);
        uint32_t nlen = rd_u32(p + 4);
        int is_in = k < ni;
        int idx = is_in ? (int)k : (int)(k - ni);
        if (id < 0 || id >= (int32_t)nv || nlen > MAX_NAME)
            return fail(msg, msg_size, CNNC_EFORMAT, "%s %d: bad value id or name", is_in ? "input" : "output", idx);
        const value_t *v = &m->values[id];
        if (v->kind != (is_in ? V_INPUT : V_OUTPUT) || v->index != idx)
            return fail(msg, msg_size, CNNC_EFORMAT, "%s %d: value %d is not that %s", is_in ? "input" : "output",
                        idx, id, is_in ? "input" : "output");
        if (!take(&c, nlen, &p) || !align8(&c)) return fail(msg, msg_size, CNNC_EFORMAT, "truncated name");
        char *dst = m->names + name_pos;
        memcpy(dst, p, nlen);
        dst[nlen] = 0;
        name_pos += nlen + 1;
        if (is_in) { m->input_ids[idx] = id; m->input_names[idx] = dst; }
        else { m->output_ids[idx] = id; m->output_names[idx] = dst; }
    }
    /* every input/output value is listed exactly once */
    for (uint32_t i = 0; i < nv; ++i) {
        const value_t *v = &m->values[i];
        if (v->kind == V_INPUT && m->input_ids[v->index] != (int32_t)i)
            return fail(msg, msg_size, CNNC_EFORMAT, "value %u claims input %d", i, v->index);
        if (v->kind == V_OUTPUT && m->output_ids[v->index] != (int32_t)i)
            return fail(msg, msg_size, CNNC_EFORMAT, "value %u claims output %d", i, v->index);
    }
    /* ops */
    for (uint32_t i = 0; i < nv; ++i) m->first[i] = -1;   /* defining op of each root, -1: none yet */
    for (uint32_t k = 0; k < no; ++k) {
        op_t *o = &m->ops[k];
        if (!take(&c, 24, &p)) return fail(msg, msg_size, CNNC_EFORMAT, "truncated op %u", k);
        o->code = rd_i32(p); o->n_in = rd_i32(p + 4); o->n_out = rd_i32(p + 8);
        o->n_i = rd_i32(p + 12); o->n_f = rd_i32(p + 16);
        if (rd_i32(p + 20) != 0 || o->n_in < 0 || o->n_in > MAX_ATTRS || o->n_out < 0 || o->n_out > 1 || o->n_i < 0 ||
            o->n_i > MAX_INT_ATTRS || o->n_f < 0 || o->n_f > MAX_ATTRS || !op_arity_ok(o))
            return fail(msg, msg_size, CNNC_EFORMAT, "op %u: unknown op code %d or bad arity", k, o->code);
        const unsigned char *q;
        if (!take(&c, 4 * (int64_t)(o->n_in + o->n_out), &q) || !align8(&c))
            return fail(msg, msg_size, CNNC_EFORMAT, "truncated op %u", k);
        o->in = (const int32_t *)q;  /* the buffer is aligned and the bundle little-endian (checked) */
        o->out = o->in + o->n_in;
        if (!take(&c, 8 * (int64_t)o->n_i, &q)) return fail(msg, msg_size, CNNC_EFORMAT, "truncated op %u", k);
        o->ia = (const int64_t *)q;
        if (!take(&c, 4 * (int64_t)o->n_f, &q) || !align8(&c)) return fail(msg, msg_size, CNNC_EFORMAT, "truncated op %u", k);
        o->fa = (const float *)q;
        for (int j = 0; j < o->n_in; ++j) {
            int32_t id = o->in[j];
            if (id == -1 && optional_input(o, j)) continue;
            if (id < 0 || id >= (int32_t)nv) return fail(msg, msg_size, CNNC_EFORMAT, "op %u: bad input id", k);
            const value_t *r = &m->values[m->values[id].root];
            if ((r->kind == V_ARENA || r->kind == V_OUTPUT) && m->first[r - m->values] < 0)
                return fail(msg, msg_size, CNNC_EFORMAT, "op %u reads value %d before it is computed", k, id);
        }
        int32_t id = o->out[0];
        if (id < 0 || id >= (int32_t)nv) return fail(msg, msg_size, CNNC_EFORMAT, "op %u: bad output id", k);
        value_t *v = &m->values[id];
        if ((v->kind != V_ARENA && v->kind != V_OUTPUT) || m->first[id] >= 0)
            return fail(msg, msg_size, CNNC_EFORMAT, "op %u: output value %d is not a fresh tensor", k, id);
        for (int j = 0; j < o->n_in; ++j)
            if (o->in[j] >= 0 && m->values[o->in[j]].root == id)
                return fail(msg, msg_size, CNNC_EFORMAT, "op %u reads its own output", k);
        m->first[id] = (int32_t)k;
    }
    for (uint32_t i = 0; i < nv; ++i) {
        const value_t *v = &m->values[i];
        if ((v->kind == V_ARENA || v->kind == V_OUTPUT) && m->first[i] < 0)
            return fail(msg, msg_size, CNNC_EFORMAT, "value %u is never computed", i);
    }
    /* the stored plan, checked against ours */
    int rc = plan_batch(m, m->plan_batch, msg, msg_size);
    if (rc != CNNC_OK) return rc;
    for (uint32_t i = 0; i < nv; ++i) {
        const value_t *v = &m->values[i];
        if (v->kind == V_ARENA && v->offset != m->offsets[i])
            return fail(msg, msg_size, CNNC_EFORMAT, "value %u: stored arena offset %lld differs from the plan (%lld)",
                        i, (long long)v->offset, (long long)m->offsets[i]);
    }
    if (!take(&c, 8, &p)) return fail(msg, msg_size, CNNC_EFORMAT, "truncated plan size");
    if (rd_i64(p) != m->plan_bytes)
        return fail(msg, msg_size, CNNC_EFORMAT, "stored plan size %lld differs from the plan (%lld)",
                    (long long)rd_i64(p), (long long)m->plan_bytes);
    m->batch = 0;
    return CNNC_OK;
}

static int little_endian(void) {
    const uint32_t one = 1;
    unsigned char c;
    memcpy(&c, &one, 1);
    return c == 1;
}

int cnnc_model_load_msg(const void *bytes, int64_t len, cnnc_model **model, char *msg, int64_t msg_size) {
    if (msg && msg_size > 0) msg[0] = 0;
    if (!model) return fail(msg, msg_size, CNNC_EINVAL, "model pointer is NULL");
    *model = NULL;
    if (!bytes || len < 0) return fail(msg, msg_size, CNNC_EINVAL, "bytes is NULL or len < 0");
    if (!little_endian()) return fail(msg, msg_size, CNNC_EFORMAT, "bundles are read on little-endian CPUs only");
    cnnc_model *m = calloc(1, sizeof *m);
    if (!m) return fail(msg, msg_size, CNNC_ENOMEM, "out of memory");
    m->buf_raw = malloc((size_t)len + CNNC_ALIGN);
    if (!m->buf_raw) { free(m); return fail(msg, msg_size, CNNC_ENOMEM, "out of memory (%lld bytes)", (long long)len); }
    m->buf = cnnc_align_ptr(m->buf_raw);
    memcpy(m->buf, bytes, (size_t)len);
    m->len = len;
    cnnc_ctx_init(&m->ctx, CNNC_ARCH_AUTO, cnnc_default_threads());
    int rc = parse(m, msg, msg_size);
    if (rc != CNNC_OK) {
        cnnc_model_free(m);
        return rc;
    }
    *model = m;
    return CNNC_OK;
}

int cnnc_model_load(const void *bytes, int64_t len, cnnc_model **model) {
    return cnnc_model_load_msg(bytes, len, model, NULL, 0);
}

static void drop_packed(cnnc_model *m) {
    if (m->packed)
        for (int32_t k = 0; k < m->n_ops; ++k) free(m->packed[k]);
    free(m->packed);
    free(m->packed_wg);
    m->packed = NULL;
    m->packed_wg = NULL;
    m->packed_bytes = 0;
}

void cnnc_model_free(cnnc_model *m) {
    if (!m) return;
    free(m->values); free(m->ops); free(m->input_ids); free(m->output_ids);
    free((void *)m->input_names); free((void *)m->output_names); free(m->names);
    free(m->offsets); free(m->sizes); free(m->first); free(m->last); free(m->order);
    free(m->into); free(m->into_off); free(m->reads);
    free(m->buf_raw);
    cnnc_pool_free(m->own_pool);
    drop_packed(m);
    free(m);
}

int cnnc_model_set_threads(cnnc_model *m, int nthreads) {
    if (!m || nthreads < 1) return CNNC_EINVAL;
    m->ctx.nthreads = nthreads;
    m->batch = 0;
    return CNNC_OK;
}

int cnnc_model_set_pool(cnnc_model *m, cnnc_pool *pool) {
    if (!m) return CNNC_EINVAL;
    if (pool) {
        cnnc_pool_free(m->own_pool);
        m->own_pool = NULL;
    }
    m->borrowed = pool != NULL;
    m->ctx.pool = pool ? pool : m->own_pool;
    m->batch = 0;
    return CNNC_OK;
}

int cnnc_model_set_arch(cnnc_model *m, int arch) {
    if (!m) return CNNC_EINVAL;
    m->batch = 0;
    cnnc_pool *pool = m->ctx.pool;
    const int used = cnnc_ctx_init(&m->ctx, arch, m->ctx.nthreads);
    m->ctx.pool = pool;
    if (m->packed && (m->ctx.k.mr != m->packed_mr || m->ctx.k.nr != m->packed_nr)) drop_packed(m);
    return used;
}

int cnnc_model_num_inputs(const cnnc_model *m) { return m ? m->n_inputs : CNNC_EINVAL; }
int cnnc_model_num_outputs(const cnnc_model *m) { return m ? m->n_outputs : CNNC_EINVAL; }
const char *cnnc_model_input_name(const cnnc_model *m, int i) {
    return (m && i >= 0 && i < m->n_inputs) ? m->input_names[i] : NULL;
}
const char *cnnc_model_output_name(const cnnc_model *m, int i) {
    return (m && i >= 0 && i < m->n_outputs) ? m->output_names[i] : NULL;
}
int64_t cnnc_model_fixed_batch(const cnnc_model *m) { return m ? m->fixed_batch : CNNC_EINVAL; }

static int io_shape(const cnnc_model *m, int32_t id, int64_t batch, int64_t dims[8]) {
    if (batch < 1 || (m->fixed_batch && batch != m->fixed_batch)) return CNNC_EINVAL;
    const value_t *v = &m->values[id];
    for (int i = 0; i < MAX_RANK; ++i) dims[i] = 0;
    if (!value_dims(v, batch, dims)) return CNNC_EOVERFLOW;
    return v->rank;
}
int cnnc_model_input_shape(const cnnc_model *m, int i, int64_t batch, int64_t dims[8]) {
    if (!m || !dims || i < 0 || i >= m->n_inputs) return CNNC_EINVAL;
    return io_shape(m, m->input_ids[i], batch, dims);
}
int cnnc_model_output_shape(const cnnc_model *m, int i, int64_t batch, int64_t dims[8]) {
    if (!m || !dims || i < 0 || i >= m->n_outputs) return CNNC_EINVAL;
    return io_shape(m, m->output_ids[i], batch, dims);
}

/* ---- per-op shape checks and workspace --------------------------------------------------------- */

typedef struct {
    int rank;
    int64_t d[MAX_RANK];
    int64_t n;
} shape_t;

static int get_shape(const cnnc_model *m, int32_t id, int64_t batch, shape_t *s) {
    const value_t *v = &m->values[id];
    s->rank = v->rank;
    if (!value_dims(v, batch, s->d)) return 0;
    s->n = numel_of(s->d, s->rank);
    return s->n >= 0;
}

static cnnc_act op_act(const op_t *o, int kind_index) {
    cnnc_act a;
    a.kind = (int)o->ia[kind_index];
    a.alpha = o->fa[0];
    a.beta = o->fa[1];
    return a;
}

/* Layout-independent view of a 4-D shape: n, c, h, w. */
static void nchw_of(const shape_t *x, int layout, int64_t *n, int64_t *c, int64_t *h, int64_t *w) {
    *n = x->d[0];
    if (layout == CNNC_NHWC) { *h = x->d[1]; *w = x->d[2]; *c = x->d[3]; }
    else { *c = x->d[1]; *h = x->d[2]; *w = x->d[3]; }
}

static void window_of(const shape_t *x, int layout, int64_t kh, int64_t kw, const int64_t *a, cnnc_window2d *w) {
    /* a: sh, sw, dh, dw, pt, pb, pl, pr */
    nchw_of(x, layout, &w->n, &w->c, &w->h, &w->w);
    w->kh = kh; w->kw = kw;
    w->sh = a[0]; w->sw = a[1]; w->dh = a[2]; w->dw = a[3];
    w->pt = a[4]; w->pb = a[5]; w->pl = a[6]; w->pr = a[7];
    w->layout = layout;
}

static int layout_ok(int64_t layout) { return layout == CNNC_NHWC || layout == CNNC_NCHW; }

static int window_ok(const cnnc_window2d *w) {
    const int64_t a[10] = {w->kh, w->kw, w->sh, w->sw, w->dh, w->dw, w->pt, w->pb, w->pl, w->pr};
    for (int i = 0; i < 10; ++i)
        if (a[i] > MAX_WINDOW) return 0;
    return w->n >= 1 && w->c >= 1 && w->h >= 1 && w->w >= 1 && w->kh >= 1 && w->kw >= 1 && w->sh >= 1 &&
           w->sw >= 1 && w->dh >= 1 && w->dw >= 1 && w->pt >= 0 && w->pb >= 0 && w->pl >= 0 && w->pr >= 0;
}

/* Broadcast shape of a and b (NumPy rules) -> out; 0 if they do not broadcast. */
static int broadcast(const shape_t *a, const shape_t *b, shape_t *out) {
    int r = a->rank > b->rank ? a->rank : b->rank;
    out->rank = r;
    for (int i = 0; i < r; ++i) {
        int ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
        if (da != db && da != 1 && db != 1) return 0;
        out->d[i] = da == 1 ? db : da;
    }
    out->n = numel_of(out->d, r);
    return out->n >= 0;
}

/* The leading (batch) dims of a matmul operand: all but its last two. */
static void matmul_leading(const shape_t *s, shape_t *lead) {
    lead->rank = s->rank - 2;
    for (int i = 0; i < lead->rank; ++i) lead->d[i] = s->d[i];
    lead->n = numel_of(lead->d, lead->rank);
}

/* Check op k at batch b; *ws receives its workspace bytes. */
static int check_op(const cnnc_model *m, int32_t k, int64_t b, int64_t *ws, char *msg, int64_t msg_size) {
    const op_t *o = &m->ops[k];
    shape_t x, y, t;
    *ws = 0;
    if (!get_shape(m, o->out[0], b, &y)) return fail(msg, msg_size, CNNC_EOVERFLOW, "op %d: output size overflows", k);
    for (int j = 0; j < o->n_in; ++j) {
        if (o->in[j] < 0) continue;
        if (!get_shape(m, o->in[j], b, &t)) return fail(msg, msg_size, CNNC_EOVERFLOW, "op %d: input size overflows", k);
        /* constants hold rank/dims as stored; run-time shapes come from the value table */
    }
    get_shape(m, o->in[0], b, &x);
#define BAD(what) return fail(msg, msg_size, CNNC_EFORMAT, "op %d (code %d): %s", k, o->code, what)
    switch (o->code) {
    case OP_CONV: {
        shape_t w, bias;
        get_shape(m, o->in[1], b, &w);
        const int layout = (int)o->ia[10];
        if (x.rank != 4 || w.rank != 4 || y.rank != 4 || !layout_ok(layout)) BAD("conv needs 4-D x, w, y");
        /* weights: NCHW [Cout, C/g, KH, KW]; NHWC [KH, KW, C/g, Cout] */
        const int nhwc = layout == CNNC_NHWC;
        const int64_t cout = nhwc ? w.d[3] : w.d[0], cg = nhwc ? w.d[2] : w.d[1];
        const int64_t kh = nhwc ? w.d[0] : w.d[2], kw = nhwc ? w.d[1] : w.d[3];
        int64_t g = o->ia[8];
        cnnc_conv2d_params p;
        window_of(&x, layout, kh, kw, o->ia, &p.win);
        if (g < 1 || cout < 1 || p.win.c % g || cout % g || cg * g != p.win.c) BAD("bad groups / channels");
        if (o->in[2] >= 0) {
            get_shape(m, o->in[2], b, &bias);
            if (bias.n != cout) BAD("bias size");
        }
        p.cout = cout;
        p.groups = g;
        int64_t oh, ow;
        if (!window_ok(&p.win) || cnnc_window2d_output(&p.win, &oh, &ow) != CNNC_OK) BAD("bad window");
        cnnc_act a = op_act(o, 9);
        if (!cnnc_act_valid(a)) BAD("bad activation");
        int64_t yn, yc, yh, yw;
        nchw_of(&y, layout, &yn, &yc, &yh, &yw);
        if (o->n_i == 13) { /* max pool fused: pkh x pkw windows, stride = window, no padding */
            const int64_t pkh = o->ia[11], pkw = o->ia[12];
            if (!nhwc || pkh < 1 || pkw < 1 || pkh > oh || pkw > ow) BAD("fused pool window");
            oh /= pkh;
            ow /= pkw;
        }
        if (yn != p.win.n || yc != cout || yh != oh || yw != ow) BAD("output shape");
        if (o->n_in == 4) { /* a residual added before the activation: y's shape, not y's memory */
            shape_t r;
            get_shape(m, o->in[3], b, &r);
            if (r.rank != 4 || !same_dims(r.d, y.d, 4)) BAD("residual shape");
            if (m->values[o->in[3]].root == m->values[o->out[0]].root) BAD("residual is the output");
        }
        *ws = o->n_i == 13 ? cnnc_conv2d_pool_workspace_size(&m->ctx, &p, o->ia[11], o->ia[12])
                           : cnnc_conv2d_workspace_size(&m->ctx, &p);
        if (*ws < 0) BAD("workspace size");
        return CNNC_OK;
    }
    case OP_MAXPOOL:
    case OP_AVGPOOL: {
        const int layout = (int)o->ia[11];
        if (x.rank != 4 || y.rank != 4 || !layout_ok(layout)) BAD("pooling needs 4-D x and y");
        cnnc_pool2d_params p;
        window_of(&x, layout, o->ia[0], o->ia[1], o->ia + 2, &p.win);
        p.ceil_mode = (int)o->ia[10];
        int64_t oh, ow;
        if (!window_ok(&p.win) || (p.ceil_mode != 0 && p.ceil_mode != 1) ||
            (o->code == OP_AVGPOOL && (o->ia[12] != 0 && o->ia[12] != 1)) ||
            cnnc_pool2d_output(&p, &oh, &ow) != CNNC_OK)
            BAD("bad window");
        int64_t yn, yc, yh, yw;
        nchw_of(&y, layout, &yn, &yc, &yh, &yw);
        if (yn != p.win.n || yc != p.win.c || yh != oh || yw != ow) BAD("output shape");
        return CNNC_OK;
    }
    case OP_GAVGPOOL:
    case OP_GMAXPOOL:
        if (x.rank != 4 || x.n < 1 || !layout_ok(o->ia[0]) ||
            y.n != x.d[0] * x.d[o->ia[0] == CNNC_NHWC ? 3 : 1])
            BAD("global pooling needs 4-D x and y of N x C elements");
        return CNNC_OK;
    case OP_DENSE: {
        shape_t w, bias;
        if (m->values[m->values[o->in[1]].root].kind != V_CONST) BAD("weights must be a constant");
        get_shape(m, o->in[1], b, &w);
        if (w.rank != 2 || w.d[0] < 1 || w.d[1] < 1 || x.n % w.d[0]) BAD("dense needs w [K, N] and K | size(x)");
        int64_t mm = x.n / w.d[0];
        if (mm < 1 || y.n != cnnc_mul_ok(mm, w.d[1])) BAD("output size");
        if (o->in[2] >= 0) {
            get_shape(m, o->in[2], b, &bias);
            if (bias.n != w.d[1]) BAD("bias size");
        }
        if (!cnnc_act_valid(op_act(o, 0))) BAD("bad activation");
        *ws = cnnc_dense_workspace_size(&m->ctx, mm, w.d[0], w.d[1]);
        if (*ws < 0) BAD("workspace size");
        return CNNC_OK;
    }
    case OP_ACT:
        if (x.n != y.n || !cnnc_act_valid(op_act(o, 0))) BAD("size or activation");
        return CNNC_OK;
    case OP_COPY:
        if (x.n != y.n) BAD("size");
        return CNNC_OK;
    case OP_SOFTMAX: {
        int64_t axis = o->ia[0];
        if (x.n != y.n || axis < 0 || axis > x.rank || (o->ia[1] != 0 && o->ia[1] != 1)) BAD("size or axis");
        return CNNC_OK;
    }
    case OP_AFFINE: {
        shape_t s1, s2;
        get_shape(m, o->in[1], b, &s1);
        get_shape(m, o->in[2], b, &s2);
        const int64_t ax = o->ia[0];
        if (x.rank < 2 || ax < 1 || ax >= x.rank || x.n != y.n || s1.n != x.d[ax] || s2.n != x.d[ax])
            BAD("needs a channel axis >= 1 and one scale and shift per channel");
        return CNNC_OK;
    }
    case OP_BINARY: {
        shape_t bb, out;
        get_shape(m, o->in[1], b, &bb);
        if (o->ia[0] < 0 || o->ia[0] >= BIN_LAST) BAD("unknown binary kind");
        if (!broadcast(&x, &bb, &out)) BAD("shapes do not broadcast");
        if (out.rank != y.rank || !same_dims(out.d, y.d, y.rank)) BAD("output shape");
        if (o->ia[0] == BIN_PRELU && (out.rank != x.rank || !same_dims(out.d, x.d, x.rank))) BAD("prelu slope");
        return CNNC_OK;
    }
    case OP_CONCAT: {
        int64_t axis = o->ia[0], sum = 0;
        if (axis < 0 || axis >= x.rank || y.rank != x.rank) BAD("axis");
        for (int j = 0; j < o->n_in; ++j) {
            if (o->in[j] < 0) BAD("missing input");
            get_shape(m, o->in[j], b, &t);
            if (t.rank != x.rank) BAD("ranks differ");
            for (int d = 0; d < x.rank; ++d)
                if (d != axis && t.d[d] != y.d[d]) BAD("shapes differ off the axis");
            if (t.d[axis] > INT64_MAX - sum) BAD("output shape");
            sum += t.d[axis];
        }
        if (sum != y.d[axis]) BAD("output shape");
        return CNNC_OK;
    }
    case OP_TRANSPOSE: {
        int seen[MAX_RANK] = {0};
        if (o->n_i != x.rank || y.rank != x.rank) BAD("perm length");
        for (int d = 0; d < x.rank; ++d) {
            int64_t p = o->ia[d];
            if (p < 0 || p >= x.rank || seen[p]) BAD("not a permutation");
            seen[p] = 1;
            if (y.d[d] != x.d[p]) BAD("output shape");
        }
        return CNNC_OK;
    }
    case OP_PAD: {
        int64_t mode = o->ia[0];
        if (o->n_i != 1 + 2 * x.rank || y.rank != x.rank || mode < PAD_CONSTANT || mode > PAD_EDGE) BAD("pads length or mode");
        for (int d = 0; d < x.rank; ++d) {
            int64_t lo = o->ia[1 + d], hi = o->ia[1 + x.rank + d];
            if (lo < 0 || hi < 0 || lo > y.d[d] || hi > y.d[d] - lo || y.d[d] - lo - hi != x.d[d])
                BAD("pads or output shape");
            if ((lo || hi) && mode == PAD_EDGE && x.d[d] < 1) BAD("edge padding of an empty axis");
            if ((lo || hi) && mode == PAD_REFLECT && (x.d[d] < 2 || lo >= x.d[d] || hi >= x.d[d])) BAD("reflect pads too large");
        }
        return CNNC_OK;
    }
    case OP_MATMUL: {
        /* y[..., M, N] = a[..., M, K] @ b[..., K, N]; the leading (batch) dims broadcast (NumPy rules) */
        shape_t bb, lead_a, lead_b, lead;
        get_shape(m, o->in[1], b, &bb);
        if (x.rank < 2 || bb.rank < 2 || y.rank < 2) BAD("matmul needs a, b and y of rank >= 2");
        const int64_t M = x.d[x.rank - 2], K = x.d[x.rank - 1], N = bb.d[bb.rank - 1];
        if (bb.d[bb.rank - 2] != K || y.d[y.rank - 2] != M || y.d[y.rank - 1] != N) BAD("inner dimensions");
        matmul_leading(&x, &lead_a);
        matmul_leading(&bb, &lead_b);
        if (!broadcast(&lead_a, &lead_b, &lead)) BAD("batch dimensions of a and b do not broadcast");
        if (y.rank != lead.rank + 2 || !same_dims(y.d, lead.d, lead.rank)) BAD("output shape");
        *ws = cnnc_gemm_workspace_size(&m->ctx, M, N, K);
        if (*ws < 0) BAD("workspace size");
        return CNNC_OK;
    }
    case OP_GATHER: {
        const int64_t axis = o->ia[0], nidx = o->n_i - 1;
        if (axis < 0 || axis >= x.rank) BAD("axis");
        const int64_t outer = numel_of(x.d, (int)axis), inner = numel_of(x.d + axis + 1, x.rank - (int)axis - 1);
        for (int64_t j = 0; j < nidx; ++j)
            if (o->ia[1 + j] < 0 || o->ia[1 + j] >= x.d[axis]) BAD("index out of range");
        if (cnnc_mul_ok(cnnc_mul_ok(outer, nidx), inner) != y.n) BAD("output size");
        return CNNC_OK;
    }
    case OP_LRN:
        if (x.rank < 3 || x.n != y.n || o->ia[0] < 1) BAD("needs x [N, C, ...] and size >= 1");
        return CNNC_OK;
    case OP_UNARY:
        if (o->ia[0] < 0 || o->ia[0] >= UN_LAST) BAD("unknown unary kind");
        if (x.n != y.n) BAD("size");
        return CNNC_OK;
    default:
        BAD("unknown op");
    }
#undef BAD
}

/* ---- planning ------------------------------------------------------------------------------------ */

/* Greedy by size: arena tensors, largest first (ties: lower value id first), each at the lowest
 * 64-byte aligned offset where it overlaps no already placed tensor whose lifetime overlaps its own.
 * cnnc/deploy/_plan.py runs the same algorithm. */
/* Concatenations computed in place (cnnc/deploy/_format.py, "the plan"): when a concatenation's output
 * is one block per input (nothing before its axis: outer size 1 at this batch), an input that is an
 * arena tensor of its own (no alias of it or to it), read by nothing else, and written by an op other
 * than a concatenation, is computed straight into its block: into[v] = the output, into_off[v] = the
 * block's byte offset. The concatenation then has nothing to copy for it. */
static void place_concat_inputs(cnnc_model *m, int64_t batch) {
    const int32_t nv = m->n_values;
    for (int32_t i = 0; i < nv; ++i) {
        m->into[i] = -1;
        m->into_off[i] = 0;
        m->reads[i] = 0;
        m->order[i] = -1; /* the op writing value i */
    }
    for (int32_t i = 0; i < nv; ++i) /* a value an alias reads through counts as read twice */
        if (m->values[i].kind == V_ALIAS) m->reads[m->values[i].root] += 2;
    for (int32_t k = 0; k < m->n_ops; ++k) {
        const op_t *o = &m->ops[k];
        m->order[o->out[0]] = k;
        for (int j = 0; j < o->n_in; ++j)
            if (o->in[j] >= 0) m->reads[o->in[j]] += 1;
    }
    for (int32_t k = 0; k < m->n_ops; ++k) {
        const op_t *o = &m->ops[k];
        const int32_t out = o->out[0];
        if (o->code != OP_CONCAT || m->values[out].kind != V_ARENA) continue;
        int64_t dims[MAX_RANK];
        value_dims(&m->values[out], batch, dims);
        if (numel_of(dims, (int)o->ia[0]) != 1) continue;
        int64_t at = 0;
        for (int j = 0; j < o->n_in; ++j) {
            const int32_t v = o->in[j];
            const int32_t w = m->order[v];
            if (m->values[v].kind == V_ARENA && m->values[v].root == v && m->reads[v] == 1 && w >= 0 &&
                m->ops[w].code != OP_CONCAT && m->into[v] < 0) {
                m->into[v] = out;
                m->into_off[v] = at;
            }
            at += m->sizes[v];
        }
    }
}

static int plan_batch(cnnc_model *m, int64_t batch, char *msg, int64_t msg_size) {
    const int32_t nv = m->n_values;
    if (batch < 1 || (m->fixed_batch && batch != m->fixed_batch))
        return fail(msg, msg_size, CNNC_EINVAL, "batch %lld: the model takes %s%lld", (long long)batch,
                    m->fixed_batch ? "only batch " : "batch >= ", (long long)(m->fixed_batch ? m->fixed_batch : 1));
    for (int32_t i = 0; i < nv; ++i) {
        int64_t dims[MAX_RANK];
        const value_t *v = &m->values[i];
        if (!value_dims(v, batch, dims)) return fail(msg, msg_size, CNNC_EOVERFLOW, "value %d: size overflows", i);
        int64_t n = numel_of(dims, v->rank);
        int64_t bytes = cnnc_mul_ok(n, 4);
        if (n < 0 || bytes < 0 || bytes > INT64_MAX / 4) return fail(msg, msg_size, CNNC_EOVERFLOW, "value %d: size overflows", i);
        m->sizes[i] = bytes;
        m->offsets[i] = -1;
        m->first[i] = -1;
        m->last[i] = -1;
    }
    for (int32_t i = 0; i < nv; ++i)
        if (m->values[i].kind == V_ALIAS && m->sizes[i] != m->sizes[m->values[i].root])
            return fail(msg, msg_size, CNNC_EFORMAT, "value %d: alias of a tensor of another size", i);
    int64_t ws = 0;
    for (int32_t k = 0; k < m->n_ops; ++k) {
        int64_t w;
        int rc = check_op(m, k, batch, &w, msg, msg_size);
        if (rc != CNNC_OK) return rc;
        if (w > ws) ws = w;
    }
    place_concat_inputs(m, batch);
    /* lifetimes, a tensor computed in place counting as its concatenation's (which it then starts) */
    for (int32_t k = 0; k < m->n_ops; ++k) {
        const op_t *o = &m->ops[k];
        int32_t r = m->values[o->out[0]].root;
        if (m->into[r] >= 0) r = m->into[r];
        if (m->first[r] < 0) m->first[r] = k;
        m->last[r] = k;
        for (int j = 0; j < o->n_in; ++j) {
            if (o->in[j] < 0) continue;
            int32_t u = m->values[o->in[j]].root;
            m->last[m->into[u] >= 0 ? m->into[u] : u] = k;
        }
    }
    /* graph outputs that alias an arena tensor cannot exist (the writer gives them their own) */
    int32_t n = 0;
    for (int32_t i = 0; i < nv; ++i)
        if (m->values[i].kind == V_ARENA && m->into[i] < 0) m->order[n++] = i;
    /* insertion sort by (size desc, id asc): n is at most a few thousand */
    for (int32_t i = 1; i < n; ++i) {
        int32_t v = m->order[i], j = i - 1;
        while (j >= 0 && (m->sizes[m->order[j]] < m->sizes[v] ||
                          (m->sizes[m->order[j]] == m->sizes[v] && m->order[j] > v))) {
            m->order[j + 1] = m->order[j];
            --j;
        }
        m->order[j + 1] = v;
    }
    int64_t total = 0;
    for (int32_t i = 0; i < n; ++i) {
        int32_t v = m->order[i];
        int64_t size = CNNC_ROUND_UP(m->sizes[v], (int64_t)CNNC_ALIGN);
        int64_t off = 0;
        /* candidate offsets: 0 and the end of every placed conflicting tensor; take the lowest that fits */
        for (;;) {
            int moved = 0;
            for (int32_t j = 0; j < i; ++j) {
                int32_t u = m->order[j];
                if (m->last[u] < m->first[v] || m->last[v] < m->first[u]) continue;  /* lifetimes disjoint */
                int64_t usize = CNNC_ROUND_UP(m->sizes[u], (int64_t)CNNC_ALIGN);
                if (off < m->offsets[u] + usize && m->offsets[u] < off + size) {
                    off = m->offsets[u] + usize;
                    moved = 1;
                }
            }
            if (off > INT64_MAX / 2 - size)  /* offsets stay far from overflow; no real arena is near */
                return fail(msg, msg_size, CNNC_EOVERFLOW, "value %d: the arena size overflows", v);
            if (!moved) break;
        }
        m->offsets[v] = off;
        if (off + size > total) total = off + size;
    }
    for (int32_t i = 0; i < nv; ++i)
        if (m->into[i] >= 0) m->offsets[i] = m->offsets[m->into[i]] + m->into_off[i];
    m->plan_bytes = total;
    m->ws_bytes = ws;
    m->batch = batch;
    return CNNC_OK;
}

int64_t cnnc_model_arena_size(cnnc_model *m, int64_t batch) {
    if (!m) return CNNC_EINVAL;
    m->batch = 0;
    /* the pool first: the workspaces depend on the threads it has. Without one (creation failed, or a
     * build without threads) the model runs on the calling thread. */
    if (!m->borrowed && m->ctx.nthreads > 1 && cnnc_pool_threads(m->own_pool) < m->ctx.nthreads) {
        cnnc_pool_free(m->own_pool);
        m->own_pool = cnnc_pool_create(m->ctx.nthreads);
        m->ctx.pool = m->own_pool;
    }
    int rc = plan_batch(m, batch, NULL, 0);
    if (rc != CNNC_OK) {
        m->batch = 0;
        return rc;
    }
    if (m->plan_bytes > INT64_MAX - m->ws_bytes) {
        m->batch = 0;
        return CNNC_EOVERFLOW;
    }
    return m->plan_bytes + m->ws_bytes;
}

int64_t cnnc_model_plan_bytes(const cnnc_model *m) { return m ? (m->batch ? m->plan_bytes : CNNC_ESTATE) : CNNC_EINVAL; }
int64_t cnnc_model_workspace_bytes(const cnnc_model *m) { return m ? (m->batch ? m->ws_bytes : CNNC_ESTATE) : CNNC_EINVAL; }

/* ---- run ----------------------------------------------------------------------------------------- */

typedef struct {
    const cnnc_model *m;
    unsigned char *arena;
    const float *const *inputs;
    float *const *outputs;
    const float *const *consts; /* NULL: the bundle's */
} runenv;

static float *ptr_of(const runenv *e, int32_t id) {
    const value_t *r = &e->m->values[e->m->values[id].root];
    switch (r->kind) {
    case V_ARENA: return (float *)(e->arena + e->m->offsets[r - e->m->values]);
    case V_INPUT: return (float *)e->inputs[r->index];
    case V_OUTPUT: return e->outputs[r->index];
    case V_CONST: return e->consts ? (float *)e->consts[r->cidx] : (float *)(e->m->weights + r->offset);
    default: return NULL;
    }
}

/* The convolution op o runs, for the batch b. */
static void conv_params_of(const cnnc_model *m, const op_t *o, int64_t b, cnnc_conv2d_params *p) {
    shape_t sx, w;
    get_shape(m, o->in[0], b, &sx);
    get_shape(m, o->in[1], b, &w);
    const int layout = (int)o->ia[10], nhwc = layout == CNNC_NHWC;
    window_of(&sx, layout, nhwc ? w.d[0] : w.d[2], nhwc ? w.d[1] : w.d[3], o->ia, &p->win);
    p->cout = nhwc ? w.d[3] : w.d[0];
    p->groups = o->ia[8];
}

/* ---- weights packed once ------------------------------------------------------------------------- */
int cnnc_model_prepack(cnnc_model *m, const float *const *consts) {
    if (!m) return CNNC_EINVAL;
    if (!m->batch || (m->external && !consts)) return CNNC_ESTATE;
    if (consts)
        for (int32_t i = 0; i < m->n_consts; ++i)
            if (!consts[i] || (uintptr_t)consts[i] % sizeof(float)) return CNNC_EINVAL;
    drop_packed(m);
    m->packed = (float **)calloc((size_t)(m->n_ops > 0 ? m->n_ops : 1), sizeof(float *));
    m->packed_wg = (unsigned char *)calloc((size_t)(m->n_ops > 0 ? m->n_ops : 1), 1);
    if (!m->packed || !m->packed_wg) {
        drop_packed(m);
        return CNNC_ENOMEM;
    }
    m->packed_mr = m->ctx.k.mr;
    m->packed_nr = m->ctx.k.nr;
    const runenv e = {m, NULL, NULL, NULL, consts};
    for (int32_t k = 0; k < m->n_ops; ++k) {
        const op_t *o = &m->ops[k];
        if (o->code != OP_CONV || m->values[m->values[o->in[1]].root].kind != V_CONST) continue;
        cnnc_conv2d_params p;
        conv_params_of(m, o, m->batch, &p);
        /* none where the prepared batch's forward would not pack them (the few-row GEMM's); a Winograd
         * convolution's transformed weights (at a smaller batch it may run im2col: not these) */
        const int64_t floats = cnnc_conv2d_packed_floats(&m->ctx, &p);
        if (floats <= 0) continue;
        if (floats > (INT64_MAX - m->packed_bytes) / (int64_t)sizeof(float) / 2) {
            drop_packed(m);
            return CNNC_EOVERFLOW;
        }
        const int64_t sfloats = cnnc_conv2d_pack_scratch_floats(&p);
        float *dst = (float *)malloc((size_t)floats * sizeof(float));
        float *scratch = sfloats > 0 ? (float *)malloc((size_t)sfloats * sizeof(float)) : NULL;
        if (!dst || (sfloats > 0 && !scratch)) {
            free(dst);
            free(scratch);
            drop_packed(m);
            return CNNC_ENOMEM;
        }
        cnnc_conv2d_pack_weights(&m->ctx, &p, ptr_of(&e, o->in[1]), scratch, dst);
        free(scratch);
        m->packed[k] = dst;
        m->packed_wg[k] = (unsigned char)cnnc_winograd_applies(&p);
        m->packed_bytes += floats * (int64_t)sizeof(float);
    }
    return CNNC_OK;
}

int64_t cnnc_model_packed_bytes(const cnnc_model *m) { return m ? m->packed_bytes : CNNC_EINVAL; }

/* dst[i * ldd + j] = src[i * lds + j], i < rows, j < cols: a concatenation's copies, in chunks of
 * COPY_CHUNK floats shared out over the threads (a copy is all memory traffic: one thread cannot
 * use the bandwidth two have). */
#define COPY_CHUNK ((int64_t)1 << 14)
typedef struct {
    const float *src;
    float *dst;
    int64_t lds, ldd, cols, per_row;
} copy_job;

static void copy_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const copy_job *j = (const copy_job *)arg;
    (void)slot;
    for (int64_t t = lo; t < hi; ++t) {
        const int64_t i = t / j->per_row, c0 = t % j->per_row * COPY_CHUNK;
        const int64_t n = CNNC_MIN(COPY_CHUNK, j->cols - c0);
        memcpy(j->dst + i * j->ldd + c0, j->src + i * j->lds + c0, (size_t)n * sizeof(float));
    }
}

static void copy_rows(const cnnc_ctx *ctx, int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst,
                      int64_t ldd) {
    if (rows <= 0 || cols <= 0) return;
    const copy_job j = {src, dst, lds, ldd, cols, CNNC_CEIL_DIV(cols, COPY_CHUNK)};
    const int64_t items = rows * j.per_row;
    const int nt = rows * cols < 4 * COPY_CHUNK ? 1 : cnnc_threads(ctx, items);
    cnnc_parallel_for(ctx, nt, items, cnnc_grain(items, nt, 1), copy_task, (void *)&j);
}

static float bin_apply(int kind, float a, float b) {
    switch (kind) {
    case BIN_ADD: return a + b;
    case BIN_SUB: return a - b;
    case BIN_MUL: return a * b;
    case BIN_DIV: return a / b;
    case BIN_MAX: return (a > b || a != a) ? a : b;
    case BIN_MIN: return (a < b || a != a) ? a : b;
    default: return a < 0.0f ? a * b : a;  /* prelu: a = x, b = slope */
    }
}

static void run_binary(int kind, const shape_t *sa, const float *a, const shape_t *sb, const float *b,
                       const shape_t *so, float *y) {
    if (sa->n == so->n && sb->n == so->n) {  /* same shape: one loop per kind, so it vectorises */
        const int64_t n = so->n;
        switch (kind) {
        case BIN_ADD: for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i]; return;
        case BIN_SUB: for (int64_t i = 0; i < n; ++i) y[i] = a[i] - b[i]; return;
        case BIN_MUL: for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i]; return;
        case BIN_DIV: for (int64_t i = 0; i < n; ++i) y[i] = a[i] / b[i]; return;
        default: for (int64_t i = 0; i < n; ++i) y[i] = bin_apply(kind, a[i], b[i]); return;
        }
    }
    if (sb->n == 1 && sa->n == so->n) {
        const float bv = b[0];
        for (int64_t i = 0; i < so->n; ++i) y[i] = bin_apply(kind, a[i], bv);
        return;
    }
    /* general broadcasting: strides of a and b over the output's axes (0 where broadcast) */
    const int r = so->rank;
    int64_t sta[MAX_RANK], stb[MAX_RANK], idx[MAX_RANK];
    int64_t ma = 1, mb = 1;
    for (int i = r - 1; i >= 0; --i) {
        int ia = i - (r - sa->rank), ib = i - (r - sb->rank);
        int64_t da = ia >= 0 ? sa->d[ia] : 1, db = ib >= 0 ? sb->d[ib] : 1;
        sta[i] = da == 1 ? 0 : ma;
        stb[i] = db == 1 ? 0 : mb;
        ma *= da;
        mb *= db;
        idx[i] = 0;
    }
    if (so->n == 0) return;
    const int64_t inner = r ? so->d[r - 1] : 1;
    const int64_t ia_s = r ? sta[r - 1] : 0, ib_s = r ? stb[r - 1] : 0;
    int64_t oa = 0, ob = 0;
    for (int64_t base = 0; base < so->n; base += inner) {
        for (int64_t j = 0; j < inner; ++j) y[base + j] = bin_apply(kind, a[oa + j * ia_s], b[ob + j * ib_s]);
        for (int i = r - 2; i >= 0; --i) {  /* odometer over the outer axes */
            ++idx[i];
            oa += sta[i];
            ob += stb[i];
            if (idx[i] < so->d[i]) break;
            oa -= sta[i] * idx[i];
            ob -= stb[i] * idx[i];
            idx[i] = 0;
        }
    }
}

static void run_transpose(const int64_t *perm, const shape_t *sx, const float *x, const shape_t *sy, float *y) {
    const int r = sx->rank;
    if (sy->n == 0) return;
    if (r == 0) { y[0] = x[0]; return; }
    int64_t xs[MAX_RANK], st[MAX_RANK], idx[MAX_RANK];
    int64_t s = 1;
    for (int i = r - 1; i >= 0; --i) { xs[i] = s; s *= sx->d[i]; }
    for (int i = 0; i < r; ++i) { st[i] = xs[perm[i]]; idx[i] = 0; }
    const int64_t inner = sy->d[r - 1], is = st[r - 1];
    int64_t off = 0;
    for (int64_t base = 0; base < sy->n; base += inner) {
        for (int64_t j = 0; j < inner; ++j) y[base + j] = x[off + j * is];
        for (int i = r - 2; i >= 0; --i) {
            ++idx[i];
            off += st[i];
            if (idx[i] < sy->d[i]) break;
            off -= st[i] * idx[i];
            idx[i] = 0;
        }
    }
}

static int64_t pad_src(int64_t o, int64_t lo, int64_t n, int mode) {
    int64_t i = o - lo;
    if (i >= 0 && i < n) return i;
    if (mode == PAD_CONSTANT) return -1;
    if (mode == PAD_EDGE) return i < 0 ? 0 : n - 1;
    return i < 0 ? -i : 2 * (n - 1) - i;  /* reflect (pads < n, checked) */
}

static void run_pad(const int64_t *ia, float value, const shape_t *sx, const float *x, const shape_t *sy, float *y) {
    const int r = sx->rank, mode = (int)ia[0];
    int64_t xs[MAX_RANK], idx[MAX_RANK];
    int64_t s = 1;
    for (int i = r - 1; i >= 0; --i) { xs[i] = s; s *= sx->d[i]; idx[i] = 0; }
    for (int64_t o = 0; o < sy->n; ++o) {
        int64_t off = 0, inside = 1;
        for (int i = 0; i < r; ++i) {
            int64_t si = pad_src(idx[i], ia[1 + i], sx->d[i], mode);
            if (si < 0) { inside = 0; break; }
            off += si * xs[i];
        }
        y[o] = inside ? x[off] : value;
        for (int i = r - 1; i >= 0; --i) {
            if (++idx[i] < sy->d[i]) break;
            idx[i] = 0;
        }
    }
}

static void run_lrn(const op_t *o, const shape_t *sx, const float *x, float *y) {
    const int64_t size = o->ia[0], n = sx->d[0], c = sx->d[1];
    const int64_t plane = sx->n / (n * c > 0 ? n * c : 1);
    const int64_t lo = (size - 1) / 2, hi = size - 1 - lo;
    const float alpha = o->fa[0] / (float)size, beta = o->fa[1], bias = o->fa[2];
    for (int64_t b = 0; b < n; ++b)
        for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t p = 0; p < plane; ++p) {
                float s = 0.0f;
                /* channels [ch - lo, ch + hi] within [0, c): no loop over an absurd size */
                const int64_t c0 = ch > lo ? ch - lo : 0, c1 = hi < c - ch ? ch + hi : c - 1;
                for (int64_t cc = c0; cc <= c1; ++cc) {
                    float v = x[(b * c + cc) * plane + p];
                    s += v * v;
                }
                const int64_t i = (b * c + ch) * plane + p;
                y[i] = x[i] / powf(bias + alpha * s, beta);
            }
}

int cnnc_model_run(const cnnc_model *m, void *arena, int64_t arena_size, const float *const *inputs,
                   float *const *outputs) {
    return cnnc_model_run_consts(m, arena, arena_size, inputs, outputs, NULL);
}

int cnnc_model_num_consts(const cnnc_model *m) { return m ? m->n_consts : CNNC_EINVAL; }

int cnnc_model_external_consts(const cnnc_model *m) { return m ? m->external : CNNC_EINVAL; }

static const value_t *const_value(const cnnc_model *m, int i) {
    if (!m || i < 0 || i >= m->n_consts) return NULL;
    for (int32_t v = 0; v < m->n_values; ++v)
        if (m->values[v].kind == V_CONST && m->values[v].cidx == i) return &m->values[v];
    return NULL;
}

int cnnc_model_const_shape(const cnnc_model *m, int i, int64_t dims[8]) {
    const value_t *v = const_value(m, i);
    if (!v || !dims) return CNNC_EINVAL;
    for (int d = 0; d < v->rank; ++d) dims[d] = v->dims[d];
    return v->rank;
}

int cnnc_model_run_consts(const cnnc_model *m, void *arena, int64_t arena_size, const float *const *inputs,
                          float *const *outputs, const float *const *consts) {
    if (!m) return CNNC_EINVAL;
    if (!m->batch) return CNNC_ESTATE;
    if (!inputs || !outputs) return CNNC_EINVAL;
    if (m->external && !consts) return CNNC_ESTATE;
    if (consts)
        for (int32_t i = 0; i < m->n_consts; ++i)
            if (!consts[i] || (uintptr_t)consts[i] % sizeof(float)) return CNNC_EINVAL;
    for (int i = 0; i < m->n_inputs; ++i)
        if (!inputs[i]) return CNNC_EINVAL;
    for (int i = 0; i < m->n_outputs; ++i)
        if (!outputs[i]) return CNNC_EINVAL;
    if (arena_size < m->plan_bytes + m->ws_bytes || (!arena && m->plan_bytes + m->ws_bytes > 0))
        return CNNC_EWORKSPACE;
    if ((uintptr_t)arena % sizeof(float)) return CNNC_EINVAL;  /* tensors live at arena + 64k: floats */
    const int64_t b = m->batch;
    runenv e = {m, arena, inputs, outputs, consts};
    unsigned char *ws = (unsigned char *)arena + m->plan_bytes;
    const int64_t ws_size = arena_size - m->plan_bytes;
    const cnnc_ctx *ctx = &m->ctx;
    for (int32_t k = 0; k < m->n_ops; ++k) {
        const op_t *o = &m->ops[k];
        shape_t sx, sy;
        get_shape(m, o->in[0], b, &sx);
        get_shape(m, o->out[0], b, &sy);
        const float *x = ptr_of(&e, o->in[0]);
        float *y = ptr_of(&e, o->out[0]);
        int rc = CNNC_OK;
        if (sy.n == 0) continue;
        switch (o->code) {
        case OP_CONV: {
            cnnc_conv2d_params p;
            conv_params_of(m, o, b, &p);
            /* packed weights serve only the kernel table they were packed for */
            const float *wpk = m->packed && ctx->k.mr == m->packed_mr && ctx->k.nr == m->packed_nr &&
                               m->packed_wg[k] == cnnc_winograd_applies(&p) ? m->packed[k] : NULL;
            const float *bias = o->in[2] >= 0 ? ptr_of(&e, o->in[2]) : NULL;
            if (o->n_i == 13)
                rc = cnnc_conv2d_forward_pool_pk(ctx, &p, o->ia[11], o->ia[12], x, ptr_of(&e, o->in[1]), wpk, bias,
                                                 op_act(o, 9), y, NULL, ws, ws_size);
            else
                rc = cnnc_conv2d_forward_res(ctx, &p, x, ptr_of(&e, o->in[1]), wpk, bias,
                                             o->n_in == 4 ? ptr_of(&e, o->in[3]) : NULL, op_act(o, 9), y, ws, ws_size);
            break;
        }
        case OP_MAXPOOL:
        case OP_AVGPOOL: {
            cnnc_pool2d_params p;
            window_of(&sx, (int)o->ia[11], o->ia[0], o->ia[1], o->ia + 2, &p.win);
            p.ceil_mode = (int)o->ia[10];
            rc = o->code == OP_MAXPOOL ? cnnc_max_pool2d_forward(ctx, &p, x, y, NULL)
                                       : cnnc_avg_pool2d_forward(ctx, &p, (int)o->ia[12], x, y);
            break;
        }
        case OP_GAVGPOOL:
        case OP_GMAXPOOL: {
            int64_t n, c, h, w;
            const int layout = (int)o->ia[0];
            nchw_of(&sx, layout, &n, &c, &h, &w);
            rc = o->code == OP_GAVGPOOL ? cnnc_global_avg_pool2d_forward(ctx, n, h, w, c, layout, x, y)
                                        : cnnc_global_max_pool2d_forward(ctx, n, h, w, c, layout, x, y, NULL);
            break;
        }
        case OP_DENSE: {
            shape_t w;
            get_shape(m, o->in[1], b, &w);
            rc = cnnc_dense_forward(ctx, sx.n / w.d[0], w.d[0], w.d[1], x, ptr_of(&e, o->in[1]),
                                    o->in[2] >= 0 ? ptr_of(&e, o->in[2]) : NULL, op_act(o, 0), y, ws, ws_size);
            break;
        }
        case OP_ACT:
            rc = cnnc_act_forward(ctx, op_act(o, 0), sx.n, x, y);
            break;
        case OP_COPY:
            memcpy(y, x, (size_t)sx.n * sizeof(float));
            break;
        case OP_SOFTMAX: {
            int64_t cols = numel_of(sx.d + o->ia[0], sx.rank - (int)o->ia[0]);
            if (cols < 1) { rc = CNNC_EINVAL; break; }
            rc = cnnc_softmax_forward(ctx, sx.n / cols, cols, (int)o->ia[1], x, y);
            break;
        }
        case OP_AFFINE: {
            const float *sc = ptr_of(&e, o->in[1]), *sh = ptr_of(&e, o->in[2]);
            const int64_t c = sx.d[o->ia[0]], outer = numel_of(sx.d, (int)o->ia[0]), inner = sx.n / (outer * c);
            for (int64_t i = 0; i < outer; ++i)
                for (int64_t ch = 0; ch < c; ++ch) {
                    const float a = sc[ch], s = sh[ch];
                    const float *xi = x + (i * c + ch) * inner;
                    float *yi = y + (i * c + ch) * inner;
                    for (int64_t j = 0; j < inner; ++j) yi[j] = a * xi[j] + s;
                }
            break;
        }
        case OP_BINARY: {
            shape_t sb;
            get_shape(m, o->in[1], b, &sb);
            run_binary((int)o->ia[0], &sx, x, &sb, ptr_of(&e, o->in[1]), &sy, y);
            break;
        }
        case OP_CONCAT: {
            const int64_t axis = o->ia[0];
            const int64_t outer = numel_of(sy.d, (int)axis);
            const int64_t yrow = sy.n / (outer > 0 ? outer : 1);
            int64_t at = 0;
            for (int j = 0; j < o->n_in; ++j) {
                shape_t st;
                get_shape(m, o->in[j], b, &st);
                const float *xj = ptr_of(&e, o->in[j]);
                const int64_t row = outer > 0 ? st.n / outer : 0;
                if (xj != y + at) copy_rows(ctx, outer, row, xj, row, y + at, yrow); /* else computed in place */
                at += row;
            }
            break;
        }
        case OP_TRANSPOSE:
            run_transpose(o->ia, &sx, x, &sy, y);
            break;
        case OP_PAD:
            run_pad(o->ia, o->fa[0], &sx, x, &sy, y);
            break;
        case OP_MATMUL: {
            shape_t sb;
            get_shape(m, o->in[1], b, &sb);
            const int64_t M = sx.d[sx.rank - 2], K = sx.d[sx.rank - 1], N = sb.d[sb.rank - 1];
            const float *bm = ptr_of(&e, o->in[1]);
            /* matrix strides of a and b over the output's leading axes (0 where broadcast) */
            const int r = sy.rank - 2, ra = sx.rank - 2, rb = sb.rank - 2;
            int64_t sta[MAX_RANK], stb[MAX_RANK], ma = 1, mb = 1;
            for (int i = r - 1; i >= 0; --i) {
                const int64_t da = i - (r - ra) >= 0 ? sx.d[i - (r - ra)] : 1;
                const int64_t db = i - (r - rb) >= 0 ? sb.d[i - (r - rb)] : 1;
                sta[i] = da == 1 ? 0 : ma;
                stb[i] = db == 1 ? 0 : mb;
                ma *= da;
                mb *= db;
            }
            const int64_t batches = numel_of(sy.d, r);
            for (int64_t i = 0; i < batches && rc == CNNC_OK; ++i) {
                int64_t rest = i, ia = 0, ib = 0;
                for (int d = r - 1; d >= 0; --d) {
                    const int64_t id = rest % sy.d[d];
                    rest /= sy.d[d];
                    ia += id * sta[d];
                    ib += id * stb[d];
                }
                rc = cnnc_sgemm(ctx, 0, 0, M, N, K, 1.0f, x + ia * M * K, K, bm + ib * K * N, N, 0.0f, y + i * M * N,
                                N, ws, ws_size);
            }
            break;
        }
        case OP_GATHER: {
            const int64_t axis = o->ia[0], nidx = o->n_i - 1, xd = sx.d[axis];
            const int64_t outer = numel_of(sx.d, (int)axis), inner = numel_of(sx.d + axis + 1, sx.rank - (int)axis - 1);
            for (int64_t i = 0; i < outer; ++i)
                for (int64_t j = 0; j < nidx; ++j)
                    memcpy(y + (i * nidx + j) * inner, x + (i * xd + o->ia[1 + j]) * inner, (size_t)inner * sizeof(float));
            break;
        }
        case OP_LRN:
            run_lrn(o, &sx, x, y);
            break;
        case OP_UNARY:  /* UN_SQRT, the only kind (checked) */
            for (int64_t i = 0; i < sx.n; ++i) y[i] = sqrtf(x[i]);
            break;
        default:
            rc = CNNC_EINVAL;
        }
        if (rc != CNNC_OK) return rc;
    }
    return CNNC_OK;
}
