"""Random weights for the model-zoo classics shipped with the onnx package (tests and benchmarks).

Their light_* versions build every weight with ConstantOfShape, so all classes score the same and a
comparison of outputs proves little; these models get He-scaled random initializers instead."""
import numpy as np


def randomized_weights(model, seed=0):
    """A copy of an onnx ModelProto whose ConstantOfShape weights (constant shape inputs) are replaced
    by random float32 initializers: 1-D (biases, batch-norm parameters) uniform in [0.5, 1), so
    variances stay positive; others normal with variance 2 / fan_in."""
    import onnx
    from onnx import numpy_helper
    rng = np.random.default_rng(seed)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    keep, new = [], []
    for node in m.graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = tuple(int(v) for v in inits[node.input[0]])
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            if len(shape) == 1:
                v = rng.random(shape) * 0.5 + 0.5
            else:
                v = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
            new.append(numpy_helper.from_array(v.astype(np.float32), node.output[0]))
        else:
            keep.append(node)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    m.graph.initializer.extend(new)
    return m
