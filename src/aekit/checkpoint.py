"""The run directory: configs as JSON, tensors as safetensors, history as CSV. Never pickle.

A run directory holds::

    config.json              {"format", "aekit_version", "model": ModelConfig, "data": DataConfig, "train": TrainConfig}
    model.safetensors        "model.*" weights (+ "scaler.mean"/"scaler.std" for standardized data)
    checkpoint.safetensors   weights, optimizer state, RNG state and progress: what --resume reads
    history.csv              one row per finished epoch
    metrics.json             final test metrics beside the PCA baseline

Every file is written to a temporary file, flushed and renamed, so a reader (or a resumed run) never sees a
half-written one. Loading reads only JSON and safetensors, so a run directory cannot execute code.
"""

from __future__ import annotations

import csv
import io
import json
import types
import typing
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from . import __version__
from .data import Scaler, atomic_write_bytes
from .errors import CheckpointError, ConfigError
from .models import AutoEncoder, ModelConfig, build_model

FORMAT = "aekit-run/1"
CONFIG = "config.json"
MODEL = "model.safetensors"
CHECKPOINT = "checkpoint.safetensors"
HISTORY = "history.csv"
METRICS = "metrics.json"
HISTORY_COLUMNS = ["epoch", "train_loss", "test_mse_per_pixel", "test_sse_per_image", "seconds"]


# ------------------------------------------------------------------------------------------ configs <-> JSON
def config_to_dict(config) -> dict:
    return asdict(config)


def config_from_dict(cls, data, where: str = "config"):
    """Build dataclass ``cls`` from a JSON object, rejecting unknown fields and values of the wrong type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; known fields are {sorted(known)}")
    values = {}
    for name, f in known.items():
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(f"{where}: missing field {name!r}")
            continue
        values[name] = _coerce(data[name], hints[name], f"{where}.{name}")
    return cls(**values)


def _coerce(value, hint, where: str):
    """Check a JSON value against a type hint (int, float, str, bool, tuples, optionals), converting lists."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} is not a valid {_type_name(hint)}")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif is_dataclass(hint):
        return config_from_dict(hint, value, where)
    raise ConfigError(f"{where}: {value!r} is not a valid {_type_name(hint)}")


def _type_name(hint) -> str:
    return getattr(hint, "__name__", str(hint))


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None


def write_config(run: Path, configs: dict) -> None:
    """Write ``config.json`` from a dict of named dataclass configs (``model``, ``data``, ``train``)."""
    write_json(run / CONFIG, {"format": FORMAT, "aekit_version": __version__,
                              **{k: config_to_dict(v) for k, v in configs.items()}})  # fmt: skip


def read_config(run: Path, schema: dict[str, type]) -> dict:
    """Read ``config.json`` into the dataclasses named by ``schema`` (section name -> class)."""
    raw = read_json(Path(run) / CONFIG)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{Path(run) / CONFIG}: not an aekit run config (format must be {FORMAT!r})")
    extra = sorted(set(raw) - set(schema) - {"format", "aekit_version"})
    if extra:
        raise ConfigError(f"{Path(run) / CONFIG}: unknown section(s) {extra}")
    return {name: config_from_dict(cls, raw.get(name, {}), f"{CONFIG}:{name}") for name, cls in schema.items()}


# ------------------------------------------------------------------------------------------ tensors
def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(Path(path), st_save(tensors, metadata=metadata))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file (tensors, metadata); anything else is refused without being executed."""
    path = Path(path)
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    try:
        tensors = st_load(payload)
        header_len = int.from_bytes(payload[:8], "little")
        metadata = json.loads(payload[8 : 8 + header_len]).get("__metadata__", {})
    except (SafetensorError, ValueError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not a valid safetensors file ({str(err).splitlines()[0]})") from None
    return tensors, metadata


def model_tensors(model: AutoEncoder, scaler: Scaler | None = None) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if scaler is not None:
        tensors.update({"scaler.mean": scaler.mean, "scaler.std": scaler.std})
    return tensors


def load_model_tensors(model: AutoEncoder, tensors: dict[str, torch.Tensor], path: Path) -> Scaler | None:
    """Load ``model.*`` tensors into ``model``, checking names and shapes against its config."""
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: tensors do not match the config (missing {missing}, unexpected {unexpected})")
    for name in expected:  # the model's own order, so the first mismatch named is the earliest layer
        value = state[name]
        if value.shape != expected[name].shape or value.dtype != expected[name].dtype:
            raise CheckpointError(
                f"{path}: tensor {name!r} is {value.dtype} {tuple(value.shape)} but the config needs "
                f"{expected[name].dtype} {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state)
    if "scaler.mean" in tensors and "scaler.std" in tensors:
        return Scaler(tensors["scaler.mean"], tensors["scaler.std"])
    return None


def save_model(run: Path, model: AutoEncoder, scaler: Scaler | None, epoch: int) -> None:
    save_tensors(run / MODEL, model_tensors(model, scaler), {"epoch": str(epoch), "aekit_version": __version__})


def load_model(run: Path, model_config: ModelConfig) -> tuple[AutoEncoder, Scaler | None]:
    """Rebuild the model from its config and load ``model.safetensors`` into it (on the CPU, in eval mode)."""
    model = build_model(model_config)
    tensors, _ = load_tensors(Path(run) / MODEL)
    scaler = load_model_tensors(model, tensors, Path(run) / MODEL)
    return model.eval(), scaler


# ------------------------------------------------------------------------------------------ resumable state
def save_checkpoint(run: Path, model, optimizer, scaler: Scaler | None, progress: dict) -> None:
    """Write everything --resume needs in one file, in one atomic rename.

    ``progress`` is JSON-able: epoch, step within the epoch, history so far, running sums.
    """
    tensors = model_tensors(model, scaler)
    state = optimizer.state_dict()
    plain_state = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value
            else:
                plain_state[f"{index}.{key}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    metadata = {
        "aekit_version": __version__,
        "progress": json.dumps(progress),
        "optim_groups": json.dumps(state["param_groups"]),
        "optim_plain": json.dumps(plain_state),
    }
    save_tensors(Path(run) / CHECKPOINT, tensors, metadata)


def load_checkpoint(run: Path, model, optimizer) -> tuple[dict, Scaler | None]:
    """Restore model, optimizer and RNG state from ``checkpoint.safetensors``; returns (progress, scaler)."""
    path = Path(run) / CHECKPOINT
    tensors, metadata = load_tensors(path)
    scaler = load_model_tensors(model, tensors, path)
    try:
        progress = json.loads(metadata["progress"])
        groups = json.loads(metadata["optim_groups"])
        plain = json.loads(metadata["optim_plain"])
    except (KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: checkpoint metadata is missing or corrupt ({err})") from None
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in plain.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path}: optimizer state does not match the model ({err})") from None
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    return progress, scaler


# ------------------------------------------------------------------------------------------ history
def write_history(run: Path, history: list[dict]) -> None:
    """Write ``history.csv``: the standard columns first, then any extra terms a model reports."""
    columns = list(HISTORY_COLUMNS)
    for row in history:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_bytes(Path(run) / HISTORY, buffer.getvalue().encode())


def read_history(run: Path) -> list[dict]:
    path = Path(run) / HISTORY
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
                for row in csv.DictReader(handle)]  # fmt: skip
