"""The CLIs' one error path: every failure is one line `error: <option or file>: <cause>` on
stderr and a non-zero exit, never a traceback.

`Parser` is argparse with one-line usage errors (exit 2); `positive_int` / `positive_float` /
`images_arg` are option types that name the option when a value is bad; `run(main_fn)` turns
the project's errors, OS errors (read-only folder, disk full), Ctrl-C and SIGTERM into that line.
"""
import argparse
import os
import signal
import sys


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


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


def _os_message(e: OSError) -> str:
    name = e.filename if e.filename else None
    if name and e.filename2:        # a copy or rename: the error may be on either side
        name = f"{name} -> {e.filename2}"
    cause = e.strerror or str(e)
    return f"{name}: {cause}" if name else cause


def one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        msg = _os_message(e)
    else:
        msg = str(e).strip() or type(e).__name__
    return msg.splitlines()[0]


def run(main_fn, argv=None) -> int:
    """Call main_fn(argv); return its exit code, or print one error line and return 1 (130 on
    Ctrl-C / SIGTERM). BITLENS_VERBOSE=1 adds the rest of a multi-line message."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)   # kill ends like Ctrl-C: cleanup runs
    try:
        return main_fn(argv) or 0
    except KeyboardInterrupt:
        print("error: interrupted; nothing was published", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        if os.environ.get("BITLENS_VERBOSE"):
            rest = str(e).strip().partition("\n")[2]
            if rest:
                print(rest, file=sys.stderr)
        return 1
