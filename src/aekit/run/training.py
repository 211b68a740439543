"""Training a run directory end to end: :func:`train_run` (data -> model -> loop -> metrics, written), the configs
completed from the data, the sentence that says how to resume, and the metrics measured when training ends."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..analysis.evaluate import cached, evaluate_model, feature_quality, holes, model_fingerprint
from ..analysis.tensorboard import TensorBoardLog
from ..codec.coder import Tables
from ..codec.metrics import codec_metrics
from ..configs import DataConfig, TrainConfig
from ..core.fitted import Fitted, ScoreSpec, encode
from ..core.series import channel_errors, channel_moments
from ..core.space import Data, Space
from ..data import datasets as data_mod
from ..data.stream import Streamed
from ..errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from ..model.autoencoder import AutoEncoder, build_model
from ..model.config import FILLING_EPOCHS, FILLING_HIDDEN, ModelConfig, filling_code, narrow_code
from ..model.parts import Imputing, MLPBody, Plain
from ..training.distributed import all_sum, barrier, process_group, rank_and_world
from ..training.loop import Interrupted, pick_device, train
from ..training.precision import check as check_precision
from .rundir import RunCheckpoints, RunDir

log = logging.getLogger(__name__)

RUN_SCHEMA = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def train_run(
    out: str | Path,
    model_config: ModelConfig | None = None,
    data_config: DataConfig | None = None,
    train_config: TrainConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    epochs: int | None = None,
    device: str | None = None,
    analysis: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    tensorboard: str | Path | None = None,
    latent_distance: bool = False,
    from_data: tuple[str, ...] = (),
) -> tuple[list[dict], dict]:
    """Train a model into run directory ``out`` and evaluate it beside PCA; returns (history, metrics).

    With ``resume``, the configs stored in ``out`` are used and training continues from its checkpoint;
    ``epochs`` and ``device`` may still be changed (to train longer, or elsewhere); ``epochs`` given for a new run
    replaces the train config's. ``progress``: bars per epoch, by default where the output is a terminal or a
    notebook with widgets (:mod:`aekit.progress`), none when it goes to a file. Without ``analysis``, the
    holes measure and the probes are left out of the metrics (they take a few seconds). ``on_epoch`` is called
    with each epoch's history row once its checkpoint is written (see :func:`aekit.training.loop.train`). ``tensorboard``
    names a folder for TensorBoard logs (:mod:`aekit.tensorboard_log`; a resumed run continues its curves there).
    With ``latent_distance`` the run also stores the latent-distance anomaly score (:meth:`aekit.run.runs.Run.fit_score`).
    ``from_data`` names the settings the caller leaves to the data (``aekit train`` passes those not given, of
    ``latent_dim``, ``hidden`` and ``epochs``): :func:`fitted_to_data` says what they become.
    """
    with process_group():
        # Bad flags for this folder are refused before anything (the lock, its folder) is made; every process checks.
        RunDir(out).check_target(resume, overwrite)
        with sole_writer(RunDir(out)):
            return _train_run(Path(out), model_config, data_config, train_config, resume, overwrite, progress,
                              epochs, device, analysis, on_epoch, tensorboard, latent_distance, from_data)  # fmt: skip


@contextlib.contextmanager
def sole_writer(rundir: RunDir):
    """Rank 0 holds the run directory's writer lock while training; a refusal stops every process alike."""
    rank, world = rank_and_world()
    with contextlib.ExitStack() as stack:
        refused = None
        if rank == 0:
            try:
                stack.enter_context(rundir.writing())
            except CheckpointError as err:
                refused = err
        if (all_sum([float(refused is not None)], "cpu")[0] if world > 1 else refused is not None):
            raise refused or CheckpointError(f"{rundir}: the first process could not take the run's writer lock")
        yield


