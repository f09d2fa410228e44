"""`python -m bitlens export` (`make export`): export, streamline and verify a trained model
(build/<model>/{model.qonnx.onnx,streamlined.onnx,verify.json}, model.export)."""
from bitlens.cli import errors
from bitlens.cli import options as O
from model.export import export


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv):
    p = O.Parser(prog="python -m bitlens export", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tfc-w1a1")
    p.add_argument("--dataset", default=None, help="default: the one the model was trained on")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=O.nonneg_int, default=0)
    p.add_argument("--verify-images", type=O.positive_int, default=None, help="verify on the first N test images (default: all)")
    a = p.parse_args(argv)
    export(a.model, a.dataset, a.seed, a.verify_images, a.data_dir)
    return 0
