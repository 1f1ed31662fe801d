"""The one accounting point for cnnc's buffers.

Every array cnnc allocates for its work — op outputs and gradients, C workspaces, layer weights,
optimizer slots, the batches fit() gathers — is created (or registered) here. The tracker counts the
bytes of live buffers and the peak; a buffer leaves the count when NumPy frees it (a weakref finalizer
on the array), so the figures follow what the process really holds, not what was requested.
"""
import threading
import weakref

import numpy as np

_lock = threading.Lock()
_current = 0
_peak = 0
_scope = threading.local()  # .arena: the StepArena of the training step running in this thread


def _release(nbytes):
    global _current
    with _lock:
        _current -= nbytes


def track(arr):
    """Count `arr` (a freshly allocated array that owns its memory) until it is freed; returns it."""
    global _current, _peak
    n = int(arr.nbytes)
    if n == 0 or arr.base is not None:
        return arr
    with _lock:
        _current += n
        if _current > _peak:
            _peak = _current
    f = weakref.finalize(arr, _release, n)
    f.atexit = False
    return arr


def _arena():
    return getattr(_scope, "arena", None)


def empty(shape, dtype=np.float32):
    arena = _arena()
    if arena is not None:
        return arena.empty(shape, dtype)
    return track(np.empty(shape, dtype=dtype))


def empty_like(a, dtype=None):
    return empty(np.shape(a), a.dtype if dtype is None else dtype)


def zeros(shape, dtype=np.float32):
    if _arena() is not None:
        out = empty(shape, dtype)
        out.fill(0)
        return out
    return track(np.zeros(shape, dtype=dtype))


def full(shape, value, dtype=np.float32):
    out = empty(shape, dtype)
    out.fill(value)
    return out


def copy(a):
    if _arena() is not None:
        a = np.asarray(a)
        out = empty(a.shape, a.dtype)
        np.copyto(out, a)
        return out
    return track(np.array(a, copy=True, order="C"))


_held = weakref.WeakKeyDictionary()  # owner -> [bytes C code holds for it]


def hold(owner, nbytes):
    """Count `nbytes` that the C core allocated for `owner` (a runner's packed weights) in place of
    what it held before; they leave the count when the owner is freed."""
    global _current, _peak
    nbytes = int(nbytes)
    with _lock:
        cell = _held.get(owner)
        if cell is None:
            cell = _held[owner] = [0]
            f = weakref.finalize(owner, lambda c: _release(c[0]), cell)
            f.atexit = False
        _current += nbytes - cell[0]
        cell[0] = nbytes
        if _current > _peak:
            _peak = _current


def current_bytes():
    """Bytes of cnnc buffers alive now."""
    return _current


def peak_bytes():
    return _peak


def reset_peak():
    """Start a new peak at the current level; returns it."""
    global _peak
    with _lock:
        _peak = _current
        return _peak


# ---- the training step's arena -------------------------------------------------------------------

_ALIGN = 64


def greedy_offsets(order, sizes, overlap):
    """Offsets for items placed one by one in `order`: each at the lowest offset where it overlaps no
    placed item whose lifetime overlaps its own (`overlap(u, v)`); sizes[i] already rounded to the
    alignment. The plan of the C runtime's arena (src_c/model.c, cnnc.deploy's Graph.plan) and of
    the training steps' block. Returns ({item: offset}, total bytes)."""
    offsets, placed, total = {}, [], 0
    for v in order:
        off = 0
        while True:
            moved = False
            for u in placed:
                if overlap(u, v) and off < offsets[u] + sizes[u] and offsets[u] < off + sizes[v]:
                    off = offsets[u] + sizes[u]
                    moved = True
            if not moved:
                break
        offsets[v] = off
        placed.append(v)
        total = max(total, off + sizes[v])
    return offsets, total


