"""The model zoo: FINN's classic BNN topologies in Brevitas, and full-precision twins.

Names are `<topology>-<precision>`: topology tfc | sfc | lfc | cnv, precision w1a1 | w1a2 | w2a2
(Brevitas) or fp (plain torch, ReLU). Every model takes float images (N, C, H, W) with
pixel = byte/256; the quantised models start with a lossless unsigned 8-bit input quantiser
(scale 1/256), so the accelerator's first layer sees the raw bytes.
"""
from pathlib import Path

import torch
import torch.nn as nn

TOPOLOGIES = {
    "tfc": dict(kind="mlp", hidden=[64, 64, 64]),
    "sfc": dict(kind="mlp", hidden=[256, 256, 256]),
    "lfc": dict(kind="mlp", hidden=[1024, 1024, 1024]),
    "cnv": dict(kind="cnv", convs=[64, 64, "P", 128, 128, "P", 256, 256], fcs=[512, 512]),
}
PRECISIONS = {"w1a1": (1, 1), "w1a2": (1, 2), "w2a2": (2, 2), "fp": None}
# What each dataset looks like to a topology: CNV's unpadded 3x3 convolutions need 32x32,
# so MNIST is zero-padded 28 -> 32 for it (the final feature map is then 1x1 as in FINN's CNV).
INPUT_SIZE = {"mlp": None, "cnv": 32}
BUILD = Path(__file__).resolve().parent.parent / "build"


class ModelError(ValueError):
    pass


def parse_name(name: str):
    try:
        topo, prec = name.lower().split("-", 1)
        spec, bits = TOPOLOGIES[topo], PRECISIONS[prec]
    except (ValueError, KeyError):
        names = [f"{t}-{p}" for t in TOPOLOGIES for p in PRECISIONS]
        raise ModelError(f"unknown model '{name}'; known: {', '.join(names)}") from None
    return topo, prec, spec, bits


def all_names():
    return [f"{t}-{p}" for t in TOPOLOGIES for p in PRECISIONS]


def twin_of(name: str) -> str:
    """The full-precision twin of a quantised model (and the reverse: fp -> w1a1)."""
    topo, prec, _, _ = parse_name(name)
    return f"{topo}-w1a1" if prec == "fp" else f"{topo}-fp"


def input_shape(name: str, dataset: str = "mnist"):
    """(C, H, W) the model takes for a dataset."""
    from model.data import DATASETS
    h, w, c = DATASETS[dataset]["shape"]
    size = INPUT_SIZE[parse_name(name)[2]["kind"]]
    return (c, size, size) if size else (c, h, w)


def _quant_parts(wbits, abits):
    import brevitas.nn as qnn
    from brevitas.core.scaling import ScalingImplType
    from brevitas.quant import (Int8ActPerTensorFloatMinMaxInit, Int8WeightPerTensorFloat,
                                SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst,
                                Uint8ActPerTensorFloat)

    class InputQuant(Uint8ActPerTensorFloat):
        # max 255/256 over 255 steps: scale exactly 1/256, so byte/256 inputs pass unchanged
        scaling_impl_type = ScalingImplType.CONST
        scaling_init = 255 / 256

    if wbits == 1:
        wq = dict(weight_quant=SignedBinaryWeightPerTensorConst)
    else:
        wq = dict(weight_quant=Int8WeightPerTensorFloat, weight_bit_width=wbits)

    def act():
        if abits == 1:
            return qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst)
        return qnn.QuantIdentity(act_quant=Int8ActPerTensorFloatMinMaxInit, bit_width=abits,
                                 min_val=-1.0, max_val=1.0)

    return (lambda: qnn.QuantIdentity(act_quant=InputQuant),
            lambda i, o: qnn.QuantLinear(i, o, bias=False, **wq),
            lambda i, o: qnn.QuantConv2d(i, o, 3, bias=False, **wq),
            act)


def _fp_parts():
    return (lambda: nn.Identity(), lambda i, o: nn.Linear(i, o, bias=False),
            lambda i, o: nn.Conv2d(i, o, 3, bias=False), lambda: nn.ReLU())


