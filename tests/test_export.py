import subprocess
import sys

import numpy as np
import pytest
import torch
from cli_helpers import one_error_line

from aekit.core.export import Exported, export_onnx
from aekit.core.fitted import Fitted
from aekit.core.space import Space
from aekit.faces.cli import main
from aekit.model.autoencoder import build_model
from aekit.model.config import SHORTCUTS, make_config
from aekit.run.runs import load_run

ort = pytest.importorskip("onnxruntime", reason="needs the 'onnx' extra")

OPTIONS = {"vq": {"codebook_size": 16, "groups": 4}, "sae": {"k": 2}}


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]


@pytest.mark.parametrize("name", sorted(SHORTCUTS))
@pytest.mark.parametrize("part", ["encoder", "autoencoder"])
def test_every_model_kind_exports_and_matches_torch(name, part, tmp_path):
    torch.manual_seed(0)
    shape = (2, 16) if SHORTCUTS[name][0] in ("tcn", "gru") else (1, 12, 10)  # sequences (C, L), images
    model = build_model(make_config(name, input_shape=shape, latent_dim=8, **OPTIONS.get(name, {}))).eval()
    fitted = Fitted(model, Space(model.input_shape))
    path = export_onnx(fitted, tmp_path / f"{name}.onnx", part)
    module = Exported(fitted, part)
    for batch in (1, 300):  # a dynamic batch axis, not the example's 2
        x = module.example(batch)
        with torch.no_grad():
            want = module(x).numpy()
        got = run_onnx(path, x.numpy())
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if part == "encoder" and name == "vae":  # its mean path: deterministic, equal to encode()
        with torch.no_grad():
            np.testing.assert_allclose(run_onnx(path, x.numpy()), model.encode(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.fixture
def standardized_run(tmp_path, capsys):
    table = tmp_path / "table.npy"
    np.save(table, (np.random.default_rng(0).normal(size=(120, 6)) * [1, 10, 100, 0.1, 5, 3] + 40).astype(np.float32))
    run = tmp_path / "run"
    assert main(["train", "--data", str(table), "--latent-dim", "2", "--hidden", "8", "--epochs", "2",
                 "--batch-size", "16", "--no-progress", "--device", "cpu", "--out", str(run)]) == 0  # fmt: skip
    capsys.readouterr()
    return run, table


def test_raw_rows_go_in_for_a_standardized_run(standardized_run, tmp_path, capsys):
    run_path, table = standardized_run
    raw = np.load(table)
    run = load_run(run_path)
    assert run.space.scaler is not None
    for part in ("autoencoder", "score", "encoder", "decoder"):
        out = tmp_path / f"{part}.onnx"
        assert main(["export", str(run_path), "--out", str(out), "--part", part]) == 0
        assert f"wrote {out}" in capsys.readouterr().out
    x = run.space.to_model(raw)
    with torch.no_grad():
        recon = run.space.scaler.inverse_transform(run.model(x)).numpy()
        scores = ((run.model(x) - x) ** 2).mean(1).numpy()
        codes = run.model.encode(x).numpy()
    np.testing.assert_allclose(run_onnx(tmp_path / "autoencoder.onnx", raw), recon, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(run_onnx(tmp_path / "encoder.onnx", raw), codes, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run_onnx(tmp_path / "decoder.onnx", codes), recon, rtol=1e-5, atol=1e-4)
    # the score graph gives the numbers `aekit score` writes
    assert main(["score", str(run_path), "--input", str(table), "--out", str(tmp_path / "scores.csv")]) == 0
    written = np.loadtxt(tmp_path / "scores.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(run_onnx(tmp_path / "score.onnx", raw), scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run_onnx(tmp_path / "score.onnx", raw), written, rtol=1e-5, atol=1e-6)


def test_an_exported_file_runs_in_a_process_without_aekit_or_torch(standardized_run, tmp_path):
    run_path, table = standardized_run
    out = tmp_path / "score.onnx"
    assert main(["export", str(run_path), "--out", str(out), "--part", "score"]) == 0
    script = (
        "import sys\n"
        "sys.modules['aekit'] = None; sys.modules['torch'] = None  # importing either would fail\n"
        "import numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(out)!r}, providers=['CPUExecutionProvider'])\n"
        f"x = np.load({str(table)!r}).astype(np.float32)\n"
        "print(s.run(None, {'x': x})[0].shape)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(120,)"


def test_export_errors_are_one_line(standardized_run, tmp_path, capsys):
    run_path, _ = standardized_run
    assert main(["export", str(run_path), "--out", str(tmp_path / "model.txt")]) == 2
    one_error_line(capsys, "must end in .onnx")
    assert main(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.onnx")]) == 2
    one_error_line(capsys, "no such run directory")


def test_a_missing_extra_is_named(standardized_run, tmp_path, capsys, monkeypatch):
    run_path, _ = standardized_run
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert main(["export", str(run_path), "--out", str(tmp_path / "m.onnx")]) == 2
    one_error_line(capsys, "needs the 'onnx' extra: pip install 'aekit[onnx]'")
