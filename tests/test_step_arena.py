"""The training step's arena (cnnc._alloc.StepArena): steps that reuse one planned block give the same
bits as steps that allocate afresh, and no buffer that is still referenced is ever handed out again."""
import gc

import numpy as np
import pytest

import cnnc
from cnnc import _alloc, layers, models, zoo


def _model(name="chollet", optimizer="adam"):
    cnnc.utils.set_random_seed(0)
    m = zoo.ARCHITECTURES[name]() if name in zoo.ARCHITECTURES else name()
    m.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def _batches(sizes, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.random((b, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, b)) for b in sizes]


def _train(m, batches, fresh):
    logs = []
    for x, y in batches:
        if fresh:
            m.release_training_memory()  # every step records, none reuses the block
        logs.append(m.train_on_batch(x, y))
    return logs, [w.copy() for w in m.get_weights()]


class _Counting(_alloc.StepArena):
    """Counts the buffers handed out of the block, per step."""
    __slots__ = ("per_step",)

    def __init__(self):
        super().__init__()
        self.per_step = []

    @property
    def reused(self):
        return sum(self.per_step)

    def __exit__(self, *exc):
        self.per_step.append(len(self._from_slab))
        return super().__exit__(*exc)


@pytest.mark.parametrize("name", ["chollet", "geron"])
def test_reused_block_gives_the_same_bits(name):
    # 17: a step that departs from the plan (another batch size), then replans, then returns
    sizes = (32, 32, 32, 17, 32, 32) if name == "chollet" else (8, 8, 3, 8, 8)
    batches = _batches(sizes)
    m = _model(name)
    m._step_arena = _Counting()
    logs, w = _train(m, batches, fresh=False)
    ref_logs, ref_w = _train(_model(name), batches, fresh=True)
    assert logs == ref_logs
    assert all(np.array_equal(a, b) for a, b in zip(w, ref_w))
    assert m._step_arena.reused > 0 and m._step_arena.nbytes() > 0


def test_each_thread_count_keeps_its_plan():
    """Workspaces depend on the thread count: steps alternating between counts (as tools/bench.py
    runs them) each reuse the block under their own plan."""
    batches = _batches([32] * 6)
    m = _model()
    m._step_arena = arena = _Counting()
    for i, (x, y) in enumerate(batches):
        with cnnc._config.thread_limit(1 + i % 2):
            m.train_on_batch(x, y)
    assert len(arena.plans) == 2
    assert arena.per_step[:2] == [0, 0] and min(arena.per_step[2:]) >= 30, arena.per_step


def test_block_is_the_step_peak_and_is_released():
    m = _model()
    (x, y), = _batches([64])
    m.train_on_batch(x, y)
    m.train_on_batch(x, y)
    gc.collect()
    held = _alloc.current_bytes()
    block = m._step_arena.nbytes()
    # the plan packs the step's buffers into about the step's own peak (20.6 MB at batch 64), not their
    # sum (40 MB: most buffers are freed before the step ends)
    step_peak = m.memory_estimate(64).training_bytes - sum(w.nbytes for w in m.weights) * 3  # Adam: 2 slots
    assert 0.9 * step_peak <= block <= 1.1 * step_peak, (block, step_peak)
    m.release_training_memory()
    gc.collect()
    assert _alloc.current_bytes() == held - block
    assert m._step_arena.nbytes() == 0


class _Keep(layers.Layer):
    """Identity that keeps a reference to chosen inputs, like user code holding a layer's buffer."""

    def __init__(self, keep_steps=(), **kw):
        super().__init__(**kw)
        self.keep_steps, self.step, self.kept = set(keep_steps), 0, []

    def forward(self, x, training=False):
        if training:
            self.step += 1
            if self.step in self.keep_steps:
                self.kept.append((x, x.copy()))
        return x

    def backward(self, dy, need_dx=True):
        return dy


def _keep_model(keep_steps):
    return models.Sequential([
        layers.Conv2D(8, 3, activation="relu", input_shape=(28, 28, 1)),
        _Keep(keep_steps),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ])


