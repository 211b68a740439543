import gzip
import struct
from typing import ClassVar

import numpy as np
import pytest
import torch

from aekit.configs import DataConfig
from aekit.data import datasets as data
from aekit.data.datasets import MNIST
from aekit.errors import DataError
from aekit.faces.cli import main
from aekit.io import format as rows_format
from aekit.io.format import Format, Rows, chunk_spans
from aekit.io.idx import parse_idx, read_idx_gz


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def write_gz(path, payload: bytes):
    path.write_bytes(gzip.compress(payload))
    return path


# ------------------------------------------------------------------------------------------ IDX parser
def test_parse_idx_round_trip():
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(array)), array)


def test_parse_idx_big_endian_int32():
    array = np.array([1, -2, 70000], dtype=">i4")
    np.testing.assert_array_equal(parse_idx(idx_bytes(array, code=0x0C), "x"), [1, -2, 70000])


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "not an IDX file \\(only 0 bytes\\)"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic number 0x01000801"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "bad magic number 0x00000701"),
        (b"\x00\x00\x08\x00", "bad magic number"),
        (b"\x00\x00\x08\x03\x00\x00", "declares 3 dimensions but the file ends after 6 bytes"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00" * 4, "need 5 payload bytes but the file has 4"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00" * 6, "need 5 payload bytes but the file has 6"),
    ],
)
def test_parse_idx_rejects_corruption(raw, message):
    with pytest.raises(DataError, match=f"^bad.idx: .*{message}"):
        parse_idx(raw, "bad.idx")


def test_read_idx_gz_truncated(tmp_path):
    good = gzip.compress(idx_bytes(np.zeros((10, 28, 28), np.uint8)))
    path = tmp_path / "t.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="t.gz: not a valid gzip file"):
        read_idx_gz(path)


def test_read_idx_gz_not_gzip(tmp_path):
    path = tmp_path / "plain.gz"
    path.write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="plain.gz: not a valid gzip file"):
        read_idx_gz(path)


def test_read_idx_gz_checksum_mismatch(tmp_path):
    path = write_gz(tmp_path / "x.gz", idx_bytes(np.zeros((2, 2), np.uint8)))
    with pytest.raises(DataError, match="x.gz: SHA-256 mismatch"):
        read_idx_gz(path, sha256="0" * 64)


def test_read_idx_gz_missing(tmp_path):
    with pytest.raises(DataError, match="missing.gz: file not found"):
        read_idx_gz(tmp_path / "missing.gz")


# ------------------------------------------------------------------------------------------ MNIST
def test_bundled_mnist_contract():
    train, test = MNIST(train=True), MNIST(train=False)
    assert len(train) == 60000 and len(test) == 10000
    image, label = test[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() <= 1 and isinstance(label, int)
    assert test.data.shape == (10000, 28, 28) and test.data.dtype == torch.uint8
    assert test.targets.dtype == torch.int64
    assert torch.equal(image[0], test.data[0].float() / 255)
    counts = torch.bincount(train.targets).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(train.data.float().mean().item() / 255 - 0.1307) < 1e-4


def test_mnist_works_with_a_dataloader():
    loader = torch.utils.data.DataLoader(MNIST(train=False), batch_size=16)
    x, y = next(iter(loader))
    assert x.shape == (16, 1, 28, 28) and y.shape == (16,)


def test_mnist_search_order(tmp_path, monkeypatch):
    monkeypatch.setenv("AEKIT_DATA", str(tmp_path / "env"))
    path = data.mnist_search_path(tmp_path / "explicit")
    assert path[:3] == [tmp_path / "explicit", tmp_path / "env", data.BUNDLED_MNIST]
    assert data.find_mnist(download=False) == data.BUNDLED_MNIST  # env folder is empty: falls through


def test_corrupt_mnist_in_data_dir_is_named(tmp_path):
    for name in data.MNIST_SHA256:
        (tmp_path / name).write_bytes((data.BUNDLED_MNIST / name).read_bytes())
    good = gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes())
    write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", good[:-1] + bytes([(good[-1] + 1) % 10]))  # one label off
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: SHA-256 mismatch"):
        MNIST(root=tmp_path, train=False)


