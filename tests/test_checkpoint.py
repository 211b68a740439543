import json
import os
import pickle
import shutil
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.configs import DataConfig, TrainConfig
from aekit.core.fitted import encode
from aekit.errors import CheckpointError, ConfigError
from aekit.faces.cli import main
from aekit.model.config import ModelConfig, make_config
from aekit.run import format as checkpoint
from aekit.run.rundir import RunDir
from aekit.run.training import RUN_SCHEMA

DEVICE = os.environ.get("AEKIT_TEST_DEVICE", "cpu")  # pytest --device cuda

TINY = TrainConfig(epochs=1, batch_size=64, device=DEVICE)


@pytest.fixture
def run(tmp_path):
    path = tmp_path / "run"
    aekit.train_run(path, make_config(latent_dim=3, hidden=(16,)), DataConfig(name="digits"), TINY, progress=False)
    return path


def test_save_load_gives_identical_outputs(run, digits):
    loaded = aekit.load_run(run)
    again = aekit.load_run(run)
    with torch.no_grad():
        assert torch.equal(loaded.model(digits.x_test), again.model(digits.x_test))
    tensors, metadata = checkpoint.load_tensors(run / RunDir.CHECKPOINT)
    fresh = aekit.build_model(loaded.model_config)
    fresh.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    with torch.no_grad():
        assert torch.equal(fresh.eval()(digits.x_test), loaded.model(digits.x_test))
    assert loaded.model_config == make_config(latent_dim=3, hidden=(16,), input_shape=(1, 8, 8))
    assert loaded.train_config == TINY and loaded.data_config == DataConfig(name="digits")


def test_run_directory_layout(run):
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [RunDir.CONFIG, RunDir.MODEL, RunDir.CHECKPOINT, RunDir.HISTORY, RunDir.METRICS]
    )
    history = RunDir(run).read_history()
    assert list(history[0]) == checkpoint.HISTORY_COLUMNS
    metrics = json.loads((run / RunDir.METRICS).read_text())
    for name in ("test_mse_per_pixel", "test_sse_per_image", "test_bce_per_pixel", "psnr"):
        assert name in metrics and f"pca_{name}" in metrics


def test_a_run_tested_every_other_epoch_reads_back_and_draws_its_curves(tmp_path):
    path = tmp_path / "run"
    aekit.train_run(path, make_config(latent_dim=3, hidden=(16,)), DataConfig(name="digits"),
                    replace(TINY, epochs=3, eval_every=2), progress=False)  # fmt: skip
    history = RunDir(path).read_history()
    both = list(checkpoint.TEST_COLUMNS)
    assert [[k for k in both if k in row] for row in history] == [[], both, both]  # epoch 1 was not tested
    assert main(["plot", str(path), "curves", "--out", str(tmp_path / "figures")]) == 0
    assert (tmp_path / "figures" / "curves.png").is_file()


def test_standardized_data_keeps_its_scaler(low_rank, tmp_path):
    path = tmp_path / "tab"
    aekit.train_run(path, make_config(latent_dim=3, hidden=(16,)), DataConfig(name=str(low_rank)), TINY,
                    progress=False)  # fmt: skip
    loaded = aekit.load_run(path)
    raw = np.load(low_rank)
    assert loaded.space.scaler is not None and loaded.model_config.output == "linear"
    assert np.allclose(loaded.space.scaler.mean.numpy(), raw[np.random.default_rng(0).permutation(400)[80:]].mean(0),
                       atol=1e-4)  # fmt: skip


def test_pickle_in_place_of_weights_is_refused_without_running_it(run, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in (RunDir.MODEL, RunDir.CHECKPOINT):
        (run / name).write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError, match="model.safetensors: not a valid safetensors file"):
        aekit.load_run(run)
    with pytest.raises(CheckpointError, match="checkpoint.safetensors: not a valid safetensors file"):
        aekit.train_run(run, resume=True, progress=False)
    assert not marker.exists()