def test_buffers_kept_past_their_step_are_never_reused():
    """A buffer someone holds after its step keeps its contents: the steps after it take a new block."""
    batches = _batches([16] * 6)
    m = _model(lambda: _keep_model(keep_steps=(3, 4)))
    m._step_arena = _Counting()
    logs, w = _train(m, batches, fresh=False)
    ref_logs, ref_w = _train(_model(lambda: _keep_model(())), batches, fresh=True)
    assert logs == ref_logs and all(np.array_equal(a, b) for a, b in zip(w, ref_w))
    keep = m.layers[1]
    assert len(keep.kept) == 2 and m._step_arena.reused > 0
    for x, at_the_time in keep.kept:
        np.testing.assert_array_equal(x, at_the_time)
    assert not np.shares_memory(keep.kept[0][0], keep.kept[1][0])


def test_buffer_alive_past_its_planned_free_is_not_handed_out():
    """Within a step: a region is handed out only when every buffer that held it earlier is freed."""
    arena = _alloc.StepArena()

    def step(hold_a):
        with arena:
            a = _alloc.empty((1000,))
            a.fill(1.0)
            kept = a if hold_a else None
            del a
            b = _alloc.empty((1000,))  # planned in a's memory: a was freed before b, in the record
            b.fill(2.0)
            c = _alloc.zeros((10, 100))
            seen = (arena.slab is not None and np.shares_memory(b, arena.slab),
                    kept is not None and np.shares_memory(b, kept), np.shares_memory(b, c))
            np.testing.assert_array_equal(c, 0.0)
            np.testing.assert_array_equal(b, 2.0)
            del b, c
            return kept, seen

    assert step(False)[1] == (False, False, False)  # records
    assert step(False)[1] == (True, False, False)  # replays: b in the block
    kept, seen = step(True)  # a is alive when b is allocated: b is fresh
    assert seen == (False, False, False)
    np.testing.assert_array_equal(kept, 1.0)


def test_views_of_a_buffer_keep_it_alive():
    """A reshaped or transposed view of a handed-out buffer counts as the buffer being alive."""
    arena = _alloc.StepArena()

    def step(keep_view):
        with arena:
            a = _alloc.empty((20, 50))
            a[...] = 3.0
            view = a.T[::2] if keep_view else None
            del a
            b = _alloc.full((1000,), 4.0)
            shared = view is not None and np.shares_memory(view, b)
            from_block = arena.slab is not None and np.shares_memory(b, arena.slab)
            np.testing.assert_array_equal(b, 4.0)
            del b
            return view, shared, from_block

    step(False)
    assert step(False)[2]
    view, shared, _ = step(True)
    assert not shared
    np.testing.assert_array_equal(view, 3.0)


def test_buffer_kept_after_its_step_is_not_overwritten_by_the_next():
    """A buffer that outlives its step leaves the plan, and the replanned block may be the same size;
    the next step must still not hand its memory out."""
    arena = _alloc.StepArena()

    def step(keep):
        with arena:
            a = _alloc.full((1000,), 1.0)
            kept = a if keep else None
            del a
            b = _alloc.full((4000,), 2.0)  # the larger buffer, planned at the block's start, as a is
            inside = arena.slab is not None and np.shares_memory(b, arena.slab)
            del b
            return kept, inside

    step(False)
    kept, inside = step(True)  # a comes from the block and is kept (so b is not: a still has it)
    assert np.shares_memory(kept, arena.slab) and not inside
    block = arena.slab
    _, inside = step(False)  # the plan now leaves a out, and b alone needs the same 16 KB
    assert inside and arena.slab is not block  # b came from a new block
    np.testing.assert_array_equal(kept, 1.0)


def test_step_that_raises_leaves_no_scope_and_no_plan():
    arena = _alloc.StepArena()
    with pytest.raises(RuntimeError):
        with arena:
            _alloc.empty((10,))
            raise RuntimeError("in the step")
    assert _alloc._arena() is None and arena.plan is None
    # outside a step, buffers are plain arrays counted on their own
    before = _alloc.current_bytes()
    a = _alloc.empty((1000,))
    assert a.base is None and _alloc.current_bytes() == before + 4000


def test_nested_scopes_restore_the_outer_arena():
    outer, inner = _alloc.StepArena(), _alloc.StepArena()
    with outer:
        with inner:
            assert _alloc._arena() is inner
        assert _alloc._arena() is outer
    assert _alloc._arena() is None