def test_download_when_missing_verifies_and_writes_atomically(tmp_path, monkeypatch):
    served, bundled = [], data.BUNDLED_MNIST

    class Response:
        def __init__(self, payload):
            self.payload = payload

        def read(self):
            return self.payload

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_urlopen(url, timeout):
        name = url.rsplit("/", 1)[1]
        served.append(name)
        return Response((bundled / name).read_bytes())

    monkeypatch.setattr(data.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(data, "BUNDLED_MNIST", tmp_path / "nowhere")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    target = tmp_path / "dl"
    assert data.find_mnist(target) == target
    assert sorted(served) == sorted(data.MNIST_SHA256)
    assert sorted(p.name for p in target.iterdir()) == sorted(data.MNIST_SHA256)  # no temp files left
    assert len(MNIST(root=target, train=False)) == 10000


def test_no_network_message_says_where_to_put_files(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise OSError("network is unreachable")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    monkeypatch.setattr(data, "BUNDLED_MNIST", tmp_path / "nowhere")
    monkeypatch.delenv("AEKIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="download failed .*network is unreachable.*put the four files"):
        data.find_mnist()
    assert not any((tmp_path / "cache").rglob("*.gz"))


# ------------------------------------------------------------------------------------------ the data contract
def test_load_mnist_is_unit_scaled_tensors():
    d = data.load(DataConfig(name="mnist", limit=1000))
    assert d.x_train.shape == (1000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert d.x_train.dtype == torch.float32 and d.scaling == "unit" and d.scaler is None
    assert 0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1


def test_digits_split_is_seeded_and_disjoint(digits):
    again = data.load(DataConfig(name="digits"))
    assert torch.equal(digits.x_test, again.x_test)
    assert len(digits.x_train) + len(digits.x_test) == 1797 and digits.input_shape == (1, 8, 8)


def test_tabular_csv_is_standardized_and_decodes_back(tmp_path):
    rng = np.random.default_rng(1)
    table = rng.normal(loc=50, scale=10, size=(100, 3))
    lines = ["a,b,label,c"] + [f"{r[0]},{r[1]},{i % 2},{r[2]}" for i, r in enumerate(table)]
    path = tmp_path / "t.csv"
    path.write_text("\n".join(lines))
    d = data.load(DataConfig(name=str(path), label_column="label"))
    assert d.scaling == "standard" and d.input_shape == (3,)
    assert torch.allclose(d.x_train.mean(0), torch.zeros(3), atol=1e-5)
    assert set(d.y_train.tolist()) == {0, 1}
    raw = torch.from_numpy(table.astype(np.float32))
    assert torch.allclose(d.to_data_space(d.scaler.transform(raw)), raw, atol=1e-4)


def test_unknown_dataset_lists_choices():
    with pytest.raises(DataError, match="unknown dataset 'fashion'; choose one of \\['digits', 'mnist'\\]"):
        data.load(DataConfig(name="fashion"))


# ------------------------------------------------------------------------------------------ fuzzing
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(st.binary(max_size=64))
def test_fuzz_idx_parser_random_bytes(raw):
    try:
        parse_idx(raw, "fuzz")
    except DataError:
        pass


def test_idx_with_a_zero_dimension_is_refused():
    # found by the fuzz test on a clean clone: (0, 8, 2**30, 2**30) passes the payload check (0 bytes) and numpy
    # then refuses the shape with its own ValueError
    raw = bytes([0, 0, 8, 4]) + b"".join(struct.pack(">I", d) for d in (0, 8, 2**30, 2**30))
    with pytest.raises(DataError, match=r"fuzz: IDX dimensions \(0, 8, 1073741824, 1073741824\) hold no values"):
        parse_idx(raw, "fuzz")


@given(st.integers(0, 255), st.integers(1, 4), st.lists(st.integers(0, 2**32 - 1), min_size=4, max_size=4),
       st.binary(max_size=64))
def test_fuzz_idx_parser_plausible_headers(code, ndim, dims, payload):
    raw = bytes([0, 0, code, ndim]) + b"".join(struct.pack(">I", d) for d in dims[:ndim]) + payload
    try:
        array = parse_idx(raw, "fuzz")
    except DataError:
        return
    assert array.shape == tuple(dims[:ndim])


@given(st.binary(max_size=200))
def test_fuzz_gz_reader(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("gz") / "f.gz"
    path.write_bytes(raw)
    try:
        read_idx_gz(path)
    except DataError:
        pass


class Txt(Format):
    """A format of one class: whitespace-separated numbers, one row a line, read whole and by chunks."""

    kind: ClassVar[str] = "txt"
    help: ClassVar[str] = ".txt of whitespace-separated numbers, one row a line"
    suffixes: ClassVar[tuple[str, ...]] = (".txt",)

    def open(self, path, label_column=None, chunk_bytes=None, image_size=None):
        x = np.loadtxt(path, ndmin=2)
        spans = chunk_spans(len(x), x.shape[1], chunk_bytes)
        return Rows(str(path), (x.shape[1],), x.dtype, spans, lambda i, start, stop: (x[start:stop], None))


def test_a_new_format_is_one_class_and_one_registry_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(data.SOURCES, "txt", Txt())  # the registry line
    monkeypatch.setattr(rows_format, "CHUNK_BYTES", 6 * 4 * 50)  # chunks of 50 rows: the chunked way is taken
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(300, 2)) @ rng.normal(size=(2, 6)) + 0.01 * rng.normal(size=(300, 6))
    np.savetxt(tmp_path / "x.txt", rows)
    np.save(tmp_path / "x.npy", rows)
    run = str(tmp_path / "run")
    assert main(["train", "--data", str(tmp_path / "x.txt"), "--latent-dim", "2", "--hidden", "16", "--epochs", "3",
                 "--device", "cpu", "--no-progress", "--no-analysis", "--out", run]) == 0  # fmt: skip
    for command in ("encode", "score"):
        for suffix in ("txt", "npy"):
            out = str(tmp_path / f"{command}-{suffix}.npy")
            assert main([command, run, "--input", str(tmp_path / f"x.{suffix}"), "--out", out]) == 0
        np.testing.assert_allclose(np.load(tmp_path / f"{command}-txt.npy"), np.load(tmp_path / f"{command}-npy.npy"),
                                   rtol=1e-6)  # fmt: skip
    assert len(np.load(tmp_path / "score-txt.npy")) == 300
    capsys.readouterr()
    assert main(["datasets"]) == 0
    assert "txt      .txt of whitespace-separated numbers" in capsys.readouterr().out


def test_an_idx_file_is_read_as_images(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_gz(tmp_path / "x-images-idx3-ubyte.gz", idx_bytes(images))
    x, labels = data.read_file(tmp_path / "x-images-idx3-ubyte.gz")
    assert x.shape == (2, 1, 3, 4) and labels is None and np.array_equal(x[:, 0], images)
