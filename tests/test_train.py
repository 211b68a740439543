import json
import os
import signal
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import aekit
from aekit.analysis.evaluate import evaluate_model
from aekit.configs import TrainConfig
from aekit.errors import CheckpointError, ConfigError, TrainingDiverged
from aekit.model.autoencoder import AutoEncoder
from aekit.run import rundir as checkpoint
from aekit.run.rundir import RunCheckpoints, RunDir
from aekit.training.loop import Interrupted, learning_rate, squared_errors, train

DEVICE = os.environ.get("AEKIT_TEST_DEVICE", "cpu")  # pytest --device cuda

FAST = TrainConfig(epochs=3, batch_size=64, lr=3e-3, device=DEVICE)


def small_model(data, seed=0):
    torch.manual_seed(seed)
    return AutoEncoder(data.input_shape, latent_dim=8, hidden=(32,))


def saver(path):
    """The run directory's saver, as train_run makes it (digits need no scaler)."""
    return RunCheckpoints(RunDir(path))


def weights(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_train_step_changes_weights_and_evaluation_does_not(digits):
    model = small_model(digits)
    before = weights(model)
    evaluate_model(model, digits)
    squared_errors(model, digits.x_test)
    assert same_weights(before, weights(model))
    train(model, replace(digits, x_train=digits.x_train[:64]), replace(FAST, epochs=1), progress=False)
    after = weights(model)
    assert all(not torch.equal(before[k], after[k]) for k in before)  # every tensor moved


def test_training_learns_past_pca_on_small_data(digits):
    model = small_model(digits)
    start = float(squared_errors(model, digits.x_test).mean())
    history = train(model, digits, replace(FAST, epochs=40), progress=False)
    metrics = evaluate_model(model, digits)
    assert history[-1]["test_sse_per_image"] == pytest.approx(metrics["test_sse_per_image"], rel=1e-5)
    assert metrics["test_sse_per_image"] < 0.25 * start
    assert metrics["test_sse_per_image"] < metrics["pca_test_sse_per_image"]  # nonlinear beats PCA-8 here
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_same_seed_same_numbers(digits, tmp_path):
    runs = [aekit.train_run(tmp_path / str(i), aekit.make_config(latent_dim=4, hidden=(16,)),
                            aekit.DataConfig(name="digits"), replace(FAST, epochs=2), progress=False)
            for i in range(2)]  # fmt: skip
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(runs[0][0]) == strip(runs[1][0])
    assert runs[0][1] == runs[1][1]


def test_resume_equals_uninterrupted(digits, tmp_path):
    full = small_model(digits)
    train(full, digits, FAST, checkpoints=saver(tmp_path / "full"), progress=False)

    part = small_model(digits)
    train(part, digits, replace(FAST, epochs=1), checkpoints=saver(tmp_path / "part"), progress=False)
    resumed = small_model(digits, seed=123)  # different init: everything must come from the checkpoint
    history = train(resumed, digits, FAST, checkpoints=saver(tmp_path / "part"), resume=True, progress=False)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert same_weights(weights(full), weights(resumed))
    no_time = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert no_time(RunDir(tmp_path / "part").read_history()) == no_time(RunDir(tmp_path / "full").read_history())


def signal_at_step(monkeypatch, at_call: int) -> None:
    """Sends this process SIGINT at the given step (counted from 1 over all epochs): a Ctrl-C mid-epoch."""
    calls, schedule = [], sys.modules["aekit.training.loop"].learning_rate

    def learning_rate(*args):
        calls.append(1)
        if len(calls) == at_call:
            os.kill(os.getpid(), signal.SIGINT)
        return schedule(*args)

    monkeypatch.setattr(sys.modules["aekit.training.loop"], "learning_rate", learning_rate)


def test_ctrl_c_saves_mid_epoch_and_resume_is_exact(digits, tmp_path, monkeypatch):
    full = small_model(digits)
    full_history = train(full, digits, FAST, checkpoints=saver(tmp_path / "full"), progress=False)

    model = small_model(digits)
    signal_at_step(monkeypatch, 30)  # epoch 2 (23 steps per epoch)
    with pytest.raises(Interrupted, match="^interrupted at epoch 2, step 7$"):  # the loop names no file
        train(model, digits, FAST, checkpoints=saver(tmp_path / "cut"), progress=False)
    progress, _ = RunDir(tmp_path / "cut").load_checkpoint(small_model(digits), torch.optim.Adam(
        small_model(digits).parameters()))
    assert (progress.epoch, progress.step) == (1, 7)

    resumed = small_model(digits, seed=9)
    history = train(resumed, digits, FAST, checkpoints=saver(tmp_path / "cut"), resume=True, progress=False)
    assert same_weights(weights(full), weights(resumed))
    for a, b in zip(history, full_history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-12)


class NaNAtStep(AutoEncoder):
    def loss(self, x, kind="mse"):
        self.calls = getattr(self, "calls", 0) + 1
        loss, terms = super().loss(x, kind)
        return (loss * float("nan"), terms) if self.calls == 30 else (loss, terms)


def test_divergence_stops_with_epoch_and_step_and_keeps_last_checkpoint(digits, tmp_path):
    torch.manual_seed(0)
    model = NaNAtStep(digits.input_shape, latent_dim=8, hidden=(32,))
    with pytest.raises(TrainingDiverged, match="loss became nan at epoch 2, step 7; try a lower learning rate"):
        train(model, digits, FAST, checkpoints=saver(tmp_path / "run"), progress=False)
    progress, _ = RunDir(tmp_path / "run").load_checkpoint(small_model(digits), torch.optim.Adam(
        small_model(digits).parameters()))
    assert progress.epoch == 1
    assert len(RunDir(tmp_path / "run").read_history()) == 1


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    run = tmp_path / "run"
    aekit.train_run(run, aekit.make_config(latent_dim=2, hidden=(8,)), aekit.DataConfig(name="digits"),
                    replace(FAST, epochs=1), progress=False)  # fmt: skip
    with pytest.raises(CheckpointError, match="already holds a run; pass --resume to continue it or --overwrite"):
        aekit.train_run(run, data_config=aekit.DataConfig(name="digits"), progress=False)
    history, _ = aekit.train_run(run, resume=True, epochs=2, progress=False)
    assert [row["epoch"] for row in history] == [1, 2]
    history, _ = aekit.train_run(run, aekit.make_config(latent_dim=2, hidden=(8,)), aekit.DataConfig(name="digits"),
                                 replace(FAST, epochs=1), overwrite=True, progress=False)  # fmt: skip
    assert len(history) == 1


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": 0}, "epochs=0 must be at least 1"),
        ({"lr": -1.0}, "lr=-1.0 must be a positive number"),
        ({"loss": "l1"}, "unknown loss 'l1'"),
        ({"schedule": "linear"}, "unknown schedule 'linear'"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
    ],
)
def test_train_config_validation(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes).validate()


