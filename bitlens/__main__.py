"""`python -m bitlens <command> ...`: see bitlens/cli/__init__.py."""
import sys

from bitlens.cli import dispatch

sys.exit(dispatch())
