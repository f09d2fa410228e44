"""The models BitLens trains, exports and explains, by name.

- `<topology>-<precision>`: BitLens' own zoo. Topology tfc | sfc | lfc | cnv, precision w1a1 |
  w1a2 | w2a2 (Brevitas) or fp (plain torch, ReLU). The quantised models start with a lossless
  unsigned 8-bit input quantiser (scale 1/256), so the accelerator's first layer sees the raw bytes.
- `bnn-pynq:<config>`: FINN's own BNN zoo (`brevitas_examples.bnn_pynq`, e.g. tfc_1w1a,
  cnv_2w2a), built unmodified from its config with the dataset's channels and classes. Its models
  preprocess `2x - 1` before their input quantiser; streamlining turns that into an affine map of
  the pixel bytes or an input thresholding stage.
- `path/to/file.py:function`: a user's model; `function()` (given `in_shape=(C, H, W)` and
  `classes=` if it takes them) returns a torch module built from the supported Brevitas layers.

Every model takes float images (N, C, H, W) with pixel = byte/256, at the size `net.in_shape`
says (MNIST is zero-padded to 32x32 for CNV topologies).
"""
import hashlib
import importlib.util
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from model.data import DATASETS
from model.paths import model_dir, slug

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
BNN_PYNQ = "bnn-pynq:"


class ModelError(ValueError):
    pass


@dataclass(frozen=True)
class Spec:
    """What the pipeline needs to know of a model name before building it."""
    name: str
    source: str            # "zoo" | "bnn-pynq" | "file"
    kind: str | None       # "mlp" | "cnv" (training defaults, input size); None: decided by the module
    quantised: bool
    twin: str | None       # the full-precision twin explained beside it, if the topology has one


def _bnn_pynq_configs():
    # Brevitas takes seconds to import: deferred to where a Brevitas model is named or built
    from brevitas_examples.bnn_pynq import models as bp
    return [n for n in bp.__all__ if n != "model_with_cfg" and not n.startswith("resnet")]


def spec(name: str) -> Spec:
    if name.startswith(BNN_PYNQ):
        cfg = name[len(BNN_PYNQ):].lower()
        known = _bnn_pynq_configs()
        if cfg not in known:
            raise ModelError(f"unknown FINN zoo model '{name}'; known: {', '.join(BNN_PYNQ + k for k in known)}")
        topo = cfg.split("_")[0]
        return Spec(name, "bnn-pynq", "cnv" if topo == "cnv" else "mlp", True, f"{topo}-fp")
    if ":" in name:
        path, _, fn = name.rpartition(":")
        if not path.endswith(".py") or not fn.isidentifier():
            raise ModelError(f"model '{name}': a model file is named path/to/file.py:function")
        return Spec(name, "file", None, True, None)
    topo, prec, sp, bits = parse_name(name)
    return Spec(name, "zoo", sp["kind"], bits is not None,
                f"{topo}-w1a1" if bits is None else f"{topo}-fp")


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


def twin_of(name: str) -> str | None:
    """The full-precision twin of a quantised model (and the reverse: fp -> w1a1); None for a
    user's model file."""
    return spec(name).twin


def input_size(name: str, dataset: str = "mnist") -> int:
    """The square size the dataset's images are padded to for this model (its own, if none)."""
    sp = spec(name)
    if sp.kind:
        return INPUT_SIZE[sp.kind] or DATASETS[dataset]["shape"][0]
    return build(name, dataset).in_shape[1]


def input_shape(name: str, dataset: str = "mnist"):
    """(C, H, W) the model takes for a dataset."""
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


def _bnn_pynq(cfg_name: str, in_shape, classes: int) -> nn.Module:
    """FINN's zoo model from its own config, with the dataset's channels and classes."""
    from brevitas_examples.bnn_pynq.models import get_model_cfg, model_impl
    cfg = get_model_cfg(cfg_name)
    cfg.set("MODEL", "IN_CHANNELS", str(in_shape[0]))
    cfg.set("MODEL", "NUM_CLASSES", str(classes))
    if cfg.get("MODEL", "ARCH") == "FC" and tuple(in_shape[1:]) != (28, 28):
        raise ModelError(f"{BNN_PYNQ}{cfg_name}: FINN's FC models take 28x28 images, not {in_shape[1]}x{in_shape[2]}")
    return model_impl[cfg.get("MODEL", "ARCH")](cfg)


def _user_module(path: str, fn: str, in_shape, classes: int) -> nn.Module:
    """Call `fn` of the Python file `path` (the user's own code, named on the command line)."""
    file = Path(path)
    if not file.is_file():
        raise ModelError(f"{path}: no such model file")
    mod_name = "bitlens_user_" + hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
    loader = importlib.util.spec_from_file_location(mod_name, file)
    module = importlib.util.module_from_spec(loader)
    try:
        loader.loader.exec_module(module)
    except Exception as e:  # the user's code may raise anything while it is imported
        raise ModelError(f"{path}: importing it failed ({type(e).__name__}: {e})") from None
    factory = getattr(module, fn, None)
    if not callable(factory):
        raise ModelError(f"{path}: defines no function '{fn}'")
    params = inspect.signature(factory).parameters
    kwargs = {k: v for k, v in (("in_shape", tuple(in_shape)), ("classes", classes)) if k in params}
    try:
        net = factory(**kwargs)
    except Exception as e:
        raise ModelError(f"{path}:{fn}() failed ({type(e).__name__}: {e})") from None
    if not isinstance(net, nn.Module):
        raise ModelError(f"{path}:{fn}() returned {type(net).__name__}, not a torch module")
    return net


def build(name: str, dataset: str = "mnist") -> nn.Module:
    """The untrained model. Every model gets `name` and `in_shape` (C, H, W: what it takes)."""
    if dataset not in DATASETS:
        raise ModelError(f"unknown dataset '{dataset}'; known: {', '.join(DATASETS)}")
    sp = spec(name)
    h, w, c = DATASETS[dataset]["shape"]
    classes = DATASETS[dataset]["classes"]
    if sp.source == "zoo":
        return ZooNet(name, input_shape(name, dataset), classes)
    size = INPUT_SIZE[sp.kind] if sp.kind else None
    in_shape = (c, size, size) if size else (c, h, w)
    if sp.source == "bnn-pynq":
        net = _bnn_pynq(name[len(BNN_PYNQ):].lower(), in_shape, classes)
    else:
        path, _, fn = name.rpartition(":")
        net = _user_module(path, fn, in_shape, classes)
        in_shape = tuple(getattr(net, "in_shape", in_shape))
    net.name, net.in_shape = name, tuple(in_shape)
    return net


def kind_of(net: nn.Module) -> str:
    """mlp or cnv: which training defaults and report sizes a built model gets."""
    return "cnv" if any(isinstance(m, nn.Conv2d) for m in net.modules()) else "mlp"


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


def load_trained(name: str, seed: int = 0, root: Path | None = None, dataset=None) -> nn.Module:
    ckpt = load_checkpoint(model_dir(name, seed, root) / "model.pt", name)
    net = build(name, dataset or ckpt.get("dataset", "mnist"))
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ModelError(f"checkpoint for {name} does not match the model: {' '.join(str(e).split())[:300]}") from None
    return net.eval()


def seeds(name: str, root: Path | None = None):
    """Seeds with a finished training run."""
    base = model_dir(name, 0, root)
    found = [0] if (base / "model.pt").is_file() else []
    if base.is_dir():
        found += sorted(int(p.name[4:]) for p in base.glob("seed*") if p.name[4:].isdigit() and (p / "model.pt").is_file())
    return found