def test_schedules():
    config = TrainConfig(lr=1.0, schedule="cosine")
    assert learning_rate(config, 0, 100) == 1.0 and learning_rate(config, 100, 100) == pytest.approx(0)
    one = replace(config, schedule="onecycle")
    assert learning_rate(one, 0, 100) < learning_rate(one, 10, 100) == pytest.approx(1.0)
    assert learning_rate(replace(config, schedule="none"), 50, 100) == 1.0


def test_bce_training_on_standardized_data_is_refused(low_rank, tmp_path):
    with pytest.raises(ConfigError, match="loss 'bce' needs data in \\[0, 1\\]"):
        aekit.train_run(tmp_path / "r", data_config=aekit.DataConfig(name=str(low_rank)),
                        train_config=TrainConfig(loss="bce"), progress=False)  # fmt: skip


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_trains_on_cuda(digits):
    model = small_model(digits)
    history = train(model, digits, replace(FAST, epochs=1, device="cuda"), progress=False)
    assert next(model.parameters()).is_cuda and history[0]["train_loss"] > 0


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_is_bit_identical(tmp_path):
    """Kill a real training process several times at different moments; the resumed run must end identical."""
    import subprocess
    import sys
    import time

    from aekit.run.format import load_tensors

    argv = [sys.executable, "-m", "aekit", "train", "--data", "mnist", "--limit", "12000", "--latent-dim", "8",
            "--hidden", "128", "--epochs", "10", "--batch-size", "64", "--device", DEVICE, "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every process: same arithmetic
    subprocess.run([*argv, "--out", str(tmp_path / "full")], check=True, env=env, capture_output=True)

    cut = tmp_path / "cut"
    # Each round waits until the process has finished one more epoch, then kills it this long after:
    # early in the next epoch, mid-epoch, around the checkpoint write at its end.
    delays = [0.02, 0.15, 0.3, 0.08]
    finished_at_kill = []
    for i, delay in enumerate(delays):
        cmd = [*argv, "--out", str(cut)] if i == 0 else [*argv[:4], "--resume", str(cut), "--no-progress"]
        before = len(RunDir(cut).read_history())
        process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while len(RunDir(cut).read_history()) <= before and process.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        assert process.poll() is None, "training finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        finished_at_kill.append(len(RunDir(cut).read_history()))
    assert finished_at_kill == sorted(finished_at_kill) and finished_at_kill[-1] < 10, finished_at_kill
    finish = subprocess.run([*argv[:4], "--resume", str(cut), "--no-progress"], env=env, capture_output=True,
                            text=True)  # fmt: skip
    assert finish.returncode == 0, finish.stderr
    full, _ = load_tensors(tmp_path / "full" / "model.safetensors")
    resumed, _ = load_tensors(cut / "model.safetensors")
    assert full.keys() == resumed.keys()
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert [row["epoch"] for row in RunDir(cut).read_history()] == list(range(1, 11))


# ------------------------------------------------------------------------------------------ every model learns
from aekit.analysis.evaluate import holes  # noqa: E402
from aekit.model.autoencoder import build_model
from aekit.model.config import SHORTCUTS, ModelConfig, make_config

DIGITS_FIT = TrainConfig(epochs=30, batch_size=64, lr=3e-3, device=DEVICE)


def fit(data, config: ModelConfig, train_config=DIGITS_FIT):
    torch.manual_seed(0)
    model = build_model(replace(config, input_shape=data.input_shape))
    train(model, data, train_config, progress=False)
    return model


def test_linear_autoencoder_finds_the_pca_subspace(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 3)) @ rng.normal(size=(3, 20)) + 0.3 * rng.normal(size=(1000, 20))
    np.save(tmp_path / "low_rank.npy", x)
    data = aekit.data.datasets.load(aekit.DataConfig(name=str(tmp_path / "low_rank.npy")))
    model = fit(data, make_config(model="linear", latent_dim=3, output="linear"),
                TrainConfig(epochs=300, batch_size=64, lr=3e-3, device=DEVICE))  # fmt: skip
    metrics = evaluate_model(model, data)
    assert metrics["test_sse_per_image"] == pytest.approx(metrics["pca_test_sse_per_image"], rel=0.01)
    assert metrics["linear_max_principal_angle_deg"] < 5


