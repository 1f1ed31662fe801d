"""Generate the small PyTorch-exported ONNX models of tests/data/onnx/ (run once; the tests need no torch).

    pip install torch==2.13.0      # the local CPU wheel
    python tools/make_onnx_test_models.py

Writes tests/data/onnx/<name>.onnx (opset 17, NCHW input [N, 3, 32, 32] with a symbolic batch) and
tests/data/onnx/torch_reference.npz holding a fixed input `x` [2, 3, 32, 32] and PyTorch's output
`<name>` for it - so the tests check cnnc against PyTorch itself, not only against onnxruntime.

Models (small channel counts, each well under 200 KB):
  torch_chain          a plain chain importable by cnnc.onnx.import_model: Conv+BN (BN kept, not
                       folded) + ReLU6 (Clip 0..6), MaxPool k3 s2 p1, depthwise Conv + BN + Hardswish,
                       1x1 Conv + LeakyReLU, MaxPool ceil_mode, Conv + ELU, AdaptiveAvgPool(1) ->
                       GlobalAveragePool, Flatten, Dropout, Linear + ReLU, Linear
  torch_resnet         ResNet-style basic blocks (residual Add, strided 1x1 downsample), BN folded
                       into the convolutions by the exporter
  torch_resnet_bn      the same network exported with its BatchNormalization nodes kept
  torch_squeezenet     SqueezeNet-style Fire modules (Concat of 1x1 and 3x3 expands), ceil_mode
                       MaxPool, final conv classifier + GlobalAveragePool
  torch_mobilenet      MobileNetV2/V3-style inverted residuals: ReLU6 (Clip), Hardswish, depthwise
                       convs, squeeze-and-excitation (Hardsigmoid, Mul), residual Add
"""
import os

import numpy as np
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "onnx")
OPSET = 17


def chain():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.Hardswish(),
        nn.Conv2d(8, 16, 1), nn.LeakyReLU(0.1),
        nn.MaxPool2d(3, stride=2, ceil_mode=True),
        nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ELU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
        nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 5))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


def resnet():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        BasicBlock(8, 8, 1), BasicBlock(8, 16, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


class Fire(nn.Module):
    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.e1 = nn.Conv2d(squeeze, expand, 1)
        self.e3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x):
        s = torch.relu(self.squeeze(x))
        return torch.cat([torch.relu(self.e1(s)), torch.relu(self.e3(s))], 1)


def squeezenet():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(16, 4, 8), Fire(16, 4, 8),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(16, 8, 12),
        nn.Dropout(0.5), nn.Conv2d(24, 10, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten())


class SqueezeExcite(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.fc1 = nn.Conv2d(c, r, 1)
        self.fc2 = nn.Conv2d(r, c, 1)

    def forward(self, x):
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        s = nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))
        return x * s


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, expand, stride, act, se):
        super().__init__()
        hid = cin * expand
        layers = [nn.Conv2d(cin, hid, 1, bias=False), nn.BatchNorm2d(hid), act(),
                  nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False), nn.BatchNorm2d(hid), act()]
        if se:
            layers.append(SqueezeExcite(hid, 4))
        layers += [nn.Conv2d(hid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


def mobilenet():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish(),
        InvertedResidual(8, 8, 2, 1, nn.ReLU6, False),
        InvertedResidual(8, 12, 2, 2, nn.Hardswish, True),
        InvertedResidual(12, 12, 2, 1, nn.Hardswish, True),
        nn.Conv2d(12, 24, 1), nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, 6))


def randomize_bn(model, gen):
    """Non-trivial running statistics and affine parameters, so BatchNormalization matters."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.2)


def export(model, name, x, keep_bn=False):
    path = os.path.join(OUT, f"{name}.onnx")
    kw = {}
    if keep_bn:  # keep BatchNormalization nodes instead of folding them into the convolutions
        kw = dict(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    torch.onnx.export(model, x, path, dynamo=False, opset_version=OPSET, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}}, **kw)
    import onnx
    m = onnx.load(path)
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"{name}: {os.path.getsize(path) / 1024:.1f} KB, ops {ops}")
    return path


def main():
    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32, generator=gen)
    ref = {"x": x.numpy().astype(np.float32)}
    for name, make, keep_bn in (("torch_chain", chain, True), ("torch_resnet", resnet, False),
                                ("torch_resnet_bn", resnet, True), ("torch_squeezenet", squeezenet, False),
                                ("torch_mobilenet", mobilenet, False)):
        torch.manual_seed(1)
        model = make()
        randomize_bn(model, gen)
        model.eval()
        with torch.no_grad():
            y = model(x)
        export(model, name, x, keep_bn=keep_bn)
        ref[name] = y.numpy().astype(np.float32)
    np.savez_compressed(os.path.join(OUT, "torch_reference.npz"), **ref)


if __name__ == "__main__":
    main()
