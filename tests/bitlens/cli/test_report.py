"""The report command rejects bad arguments in one line before anything is computed."""
import pytest

from bitlens.cli import report


@pytest.mark.parametrize("argv,msg", [
    (["--model", "tfc-w1a1", "--board", "nosuch"], "unknown board 'nosuch'"),
    (["--model", "tfc-fp"], "--model takes the BNN"),
    (["--model", "tfc-w1a1", "--methods", "gradient,magic"], "unknown method 'magic'"),
])
def test_bad_names_are_one_line(argv, msg, capsys):
    assert report.main(argv) == 1
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv,msg", [
    (["--dataset", "nosuch"], "unknown dataset 'nosuch'; known: mnist"),
    (["--images", "0"], "argument --images: must be positive, got 0"),
    (["--hardware-images", "x"], "argument --hardware-images: 'x' is not a whole number"),
])
def test_bad_values_are_usage_errors(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        report.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and msg in err and len(err.strip().splitlines()) == 1