def test_denoising_beats_the_noisy_input(digits):
    model = fit(digits, make_config(model="denoising", latent_dim=16, hidden=(64,), noise="gaussian", noise_level=0.3))
    metrics = evaluate_model(model, digits)
    assert metrics["denoise_psnr_denoised"] > metrics["denoise_psnr_noisy"] + 3  # dB


def test_sparse_codes_are_smaller_than_plain_ones(digits):
    plain = evaluate_model(fit(digits, make_config(model="mlp", latent_dim=16, hidden=(64,))), digits)
    sparse = evaluate_model(fit(digits, make_config(model="sparse", latent_dim=16, hidden=(64,), sparsity=0.01)),
                            digits)  # fmt: skip
    assert sparse["code_mean_abs"] < 0.5 * plain["code_mean_abs"]
    assert sparse["code_near_zero"] > plain["code_near_zero"]


def test_vae_latent_space_has_fewer_holes_than_a_plain_autoencoder(digits):
    bce = replace(DIGITS_FIT, loss="bce")
    vae = fit(digits, make_config(model="vae", latent_dim=8, hidden=(64,)), bce)
    plain = fit(digits, make_config(model="mlp", latent_dim=8, hidden=(64,)), bce)
    assert holes(vae, digits.x_test)["holes"] < holes(plain, digits.x_test)["holes"] - 0.1


