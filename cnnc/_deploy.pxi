# Bindings to the deployment runtime (src_c/model.c), included by _core.pyx. cnnc.deploy.Runtime
# is the Python face; this class only owns the C model and moves pointers.

from libc.stdlib cimport malloc, free


cdef class BundleModel:
    """A loaded bundle (C cnnc_model). Raises ValueError('...: <reason>') on a malformed bundle."""
    cdef cnnc_model *m
    cdef int64_t prepared_batch
    cdef int prepared_threads, prepared_arch

    def __cinit__(self, const unsigned char[::1] data):
        cdef char msg[512]
        cdef int rc
        cdef int64_t n = data.shape[0]
        msg[0] = 0
        self.m = NULL
        self.prepared_batch = 0
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
            r = cnnc_model_arena_size(self.m, batch)
            if r < 0:
                raise ValueError(f"batch {batch}: {cnnc_strerror(<int>r).decode()}")
            self.prepared_batch = batch
            self.prepared_threads = ctx.nthreads
            self.prepared_arch = ctx.k.arch
        return (cnnc_model_plan_bytes(self.m) + cnnc_model_workspace_bytes(self.m),
                cnnc_model_plan_bytes(self.m), cnnc_model_workspace_bytes(self.m))

    def run(self, inputs, outputs, arena):
        """inputs/outputs: lists of C-contiguous float32 arrays of the prepared batch's shapes."""
        cdef int ni = len(inputs), no = len(outputs), rc, i
        cdef const float **pin = <const float **>malloc(sizeof(float *) * max(ni, 1))
        cdef float **pout = <float **>malloc(sizeof(float *) * max(no, 1))
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
            if arena is not None:
                pa = _wsptr(arena)
                na = arena.shape[0]
            with nogil:
                rc = cnnc_model_run(self.m, pa, na, pin, pout)
            _check(rc, "bundle run")
        finally:
            free(pin)
            free(pout)
