"""The run directory, owned by :class:`RunDir`: its file names, and reading and writing each file. Never pickle.

A run directory holds::

    config.json              {"format": "aekit-run/2", "aekit_version", "model", "data", "train"}
    model.safetensors        "model.*" weights (+ "scaler.mean"/"scaler.std" for standardized data)
    checkpoint.safetensors   weights, optimizer state, RNG state and the TrainState: what --resume reads
    history.csv              one row per finished epoch
    metrics.json             final test metrics beside the PCA baseline
    codec.safetensors        a codec's (--objective rate) probability tables, frozen to integers when training ends
    series.safetensors       a series run's (--series) per-channel error moments on its training part
    score.safetensors        optional: the anomaly score's options (blur, latent distance, nearest codes) and its
                             statistics (no file: the plain reconstruction error)
    priors/NAME.json         optional: a latent prior fitted after training (aekit fit-prior), its options and the
    priors/NAME.safetensors    SHA-256 of the model.safetensors it was fitted to, and its tensors

Every file is written to a temporary file, flushed and renamed, so a reader (or a resumed run) never sees a
half-written one. Loading reads only JSON and safetensors, so a run directory cannot execute code.

Formats: ``aekit-run/2`` stores the model's body and objective as tagged parts
(``"body": {"kind": "conv", "channels": [32, 64], ...}``). ``aekit-run/1`` (aekit 0.1.0) stored one flat
record (``{"model": "vae", "body": "conv", "hidden", "channels", "noise", ..., "beta"}``) holding every option of
every model; :func:`migrate_model_v1` turns it into version 2 when it is read. Weight names did not change, so
version-1 weights and checkpoints load as they are; a resumed version-1 run is rewritten as version 2.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch

from .._version import __version__
from ..codec.coder import Tables
from ..core.fitted import ScoreSpec
from ..core.space import Scaler
from ..errors import CheckpointError, ConfigError, DataError
from ..generation.priors import Stored
from ..io.files import atomic_write_bytes
from ..model.autoencoder import AutoEncoder, build_model
from ..model.config import ModelConfig
from ..training.loop import TrainState
from .format import (FORMAT, FORMAT_V1, HISTORY_COLUMNS, TEST_COLUMNS, config_from_dict, config_to_dict,
                     load_model_tensors, load_tensors, migrate_model_v1, model_tensors, read_json, save_tensors,
                     write_json)  # fmt: skip
from .pretrained import refuse_if_shipped, shipped_name


class RunDir:
    """A run directory: the one place that knows its file names and how each file is read and written."""

    CONFIG = "config.json"
    MODEL = "model.safetensors"
    CHECKPOINT = "checkpoint.safetensors"
    HISTORY = "history.csv"
    METRICS = "metrics.json"
    SCORE = "score.safetensors"  # optional: the anomaly score's options and statistics (fit-score, --latent-distance)
    FILES = (CONFIG, MODEL, CHECKPOINT, HISTORY, METRICS)  # every finished run has these
    PRIORS = "priors"  # optional folder: fitted latent priors (aekit fit-prior), NAME.json + NAME.safetensors
    CODEC = "codec.safetensors"  # a codec's (the rate objective's) frozen probability tables, written when training ends
    SERIES = "series.safetensors"  # a series run's channel moments on its training part (what its step score divides by)
    OPTIONAL = (SCORE, PRIORS, CODEC, SERIES)  # a run may have these
    DERIVED = ("figures", "sweep", "report.html")  # drawn from a run by plot, error-vs-dim and report

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    @contextmanager
    def writing(self):
        """Hold this run directory's one-writer lock: an exclusive ``flock`` on a hidden sibling file
        (``.NAME.aekit-lock``), which the kernel releases when the holder ends, so a killed process never leaves a
        lock behind (only, at worst, the empty file, which the next writer takes). A second writer is refused at
        once, naming the process that holds it; readers never take it. The file is removed on release, while still
        locked: a writer that opened it just before checks, once it holds the lock, that the file is still the one
        at that path. A run on a read-only file system is refused in one line, and so is a run that ships with aekit
        (:mod:`aekit.run.pretrained`). (No ``fcntl``, not POSIX: no lock.)"""
        self.refuse_if_shipped("cannot be written into")
        try:
            import fcntl
        except ImportError:
            yield
            return
        lock = self.path.parent / f".{self.path.name}.aekit-lock"
        for _ in range(10):  # a holder may remove the file between our open and our flock: open it again
            handle = self._open_lock(lock)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().decode(errors="replace").strip() or "another process"
                handle.close()
                raise CheckpointError(f"{self.path} is being written by {holder}; one writer at a time: wait for it "
                                      "to finish or stop it") from None  # fmt: skip
            try:
                if os.fstat(handle.fileno()).st_ino == os.stat(lock).st_ino:
                    break
            except FileNotFoundError:
                pass
            handle.close()
        try:  # who holds it, for the refusal's message (a full disk may not take it: the lock holds anyway)
            handle.truncate(0)
            handle.write(f"process {os.getpid()} ({' '.join(sys.argv)[:200]})\n".encode())
        except OSError:
            pass
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
            handle.close()  # closing releases the lock

    def _open_lock(self, lock: Path):
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and not os.access(self.path, os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self.path))
            return open(lock, "a+b", buffering=0)  # unbuffered: nothing left to flush (or fail) on close
        except OSError as err:
            if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise CheckpointError(f"{self.path}: read-only here ({err.strerror}); a read-only run can be evaluated, "
                                      "encoded, scored, exported and served, not trained") from None  # fmt: skip
            raise

    @property
    def shipped(self) -> bool:
        """Whether this is one of the runs that ship with aekit (read-only)."""
        return shipped_name(self.path) is not None

    def refuse_if_shipped(self, what: str) -> None:
        """A CheckpointError saying how to copy it when this is one of the runs that ship with aekit."""
        refuse_if_shipped(self.path, what)

    def holds_run(self) -> bool:
        return self.path.is_dir() and any(self.path.iterdir())

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def check_target(self, resume: bool, overwrite: bool) -> None:
        """Refuse to train into an existing run unless told to resume or overwrite it, and anything but a folder."""
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"{self.path}: exists and is not a folder")
        self.refuse_if_shipped("cannot be trained further or replaced")
        if resume:
            if not self.has(self.CONFIG):
                raise CheckpointError(f"{self.path}: nothing to resume (no {self.CONFIG}); start it without --resume")
            if not self.has(self.CHECKPOINT):
                raise CheckpointError(f"{self.path}: no {self.CHECKPOINT} to resume from (a run copied or saved with its "
                                      "weights only); train a new run with --out")  # fmt: skip
        elif self.holds_run() and not overwrite:
            raise CheckpointError(f"{self.path} already holds a run; pass --resume to continue it or --overwrite to "
                                  "replace it")  # fmt: skip

    @contextmanager
    def saving(self, overwrite: bool = False):
        """A whole new run written into this folder by an estimator's ``save``: refused if the folder holds something,
        unless ``overwrite``; then the new run is written beside it and moved in place of the old run's files once
        complete (:meth:`replace_with`, as ``aekit train --overwrite`` does), so a failure leaves the old one. Yields
        the RunDir to write into, this folder's lock held."""
        self.refuse_if_shipped("cannot be written into")
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"{self.path}: exists and is not a folder")
        if self.holds_run() and not overwrite:
            raise CheckpointError(f"{self.path} already holds something; save(path, overwrite=True) replaces the run "
                                  "in it")  # fmt: skip
        self.path.mkdir(parents=True, exist_ok=True)
        staging = RunDir(self.path.parent / f".{self.path.name}.aekit-new") if self.holds_run() else None
        with self.writing():
            target = staging or self
            if staging is not None:
                shutil.rmtree(staging.path, ignore_errors=True)
                staging.path.mkdir()
            try:
                yield target
            except BaseException:
                if staging is not None:
                    shutil.rmtree(staging.path, ignore_errors=True)
                raise
            if staging is not None:
                self.replace_with(staging)

    def replace_with(self, new: RunDir) -> None:
        """Move ``new``'s files in place of this run's own files and of what aekit drew from them (``DERIVED``).

        The old ones are moved into a backup folder first and deleted last, so a crash midway loses neither run;
        other files a user keeps in the folder stay.
        """
        backup = self.path / ".aekit-replaced"
        shutil.rmtree(backup, ignore_errors=True)
        backup.mkdir()
        for name in (*self.FILES, *self.OPTIONAL, *self.DERIVED):
            if (self.path / name).exists():
                os.replace(self.path / name, backup / name)
        for item in new.path.iterdir():
            os.replace(item, self.path / item.name)
        new.path.rmdir()
        shutil.rmtree(backup)

    # -- config.json
    def write_config(self, configs: dict) -> None:
        """Write ``config.json`` from a dict of named dataclass configs (``model``, ``data``, ``train``)."""
        write_json(self.path / self.CONFIG, {"format": FORMAT, "aekit_version": __version__,
                                             **{k: config_to_dict(v) for k, v in configs.items()}})  # fmt: skip

    def read_config(self, schema: dict[str, type]) -> dict:
        """Read ``config.json`` (either format) into the dataclasses named by ``schema`` (section -> class)."""
        path = self.path / self.CONFIG
        raw = read_json(path)
        if not isinstance(raw, dict) or raw.get("format") not in (FORMAT, FORMAT_V1):
            raise CheckpointError(f"{path}: not an aekit run config (format must be {FORMAT!r} or {FORMAT_V1!r})")
        extra = sorted(set(raw) - set(schema) - {"format", "aekit_version"})
        if extra:
            raise ConfigError(f"{path}: unknown section(s) {extra}")
        if raw["format"] == FORMAT_V1 and "model" in raw:
            raw = {**raw, "model": migrate_model_v1(raw["model"], f"{self.CONFIG}:model")}
        return {name: config_from_dict(cls, raw.get(name, {}), f"{self.CONFIG}:{name}") for name, cls in schema.items()}

    def stored_version(self) -> str:
        """The ``aekit_version`` recorded in ``config.json`` ("" if none)."""
        raw = read_json(self.path / self.CONFIG)
        return str(raw.get("aekit_version", "")) if isinstance(raw, dict) else ""

    # -- model.safetensors
    def save_model(self, model: AutoEncoder, scaler: Scaler | None, epoch: int) -> None:
        save_tensors(self.path / self.MODEL, model_tensors(model, scaler),
                     {"epoch": str(epoch), "aekit_version": __version__})  # fmt: skip

    def load_model(self, model_config: ModelConfig) -> tuple[AutoEncoder, Scaler | None]:
        """Rebuild the model from its config and load ``model.safetensors`` into it (on the CPU, in eval mode)."""
        model = build_model(model_config)
        tensors, _ = load_tensors(self.path / self.MODEL)
        scaler = load_model_tensors(model, tensors, self.path / self.MODEL)
        return model.eval(), scaler

    # -- score.safetensors
    def save_score(self, spec: ScoreSpec) -> None:
        """Store the anomaly score's options and statistics; the plain reconstruction error needs no file."""
        if spec.plain:
            (self.path / self.SCORE).unlink(missing_ok=True)
            return
        save_tensors(self.path / self.SCORE, spec.tensors(), {**spec.metadata(), "aekit_version": __version__})

    def load_score(self, latent_dim: int) -> ScoreSpec:
        """The stored anomaly score, checked against the code size (none stored: the plain reconstruction error).
        A file from before the blurred error and the nearest codes (no ``blur`` in its metadata) is the Gaussian's."""
        path = self.path / self.SCORE
        if not path.is_file():
            return ScoreSpec()
        tensors, metadata = load_tensors(path)
        bad = CheckpointError(f"{path}: not an anomaly score for a {latent_dim}-D code")
        try:
            blur, k = int(metadata.get("blur", "1")), int(metadata.get("neighbors", "0"))
        except ValueError:
            raise bad from None
        latent = metadata.get("kind") == "latent_distance"
        if metadata.get("kind") not in ("latent_distance", "error") or blur < 1 or blur % 2 == 0 or k < 0:
            raise bad
        shapes = {"code_mean": (latent_dim,), "precision": (latent_dim, latent_dim), "stats": (4,)} if latent else {}
        if k:
            shapes["neighbor_codes"] = (tensors.get("neighbor_codes", torch.empty(0)).shape[0], latent_dim)
        if set(tensors) != set(shapes) or any(
                tuple(tensors[n].shape) != s or tensors[n].dtype != torch.float64 or not torch.isfinite(tensors[n]).all()
                for n, s in shapes.items()) or (k and not k < len(tensors["neighbor_codes"]) + 1):  # fmt: skip
            raise bad
        return ScoreSpec(blur, latent, k, *(tensors.get(n) for n in ("code_mean", "precision", "stats",
                                                                      "neighbor_codes")))  # fmt: skip

    # -- codec.safetensors
    def save_codec(self, tables: Tables) -> None:
        save_tensors(self.path / self.CODEC, tables.tensors(), {"kind": "codec", "aekit_version": __version__})

    def load_codec(self, channels: int) -> Tables:
        """The frozen probability tables of a codec run (:mod:`aekit.codec`)."""
        path = self.path / self.CODEC
        if not path.is_file():
            raise CheckpointError(f"{self.path}: no {self.CODEC}: it is not a codec (train it with --preset codec or "
                                  "--objective rate)")  # fmt: skip
        tensors, _ = load_tensors(path)
        try:
            return Tables.from_tensors(tensors, channels, str(path))
        except DataError as err:
            raise CheckpointError(str(err)) from None

    # -- series.safetensors
    def save_series(self, moments) -> None:
        save_tensors(self.path / self.SERIES, {"moments": torch.as_tensor(moments, dtype=torch.float64)},
                     {"kind": "series", "aekit_version": __version__})  # fmt: skip

    def load_series(self, channels: int):
        """A series run's ``(2, C)`` channel moments (:func:`aekit.core.series.channel_moments`), or None (a run
        written before they were stored: its step score is then the channels' mean error)."""
        path = self.path / self.SERIES
        if not path.is_file():
            return None
        tensors, _ = load_tensors(path)
        moments = tensors.get("moments")
        if moments is None or tuple(moments.shape) != (2, channels) or not torch.isfinite(moments).all() or not (
                moments[1] > 0).all():  # fmt: skip
            raise CheckpointError(f"{path}: not the channel moments of a {channels}-channel series run")
        return moments.double().numpy()

    # -- priors/NAME.json + priors/NAME.safetensors
    def save_prior(self, name: str, stored: Stored) -> None:
        """Store a fitted prior under ``priors/``, tagged with the SHA-256 of the model it was fitted to; the tensors
        are written first and the JSON last (the JSON is what makes a prior present), each atomically."""
        folder = self.path / self.PRIORS
        folder.mkdir(exist_ok=True)
        save_tensors(folder / f"{name}.safetensors", stored.tensors, {"kind": name, "aekit_version": __version__})
        write_json(folder / f"{name}.json", {**stored.meta, "model_sha256": self.model_sha256(),
                                             "aekit_version": __version__})  # fmt: skip

    def prior_names(self) -> list[str]:
        """The priors stored in this run (``priors/NAME.json``), sorted."""
        folder = self.path / self.PRIORS
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    def load_prior(self, name: str) -> Stored:
        """A stored prior's JSON and tensors; a CheckpointError when it was fitted to another state of the model."""
        folder = self.path / self.PRIORS
        meta = read_json(folder / f"{name}.json")
        if not isinstance(meta, dict):
            raise CheckpointError(f"{folder / name}.json: not a prior's description")
        if meta.get("model_sha256") != self.model_sha256():
            again = f"aekit fit-prior {self.path} --prior {name}" + (" --conditional" if meta.get("labels") else "")
            raise CheckpointError(f"{self.path}: its {name!r} prior was fitted to an earlier state of the model (it has "
                                  f"been trained since); fit it again: {again}")  # fmt: skip
        tensors, _ = load_tensors(folder / f"{name}.safetensors")
        return Stored(meta, tensors)

    def prior_digest(self, name: str) -> str:
        """The SHA-256 of a stored prior's tensors and description: what its cached sample quality is filed under."""
        folder = self.path / self.PRIORS
        return hashlib.sha256((folder / f"{name}.safetensors").read_bytes() + (folder / f"{name}.json").read_bytes()
                              ).hexdigest()  # fmt: skip

    def model_sha256(self) -> str:
        return hashlib.sha256((self.path / self.MODEL).read_bytes()).hexdigest()

    # -- checkpoint.safetensors
    def save_checkpoint(self, model, optimizer, scaler: Scaler | None, state: TrainState) -> None:
        """Write everything --resume needs in one file, in one atomic rename."""
        tensors = model_tensors(model, scaler)
        optim = optimizer.state_dict()
        plain_state = {}
        for index, entries in optim["state"].items():
            for key, value in entries.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{index}.{key}"] = value
                else:
                    plain_state[f"{index}.{key}"] = value
        tensors["rng.torch"] = torch.get_rng_state()
        metadata = {
            "aekit_version": __version__,
            "progress": json.dumps(asdict(state)),
            "optim_groups": json.dumps(optim["param_groups"]),
            "optim_plain": json.dumps(plain_state),
        }
        save_tensors(self.path / self.CHECKPOINT, tensors, metadata)

    def load_checkpoint(self, model, optimizer) -> tuple[TrainState, Scaler | None]:
        """Restore model, optimizer and RNG state from ``checkpoint.safetensors``; returns (state, scaler)."""
        path = self.path / self.CHECKPOINT
        tensors, metadata = load_tensors(path)
        scaler = load_model_tensors(model, tensors, path)
        try:
            state = TrainState.from_json(json.loads(metadata["progress"]), str(path))
            groups = json.loads(metadata["optim_groups"])
            plain = json.loads(metadata["optim_plain"])
        except (KeyError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{path}: checkpoint metadata is missing or corrupt ({err})") from None
        optim: dict[int, dict] = {}
        try:
            for key, value in tensors.items():
                if key.startswith("optim."):
                    _, index, name = key.split(".", 2)
                    optim.setdefault(int(index), {})[name] = value
            for key, value in plain.items():
                index, name = key.split(".", 1)
                optim.setdefault(int(index), {})[name] = value
            params = [p for group in optimizer.param_groups for p in group["params"]]
            for index, entries in optim.items():  # torch does not check these; a mismatch crashes its kernels
                for name, value in entries.items():
                    if torch.is_tensor(value) and value.dim() > 0 and value.shape != params[index].shape:
                        raise ValueError(f"state {index}.{name} is {tuple(value.shape)}, its weight "
                                         f"{tuple(params[index].shape)}")  # fmt: skip
            optimizer.load_state_dict({"state": optim, "param_groups": groups})
        except (ValueError, KeyError, RuntimeError, TypeError, AttributeError, IndexError) as err:
            raise CheckpointError(f"{path}: optimizer state does not match the model ({err})") from None
        if "rng.torch" in tensors:
            torch.set_rng_state(tensors["rng.torch"])
        return state, scaler

    def save_epoch(self, model, optimizer, scaler: Scaler | None, state: TrainState) -> None:
        """After a finished epoch: the checkpoint, the weights and the history."""
        self.save_checkpoint(model, optimizer, scaler, state)
        self.save_model(model, scaler, state.epoch)
        self.write_history(state.history)

    # -- history.csv
    def write_history(self, history: list[dict]) -> None:
        """Write ``history.csv``: the standard columns first, then any extra terms a model reports."""
        columns = list(HISTORY_COLUMNS)
        for row in history:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        atomic_write_bytes(self.path / self.HISTORY, buffer.getvalue().encode())

    def read_history(self) -> list[dict]:
        """The rows of ``history.csv`` (``[]`` before the first epoch); a damaged file is a CheckpointError."""
        path = self.path / self.HISTORY
        if not path.is_file():
            return []
        try:
            with open(path, newline="") as handle:
                rows = [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
                        for row in csv.DictReader(handle)]  # fmt: skip
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError, csv.Error) as err:
            raise CheckpointError(f"{path}: not a valid history ({' '.join(str(err).split())})") from None
        for i, row in enumerate(rows):
            tested = [k for k in TEST_COLUMNS if k in row]
            needed = [k for k in HISTORY_COLUMNS if k not in TEST_COLUMNS or tested]  # both test columns or neither
            if not set(needed) <= set(row):
                raise CheckpointError(f"{path}: row {i + 1} lacks {sorted(set(needed) - set(row))}")
        return rows

    # -- metrics.json
    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / self.METRICS, metrics)

    def read_metrics(self) -> dict:
        """The stored metrics, or ``{}`` before the run has finished."""
        if not (self.path / self.METRICS).exists():
            return {}
        metrics = read_json(self.path / self.METRICS)
        if not isinstance(metrics, dict) or not all(isinstance(v, (int, float)) for v in metrics.values()):
            raise CheckpointError(f"{self.path / self.METRICS}: not a table of metrics (names and numbers)")
        return metrics


