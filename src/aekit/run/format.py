"""The run format, version by version: configs to and from JSON (tagged parts, values checked against the
dataclasses' types), the migration of version-1 configs, JSON and safetensors files read with bounds, and a model's
tensors. :class:`aekit.run.rundir.RunDir` names the files; this module says what is in them.

Formats: ``aekit-run/2`` stores the model's body and objective as tagged parts
(``"body": {"kind": "conv", "channels": [32, 64], ...}``). ``aekit-run/1`` (aekit 0.1.0) stored one flat
record (``{"model": "vae", "body": "conv", "hidden", "channels", "noise", ..., "beta"}``) holding every option of
every model; :func:`migrate_model_v1` turns it into version 2 when it is read. Weight names did not change, so
version-1 weights and checkpoints load as they are; a resumed version-1 run is rewritten as version 2.
"""


from __future__ import annotations

import json
import types
import typing
from dataclasses import MISSING, asdict, fields, is_dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..core.space import Scaler
from ..errors import CheckpointError, ConfigError
from ..io.files import atomic_write_bytes
from ..model.autoencoder import AutoEncoder
from ..model.config import BODIES, OBJECTIVES
from ..model.parts import Body, Objective, Part

FORMAT = "aekit-run/2"
FORMAT_V1 = "aekit-run/1"
TAGGED = {Body: BODIES, Objective: OBJECTIVES}  # fields holding one of several kinds, stored with a "kind" tag
HISTORY_COLUMNS = ["epoch", "train_loss", "test_mse_per_pixel", "test_sse_per_image", "seconds"]
TEST_COLUMNS = ("test_mse_per_pixel", "test_sse_per_image")  # empty in the rows of untested epochs (--eval-every K)
MAX_JSON_BYTES = 2**20  # config.json and metrics.json are a few kB; a larger one is not a run's


# ------------------------------------------------------------------------------------------ configs <-> JSON
def config_to_dict(config) -> dict:
    """A config dataclass as a JSON-able dict; a body or objective becomes ``{"kind": ..., **options}``."""
    out = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.metadata.get("omit_empty") and not value:  # e.g. a model's columns: only tables have them
            continue
        if isinstance(value, Part):
            out[f.name] = {"kind": value.kind, **asdict(value)}
        elif is_dataclass(value):
            out[f.name] = config_to_dict(value)
        elif isinstance(value, tuple) and value and is_dataclass(value[0]):  # a table's columns
            out[f.name] = [config_to_dict(v) for v in value]
        else:
            out[f.name] = value
    return out


def config_from_dict(cls, data, where: str = "config"):
    """Build dataclass ``cls`` from a JSON object, rejecting unknown fields and values of the wrong type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known), key=str)
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
    """Check a JSON value against a type hint (int, float, str, bool, tuples, optionals, parts), converting lists."""
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
    if hint in TAGGED:
        registry = TAGGED[hint]
        if not isinstance(value, dict) or value.get("kind") not in registry:
            kind = value.get("kind") if isinstance(value, dict) else value
            raise ConfigError(f"{where}: kind {kind!r} is not one of {sorted(registry)}")
        return config_from_dict(registry[value["kind"]], {k: v for k, v in value.items() if k != "kind"}, where)
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


V1_MODEL_FIELDS = {"model", "input_shape", "latent_dim", "hidden", "activation", "output", "body", "channels", "noise",
                   "noise_level", "sparsity", "beta"}  # fmt: skip


def migrate_model_v1(old, where: str = "config") -> dict:
    """Version 1's flat model record -> version 2's ``{input_shape, latent_dim, output, body, objective}``.

    Version 1 kept every option of every model; only those that applied to the stored model carry over.
    """
    if not isinstance(old, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(old).__name__}")
    unknown = sorted(set(old) - V1_MODEL_FIELDS, key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown} in a version-1 model")
    name, body_name = old.get("model", "mlp"), old.get("body", "mlp")
    objectives = {"mlp": "plain", "conv": "plain", "linear": "plain", "denoising": "denoising", "sparse": "sparse",
                  "vae": "vae"}  # fmt: skip
    if name not in objectives:
        raise ConfigError(f"{where}.model: {name!r} is not a version-1 model ({sorted(objectives)})")
    if name == "linear":
        body = {"kind": "linear"}
    elif name == "conv" or (body_name == "conv" and name != "mlp"):
        body = {"kind": "conv", "channels": old.get("channels", [32, 64]), "activation": old.get("activation", "relu")}
    else:
        body = {"kind": "mlp", "hidden": old.get("hidden", [256]), "activation": old.get("activation", "relu")}
    objective = {"kind": objectives[name]}
    own = {"denoising": ("noise", "noise_level"), "sparse": ("sparsity",), "vae": ("beta",)}.get(name, ())
    objective.update({k: old[k] for k in own if k in old})
    top = {k: old[k] for k in ("input_shape", "latent_dim", "output") if k in old}
    return {**top, "body": body, "objective": objective}


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path: Path):
    """Read a JSON file of a run; only a regular file of at most ``MAX_JSON_BYTES`` is read."""
    path = Path(path)
    try:
        if not path.is_file():
            raise CheckpointError(f"{path}: {'not a regular file' if path.exists() else 'file not found'}")
        if path.stat().st_size > MAX_JSON_BYTES:
            raise CheckpointError(f"{path}: {path.stat().st_size} bytes, more than the {MAX_JSON_BYTES} a run's JSON "
                                  "file may hold")  # fmt: skip
        return json.loads(path.read_text())
    except OSError as err:  # a symlink loop, no permission, ...
        raise CheckpointError(f"{path}: cannot be read ({err.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply") from None


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
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or infinite values")
    model.load_state_dict(state)
    if "scaler.mean" in tensors and "scaler.std" in tensors:
        return Scaler(tensors["scaler.mean"], tensors["scaler.std"])
    return None


# ------------------------------------------------------------------------------------------ training state
# ------------------------------------------------------------------------------------------ the directory
