"""The bundle format, its in-memory graph and the static memory plan (writer side).

A bundle is one little-endian binary file read by src_c/model.c (the reader, which checks every field):

    header (80 bytes)
      0  char[8]  magic "CNNCBNDL"
      8  u32      format version (1)
     12  u32      header size (80)
     16  u64      file size
     24  u32      CRC-32 (zlib's) of bytes [32, file size)
     28  u32      flags: 0, or 1 (external constants: the weights section is empty and every constant's
                  offset is 0; the caller supplies the constants at each run)
     32  u32 x 4  number of values, ops, inputs, outputs
     48  i64      fixed batch (0: any batch size)
     56  i64      batch the stored plan is for
     64  i64 x 2  weights offset (64-byte aligned), weights size
    values: 96 bytes each
      i32 kind (0 arena tensor, 1 graph input, 2 graph output, 3 constant, 4 alias), i32 index (input or
      output number; alias: the value it aliases, always an earlier one), i32 rank, i32 batch axis (-1:
      none; the size of that axis is dims[axis] * batch), i64 dims[8], i64 offset (constant: byte offset
      in the weights; arena tensor: its offset in the arena at the plan's batch), i64 reserved
    inputs then outputs: i32 value id, u32 name length, name bytes (UTF-8), padded to 8 bytes
    ops: i32 code, n_in, n_out, n_int, n_float, reserved; i32 value ids (inputs then outputs), padded to 8;
      i64 int attributes; f32 float attributes, padded to 8
    i64 arena bytes of the tensor plan at the plan's batch
    weights (float32, each constant 64-byte aligned)

A conv op has 3 inputs (x, weights, bias or -1) or 4: the 4th a residual of the output's shape, added
after the bias and before the activation (what fuse_residual_adds makes of conv -> add -> activation).
Its ints are [sh, sw, dh, dw, pad top, bottom, left, right, groups, activation, layout], or those and
two more, [pool kh, pool kw], for an NHWC conv with 3 inputs whose output is max-pooled by windows of
that size, stride = window, no padding, floor (what fuse_conv_pools makes of conv -> max pool): the
op's output is then the pooled tensor.

Op codes, binary kinds and unary kinds are the constants below (src_c/model.c has the same enums); the
reader rejects a code or kind it does not know, so a bundle using ops added later fails to load in an
older reader with that message rather than running wrongly (the format version stays 1).

All tensors are float32. Every intermediate tensor lives in one arena at the offset the plan gives it;
graph inputs and outputs live in the caller's buffers; aliases (reshape, flatten, dropout, identity)
share their source's memory. The plan is greedy by size: tensors sorted by size (largest first, then
by value id) each take the lowest 64-byte aligned offset where they overlap no placed tensor whose
lifetime (from the op that writes it to the last op that reads it) overlaps theirs. The C runtime
recomputes it for each batch size and rejects a bundle whose stored plan differs.

Concatenations computed in place: when a concatenation's output is one block per input (the product
of its dims before the axis is 1 at the batch), each input that is an arena tensor read by that
concatenation only (once, and through no alias) and written by an op that is not a concatenation is not
placed: it lives in its block of the output (the output's offset plus the sizes of the inputs before
it), and the output's lifetime starts at the first op writing such an input. The concatenation copies
only the other inputs.
"""
import struct
import zlib

import numpy as np

from .._alloc import greedy_offsets

MAGIC = b"CNNCBNDL"
VERSION = 1
HEADER_SIZE = 80
VALUE_SIZE = 96
MAX_RANK = 8
ALIGN = 64

V_ARENA, V_INPUT, V_OUTPUT, V_CONST, V_ALIAS = range(5)
(OP_CONV, OP_MAXPOOL, OP_AVGPOOL, OP_GAVGPOOL, OP_GMAXPOOL, OP_DENSE, OP_ACT, OP_SOFTMAX, OP_AFFINE,
 OP_BINARY, OP_CONCAT, OP_TRANSPOSE, OP_PAD, OP_LRN, OP_COPY, OP_MATMUL, OP_GATHER, OP_UNARY) = range(1, 19)
