import numpy as np
import pytest
import torch
from cli_helpers import one_error_line

from aekit.data import datasets as data_mod
from aekit.data import stream
from aekit.io import format as rows_format
from aekit.io import parquet
from aekit.errors import DataError
from aekit.faces.cli import main
from aekit.run.rundir import RunDir

pq = pytest.importorskip("pyarrow.parquet", reason="needs the 'parquet' extra")
import pyarrow as pa  # noqa: E402


@pytest.fixture
def rows():
    return (np.random.default_rng(1).normal(size=(203, 6)) * 3 + 7).astype(np.float32)


@pytest.fixture
def table_run(tmp_path, rows, capsys):
    np.save(tmp_path / "train.npy", rows)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "train.npy"), "--latent-dim", "2", "--hidden", "8", "--epochs", "1",
                 "--batch-size", "32", "--no-progress", "--device", "cpu", "--out", str(run)]) == 0  # fmt: skip
    capsys.readouterr()
    return run


def test_npy_shards_and_parquet_read_as_one_table_in_chunks(tmp_path, rows):
    np.save(tmp_path / "one.npy", rows)
    (tmp_path / "shards").mkdir()
    for i, part in enumerate(np.array_split(rows, 3)):
        np.save(tmp_path / "shards" / f"part-{i}.npy", part)
    labels = np.arange(len(rows)) % 3
    table = pa.table({**{f"f{j}": rows[:, j] for j in range(6)}, "label": labels})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=50)
    for path, chunk_bytes in ((tmp_path / "one.npy", 24 * 10), (tmp_path / "shards", 24 * 17)):  # 10 and 17 rows
        opened = data_mod.open_rows(path, chunk_bytes=chunk_bytes)
        assert len(opened) == 203 and opened.shape == (6,) and opened.n_chunks > 3  # chunks cross shard ends
        np.testing.assert_array_equal(np.concatenate([x for x, _ in opened.chunks()]), rows)
    opened = data_mod.open_rows(tmp_path / "t.parquet", label_column="label")
    assert opened.n_chunks == 5 and opened.shape == (6,)
    parts = list(opened.chunks())
    np.testing.assert_array_equal(np.concatenate([x for x, _ in parts]), rows)
    np.testing.assert_array_equal(np.concatenate([y for _, y in parts]), labels)


def test_chunked_outputs_equal_in_memory_ones(table_run, tmp_path, rows, monkeypatch):
    import aekit.run.runs

    np.save(tmp_path / "x.npy", rows)
    pq.write_table(pa.table({f"f{j}": rows[:, j] for j in range(6)}), tmp_path / "x.parquet", row_group_size=40)
    np.savetxt(tmp_path / "x.csv", rows, delimiter=",")
    def run(command, source, out):
        return main([command, str(table_run), "--input", str(tmp_path / source), "--out", str(tmp_path / out)])

    for command in ("score", "encode", "reconstruct"):
        outputs = {}
        monkeypatch.setattr(aekit.run.runs, "INFER_CHUNK_ROWS", 10**6)  # the CSV: loaded whole, one chunk
        assert run(command, "x.csv", "w.npy") == 0
        outputs["whole"] = np.load(tmp_path / "w.npy")
        monkeypatch.setattr(rows_format, "CHUNK_BYTES", 24 * 13)  # .npy: chunks of 13 rows
        assert run(command, "x.npy", "c.npy") == 0
        outputs["npy"] = np.load(tmp_path / "c.npy")
        assert run(command, "x.parquet", "c.parquet") == 0
        outputs["parquet"] = np.column_stack([c.to_numpy() for c in pq.read_table(tmp_path / "c.parquet").columns])
        assert run(command, "x.npy", "c.csv") == 0
        outputs["csv"] = np.loadtxt(tmp_path / "c.csv", delimiter=",", skiprows=1 if command == "score" else 0)
        whole = outputs["whole"].reshape(len(rows), -1)
        for name, got in outputs.items():
            np.testing.assert_allclose(got.reshape(len(rows), -1), whole, rtol=1e-6, atol=1e-6, err_msg=name)


def test_a_bad_chunk_is_one_line_and_leaves_no_partial_output(table_run, tmp_path, rows, capsys, monkeypatch):
    bad = rows.copy()
    bad[150, 2] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    monkeypatch.setattr(rows_format, "CHUNK_BYTES", 24 * 50)
    out = tmp_path / "scores.npy"
    assert main(["score", str(table_run), "--input", str(tmp_path / "bad.npy"), "--out", str(out)]) == 2
    one_error_line(capsys, "bad.npy: contains NaN or infinite values (first in row 150)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy", "run", "train.npy"]  # nothing half-written


