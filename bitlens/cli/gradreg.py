"""`python -m bitlens gradreg` (`make gradreg`): the BNN and its twin trained with the
guided-gradient loss vs plain, compared (build/gradreg/<model>/study.json; explain.gradreg_study)."""
from bitlens.cli import errors
from bitlens.cli import options as O
from explain.gradreg_study import LAMBDA, run
from model import zoo


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv):
    ap = O.Parser(prog="python -m bitlens gradreg", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tfc-w1a1")
    ap.add_argument("--lam", type=O.positive_float, default=LAMBDA, help="weight of the guided-gradient loss")
    ap.add_argument("--images", type=O.positive_int, default=100)
    ap.add_argument("--epochs", type=O.positive_int, help="training epochs of both variants (default: the schedule's)")
    ap.add_argument("--limit", type=O.positive_int, help="training images of both variants (default: the schedule's)")
    a = ap.parse_args(argv)
    if zoo.parse_name(a.model)[3] is None:
        raise ValueError(f"--model takes the BNN ({zoo.twin_of(a.model)}); its twin is studied alongside")
    doc, path = run(a.model, a.lam, a.images, epochs=a.epochs, limit=a.limit)
    for kind, k in doc["kinds"].items():
        c = k["cosine_gradient_vs_guided"]
        print(f"{k['name']}: cos(gradient, guided) {c['plain']['mean']:.3f} -> {c['gradreg']['mean']:.3f} "
              f"(p {c['p_wilcoxon']:.2g}); TV {k['total_variation']['plain']['mean']:.4f} -> "
              f"{k['total_variation']['gradreg']['mean']:.4f}; deletion AUC {k['deletion_auc']['plain']['mean']:.3f} -> "
              f"{k['deletion_auc']['gradreg']['mean']:.3f}; test accuracy {k['test_accuracy']['plain']} -> "
              f"{k['test_accuracy']['gradreg']}")
    print(f"-> {path}")
    return 0
