"""Careless or hostile input, by class: each gets one line and exit code 2 (no traceback), a failing command
leaves the run it touched as it was, nothing hangs, and nothing is silently wrong."""

import json
import os
import signal
import struct
import sys
import zlib

import numpy as np
import pytest
import torch
from cli_helpers import exit_code, one_error_line

import aekit
from aekit.faces.cli import main
from aekit.run.format import load_tensors, save_tensors
from aekit.run.rundir import RunDir

DEVICE = os.environ.get("AEKIT_TEST_DEVICE", "cpu")  # pytest --device cuda

TABLE_TRAIN = ["--latent-dim", "2", "--hidden", "8", "--epochs", "2", "--batch-size", "16", "--device", DEVICE,
               "--no-progress"]  # fmt: skip


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "table.npy"
    np.save(path, np.random.default_rng(0).normal(size=(80, 6)).astype(np.float32))
    return path


@pytest.fixture
def run(tmp_path, table, capsys):
    path = tmp_path / "run"
    assert main(["train", "--data", str(table), *TABLE_TRAIN, "--out", str(path)]) == 0
    capsys.readouterr()
    return path


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ errors from outside aekit
def test_out_that_cannot_be_written_is_one_line(run, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["train", "--data", "digits", "--out", str(tmp_path / "file")]) == 2
    one_error_line(capsys, "file: exists and is not a folder")
    assert main(["encode", str(run), "--input", str(tmp_path / "table.npy"), "--out", str(tmp_path / "file" / "codes.npy")]) == 2
    one_error_line(capsys, "file: File exists")  # the folder it would need is a file
    (tmp_path / "folder.npy").mkdir()
    assert main(["encode", str(run), "--input", str(tmp_path / "table.npy"), "--out", str(tmp_path / "folder.npy")]) == 2
    one_error_line(capsys, "folder.npy: is a folder; give a file name")
    assert main(["score", str(run), "--input", str(tmp_path / "table.npy"), "--out", str(tmp_path / ("x" * 300 + ".csv"))]) == 2
    one_error_line(capsys, "File name too long")


@pytest.mark.parametrize(
    "content, message",
    [
        ("a,b\n1,2\n3,\u00e9\n".encode("latin-1"), "not UTF-8 text (invalid continuation byte at byte 10)"),
        ("a,b\n1,2\n".encode("utf-16"), "not UTF-8 text"),
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb2\xff" * 20, "not UTF-8 text"),  # an .xlsx renamed .csv
        (b"a,b\n1,\x002\n", "holds control characters; not a text table"),
    ],
)
def test_undecodable_csv_is_one_line(content, message, tmp_path, capsys):
    (tmp_path / "data.csv").write_bytes(content)
    assert main(["train", "--data", str(tmp_path / "data.csv"), "--out", str(tmp_path / "run")]) == 2
    one_error_line(capsys, "data.csv: ", message)
    assert not (tmp_path / "run").exists()


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 grey PNG whose header claims another size: a decompression bomb's first bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("size", [(8000, 8000), (50_000, 50_000)])  # past our limit; past PIL's own bomb error
def test_decompression_bomb_image_is_refused_before_decoding(size, tmp_path, capsys):
    (tmp_path / "bomb.png").write_bytes(png_claiming(*size))
    assert main(["train", "--data", str(tmp_path / "bomb.png"), "--out", str(tmp_path / "run")]) == 2
    one_error_line(capsys, "bomb.png: ")