def test_mismatched_shards_and_non_numeric_parquet_are_refused(tmp_path):
    (tmp_path / "shards").mkdir()
    np.save(tmp_path / "shards" / "a.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "shards" / "b.npy", np.zeros((4, 5), np.float32))
    with pytest.raises(DataError, match="b.npy: shard of shape \\(4, 5\\) \\(float32\\) does not match a.npy's rows"):
        data_mod.open_rows(tmp_path / "shards")
    pq.write_table(pa.table({"a": [1.0, 2.0], "name": ["x", "y"]}), tmp_path / "t.parquet")
    assert data_mod.open_rows(tmp_path / "t.parquet") is None  # a table of categories: read whole, as a table
    with pytest.raises(DataError, match=r"column\(s\) \['name'\] are not numeric"):
        parquet.open_parquet(tmp_path / "t.parquet")


@pytest.fixture
def big(tmp_path, monkeypatch):
    """MNIST's first 6,000 training images as a uint8 .npy, streamed (threshold 0) in chunks of 500 rows."""

    monkeypatch.setattr(stream, "STREAM_THRESHOLD_BYTES", 0)
    monkeypatch.setattr(rows_format, "CHUNK_BYTES", 784 * 4 * 500)
    images, _ = data_mod.load_mnist_arrays(None, train=True)
    np.save(tmp_path / "big.npy", images[:6000, None])
    return tmp_path / "big.npy"


def test_a_large_file_streams_learns_and_says_so(big, tmp_path, caplog):
    import json
    import logging

    caplog.set_level(logging.INFO)
    assert main(["train", "--data", str(big), "--latent-dim", "16", "--epochs", "3", "--out", str(tmp_path / "run"),
                 "--no-progress", "--device", "cpu"]) == 0  # fmt: skip
    assert "streaming" in caplog.text and "in 12 chunks; 1200 rows held out for testing" in caplog.text
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["streamed_train_rows"] == 4800 and metrics["pca_fit_rows"] == 4800 and metrics["test_rows"] == 1200
    history = RunDir(tmp_path / "run").read_history()
    sse = [row["test_sse_per_image"] for row in history]
    assert sse[0] > sse[1] > sse[2] and sse[2] < 45  # it learns (111 steps; an untrained model scores about 100)


def test_a_large_image_folder_is_read_lazily_and_learns(tmp_path, monkeypatch, caplog):
    """A folder of images over the threshold: opening it reads headers only, chunks decode as they are read and
    equal the whole folder read at once, and training on it streams and learns."""
    import logging

    from PIL import Image

    from aekit.io import images as image_format

    images, labels = data_mod.load_mnist_arrays(None, train=True)
    for k in range(600):
        folder = tmp_path / "digits" / f"class-{labels[k] % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[k]).save(folder / f"{k:04d}.png")
    whole, whole_labels = data_mod.read_file(tmp_path / "digits")  # (read whole before the decoding is counted)
    decoded = []
    decode = image_format.decode_images
    monkeypatch.setattr(image_format, "decode_images", lambda paths, *a: decoded.append(len(paths)) or decode(paths, *a))
    rows = data_mod.open_rows(tmp_path / "digits", chunk_bytes=784 * 4 * 64)  # 64 images a chunk
    assert decoded == [] and len(rows) == 600 and rows.shape == (1, 28, 28) and rows.n_chunks == 10  # headers only
    parts = list(rows.chunks())
    assert decoded == [64] * 9 + [24]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in parts]), whole)
    np.testing.assert_array_equal(np.concatenate([y for _, y in parts]), whole_labels)

    monkeypatch.setattr(stream, "STREAM_THRESHOLD_BYTES", 0)
    monkeypatch.setattr(rows_format, "CHUNK_BYTES", 784 * 4 * 64)
    caplog.set_level(logging.INFO)
    decoded.clear()
    assert main(["train", "--data", str(tmp_path / "digits"), "--latent-dim", "8", "--hidden", "64", "--epochs", "4",
                 "--batch-size", "32", "--out", str(tmp_path / "run"), "--no-progress", "--device", "cpu"]) == 0
    assert "streaming" in caplog.text and "600 rows" in caplog.text
    assert len(decoded) > 4 * 10  # chunk by chunk, every epoch (each lane a read)
    sse = [row["test_sse_per_image"] for row in RunDir(tmp_path / "run").read_history()]
    assert sse[-1] < 0.5 * sse[0]  # it learns (measured 149 -> 56 in 4 epochs of 14 steps)