class RunCheckpoints:
    """The training loop's saver (:class:`aekit.training.loop.Checkpoints`) for a run directory.

    ``configs`` (``{"model": ..., "data": ..., "train": ...}``), if given, are written to ``config.json`` with the
    first save: a resumed run's stored config is rewritten (migrated, with its new epochs) only once its checkpoint
    has loaded and training has reached its first save, so a resume that fails leaves the run as it was.
    """

    def __init__(self, rundir: RunDir, scaler: Scaler | None = None, configs: dict | None = None):
        self.rundir, self.scaler, self.configs = rundir, scaler, configs

    def load(self, model, optimizer) -> TrainState | None:
        if not self.rundir.has(RunDir.CHECKPOINT):
            return None
        state, _ = self.rundir.load_checkpoint(model, optimizer)
        return state

    def _prepare(self) -> None:
        self.rundir.path.mkdir(parents=True, exist_ok=True)
        if self.configs is not None:
            self.rundir.write_config(self.configs)
            self.configs = None

    def save_epoch(self, model, optimizer, state: TrainState) -> None:
        self._prepare()
        self.rundir.save_epoch(model, optimizer, self.scaler, state)

    def save_step(self, model, optimizer, state: TrainState) -> None:
        self._prepare()
        self.rundir.save_checkpoint(model, optimizer, self.scaler, state)