def test_npy_whose_header_claims_petabytes_is_refused_before_reading(tmp_path, capsys):
    with open(tmp_path / "huge.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 10**6)})
        handle.write(b"\x00" * 64)
    assert main(["train", "--data", str(tmp_path / "huge.npy"), "--out", str(tmp_path / "run")]) == 2
    # a .npy is memory-mapped (a large one is streamed, never loaded whole): no size limit, but it must hold its data
    one_error_line(capsys, "huge.npy: its header declares 8000000000000000 bytes (1000000000, 1000000) but the file "
                           "holds 64")  # fmt: skip
    with open(tmp_path / "short.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (100, 4)})
        handle.write(b"\x00" * 64)
    assert main(["train", "--data", str(tmp_path / "short.npy"), "--out", str(tmp_path / "run")]) == 2
    one_error_line(capsys, "short.npy: its header declares 1600 bytes (100, 4) but the file holds 64")


def test_object_npz_member_is_one_line(tmp_path, capsys):
    np.savez(tmp_path / "objects.npz", x=np.array([[1, "a"]], dtype=object))
    assert main(["train", "--data", str(tmp_path / "objects.npz"), "--out", str(tmp_path / "run")]) == 2
    one_error_line(capsys, "objects.npz:x: holds Python objects (dtype object), which would need pickle")


@pytest.mark.parametrize("seed", ["99999999999999999999999", "-1"])
def test_seed_out_of_range_is_one_line(seed, tmp_path, capsys):
    assert exit_code(["train", "--data", "digits", "--seed", seed, "--out", str(tmp_path / "run")]) == 2
    one_error_line(capsys, f"seed={seed} must be an integer from 0 to 2**62 - 1")


def test_run_config_that_is_no_config_is_one_line(run, capsys):
    config = run / RunDir.CONFIG
    config.write_text("[" * 100_000)
    assert main(["evaluate", str(run)]) == 2
    one_error_line(capsys, "config.json: JSON nested too deeply")
    config.unlink()
    config.mkdir()
    assert main(["evaluate", str(run)]) == 2
    one_error_line(capsys, "config.json: not a regular file")
    config.rmdir()
    config.symlink_to(config)  # a symlink loop
    assert main(["evaluate", str(run)]) == 2
    one_error_line(capsys, "config.json: ")
    config.unlink()
    config.write_text(" " * (2**20 + 1))
    assert main(["evaluate", str(run)]) == 2
    one_error_line(capsys, "config.json: 1048577 bytes, more than the 1048576 a run's JSON file may hold")


def test_nan_weights_are_refused_on_load(run, capsys):
    tensors, metadata = load_tensors(run / RunDir.MODEL)
    tensors["model.encoder.0.weight"][0, 0] = float("nan")
    save_tensors(run / RunDir.MODEL, tensors, metadata)
    for command in (["evaluate", str(run)], ["plot", str(run), "latent"], ["report", str(run)]):
        assert main(command) == 2
        one_error_line(capsys, "model.safetensors: tensor 'encoder.0.weight' holds NaN or infinite values")


def test_garbage_history_or_metrics_reaching_plot_is_one_line(run, capsys):
    (run / RunDir.HISTORY).write_text("epoch,train_loss\nx,y\n")
    assert main(["plot", str(run), "curves"]) == 2
    one_error_line(capsys, "history.csv: not a valid history (invalid literal for int() with base 10: 'x')")
    (run / RunDir.HISTORY).write_text("epoch,train_loss\n1,0.5\n")
    assert main(["plot", str(run), "curves"]) == 2
    one_error_line(capsys, "history.csv: row 1 lacks ['seconds']")
    (run / RunDir.HISTORY).write_text("epoch,train_loss,test_mse_per_pixel,seconds\n1,0.5,0.1,2.0\n")
    assert main(["plot", str(run), "curves"]) == 2  # an untested epoch has neither test column, a tested one both
    one_error_line(capsys, "history.csv: row 1 lacks ['test_sse_per_image']")
    (run / RunDir.HISTORY).write_bytes(b"\xff\xfe\x00garbage")
    assert main(["plot", str(run), "curves"]) == 2
    one_error_line(capsys, "history.csv: not a valid history")
    (run / RunDir.HISTORY).unlink()
    (run / RunDir.METRICS).write_text("[1, 2]")
    assert main(["plot", str(run), "curves"]) == 2
    one_error_line(capsys, "metrics.json: not a table of metrics")


def test_unexpected_bugs_still_show_a_traceback_and_debug_shows_one_for_errors(run, monkeypatch, capsys):
    with pytest.raises(aekit.CheckpointError, match="no such run directory"):
        main(["--debug", "evaluate", str(run / "nope")])
    monkeypatch.setenv("AEKIT_DEBUG", "1")
    with pytest.raises(aekit.CheckpointError):
        main(["evaluate", str(run / "nope")])
    monkeypatch.delenv("AEKIT_DEBUG")
    monkeypatch.setattr("aekit.run.runs.evaluate_run", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["evaluate", str(run)])


# ------------------------------------------------------------------------------------------ no run lost
def test_failed_resume_leaves_the_run_loadable(run, table, capsys):
    before = snapshot(run)
    np.save(table, np.random.default_rng(1).normal(size=(80, 7)).astype(np.float32))  # the data changed shape
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    one_error_line(capsys, "was trained on data of shape (6,), but", "now gives (7,)")
    assert snapshot(run) == before and aekit.load_run(run)


@pytest.mark.parametrize("damage", ["corrupt", "ill-typed", "wrong-shape"])
def test_resume_from_a_bad_checkpoint_changes_nothing(damage, run, capsys):
    checkpoint = run / RunDir.CHECKPOINT
    if damage == "corrupt":
        checkpoint.write_bytes(b"\x00" * 100)
    else:
        tensors, metadata = load_tensors(checkpoint)
        if damage == "ill-typed":
            metadata["progress"] = json.dumps({"epoch": "two", "step": None, "history": 3})
        else:
            tensors["optim.0.exp_avg"] = torch.zeros(3, 3)
        save_tensors(checkpoint, tensors, metadata)
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    one_error_line(capsys, "checkpoint.safetensors: ")
    assert snapshot(run) == before and aekit.load_run(run)


def test_overwrite_that_diverges_keeps_the_old_run(run, table, monkeypatch, capsys):
    before = snapshot(run)
    monkeypatch.setattr(sys.modules["aekit.training.loop"], "learning_rate", lambda *args: float("nan"))
    assert main(["train", "--data", str(table), *TABLE_TRAIN, "--out", str(run), "--overwrite"]) == 2
    err = one_error_line(capsys, "loss became nan at epoch 1, step 2; try a lower learning rate",
                         f"the unfinished replacement was discarded and {run} keeps its previous run")
    assert "last good checkpoint" not in err  # it named a file that no longer exists
    assert snapshot(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["run", "table.npy"]  # no leftovers


def test_overwrite_interrupted_keeps_the_old_run(run, table, monkeypatch, capsys):
    before = snapshot(run)
    calls = []

    def ctrl_c_at_third_step(config, step, total):
        calls.append(step)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return config.lr

    monkeypatch.setattr(sys.modules["aekit.training.loop"], "learning_rate", ctrl_c_at_third_step)
    assert main(["train", "--data", str(table), *TABLE_TRAIN, "--out", str(run), "--overwrite"]) == 130
    err = capsys.readouterr().err
    assert "interrupted at epoch 1, step 3; the unfinished replacement was discarded" in err
    assert snapshot(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["run", "table.npy"]


def test_overwrite_replaces_the_run_and_what_was_drawn_from_it_once_finished(run, table, capsys):
    assert main(["plot", str(run), "latent"]) == 0
    (run / "notes.txt").write_text("mine")
    old = load_tensors(run / RunDir.MODEL)[0]
    assert main(["train", "--data", str(table), *TABLE_TRAIN, "--seed", "5", "--out", str(run), "--overwrite"]) == 0
    assert not torch.equal(load_tensors(run / RunDir.MODEL)[0]["model.encoder.0.weight"], old["model.encoder.0.weight"])
    assert sorted(p.name for p in run.iterdir()) == sorted([*RunDir.FILES, "notes.txt"])  # old figures gone, notes kept
    assert aekit.load_run(run).train_config.seed == 5


# ------------------------------------------------------------------------------------------ no hangs
def test_fifo_as_data_is_refused_without_opening_it(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.csv")
    assert main(["train", "--data", str(tmp_path / "pipe.csv"), "--out", str(tmp_path / "run")]) == 2
    one_error_line(capsys, "pipe.csv: not a regular file or folder (only regular files are read as data)")


def test_config_with_a_huge_number_of_layers_is_refused_at_once(run, capsys):
    raw = json.loads((run / RunDir.CONFIG).read_text())
    raw["model"]["body"]["hidden"] = [8] * 200_000
    (run / RunDir.CONFIG).write_text(json.dumps(raw))
    assert main(["evaluate", str(run)]) == 2
    one_error_line(capsys, "hidden lists 200000 layers; at most 64 are allowed")


# ------------------------------------------------------------------------------------------ nothing silently wrong
def test_csv_with_a_byte_order_mark_keeps_its_first_row(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeff1,2,3\n4,5,6\n7,8,9\n".encode("utf-8"))
    x, _ = aekit.data.datasets.read_file(tmp_path / "bom.csv")
    assert x.shape == (3, 3) and x[0].tolist() == [1, 2, 3]
    (tmp_path / "bom-header.csv").write_bytes("\ufeffa,b\n1,2\n".encode("utf-8"))
    assert aekit.data.datasets.read_file(tmp_path / "bom-header.csv", label_column="a")[1].tolist() == [1]


def test_outputs_follow_their_suffix(run, table, tmp_path, capsys):
    assert main(["score", str(run), "--input", str(table), "--out", str(tmp_path / "s.npy")]) == 0
    scores = np.load(tmp_path / "s.npy")  # a real .npy, not CSV text
    assert scores.shape == (80,) and np.isfinite(scores).all()
    assert main(["score", str(run), "--input", str(table), "--out", str(tmp_path / "s.csv")]) == 0
    assert np.allclose(np.loadtxt(tmp_path / "s.csv", skiprows=1), scores, rtol=1e-6)
    assert main(["score", str(run), "--input", str(table), "--out", str(tmp_path / "s.parquet")]) == 0
    pq = pytest.importorskip("pyarrow.parquet")
    assert np.allclose(pq.read_table(tmp_path / "s.parquet").column("score").to_numpy(), scores, rtol=1e-6)
    assert main(["score", str(run), "--input", str(table), "--out", str(tmp_path / "s.txt")]) == 2
    one_error_line(capsys, "s.txt: unsupported output type '.txt'; use .npy or .csv or .parquet")


def test_values_beyond_float32_are_refused_not_turned_into_inf(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(40, 3))
    x[7, 1] = 1e39
    np.save(tmp_path / "big.npy", x)
    assert main(["train", "--data", str(tmp_path / "big.npy"), "--out", str(tmp_path / "run")]) == 2
    one_error_line(capsys, "big.npy: values beyond float32's range (|x| > 3.4e+38, first in row 7)")


def test_inverse_transform_refuses_nan_codes_as_pca_does():
    from sklearn.decomposition import PCA

    X = np.random.default_rng(0).normal(size=(50, 4))
    codes = np.array([[np.nan, 0.0]])
    with pytest.raises(ValueError, match="Input X contains NaN") as pca_error:
        PCA(2).fit(X).inverse_transform(codes)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        aekit.AutoEncoderTransformer(2, max_epochs=1, random_state=0).fit(X).inverse_transform(codes)
    assert pca_error


# ------------------------------------------------------------------------------------------ round three
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import errno  # noqa: E402
import io  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402


def npy_header_only(shape) -> bytes:
    """A .npy file whose header declares ``shape`` (float32) over a payload of 16 bytes."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\0" * 16


@pytest.fixture
def app_client(run):
    from fastapi.testclient import TestClient

    from aekit.faces.serve import create_app

    return TestClient(create_app(run, map_points=20), raise_server_exceptions=False)


def test_hostile_requests_get_a_4xx_with_a_detail_never_a_5xx(app_client):
    bad = [
        ("post", "/v1/score", {"content": npy_header_only((10**12, 6)), "headers": {"content-type": "application/x-npy"}},
         "header: its header declares"),
        ("get", f"/v1/explore/samples?seed={2**64 + 5}", {}, "seed"),
        ("get", "/v1/explore/samples?seed=-1", {}, "seed"),
        ("post", "/v1/score", {"json": {"inputs": [["0.5"] * 6]}}, "inputs.0.0: Input should be a valid number"),
        ("post", "/v1/score", {"json": {"inputs": [[True] * 6]}}, "inputs.0.0: Input should be a valid number"),
        ("post", "/v1/explore/point", {"json": {"x": "1", "y": 0}}, "x: Input should be a valid number"),
        ("get", f"/v1/explore/example/{2**70}", {}, "is not on the map"),
    ]  # fmt: skip
    for method, url, kwargs, needle in bad:
        response = getattr(app_client, method)(url, **kwargs)
        assert 400 <= response.status_code < 500 and needle in response.json()["detail"], (url, response.text)
    assert app_client.post("/v1/score", json={"inputs": [[0.5] * 6]}).status_code == 200


def test_a_body_without_a_length_is_refused_once_it_passes_the_limit_never_buffered_whole():
    from aekit.faces.serve import MAX_BODY_BYTES, BodyLimit

    chunk, pulled, sent, reached = b"x" * 2**20, [], [], []

    async def receive():
        pulled.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": len(pulled) < 200}  # 200 MiB, chunked

    async def send(message):
        sent.append(message)

    async def inner(scope, receive, send):  # the app: never reached
        reached.append(True)

    scope = {"type": "http", "method": "POST", "path": "/v1/score", "headers": [(b"transfer-encoding", b"chunked")]}
    asyncio.run(BodyLimit(inner)(scope, receive, send))
    assert sent[0]["status"] == 413 and not reached
    assert sum(pulled) <= MAX_BODY_BYTES + len(chunk)  # read up to the limit, then refused
    assert b"over the" in sent[1]["body"]
    pulled.clear()

    async def small():  # a short chunked body reaches the app whole, in one message
        pulled.append(1)
        return {"type": "http.request", "body": b"ab", "more_body": len(pulled) < 3}

    async def app(scope, receive, send):
        reached.append(await receive())

    asyncio.run(BodyLimit(app)(scope, small, send))
    assert reached[-1] == {"type": "http.request", "body": b"ababab", "more_body": False}


def test_a_folder_named_like_a_data_file_is_one_line(tmp_path, capsys):
    (tmp_path / "something.npy").mkdir()
    assert exit_code(["train", "--data", str(tmp_path / "something.npy"), "--out", str(tmp_path / "run")]) == 2
    one_error_line(capsys, "something.npy: no .png or .jpg images in this folder")


def test_values_whose_standardization_overflows_blame_the_input(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(60, 3))
    x[:, 1], x[0, 1] = -3.3e38, 3.3e38  # finite, but x - mean (about -3.2e38) passes float32's range
    np.save(tmp_path / "wide.npy", x)
    assert exit_code(["train", "--data", str(tmp_path / "wide.npy"), *TABLE_TRAIN, "--out", str(tmp_path / "r")]) == 2
    err = one_error_line(capsys, "wide.npy: standardizing feature 1 overflows float32", "rescale the data")
    assert "learning rate" not in err


def test_an_overcomplete_plain_code_is_warned_about_not_refused(tmp_path, table, caplog):
    with caplog.at_level("WARNING"):
        assert main(["train", "--data", str(table), *TABLE_TRAIN, "--latent-dim", "8", "--out", str(tmp_path / "a")]) == 0
    assert "latent_dim=8) is at least as wide as the input (6 features)" in caplog.text and "denoising or sparse" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # a denoising code may be wider: no warning
        assert main(["train", "--data", str(table), *TABLE_TRAIN, "--latent-dim", "8", "--model", "denoising",
                     "--out", str(tmp_path / "b")]) == 0  # fmt: skip
    assert "at least as wide" not in caplog.text
    from aekit.faces.estimator import AutoEncoderTransformer

    with pytest.warns(UserWarning, match="n_components=8: the code .* at least as wide as the input"):
        AutoEncoderTransformer(8, max_epochs=1).fit(np.random.default_rng(0).normal(size=(40, 6)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AutoEncoderTransformer(2, max_epochs=1).fit(np.random.default_rng(0).normal(size=(40, 6)))


TERM_TRAIN = [sys.executable, "-m", "aekit", "train", "--data", "digits", "--latent-dim", "4", "--hidden", "64",
              "--epochs", "20", "--batch-size", "32", "--device", DEVICE, "--no-progress"]  # fmt: skip
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every process: same arithmetic


def wait_for_epochs(run, n: int, process) -> None:
    deadline = time.time() + 120
    while len(RunDir(run).read_history()) < n and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert process.poll() is None, "training finished before the test could reach it"


def test_sigterm_saves_the_step_says_how_to_resume_and_resume_is_bit_identical(tmp_path):
    subprocess.run([*TERM_TRAIN, "--out", str(tmp_path / "full")], check=True, env=ONE_THREAD, capture_output=True)
    process = subprocess.Popen([*TERM_TRAIN, "--out", str(tmp_path / "cut")], env=ONE_THREAD, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    wait_for_epochs(tmp_path / "cut", 1, process)
    time.sleep(0.05)  # into epoch 2
    process.send_signal(signal.SIGTERM)  # what a scheduler sends before it kills the job
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]  # mid-epoch (at epoch E, step S) or, if it came during an evaluation, after one
    assert "stopped by SIGTERM " in last and f"; checkpoint saved, continue with: aekit train --resume {tmp_path / 'cut'}" \
        in last  # fmt: skip
    finish = subprocess.run([*TERM_TRAIN[:4], "--resume", str(tmp_path / "cut"), "--no-progress"], env=ONE_THREAD,
                            capture_output=True, text=True)  # fmt: skip
    assert finish.returncode == 0, finish.stderr
    full, _ = load_tensors(tmp_path / "full" / "model.safetensors")
    cut, _ = load_tensors(tmp_path / "cut" / "model.safetensors")
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)


def test_a_second_writer_is_refused_at_once_and_a_killed_holder_leaves_no_lock(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([*TERM_TRAIN[:-1], "--epochs", "5000", "--out", str(run), "--no-progress"],
                              env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for_epochs(run, 1, holder)
        second = subprocess.run([*TERM_TRAIN[:4], "--resume", str(run), "--no-progress"], capture_output=True,
                                text=True, timeout=60)  # fmt: skip
        assert second.returncode == 2
        assert f"{run} is being written by process {holder.pid} (" in second.stderr and "one writer at a time" in \
            second.stderr and len(second.stderr.strip().splitlines()) == 1  # fmt: skip
        began = time.perf_counter()  # in this process (imports done): the refusal itself, before any data is read
        assert exit_code(["train", "--overwrite", "--data", "digits", "--out", str(run), "--no-progress"]) == 2
        print(f"a second writer (--overwrite, in-process) refused in {time.perf_counter() - began:.3f} s")
        readers = subprocess.run([*TERM_TRAIN[:3], "evaluate", str(run), "--json"], capture_output=True, text=True,
                                 timeout=120)  # readers need no lock  # fmt: skip
        assert readers.returncode == 0, readers.stderr
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    resumed = subprocess.run([*TERM_TRAIN[:4], "--resume", str(run), "--epochs", "2", "--no-progress"],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr  # the kernel released the killed holder's lock


def test_a_full_disk_during_a_checkpoint_keeps_the_last_good_one(run, table, monkeypatch, capsys):
    good = (run / RunDir.CHECKPOINT).read_bytes()
    real_fsync = os.fsync

    def full_disk(fd):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(f".{RunDir.CHECKPOINT}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # the checkpoint's bytes do not fit
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    assert exit_code(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 2
    one_error_line(capsys, f"{run / RunDir.CHECKPOINT}: No space left on device")
    monkeypatch.undo()
    assert (run / RunDir.CHECKPOINT).read_bytes() == good and not list(run.glob(".*.tmp"))
    state, _ = RunDir(run).load_checkpoint(aekit.load_run(run).model, torch.optim.Adam(aekit.load_run(run).model.parameters()))
    assert state.epoch == 2


@contextlib.contextmanager
def small_filesystem(path, size: str):
    """A tmpfs of ``size`` mounted at ``path`` while the block runs, unmounted after (root only; the test skips where
    mounting is not allowed)."""
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a small file system here (needs root); the injected-ENOSPC test covers the writer")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_a_real_full_disk_loses_nothing(tmp_path, table, capsys):
    with small_filesystem(tmp_path / "disk", "2m") as disk:
        run = disk / "run"
        assert main(["train", "--data", str(table), *TABLE_TRAIN, "--out", str(run)]) == 0
        good = {name: (run / name).read_bytes() for name in RunDir.FILES}
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as handle:  # fill the disk: the next checkpoint cannot fit
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError:
                pass
        capsys.readouterr()
        assert exit_code(["train", "--resume", str(run), "--epochs", "4", "--no-progress"]) == 2
        one_error_line(capsys, "No space left on device", str(run))
        assert {name: (run / name).read_bytes() for name in RunDir.FILES} == good  # every file as it was
        assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
        filler.unlink()
        assert main(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 0  # and it goes on


def test_a_read_only_run_is_evaluated_encoded_scored_exported_and_served_but_not_trained(tmp_path, table, capsys):
    with small_filesystem(tmp_path / "store", "16m") as disk:
        run = disk / "run"
        assert main(["train", "--data", str(table), *TABLE_TRAIN, "--out", str(run)]) == 0
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        before = snapshot(run)
        out = tmp_path / "out"
        assert main(["evaluate", str(run), "--json"]) == 0
        assert main(["encode", str(run), "--input", str(table), "--out", str(out / "z.npy")]) == 0
        assert main(["score", str(run), "--input", str(table), "--out", str(out / "s.csv"), "--contamination", "0.1"]) == 0
        assert main(["export", str(run), "--out", str(out / "m.onnx"), "--part", "score"]) == 0
        from fastapi.testclient import TestClient

        from aekit.faces.serve import create_app

        assert TestClient(create_app(run, map_points=10)).post("/v1/score", json={"inputs": [[0.1] * 6]}).status_code == 200
        capsys.readouterr()
        assert exit_code(["train", "--resume", str(run), "--epochs", "3", "--no-progress"]) == 2
        one_error_line(capsys, "read-only here", "can be evaluated, encoded, scored, exported and served, not trained")
        assert snapshot(run) == before
