"""The codec: integer tables frozen at the end of training, a real entropy coder, a container that refuses what is
not its own, and the same decoded rows in any process and thread count."""

import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from cli_helpers import one_error_line

import aekit
from aekit.codec.coder import FORMAT, PRECISION, TOTAL, Tables, quantized
from aekit.faces.cli import main

pytest.importorskip("constriction", reason="needs the 'codec' extra")


@pytest.fixture(scope="module")
def codecs(tmp_path_factory):
    """Two small codec runs on the digits (8x8): the second is another model."""
    tmp = tmp_path_factory.mktemp("codec")
    for name, seed in (("run", "0"), ("other", "1")):
        assert main(["train", "--data", "digits", "--objective", "rate", "--body", "conv", "--channels", "8,16",
                     "--latent-dim", "8", "--lmbda", "0.05", "--epochs", "4", "--seed", seed, "--no-progress",
                     "--device", "cpu", "--out", str(tmp / name)]) == 0  # fmt: skip
    return tmp


def test_tables_are_integers_that_sum_to_the_coders_total():
    p = np.array([0.5, 0.25, 1e-12, 0.25 - 1e-12])
    f = quantized(p)
    assert f.sum() == TOTAL and f.min() >= 1 and f.dtype == np.int64
    np.testing.assert_allclose(f / TOTAL, p, atol=2 / TOTAL)
    codes = np.array([[0, -3], [2, 5], [1, 1]])
    tables = Tables.freeze(lambda y: torch.exp(-y.abs()), codes)  # any density: every training code is covered
    symbols, moved = tables.clip(codes)
    assert moved == 0 and all(int(f.sum()) == TOTAL for f in tables.frequencies)
    assert tables.clip(np.array([[10**6, 0]]))[1] == 1  # far outside: moved to its table's end, and counted


def test_compress_writes_what_the_model_estimated_and_decompress_gives_the_reconstructions(codecs, capsys):
    run = aekit.load_run(codecs / "run")
    x, _ = run.inputs("digits")
    payload = run.codec.compress(x)
    estimated = run.codec.rate_bits(x).sum() / 8
    assert abs(len(payload) / estimated - 1) < 0.1  # 359 rows of ~3 bytes: the ~60-byte header is 6% of it
    assert torch.equal(run.codec.decompress(payload), run.reconstruct(x))  # the rounded codes, decoded
    alone = run.codec.compress(x[:20], per_item=True)  # one stream per row
    assert torch.equal(run.codec.decompress(alone), run.reconstruct(x[:20]))
    metrics = run.metrics()
    assert metrics["rate_bits_tables"] == pytest.approx(metrics["rate_bits_estimated"], rel=0.01)
    assert metrics["pca_coding_bits"] == pytest.approx(metrics["rate_bits_tables"], rel=0.05)  # PCA at that rate


def test_the_cli_round_trip_prints_bytes_estimate_and_psnr(codecs, tmp_path, capsys):
    run = codecs / "run"
    assert main(["compress", str(run), "--input", "digits", "--out", str(tmp_path / "t.aek")]) == 0
    said = capsys.readouterr().out
    assert "bytes per row (the model estimated" in said and "PSNR" in said
    size = (tmp_path / "t.aek").stat().st_size
    assert f"in {size} bytes" in said
    for out in ("d.npy", "d.png", "folder"):
        assert main(["decompress", str(run), str(tmp_path / "t.aek"), "--out", str(tmp_path / out)]) == 0
    decoded = np.load(tmp_path / "d.npy")
    assert decoded.shape == (359, 1, 8, 8) and len(list((tmp_path / "folder").glob("*.png"))) == 359


def test_a_file_decodes_to_the_same_array_in_processes_with_one_and_two_threads(codecs, tmp_path):
    run = aekit.load_run(codecs / "run")
    x, _ = run.inputs("digits")
    (tmp_path / "t.aek").write_bytes(run.codec.compress(x))
    for threads in (1, 2):
        script = (f"import torch; torch.set_num_threads({threads}); import numpy as np, aekit; "
                  f"run = aekit.load_run({str(codecs / 'run')!r}); "
                  f"np.save({str(tmp_path / f'{threads}.npy')!r}, run.codec.decompress(open({str(tmp_path / 't.aek')!r}, "
                  "'rb').read()).numpy())")  # fmt: skip
        subprocess.run([sys.executable, "-c", script], check=True)
    np.testing.assert_array_equal(np.load(tmp_path / "1.npy"), np.load(tmp_path / "2.npy"))


def test_a_damaged_short_foreign_or_newer_file_is_refused_in_one_line(codecs, tmp_path, capsys):
    run = codecs / "run"
    assert main(["compress", str(run), "--input", "digits", "--out", str(tmp_path / "t.aek")]) == 0
    good = (tmp_path / "t.aek").read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10
    newer = bytearray(good[:-4])
    newer[4:6] = struct.pack("<H", FORMAT + 1)
    cases = {"flipped": (bytes(flipped), "damaged or cut short: its CRC-32 checksum does not match"),
             "short": (good[: len(good) // 2], "damaged or cut short"),
             "tiny": (good[:20], "cut short (20 bytes"),
             "newer": (bytes(newer) + good[-4:], f"written in format {FORMAT + 1} by a newer aekit"),
             "alien": (b"PK\x03\x04" + good[4:], "not an aekit compressed file")}  # fmt: skip
    capsys.readouterr()
    for name, (payload, message) in cases.items():
        (tmp_path / f"{name}.aek").write_bytes(payload)
        assert main(["decompress", str(run), str(tmp_path / f"{name}.aek"), "--out", str(tmp_path / "x.npy")]) == 2
        one_error_line(capsys, message)
    assert main(["decompress", str(codecs / "other"), str(tmp_path / "t.aek"), "--out", str(tmp_path / "x.npy")]) == 2
    one_error_line(capsys, "t.aek: written with another model", "decompress it with the run that compressed it")


def test_a_run_that_is_not_a_codec_says_so(tmp_path, capsys):
    assert main(["train", "--data", "digits", "--latent-dim", "3", "--hidden", "8", "--epochs", "1", "--no-progress",
                 "--device", "cpu", "--out", str(tmp_path / "plain")]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["compress", str(tmp_path / "plain"), "--input", "digits", "--out", str(tmp_path / "t.aek")]) == 2
    one_error_line(capsys, "is not a codec", "--preset codec")
    assert PRECISION == 24  # constriction's default ANS coder's, which the tables are made for


def test_the_report_and_the_explorer_show_a_digits_bytes(codecs):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aekit.faces.report import write_report
    from aekit.faces.serve import create_app

    page = write_report(codecs / "run").read_text()
    assert "id='codec'" in page and "codec:" in page and "bytes per row under its integer tables" in page
    client = TestClient(create_app(codecs / "run", map_points=20))
    run = aekit.load_run(codecs / "run")
    row = run.space.to_data(run.data().x_test[:1]).reshape(1, -1)
    probed = client.post("/v1/explore/probe", json={"inputs": row.tolist()}).json()
    assert probed["bytes"] == run.codec.item_bytes(run.data().x_test[:1])[0][0] > 0  # the drawing's own stream
    assert client.get("/v1/explore/example/0").json()["bytes"] > 0 and client.get("/v1/info").json()["is_codec"]