OP_NAMES = {OP_CONV: "conv", OP_MAXPOOL: "max_pool", OP_AVGPOOL: "avg_pool", OP_GAVGPOOL: "global_avg_pool",
            OP_GMAXPOOL: "global_max_pool", OP_DENSE: "dense", OP_ACT: "activation", OP_SOFTMAX: "softmax",
            OP_AFFINE: "channel_affine", OP_BINARY: "binary", OP_CONCAT: "concat", OP_TRANSPOSE: "transpose",
            OP_PAD: "pad", OP_LRN: "lrn", OP_COPY: "copy", OP_MATMUL: "matmul", OP_GATHER: "gather",
            OP_UNARY: "unary"}
BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_PRELU, BIN_MAX, BIN_MIN = range(7)  # max/min propagate NaN
ACT_NONE = 0  # cnnc.h's CNNC_ACT_NONE: an op's activation kind when it has none
UN_SQRT = 0  # the unary op's kinds
PAD_CONSTANT, PAD_REFLECT, PAD_EDGE = range(3)
NHWC, NCHW = 0, 1
FLAG_EXTERNAL_CONSTS = 1


class BundleError(ValueError):
    """A model cannot be bundled, or bytes are not a valid bundle."""


def _round_up(n, a=ALIGN):
    return (n + a - 1) // a * a


class Value:
    __slots__ = ("kind", "index", "dims", "bdim", "array", "alias_of", "name", "source")

    def __init__(self, kind, dims, bdim=-1, array=None, alias_of=-1, index=0, name=""):
        self.kind, self.dims, self.bdim = kind, tuple(int(d) for d in dims), int(bdim)
        self.array, self.alias_of, self.index, self.name = array, alias_of, index, name
        self.source = None

    def size_at(self, batch):
        n = 1
        for i, d in enumerate(self.dims):
            n *= d * batch if i == self.bdim else d
        return n


class Op:
    __slots__ = ("code", "inputs", "output", "ints", "floats", "label")

    def __init__(self, code, inputs, output, ints=(), floats=(), label=""):
        self.code, self.inputs, self.output = code, list(inputs), output
        self.ints, self.floats, self.label = [int(v) for v in ints], [float(v) for v in floats], label


