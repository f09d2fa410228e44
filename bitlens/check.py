"""`python -m bitlens.check --model M [--board B]`: a bad MODEL or BOARD stops a make target before
anything trains (one line, exit 1)."""
import argparse
import sys

from hw.boards import get_board
from model import zoo


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--board")
    a = p.parse_args(argv)
    try:
        zoo.spec(a.model)
        if a.board:
            get_board(a.board)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