class ZooNet(nn.Module):
    """Linear/conv -> BatchNorm -> activation blocks, a final linear layer and a per-class
    scale/bias (BatchNorm1d), for both the quantised models and their float twins."""

    def __init__(self, name: str, in_shape=(1, 28, 28), classes: int = 10):
        super().__init__()
        topo, prec, spec, bits = parse_name(name)
        self.name, self.in_shape, self.classes = name.lower(), tuple(in_shape), classes
        inq, linear, conv, act = _fp_parts() if bits is None else _quant_parts(*bits)
        self.input_quant = inq()
        layers, c, h = [], in_shape[0], in_shape[1]
        self.gradcam_layer = None
        if spec["kind"] == "cnv":
            convs = spec["convs"]
            for i, item in enumerate(convs):
                if item == "P":
                    layers.append(nn.MaxPool2d(2))
                    h //= 2
                    continue
                layers += [conv(c, item), nn.BatchNorm2d(item), act()]
                c, h = item, h - 2
                # GradCAM wants the last stage with spatial extent: the block before the 2nd pool
                if i + 1 < len(convs) and convs[i + 1] == "P" and convs[i + 2:].count("P") == 0:
                    self.gradcam_layer = layers[-1]
            if h < 1:
                raise ModelError(f"{name}: input {in_shape} too small for CNV's unpadded convolutions")
            width, hidden = c * h * h, spec["fcs"]
        else:
            width, hidden = in_shape[0] * in_shape[1] * in_shape[2], spec["hidden"]
        self.features = nn.Sequential(*layers)
        fcs = []
        for n in hidden:
            fcs += [linear(width, n), nn.BatchNorm1d(n), act()]
            width = n
        self.classifier = nn.Sequential(*fcs)
        self.head = linear(width, classes)
        self.scale_bias = nn.BatchNorm1d(classes)

    def penultimate(self, x):
        """Input of the final linear layer (the features the decision is made on)."""
        x = self.features(self.input_quant(x))
        return self.classifier(torch.flatten(x, 1))

    def forward(self, x):
        return self.scale_bias(self.head(self.penultimate(x)))

    def activation_modules(self):
        acts = [m for m in self.modules() if isinstance(m, nn.ReLU)]
        if not acts:
            import brevitas.nn as qnn
            acts = [m for m in self.modules() if isinstance(m, qnn.QuantIdentity) and m is not self.input_quant]
        return acts


def build(name: str, dataset: str = "mnist") -> ZooNet:
    from model.data import DATASETS
    if dataset not in DATASETS:
        raise ModelError(f"unknown dataset '{dataset}'; known: {', '.join(DATASETS)}")
    return ZooNet(name, input_shape(name, dataset), DATASETS[dataset]["classes"])


def model_dir(name: str, seed: int = 0, root: Path = BUILD) -> Path:
    """build/<model>/ holds the default seed 0; further seeds live in build/<model>/seed<k>/."""
    return Path(root) / name if seed == 0 else Path(root) / name / f"seed{seed}"


def load_checkpoint(path: Path, name: str):
    """Read a checkpoint written by model.train; clear errors for corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no checkpoint (run `make train MODEL={name}`)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated/garbage files
        raise ModelError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt:
        raise ModelError(f"{path}: not a BitLens checkpoint")
    if ckpt["model"] != name:
        raise ModelError(f"{path}: checkpoint is for model '{ckpt['model']}', not '{name}'")
    return ckpt


def load_trained(name: str, seed: int = 0, root: Path = BUILD, dataset=None) -> ZooNet:
    ckpt = load_checkpoint(model_dir(name, seed, root) / "model.pt", name)
    net = build(name, dataset or ckpt.get("dataset", "mnist"))
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ModelError(f"checkpoint for {name} does not match the model: {str(e).splitlines()[0]}") from None
    return net.eval()


def seeds(name: str, root: Path = BUILD):
    """Seeds with a finished training run."""
    base = Path(root) / name
    found = [0] if (base / "model.pt").is_file() else []
    if base.is_dir():
        found += sorted(int(p.name[4:]) for p in base.glob("seed*") if p.name[4:].isdigit() and (p / "model.pt").is_file())
    return found
