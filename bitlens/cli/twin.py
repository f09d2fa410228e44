"""`python -m bitlens twin MODEL`: print the full-precision twin of a BNN (an empty line when it has
none, as for a user's model file); the Makefile asks it once for TWIN."""
from bitlens.cli import errors
from bitlens.cli import options as O
from model.zoo import twin_of


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv):
    p = O.Parser(prog="python -m bitlens twin", description=__doc__.splitlines()[0])
    p.add_argument("model")
    print(twin_of(p.parse_args(argv).model) or "")
    return 0
