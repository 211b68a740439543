"""Run directories end to end, and :class:`Run`: the one API the CLI, the server, the report and notebooks call.

:func:`train_run` trains one (data -> model -> loop -> metrics), :func:`load_run` loads one, and a :class:`Run`
reads inputs a chunk at a time, encodes, decodes, reconstructs, scores (the one definition of the anomaly score),
thresholds, evaluates, draws and exports. The entry points above this layer parse, call a ``Run`` and print.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import data as data_mod
from . import stream, tables
from .checkpoint import RunCheckpoints, RunDir, config_to_dict, write_json
from .data import DataConfig
from .distributed import all_sum, barrier, process_group, rank_and_world
from .errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from .files import atomic_write_bytes, check_npy_header
from .csvfile import fill_text
from .codec import Tables, decode_streams, encode_streams, model_digest, pack, unpack
from .evaluate import (METRIC_NAMES, cached, codec_metrics, evaluate_model, feature_quality, gaussian_like,
                       generation_metrics, holes, model_fingerprint)
from .fitted import Fitted, ScoreSpec, encode
from .models import AutoEncoder, Imputing, ModelConfig, Plain, Rate, TopK, build_model
from .precision import check as check_precision
from .progress import bar as progress_bar
from .progress import working as progress_working
from .priors import PRIOR_NAMES, DiffusionConfig, Normal, Prior, check_fittable, fit_prior, from_stored, to_stored
from .space import Data, Scaler, Space
from .tables import Column
from .stream import Streamed
from .tensorboard_log import TensorBoardLog
from .train import Interrupted, TrainConfig, pick_device, train

log = logging.getLogger(__name__)

RUN_SCHEMA = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
INFER_CHUNK_ROWS = 8192  # rows per chunk when the input was loaded whole (a dataset name, CSV, images)
REFINEMENTS = 10  # passes of a model trained without holes that fills them (Run.impute with any_model)


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
) -> tuple[list[dict], dict]:
    """Train a model into run directory ``out`` and evaluate it beside PCA; returns (history, metrics).

    With ``resume``, the configs stored in ``out`` are used and training continues from its checkpoint;
    ``epochs`` and ``device`` may still be changed (to train longer, or elsewhere); ``epochs`` given for a new run
    replaces the train config's. ``progress``: bars per epoch, by default where the output is a terminal or a
    notebook with widgets (:mod:`aekit.progress`), none when it goes to a file. Without ``analysis``, the
    holes measure and the probes are left out of the metrics (they take a few seconds). ``on_epoch`` is called
    with each epoch's history row once its checkpoint is written (see :func:`aekit.train.train`). ``tensorboard``
    names a folder for TensorBoard logs (:mod:`aekit.tensorboard_log`; a resumed run continues its curves there).
    With ``latent_distance`` the run also stores the latent-distance anomaly score (:meth:`Run.fit_latent_score`).
    """
    with process_group():
        # Bad flags for this folder are refused before anything (the lock, its folder) is made; every process checks.
        RunDir(out).check_target(resume, overwrite)
        with sole_writer(RunDir(out)):
            return _train_run(Path(out), model_config, data_config, train_config, resume, overwrite, progress,
                              epochs, device, analysis, on_epoch, tensorboard, latent_distance)  # fmt: skip


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
               on_epoch, tensorboard, latent_distance):  # fmt: skip
    rank, _ = rank_and_world()
    rundir = RunDir(out)
    # Everything that can fail on bad input is checked before the run directory is touched, so a failed command
    # leaves a run as it was. Every process checks, so all fail alike.
    model_config, data_config, train_config = _configs(rundir, resume, model_config, data_config, train_config,
                                                       epochs, device)  # fmt: skip
    data = data_mod.load(data_config)
    model_config = _model_config_for(data, model_config, train_config, data_config, out if resume else None)
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
    if isinstance(model.config.objective, Rate):  # a codec: its density frozen to integer tables, once
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
    if data.has_missing and not isinstance(objective, Imputing):
        if objective != Plain():
            raise ConfigError(f"{data_config.name} has missing cells (empty, NA or NaN); only --objective impute "
                              f"trains on them (the loss skips them), not --objective {objective.kind}")  # fmt: skip
        objective = Imputing()
        log.info("%s has missing cells: training with --objective impute (the loss skips them; masking noise "
                 "%.2f teaches the model to fill them)", data_config.name, objective.noise_level)  # fmt: skip
    model_config = replace(model_config, input_shape=data.input_shape, objective=objective, columns=tuple(data.columns),
                           output=model_config.body.default_output(data.scaling == "unit")).validate()  # fmt: skip
    if model_config.overcomplete():
        log.warning("warning: %s", model_config.overcomplete())
    return model_config


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
    return data.space.taking_missing(isinstance(model_config.objective, Imputing))


def evaluation_data(data: Data | Streamed) -> Data:
    """In-memory data to evaluate on: ``data`` itself, or a streamed source's training sample and test split."""
    return data.in_memory() if isinstance(data, Streamed) else data


