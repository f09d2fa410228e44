"""The commands' one error path: every failure is one line `error: <option or file>: <cause>` on
stderr and a non-zero exit, never a traceback. `run(main_fn)` turns the project's errors, OS
errors (read-only folder, disk full), Ctrl-C and SIGTERM into that line."""
import os
import signal
import sys


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


def fail(message: str) -> int:
    """A command's own verdict (not an exception): the same one line, exit 1."""
    print(f"error: {message}", file=sys.stderr)
    return 1


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
        fail(one_line(e))
        if os.environ.get("BITLENS_VERBOSE"):
            rest = str(e).strip().partition("\n")[2]
            if rest:
                print(rest, file=sys.stderr)
        return 1
