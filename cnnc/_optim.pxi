# Optimizer update bindings (included by _core.pyx).

from cpython.mem cimport PyMem_Malloc, PyMem_Free

OPTIM_KINDS = {"sgd": CNNC_OPTIM_SGD, "rmsprop": CNNC_OPTIM_RMSPROP, "adam": CNNC_OPTIM_ADAM,
               "adagrad": CNNC_OPTIM_ADAGRAD}


def optim_update(str kind, list g, list w, list s0=None, list s1=None, list s2=None, float lr=0.0,
                 float momentum=0.0, float epsilon=0.0, float rho=0.0, float one_minus_rho=0.0,
                 float one_minus_beta1=0.0, float one_minus_beta2=0.0, bint nesterov=False, weight_decay=None):
    """One in-place update of the float32 variables w[v] (and the rule's slots s0[v]..) from g[v], as
    cnnc_optim_update (src_c/cnnc.h) defines it: C-contiguous arrays, each slot and gradient of its
    variable's size; a slot list the rule does not use may be None. weight_decay: Adam's decoupled
    decay factor (rate * lr, float32), or None."""
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_optim_rule r
    r.kind = OPTIM_KINDS[kind]
    r.nesterov = nesterov
    r.weight_decay = weight_decay is not None
    r.decay = weight_decay if weight_decay is not None else 0.0
    r.lr = lr
    r.momentum = momentum
    r.epsilon = epsilon
    r.rho = rho
    r.one_minus_rho = one_minus_rho
    r.one_minus_beta1 = one_minus_beta1
    r.one_minus_beta2 = one_minus_beta2
    cdef Py_ssize_t nv = len(w), v, k
    lists = (g, w, s0, s1, s2)
    for k in range(5):
        if lists[k] is not None and len(lists[k]) != nv:
            raise ValueError(f"internal: {('g', 'w', 's0', 's1', 's2')[k]} has {len(lists[k])} arrays, w has {nv}")
    # one block: sizes, the first elements' offsets (C scratch), then five arrays of pointers
    cdef char *mem = <char *>PyMem_Malloc(max(nv, 1) * (2 * sizeof(int64_t) + 5 * sizeof(void *)))
    if mem == NULL:
        raise MemoryError()
    cdef int64_t *sizes = <int64_t *>mem
    cdef int64_t *start = sizes + nv
    cdef void **ptrs = <void **>(start + nv)
    cdef int64_t m
    cdef int rc
    try:
        for k in (1, 0, 2, 3, 4):  # the variables first: their sizes
            name = ("g", "w", "s0", "s1", "s2")[k]
            for v in range(nv):
                ptrs[k * nv + v] = NULL
                if lists[k] is None or lists[k][v] is None:
                    continue
                a = lists[k][v]
                ptrs[k * nv + v] = <void *>_addr(a, _F32, k > 0, f"{name}[{v}]")
                m = a.size
                if k == 1:
                    sizes[v] = m
                elif m != sizes[v]:
                    raise ValueError(f"internal: {name}[{v}] has {m} elements, its variable {sizes[v]}")
        with nogil:
            rc = cnnc_optim_update(&ctx, &r, nv, sizes, <const float *const *>ptrs, <float *const *>(ptrs + nv),
                                   <float *const *>(ptrs + 2 * nv) if s0 is not None else NULL,
                                   <float *const *>(ptrs + 3 * nv) if s1 is not None else NULL,
                                   <float *const *>(ptrs + 4 * nv) if s2 is not None else NULL, start)
    finally:
        PyMem_Free(mem)
    _check(rc, f"{kind} update")
