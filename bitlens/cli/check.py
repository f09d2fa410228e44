"""`python -m bitlens check --model M [--board B]`: a bad MODEL or BOARD stops a make target before
anything trains (one line, exit 1)."""
from bitlens.cli import errors
from bitlens.cli import options as O
from hw.boards import get_board
from model import zoo


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv):
    p = O.Parser(prog="python -m bitlens check", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--board")
    a = p.parse_args(argv)
    zoo.spec(a.model)
    if a.board:
        get_board(a.board)
    return 0
