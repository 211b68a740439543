""":class:`Run`, a handle on a trained run: its path, configs, :class:`~aekit.core.fitted.Fitted` model and
:class:`~aekit.run.rundir.RunDir`, rows in, and each capability as an object of its wing (``run.codec``,
``run.priors``, ``run.analysis``). The CLI, the server, the report and notebooks call it; :func:`load_run` loads one
(:func:`aekit.run.training.train_run` trains one).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ..analysis.evaluate import METRIC_NAMES
from ..analysis.wing import Analysis
from ..codec.metrics import codec_metrics
from ..codec.wing import Codec
from ..configs import DataConfig, TrainConfig
from ..core.fitted import Fitted
from ..core.space import Data, Space
from ..data import datasets as data_mod
from ..data import stream
from ..data.series import training_steps
from ..errors import CheckpointError, ConfigError
from ..generation.wing import Priors
from ..model.autoencoder import AutoEncoder
from ..model.config import ModelConfig
from ..series.wing import Series
from ..training.loop import pick_device
from . import pretrained as shipped
from .rundir import RunDir
from .training import RUN_SCHEMA, evaluation_data, full_metrics, located

log = logging.getLogger(__name__)

INFER_CHUNK_ROWS = 8192  # rows per chunk when the input was loaded whole (a dataset name, CSV, images)
REFINEMENTS = 10  # passes of a model trained without holes that fills them (Run.impute with any_model)


@dataclass
class Run:
    """A finished (or checkpointed) run loaded for inference: its configs, its :class:`aekit.core.fitted.Fitted`
    model (the model, the :class:`aekit.core.space.Space` of its data, its anomaly score) and its run directory.

    Inputs ``x`` are in model space (:meth:`inputs` and :meth:`chunks` give them from a dataset or a file,
    ``run.space.to_model`` from rows in any accepted layout); :meth:`reconstruct` and :meth:`decode` return the
    data's own units. What a model of its objective can do beyond that is an object of its wing: ``run.codec``
    (a codec's compress / decompress), ``run.priors`` (fit, sample, measure), ``run.analysis`` (figures, the holes
    measure, a sparse autoencoder's features).
    """

    path: Path
    model_config: ModelConfig
    data_config: DataConfig
    train_config: TrainConfig
    fitted: Fitted
    _data: Data | None = field(default=None, repr=False, compare=False)  # loaded once, on first use

    @cached_property
    def rundir(self) -> RunDir:
        """The run directory: the one owner of its file names (configs, weights, metrics, history, priors)."""
        return RunDir(self.path)

    @property
    def model(self) -> AutoEncoder:
        return self.fitted.model

    @property
    def space(self) -> Space:
        """The one door between the data's rows and the model (shape, columns, scaling, missing cells)."""
        return self.fitted.space

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
        raw, labels, _ = data_mod.read_data(source, self._new_rows_label(source), self.data_config.image_size,
                                            self.model_config.columns)  # fmt: skip
        return self.space.to_model(raw, source), None if labels is None else torch.from_numpy(labels)

    def _new_rows_label(self, source: str) -> str | None:
        """The column to leave out of ``source``'s features (:func:`aekit.data.datasets.left_out_column`): the run's
        label where the file has it, or the file names aekit wrote beside an image folder's rows."""
        return data_mod.left_out_column(source, self.data_config.label_column, bool(self.model_config.columns))

    def chunks(self, source: str, split: str = "test") -> tuple[int, Iterator[torch.Tensor]]:
        """``(n_rows, chunks)``: the input in model space, chunk by chunk. A source read in chunks (``.npy``, shard
        and image folders, Parquet) is never held whole, so memory stays bounded whatever its size; any other is
        loaded whole, then cut into chunks of :data:`INFER_CHUNK_ROWS`."""
        config = self.data_config
        chunked = source not in data_mod.DATASETS and not self.model_config.columns
        rows = data_mod.open_rows(source, self._new_rows_label(source), image_size=config.image_size) if chunked else None
        if rows is None:
            x, _ = self.inputs(source, split)
            return len(x), (x[i : i + INFER_CHUNK_ROWS] for i in range(0, len(x), INFER_CHUNK_ROWS))
        rows.missing = self.space.missing
        stream.keep_heap_small()  # memory bounded by a chunk, however many chunks pass

        def chunks():  # a chunk (a Parquet row group may be large) is scaled to float32 a slice at a time
            for raw, _ in rows.chunks():
                for i in range(0, len(raw), INFER_CHUNK_ROWS):
                    yield self.space.to_model(raw[i : i + INFER_CHUNK_ROWS], source)

        return len(rows), chunks()

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
        model's probability per category (:func:`aekit.run.outputs.write_rows` writes the likeliest one).

        A model trained with the impute objective fills in one pass. With ``any_model``, one trained without
        holes fills them too, as an autoencoder can: the holes start at 0 and :data:`REFINEMENTS` passes each set
        them to the reconstruction of the row so far (weaker: it never learned to fill)."""
        if not self.space.missing and not any_model:
            raise ConfigError(f"{self.path} was not trained to fill missing cells; train it with --objective impute "
                              "(chosen by itself for data with holes)")  # fmt: skip
        raw = np.asarray(raw)
        out = self.fitted.impute(raw, source, 1 if self.space.missing else REFINEMENTS)
        holes = np.isnan(raw)
        if out.dtype == np.float64:  # the fills are float32 sums: with float32's shortest digits (19.444817), not a
            out[holes] = out[holes].astype(np.float32).astype(str).astype(np.float64)  # float64's 19.44481658935547
        return out

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Each row's anomaly score ``(N,)`` float64, higher is more abnormal, as the run's
        :class:`aekit.core.fitted.ScoreSpec` defines it (none stored: the mean squared reconstruction error per
        feature, in model space). A tensor, as :meth:`encode`, :meth:`decode` and :meth:`reconstruct` give."""
        return torch.from_numpy(self.fitted.score(x))

    def fit_score(self, blur: int = 1, latent: bool = True, neighbors: int = 0):
        """Fit the anomaly score on the run's training rows and store it (``score.safetensors``): from then on
        :meth:`score`, ``aekit score``, ``/v1/score``, the report and the exported ``score`` graph use it.
        ``latent``: add the code's distance (the Gaussian's, or with ``neighbors`` the nearest training codes');
        ``blur``: blur the residual over an odd window (images). Returns the :class:`~aekit.core.fitted.ScoreSpec`."""
        self.fitted.fit_score(self.data().x_train, blur, latent, neighbors)
        with self.rundir.writing():
            self.rundir.save_score(self.fitted.score_spec)
        return self.fitted.score_spec

    # -- what the run directory holds
    def metrics(self) -> dict:
        return self.rundir.read_metrics()

    def history(self) -> list[dict]:
        return self.rundir.read_history()

    def evaluate(self, write: bool = True, analysis: bool = True) -> dict[str, float]:
        """Test metrics beside PCA and (``analysis``) the holes measure, the probes and each fitted prior's sample
        quality; written to ``metrics.json`` unless not ``write``."""
        log.info("evaluating %s: loading its data", self.path)
        data = self.data()
        metrics = full_metrics(self.model, data, analysis)
        if self.model_config.objective.wing == "codec":
            log.info("evaluating: the codec's rate, and PCA coding at that rate")
            metrics |= codec_metrics(self.model, data, self.codec.tables)
        if analysis and self.rundir.prior_names():  # sample quality once a prior has been fitted
            log.info("evaluating: samples of each prior (%s) beside the floor", ", ".join(self.priors.names()))
            metrics |= self.priors.metrics(data=data)
        if write and self.rundir.shipped:
            log.info("metrics not written: %s ships with aekit (read-only)", self.path)
        elif write:
            try:
                self.rundir.write_metrics(metrics)
            except OSError as err:  # a read-only run (a shared model store) is still evaluated
                if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise
                log.warning("metrics not written: %s is read-only here (%s)", self.path, err.strerror)
        return metrics

    def export(self, path: Path, part: str = "autoencoder") -> Path:
        """Write ``part`` of the model as ONNX with the scaling folded in (the ``onnx`` extra)."""
        from ..core.export import export_onnx

        series = self.data_config.series
        moments = self.rundir.load_series(self.space.input_shape[0]) if series else None
        return export_onnx(self.fitted, path, part, series=series, moments=moments)

    # -- the wings: what a model of this objective can do beyond encoding and decoding
    @cached_property
    def codec(self) -> Codec:
        """A codec run's compress / decompress (:class:`aekit.codec.wing.Codec`); a ConfigError for a run that is
        not a codec."""
        objective = self.model_config.objective
        if objective.wing != "codec":
            raise ConfigError(f"{self.path} is not a codec: its code is {objective.kind}'s, not integers under an "
                              "entropy model; train one with --preset codec (or --objective rate)")  # fmt: skip
        tables = self.rundir.load_codec(self.model_config.latent_dim)
        return Codec(self.fitted, tables, (self.rundir / RunDir.MODEL).read_bytes(), str(self.path))

    @cached_property
    def priors(self) -> Priors:
        """The run's latent priors (:class:`aekit.generation.wing.Priors`): fit, sample, measure."""
        return Priors(self.fitted, self.rundir, self.data, str(self.path), self.data_config.name)

    @cached_property
    def series(self) -> Series:
        """A series run's scores per time step (:class:`aekit.series.wing.Series`); a ConfigError for a run trained
        on anything but one long series (``aekit train --series``)."""
        if not self.data_config.series:
            raise ConfigError(f"{self.path} was not trained on a long series (aekit train --series); its scores are "
                              "per row: run.score")  # fmt: skip

        def series() -> tuple[np.ndarray, int, tuple[str, ...] | None]:
            x, names = data_mod.read_series(self.data_config.name, self.data_config.label_column, names=True)
            return x, training_steps(len(x), self.data_config), names

        def read(path: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
            return data_mod.read_series(path, self.data_config.label_column, names=True)

        return Series(self.fitted, series, read, self.rundir.load_series(self.space.input_shape[0]))

    @cached_property
    def analysis(self) -> Analysis:
        """Figures, the holes measure and a sparse autoencoder's features (:class:`aekit.analysis.wing.Analysis`)."""
        return Analysis(self.fitted, self.data, self.history, self.metrics, str(self.path))

    def _repr_html_(self) -> str:
        """A notebook's view of the run: the model, its test metrics beside PCA's, and six reconstructions."""
        import base64
        import html
        import io

        metrics, k = self.metrics(), self.model_config.latent_dim
        head = "".join(f"<th>{name}</th>" for name in METRIC_NAMES)
        rows = ""
        for label, prefix in ((f"autoencoder (k={k})", ""), (f"PCA (k={k})", "pca_")):
            cells = "".join(f"<td>{metrics[prefix + n]:.5g}</td>" if prefix + n in metrics else "<td></td>"
                            for n in METRIC_NAMES)  # fmt: skip
            rows += f"<tr><td>{label}</td>{cells}</tr>"
        shown = os.path.relpath(self.path) if self.path.is_absolute() else str(self.path)
        shown = str(self.path) if shown.startswith(os.path.join(os.pardir, os.pardir)) else shown  # near: relative
        parts = [f"<p><b>aekit run</b> <code>{html.escape(shown)}</code>: {html.escape(self.model_config.name)}"
                 f", {len(self.history())} epochs</p><table><tr><th></th>{head}</tr>{rows}</table>"]  # fmt: skip
        if self.space.is_image:
            buffer = io.BytesIO()
            self.analysis.reconstructions(6).savefig(buffer, format="png", dpi=70, bbox_inches="tight")
            encoded = base64.b64encode(buffer.getvalue()).decode()
            parts.append(f"<img alt='reconstructions' src='data:image/png;base64,{encoded}'>")
        return "".join(parts)


def load_run(path: str | Path, device: str = "cpu") -> Run:
    """Load a run directory's configs, weights and score (JSON and safetensors only; nothing is executed)."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run directory")
    rundir = RunDir(path)
    if not os.path.lexists(rundir / RunDir.CONFIG):  # (one that is there but no file: read_config says what it is)
        raise CheckpointError(f"{path}: not a run directory (no {RunDir.CONFIG}); a run is what aekit train --out "
                              "writes, or pretrained:NAME")  # fmt: skip
    configs = rundir.read_config(RUN_SCHEMA)
    model, scaler = rundir.load_model(configs["model"])
    model.to(pick_device(device))
    config = configs["model"]
    space = Space(config.input_shape, scaler, config.columns, config.objective.fills_missing)
    fitted = Fitted(model, space, rundir.load_score(config.latent_dim))
    return Run(path, config, located(configs["data"], path), configs["train"], fitted)


def pretrained(name: str, device: str = "cpu") -> Run:
    """The trained run ``name`` that ships with aekit (``chapter``, ``codec``, ``conv30``: :mod:`aekit.run.pretrained`)
    as a :class:`Run`, each of its files checked against the manifest's SHA-256 first. It is read-only: copy it with
    ``aekit pretrained NAME --out DIR`` to write into it."""
    return load_run(shipped.locate(name), device)


def evaluate_run(path: str | Path, device: str = "auto", write: bool = True, analysis: bool = True
                 ) -> dict[str, float]:  # fmt: skip
    """Evaluate a run on its test split, beside PCA (:meth:`Run.evaluate`); writes ``metrics.json`` unless ``write``
    is false."""
    return load_run(path, device).evaluate(write, analysis)
