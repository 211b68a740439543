"""The training step recorded as a CUDA graph (aekit.training.graphs): on a CPU its bookkeeping, with a recording that
replays eagerly; on a GPU (pytest --device cuda) the real graph, against the eager step."""

import logging
import os
import sys
from dataclasses import replace

import pytest
import torch

from aekit.configs import TrainConfig
from aekit.model.autoencoder import AutoEncoder
from aekit.model.parts import Denoising
from aekit.run.rundir import RunCheckpoints, RunDir
from aekit.training import graphs
from aekit.training.loop import train

DEVICE = os.environ.get("AEKIT_TEST_DEVICE", "cpu")  # pytest --device cuda
train_module = sys.modules["aekit.training.loop"]  # the module (aekit.training.loop is also the function)
# 1,437 training rows in batches of 64: 22 full batches and a short one of 29 every epoch; a schedule that moves lr
CONFIG = TrainConfig(epochs=3, batch_size=64, lr=3e-3, schedule="cosine", device=DEVICE)


def model_of(data, seed=0, **options):
    torch.manual_seed(seed)
    return AutoEncoder(data.input_shape, latent_dim=8, hidden=(32,), **options)


def state(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def recorded(monkeypatch):
    """On a CPU, record the step by keeping it (each replay runs it eagerly); count the recordings and replays."""
    counts = {"recorded": 0, "replays": 0}
    if DEVICE == "cuda":
        return counts

    def capture(record):
        counts["recorded"] += 1

        def replay():
            counts["replays"] += 1
            record()

        return replay

    monkeypatch.setattr(train_module, "GRAPHED_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(graphs, "cuda_capture", capture)
    return counts


def eager_run(data, config, monkeypatch):
    """An eager run (``--gradients eager``) with the learning rate rounded to float32, as a graphed run reads it."""
    with monkeypatch.context() as patch:
        schedule = train_module.learning_rate
        patch.setattr(train_module, "learning_rate", lambda *a: float(torch.tensor(schedule(*a), dtype=torch.float32)))
        model = model_of(data)
        history = train(model, data, replace(config, gradients="eager"), progress=False)
    return model, history


def test_a_graphed_run_ends_with_the_eager_runs_weights_and_history(digits, recorded, monkeypatch, caplog):
    eager, eager_history = eager_run(digits, CONFIG, monkeypatch)
    graphed = model_of(digits)
    with caplog.at_level(logging.INFO, logger="aekit"):
        history = train(graphed, digits, CONFIG, progress=False)
    assert "replayed as a CUDA graph (batches of 64 rows; others run eagerly)" in caplog.text
    assert same(state(eager), state(graphed))  # the recorded step is the eager one, on the same numbers
    assert [r["train_loss"] for r in history] == [r["train_loss"] for r in eager_history]  # the cloned losses
    if DEVICE != "cuda":  # 3 epochs of 22 full batches: 3 eager warm-up steps, 63 replays; the short ones eager
        assert recorded == {"recorded": 1, "replays": 3 * 22 - graphs.WARMUP}


def test_a_graphed_run_resumes_to_the_uninterrupted_runs_weights(digits, recorded, tmp_path):
    config = replace(CONFIG, schedule="none")  # a cosine's steps depend on the epochs asked for: 1 here, then 3
    full = model_of(digits)
    train(full, digits, config, progress=False)
    train(model_of(digits), digits, replace(config, epochs=1), checkpoints=RunCheckpoints(RunDir(tmp_path)),
          progress=False)  # fmt: skip
    resumed = model_of(digits, seed=5)  # the checkpoint's weights replace these; warms up and records anew
    train(resumed, digits, config, checkpoints=RunCheckpoints(RunDir(tmp_path)), resume=True, progress=False)
    assert same(state(full), state(resumed))


@pytest.mark.skipif(DEVICE == "cuda", reason="makes the recording fail, which a CPU run can do without a GPU")
def test_a_recording_that_fails_leaves_the_step_eager_with_a_warning(digits, recorded, monkeypatch, caplog):
    def broken(record):
        raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(graphs, "cuda_capture", broken)
    eager, _ = eager_run(digits, CONFIG, monkeypatch)
    graphed = model_of(digits)
    with caplog.at_level(logging.WARNING, logger="aekit"):
        train(graphed, digits, CONFIG, progress=False)
    assert same(state(eager), state(graphed))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["training step: recording it as a CUDA graph failed (operation not permitted when stream is "
                        "capturing); it runs eagerly"]  # fmt: skip


@pytest.mark.parametrize("why", ["eager", "autograd", "clip_grad", "denoising", "sgd"])
def test_steps_a_graph_would_get_wrong_are_not_recorded(digits, recorded, why):
    config = {"eager": replace(CONFIG, gradients="eager"), "autograd": replace(CONFIG, gradients="autograd"),
              "clip_grad": replace(CONFIG, clip_grad=1.0), "sgd": replace(CONFIG, optimizer="sgd", lr=0.1),
              }.get(why, CONFIG)  # fmt: skip
    options = {"objective": Denoising(noise_level=0.2)} if why == "denoising" else {}  # random draws in the step
    train(model_of(digits, **options), digits, replace(config, epochs=1), progress=False)
    if DEVICE != "cuda":
        assert recorded == {"recorded": 0, "replays": 0}
