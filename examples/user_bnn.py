"""A model of your own, the way BitLens takes it: `MODEL=examples/user_bnn.py:bnn`.

Padded and strided binary-weight convolutions with 2-bit activations, a binary classifier, and
its full-precision twin of the same topology (`TWIN=examples/user_bnn.py:fp` for the report).
BitLens calls the function with the dataset's `in_shape` (C, H, W) and `classes`.
"""
import brevitas.nn as qnn
import torch
import torch.nn as nn
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat


class InputQuant(Uint8ActPerTensorFloat):
    # pixel = byte/256 passes unchanged: scale exactly 1/256, so the accelerator takes the bytes
    scaling_impl_type = ScalingImplType.CONST
    scaling_init = 255 / 256


class UserNet(nn.Module):
    def __init__(self, in_shape, classes, quantised=True):
        super().__init__()
        c, h, w = in_shape
        if quantised:
            act = lambda: qnn.QuantIdentity(bit_width=2, min_val=-1.0, max_val=1.0)
            conv = lambda i, o, s: qnn.QuantConv2d(i, o, 3, stride=s, padding=1, bias=False,
                                                   weight_quant=SignedBinaryWeightPerTensorConst)
            linear = lambda i, o: qnn.QuantLinear(i, o, bias=True, weight_quant=SignedBinaryWeightPerTensorConst)
            self.input_quant = qnn.QuantIdentity(act_quant=InputQuant)
        else:
            act = nn.ReLU
            conv = lambda i, o, s: nn.Conv2d(i, o, 3, stride=s, padding=1, bias=False)
            linear = lambda i, o: nn.Linear(i, o, bias=True)
            self.input_quant = nn.Identity()
        oh, ow = (h + 1) // 2, (w + 1) // 2           # after the stride-2 convolution
        self.features = nn.Sequential(conv(c, 16, 1), nn.BatchNorm2d(16), act(),
                                      conv(16, 16, 2), nn.BatchNorm2d(16), act())
        self.classifier = linear(16 * oh * ow, classes)
        self.scale_bias = nn.BatchNorm1d(classes)   # per-class scale and bias: trains well, folds away

    def forward(self, x):
        return self.scale_bias(self.classifier(torch.flatten(self.features(self.input_quant(x)), 1)))


def bnn(in_shape, classes):
    return UserNet(in_shape, classes, quantised=True)


def fp(in_shape, classes):
    return UserNet(in_shape, classes, quantised=False)
