"""Run directories end to end: train one (data -> model -> loop -> metrics), load one, evaluate one.

This is what the CLI calls; from Python, :func:`train_run` and :func:`load_run` do the same.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import checkpoint, plots
from .checkpoint import RunDir
from . import data as data_mod
from .data import Data, DataConfig, Scaler
from .errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from .evaluate import evaluate_model, feature_quality, holes
from .models import AutoEncoder, ModelConfig, build_model
from .stream import Streamed
from .distributed import barrier, process_group, rank_and_world
from .train import Interrupted, TrainConfig, make_adam, pick_device, train

log = logging.getLogger(__name__)

RUN_SCHEMA = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def train_run(
    out: str | Path,
    model_config: ModelConfig | None = None,
    data_config: DataConfig | None = None,
    train_config: TrainConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    epochs: int | None = None,
    device: str | None = None,
    analysis: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[list[dict], dict]:
    """Train a model into run directory ``out`` and evaluate it beside PCA; returns (history, metrics).

    With ``resume``, the configs stored in ``out`` are used and training continues from its checkpoint;
    ``epochs`` and ``device`` may still be changed (to train longer, or elsewhere). Without ``analysis``, the
    holes measure and the probes are left out of the metrics (they take a few seconds). ``on_epoch`` is called
    with each epoch's history row once its checkpoint is written (see :func:`aekit.train.train`).
    """
    with process_group():
        return _train_run(Path(out), model_config, data_config, train_config, resume, overwrite, progress, epochs,
                          device, analysis, on_epoch)  # fmt: skip


def _train_run(out, model_config, data_config, train_config, resume, overwrite, progress, epochs, device, analysis,
               on_epoch):  # fmt: skip
    rank, _ = rank_and_world()
    rundir = RunDir(out)
    # Everything that can fail on bad input is checked before the run directory is touched, so a failed command
    # leaves a run as it was. Every process checks, so all fail alike.
    rundir.check_target(resume, overwrite)
    if resume:
        stored = rundir.read_config(RUN_SCHEMA)
        model_config, data_config, train_config = stored["model"], stored["data"], stored["train"]
    model_config = model_config or ModelConfig()
    data_config = data_config or DataConfig()
    train_config = train_config or TrainConfig()
    if epochs is not None:
        train_config = replace(train_config, epochs=epochs)
    if device is not None:
        train_config = replace(train_config, device=device)
    train_config.validate()
    pick_device(train_config.device)
    data = data_mod.load(data_config)
    if resume and data.input_shape != model_config.input_shape:
        raise DataError(f"{out} was trained on data of shape {model_config.input_shape}, but {data_config.name} now "
                        f"gives {data.input_shape}")  # fmt: skip
    if train_config.loss == "bce" and data.scaling != "unit":
        raise ConfigError("loss 'bce' needs data in [0, 1]; this data is standardized, so use --loss mse")
    model_config = replace(model_config, input_shape=data.input_shape,
                           output=model_config.body.default_output(data.scaling == "unit")).validate()  # fmt: skip
    if resume and rundir.has(RunDir.CHECKPOINT):
        with torch.random.fork_rng(devices=[]):  # the checkpoint must load before config.json is rewritten
            scratch = build_model(model_config)
            rundir.load_checkpoint(scratch, make_adam(scratch, train_config))
    torch.manual_seed(train_config.seed)
    model = build_model(model_config)
    # --overwrite trains beside the old run and replaces it only once the new one has finished.
    staging = RunDir(out.parent / f".{out.name}.aekit-new") if overwrite and not resume and rundir.holds_run() else None
    target = staging or rundir
    barrier()
    if rank == 0:
        if staging is not None:
            shutil.rmtree(staging.path, ignore_errors=True)  # what an earlier, killed overwrite left
        target.path.mkdir(parents=True, exist_ok=True)
        target.write_config({"model": model.config, "data": data_config, "train": train_config})
    barrier()
    try:
        history = train(model, data, train_config, target.path, resume=resume, progress=progress, on_epoch=on_epoch)
        metrics = {}
        if rank == 0:  # rank 0 evaluates and writes; the others are done
            metrics = full_metrics(model, data) if analysis else {**evaluate_model(model, data), **streamed_sizes(data)}
            target.write_metrics(metrics)
    except BaseException as err:
        if staging is None:
            raise
        if rank == 0:
            shutil.rmtree(staging.path, ignore_errors=True)
        if isinstance(err, (TrainingDiverged, Interrupted)):  # their messages named the discarded folder
            raise type(err)(f"{err.event}; the unfinished replacement was discarded and {out} keeps its previous "
                            "run") from None
        raise
    barrier()
    if staging is not None and rank == 0:
        rundir.replace_with(staging)
    return history, metrics


def full_metrics(model: AutoEncoder, data: Data) -> dict:
    """Reconstruction metrics beside PCA, the holes measure and, for labelled data, the probe accuracies."""
    return {**evaluate_model(model, data), **holes(model, data.x_test), **feature_quality(model, data),
            **streamed_sizes(data)}


def streamed_sizes(data: Data) -> dict:
    """For streamed data, what the end-of-run numbers were computed on (said, not hidden): the bounded training
    sample PCA and the analyses were fitted on, and the held-out rows."""
    if not isinstance(data, Streamed):
        return {}
    return {"streamed_train_rows": data.n_train, "pca_fit_rows": len(data.x_train), "test_rows": len(data.x_test)}


@dataclass
class Run:
    """A finished (or checkpointed) run loaded for inference: configs, model and scaler."""

    path: Path
    model_config: ModelConfig
    data_config: DataConfig
    train_config: TrainConfig
    model: AutoEncoder
    scaler: Scaler | None

    @property
    def scaling(self) -> str:
        return "standard" if self.scaler is not None else "unit"

    def data(self) -> Data:
        """Load the run's dataset again (same split, same scaling)."""
        loaded = data_mod.load(self.data_config)
        if loaded.input_shape != self.model_config.input_shape:
            raise DataError(f"{self.path}: its data now has shape {loaded.input_shape}, the model "
                            f"{self.model_config.input_shape}")  # fmt: skip
        return loaded

    def inputs(self, source: str, split: str = "test") -> tuple[torch.Tensor, torch.Tensor | None]:
        """Model-space inputs and labels from a dataset name (its ``split``) or a user file."""
        if source in data_mod.DATASETS:
            loaded = data_mod.load(DataConfig(name=source, data_dir=self.data_config.data_dir,
                                              test_fraction=self.data_config.test_fraction,
                                              split_seed=self.data_config.split_seed))  # fmt: skip
            x, y = (loaded.x_test, loaded.y_test) if split == "test" else (loaded.x_train, loaded.y_train)
            if loaded.input_shape != self.model_config.input_shape:
                raise DataError(f"{source}: shape {loaded.input_shape} does not match the model's input "
                                f"{self.model_config.input_shape}")  # fmt: skip
            return x, y
        raw, labels = data_mod.read_file(source, self.data_config.label_column, self.data_config.image_size)
        x = data_mod.to_model_space(raw, self.model_config.input_shape, self.scaling, self.scaler, source)
        return x, None if labels is None else torch.from_numpy(labels)

    def to_data_space(self, x: torch.Tensor) -> torch.Tensor:
        return data_mod.to_data_space(x, self.scaler)


