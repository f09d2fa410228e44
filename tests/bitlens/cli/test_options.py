"""The shared option types and the one error path."""
import argparse
import errno

import pytest

from bitlens.cli import errors
from bitlens.cli import options as O


@pytest.mark.parametrize("fn,value,msg", [
    (O.positive_int, "0", "must be positive, got 0"),
    (O.positive_int, "1.5", "'1.5' is not a whole number"),
    (O.nonneg_int, "-1", "must be 0 or more, got -1"),
    (O.positive_float, "inf", "must be a positive number, got inf"),
    (O.positive_float, "nan", "must be a positive number, got nan"),
    (O.images_arg, "none", "(a positive number or 'all')"),
    (O.choice("board", ["ulx3s", "kv260"], extra=["all"]), "de10", "unknown board 'de10'; known: ulx3s, kv260, all"),
])
def test_bad_values_name_the_cause(fn, value, msg):
    with pytest.raises(argparse.ArgumentTypeError, match=None) as e:
        fn(value)
    assert msg in str(e.value)


def test_good_values():
    assert (O.positive_int("3"), O.nonneg_int("0"), O.positive_float("2.5")) == (3, 0, 2.5)
    assert O.images_arg("all") == "all" and O.images_arg("7") == 7
    assert O.choice("board", ["ulx3s"], extra=["all"])("all") == "all"


@pytest.mark.parametrize("exc,code,line", [
    (ValueError("bad folding\nmore detail"), 1, "error: bad folding"),
    (OSError(errno.EROFS, "Read-only file system", "/x/sim.json"), 1, "error: /x/sim.json: Read-only file system"),
    (KeyboardInterrupt(), 130, "error: interrupted; nothing was published"),
])
def test_run_turns_failures_into_one_line(exc, code, line, capsys, monkeypatch):
    monkeypatch.delenv("BITLENS_VERBOSE", raising=False)

    def main(argv):
        raise exc
    assert errors.run(main, []) == code
    assert capsys.readouterr().err.splitlines() == [line]


def test_an_unexpected_error_is_not_hidden():
    def main(argv):
        raise KeyError("a bug")
    with pytest.raises(KeyError):
        errors.run(main, [])
