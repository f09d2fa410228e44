"""`python -m bitlens train` (`make train`): train a zoo model into build/<model>[/seed<k>]/."""
from bitlens.cli import errors
from bitlens.cli import options as O
from model.train import train


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv):
    p = O.Parser(prog="python -m bitlens train", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tfc-w1a1")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir", default=None, help="folder with MNIST/Fashion-MNIST IDX files or CIFAR-10/100 python batches (default $DATA_DIR)")
    p.add_argument("--epochs", type=O.positive_int)
    p.add_argument("--seed", type=O.nonneg_int, default=0)
    p.add_argument("--batch", type=O.positive_int)
    p.add_argument("--lr", type=O.positive_float)
    p.add_argument("--out", default=None, help="output folder (default build/<model>[/seed<k>])")
    p.add_argument("--limit", type=O.positive_int, help="train on the first N training images only")
    p.add_argument("--force", action="store_true", help="retrain even if a finished run exists")
    p.add_argument("--ckpt", default=None, help="use these weights (a state_dict file) instead of training")
    a = p.parse_args(argv)
    train(a.model, a.dataset, a.epochs, a.seed, a.out, a.batch, a.lr, 0.0, a.data_dir,
          a.force, limit=a.limit, ckpt_in=a.ckpt)
    return 0