def _train_run(out, model_config, data_config, train_config, resume, overwrite, progress, epochs, device, analysis,
               on_epoch, tensorboard, latent_distance, from_data):  # fmt: skip
    rank, _ = rank_and_world()
    rundir = RunDir(out)
    # Everything that can fail on bad input is checked before the run directory is touched, so a failed command
    # leaves a run as it was. Every process checks, so all fail alike.
    model_config, data_config, train_config = _configs(rundir, resume, model_config, data_config, train_config,
                                                       epochs, device)  # fmt: skip
    data = data_mod.load(data_config)
    if data_config.series and data_config.window is None:  # the window chosen from the series, stored as a number
        data_config = replace(data_config, window=data.input_shape[-1])
    model_config = _model_config_for(data, model_config, train_config, data_config, out if resume else None)
    if not resume:
        model_config, train_config = fitted_to_data(model_config, train_config, from_data)
    if model_config.overcomplete():
        log.warning("warning: %s", model_config.overcomplete())
    torch.manual_seed(train_config.seed)
    model = build_model(model_config)
    board = TensorBoardLog(tensorboard, model, data, train_config) if tensorboard and rank == 0 else None
    # --overwrite trains beside the old run and replaces it only once the new one has finished.
    staging = RunDir(out.parent / f".{out.name}.aekit-new") if overwrite and not resume and rundir.holds_run() else None
    target = staging or rundir
    configs = {"model": model.config, "data": data_config, "train": train_config}
    barrier()
    if rank == 0 and not resume:
        if staging is not None:
            shutil.rmtree(staging.path, ignore_errors=True)  # what an earlier, killed overwrite left
        target.path.mkdir(parents=True, exist_ok=True)
        target.write_config(configs)
    barrier()
    # A resumed run's config.json is rewritten with its first save, once its checkpoint has loaded.
    saver = RunCheckpoints(target, data.scaler, configs if resume else None)
    try:
        history = train(model, data, train_config, checkpoints=saver, resume=resume, progress=progress,
                        on_epoch=each(on_epoch, board))  # fmt: skip
        if board is not None:
            board.close()
        metrics = finish(model, data, target, analysis, latent_distance, resume) if rank == 0 else {}  # rank 0 writes
        if rank == 0 and data_config.series:
            save_series_moments(model, data, target, data_config.name)
    except BaseException as err:
        if staging is not None and rank == 0:
            shutil.rmtree(staging.path, ignore_errors=True)
        if isinstance(err, (TrainingDiverged, Interrupted)):
            raise explained(err, out, target, staging is not None) from None
        raise
    barrier()
    if staging is not None and rank == 0:
        rundir.replace_with(staging)
    return history, metrics


def finish(model: AutoEncoder, data: Data | Streamed, target: RunDir, analysis: bool, latent_distance: bool,
           resumed: bool) -> dict:  # fmt: skip
    """After the last epoch: the metrics (with the ``analysis``: holes, probes) and the anomaly score, written. A
    resumed run's stored score is fitted again to the model it now has, with its options."""
    metrics = full_metrics(model, data) if analysis else {**evaluate_model(model, evaluation_data(data)),
                                                          **streamed_sizes(data)}  # fmt: skip
    if model.config.objective.wing == "codec":  # a codec: its density frozen to integer tables, once
        memory = evaluation_data(data)
        tables = Tables.freeze(model.bottleneck.likelihood, encode(model, memory.x_train).numpy().astype(np.int64))
        target.save_codec(tables)
        metrics |= codec_metrics(model, memory, tables)
    target.write_metrics(metrics)
    stored = target.load_score(model.config.latent_dim) if resumed else ScoreSpec()
    if latent_distance or not stored.plain:
        fitted = Fitted(model, run_space(data, model.config))
        fitted.fit_score(evaluation_data(data).x_train, stored.blur, latent_distance or stored.latent, stored.neighbors)
        target.save_score(fitted.score_spec)
    return metrics


def save_series_moments(model: AutoEncoder, data: Data, target: RunDir, source: str) -> None:
    """A series run's channel error moments on its training part (what its step score is standardized by)."""
    target.save_series(channel_moments(channel_errors(Fitted(model, data.space), data.series, source)))


def each(*callbacks: Callable[[dict], None] | None) -> Callable[[dict], None] | None:
    """One ``on_epoch`` calling each given callback in turn (None if none is given)."""
    given = [c for c in callbacks if c is not None]
    if not given:
        return None

    def call(row: dict) -> None:
        for callback in given:
            callback(row)

    return call


