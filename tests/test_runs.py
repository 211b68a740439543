"""The Run API the entry points call: inputs and chunks, inference, the one anomaly score, thresholds, and the
sentences the runs layer adds to the loop's exceptions."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.configs import TrainConfig
from aekit.errors import ConfigError, TrainingDiverged
from aekit.run import runs, training
from aekit.run.rundir import RunDir
from aekit.training.loop import Interrupted, TrainState


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("runs") / "run"
    aekit.train_run(path, aekit.make_config(latent_dim=4, hidden=(16,)), aekit.DataConfig(name="digits"),
                    TrainConfig(epochs=3, batch_size=64, lr=3e-3, device="cpu"), progress=False, analysis=False)
    return aekit.load_run(path)


def test_chunks_give_the_inputs_chunk_by_chunk(run, monkeypatch, tmp_path):
    x, _ = run.inputs("digits")
    monkeypatch.setattr(runs, "INFER_CHUNK_ROWS", 100)
    n, chunks = run.chunks("digits")
    parts = list(chunks)
    assert n == len(x) and [len(p) for p in parts] == [100, 100, 100, 59] and torch.equal(torch.cat(parts), x)
    np.save(tmp_path / "x.npy", x.numpy())  # a chunked source: read by the registry's opener
    n, chunks = run.chunks(str(tmp_path / "x.npy"))
    assert n == len(x) and torch.equal(torch.cat(list(chunks)), x)


def test_the_score_is_the_mean_squared_error_and_the_threshold_flags_its_share(run):
    x, _ = run.inputs("digits")
    with torch.no_grad():
        expected = (run.model(x) - x).flatten(1).square().mean(1).numpy()
    scores = run.score(x)
    assert isinstance(scores, torch.Tensor) and isinstance(run.encode(x), torch.Tensor)  # the handle's outputs alike
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-9)
    train_scores = run.score(run.data().x_train).numpy()
    threshold = run.fitted.threshold(train_scores, 0.1)
    assert (train_scores > threshold).mean() == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ConfigError, match="must be a share below 1"):
        run.fitted.threshold(train_scores, 1.5)


def test_decode_and_reconstruct_give_the_datas_units(run):
    x, _ = run.inputs("digits")
    assert run.reconstruct(x[:5]).shape == (5, 1, 8, 8) and run.encode(x[:5]).shape == (5, 4)
    torch.testing.assert_close(run.decode(run.encode(x[:5])), run.reconstruct(x[:5]))
    assert not run.model.training  # batched inference leaves the model's mode as it was


def test_the_runs_layer_names_the_files_the_loop_does_not(tmp_path):
    target = RunDir(tmp_path)
    state = TrainState(epoch=1, step=7)
    told = training.explained(Interrupted(state), Path("runs/x"), target, discarded=False)
    assert str(told) == "interrupted at epoch 2, step 7; checkpoint saved, continue with: aekit train --resume runs/x"
    kept = training.explained(TrainingDiverged(float("nan"), 2, 7, 1e-3), Path("runs/x"), target, discarded=True)
    assert str(kept).endswith("; the unfinished replacement was discarded and runs/x keeps its previous run")
    (tmp_path / RunDir.CHECKPOINT).write_bytes(b"")
    where = training.explained(TrainingDiverged(float("nan"), 2, 7, 1e-3), Path("runs/x"), target, discarded=False)
    assert str(where) == (f"loss became nan at epoch 2, step 7; try a lower learning rate than 0.001 or --clip-grad "
                          f"(last good checkpoint: {tmp_path / RunDir.CHECKPOINT})")  # fmt: skip
    assert str(Interrupted(TrainState(epoch=3))) == "interrupted after epoch 3"


@pytest.mark.parametrize("latent", [False, True])
def test_one_score_everywhere_estimator_cli_http_and_onnx(tmp_path, latent, capsys):
    """For one trained model: the detector, aekit score, /v1/score and onnxruntime on the exported score graph."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("fastapi")
    import onnxruntime
    from fastapi.testclient import TestClient

    from aekit.faces.cli import main
    from aekit.faces.estimator import AutoEncoderOutlierDetector
    from aekit.faces.serve import create_app

    rng = np.random.default_rng(0)
    table = rng.normal(size=(300, 2)) @ rng.normal(size=(2, 6)) * 3 + 10 + 0.1 * rng.normal(size=(300, 6))
    np.save(tmp_path / "table.npy", table.astype(np.float32))
    rows = np.concatenate([table[:40], table[40:50] + rng.normal(size=(10, 6)) * 5]).astype(np.float32)  # and odd ones
    np.save(tmp_path / "rows.npy", rows)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "table.npy"), "--latent-dim", "2", "--hidden", "16", "--epochs", "5",
                 "--device", "cpu", "--out", str(run), "--no-progress", *(["--latent-distance"] if latent else [])]) == 0
    assert (run / RunDir.SCORE).is_file() == latent
    expected = -AutoEncoderOutlierDetector.from_run(run).score_samples(rows)
    assert main(["score", str(run), "--input", str(tmp_path / "rows.npy"), "--out", str(tmp_path / "s.npy")]) == 0
    cli = np.load(tmp_path / "s.npy")
    http = TestClient(create_app(run, map_points=20)).post("/v1/score", json={"inputs": rows.tolist()}).json()["scores"]
    assert main(["export", str(run), "--out", str(tmp_path / "score.onnx"), "--part", "score"]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "score.onnx"), providers=["CPUExecutionProvider"])
    onnx = session.run(None, {"x": rows})[0]
    for name, got in (("aekit score", cli), ("/v1/score", http), ("onnxruntime", onnx)):
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), expected, atol=1e-5, rtol=1e-5, err_msg=name)
    assert expected[40:].mean() > expected[:40].mean()  # the odd rows score higher