class StepArena:
    """The memory of a model's training steps, reused from one step to the next.

    A training step allocates the same buffers in the same order every time (the layers' outputs, what
    backward keeps, gradients, workspaces) and frees most of them before it ends. Allocated afresh,
    those buffers cost more than their arithmetic on small models: the C allocator returns the memory
    to the system as the step ends, and the next step faults every page in and zeroes it again.

    So the arena records a step: each buffer's size and the allocation before which it was freed
    (allocations are counted). From that record it plans one block in which buffers whose lifetimes do
    not overlap share memory (the greedy placement, largest first, of the C runtime's arena), so the
    block is the step's peak, not the sum of its buffers; the next steps take each buffer as a view of
    the block.

    Safety does not rest on the plan being followed:
    - a region is handed out only when every buffer that held it earlier in the step is freed (weak
      references); otherwise that buffer is allocated afresh;
    - a step that departs from the plan (another batch size, another code path) gets fresh buffers
      from there on, and the arena replans from that step's record;
    - when a view of the block from the previous step is still alive as a step begins (someone kept a
      layer's cache), the arena takes a new block; the old one lives on with its views;
    - buffers that outlive their step (the optimizer's state, the step's output) are never planned.

    Some workspaces depend on the thread count, so the arena keeps one plan per key the caller gives
    (`step(key)`: the model passes the thread count); the plans share the block, sized to the largest.

    The block counts in cnnc's memory accounting while the arena holds it: between steps, a model that
    has trained keeps its training peak (as ONNX Runtime's and TensorFlow's arenas do) until the model
    is freed or `release()` is called.
    """

    __slots__ = ("plans", "plan", "slab", "_mv", "_base", "_rec", "_refs", "_from_slab", "_prev", "_using",
                 "_outer", "_key", "__weakref__")

    MAX_PLANS = 8

    def __init__(self):
        self.plans = {}  # key -> (sizes, free counts, offsets (None: unplanned), conflicts, total bytes)
        self.plan = None  # the plan of the step running now (or of the last one)
        self._key = None
        self.slab = self._mv = None
        self._base = 0
        self._rec = None
        self._refs = []
        self._from_slab = set()
        self._prev = ()
        self._using = False
        self._outer = None

    def release(self):
        """Forget the plan and drop the block (views still alive keep their memory)."""
        self.plans = {}
        self.plan = self.slab = self._mv = None
        self._prev = ()

    def nbytes(self):
        """Bytes of the block the arena holds."""
        return 0 if self.slab is None else int(self.slab.nbytes)

    # -- the scope of one step
    def step(self, key=None):
        """This arena as the scope of one step planned under `key` (`with arena.step(key): ...`)."""
        self._key = key
        return self

    def __enter__(self):
        self._rec = []  # per allocation: [nbytes, number of allocations made before it was freed]
        self._refs = []
        self.plan = self.plans.get(self._key)
        if self.plan is not None:
            if any(r() is not None for r in self._prev):
                self.slab = None  # a buffer of the last step is alive: a new block from here on
            if self.slab is None:  # sized for every plan, so that steps under other keys share it
                size = max(p[4] for p in self.plans.values()) + _ALIGN
                self.slab = track(np.empty(size, np.uint8))
                self._mv = memoryview(self.slab)
                self._base = (-self.slab.ctypes.data) % _ALIGN
        self._from_slab = set()
        self._using = self.plan is not None
        self._outer = getattr(_scope, "arena", None)
        _scope.arena = self
        return self

    def __exit__(self, exc_type, exc, tb):
        _scope.arena = self._outer
        self._outer = None
        rec, self._rec = self._rec, None
        refs, self._refs = self._refs, []
        self._prev = tuple(refs[k] for k in self._from_slab)
        self._from_slab = set()
        if exc_type is None:
            sizes, free = [r[0] for r in rec], [r[1] for r in rec]
            if self.plan is None or self.plan[0] != sizes or self.plan[1] != free:
                self._replan(sizes, free)
        return False

    def _replan(self, sizes, free):
        n = len(sizes)
        rounded = [-(-s // _ALIGN) * _ALIGN for s in sizes]
        order = sorted((i for i in range(n) if free[i] is not None and sizes[i] > 0),
                       key=lambda i: (-sizes[i], i))
        # lifetimes [i, free[i]) in allocation counts
        placed_at, total = greedy_offsets(order, rounded, lambda u, v: free[u] > v and free[v] > u)
        offsets = [placed_at.get(i) for i in range(n)]
        placed = sorted(placed_at)
        conflicts = [()] * n  # the earlier buffers that held v's memory: all freed before v is handed out
        for v in placed:
            conflicts[v] = tuple(u for u in placed if u < v and offsets[u] < offsets[v] + rounded[v]
                                 and offsets[v] < offsets[u] + rounded[u])
        self.plan = (sizes, free, offsets, conflicts, total)
        self.plans.pop(self._key, None)
        if len(self.plans) >= self.MAX_PLANS:
            del self.plans[next(iter(self.plans))]
        self.plans[self._key] = self.plan
        largest = max(p[4] for p in self.plans.values())
        if self.slab is not None and self.slab.nbytes != largest + _ALIGN:
            self.slab = self._mv = None  # the next step allocates a block of the right size

    # -- allocation
    def empty(self, shape, dtype):
        dtype = np.dtype(dtype)
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
        nbytes = dtype.itemsize
        for d in shape:
            nbytes *= max(d, 0)
        k = len(self._rec)
        owner = None
        if self._using:
            sizes, _, offsets, conflicts, _ = self.plan
            if k >= len(sizes) or sizes[k] != nbytes:
                self._using = False  # this step departs from the plan: fresh buffers from here on
            elif offsets[k] is not None and self._free(conflicts[k]):
                # the owner of the view: a 1-d array on a memoryview, so every view derived from
                # the buffer keeps this object (not the block) as its base, and its weak reference
                # tells when the last of them is freed
                owner = np.frombuffer(self._mv, dtype, nbytes // dtype.itemsize, self._base + offsets[k])
                self._from_slab.add(k)
        if owner is None:
            owner = arr = track(np.empty(shape, dtype=dtype))
        else:
            arr = owner.reshape(shape)
        rec = [nbytes, None]
        self._rec.append(rec)
        self._refs.append(weakref.ref(owner, _on_free(self, self._rec, rec)))
        return arr

    def _free(self, conflicts):
        refs, from_slab = self._refs, self._from_slab
        return all(refs[u]() is None or u not in from_slab for u in conflicts)


def _on_free(arena, recording, rec):
    aref = weakref.ref(arena)

    def freed(_):
        a = aref()
        if a is not None and a._rec is recording:  # freed during its own step
            rec[1] = len(recording)
    return freed
