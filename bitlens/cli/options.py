"""What every BitLens command shares about its options: `Parser` is argparse with one-line usage
errors (exit 2); `positive_int` / `nonneg_int` / `positive_float` / `images_arg` / `choice` are
option types whose error names the option and the bad value, so no command writes its own
"must be positive" or "unknown X; known: ..." check."""
import argparse


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def unknown(kind: str, value, known) -> str:
    """The one wording of a name that is not among the known ones."""
    return f"unknown {kind} '{value}'; known: {', '.join(known)}"


def choice(kind: str, known, extra=()):
    """An option type accepting one of `known` (or of `extra`, such as 'all'), case as given."""
    allowed = list(known) + list(extra)

    def parse(s):
        if s not in allowed:
            raise argparse.ArgumentTypeError(unknown(kind, s, allowed))
        return s
    parse.__name__ = kind       # argparse names the type in some messages
    return parse


def _whole(s):
    try:
        return int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not a whole number") from None


def positive_int(s):
    v = _whole(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def nonneg_int(s):
    v = _whole(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {v}")
    return v


def positive_float(s):
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not a number") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {s}")
    return v


def images_arg(s):
    """A number of images or 'all'."""
    if s == "all":
        return s
    try:
        return positive_int(s)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{e} (a positive number or 'all')") from None
