"""Stand-ins the explain and study tests share: tiny sign-activated nets (a BNN and its float
twin) on 12x12 images, served like trained models by a Sources subclass, and fast method options."""
import copy

import torch
import torch.nn as nn

from explain import report as R
from explain.methods import canonize

torch.set_num_threads(1)
SIZE = 12


class SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, guided):
        ctx.save_for_backward(x)
        ctx.guided = guided
        return torch.where(x >= 0, 1.0, -1.0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        g = g * (x.abs() <= 1)
        return (g.clamp(min=0) if ctx.guided else g), None


class Act(nn.Module):
    def __init__(self):
        super().__init__()
        self.guided = False

    def forward(self, x):
        return SignSTE.apply(x, self.guided)


class Sign(nn.Module):
    # captum's LRP hooks the output tensor: it must be attached to the graph (straight-through)
    def forward(self, x):
        return x + (torch.where(x >= 0, 1.0, -1.0) - x).detach()


class Tiny(nn.Module):
    """Stand-in with the interface of model.zoo (fp) and model.reference.Reference (bnn)."""

    def __init__(self, binary, conv, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.binary, self.conv = binary, conv
        act = Act if binary else nn.ReLU
        if conv:
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), act())
            width = 4 * SIZE * SIZE
        else:
            self.features = nn.Sequential()
            width = SIZE * SIZE
        self.classifier = nn.Sequential(nn.Linear(width, 16), nn.BatchNorm1d(16), act())
        self.head = nn.Linear(16, 10, bias=False)
        self.scale_bias = nn.BatchNorm1d(10)
        for bn in (m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
        if binary:
            with torch.no_grad():
                for m in self.modules():
                    if isinstance(m, (nn.Linear, nn.Conv2d)):
                        m.weight.copy_(m.weight.sign())
        self.gradcam_layer = self.features[2] if conv else None
        self.eval()

    def penultimate(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))

    def forward(self, x):
        return self.scale_bias(self.head(self.penultimate(x)))

    def activation_modules(self):
        return [m for m in self.modules() if isinstance(m, (Act, nn.ReLU))]

    def set_guided(self, on):
        for m in self.activation_modules():
            m.guided = on

    def float_twin(self, canonized=True):
        twin = copy.deepcopy(self)
        for parent in list(twin.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, Act):
                    setattr(parent, name, Sign())
        if "gradcam_layer" in twin._modules:
            del twin._modules["gradcam_layer"]
        if canonized:
            twin = canonize(twin)
        return twin.eval()


class StandIns(R.Sources):
    """conv=None: a convolutional stand-in for cnv-* names, an MLP for the others (a study's cells)."""

    def __init__(self, root, conv, reference=True, dataset="mnist"):
        super().__init__(root, dataset)
        self.conv, self.reference = conv, reference

    def _conv(self, name):
        return name.startswith("cnv") if self.conv is None else self.conv

    def seeds(self, name):
        return [0, 1]

    def load_trained(self, name, seed):
        return Tiny(not name.endswith("-fp"), self._conv(name), 10 + seed + (100 if name.endswith("-fp") else 0))

    def load_reference(self, name, seed):
        if not self.reference:
            return None, "streamlined.onnx missing"
        return Tiny(True, self._conv(name), 10 + seed), "reference (stand-in)"

    def eval_data(self, name, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        x = torch.zeros(n, 1, SIZE, SIZE)
        x[:, :, 3:9, 3:9] = torch.randint(0, 256, (n, 1, 6, 6), generator=g).float() / 256
        y = torch.arange(n) % 10
        imgs = (x * 256).byte().permute(0, 2, 3, 1).numpy()
        return x, y, imgs

    def train_accuracy(self, name, seed):
        return None


OPTS = {"neuromask": dict(steps=20), "smoothgrad": dict(samples=4), "integrated_gradients": dict(steps=8),
        "quantus": dict(road_images=2, correlation_runs=10)}