def _configs(rundir: RunDir, resume: bool, model_config, data_config, train_config, epochs, device):
    """The run's configs: the stored ones on resume (``epochs`` and ``device`` may change), else the given ones."""
    if resume:
        stored = rundir.read_config(RUN_SCHEMA)
        model_config, data_config, train_config = stored["model"], stored["data"], stored["train"]
    train_config = train_config or TrainConfig()
    if epochs is not None:
        train_config = replace(train_config, epochs=epochs)
    if device is not None:
        train_config = replace(train_config, device=device)
    train_config.validate()
    check_precision(train_config.precision, pick_device(train_config.device))  # bf16 where there are no bf16 units
    data_config = located(data_config or DataConfig(), rundir.path if resume else None)
    return model_config or ModelConfig(), data_config, train_config


def located(config: DataConfig, run: Path | None = None) -> DataConfig:
    """``config`` with its data file or folder (and ``data_dir``) as absolute paths, so that a run made with
    ``--data t.npy`` still finds its data from another directory (``aekit report``, ``evaluate``, a resume).

    Runs made before kept the path as typed, relative to where they were trained. One the current directory lacks
    is looked for in ``run``'s directory and the three above it (a run is usually made from the folder that holds
    its folder of runs, or one above; an estimator's saved run keeps its rows inside), never further up, where an
    unrelated file of the same name may lie; where none has it, the path stays as it was and loading it names it."""
    def absolute(name: str | None, dataset: bool) -> str | None:
        if name is None or dataset or Path(name).is_absolute():
            return name
        if Path(name).exists():
            return str(Path(name).resolve())
        if run is None:  # a new run's missing data: loading it says so, naming it as typed
            return name
        here = Path(run).resolve()
        found = next((folder / name for folder in (here, *here.parents[:3]) if (folder / name).exists()), None)
        if found is None:
            return name
        log.info("%s: the run's data, given relative to where it was trained, found at %s", name, found)
        return str(found)

    return replace(config, name=absolute(config.name, config.name in data_mod.DATASETS),
                   data_dir=absolute(config.data_dir, False))  # fmt: skip


def _model_config_for(data, model_config: ModelConfig, train_config: TrainConfig, data_config: DataConfig,
                      resumed: Path | None) -> ModelConfig:  # fmt: skip
    """The model config completed from the data (its shape, the output for its scaling), checked against it."""
    if resumed is not None and data.input_shape != model_config.input_shape:
        raise DataError(f"{resumed} was trained on data of shape {model_config.input_shape}, but {data_config.name} "
                        f"now gives {data.input_shape}")  # fmt: skip
    if resumed is not None and tuple(data.columns) != tuple(model_config.columns):
        raise DataError(f"{resumed} was trained on a table with other columns or categories than {data_config.name} "
                        "now has")  # fmt: skip
    data.space.check_loss(train_config.loss)
    objective = model_config.objective
    if data.has_missing and not objective.fills_missing:
        if objective != Plain():
            raise ConfigError(f"{data_config.name} has missing cells (empty, NA or NaN); only --objective impute "
                              f"trains on them (the loss skips them), not --objective {objective.kind}")  # fmt: skip
        objective = Imputing()
        log.info("%s has missing cells: training with --objective impute (the loss skips them; masking noise "
                 "%.2f teaches the model to fill them)", data_config.name, objective.noise_level)  # fmt: skip
    model_config = replace(model_config, input_shape=data.input_shape, objective=objective, columns=tuple(data.columns),
                           output=model_config.body.default_output(data.scaling == "unit")).validate()  # fmt: skip
    return model_config


def fitted_to_data(model_config: ModelConfig, train_config: TrainConfig, from_data: tuple[str, ...]
                   ) -> tuple[ModelConfig, TrainConfig]:  # fmt: skip
    """The settings in ``from_data`` (of ``latent_dim``, ``hidden``, ``epochs``) chosen for the data (the model config
    already has its shape): a model that fills holes takes the imputer's recipe (:class:`aekit.AutoEncoderImputer`:
    a code of half the width from 2 to 64, an MLP of 256 and 128, 200 epochs); any other gets a code narrower than
    the data where the default's would be at least as wide. Each change is said in one log line."""
    width = int(np.prod(model_config.input_shape))
    model, train, said = {}, {}, []
    if model_config.objective.fills_missing:
        if "latent_dim" in from_data:
            model["latent_dim"] = filling_code(width)
        if "hidden" in from_data and isinstance(model_config.body, MLPBody):
            model["body"] = replace(model_config.body, hidden=FILLING_HIDDEN)
        if "epochs" in from_data:
            train["epochs"] = FILLING_EPOCHS
        why = "filling holes: the imputer's defaults"
    elif "latent_dim" in from_data and model_config.latent_dim >= width:
        model["latent_dim"] = narrow_code(width)
        why = f"the default code ({model_config.latent_dim}) is not narrower than the data's {width} features"
    if model.get("latent_dim", model_config.latent_dim) != model_config.latent_dim:
        said.append(f"--latent-dim {model['latent_dim']}")
    if "body" in model and model["body"] != model_config.body:
        said.append(f"--hidden {','.join(map(str, FILLING_HIDDEN))}")
    if train.get("epochs", train_config.epochs) != train_config.epochs:
        said.append(f"--epochs {train['epochs']}")
    if not said:
        return model_config, train_config
    log.info("%s: training with %s (give %s to choose)", why, " ".join(said), "it" if len(said) == 1 else "them")
    return replace(model_config, **model).validate(), replace(train_config, **train)


