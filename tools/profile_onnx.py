"""Per-node profile of an ONNX model in cnnc.onnx.InferenceSession next to ONNX Runtime.

Both runtimes get the same model (weights randomised as in tools/bench_onnx.py, every node given a
name 'nNNN_Op' for the tables), the same input and the same thread count. cnnc's times
come from timing each plan step of the session (a step may be a fused chain such as Conv+Relu); ONNX
Runtime's from its own profiler (SessionOptions.enable_profiling, spinning off). Runs alternate
between the runtimes; each node's time is the median over the runs. ONNX Runtime's node times come
from its profiler and exclude its per-call overhead; cnnc's exclude the Python loop around the steps.

ONNX Runtime renames the nodes it rewrites (its blocked-layout convolutions), so a cnnc step is
matched, in plan order, with the first unmatched ONNX Runtime node of the same operator family whose
data input, weight and output shapes are the same (or, failing that, data input and output shapes:
ONNX Runtime does not list the weights it prepacked). ONNX Runtime nodes left unmatched (layout reorders,
or ops it fused differently) are reported as 'ORT-only'; cnnc steps left unmatched show no ORT time.

    python tools/profile_onnx.py                          # vgg19, resnet50, squeezenet; 1 thread
    python tools/profile_onnx.py --models vgg19 --threads 2 --reps 5 --top 15
"""
import argparse
import json
import os
import tempfile
import time
from collections import defaultdict

import numpy as np


def _named_model(name):
    import onnx
    from cnnc.onnx._random import randomized_weights
    light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    model = randomized_weights(onnx.load(os.path.join(light, f"light_{name}.onnx")))
    for i, node in enumerate(model.graph.node):
        node.name = f"n{i:03d}_{node.op_type}"
    return model


def _cnnc_step_times(sess, feed):
    """Seconds per plan step for one run (the plan's own loop, each kernel call timed)."""
    values = sess._check_feed(feed)
    out, shapes = [], []
    with np.errstate(all="ignore"):
        for s in sess._plan:
            args = [None if a is None else (values[a[1]] if a[0] == "v" else a[1]) for a in s.args]
            t0 = time.perf_counter()
            outs = s.kernel(*args)
            out.append(time.perf_counter() - t0)
            x0 = next((a for a in args if a is not None), None)
            w = args[1] if len(args) > 1 and args[1] is not None else None
            if w is None and s.info is not None and s.info.is_const(1):
                w = s.info.const(1)  # weights the kernel prepared at load: the original shape
            shapes.append((tuple(np.shape(x0)), tuple(np.shape(w)) if w is not None else None,
                           tuple(np.shape(outs[0])) if outs else None))
            for o, v in zip(s.outputs, outs):
                if o:
                    values[o] = v
            for f in s.free:
                values.pop(f, None)
    return out, shapes


