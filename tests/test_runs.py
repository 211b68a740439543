"""The Run API the entry points call: inputs and chunks, inference, the one anomaly score, thresholds, and the
sentences the runs layer adds to the loop's exceptions."""

from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit import runs
from aekit.checkpoint import RunDir
from aekit.errors import ConfigError, TrainingDiverged
from aekit.train import Interrupted, TrainConfig, TrainState


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


def test_the_score_is_the_models_anomaly_score_and_the_threshold_flags_its_share(run):
    x, _ = run.inputs("digits")
    with torch.no_grad():
        expected = run.model.anomaly_score(x).numpy()
    np.testing.assert_allclose(run.score(x), expected, rtol=1e-5, atol=1e-9)
    threshold = run.threshold(0.1)
    train_scores = run.score(run.data().x_train)
    assert (train_scores > threshold).mean() == pytest.approx(0.1, abs=0.01)
    with pytest.raises(ConfigError, match="must be a share below 1"):
        run.threshold(1.5)


def test_decode_and_reconstruct_give_the_datas_units(run):
    x, _ = run.inputs("digits")
    assert run.reconstruct(x[:5]).shape == (5, 1, 8, 8) and run.encode(x[:5]).shape == (5, 4)
    torch.testing.assert_close(run.decode(run.encode(x[:5])), run.reconstruct(x[:5]))
    assert not run.model.training  # batched inference leaves the model's mode as it was


def test_the_runs_layer_names_the_files_the_loop_does_not(tmp_path):
    target = RunDir(tmp_path)
    state = TrainState(epoch=1, step=7)
    told = runs.explained(Interrupted(state), Path("runs/x"), target, discarded=False)
    assert str(told) == "interrupted at epoch 2, step 7; checkpoint saved, continue with: aekit train --resume runs/x"
    kept = runs.explained(TrainingDiverged(float("nan"), 2, 7, 1e-3), Path("runs/x"), target, discarded=True)
    assert str(kept).endswith("; the unfinished replacement was discarded and runs/x keeps its previous run")
    (tmp_path / RunDir.CHECKPOINT).write_bytes(b"")
    where = runs.explained(TrainingDiverged(float("nan"), 2, 7, 1e-3), Path("runs/x"), target, discarded=False)
    assert str(where) == (f"loss became nan at epoch 2, step 7; try a lower learning rate than 0.001 or --clip-grad "
                          f"(last good checkpoint: {tmp_path / RunDir.CHECKPOINT})")  # fmt: skip
    assert str(Interrupted(TrainState(epoch=3))) == "interrupted after epoch 3"