@pytest.mark.parametrize("name", sorted(SHORTCUTS) + ["conv+vae", "conv+vq", "conv+denoising"])
def test_every_model_saves_loads_and_resumes(name, digits, tmp_path):
    body, objective = name.split("+") if "+" in name else SHORTCUTS[name]
    options = {"mlp": {"hidden": (16,)}, "conv": {"channels": (4, 8)}, "linear": {}, "tcn": {"channels": (4,)},
               "gru": {"units": 8}}[body]  # fmt: skip
    extra = {"vq": {"groups": 2}, "topk": {"k": 2}}.get(objective, {})
    data = aekit.DataConfig(name="digits")
    if body in ("tcn", "gru"):  # the sequence bodies: windows of a long series
        steps = np.arange(600)[:, None]
        np.save(tmp_path / "series.npy", np.sin(steps / 5 + np.array([0.0, 1.0])) + 0.01 * np.cos(steps * 7))
        data = aekit.DataConfig(name=str(tmp_path / "series.npy"), series=True, window=16)
    config = make_config(body=body, objective=objective, latent_dim=4, input_shape=(2, 16) if data.series else
                         (1, 28, 28), **options, **extra)  # fmt: skip
    train_config = TrainConfig(epochs=2, batch_size=128, device=DEVICE)
    _, metrics = aekit.train_run(tmp_path / "full", config, data, train_config, progress=False, analysis=False)
    aekit.train_run(tmp_path / "cut", config, data, replace(train_config, epochs=1), progress=False, analysis=False)
    _, resumed = aekit.train_run(tmp_path / "cut", resume=True, epochs=2, progress=False, analysis=False)
    assert resumed == metrics
    full, cut = aekit.load_run(tmp_path / "full"), aekit.load_run(tmp_path / "cut")
    assert (full.model_config.body.kind, full.model_config.objective.kind) == (body, objective)
    x = full.data().x_test
    with torch.no_grad():
        assert torch.equal(full.model(x), cut.model(x))
    terms = {"vae": {"train_kl", "train_recon"}, "vq": {"train_recon", "train_codebook", "train_commitment"},
             "sparse": {"train_recon", "train_l1"}}.get(objective, set())  # fmt: skip
    assert terms <= set(RunDir(tmp_path / "full").read_history()[0])
    if objective == "vq":
        assert 0 < metrics["vq_codebook_usage"] <= 1 and metrics["vq_perplexity"] >= 1


def test_vq_learns_and_uses_its_codebook(digits):
    vq = fit(digits, make_config("vq", latent_dim=16, hidden=(64,), codebook_size=32, groups=4))
    metrics = evaluate_model(vq, digits)
    mean_image_sse = float((digits.x_test - digits.x_train.mean(0)).pow(2).flatten(1).sum(1).mean())
    assert metrics["test_sse_per_image"] < 0.4 * mean_image_sse  # measured 1.28 against 4.65 (PCA-16: 0.73)
    assert metrics["vq_codebook_usage"] > 0.5 and metrics["vq_perplexity"] > 8  # measured 0.97 and 30.2 of 32


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path):
    """2 CPU processes with DDP (gloo): identical weights on both, a single-process run's result, one writer."""
    import subprocess
    import sys

    from aekit.run.format import load_tensors

    common = ["train", "--data", "digits", "--latent-dim", "4", "--hidden", "32", "--epochs", "3",
              "--batch-size", "64", "--device", "cpu", "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "aekit", *common, "--out", str(tmp_path / "one")], env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "aekit", *common, "--out", str(tmp_path / "two")], env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "all 2 processes hold identical weights" in ddp.stderr
    assert ddp.stderr.count("epoch 3/3") == 1 and ddp.stdout.count("run saved in") == 1  # rank 0 alone reports
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len(RunDir(tmp_path / "two").read_history()) == 3
    one, _ = load_tensors(tmp_path / "one" / "model.safetensors")
    two, _ = load_tensors(tmp_path / "two" / "model.safetensors")
    for name in one:  # same global batch, same examples per step: equal up to the order of float sums
        torch.testing.assert_close(two[name], one[name], rtol=1e-3, atol=1e-4)
    _, metadata = load_tensors(tmp_path / "two" / "checkpoint.safetensors")
    assert '"world": 2' in metadata["progress"]
    again = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            "-m", "aekit", *common, "--out", str(tmp_path / "two")], env=env, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert again.returncode != 0 and again.stderr.count("aekit train: error:") == 1, again.stderr[-2000:]
    assert "already holds a run; pass --resume to continue it or --overwrite to replace it" in again.stderr