def explained(err: Interrupted | TrainingDiverged, out: Path, target: RunDir, discarded: bool):
    """The loop's exception with the sentence that names the run's files: how to resume, where the last good
    checkpoint is, or (an ``--overwrite`` that did not finish, ``discarded``) that the old run is kept."""
    if discarded:
        note = f"; the unfinished replacement was discarded and {out} keeps its previous run"
    elif isinstance(err, Interrupted):
        note = f"; checkpoint saved, continue with: aekit train --resume {out}"
    else:
        note = f" (last good checkpoint: {target / RunDir.CHECKPOINT})" if target.has(RunDir.CHECKPOINT) else ""
    if isinstance(err, Interrupted):
        return Interrupted(err.state, note, err.signum)
    return TrainingDiverged(err.value, err.epoch, err.step, err.lr, note)


def run_space(data: Data | Streamed, model_config: ModelConfig) -> Space:
    """The space a run's model takes: its data's, with missing cells for a model trained to fill them."""
    return data.space.taking_missing(model_config.objective.fills_missing)


def evaluation_data(data: Data | Streamed) -> Data:
    """In-memory data to evaluate on: ``data`` itself, or a streamed source's training sample and test split."""
    return data.in_memory() if isinstance(data, Streamed) else data


ANALYSIS_MIN_TEST_ROWS = 20  # the holes measure's 5-fold cross-validation of 5 nearest neighbours needs about this many


def full_metrics(model: AutoEncoder, data: Data | Streamed, analysis: bool = True) -> dict:
    """Reconstruction metrics beside PCA and, with ``analysis``, the holes measure and, for labelled data, the probe
    accuracies; each stage says what it computes (a log line: ``aekit`` prints them)."""
    memory = evaluation_data(data)
    log.info("evaluating: the %d test rows' errors beside PCA with %d components", len(memory.x_test),
             model.config.latent_dim)  # fmt: skip
    metrics = {**evaluate_model(model, memory), **streamed_sizes(data)}
    if analysis and len(memory.x_test) < ANALYSIS_MIN_TEST_ROWS:
        log.info("evaluating: the holes measure and the probes skipped: they need at least %d test rows (held out: %d)",
                 ANALYSIS_MIN_TEST_ROWS, len(memory.x_test))  # fmt: skip
    elif analysis:  # the model's and the data's alone: computed once (when training ends), read back after
        dense = model.config.objective.dense_code  # a sparse code's holes are not a question: left out
        said = (["the holes measure (can random codes be told from real ones?)"] if dense else []) + (
            ["probes of the codes beside PCA's and the raw inputs"] if memory.y_train is not None else [])  # fmt: skip
        if said:
            log.info("evaluating: %s", ", ".join(said))
        key = {"data": memory.fingerprint, "model": model_fingerprint(model), **({} if dense else {"holes": False})}
        metrics |= cached("analysis", key, lambda: {
            **(holes(model, memory.x_test) if dense else {}), **feature_quality(model, memory)})  # fmt: skip
    return metrics


def streamed_sizes(data: Data | Streamed) -> dict:
    """For streamed data, what the end-of-run numbers were computed on (said, not hidden): the bounded training
    sample PCA and the analyses were fitted on, and the held-out rows."""
    if not isinstance(data, Streamed):
        return {}
    return {"streamed_train_rows": data.n_train, "pca_fit_rows": len(data.x_sample), "test_rows": len(data.x_test)}