def test_a_streamed_run_resumes_exactly(big, tmp_path, monkeypatch):
    import os
    import signal
    import sys

    from aekit import DataConfig, make_config, train_run
    from aekit.configs import TrainConfig
    from aekit.run.format import load_tensors
    from aekit.training.loop import Interrupted

    args = dict(model_config=make_config("mlp", latent_dim=4, hidden=(32,)), data_config=DataConfig(name=str(big)),
                train_config=TrainConfig(epochs=2, batch_size=64, device="cpu"), progress=False)  # fmt: skip
    train_run(tmp_path / "full", **args)
    calls, schedule = [], sys.modules["aekit.training.loop"].learning_rate

    def ctrl_c_at_step_90(*a):
        calls.append(1)
        if len(calls) == 90:  # epoch 2 (74 steps per epoch: 8 lanes of 8 rows a batch), mid-chunk
            os.kill(os.getpid(), signal.SIGINT)
        return schedule(*a)

    monkeypatch.setattr(sys.modules["aekit.training.loop"], "learning_rate", ctrl_c_at_step_90)
    with pytest.raises(Interrupted, match="interrupted at epoch 2, step 16; checkpoint saved, continue with: aekit "
                                          "train --resume .*cut$"):  # the runs layer's sentence  # fmt: skip
        train_run(tmp_path / "cut", **args)
    monkeypatch.setattr(sys.modules["aekit.training.loop"], "learning_rate", schedule)
    train_run(tmp_path / "cut", resume=True, progress=False)
    full, _ = load_tensors(tmp_path / "full" / "model.safetensors")
    cut, _ = load_tensors(tmp_path / "cut" / "model.safetensors")
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)


def test_torchrun_processes_read_disjoint_rows_and_match_one_process(big, tmp_path):
    """2 processes on a memory-mapped file each read only their lanes of every chunk (the rows they read are
    disjoint), and together they make one process's batches: the same weights, as the in-memory DDP test."""
    import os
    import subprocess
    import sys

    from aekit.run.format import load_tensors

    # the subprocesses see the threshold through a tiny driver: stream the 6,000 rows in chunks of 500, and write
    # every span of rows read to OUT.reads-RANK (every process logs, not only rank 0)
    driver = tmp_path / "driver.py"
    driver.write_text("import logging, os, sys\nfrom aekit.data import stream\nstream.STREAM_THRESHOLD_BYTES = 0\n"
                      "from aekit.io import format as rows_format\nrows_format.CHUNK_BYTES = 784 * 4 * 500\n"
                      "logging.basicConfig(level=logging.INFO, format='%(message)s')\n"
                      "read_span = stream.Rows.read_span\n"
                      "def logged(self, i, start, stop):\n"
                      "    with open(f'{sys.argv[-1]}.reads-{os.environ.get(\"RANK\", 0)}', 'a') as f:\n"
                      "        f.write(f'{start} {stop}\\n')\n"
                      "    return read_span(self, i, start, stop)\n"
                      "stream.Rows.read_span = logged\n"
                      "from aekit.faces.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    common = ["train", "--data", str(big), "--latent-dim", "4", "--hidden", "32", "--epochs", "2", "--batch-size",
              "64", "--device", "cpu", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(driver), *common, "--out", str(tmp_path / "one")], env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(driver), *common, "--out", str(tmp_path / "two")], env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "all 2 processes hold identical weights" in ddp.stderr
    assert "process 0 reads lanes [0, 2, 4, 6] of the 8 lanes of every chunk" in ddp.stderr
    assert "process 1 reads lanes [1, 3, 5, 7] of the 8 lanes of every chunk" in ddp.stderr

    def rows_read(out: str, rank: int) -> list[np.ndarray]:  # per epoch, how often that process read each row
        spans = [tuple(map(int, line.split())) for line in (tmp_path / f"{out}.reads-{rank}").read_text().splitlines()]
        assert len(spans) % 2 == 0  # as many reads in either epoch: a lane of each of its chunks
        counts = [np.zeros(6000, dtype=int), np.zeros(6000, dtype=int)]
        for k, (start, stop) in enumerate(spans):
            counts[2 * k // len(spans)][start:stop] += 1
        return counts

    for first, second, alone in zip(rows_read("two", 0), rows_read("two", 1), rows_read("one", 0)):
        assert first.sum() > 2000 and second.sum() > 2000  # each read about half of the 6,000 rows
        assert first.max() == second.max() == 1 and not (first & second).any()  # disjoint rows
        assert np.array_equal(first + second, alone)  # together: what one process reads
    one, _ = load_tensors(tmp_path / "one" / "model.safetensors")
    two, _ = load_tensors(tmp_path / "two" / "model.safetensors")
    for name in one:  # the same examples in every global batch: equal up to the order of float sums
        torch.testing.assert_close(two[name], one[name], rtol=1e-3, atol=1e-4)