def test_tensors_that_do_not_match_the_config_are_refused(run):
    config = json.loads((run / RunDir.CONFIG).read_text())
    config["model"]["latent_dim"] = 4
    (run / RunDir.CONFIG).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="tensor 'encoder.2.weight' is torch.float32 \\(3, 16\\) but the config needs"):
        aekit.load_run(run)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["model"].update(depth=3), "config.json:model: unknown field\\(s\\) \\['depth'\\]"),
        (lambda c: c["model"].update(latent_dim="3"), "config.json:model.latent_dim: '3' is not a valid int"),
        (lambda c: c["train"].update(lr=None), "config.json:train.lr: None is not a valid float"),
        (lambda c: c["model"]["body"].update(hidden=[16, "x"]), "config.json:model.body.hidden: 'x' is not a valid int"),
        (lambda c: c["model"]["body"].update(beta=2.0), "config.json:model.body: unknown field\\(s\\) \\['beta'\\]"),
        (lambda c: c["model"]["body"].update(kind="rnn"), "config.json:model.body: kind 'rnn' is not one of \\['conv'"),
        (lambda c: c["model"].update(objective="vae"), "config.json:model.objective: kind 'vae' is not one of"),
        (lambda c: c.update(extra={}), "unknown section\\(s\\) \\['extra'\\]"),
        (lambda c: c.update(format="other"), "not an aekit run config"),
    ],
)
def test_bad_config_json_is_refused(run, edit, message):
    config = json.loads((run / RunDir.CONFIG).read_text())
    edit(config)
    (run / RunDir.CONFIG).write_text(json.dumps(config))
    with pytest.raises((ConfigError, CheckpointError), match=message):
        aekit.load_run(run)


@pytest.mark.parametrize("model", sorted(aekit.SHORTCUTS) + ["conv+vae", "linear+vq"])
def test_config_round_trip_through_json(model):
    body, objective = model.split("+") if "+" in model else aekit.SHORTCUTS[model]
    shape = (2, 16) if body in ("tcn", "gru") else (1, 8, 8)  # sequences (C, L), images
    configs = {"model": make_config(body=body, objective=objective, input_shape=shape),
               "data": DataConfig(image_size=(5, 6)), "train": TrainConfig(clip_grad=1.0)}  # fmt: skip
    for name, cls in RUN_SCHEMA.items():
        raw = json.loads(json.dumps(checkpoint.config_to_dict(configs[name])))
        assert checkpoint.config_from_dict(cls, raw) == configs[name]
    stored = checkpoint.config_to_dict(configs["model"])
    assert stored["body"]["kind"] == body and stored["objective"]["kind"] == objective
    assert set(stored["body"]) == {"kind"} | {f.name for f in fields(aekit.BODIES[body])}  # only what applies


def test_config_json_is_version_2_and_holds_only_what_applies(run):
    raw = json.loads((run / RunDir.CONFIG).read_text())
    assert raw["format"] == "aekit-run/2"
    assert raw["model"] == {"input_shape": [1, 8, 8], "latent_dim": 3, "output": "sigmoid",
                            "body": {"kind": "mlp", "hidden": [16], "activation": "relu"},
                            "objective": {"kind": "plain"}}  # fmt: skip


# ------------------------------------------------------------------------------------------ version-1 runs
FIXTURES = Path(__file__).parent / "data"
V1_RUNS = ["v1-mlp", "v1-conv-vae", "v1-denoising", "v1-linear"]


@pytest.mark.parametrize("name", V1_RUNS)
def test_version_1_run_evaluates_to_the_same_metrics(name, tmp_path):
    """Runs written by aekit 0.1.0 (committed with the metrics and codes that version computed) still load,
    evaluate to the same numbers, encode to the same codes, and keep their weights' names."""
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    before = json.loads((run / RunDir.METRICS).read_text())
    assert json.loads((run / RunDir.CONFIG).read_text())["format"] == "aekit-run/1"
    metrics = aekit.evaluate_run(run, device="cpu", write=False)  # the numbers 0.1.0 stored were a CPU's
    assert set(metrics) - set(before) == {"pca_components", "features", "image_data"}  # what later releases add
    for key, value in before.items():
        # another CPU (AVX-512 or not) or torch release sums in another order: reconstruction metrics agree to
        # float32 rounding; the holes measure and the probes are classifier accuracies on 1000-2000 points (a
        # VAE's holes also draw codes), within a few points
        close = pytest.approx(value, abs=0.05) if key.startswith(("holes", "probe_")) else pytest.approx(value, rel=1e-5)
        assert metrics[key] == close, key
    loaded = aekit.load_run(run)
    codes = encode(loaded.model, loaded.data().x_test[:10]).numpy()
    np.testing.assert_allclose(codes, np.load(run / "expected-codes.npy"), rtol=1e-5, atol=1e-6)


V2_RUNS = ["v2-618f972-table", "v2-618f972-digits"]