def load_run(path: str | Path, device: str = "cpu") -> Run:
    """Load a run directory's configs and weights (JSON and safetensors only; nothing is executed)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run directory")
    rundir = RunDir(path)
    configs = rundir.read_config(RUN_SCHEMA)
    model, scaler = rundir.load_model(configs["model"])
    model.to(pick_device(device))
    return Run(path, configs["model"], configs["data"], configs["train"], model, scaler)


def evaluate_run(path: str | Path, device: str = "auto", write: bool = True) -> dict[str, float]:
    """Evaluate a run on its test split, beside PCA; writes ``metrics.json`` unless ``write`` is false."""
    run = load_run(path, device)
    metrics = full_metrics(run.model, run.data())
    if write:
        RunDir(run.path).write_metrics(metrics)
    return metrics


def sweep_error_vs_dim(
    path: str | Path, dims: tuple[int, ...] = (2, 4, 8, 16, 32, 64), epochs: int | None = None, progress: bool = False
) -> dict:
    """Train RUN's model at each code size in ``dims`` (into ``RUN/sweep/k<d>``) and measure it beside PCA.

    A sweep run that already finished with the same settings is reused, not trained again; so is RUN itself at
    its own code size when its first ``epochs`` epochs are that training (:func:`_own_point`). Returns
    ``{"dims", "autoencoder", "pca", "epochs"}`` (test SSE per image) and draws ``RUN/figures/error-vs-dim``.
    """
    base = load_run(path)
    train_config = replace(base.train_config, epochs=epochs or base.train_config.epochs)
    ae, pca = [], []
    for dim in dims:
        out = Path(path) / "sweep" / f"k{dim}"
        model_config = replace(base.model_config, latent_dim=dim)
        own = _own_point(base, train_config.epochs) if dim == base.model_config.latent_dim else None
        if own is not None:
            log.info("error-vs-dim: k=%d is %s itself after %d epochs (the same training), not trained again", dim,
                     path, train_config.epochs)  # fmt: skip
            metrics = own
        elif _finished(out, model_config, train_config):
            metrics = RunDir(out).read_metrics()
        else:
            log.info("error-vs-dim: training k=%d for %d epochs", dim, train_config.epochs)
            _, metrics = train_run(out, model_config, base.data_config, train_config, overwrite=True,
                                   progress=progress, analysis=False)
        ae.append(metrics["test_sse_per_image"])
        pca.append(metrics["pca_test_sse_per_image"])  # each run already measured PCA at its own code size
    result = {"dims": list(dims), "autoencoder": ae, "pca": pca, "epochs": train_config.epochs}
    (Path(path) / "sweep").mkdir(exist_ok=True)  # not made yet when every point was read from RUN
    checkpoint.write_json(Path(path) / "sweep" / "error-vs-dim.json", result)
    plots.error_vs_dim(list(dims), ae, pca, train_config.epochs, path=Path(path) / "figures" / "error-vs-dim")
    return result


def _own_point(base: Run, epochs: int) -> dict[str, float] | None:
    """The test SSE per image (autoencoder's and PCA's, named as in metrics.json) of the sweep's point at RUN's own
    code size trained for ``epochs`` epochs with RUN's settings, read from RUN; None when that training would not
    repeat RUN's first ``epochs`` epochs.

    It would when the learning rate does not depend on the number of epochs (``schedule="none"``: the weights
    after epoch E are then the same whether training goes on or not). The autoencoder's error is RUN's history row
    for epoch E (a row without a test error, or none, means training after all); PCA's is RUN's own, computed at
    this code size on the same data. The row is used even when E is RUN's last epoch: metrics.json may be older
    than the history (a resumed run stopped before it finished), and the two agree to about 1e-8 otherwise.
    """
    if base.train_config.schedule != "none":
        return None
    rundir = RunDir(base.path)
    metrics = rundir.read_metrics()
    rows = [row for row in rundir.read_history() if row["epoch"] == epochs and "test_sse_per_image" in row]
    if not rows or "pca_test_sse_per_image" not in metrics:
        return None
    return {"test_sse_per_image": rows[0]["test_sse_per_image"],
            "pca_test_sse_per_image": metrics["pca_test_sse_per_image"]}  # fmt: skip


def _finished(out: Path, model_config: ModelConfig, train_config: TrainConfig) -> bool:
    if not RunDir(out).has(RunDir.METRICS):
        return False
    try:
        stored = RunDir(out).read_config(RUN_SCHEMA)
    except (ConfigError, CheckpointError):
        return False
    same_model = replace(stored["model"], input_shape=model_config.input_shape, output=model_config.output)
    return same_model == model_config and stored["train"] == train_config
