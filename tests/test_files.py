import numpy as np
import pytest

from aekit import data
from aekit.data import DataConfig
from aekit.errors import DataError
from aekit.data import read_file


@pytest.mark.parametrize(
    "content, message",
    [
        ("a,b\n1,2\n3,x\n", "column 'b' is not numeric \\(row 2: 'x'\\)"),
        ("a,b\n1,2\n3\n", "row 2 has 1 fields, expected 2"),
        ("a,b\n", "no data rows"),
        ("", "the file is empty"),
        ("a,b\n1,nan\n2,3\n", "NaN or infinite"),
    ],
)
def test_bad_csv(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_file(path)


def test_array_files(tmp_path):
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    np.save(tmp_path / "objects.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "flat.npy", np.zeros(5))
    with pytest.raises(DataError, match="nan.npy: contains NaN or infinite values \\(first in row 0\\)"):
        read_file(tmp_path / "nan.npy")
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