def test_adam_step_is_bit_identical_to_adam(digits):
    from aekit.training.optim import AdamStep, make_optimizer

    models = [small_model(digits), small_model(digits)]
    optimizers = [make_optimizer("adam", m.parameters(), FAST.lr, 1e-4) for m in models]
    fast = AdamStep(optimizers[1])
    for step in range(5):
        xb = digits.x_train[step * 32 : (step + 1) * 32]
        for model, optimizer in zip(models, optimizers):
            optimizer.zero_grad()
            model.loss(xb)[0].backward()
        optimizers[0].step()
        fast()
        for g in optimizers:
            g.param_groups[0]["lr"] = 1e-3 * (step + 2)  # a schedule changes lr between steps
    assert fast.lists is not None or not fast.fast  # the direct kernel path was taken where torch has it
    assert same_weights(weights(models[0]), weights(models[1]))
    state = [optimizers[i].state_dict()["state"] for i in (0, 1)]
    assert all(torch.equal(state[0][k][n], state[1][k][n]) for k in state[0] for n in state[0][k])


def test_n_iter_no_change_stops_training_and_survives_resume(digits, tmp_path):
    config = replace(FAST, epochs=10, n_iter_no_change=2, tol=1e9)  # nothing counts as an improvement after epoch 1
    history = train(small_model(digits), digits, config, checkpoints=saver(tmp_path / "run"), progress=False)
    assert len(history) == 3  # epoch 1 sets the best; epochs 2 and 3 do not improve by tol
    state, _ = RunDir(tmp_path / "run").load_checkpoint(small_model(digits), torch.optim.Adam(
        small_model(digits).parameters()))  # fmt: skip
    assert (state.epoch, state.stale) == (3, 2) and state.best == min(r["test_mse_per_pixel"] for r in history)


def test_eval_every_k_epochs_leaves_the_other_rows_without_test_columns(digits):
    history = train(small_model(digits), digits, replace(FAST, epochs=5, eval_every=2), progress=False)
    assert ["test_sse_per_image" in row for row in history] == [False, True, False, True, True]  # and the last
    assert all("train_loss" in row for row in history)
    with pytest.raises(ConfigError, match="n_iter_no_change watches the test error of every epoch; it needs "
                                          "eval_every=1, not 2"):  # fmt: skip
        TrainConfig(eval_every=2, n_iter_no_change=3).validate()


def test_on_epoch_sees_each_row_after_its_checkpoint(digits, tmp_path):
    seen = []

    def on_epoch(row):
        _, metadata = checkpoint.load_tensors(tmp_path / "run" / RunDir.CHECKPOINT)
        seen.append((row, json.loads(metadata["progress"])["epoch"]))

    history = train(small_model(digits), digits, FAST, checkpoints=saver(tmp_path / "run"), progress=False, on_epoch=on_epoch)
    assert [row for row, _ in seen] == history and [epoch for _, epoch in seen] == [1, 2, 3]
    rows = []  # the same callback through train_run
    history, _ = aekit.train_run(tmp_path / "run2", aekit.make_config(latent_dim=4, hidden=(16,)),
                                 aekit.DataConfig(name="digits"), replace(FAST, epochs=2), progress=False,
                                 analysis=False, on_epoch=rows.append)  # fmt: skip
    assert rows == history and len(rows) == 2


def test_one_process_shuffles_as_distributed_sampler_does():
    from torch.utils.data.distributed import DistributedSampler

    from aekit.training.loop import epoch_order

    sampler = DistributedSampler(range(1000), num_replicas=1, rank=0, shuffle=True, seed=7)
    sampler.set_epoch(3)
    assert torch.equal(epoch_order(sampler, 1000, 7, 3, 1), torch.tensor(list(sampler)))


class MemoryCheckpoints:
    """A saver that keeps its checkpoints in memory: the loop needs no directory at all."""

    def __init__(self):
        self.saved = None  # (model state, optimizer state, RNG state, TrainState) of the last save
        self.calls = []

    def load(self, model, optimizer):
        if self.saved is None:
            return None
        model_state, optimizer_state, rng, state = self.saved
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        torch.set_rng_state(rng)
        return replace(state, history=list(state.history), sums=dict(state.sums))

    def _keep(self, kind, model, optimizer, state):
        import copy

        self.calls.append((kind, state.epoch, state.step))
        self.saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()), torch.get_rng_state(),
                      replace(state, history=list(state.history), sums=dict(state.sums)))  # fmt: skip

    def save_epoch(self, model, optimizer, state):
        self._keep("epoch", model, optimizer, state)

    def save_step(self, model, optimizer, state):
        self._keep("step", model, optimizer, state)