def full_metrics(model: AutoEncoder, data: Data | Streamed, analysis: bool = True) -> dict:
    """Reconstruction metrics beside PCA and, with ``analysis``, the holes measure and, for labelled data, the probe
    accuracies; each stage says what it computes (a log line: ``aekit`` prints them)."""
    memory = evaluation_data(data)
    log.info("evaluating: the %d test rows' errors beside PCA with %d components", len(memory.x_test),
             model.config.latent_dim)  # fmt: skip
    metrics = {**evaluate_model(model, memory), **streamed_sizes(data)}
    if analysis:  # the model's and the data's alone: computed once (when training ends), read back after
        log.info("evaluating: the holes measure (can random codes be told from real ones?)%s",
                 ", probes of the codes beside PCA's and the raw inputs" if memory.y_train is not None else "")
        metrics |= cached("analysis", {"data": memory.fingerprint, "model": model_fingerprint(model)}, lambda: {
            **holes(model, memory.x_test), **feature_quality(model, memory)})  # fmt: skip
    return metrics


def streamed_sizes(data: Data | Streamed) -> dict:
    """For streamed data, what the end-of-run numbers were computed on (said, not hidden): the bounded training
    sample PCA and the analyses were fitted on, and the held-out rows."""
    if not isinstance(data, Streamed):
        return {}
    return {"streamed_train_rows": data.n_train, "pca_fit_rows": len(data.x_sample), "test_rows": len(data.x_test)}


