"""The app layer's argument check: a bad MODEL or BOARD is one line before anything runs."""
import pytest

from bitlens.cli import check


@pytest.mark.parametrize("args,msg", [
    (["--model", "nope-w1a1"], "unknown model 'nope-w1a1'"),
    (["--model", "bnn-pynq:vgg_1w1a"], "unknown FINN zoo model"),
    (["--model", "net.txt:f"], "path/to/file.py:function"),
    (["--model", "tfc-w1a1", "--board", "nope"], "unknown board 'nope'"),
])
def test_bad_model_or_board_is_one_line(args, msg, capsys):
    assert check.main(args) == 1
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err


def test_good_names_pass():
    assert check.main(["--model", "bnn-pynq:cnv_2w2a", "--board", "pynq-z1"]) == 0
    assert check.main(["--model", "examples/user_bnn.py:bnn"]) == 0