class Graph:
    """The lowered inference graph: values (tensors) and ops in execution order.

    dims of a value are its dims at batch 1 with the batch axis (bdim) scaled by the batch size."""

    def __init__(self, fixed_batch=0, copy_consts=True):
        self.values, self.ops = [], []
        self.inputs, self.outputs = [], []  # (name, value id)
        self.fixed_batch = int(fixed_batch)
        # False: constants that already are C-contiguous float32 arrays are kept by reference (for
        # graphs run with the caller's constants while the arrays stay alive and unchanged)
        self.copy_consts = copy_consts

    def _add(self, v):
        if len(v.dims) > MAX_RANK:
            raise BundleError(f"tensors of rank {len(v.dims)} are not supported (at most {MAX_RANK})")
        self.values.append(v)
        return len(self.values) - 1

    def input(self, name, dims, bdim):
        vid = self._add(Value(V_INPUT, dims, bdim, index=len(self.inputs), name=name))
        self.inputs.append((name, vid))
        return vid

    def const(self, array, source=None):
        """A constant. source (optional): a callable returning its current value, for runs that supply
        the constants themselves (the model's weights as they are at each call)."""
        if self.copy_consts:
            a = np.array(array, dtype=np.float32, order="C")  # a copy: later changes to the model don't leak in
        else:
            a = np.asarray(array, dtype=np.float32, order="C")  # 0-d stays 0-d
        v = Value(V_CONST, a.shape, -1, array=a)
        v.source = source
        return self._add(v)

    def const_sources(self):
        """The constants' sources (None where there is none), in the order the C runtime numbers them."""
        return [v.source for v in self.values if v.kind == V_CONST]

    def const_arrays(self):
        """The constants' arrays as lowered, in the order the C runtime numbers them."""
        return [v.array for v in self.values if v.kind == V_CONST]

    def alias(self, src, dims, bdim):
        return self._add(Value(V_ALIAS, dims, bdim, alias_of=src))

    def op(self, code, inputs, dims, bdim, ints=(), floats=(), label=""):
        out = self._add(Value(V_ARENA, dims, bdim))
        self.ops.append(Op(code, inputs, out, ints, floats, label))
        return out

    def root(self, vid):
        while self.values[vid].kind == V_ALIAS:
            vid = self.values[vid].alias_of
        return vid

    def set_outputs(self, outputs):
        """outputs: (name, value id). A value an op writes becomes that output's buffer; any other
        (an input, a constant, an alias, an output already taken) gets a copy op."""
        produced = {op.output for op in self.ops}
        for name, vid in outputs:
            v = self.values[vid]
            if vid in produced and v.kind == V_ARENA:
                v.kind, v.index = V_OUTPUT, len(self.outputs)
            else:
                vid = self.op(OP_COPY, [vid], v.dims, v.bdim, label=f"copy to output {name}")
                self.values[vid].kind, self.values[vid].index = V_OUTPUT, len(self.outputs)
            self.values[vid].name = name
            self.outputs.append((name, vid))

    def _sole_readers(self):
        """{value id: op index} for the arena tensors read exactly once (by one op, once, through no
        alias): the tensors a fusion may compute into, or remove, for their reader."""
        readers = {}
        for k, op in enumerate(self.ops):
            for i in op.inputs:
                if i >= 0:
                    readers.setdefault(i, []).append(k)
        aliased = {self.root(i) for i, v in enumerate(self.values) if v.kind == V_ALIAS}
        return {v: r[0] for v, r in readers.items()
                if len(r) == 1 and v not in aliased and self.values[v].kind == V_ARENA}

    def fuse_residual_adds(self):
        """conv -> add of a same-shape tensor -> (activation): one conv op that adds the residual
        before its activation (its 4th input), when the conv's result (and the sum) has no other reader
        and the residual exists before the conv runs. The result is the same, bit for bit (the C
        runtime rounds as the separate ops do), with two passes over the tensor fewer."""
        sole_reader = self._sole_readers().get  # graph outputs are not arena tensors: excluded too
        made = {op.output: k for k, op in enumerate(self.ops)}
        dead = set()
        for k, conv in enumerate(self.ops):
            if conv.code != OP_CONV or len(conv.inputs) != 3 or conv.ints[9] != ACT_NONE or k in dead:
                continue
            a = sole_reader(conv.output)
            if a is None or a in dead:
                continue
            add = self.ops[a]
            if add.code != OP_BINARY or add.ints[0] != BIN_ADD or add.inputs[0] == add.inputs[1]:
                continue
            res = add.inputs[1] if add.inputs[0] == conv.output else add.inputs[0]
            cv, rv = self.values[conv.output], self.values[res]
            if tuple(rv.dims) != tuple(cv.dims) or rv.bdim != cv.bdim or made.get(self.root(res), -1) > k:
                continue
            last, act, floats = a, ACT_NONE, [0.0, 0.0]
            t = sole_reader(add.output)
            if t is not None and self.ops[t].code == OP_ACT and t not in dead:
                last, act, floats = t, self.ops[t].ints[0], list(self.ops[t].floats)
                dead.add(t)
            dead.add(a)
            conv.inputs.append(res)
            conv.ints[9] = act
            conv.floats = floats
            conv.output = self.ops[last].output
            conv.label += " + residual" + ("" if act == ACT_NONE else " + activation")
        self.ops = [op for k, op in enumerate(self.ops) if k not in dead]

    def fuse_conv_pools(self):
        """NHWC conv -> max pool with windows = strides, no padding, no dilation, floor: one conv op
        that pools its own output (two more ints), when the conv's result has no other reader. The C
        runtime's direct path then never writes the convolution out (a first layer's output is the
        largest tensor of a small CNN); the result is the two ops', bit for bit."""
        sole_reader = self._sole_readers().get
        dead = set()
        for conv in self.ops:
            if conv.code != OP_CONV or len(conv.inputs) != 3 or len(conv.ints) != 11 or conv.ints[10] != NHWC:
                continue
            k = sole_reader(conv.output)
            if k is None or k in dead:
                continue
            pool = self.ops[k]
            if pool.code != OP_MAXPOOL or pool.ints[11] != NHWC:
                continue
            kh, kw, sh, sw, dh, dw = pool.ints[:6]
            if (sh, sw, dh, dw) != (kh, kw, 1, 1) or any(pool.ints[6:11]):  # pads 0, ceil_mode 0
                continue
            conv.ints = list(conv.ints) + [kh, kw]
            conv.output = pool.output
            conv.label += f" + max pool {kh}x{kw}"
            dead.add(k)
        self.ops = [op for k, op in enumerate(self.ops) if k not in dead]

    def prune(self):
        """Drop ops whose results no output needs, and values nothing refers to."""
        need = set(v for _, v in self.outputs)
        keep = []
        for op in reversed(self.ops):
            if op.output in need or self.root(op.output) in need:
                keep.append(op)
                for i in op.inputs:
                    if i >= 0:
                        need.add(i)
                        need.add(self.root(i))
        self.ops = keep[::-1]
        used = set(need) | {v for _, v in self.inputs}
        changed = True
        while changed:  # aliases keep their sources
            changed = False
            for i in list(used):
                a = self.values[i].alias_of
                if self.values[i].kind == V_ALIAS and a not in used:
                    used.add(a)
                    changed = True
        remap, values = {}, []
        for i, v in enumerate(self.values):
            if i in used:
                remap[i] = len(values)
                values.append(v)
        for v in values:
            if v.kind == V_ALIAS:
                v.alias_of = remap[v.alias_of]
        for op in self.ops:
            op.inputs = [remap[i] if i >= 0 else -1 for i in op.inputs]
            op.output = remap[op.output]
        self.inputs = [(n, remap[v]) for n, v in self.inputs]
        self.outputs = [(n, remap[v]) for n, v in self.outputs]
        self.values = values

    # ---- the plan ----------------------------------------------------------------------------

    def concat_inputs_in_place(self, batch, sizes):
        """{value id: (concatenation output id, byte offset)}: the inputs a concatenation's producers
        compute straight into its output (model.c's place_concat_inputs; the module docstring)."""
        sole = self._sole_readers()
        writer = {op.output: k for k, op in enumerate(self.ops)}
        into = {}
        for op in self.ops:
            out = self.values[op.output]
            if op.code != OP_CONCAT or out.kind != V_ARENA:
                continue
            dims = [d * batch if a == out.bdim else d for a, d in enumerate(out.dims)]
            if int(np.prod(dims[:op.ints[0]], dtype=np.int64)) != 1:
                continue
            at = 0
            for v in op.inputs:
                w = writer.get(v)
                if v in sole and w is not None and self.ops[w].code != OP_CONCAT and v not in into:
                    into[v] = (op.output, at)
                at += sizes[v]
        return into

    def plan(self, batch):
        """(offsets {value id: arena offset}, tensor bytes) at this batch: the algorithm of model.c."""
        n = len(self.values)
        sizes = [4 * v.size_at(batch) for v in self.values]
        into = self.concat_inputs_in_place(batch, sizes)

        def owner(i):  # the tensor whose memory value i lives in
            r = self.root(i)
            return into[r][0] if r in into else r

        first, last = [-1] * n, [-1] * n
        for k, op in enumerate(self.ops):
            r = owner(op.output)
            if first[r] < 0:
                first[r] = k
            last[r] = k
            for i in op.inputs:
                if i >= 0:
                    last[owner(i)] = k
        order = sorted((i for i, v in enumerate(self.values) if v.kind == V_ARENA and i not in into),
                       key=lambda i: (-sizes[i], i))
        rounded = [_round_up(s) for s in sizes]
        offsets, total = greedy_offsets(order, rounded, lambda u, v: last[u] >= first[v] and last[v] >= first[u])
        for v, (out, at) in into.items():
            offsets[v] = offsets[out] + at
        return offsets, total

    # ---- serialisation -----------------------------------------------------------------------

    def to_bytes(self, plan_batch=None, external_consts=False):
        """The bundle. external_consts: leave the weights out (header flag 1); every run then supplies
        the constants (cnnc_model_run_consts)."""
        plan_batch = int(self.fixed_batch or (plan_batch or 1))
        offsets, tensor_bytes = self.plan(plan_batch)
        if tensor_bytes >= 2**62:
            raise BundleError(f"the arena plan at batch {plan_batch} needs {tensor_bytes} bytes")
        weights, woffs = bytearray(), {}
        for i, v in enumerate(self.values):
            if v.kind == V_CONST and external_consts:
                woffs[i] = 0
            elif v.kind == V_CONST:
                weights.extend(b"\0" * (_round_up(len(weights)) - len(weights)))
                woffs[i] = len(weights)
                weights.extend(v.array.astype("<f4", copy=False).tobytes())
        body = bytearray()
        for i, v in enumerate(self.values):
            dims = list(v.dims) + [0] * (MAX_RANK - len(v.dims))
            index = v.alias_of if v.kind == V_ALIAS else v.index
            offset = woffs.get(i, offsets.get(i, 0))
            body += struct.pack("<4i8qqq", v.kind, index, len(v.dims), v.bdim, *dims, offset, 0)
        for name, vid in self.inputs + self.outputs:
            raw = name.encode("utf-8")[:4096]
            body += struct.pack("<iI", vid, len(raw)) + raw
            body += b"\0" * (-len(body) % 8)
        for op in self.ops:
            ids = op.inputs + [op.output]
            body += struct.pack("<6i", op.code, len(op.inputs), 1, len(op.ints), len(op.floats), 0)
            body += struct.pack(f"<{len(ids)}i", *ids)
            body += b"\0" * (-len(body) % 8)
            body += struct.pack(f"<{len(op.ints)}q", *op.ints)
            body += struct.pack(f"<{len(op.floats)}f", *op.floats)
            body += b"\0" * (-len(body) % 8)
        body += struct.pack("<q", tensor_bytes)
        woff = _round_up(HEADER_SIZE + len(body))
        body += b"\0" * (woff - HEADER_SIZE - len(body))
        total = woff + len(weights)
        head = struct.pack("<4I4I2q2q", 0, 0, 0, 0,  # magic/version/header/size are written below
                           len(self.values), len(self.ops), len(self.inputs), len(self.outputs),
                           self.fixed_batch, plan_batch, woff, len(weights))
        flags = FLAG_EXTERNAL_CONSTS if external_consts else 0
        out = bytearray(MAGIC + struct.pack("<IIQII", VERSION, HEADER_SIZE, total, 0, flags)) + head[16:] + body + weights
        assert len(out) == total
        crc = zlib.crc32(bytes(out[32:])) & 0xFFFFFFFF
        out[24:28] = struct.pack("<I", crc)
        return bytes(out)

    def describe(self):
        """One line per op: what the bundle runs (for reports and debugging)."""
        lines = []
        for op in self.ops:
            v = self.values[op.output]
            lines.append(f"{OP_NAMES.get(op.code, op.code):16s} {op.label:40s} -> {list(v.dims)}")
        return "\n".join(lines)
