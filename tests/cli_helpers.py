"""What the CLI tests share: run ``aekit`` in-process and read its one-line errors."""

from aekit.faces.cli import main


def exit_code(argv):
    """main()'s return value, or the code of the SystemExit that argparse raises on a usage error."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def one_error_line(capsys, *needles):
    """The one line the last command wrote to stderr (no traceback), checked to hold every needle."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("aekit"), err
    for needle in needles:
        assert needle in err, err
    return err
