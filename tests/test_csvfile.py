"""The CSV corpus: each file trains on every row with the right columns, or is refused in one line (no traceback)."""

import numpy as np
import pytest
from cli_helpers import one_error_line

import aekit
from aekit.faces.cli import main
from aekit.io.csvfile import read_csv
from aekit.io.tables import Column

ROWS = np.random.default_rng(0).integers(0, 5, size=(60, 4)).astype(float)  # small integers: values repeat


def lines(rows, sep=",", fmt="{:g}"):
    return [sep.join(fmt.format(v) for v in row) for row in rows]


def holes(rows):
    out = []
    for i, row in enumerate(rows):
        cells = ["" if (i + j) % 7 == 0 else "NaN" if (i * j) % 11 == 3 else f"{v:g}" for j, v in enumerate(row)]
        out.append(",".join(cells))
    return out


def stray(rows):
    out = ["a,b,c,d", *lines(rows)]
    out[18] = "1,three,2,3"
    return out


# name -> (lines of the file, the columns read (a number: a headerless plain array of that many), or the refusal)
CORPUS = {
    "headerless": (lines(ROWS), 4),  # a first row of numbers is data, and its repeated values are not names
    "semicolon": (["a;b;c;d", *lines(ROWS, ";", "{:g},5")], tuple(map(Column, "abcd"))),  # and decimal commas
    "tab": (["a\tb\tc\td", *lines(ROWS, "\t")], tuple(map(Column, "abcd"))),
    "missing": (["a,b,c,d", *holes(ROWS)], (Column("a"), Column("b"), Column("c"), Column("d"))),
    "quoted": (["name,x,y", *(f'"{["a,b", "c;d", "e"][i % 3]}",{r[0]:g},{r[1]:g}' for i, r in enumerate(ROWS))],
               (Column("name", "categorical", ("a,b", "c;d", "e")), Column("x"), Column("y"))),
    "huge": (["a,b,c", *(f"{1e30 * (1 + r[0])},{r[1]:g},{1e30 * r[2]}" for r in ROWS)], tuple(map(Column, "abc"))),
    "duplicate": (["a,b,a,d", *lines(ROWS)], "column names repeat: ['a']; give each column its own name"),
    "stray": (stray(ROWS), "column 'b', row 18: 'three' is text in a column of numbers; correct it, or empty the cell"),
    "pipe": (["a|b|c", *lines(ROWS[:, :3], "|")], "cannot tell the delimiter: every line holds '|'"),
    "ragged": (["a,b,c,d", *lines(ROWS[:5]), "1,2,3", *lines(ROWS[5:])], "row 6 has 3 fields, expected 4 (comma"),
    "beyond": (["a,b", *(f"{4e38 * (i + 1)},{i}" for i in range(20))], "values beyond float32's range"),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_csv_trains_on_every_row_with_its_columns_or_is_refused_in_one_line(name, tmp_path, capsys):
    text, expected = CORPUS[name]
    path = tmp_path / f"{name}.csv"
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    code = main(["train", "--data", str(path), "--epochs", "1", "--latent-dim", "2", "--hidden", "4", "--no-progress",
                 "--device", "cpu", "--out", str(tmp_path / "run")])  # fmt: skip
    if isinstance(expected, str):
        assert code == 2
        one_error_line(capsys, f"{name}.csv", expected)
        return
    assert code == 0, capsys.readouterr().err
    run = aekit.load_run(tmp_path / "run")
    data = run.data()
    assert len(data.x_train) + len(data.x_test) == len(text) - (0 if name == "headerless" else 1)  # every row
    if isinstance(expected, int):
        assert run.model_config.columns == () and run.model_config.input_shape == (expected,)
    else:
        assert run.model_config.columns == expected


def test_a_byte_order_mark_and_quoted_line_breaks_are_read_as_text_not_data(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_text('\ufeffa,b\n1,2\n3,4\n', encoding="utf-8")
    x, _, columns = read_csv(path)
    assert columns == (Column("a"), Column("b")) and x.tolist() == [[1, 2], [3, 4]]  # "a", not "\ufeffa"
    path.write_text('note,v\n"two\nlines",1\nplain,2\n"two\nlines",3\n')
    x, _, columns = read_csv(path)
    assert columns == (Column("note", "categorical", ("plain", "two\nlines")), Column("v")) and x[:, 2].tolist() == [1, 2, 3]


def test_a_table_run_reads_its_inputs_in_its_own_columns_whatever_their_order(tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("colour,x,y\n" + "".join(f"{['red', 'blue'][i % 2]},{i},{i % 3}\n" for i in range(40)))
    assert main(["train", "--data", str(path), "--epochs", "1", "--latent-dim", "2", "--hidden", "4", "--no-progress",
                 "--device", "cpu", "--out", str(tmp_path / "run")]) == 0  # fmt: skip
    other = tmp_path / "other.csv"
    other.write_text("y;x;colour\n1;2,0;blue\n0;3;red\n")  # another order, semicolons and a decimal comma
    assert main(["encode", str(tmp_path / "run"), "--input", str(other), "--out", str(tmp_path / "z.npy")]) == 0
    assert np.load(tmp_path / "z.npy").shape == (2, 2)
    other.write_text("x,y,colour\n1,2,green\n")
    assert main(["encode", str(tmp_path / "run"), "--input", str(other), "--out", str(tmp_path / "z.npy")]) == 2
    one_error_line(capsys, "column 'colour', row 1: category 'green' was not seen in training")