def test_fit_score_adds_the_latent_distance_to_an_existing_run(run, tmp_path, capsys):
    from aekit.faces.cli import main

    path = tmp_path / "copy"
    import shutil

    shutil.copytree(run.path, path)
    x, _ = run.inputs("digits")
    before = aekit.load_run(path).score(x[:20])
    assert main(["fit-score", str(path)]) == 0
    assert "stored the anomaly score" in capsys.readouterr().out
    loaded = aekit.load_run(path)
    after = loaded.score(x[:20])
    assert loaded.fitted.score_spec.latent and not np.allclose(before, after)
    errors = before.double()
    distances = loaded.fitted.score_spec.distances(loaded.encode(x[:20]).double())
    np.testing.assert_allclose(after, loaded.fitted.score_spec.combine(errors, distances).numpy(), rtol=1e-5, atol=1e-5)
    stored = (path / RunDir.SCORE).read_bytes()
    assert main(["train", "--resume", str(path), "--epochs", "4", "--no-progress"]) == 0  # the model moves on:
    assert (path / RunDir.SCORE).read_bytes() != stored  # so does its stored score


def test_a_run_finds_its_data_from_another_directory_and_so_does_an_earlier_runs_relative_path(tmp_path, monkeypatch):
    """--data t.npy is stored as an absolute path; a run made before kept it as typed, and is looked for from the
    run's directory and the three above it, never further up (where an unrelated t.npy lies)."""
    project = tmp_path / "home" / "me" / "project"
    project.mkdir(parents=True)
    np.save(tmp_path / "t.npy", np.zeros((10, 1, 28, 28), dtype=np.float32))  # four folders above the run: not its data
    np.save(project / "t.npy", np.random.default_rng(0).random((200, 6), dtype=np.float32))
    monkeypatch.chdir(project)
    aekit.train_run("runs/a", aekit.make_config(latent_dim=2, hidden=(8,)), aekit.DataConfig(name="t.npy"),
                    TrainConfig(epochs=1, batch_size=64, device="cpu"), progress=False, analysis=False)  # fmt: skip
    config = json.loads((project / "runs" / "a" / "config.json").read_text())
    assert config["data"]["name"] == str(project / "t.npy")
    monkeypatch.chdir(tmp_path / "home")  # elsewhere: the run still loads its data
    want = aekit.load_run(project / "runs" / "a").data().x_test
    config["data"]["name"] = "t.npy"  # as an earlier release wrote it: relative to where it was trained
    (project / "runs" / "a" / "config.json").write_text(json.dumps(config))
    run = aekit.load_run(project / "runs" / "a")
    assert run.data_config.name == str(project / "t.npy") and torch.equal(run.data().x_test, want)
    (project / "t.npy").unlink()  # nowhere to be found: the error names the path as stored
    with pytest.raises(aekit.DataError, match=r"^t\.npy: no such file or folder$"):
        aekit.load_run(project / "runs" / "a").data()


def test_fit_score_stores_every_option_of_the_detectors_score(run, tmp_path, capsys):
    import shutil

    from cli_helpers import one_error_line

    from aekit.faces.cli import main
    from aekit.faces.estimator import AutoEncoderOutlierDetector

    path = tmp_path / "copy"
    shutil.copytree(run.path, path)
    x, _ = run.inputs("digits")
    assert main(["fit-score", str(path), "--error-blur", "3", "--code-neighbors", "5"]) == 0
    assert "mean distance to the 5 nearest training codes" in capsys.readouterr().out
    loaded = aekit.load_run(path)
    assert (loaded.fitted.score_spec.blur, loaded.fitted.score_spec.latent, loaded.fitted.score_spec.neighbors) == (3, True, 5)
    detector = AutoEncoderOutlierDetector.from_run(path)  # the same options, and the same numbers
    assert (detector.error_blur, detector.code_neighbors) == (3, 5)
    rows = loaded.space.to_data(x[:30]).reshape(30, -1).numpy()
    np.testing.assert_allclose(loaded.score(x[:30]), -detector.score_samples(rows), rtol=1e-6, atol=1e-9)
    assert main(["fit-score", str(path), "--no-latent-distance", "--error-blur", "3"]) == 0
    assert aekit.load_run(path).fitted.score_spec.describe() == "mean squared reconstruction error of the residual blurred " \
                                                          "over 3x3"  # fmt: skip
    capsys.readouterr()
    for flags, message in ((["--error-blur", "2"], "error_blur=2 must be an odd positive integer"),
                           (["--code-neighbors", "3", "--no-latent-distance"], "code_neighbors=3 is a kind of latent "
                            "distance")):  # fmt: skip
        assert main(["fit-score", str(path), *flags]) == 2
        one_error_line(capsys, message)
