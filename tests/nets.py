"""Model helpers the model/, hw/ and sim/ tests share: BatchNorm statistics far from the identity
(so streamlining's folding is exercised), and a QONNX export that returns its path."""
import torch
import torch.nn as nn

from model.export import export_qonnx_file


def randomise_bn(net, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 10 - 5)
            m.running_var.copy_(torch.rand(n, generator=g) * 3 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) * 2 - 1)  # negative scales too
            m.bias.data.copy_(torch.rand(n, generator=g) * 2 - 1)
    return net.eval()


def export_to(net, path):
    export_qonnx_file(net, path)
    return path
