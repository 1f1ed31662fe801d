# Bindings to the deployment runtime (src_c/model.c), included by _core.pyx. cnnc.deploy.Runtime
# is the Python face; this class only owns the C model and moves pointers.

from libc.stdlib cimport malloc, free


cdef class BundleModel:
    """A loaded bundle (C cnnc_model). Raises ValueError('...: <reason>') on a malformed bundle."""
    cdef cnnc_model *m
    cdef int64_t prepared_batch
    cdef int prepared_threads, prepared_arch
    cdef int packed_arch  # the arch the weights were packed for (cnnc_model_prepack), -1: none

    def __cinit__(self, const unsigned char[::1] data):
        cdef char msg[512]
        cdef int rc
        cdef int64_t n = data.shape[0]
        msg[0] = 0
        self.m = NULL
        self.prepared_batch = 0
        self.packed_arch = -1
        with nogil:
            rc = cnnc_model_load_msg(&data[0] if n > 0 else NULL, n, &self.m, msg, 512)
        if rc != CNNC_OK:
            raise ValueError(f"{cnnc_strerror(rc).decode()}: {msg.decode('utf-8', 'replace')}")

    def __dealloc__(self):
        if self.m != NULL:
            cnnc_model_free(self.m)
            self.m = NULL

    @property
    def fixed_batch(self):
        return cnnc_model_fixed_batch(self.m)

    def names(self, bint inputs):
        cdef int n = cnnc_model_num_inputs(self.m) if inputs else cnnc_model_num_outputs(self.m)
        out = []
        for i in range(n):
            s = cnnc_model_input_name(self.m, i) if inputs else cnnc_model_output_name(self.m, i)
            out.append(s.decode("utf-8", "replace"))
        return out

    def shape(self, bint inputs, int i, int64_t batch):
        cdef int64_t dims[8]
        cdef int r = (cnnc_model_input_shape(self.m, i, batch, dims) if inputs
                      else cnnc_model_output_shape(self.m, i, batch, dims))
        if r < 0:
            raise ValueError(f"shape query: {cnnc_strerror(r).decode()}")
        return tuple(dims[j] for j in range(r))

    def prepare(self, int64_t batch):
        """Plan for this batch with the calling thread's ISA and thread count; returns
        (arena bytes, plan bytes, workspace bytes)."""
        cdef cnnc_ctx ctx = _ctx()
        cdef int64_t r
        if (batch != self.prepared_batch or ctx.nthreads != self.prepared_threads
                or ctx.k.arch != self.prepared_arch):
            self.prepared_batch = 0
            cnnc_model_set_arch(self.m, ctx.k.arch)
            cnnc_model_set_threads(self.m, ctx.nthreads)
            cnnc_model_set_pool(self.m, ctx.pool)  # the process's pool (kept alive by _pools)
            r = cnnc_model_arena_size(self.m, batch)
            if r < 0:
                raise ValueError(f"batch {batch}: {cnnc_strerror(<int>r).decode()}")
            self.prepared_batch = batch
            self.prepared_threads = ctx.nthreads
            self.prepared_arch = ctx.k.arch
        return (cnnc_model_plan_bytes(self.m) + cnnc_model_workspace_bytes(self.m),
                cnnc_model_plan_bytes(self.m), cnnc_model_workspace_bytes(self.m))

    @property
    def external_consts(self):
        """True when the bundle holds no weights: every run supplies them."""
        return cnnc_model_external_consts(self.m) == 1

    def const_shapes(self):
        """Shapes of the constants, in the order run(consts=...) takes them."""
        cdef int64_t dims[8]
        cdef int i, r
        out = []
        for i in range(cnnc_model_num_consts(self.m)):
            r = cnnc_model_const_shape(self.m, i, dims)
            if r < 0:
                raise ValueError(f"constant {i}: {cnnc_strerror(r).decode()}")
            out.append(tuple(dims[j] for j in range(r)))
        return out

    cdef const float **_const_ptrs(self, consts, const_sizes, float *empty) except? NULL:
        """A malloc'ed array of the constants' pointers (the caller frees it), NULL for consts None."""
        cdef int nc = cnnc_model_num_consts(self.m), i
        cdef const float **pc = NULL
        if consts is None:
            return NULL
        if len(consts) != nc or const_sizes is None or len(const_sizes) != nc:
            raise ValueError(f"internal: {nc} constants expected, received {len(consts)}")
        pc = <const float **>malloc(sizeof(float *) * max(nc, 1))
        if pc == NULL:
            raise MemoryError()
        try:
            for i in range(nc):
                if consts[i].size != const_sizes[i]:
                    raise ValueError(f"internal: constant {i} has {consts[i].size} elements, the bundle "
                                     f"says {const_sizes[i]}")
                pc[i] = _cf(consts[i], "constant") if const_sizes[i] else empty
        except BaseException:
            free(pc)
            raise
        return pc

    def prepack(self, consts=None, const_sizes=None):
        """Pack the convolutions' weights once for the prepared ISA (cnnc_model_prepack), from consts
        (as run takes them; None: the bundle's), unless they are packed for it already. Only for
        weights that no longer change: later runs use the packed copies. Returns the packed bytes."""
        cdef const float **pc = NULL
        cdef float empty_const = 0.0
        cdef int rc
        if self.prepared_batch == 0:
            raise ValueError("internal: prepack before prepare")
        if self.packed_arch != self.prepared_arch:
            pc = self._const_ptrs(consts, const_sizes, &empty_const)
            try:
                with nogil:
                    rc = cnnc_model_prepack(self.m, pc)
            finally:
                free(pc)
            _check(rc, "bundle prepack")
            self.packed_arch = self.prepared_arch
        return cnnc_model_packed_bytes(self.m)

    def run(self, inputs, outputs, arena, consts=None, const_sizes=None):
        """inputs/outputs: lists of C-contiguous float32 arrays of the prepared batch's shapes.
        consts (optional): C-contiguous float32 arrays replacing the bundle's constants, one per
        constant, each of const_sizes[i] elements (the caller passes the sizes of const_shapes())."""
        cdef int ni = len(inputs), no = len(outputs), rc, i
        cdef int nc = cnnc_model_num_consts(self.m)
        cdef const float **pin = <const float **>malloc(sizeof(float *) * max(ni, 1))
        cdef float **pout = <float **>malloc(sizeof(float *) * max(no, 1))
        cdef const float **pc = NULL
        cdef float empty_const = 0.0
        cdef void *pa = NULL
        cdef int64_t na = 0
        if pin == NULL or pout == NULL:
            free(pin)
            free(pout)
            raise MemoryError()
        try:
            for i in range(ni):
                pin[i] = _cf(inputs[i], "input")
            for i in range(no):
                pout[i] = _wf(outputs[i], "output")
            if consts is not None:
                pc = self._const_ptrs(consts, const_sizes, &empty_const)
            elif cnnc_model_external_consts(self.m) == 1:
                raise ValueError("this bundle holds no weights: a run must supply its constants")
            if arena is not None:
                pa = _wsptr(arena)
                na = arena.shape[0]
            with nogil:
                rc = cnnc_model_run_consts(self.m, pa, na, pin, pout, pc)
            _check(rc, "bundle run")
        finally:
            free(pin)
            free(pout)
            free(pc)
