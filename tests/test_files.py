import numpy as np
import pytest

from aekit.configs import DataConfig
from aekit.data import datasets as data
from aekit.data.datasets import read_file
from aekit.errors import DataError
from aekit.io.tables import Column


@pytest.mark.parametrize(
    "content, message",
    [
        ("a,b\n1,2\n3\n", "row 2 has 1 fields, expected 2"),
        ("a,b\n", "no data rows"),
        ("", "the file is empty"),
        ("a,b\n1,inf\n2,3\n", "contains infinite values \\(first in row 0\\)"),
    ],
)
def test_bad_csv(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        data.read_data(path)


def test_text_and_missing_cells_make_a_table(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,c\n1,x,2\n,y,NA\n3,,nan\n")
    x, y, columns = data.read_data(path)
    assert columns == (Column("a"), Column("b", "categorical", ("x", "y")), Column("c"))
    np.testing.assert_array_equal(x, [[1, 1, 0, 2], [np.nan, 0, 1, np.nan], [3, np.nan, np.nan, np.nan]])
    assert y is None
    path.write_text("a,b\n1,nan\n2,3\n")  # numbers with a hole: a numeric column, NaN where missing
    x, _, columns = data.read_data(path)
    assert columns == (Column("a"), Column("b")) and np.isnan(x[0, 1]) and x[1].tolist() == [2, 3]
    path.write_text("a,b\n1,z\n")
    with pytest.raises(DataError, match="t.csv: column 'b', row 1: category 'z' was not seen in training \\(it knows "
                       "\\['x', 'y'\\]\\)"):  # fmt: skip
        data.read_data(path, columns=columns[:1] + (Column("b", "categorical", ("x", "y")),))
    with pytest.raises(DataError, match="t.csv: lacks the column\\(s\\) \\['c'\\] the model was trained on"):
        data.read_data(path, columns=(Column("a"), Column("c")))


def test_array_files(tmp_path):
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    np.save(tmp_path / "objects.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "flat.npy", np.zeros(5))
    np.save(tmp_path / "inf.npy", np.array([[1.0, 2.0], [np.inf, np.nan]]))
    assert np.isnan(read_file(tmp_path / "nan.npy")[0][0, 1])  # missing values are read; a model decides on them
    with pytest.raises(DataError, match="inf.npy: contains infinite values \\(first in row 1\\)"):
        read_file(tmp_path / "inf.npy")
    with pytest.raises(DataError, match="empty.npy: need a non-empty array"):
        read_file(tmp_path / "empty.npy")
    with pytest.raises(DataError, match="objects.npy: holds Python objects \\(dtype object\\), which would need pickle"):
        read_file(tmp_path / "objects.npy")
    with pytest.raises(DataError, match="flat.npy: need a non-empty array of shape \\(N, features...\\)"):
        read_file(tmp_path / "flat.npy")
    np.savez(tmp_path / "xy.npz", x=np.ones((4, 2)), y=np.arange(4))
    x, y = read_file(tmp_path / "xy.npz")
    assert x.shape == (4, 2) and y.tolist() == [0, 1, 2, 3]


def test_image_folder(tmp_path):
    from PIL import Image

    for label in ("cats", "dogs"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(np.full((6, 5), 40 * i, np.uint8)).save(tmp_path / label / f"{i}.png")
    x, y = read_file(tmp_path)
    assert x.shape == (6, 1, 6, 5) and x.dtype == np.uint8 and y.tolist() == [0, 0, 0, 1, 1, 1]
    Image.fromarray(np.zeros((7, 7), np.uint8)).save(tmp_path / "cats" / "odd.png")
    with pytest.raises(DataError, match="different sizes .*--image-size"):
        read_file(tmp_path)
    x, _ = read_file(tmp_path, image_size=(4, 4))
    assert x.shape == (7, 1, 4, 4)
    d = data.load(DataConfig(name=str(tmp_path), image_size=(4, 4)))
    assert d.scaling == "unit" and float(d.x_train.max()) <= 1


def test_outputs_of_an_image_folder_carry_a_file_column(tmp_path):
    import csv

    import pyarrow.parquet as pq
    from PIL import Image

    from aekit.faces.cli import main

    folder = tmp_path / "images"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray((rng.random((6, 6)) * 255).astype(np.uint8)).save(folder / label / f"{i:02d}.png")
    assert main(["train", "--data", str(folder), "--out", str(tmp_path / "run"), "--epochs", "1", "--latent-dim", "3",
                 "--no-progress"]) == 0  # fmt: skip
    expected = [f"{label}/{i:02d}.png" for label in ("a", "b") for i in range(12)]
    assert main(["score", str(tmp_path / "run"), "--input", str(folder), "--out", str(tmp_path / "s.csv")]) == 0
    with open(tmp_path / "s.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["file", "score"] and [r[0] for r in rows[1:]] == expected
    assert main(["encode", str(tmp_path / "run"), "--input", str(folder), "--out", str(tmp_path / "z.parquet")]) == 0
    table = pq.read_table(tmp_path / "z.parquet")
    assert table.column_names[0] == "file" and table.column("file").to_pylist() == expected
    assert table.num_columns == 4  # the file and the 3 code values
    assert main(["score", str(tmp_path / "run"), "--input", str(folder), "--out", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (24,)  # a .npy holds the numbers only
    for suffix in ("npy", "csv", "parquet"):  # what reconstruct writes, score reads: the file names left out
        assert main(["reconstruct", str(tmp_path / "run"), "--input", str(folder), "--out",
                     str(tmp_path / f"r.{suffix}")]) == 0  # fmt: skip
        assert main(["score", str(tmp_path / "run"), "--input", str(tmp_path / f"r.{suffix}"), "--out",
                     str(tmp_path / f"rs.{suffix}.npy")]) == 0  # fmt: skip
        np.testing.assert_allclose(np.load(tmp_path / f"rs.{suffix}.npy"), np.load(tmp_path / "rs.npy.npy"), rtol=1e-5)
