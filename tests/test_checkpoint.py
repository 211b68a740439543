import json
import pickle

import numpy as np
import pytest
import torch

import aekit
from aekit import checkpoint
from aekit.data import DataConfig
from aekit.errors import CheckpointError, ConfigError
from aekit.models import ModelConfig
from aekit.runs import RUN_SCHEMA
from aekit.train import TrainConfig

TINY = TrainConfig(epochs=1, batch_size=64, device="cpu")


@pytest.fixture
def run(tmp_path):
    path = tmp_path / "run"
    aekit.train_run(path, ModelConfig(latent_dim=3, hidden=(16,)), DataConfig(name="digits"), TINY, progress=False)
    return path


def test_save_load_gives_identical_outputs(run, digits):
    loaded = aekit.load_run(run)
    again = aekit.load_run(run)
    with torch.no_grad():
        assert torch.equal(loaded.model(digits.x_test), again.model(digits.x_test))
    tensors, metadata = checkpoint.load_tensors(run / checkpoint.CHECKPOINT)
    fresh = aekit.build_model(loaded.model_config)
    fresh.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    with torch.no_grad():
        assert torch.equal(fresh.eval()(digits.x_test), loaded.model(digits.x_test))
    assert loaded.model_config == ModelConfig(latent_dim=3, hidden=(16,), input_shape=(1, 8, 8))
    assert loaded.train_config == TINY and loaded.data_config == DataConfig(name="digits")


def test_run_directory_layout(run):
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [checkpoint.CONFIG, checkpoint.MODEL, checkpoint.CHECKPOINT, checkpoint.HISTORY, checkpoint.METRICS]
    )
    history = checkpoint.read_history(run)
    assert list(history[0]) == checkpoint.HISTORY_COLUMNS
    metrics = json.loads((run / checkpoint.METRICS).read_text())
    for name in ("test_mse_per_pixel", "test_sse_per_image", "test_bce_per_pixel", "psnr"):
        assert name in metrics and f"pca_{name}" in metrics


def test_standardized_data_keeps_its_scaler(low_rank, tmp_path):
    path = tmp_path / "tab"
    aekit.train_run(path, ModelConfig(latent_dim=3, hidden=(16,)), DataConfig(name=str(low_rank)), TINY,
                    progress=False)  # fmt: skip
    loaded = aekit.load_run(path)
    raw = np.load(low_rank)
    assert loaded.scaler is not None and loaded.model_config.output == "linear"
    assert np.allclose(loaded.scaler.mean.numpy(), raw[np.random.default_rng(0).permutation(400)[80:]].mean(0),
                       atol=1e-4)  # fmt: skip


def test_pickle_in_place_of_weights_is_refused_without_running_it(run, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in (checkpoint.MODEL, checkpoint.CHECKPOINT):
        (run / name).write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError, match="model.safetensors: not a valid safetensors file"):
        aekit.load_run(run)
    with pytest.raises(CheckpointError, match="checkpoint.safetensors: not a valid safetensors file"):
        aekit.train_run(run, resume=True, progress=False)
    assert not marker.exists()


def test_tensors_that_do_not_match_the_config_are_refused(run):
    config = json.loads((run / checkpoint.CONFIG).read_text())
    config["model"]["latent_dim"] = 4
    (run / checkpoint.CONFIG).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="tensor 'encoder.2.weight' is torch.float32 \\(3, 16\\) but the config needs"):
        aekit.load_run(run)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["model"].update(depth=3), "config.json:model: unknown field\\(s\\) \\['depth'\\]"),
        (lambda c: c["model"].update(latent_dim="3"), "config.json:model.latent_dim: '3' is not a valid int"),
        (lambda c: c["train"].update(lr=None), "config.json:train.lr: None is not a valid float"),
        (lambda c: c["model"].update(hidden=[16, "x"]), "config.json:model.hidden: 'x' is not a valid int"),
        (lambda c: c.update(extra={}), "unknown section\\(s\\) \\['extra'\\]"),
        (lambda c: c.update(format="other"), "not an aekit run config"),
    ],
)
def test_bad_config_json_is_refused(run, edit, message):
    config = json.loads((run / checkpoint.CONFIG).read_text())
    edit(config)
    (run / checkpoint.CONFIG).write_text(json.dumps(config))
    with pytest.raises((ConfigError, CheckpointError), match=message):
        aekit.load_run(run)


def test_config_round_trip_through_json():
    configs = {"model": ModelConfig(hidden=(4, 3)), "data": DataConfig(image_size=(5, 6)),
               "train": TrainConfig(clip_grad=1.0)}  # fmt: skip
    for name, cls in RUN_SCHEMA.items():
        raw = json.loads(json.dumps(checkpoint.config_to_dict(configs[name])))
        assert checkpoint.config_from_dict(cls, raw) == configs[name]


def test_missing_run_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such run directory"):
        aekit.load_run(tmp_path / "nope")


def test_interrupted_write_leaves_old_file_intact(run, monkeypatch):
    before = (run / checkpoint.MODEL).read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(aekit.data.os, "replace", crash)  # the rename at the end of every atomic write
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_model(run, aekit.load_run(run).model, None, 99)
    assert (run / checkpoint.MODEL).read_bytes() == before
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
    (run / checkpoint.CONFIG).write_bytes(raw)
    (run / checkpoint.MODEL).write_bytes(raw)
    try:
        aekit.load_run(run)
    except (ConfigError, CheckpointError):
        pass
    try:
        checkpoint.load_tensors(run / checkpoint.MODEL)
    except CheckpointError:
        pass