def test_the_loop_trains_and_resumes_with_an_in_memory_saver(digits, tmp_path, monkeypatch):
    full = small_model(digits)
    full_history = train(full, digits, FAST, progress=False)
    memory = MemoryCheckpoints()
    signal_at_step(monkeypatch, 30)  # epoch 2, step 7
    with pytest.raises(Interrupted) as stopped:
        train(small_model(digits), digits, FAST, checkpoints=memory, progress=False)
    assert (stopped.value.state.epoch, stopped.value.state.step) == (1, 7) and stopped.value.event == str(stopped.value)
    assert memory.calls == [("epoch", 1, 0), ("step", 1, 7)]
    monkeypatch.undo()
    resumed = small_model(digits, seed=5)
    history = train(resumed, digits, FAST, checkpoints=memory, resume=True, progress=False)
    assert same_weights(weights(full), weights(resumed)) and memory.calls[-1] == ("epoch", 3, 0)
    assert [r["train_loss"] for r in history] == pytest.approx([r["train_loss"] for r in full_history], rel=1e-12)
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere


def test_divergence_names_no_file_in_the_loop_and_the_run_directory_in_the_runs_layer(digits, tmp_path):
    with pytest.raises(TrainingDiverged) as diverged:
        train(NaNAtStep(digits.input_shape, latent_dim=8, hidden=(32,)), digits, FAST, progress=False)
    assert (diverged.value.epoch, diverged.value.step, diverged.value.lr) == (2, 7, FAST.lr)
    assert str(diverged.value) == diverged.value.event and "checkpoint" not in str(diverged.value)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_every_registered_optimizer_learns_and_resumes_exactly(digits, tmp_path, optimizer):
    from aekit.training.optim import OPTIMIZERS

    assert optimizer in OPTIMIZERS
    config = replace(FAST, optimizer=optimizer, lr=0.5 if optimizer == "sgd" else FAST.lr, weight_decay=1e-4)
    full = small_model(digits)
    start = float(squared_errors(full, digits.x_test).mean())
    history = train(full, digits, config, checkpoints=saver(tmp_path / "full"), progress=False)
    assert history[-1]["test_sse_per_image"] < 0.7 * start  # it learns
    part = small_model(digits)
    train(part, digits, replace(config, epochs=1), checkpoints=saver(tmp_path / "part"), progress=False)
    resumed = small_model(digits, seed=77)
    train(resumed, digits, config, checkpoints=saver(tmp_path / "part"), resume=True, progress=False)
    assert same_weights(weights(full), weights(resumed))


def test_an_unknown_optimizer_is_refused_naming_the_registry():
    with pytest.raises(ConfigError, match=r"unknown optimizer 'lbfgs'; choose one of \['adam', 'adamw', 'sgd'\]"):
        TrainConfig(optimizer="lbfgs").validate()


@pytest.mark.skipif(__import__("aekit.training.precision").training.precision.bf16_missing(torch.device("cpu")) is not None,
                    reason="this CPU has no bf16 matrix instructions: --precision bf16 is refused here")  # fmt: skip
def test_a_bf16_run_learns_keeps_fp32_checkpoints_and_resumes_bit_identically(digits, tmp_path):
    from aekit.run.format import load_tensors

    config = replace(FAST, precision="bf16")
    wide = lambda seed=0: (torch.manual_seed(seed), AutoEncoder(digits.input_shape, latent_dim=8, hidden=(256,)))[1]  # noqa: E731
    full = wide()
    history = train(full, digits, config, checkpoints=saver(tmp_path / "full"), progress=False)
    fp32 = train(wide(), digits, FAST, progress=False)
    assert history[-1]["test_sse_per_image"] == pytest.approx(fp32[-1]["test_sse_per_image"], rel=0.05)
    tensors, _ = load_tensors(tmp_path / "full" / RunDir.CHECKPOINT)
    assert all(t.dtype != torch.bfloat16 for t in tensors.values())  # weights and Adam's moments stay fp32
    train(wide(), digits, replace(config, epochs=1), checkpoints=saver(tmp_path / "part"), progress=False)
    resumed = wide(seed=3)
    train(resumed, digits, config, checkpoints=saver(tmp_path / "part"), resume=True, progress=False)
    assert same_weights(weights(full), weights(resumed))