@pytest.mark.parametrize("name", V2_RUNS)
def test_a_run_written_by_the_previous_release_gives_its_recorded_numbers(name, tmp_path, capsys):
    """Runs written by aekit at 618f972 (tests/data/make_v2_fixtures.py: a standardized table with its latent-distance
    score, digits with a gaussian prior), with the codes, scores and reconstructions that release wrote: loaded,
    encoded, scored and reconstructed now, through the CLI, they give the same numbers; the table evaluates to its
    metrics, the prior still samples and the run still resumes."""
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    rows = str(run / "rows.npy") if "table" in name else "digits"
    for command, expected in (("encode", "codes"), ("score", "scores"), ("reconstruct", "reconstructions")):
        assert main([command, str(run), "--input", rows, "--out", str(tmp_path / f"{command}.npy")]) == 0
        np.testing.assert_allclose(np.load(tmp_path / f"{command}.npy"), np.load(run / f"expected-{expected}.npy"),
                                   rtol=1e-5, atol=1e-6, err_msg=command)  # fmt: skip
    loaded = aekit.load_run(run)
    if "table" in name:
        assert loaded.fitted.score_spec.latent and loaded.space.scaler is not None
        before = json.loads((run / RunDir.METRICS).read_text())
        metrics = loaded.evaluate(write=False)
        for key in ("test_mse_per_pixel", "pca_test_mse_per_pixel", "test_sse_per_image"):
            assert metrics[key] == pytest.approx(before[key], rel=1e-5), key
    else:
        assert loaded.priors.sample(4, "gaussian").shape == (4, 1, 8, 8)
    assert main(["train", "--resume", str(run), "--epochs", "4", "--no-progress", "--device", "cpu"]) == 0


def test_version_1_configs_migrate_to_their_body_and_objective():
    configs = {name: RunDir(FIXTURES / name).read_config(RUN_SCHEMA)["model"] for name in V1_RUNS}
    assert configs["v1-mlp"] == make_config("mlp", input_shape=(1, 8, 8), latent_dim=3, hidden=(16,))
    assert configs["v1-conv-vae"] == make_config("vae", body="conv", input_shape=(1, 8, 8), latent_dim=3,
                                                 channels=(4, 8), beta=0.5)  # fmt: skip
    assert configs["v1-denoising"].objective == aekit.Denoising("masking", 0.25)
    assert configs["v1-linear"] == make_config("linear", input_shape=(1, 8, 8), latent_dim=3, output="linear")


@pytest.mark.parametrize("name", V1_RUNS)
def test_version_1_run_resumes_as_before_and_is_rewritten_as_version_2(name, tmp_path):
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    expected = json.loads((run / "expected-resumed-to-3.json").read_text())  # what aekit 0.1.0 computed
    history, _ = aekit.train_run(run, resume=True, epochs=3, device="cpu", progress=False, analysis=False)
    assert [row["epoch"] for row in history] == [1, 2, 3]
    for key in ("train_loss", "test_sse_per_image"):  # computed on a CPU; another one rounds differently
        assert history[-1][key] == pytest.approx(expected[key], rel=1e-4), key
    assert json.loads((run / RunDir.CONFIG).read_text())["format"] == "aekit-run/2"
    assert aekit.load_run(run).model_config == RunDir(FIXTURES / name).read_config(RUN_SCHEMA)["model"]


def test_version_1_model_record_with_unknown_fields_is_refused():
    with pytest.raises(ConfigError, match="unknown field\\(s\\) \\['depth'\\] in a version-1 model"):
        checkpoint.migrate_model_v1({"model": "mlp", "depth": 3})
    with pytest.raises(ConfigError, match="'gan' is not a version-1 model"):
        checkpoint.migrate_model_v1({"model": "gan"})


def test_missing_run_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such run directory"):
        aekit.load_run(tmp_path / "nope")


def test_interrupted_write_leaves_old_file_intact(run, monkeypatch):
    before = (run / RunDir.MODEL).read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(aekit.data.datasets.os, "replace", crash)  # the rename at the end of every atomic write
    with pytest.raises(OSError, match="disk full"):
        RunDir(run).save_model(aekit.load_run(run).model, None, 99)
    assert (run / RunDir.MODEL).read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------ fuzzing
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["model", "input_shape", "latent_dim", "hidden", "activation", "output", "epochs",
                               "lr", "name", "image_size", "limit", "clip_grad", "seed", "other"])  # fmt: skip


@given(st.dictionaries(field_names, json_values, max_size=6) | json_values)
def test_fuzz_config_loader(raw):
    for cls in RUN_SCHEMA.values():
        try:
            config = checkpoint.config_from_dict(cls, raw)
            if cls is ModelConfig:
                aekit.build_model(config)
            elif cls is TrainConfig:
                config.validate()
        except (ConfigError, CheckpointError):
            pass


@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzz_run_files(tmp_path_factory, raw):
    run = tmp_path_factory.mktemp("run")
    (run / RunDir.CONFIG).write_bytes(raw)
    (run / RunDir.MODEL).write_bytes(raw)
    try:
        aekit.load_run(run)
    except (ConfigError, CheckpointError):
        pass
    try:
        checkpoint.load_tensors(run / RunDir.MODEL)
    except CheckpointError:
        pass