@dataclass
class Run:
    """A finished (or checkpointed) run loaded for inference: its configs and its :class:`aekit.fitted.Fitted` model
    (the model, the :class:`aekit.space.Space` of its data, its anomaly score), and what to do with them.

    Inputs ``x`` are in model space (:meth:`inputs` and :meth:`chunks` give them from a dataset or a file,
    :meth:`to_model_space` from rows in any accepted layout); :meth:`reconstruct` and :meth:`decode` return the
    data's own units.
    """

    path: Path
    model_config: ModelConfig
    data_config: DataConfig
    train_config: TrainConfig
    fitted: Fitted
    _data: Data | None = field(default=None, repr=False, compare=False)  # loaded once, on first use

    @property
    def model(self) -> AutoEncoder:
        return self.fitted.model

    @property
    def space(self) -> Space:
        return self.fitted.space

    @property
    def scaler(self) -> Scaler | None:
        return self.space.scaler

    @property
    def scaling(self) -> str:
        return self.space.scaling

    @property
    def score_spec(self) -> ScoreSpec:
        """How :meth:`score` scores (``score.safetensors``; none: the plain reconstruction error)."""
        return self.fitted.score_spec

    @property
    def width(self) -> int:
        """Features per example."""
        return self.space.width

    @property
    def is_image(self) -> bool:
        """Whether the examples are images (C, H, W) with 1 or 3 channels."""
        return self.space.is_image

    # -- data
    def data(self) -> Data:
        """The run's dataset (same split, scaled by the run's own space), in memory (a streamed one: its sample);
        loaded on first use and kept."""
        if self._data is None:
            self._data = evaluation_data(data_mod.load(self.data_config, self.space))
        return self._data

    def inputs(self, source: str, split: str = "test") -> tuple[torch.Tensor, torch.Tensor | None]:
        """Model-space inputs and labels from a dataset name (its ``split``) or a user file, whole."""
        if source in data_mod.DATASETS:
            loaded = data_mod.load(DataConfig(name=source, data_dir=self.data_config.data_dir,
                                              test_fraction=self.data_config.test_fraction,
                                              split_seed=self.data_config.split_seed), self.space)  # fmt: skip
            return (loaded.x_test, loaded.y_test) if split == "test" else (loaded.x_train, loaded.y_train)
        raw, labels, _ = data_mod.read_data(source, self.data_config.label_column, self.data_config.image_size,
                                            self.model_config.columns)  # fmt: skip
        return self.to_model_space(raw, source), None if labels is None else torch.from_numpy(labels)

    def chunks(self, source: str, split: str = "test") -> tuple[int, Iterator[torch.Tensor]]:
        """``(n_rows, chunks)``: the input in model space, chunk by chunk. A source read in chunks (``.npy``, shard
        and image folders, Parquet) is never held whole, so memory stays bounded whatever its size; any other is
        loaded whole, then cut into chunks of :data:`INFER_CHUNK_ROWS`."""
        config = self.data_config
        rows = None if source in data_mod.DATASETS or self.model_config.columns else \
            data_mod.open_rows(source, config.label_column, image_size=config.image_size)  # fmt: skip
        if rows is None:
            x, _ = self.inputs(source, split)
            return len(x), (x[i : i + INFER_CHUNK_ROWS] for i in range(0, len(x), INFER_CHUNK_ROWS))
        rows.missing = self.fills_missing
        stream.keep_heap_small()  # memory bounded by a chunk, however many chunks pass

        def chunks():  # a chunk (a Parquet row group may be large) is scaled to float32 a slice at a time
            for raw, _ in rows.chunks():
                for i in range(0, len(raw), INFER_CHUNK_ROWS):
                    yield self.to_model_space(raw[i : i + INFER_CHUNK_ROWS], source)

        return len(rows), chunks()

    @property
    def fills_missing(self) -> bool:
        """Whether the model takes missing cells (NaN): one trained with the impute objective."""
        return self.space.missing

    def to_model_space(self, raw: np.ndarray, source: str = "input", missing: bool | None = None) -> torch.Tensor:
        """Raw rows in the data's own units, in any layout the space takes (images: ``(N, C, H, W)``, ``(N, H, W)``
        or flat), checked and scaled (:meth:`aekit.space.Space.to_model`); missing cells (NaN) only for a model that
        fills them (:attr:`fills_missing`), or with ``missing``."""
        return self.space.to_model(raw, source, missing)

    def to_data_space(self, x: torch.Tensor) -> torch.Tensor:
        return self.space.to_data(x)

    # -- inference (model-space inputs; on the model's device, results on the CPU)
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``(N, latent_dim)``: a VAE's posterior mean, a VQ model's quantized code."""
        return self.fitted.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decodings of codes ``(N, latent_dim)``, in the data's own units."""
        return self.fitted.decode(torch.as_tensor(z, dtype=torch.float32))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions of ``x``, in the data's own units."""
        return self.fitted.reconstruct(x)

    def impute(self, raw: np.ndarray, source: str = "input", any_model: bool = False) -> np.ndarray:
        """Raw rows (the data's own units, NaN where missing) with their missing cells filled by the model; every
        observed cell comes back exactly as it was given. A table's categorical column that was missing gets the
        model's probability per category (:func:`write_rows` writes the likeliest one).

        A model trained with the impute objective fills in one pass. With ``any_model``, one trained without
        holes fills them too, as an autoencoder can: the holes start at 0 and :data:`REFINEMENTS` passes each set
        them to the reconstruction of the row so far (weaker: it never learned to fill)."""
        if not self.fills_missing and not any_model:
            raise ConfigError(f"{self.path} was not trained to fill missing cells; train it with --objective impute "
                              "(chosen by itself for data with holes)")  # fmt: skip
        raw = np.asarray(raw)
        out = self.fitted.impute(raw, source, 1 if self.fills_missing else REFINEMENTS)
        holes = np.isnan(raw)
        if out.dtype == np.float64:  # the fills are float32 sums: with float32's shortest digits (19.444817), not a
            out[holes] = out[holes].astype(np.float32).astype(str).astype(np.float64)  # float64's 19.44481658935547
        return out

    def impute_file(self, source: str, out: Path) -> tuple[int, int]:
        """Fill the missing cells of a file and write it to ``out`` (:func:`write_rows`'s formats); a CSV written from a
        CSV keeps every observed cell's text as it was, only the missing ones filled (a number with float32's
        shortest digits, a category's name). Returns ``(missing cells, rows)``: a table's cells counted per column,
        not per one-hot slot."""
        raw = self.read(source)
        filled = self.impute(raw, source)
        columns = self.model_config.columns
        holes = np.isnan(raw.reshape(len(raw), -1))
        if columns:  # a categorical cell is missing in all its slots: one cell
            holes = np.stack([holes[:, tables.column_of_feature(columns) == c].any(1) for c in range(len(columns))], 1)
        if str(source).lower().endswith(".csv") and out.suffix.lower() == ".csv":
            flat = filled.reshape(len(filled), -1)
            named = tables.decoded(flat, columns) if columns else {str(j): flat[:, j] for j in range(flat.shape[1])}
            fills = {name: [str(np.float32(v)) if not isinstance(v, str) else v for v in values]
                     for name, values in named.items()}  # fmt: skip
            atomic_write_bytes(out, fill_text(source, fills))
        else:
            write_rows(self.space.shaped(filled, source), out, columns, exact=True)
        return int(holes.sum()), len(raw)

    def read(self, source: str) -> np.ndarray:
        """A user file's rows whole, in the data's own units (a table encoded with the columns RUN was trained on)."""
        if source in data_mod.DATASETS:
            raise DataError(f"{source}: a built-in dataset has no missing cells; give a file with holes")
        return data_mod.read_data(source, self.data_config.label_column, self.data_config.image_size,
                                  self.model_config.columns)[0]  # fmt: skip

    def score(self, x: torch.Tensor) -> np.ndarray:
        """Each row's anomaly score ``(N,)``, higher is more abnormal, as the run's :class:`aekit.fitted.ScoreSpec`
        defines it (none stored: the mean squared reconstruction error per feature, in model space)."""
        return self.fitted.score(x)

    def explain(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Each row's score and its parts (:meth:`aekit.fitted.Fitted.parts`), from one pass of the model."""
        return self.fitted.parts(x)

    def fit_score(self, blur: int = 1, latent: bool = True, neighbors: int = 0) -> ScoreSpec:
        """Fit the anomaly score on the run's training rows and store it (``score.safetensors``): from then on
        :meth:`score`, ``aekit score``, ``/v1/score``, the report and the exported ``score`` graph use it.
        ``latent``: add the code's distance (the Gaussian's, or with ``neighbors`` the nearest training codes');
        ``blur``: blur the residual over an odd window (images)."""
        self.fitted.fit_score(self.data().x_train, blur, latent, neighbors)
        with RunDir(self.path).writing():
            RunDir(self.path).save_score(self.score_spec)
        return self.score_spec

    def fit_latent_score(self) -> ScoreSpec:
        """:meth:`fit_score` with the Gaussian's latent distance (what ``aekit fit-score RUN`` does by default)."""
        return self.fit_score()

    def feature_errors(self, x: torch.Tensor) -> np.ndarray:
        """Each row's squared reconstruction error per feature divided by the number of features, ``(N, features)``
        in model space: a row's values sum to the reconstruction part of its :meth:`score`."""
        return self.fitted.feature_errors(x)

    def holes(self, x: torch.Tensor) -> dict[str, float]:
        """The holes measure of the codes of ``x`` (:func:`aekit.evaluate.holes`)."""
        return holes(self.model, x)

    def random_codes(self, n: int, seed: int, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` codes z ~ N(0, I) and, from the same noise, ``n`` from a Gaussian fitted to ``codes`` (float64)."""
        noise = torch.randn(n, codes.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        return noise, gaussian_like(codes, noise)

    # -- a sparse autoencoder's features (the topk objective)
    def features(self, top: int = 16) -> dict[str, np.ndarray]:
        """A sparse autoencoder's features, from its test rows: ``directions`` ``(L, *input_shape)``, each latent's
        decoder column in the data's units (unit norm), ``firing`` (the share of test rows it is active on),
        ``top`` (the indices of the ``top`` test rows it is most active on, ``(L, top)``, -1 where it fired on fewer),
        and ``activation`` (its mean activation where active)."""
        if not isinstance(self.model_config.objective, TopK):
            raise ConfigError(f"{self.path} is not a sparse autoencoder (its objective is "
                              f"{self.model_config.objective.kind}); train one with --model sae --k K")  # fmt: skip
        columns = self.model.decoder[0].weight.detach().cpu().double().T  # (L, D), model space
        _, std = self.space.affine(torch.float64)
        directions = columns * std.reshape(1, -1)  # a step along a column in model space, in the data's units
        directions = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
        codes = self.encode(self.data().x_test).double()  # (N, L)
        active = codes > 0
        order = codes.argsort(0, descending=True)[:top].T  # (L, top)
        ranked = torch.gather(active.T, 1, order)
        return {"directions": directions.reshape(-1, *self.model_config.input_shape).numpy(),
                "firing": active.double().mean(0).numpy(), "top": torch.where(ranked, order, -1).numpy(),
                "activation": (codes.sum(0) / active.sum(0).clamp_min(1)).numpy()}  # fmt: skip

    # -- the codec: a run trained with the rate objective (aekit.codec)
    @property
    def is_codec(self) -> bool:
        return isinstance(self.model_config.objective, Rate)

    def item_bytes(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Each row's bytes: coded alone (its own stream's words) and as its share of one stream of all (its ideal
        cost under the tables, which a long stream approaches)."""
        tables = self.codec_tables()
        codes = self.encode(x).to(torch.int64).numpy()
        streams, _ = encode_streams(codes, tables, per_item=True)
        return np.array([4.0 * len(s) for s in streams]), tables.bits(codes) / 8

    def draw_codec(self, path: Path | None = None, n: int = 8):
        """Eight test images, their decodings from a file, and each one's bytes (the report's codec figure)."""
        x = self.data().x_test[:n]
        alone, in_batch = self.item_bytes(x)
        from . import plots

        return plots.codec_digits(self.to_data_space(x), self.decompress(self.compress(x)), alone, in_batch, path)

    def codec_tables(self) -> Tables:
        """The run's frozen probability tables; a ConfigError for a run that is not a codec."""
        if not isinstance(self.model_config.objective, Rate):
            raise ConfigError(f"{self.path} is not a codec: its code is {self.model_config.objective.kind}'s, not "
                              "integers under an entropy model; train one with --preset codec (or --objective rate)")
        return RunDir(self.path).load_codec(self.model_config.latent_dim)

    def compress(self, x: torch.Tensor, per_item: bool = False) -> bytes:
        """The rows ``x`` (model space) as a compressed file's bytes (:mod:`aekit.codec`): one ANS stream for all of
        them, or (``per_item``) one per row, each decodable alone."""
        tables = self.codec_tables()
        codes = self.encode(x).to(torch.int64).numpy()
        streams, moved = encode_streams(codes, tables, per_item)
        if moved:
            log.warning("%d code values lay outside their tables (the training codes' range) and were moved to its "
                        "end", moved)  # fmt: skip
        digest = model_digest((self.path / RunDir.MODEL).read_bytes(), tables)
        return pack(streams, len(codes), codes.shape[1], self.model_config.input_shape, digest)

    def rate_bits(self, x: torch.Tensor) -> np.ndarray:
        """Each row's code cost in bits as the codec's density estimates it (``(N,)``; the file spends about this)."""
        self.codec_tables()  # (a run that is not a codec has no density: said so)
        codes = self.encode(x).double().to(next(self.model.parameters()).device)
        with torch.no_grad():
            return self.model.bottleneck.bits(codes).cpu().numpy()

    def compress_input(self, source: str, split: str = "test", per_item: bool = False) -> tuple[bytes, dict]:
        """:meth:`compress` of a dataset or file (read a chunk at a time), and a summary: ``rows``, ``bytes`` (the
        file's), ``estimated_bytes`` (the density's estimate of the codes), and the decoded rows' ``psnr`` (data in
        [0, 1]) or ``mse`` (per feature, in the data's units)."""
        self.codec_tables()  # a run that is not a codec: said before the input is read
        _, chunks = self.chunks(source, split)
        x = torch.cat(list(chunks))
        payload = self.compress(x, per_item)
        error = float((self.reconstruct(x) - self.to_data_space(x)).double().square().mean())
        summary = {"rows": len(x), "bytes": len(payload), "estimated_bytes": float(self.rate_bits(x).sum()) / 8}
        summary |= {"psnr": 10 * math.log10(1 / error)} if self.space.unit else {"mse": error}
        return payload, summary

    def decompress(self, data: bytes, source: str = "file") -> torch.Tensor:
        """A compressed file's rows, decoded in the data's units ``(N, *input_shape)``; a file of another model, of a
        newer format, damaged or cut short is refused in one line. Decoded on one thread, so that any thread count
        gives the same array."""
        unpacked = unpack(data, source)
        tables = self.codec_tables()
        digest = model_digest((self.path / RunDir.MODEL).read_bytes(), tables)
        if unpacked.digest != digest:
            raise DataError(f"{source}: written with another model (SHA-256 {unpacked.digest.hex()[:12]}...) than "
                            f"{self.path}'s ({digest.hex()[:12]}...); decompress it with the run that compressed it")
        if unpacked.code_size != self.model_config.latent_dim or unpacked.shape != self.model_config.input_shape:
            raise DataError(f"{source}: holds {unpacked.code_size}-D codes of {unpacked.shape} rows, not this run's")
        codes = torch.from_numpy(decode_streams(unpacked.streams, unpacked.n, tables)).float()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.decode(codes)
        finally:
            torch.set_num_threads(threads)

    # -- generation: latent priors fitted after training (aekit.priors), stored under priors/
    def prior_names(self) -> list[str]:
        """The priors this run can sample from: ``normal`` (always) and those fitted to it, in ``PRIOR_NAMES`` order."""
        fitted = set(RunDir(self.path).prior_names())
        return [name for name in PRIOR_NAMES if name == "normal" or name in fitted]

    def prior(self, name: str) -> Prior:
        """Prior ``name`` of this run; a ConfigError for an unknown one or one not fitted (saying how to fit it)."""
        if name not in PRIOR_NAMES:
            raise ConfigError(f"unknown prior {name!r}; choose one of {list(PRIOR_NAMES)}")
        if name == "normal":
            return Normal(self.model_config.latent_dim)
        if name not in RunDir(self.path).prior_names():
            raise ConfigError(f"{self.path} has no {name!r} prior; fit it first: aekit fit-prior {self.path} --prior {name}")
        stored = RunDir(self.path).load_prior(name)
        return from_stored(stored, self.model_config.latent_dim, str(self.path / RunDir.PRIORS / name))

    def fit_prior(self, kind: str, conditional: bool = False, components: int = 10, seed: int = 0,
                  diffusion: DiffusionConfig | None = None, progress: bool | None = None) -> Prior:  # fmt: skip
        """Fit prior ``kind`` (gaussian, gmm, diffusion) to the codes of the run's training rows, per label with
        ``conditional``, and store it under ``priors/`` (replacing one of the same kind); nothing else is written."""
        check_fittable(kind, components)  # before the data is loaded
        data = self.data()
        if conditional and data.y_train is None:
            raise ConfigError(f"--conditional needs labels, and {self.data_config.name} has none")
        codes = self.encode(data.x_train)
        bar = lambda epochs: progress_bar(epochs, desc=f"{kind} prior", unit="epoch", progress=progress)  # noqa: E731
        with RunDir(self.path).writing():
            log.info("fitting the %s prior to %d codes%s", kind, len(codes), " per label" if conditional else "")
            with progress_working(f"fitting the {kind} prior", progress if kind != "diffusion" else False):
                prior = fit_prior(kind, codes, data.y_train if conditional else None, components, seed, diffusion, bar)
            RunDir(self.path).save_prior(kind, to_stored(prior))
        # its sample quality, measured now as training measures a model's: aekit evaluate reads it back
        log.info("measuring the priors' samples beside the floor (what aekit evaluate reports, read back from then on)")
        with progress_working("measuring the priors' samples", progress):
            self.generation_metrics(data=data)
        return prior

    def prior_quality(self, name: str, data: Data | None = None) -> dict[str, float]:
        """The sample quality of prior ``name`` beside the floor (:func:`aekit.evaluate.generation_metrics`'s rows for
        it), computed once per model and prior and read back from the analysis cache after."""
        key = {name: RunDir(self.path).prior_digest(name)} if name != "normal" else {}
        return generation_metrics(self.model, data or self.data(), {name: self.prior(name)}, prior_keys=key)

    def sample(self, n: int, prior: str = "normal", label: int | None = None, seed: int = 0,
               guidance: float | None = None) -> torch.Tensor:  # fmt: skip
        """``n`` decoded samples ``(n, *input_shape)`` in the data's own units (pixels in [0, 1]) from prior ``prior``,
        of class ``label`` if given (a conditional prior); the same ``seed`` gives the same samples. ``guidance``: the
        conditional diffusion prior's classifier-free guidance scale (default: its own, 1 = none)."""
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"--n {n} must be a positive number of samples")
        chosen = self.prior(prior)
        if label is not None and not chosen.labels and self.data().y_train is None:
            raise ConfigError(f"--label {label}: {self.data_config.name} has no labels, so there is no class to ask for")
        if guidance is not None:
            if prior != "diffusion" or not chosen.labels or label is None:
                raise ConfigError("--guidance applies to a conditional diffusion prior asked for a --label")
            if not guidance >= 0:
                raise ConfigError(f"--guidance {guidance:g} must be zero or positive")
            return self.decode(chosen.sample(n, seed, label, guidance=guidance))
        return self.decode(chosen.sample(n, seed, label))

    def draw_priors(self, path: Path | None = None, n: int = 36):
        """A grid of ``n`` samples (seed 0) from each prior, titled with its FD from metrics.json when measured."""
        metrics = self.metrics()
        panels = [(name + (f" (FD {metrics[f'gen_{name}_fd']:.1f})" if f"gen_{name}_fd" in metrics else ""),
                   self.sample(n, name)) for name in self.prior_names()]  # fmt: skip
        from . import plots

        return plots.prior_samples(panels, path)

    def generation_metrics(self, n: int = 10_000, seed: int = 0, data: Data | None = None) -> dict[str, float]:
        """Sample quality of every prior this run has, beside the floor (:func:`aekit.evaluate.generation_metrics`);
        ``data``: the run's data when already loaded."""
        priors = {name: self.prior(name) for name in self.prior_names()}
        keys = {name: RunDir(self.path).prior_digest(name) for name in priors if name != "normal"}
        return generation_metrics(self.model, data or self.data(), priors, n, seed, keys)

    def threshold(self, contamination: float) -> float:
        """The score above which ``contamination`` (a share below 1) of the run's own training rows lie."""
        if not 0 < contamination < 1:
            raise ConfigError(f"--contamination {contamination:g} must be a share below 1, e.g. 0.05")
        return self.fitted.threshold(self.score(self.data().x_train), contamination)

    # -- what the run directory holds, and what is drawn from it
    def metrics(self) -> dict:
        return RunDir(self.path).read_metrics()

    def history(self) -> list[dict]:
        return RunDir(self.path).read_history()

    def configs(self) -> dict:
        """The stored configs as ``{"model", "data", "train"}`` dataclasses (any format version, migrated)."""
        return {"model": self.model_config, "data": self.data_config, "train": self.train_config}

    def config_dicts(self) -> dict[str, dict]:
        """The configs as JSON-able dicts, as ``config.json`` (version 2) holds them."""
        return {name: config_to_dict(value) for name, value in self.configs().items()}

    @property
    def aekit_version(self) -> str:
        """The aekit version that wrote ``config.json``."""
        return RunDir(self.path).stored_version()

    def figure_kinds(self) -> list[str]:
        """The figures that apply to this model (``aekit plot``'s kinds for it)."""
        from . import plots  # (matplotlib: loaded where a figure is drawn)

        return list(plots.figures_for(self.model_config))

    def write(self, name: str, payload: bytes) -> Path:
        """Write a file of the run's own (a report) atomically; returns its path."""
        path = self.path / name
        atomic_write_bytes(path, payload)
        return path

    def evaluate(self, write: bool = True, analysis: bool = True) -> dict[str, float]:
        """Test metrics beside PCA and (``analysis``) the holes measure, the probes and each fitted prior's sample
        quality; written to ``metrics.json`` unless not ``write``."""
        log.info("evaluating %s: loading its data", self.path)
        data = self.data()
        metrics = full_metrics(self.model, data, analysis)
        if isinstance(self.model_config.objective, Rate):
            log.info("evaluating: the codec's rate, and PCA coding at that rate")
            metrics |= codec_metrics(self.model, data, self.codec_tables())
        if analysis and RunDir(self.path).prior_names():  # sample quality once a prior has been fitted
            log.info("evaluating: samples of each prior (%s) beside the floor", ", ".join(self.prior_names()))
            metrics |= self.generation_metrics(data=data)
        if write:
            try:
                RunDir(self.path).write_metrics(metrics)
            except OSError as err:  # a read-only run (a shared model store) is still evaluated
                if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise
                log.warning("metrics not written: %s is read-only here (%s)", self.path, err.strerror)
        return metrics

    def draw(self, kind: str, folder: Path | None = None):
        """Draw figure ``kind`` (``aekit plot``'s kinds) into ``folder`` (default ``RUN/figures``); returns it."""
        folder = Path(folder) if folder is not None else self.path / "figures"
        from . import plots

        return plots.draw(kind, self.fitted, self.data() if kind != "curves" else None, self.history(), self.metrics(),
                          path=folder / kind)  # fmt: skip

    def plot(self, kind: str):
        """The matplotlib Figure ``aekit plot RUN KIND`` draws, without writing a file (a notebook shows it)."""
        from . import plots

        return plots.draw(kind, self.fitted, self.data() if kind != "curves" else None, self.history(), self.metrics())

    def _repr_html_(self) -> str:
        """A notebook's view of the run: the model, its test metrics beside PCA's, and six reconstructions."""
        import base64
        import html

        metrics, k = self.metrics(), self.model_config.latent_dim
        head = "".join(f"<th>{name}</th>" for name in METRIC_NAMES)
        rows = ""
        for label, prefix in ((f"autoencoder (k={k})", ""), (f"PCA (k={k})", "pca_")):
            cells = "".join(f"<td>{metrics[prefix + n]:.5g}</td>" if prefix + n in metrics else "<td></td>"
                            for n in METRIC_NAMES)  # fmt: skip
            rows += f"<tr><td>{label}</td>{cells}</tr>"
        parts = [f"<p><b>aekit run</b> <code>{html.escape(str(self.path))}</code>: {html.escape(self.model_config.name)}"
                 f", {len(self.history())} epochs</p><table><tr><th></th>{head}</tr>{rows}</table>"]  # fmt: skip
        if self.is_image:
            buffer = io.BytesIO()
            from . import plots

            figure = plots.reconstructions(self.model, self.data(), n=6)
            figure.savefig(buffer, format="png", dpi=70, bbox_inches="tight")
            encoded = base64.b64encode(buffer.getvalue()).decode()
            parts.append(f"<img alt='reconstructions' src='data:image/png;base64,{encoded}'>")
        return "".join(parts)

    def export(self, path: Path, part: str = "autoencoder") -> Path:
        """Write ``part`` of the model as ONNX with the scaling folded in (the ``onnx`` extra)."""
        from .export import export_onnx

        return export_onnx(self.fitted, path, part)


def load_run(path: str | Path, device: str = "cpu") -> Run:
    """Load a run directory's configs, weights and score (JSON and safetensors only; nothing is executed)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run directory")
    rundir = RunDir(path)
    configs = rundir.read_config(RUN_SCHEMA)
    model, scaler = rundir.load_model(configs["model"])
    model.to(pick_device(device))
    config = configs["model"]
    space = Space(config.input_shape, scaler, config.columns, isinstance(config.objective, Imputing))
    fitted = Fitted(model, space, rundir.load_score(config.latent_dim))
    return Run(path, config, located(configs["data"], path), configs["train"], fitted)


def evaluate_run(path: str | Path, device: str = "auto", write: bool = True, analysis: bool = True
                 ) -> dict[str, float]:  # fmt: skip
    """Evaluate a run on its test split, beside PCA (:meth:`Run.evaluate`); writes ``metrics.json`` unless ``write``
    is false."""
    return load_run(path, device).evaluate(write, analysis)


def write_rows(x: torch.Tensor | np.ndarray, out: Path, columns: tuple[Column, ...] = (), exact: bool = False) -> Path:
    """Rows ``(N, *input_shape)`` in the data's units (samples, reconstructions, imputations) to ``out``: a grid of
    images for ``.png``; for a table (``columns``) as ``.csv`` or ``.parquet``, its own named columns with each
    categorical column's likeliest category; else a ``.npy`` array of ``x``'s shape (an image run's ``(N, C, H, W)``),
    or flat rows in a ``.csv`` or ``.parquet`` table. Every input of aekit takes each of these back. A table's numbers
    are written with float32's digits (the model's), or with ``exact`` as they are (an imputed table's observed
    cells). The same rows give the same bytes."""
    x = torch.as_tensor(x)
    if out.suffix.lower() == ".png":
        from . import plots

        return plots.write_grid(x, out)  # each pixel zoomed to be seen
    if columns and out.suffix.lower() in (".csv", ".parquet"):
        dtype = np.float64 if exact else np.float32
        tables.write_table(out, tables.decoded(x.reshape(len(x), -1).double().numpy(), columns, dtype))
        return out
    with stream.RowWriter(out, len(x), tuple(x.shape[1:])) as writer:
        writer.write(x.numpy())
    return out


def write_bytes(path: Path, payload: bytes) -> Path:
    """A file written atomically (a compressed file)."""
    atomic_write_bytes(Path(path), payload)
    return Path(path)


def read_bytes(path: Path, limit: int = 2**31) -> bytes:
    """A file's bytes (at most ``limit``), or one line saying why not."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {'not a regular file' if path.exists() else 'no such file'}")
    if path.stat().st_size > limit:
        raise DataError(f"{path}: {path.stat().st_size} bytes, more than the {limit} aekit reads at once")
    return path.read_bytes()


def write_image_folder(x: torch.Tensor, folder: Path) -> Path:
    """Images ``(N, C, H, W)`` in [0, 1] as ``folder/00000.png`` ... (the images' own pixels)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digits = max(5, len(str(len(x) - 1)))
    for i in range(len(x)):
        from . import plots

        plots.write_grid(x[i : i + 1], folder / f"{i:0{digits}d}.png", ncol=1, zoom=1)
    return folder


def array_from_npy(payload: bytes) -> np.ndarray:
    """A ``.npy`` file's bytes as an array, its header checked against the payload before anything is allocated
    (no objects, no shape larger than the bytes that came); a DataError otherwise."""
    handle = io.BytesIO(payload)
    check_npy_header(handle, len(payload), "header", limit=None)  # the payload's own size bounds it
    handle.seek(0)
    try:
        return np.load(handle, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(str(err)) from None


def holds_run(path: str | Path) -> bool:
    """Whether ``path`` is a folder that already holds something (a run, or anything)."""
    return RunDir(path).holds_run()


def mnist_location() -> str:
    """Where MNIST is found, or why it is not (for ``aekit datasets``)."""
    try:
        return f"MNIST found in {data_mod.find_mnist(download=False)}"
    except DataError as err:
        return f"MNIST: {err}"


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
    write_json(Path(path) / "sweep" / "error-vs-dim.json", result)
    from . import plots

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
    metrics = base.metrics()
    rows = [row for row in base.history() if row["epoch"] == epochs and "test_sse_per_image" in row]
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