def _ort_profiling_session(ort, data, threads, tmp):
    """An ONNX Runtime session with its profiler on (files under tmp), spinning off, as tools/bench_onnx.py."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tmp, "ort_profile")
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _parse_ort_profile(path, warm):
    """Per ONNX Runtime node: [microseconds per run], op type, (family, input, weight, output shapes);
    and the model_run durations. The first `warm` runs are dropped."""
    with open(path) as f:
        events = json.load(f)
    per = defaultdict(list)
    ops, sig = {}, {}
    runs = []
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs.append(e["dur"])
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        per[name].append(e["dur"])
        a = e.get("args", {})
        ops[name] = a.get("op_name", "?")
        ins = [tuple(next(iter(d.values()))) for d in a.get("input_type_shape", [])]
        outs = [tuple(next(iter(d.values()))) for d in a.get("output_type_shape", [])]
        sig[name] = (_family(ops[name]), ins[0] if ins else None,
                     ins[1] if len(ins) > 1 and _family(ops[name]) in ("Conv", "Gemm") else None,
                     outs[0] if outs else None)
    # drop the warm-up runs (the first `warm` occurrences of each node)
    per = {k: v[warm:] for k, v in per.items()}
    return per, ops, sig, runs[warm:]


def _family(op):
    op = op[len("Fused"):] if op.startswith("Fused") else op
    return op.split("+")[0]


def profile(name, threads, reps, top):
    import onnxruntime as ort

    import cnnc
    import cnnc.onnx
    cnnc.set_num_threads(threads)
    model = _named_model(name)
    data = model.SerializeToString()
    inits = {t.name for t in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    feed = {inp.name: x}
    mine = cnnc.onnx.InferenceSession(data)
    warm = 2
    with tempfile.TemporaryDirectory() as tmp:
        ref = _ort_profiling_session(ort, data, threads, tmp)
        steps = []
        for r in range(reps + warm):
            t, step_shapes = _cnnc_step_times(mine, feed)
            ref.run(None, feed)
            if r >= warm:
                steps.append(t)
        path = ref.end_profiling()
        per, ops, sig, runs = _parse_ort_profile(path, warm)
    plan = mine._plan
    cn = np.median(np.array(steps), axis=0) * 1e6  # us per step
    # match ORT nodes to cnnc steps by operator family and shapes, in order
    ort_med = {k: float(np.median(v)) if v else 0.0 for k, v in per.items()}
    unused = list(per)
    ort_by_step = {}
    for si, s in enumerate(plan):
        xs, ws, ys = step_shapes[si]
        fam = _family(s.op_type)
        key = (fam, xs, ws if fam in ("Conv", "Gemm") else None, ys)
        hit = next((o for o in unused if sig[o] == key), None)
        if hit is None:  # ONNX Runtime lists no weight for nodes whose weight it prepacked
            hit = next((o for o in unused if (sig[o][0], sig[o][1], sig[o][3]) == (fam, xs, ys)), None)
        if hit is not None:
            unused.remove(hit)
            ort_by_step[si] = ort_med[hit]
    extra = defaultdict(float)
    for o in unused:
        extra[ops[o]] += ort_med[o]
    # per op type
    by_type = defaultdict(lambda: [0.0, 0.0, 0])
    for si, s in enumerate(plan):
        t = by_type[s.op_type]
        t[0] += cn[si]
        t[1] += ort_by_step.get(si, 0.0)
        t[2] += 1
    for op, v in extra.items():
        by_type[f"ORT-only {op}"][1] += v
    tot_c, tot_o = float(cn.sum()), float(sum(ort_by_step.values()) + sum(extra.values()))
    print(f"\n== {name}: input {shape}, {threads} thread(s), {reps} runs, median per node "
          f"(cnnc steps sum {tot_c / 1e3:.2f} ms, ORT nodes sum {tot_o / 1e3:.2f} ms, ratio "
          f"{tot_c / max(tot_o, 1e-9):.2f}; ORT model_run median "
          f"{float(np.median(runs)) / 1e3 if runs else float('nan'):.2f} ms)")
    print(f"{'op type':<34} {'n':>3} {'cnnc ms':>9} {'ORT ms':>9} {'ratio':>6} {'gap ms':>8}")
    for op, (c, o, n) in sorted(by_type.items(), key=lambda kv: -(kv[1][0] - kv[1][1])):
        ratio = f"{c / o:6.2f}" if o > 0 else "     -"
        print(f"{op:<34} {n:>3} {c / 1e3:>9.3f} {o / 1e3:>9.3f} {ratio} {(c - o) / 1e3:>8.3f}")
    rows = []
    for si, s in enumerate(plan):
        info = s.info
        desc = _describe(s, info, step_shapes[si])
        rows.append((cn[si] - ort_by_step.get(si, 0.0), si, s, desc))
    rows.sort(key=lambda r: -r[0])
    print(f"\nworst {top} steps by gap (cnnc - ORT)")
    print(f"{'step':<28} {'shape':<44} {'cnnc us':>9} {'ORT us':>9} {'ratio':>6}")
    for gap, si, s, desc in rows[:top]:
        o = ort_by_step.get(si, 0.0)
        ratio = f"{cn[si] / o:6.2f}" if o > 0 else "     -"
        label = s.name if len(s.name) <= 28 else s.name[:25] + "..."
        print(f"{label:<28} {desc:<44} {cn[si]:>9.1f} {o:>9.1f} {ratio}")
    return tot_c, tot_o


def _describe(step, info, shapes):
    """A short shape description: for Conv, Cin->Cout KhxKw/stride on HxW (group)."""
    xs, ws, ys = shapes
    try:
        if info is not None and info.op_type == "Conv" and ws is not None:
            st = info.attr("strides", [1, 1])
            g = info.attr("group", 1)
            gs = f" g{g}" if g != 1 else ""
            return f"{xs[1]}->{ws[0]} {ws[2]}x{ws[3]}/s{st[0]} on {xs[2]}x{xs[3]}{gs}"
        if info is not None and info.op_type == "Gemm":
            return f"Gemm {xs} x {ws}"
    except Exception:  # noqa: BLE001 - description only
        pass
    return f"{step.op_type.split('+')[0]} {xs}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["vgg19", "resnet50", "squeezenet"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    import cnnc
    import onnxruntime as ort
    print(f"cnnc {cnnc.__version__} ({cnnc.show_config(False)['simd']}), onnxruntime {ort.__version__}, "
          f"load {os.getloadavg()[0]:.2f}")
    for name in args.models:
        profile(name, args.threads, args.reps, args.top)


if __name__ == "__main__":
    main()
